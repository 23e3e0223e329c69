"""Switches to a model with other signals (`streams.scoring.backfill`), through the backtest:
the new signals are built from history beside the live model, the switch goes over them exactly
as over kept state, and signals backfilled from a shorter history say they are partial."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from streams.backtest.runner import Backtest
from streams.cli import main
from streams.events.timestamps import iso_to_epoch_ms
from streams.scoring.backfill import check_backfill
from streams.scoring.switch import IncompatibleModel
from streams.scoring.transitions import iso_ms
from tests.unit.backtest.test_shadow import _bt as shadow_bt
from tests.unit.backtest.test_shadow import _history, _ms
from tests.unit.backtest.test_switch import V1
from tests.unit.scoring.util import DAY, model

# v2 counts messages over 3 days instead of 7, and adds uploads (a 5-day window) and
# onboarding (no window); `seats` is unchanged, so it is carried over from the kept state.
V2 = (
    V1.replace("version: 1", "version: 2")
    .replace(
        'msgs: {count: "Message Sent", window: 7d}', 'msgs: {count: "Message Sent", window: 3d}'
    )
    .replace(
        "  seats: {distinct_users: any, window: 7d}\n",
        "  seats: {distinct_users: any, window: 7d}\n"
        '  files: {count: "File Uploaded", window: 5d}\n'
        '  onboarded: {ever: "Onboarding Completed"}\n',
    )
    .replace(
        "score:\n",
        'score:\n  - {when: "files >= 2", points: 40}\n  - {when: onboarded, points: 10}\n',
    )
)
# The same two definitions over the union of their signals, so one state serves both: the
# switch between them needs no backfill (the reference). `msgs` keeps v2's window in both,
# since the union cannot hold two signals of one name.
V1_ALL = V2.replace("version: 2", "version: 1").replace(
    '  - {when: "files >= 2", points: 40}\n  - {when: onboarded, points: 10}\n', ""
)
V2_ALL = V2
V1_3D = V1.replace(
    'msgs: {count: "Message Sent", window: 7d}', 'msgs: {count: "Message Sent", window: 3d}'
)


def _bt(
    events: list[dict[str, Any]],
    live: str,
    switches: list[tuple[int, str]] = [],  # noqa: B006 - read only
    until: int | None = None,
    backfill_from: int | None = None,
) -> tuple[Backtest, list[dict[str, Any]]]:
    bt, out, _ = shadow_bt(
        events, live, switches=switches, until=until, backfill_from=backfill_from
    )
    return bt, out


def _strip(t: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """The transition without `detected_at`, its signals narrowed to `names`."""
    out = {k: v for k, v in t.items() if k != "detected_at"}
    out["signals"] = {n: t["signals"][n] for n in names}
    return out


def test_what_a_backfill_switch_needs_and_refuses() -> None:
    changes = check_backfill(model(V1), model(V2))
    assert changes == [
        "new signal 'files'",
        "new signal 'onboarded'",
        "signal 'msgs' changed: count; events Message Sent; window 604800000 ms, bucket "
        "21600000 ms -> count; events Message Sent; window 259200000 ms, bucket 10800000 ms",
    ]
    assert check_backfill(model(V1), model(V1.replace("version: 1", "version: 2"))) == []
    with pytest.raises(IncompatibleModel, match="name changed"):
        check_backfill(model(V1), model(V2.replace("name: chat", "name: talk")))
    with pytest.raises(IncompatibleModel, match="older than the live"):
        check_backfill(model(V2), model(V1))
    trait = V2.replace(
        "  onboarded:", "  admins: {users_with_trait: role, in: [admin]}\n  onboarded:"
    )
    with pytest.raises(IncompatibleModel, match="reads other user traits"):
        check_backfill(model(V1), model(trait))


@pytest.mark.parametrize("seed", [3, 11])
def test_a_backfilled_switch_is_the_switch_over_a_state_that_always_had_the_signals(
    seed: int,
) -> None:
    """V1 -> V2 with a backfill gives what V1_ALL -> V2_ALL gives over kept state (the same
    definitions, with every signal kept from the start): same ids, kinds, scores, reasons;
    the transitions' signals differ only by those the union adds. V1 itself (7-day msgs) is
    not V1_ALL (3-day msgs), so before the switch V1_3D's decisions are the reference."""
    events, start = _history(seed)
    at = start + 5 * DAY + 12345
    bt, got = _bt(events, V1_3D, switches=[(at, V2)])
    _, ref = _bt(events, V1_ALL, switches=[(at, V2_ALL)])
    before = ["msgs", "seats"]
    after = ["msgs", "seats", "files", "onboarded"]
    assert any(t["trigger"] == "model_change" for t in got)
    assert [_strip(t, before) for t in got if _ms(t) < at] == [
        _strip(t, before) for t in ref if _ms(t) < at
    ]
    assert [_strip(t, after) for t in got if _ms(t) >= at] == [
        _strip(t, after) for t in ref if _ms(t) >= at
    ]
    assert all("partial_signals" not in t and "backfilled_from" not in t["model"] for t in got)
    assert bt.backfilled[2].states == {}  # handed over


@pytest.mark.parametrize("seed", [5])
def test_the_backfilled_state_is_the_new_models_own(seed: int) -> None:
    """At the switch each account's signals are those V2 alone has over the same history
    (7-day `msgs` of V1 is not carried over: its window changed)."""
    events, start = _history(seed, days=8)
    at = start + 6 * DAY
    before = [e for e in events if iso_to_epoch_ms(e["timestamp"]) < at]
    bt, _ = _bt(before, V1, switches=[(at, V2)], until=at)
    alone, _ = _bt(before, V2, until=at)
    assert bt.switched and bt.scorer.model.version == 2
    assert bt.states.keys() == alone.states.keys()
    for account, state in bt.states.items():
        assert bt.scorer.plan.values(state) == alone.scorer.plan.values(alone.states[account])


def test_backfilled_signals_are_partial_until_their_window_has_filled() -> None:
    events, start = _history(7, days=14)
    history_from = start + 4 * DAY  # what a retention of 10 days would have kept
    at = start + 9 * DAY
    _, got = _bt(events, V1, switches=[(at, V2)], backfill_from=history_from)
    new = [t for t in got if _ms(t) >= at]
    assert new, "no transition under v2"
    for t in new:
        ms = _ms(t)
        assert iso_to_epoch_ms(t["model"]["backfilled_from"]) == history_from
        expected = [
            name
            for name, window in (("msgs", 3 * DAY), ("files", 5 * DAY), ("onboarded", None))
            if window is None or ms < history_from + window
        ]
        assert t["partial_signals"] == expected  # `seats` is carried over: never partial
    assert {tuple(t["partial_signals"]) for t in new} >= {("onboarded",)}
    assert all("partial_signals" not in t for t in got if _ms(t) < at)


def test_cli_switch_with_a_backfill(tmp_path: Path) -> None:
    events, start = _history(3, days=6)
    hist = tmp_path / "h.jsonl"
    hist.write_text("".join(json.dumps(e) + "\n" for e in events))
    (tmp_path / "v1.yaml").write_text(V1)
    (tmp_path / "v2.yaml").write_text(V2)
    at = start + 4 * DAY
    out = tmp_path / "t.jsonl"
    result = CliRunner().invoke(
        main,
        [
            "backtest",
            str(hist),
            "--model",
            str(tmp_path / "v1.yaml"),
            "--switch-model",
            f"{iso_ms(at)}={tmp_path / 'v2.yaml'}",
            "--backfill-from",
            iso_ms(start + 2 * DAY),
            "--out",
            str(out),
            "--report",
            str(tmp_path / "r.json"),
            "--received-by",
            "never",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "r.json").read_text())
    backfill = summary["switches"][0]["backfill"]
    assert backfill["signals"] == ["msgs", "files", "onboarded"]
    assert backfill["from"] == iso_ms(start + 2 * DAY)
    assert len(backfill["changes"]) == 3
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert any("partial_signals" in t for t in lines)
