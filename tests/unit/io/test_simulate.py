"""The simulator is the input of the demo, the parity test and the benchmark: it must be
reproducible byte for byte, valid for the real parser, and actually contain every behaviour the
team-chat model is meant to detect (else the demo silently shows nothing)."""

from __future__ import annotations

import gzip
import json
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from streams.events.parse import parse_event
from streams.events.timestamps import iso_to_epoch_ms
from streams.events.types import Event, EventType, Reject
from streams.io.simulate import (
    DAY_MS,
    DEFAULT_START,
    BadKind,
    Persona,
    generate,
    labelled,
    lines,
    plan_accounts,
    simulate,
    write,
)

REQUIRED = {
    Persona.QUALIFIER,
    Persona.FREE_LIMIT,
    Persona.WINDOW_SHOPPER,
    Persona.TINY_TEAM,
    Persona.GOES_QUIET,
}


def _ms(ts: str) -> int:
    ms = iso_to_epoch_ms(ts)
    assert ms is not None, ts
    return ms


def _by_account(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Group events by account the way the worker must: groupId, context.groupId, or the
    account the user joined with an earlier group call."""
    user_account: dict[str, str] = {}
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        if e["type"] == "group":
            user_account[e["userId"]] = e["groupId"]
            acc = e["groupId"]
        else:
            acc = e.get("context", {}).get("groupId") or user_account[e["userId"]]
        out[acc].append(e)
    return out


def test_same_seed_same_output_and_another_seed_differs() -> None:
    a = list(lines(accounts=12, days=3, seed=3, bad_ratio=0.05))
    b = list(lines(accounts=12, days=3, seed=3, bad_ratio=0.05))
    c = list(lines(accounts=12, days=3, seed=4, bad_ratio=0.05))
    assert a == b
    assert len(a) > 200
    assert a != c


def test_gzip_file_is_byte_identical_across_runs(tmp_path: Path) -> None:
    p1, p2 = tmp_path / "a.jsonl.gz", tmp_path / "b.jsonl.gz"
    c1 = write(p1, accounts=6, days=2, seed=1, bad_ratio=0.02)
    c2 = write(p2, accounts=6, days=2, seed=1, bad_ratio=0.02)
    assert p1.read_bytes() == p2.read_bytes()
    assert c1 == c2
    text = gzip.decompress(p1.read_bytes()).decode().splitlines()
    assert len(text) == c1["events"] + c1["bad"]


def test_events_are_in_timestamp_order_with_unique_message_ids() -> None:
    events = list(generate(accounts=20, days=5, seed=11))
    stamps = [_ms(e["timestamp"]) for e in events]
    assert stamps == sorted(stamps)
    assert all(e["timestamp"].endswith("Z") for e in events)
    ids = [e["messageId"] for e in events]
    assert len(set(ids)) == len(ids)
    start = int(DEFAULT_START.timestamp() * 1000)
    assert start <= stamps[0] and stamps[-1] < start + 5 * DAY_MS


def test_start_moves_event_time() -> None:
    start = datetime(2025, 3, 1, tzinfo=UTC)
    first = next(generate(accounts=3, days=1, seed=2, start=start))
    assert first["timestamp"].startswith("2025-03-01T")


def test_every_good_event_parses_and_resolves_to_its_account() -> None:
    events = list(generate(accounts=24, days=3, seed=5))
    plans = {p.account_id for p in plan_accounts(accounts=24, days=3, seed=5)}
    joined: dict[str, str] = {}
    no_context = 0
    for e in events:
        parsed = parse_event(json.dumps(e))
        assert isinstance(parsed, Event), (parsed, e)
        assert parsed.message_id == e["messageId"]
        assert parsed.user_id == e["userId"]
        if parsed.type is EventType.GROUP:
            assert parsed.account_id in plans
            joined[e["userId"]] = e["groupId"]
        else:
            # every user joins (group call) before anything else it does
            assert e["userId"] in joined, e
            if parsed.type is EventType.TRACK:
                if parsed.account_id is None:
                    no_context += 1
                else:
                    assert parsed.account_id == joined[e["userId"]]
    assert no_context > 0  # some accounts rely on the resolver (earlier group call)


def test_default_mix_covers_every_persona_in_the_first_accounts() -> None:
    five = {p.persona for p in plan_accounts(accounts=5)}
    assert five >= REQUIRED
    forty = Counter(p.persona for p in plan_accounts(accounts=40))
    assert set(forty) == set(Persona)
    assert forty[Persona.QUALIFIER] >= 10
    assert len({p.account_id for p in plan_accounts(accounts=40)}) == 40


def test_personas_behave_as_the_team_chat_model_needs_on_a_single_day() -> None:
    """One simulated day (the CLI default) already shows qualifiers, the free limit, pricing
    views and too-small teams, judged with the model's own thresholds."""
    plans = plan_accounts(accounts=10, days=1, seed=7)
    by_acc = _by_account(list(generate(accounts=10, days=1, seed=7)))
    for plan in plans:
        evs = by_acc[plan.account_id]
        names = Counter(e.get("event") for e in evs if e["type"] == "track")
        storage = sum(e["properties"]["size_mb"] for e in evs if e.get("event") == "File Uploaded")
        employees = {e["traits"]["employees"] for e in evs if e["type"] == "group"}
        assert employees == {plan.employees}
        score = (
            30 * (names["Onboarding Completed"] > 0)
            + 40 * (names["Message Sent"] >= 5)
            + 50 * (names["Invite Sent"] >= 1)
            + min(40, names["Message Sent"] // 100 * 5)
        )
        qualifies = score >= 100 and plan.employees >= 10
        if plan.persona in (Persona.QUALIFIER, Persona.GOES_QUIET):
            assert qualifies, (plan, names)
        elif plan.persona is Persona.TINY_TEAM:
            assert score >= 100 and plan.employees < 10, (plan, names)
        else:
            assert not qualifies, (plan, names)
        if plan.persona is Persona.FREE_LIMIT:
            assert storage >= 4500
        else:
            assert storage < 4500
        if plan.persona is Persona.WINDOW_SHOPPER:
            assert names["Pricing Viewed"] >= 1


def test_window_shoppers_view_pricing_and_titles_include_decision_makers() -> None:
    plans = plan_accounts(accounts=20, days=10, seed=7)
    by_acc = _by_account(list(generate(accounts=20, days=10, seed=7)))
    for plan in plans:
        if plan.persona is Persona.WINDOW_SHOPPER:
            views = [e for e in by_acc[plan.account_id] if e.get("event") == "Pricing Viewed"]
            assert len(views) >= 2, plan.account_id
    titles = {
        e["traits"]["title"] for evs in by_acc.values() for e in evs if e["type"] == "identify"
    }
    assert {"VP Sales", "Head of Marketing"} & titles
    big = [
        e
        for evs in by_acc.values()
        for e in evs
        if e.get("event") == "Meeting Hosted" and e["properties"]["participants"] >= 5
    ]
    assert big


def test_quiet_accounts_stop_early_enough_to_drop_out_inside_the_span() -> None:
    """Over 40 days, 'goes quiet' accounts qualify, then fall silent by day 5: their 30-day
    windows (messages, invites) expire at day ~35, while others keep the stream's time moving
    until day 40 — so the drop-out really happens within the generated events."""
    days = 40.0
    plans = plan_accounts(accounts=10, days=days, seed=7)
    events = list(generate(accounts=10, days=days, seed=7))
    by_acc = _by_account(events)
    start = int(DEFAULT_START.timestamp() * 1000)
    last_overall = _ms(events[-1]["timestamp"])
    assert last_overall > start + 39 * DAY_MS
    quiet = [p for p in plans if p.persona is Persona.GOES_QUIET]
    assert quiet
    for plan in quiet:
        stamps = [_ms(e["timestamp"]) for e in by_acc[plan.account_id]]
        assert max(stamps) < start + 5 * DAY_MS
        assert max(stamps) + 30 * DAY_MS < last_overall
        names = Counter(e.get("event") for e in by_acc[plan.account_id])
        assert names["Invite Sent"] >= 1 and names["Message Sent"] >= 5
    for plan in plans:
        if plan.persona is Persona.QUALIFIER:
            stamps = [_ms(e["timestamp"]) for e in by_acc[plan.account_id]]
            assert max(stamps) > start + 35 * DAY_MS  # qualifiers stay active


def test_quiet_after_knob() -> None:
    events = list(generate(accounts=2, days=10, seed=7, quiet_after=2.0))
    quiet = plan_accounts(accounts=2, days=10, seed=7)[1]
    assert quiet.persona is Persona.GOES_QUIET
    start = int(DEFAULT_START.timestamp() * 1000)
    mine = _by_account(events)[quiet.account_id]
    assert mine and max(_ms(e["timestamp"]) for e in mine) < start + 2 * DAY_MS


def test_bad_events_are_rejected_for_the_reason_they_were_built_with() -> None:
    items = list(labelled(accounts=10, days=2, seed=9, bad_ratio=0.2))
    bad = [(item, kind) for item, kind in items if kind is not None]
    assert {kind for _, kind in bad} == set(BadKind)
    for item, kind in bad:
        raw = item if isinstance(item, str) else json.dumps(item)
        parsed = parse_event(raw)
        assert isinstance(parsed, Reject), (kind, item)
        assert parsed.reason.value == kind.value, (kind, parsed, item)
    share = len(bad) / len(items)
    assert 0.1 < share < 0.25


def test_bad_events_do_not_change_the_good_ones() -> None:
    clean = list(generate(accounts=8, days=2, seed=3))
    noisy = [i for i, k in labelled(accounts=8, days=2, seed=3, bad_ratio=0.3) if k is None]
    assert noisy == clean
    no_json = [
        line for line in lines(accounts=8, days=2, seed=3, bad_ratio=0.3) if not _is_json(line)
    ]
    assert no_json  # lines() carries the not-JSON kind; generate() cannot


def _is_json(line: str) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def test_cli_writes_file_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    result = CliRunner().invoke(
        simulate,
        ["--accounts", "5", "--days", "1", "--seed", "7", "--bad-ratio", "0", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    rows = out.read_text().splitlines()
    assert rows == list(lines(accounts=5, days=1, seed=7))
    assert f"{len(rows)} events" in result.output


def test_cli_stdout_with_bad_ratio() -> None:
    result = CliRunner().invoke(
        simulate, ["--accounts", "4", "--days", "1", "--bad-ratio", "0.5", "--out", "-"]
    )
    assert result.exit_code == 0, result.output
    rows = [r for r in result.stdout.splitlines() if r and not r.startswith("simulated")]
    rejects = [r for r in rows if isinstance(parse_event(r), Reject)]
    assert len(rejects) > len(rows) / 5
