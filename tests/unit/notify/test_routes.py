"""Routing rules of `pql notify`: the file's language, its errors, what matches, the defaults and
the command's options (each also PQL_NOTIFY_*)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from streams.cli import main
from streams.notify.routes import (
    Destination,
    RoutesError,
    default_routing,
    is_alert,
    parse_routes,
)

ROUTES = """\
destinations:
  sales:   {slack: "https://hooks.slack.com/services/T/B/X"}
  crm:     {webhook: "https://crm.example.com/hooks/pql", secret_env: CRM_SECRET, timeout: 5s}
  success: {slack: "https://hooks.slack.com/services/T/B/Y"}
routes:
  - {to: sales, alerts_only: true, routes: [sales_led, sales_assist]}
  - {to: crm}
  - {to: success, kinds: [segment_entered], segments: [purgatory]}
  - {to: crm, kinds: [qualified]}
"""
ENV = {"CRM_SECRET": "k"}


def t(kind: str = "qualified", segment: str | None = None, **playbook: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"transition_id": "x", "kind": kind, "segment": segment}
    if playbook:
        out["playbook"] = playbook
    return out


def test_a_routes_file_parses() -> None:
    r = parse_routes(ROUTES, env=ENV)
    assert r.destinations["crm"] == Destination(
        "crm", "webhook", "https://crm.example.com/hooks/pql", "k", 5.0
    )
    assert r.destinations["sales"].kind == "slack" and r.destinations["sales"].secret is None
    assert [rule.to for rule in r.rules] == ["sales", "crm", "success", "crm"]
    assert r.rules[0].line == 6


@pytest.mark.parametrize(
    "transition, targets",
    [
        (t(route="sales_led", alert=True), ["sales", "crm"]),
        (t(route="sales_led", alert=False), ["crm"]),  # held back by the cooldown
        (t(route="self_serve", alert=True), ["crm"]),
        (
            t("segment_entered", "purgatory", route="customer_success", alert=True),
            ["crm", "success"],
        ),
        (t("segment_exited", "purgatory", route="customer_success", alert=False), ["crm"]),
        (t(), ["crm"]),  # no playbook: `routes` cannot match
    ],
)
def test_each_transition_goes_where_its_rules_send_it_once(
    transition: dict[str, Any], targets: list[str]
) -> None:
    assert parse_routes(ROUTES, env=ENV).targets(transition) == targets


def test_without_a_playbook_a_qualification_is_the_alert() -> None:
    assert is_alert(t()) and not is_alert(t("disqualified"))
    assert is_alert(t("segment_entered", "x", alert=True))
    assert not is_alert(t(alert=False))


def test_defaults_send_every_transition_to_the_webhook_and_the_alerts_to_slack() -> None:
    flags = {
        "webhook": Destination("webhook", "webhook", "http://h/w"),
        "slack": Destination("slack", "slack", "http://h/s"),
    }
    r = default_routing(flags)
    assert r.targets(t()) == ["webhook", "slack"]
    assert r.targets(t("disqualified")) == ["webhook"]
    assert r.targets(t(alert=False)) == ["webhook"]


@pytest.mark.parametrize(
    "old, new, expected",
    [
        ("{slack: \"https://hooks.slack.com/services/T/B/X\"}", "{slack: ftp://x}",
         (2, "destinations.sales.slack", "expected an http:// or https:// URL, got 'ftp://x'")),
        ("{slack: \"https://hooks.slack.com/services/T/B/X\"}", "{slak: \"https://x\"}",
         (2, "destinations.sales.slak", "unknown key 'slak' (did you mean 'slack'?)")),
        ("secret_env: CRM_SECRET", "secret_env: NOPE",
         (3, "destinations.crm.secret_env",
          "environment variable NOPE is not set (it holds this webhook's secret)")),
        ("timeout: 5s", "timeout: soon",
         (3, "destinations.crm.timeout", "invalid duration 'soon': expected a whole number and "
          "a unit, like '45s', '15m', '12h', '30d' or '2w'")),
        ("{to: crm}", "{to: crn}", (7, "routes[1].to",
                                    "unknown destination 'crn' (crm, sales, success)")),
        ("kinds: [qualified]", "kinds: [qualifed]",
         (9, "routes[3].kinds[0]", "expected one of qualified, disqualified, segment_entered, "
          "segment_exited, got 'qualifed'")),
        ("alerts_only: true", "alerts_only: yes please",
         (6, "routes[0].alerts_only", "expected true or false")),
    ],
)  # fmt: skip
def test_errors_name_the_line_and_field(old: str, new: str, expected: tuple[int, str, str]) -> None:
    assert old in ROUTES
    with pytest.raises(RoutesError) as err:
        parse_routes(ROUTES.replace(old, new, 1), "routes.yaml", env=ENV)
    found = [(i.line, i.field, i.message) for i in err.value.issues]
    assert expected in found, found
    line, field, message = expected
    assert f"routes.yaml:{line}: {field}: {message}" in str(err.value)


def test_a_slack_destination_takes_no_secret_and_a_file_needs_routes() -> None:
    text = 'destinations:\n  s: {slack: "https://x", secret: k}\nroutes:\n  - {to: s}\n'
    with pytest.raises(RoutesError, match="Slack webhooks are not signed"):
        parse_routes(text)
    with pytest.raises(RoutesError, match="'routes' is required"):
        parse_routes('destinations:\n  s: {slack: "https://x"}\n')
    with pytest.raises(RoutesError, match="invalid YAML"):
        parse_routes("routes: [")


def test_check_validates_options_and_files_from_the_environment(tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(
        main,
        ["notify", "--check"],
        env={"PQL_NOTIFY_WEBHOOK": "https://h/w", "PQL_NOTIFY_SLACK_WEBHOOK": "https://h/s"},
    )
    assert ok.exit_code == 0, ok.output
    assert ok.output.strip() == "ok: 2 rules to webhook (webhook), slack (slack)"
    routes = tmp_path / "routes.yaml"
    routes.write_text(textwrap.dedent(ROUTES))
    ok = runner.invoke(
        main, ["notify", "--check", "--routes", str(routes)], env={"CRM_SECRET": "k"}
    )
    assert ok.exit_code == 0, ok.output
    assert "4 rules to sales (slack), crm (webhook), success (slack)" in ok.output
    bad = runner.invoke(
        main, ["notify", "--check", "--routes", str(routes)], env={"CRM_SECRET": ""}
    )
    assert bad.exit_code == 2 and "CRM_SECRET is not set" in bad.output
    none = runner.invoke(main, ["notify", "--check"], env={})
    assert none.exit_code == 2 and "nothing to deliver to" in none.output
    lone = runner.invoke(main, ["notify", "--check", "--secret", "k"], env={})
    assert lone.exit_code == 2 and "give --webhook too" in lone.output
