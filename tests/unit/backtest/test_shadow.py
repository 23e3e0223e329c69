"""Shadow models (`streams.scoring.shadow`), through the backtest: a shadow is the candidate
deciding beside the live model without changing it, equal to a backtest of the candidate, and
its promotion carries its decisions over."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from click.testing import CliRunner

from streams.backtest.runner import Backtest
from streams.cli import main
from streams.events.timestamps import iso_to_epoch_ms
from streams.io.simulate import generate
from streams.scoring.shadow import ShadowStart
from streams.scoring.switch import IncompatibleModel, ModelSwitch
from streams.state.account import StateCodec
from tests.unit.backtest.test_switch import V1, V2
from tests.unit.scoring.util import DAY, FIXED_NOW, HOUR, T0, iso, model, track, validate

V3 = V2.replace("version: 2", "version: 3").replace('when: "score >= 70"', 'when: "score >= 50"')
# A lower bar and a far lower exit: a PQL it keeps is one the live model would not re-qualify.
STICKY = V2.replace('exit: "score < 60"', 'exit: "score < 30"')


def _bt(
    events: list[dict[str, Any]],
    live: str,
    shadows: list[tuple[int, str]] = [],  # noqa: B006 - read only
    switches: list[tuple[int, str]] = [],  # noqa: B006 - read only
    until: int | None = None,
    backfill_from: int | None = None,
) -> tuple[Backtest, list[dict[str, Any]], list[dict[str, Any]]]:
    """A backtest of `events` under `live`: (it, its transitions, its shadows')."""
    out: list[dict[str, Any]] = []
    shadow_out: list[dict[str, Any]] = []
    bt = Backtest(
        model(live),
        sink=out.append,
        now_ms=lambda: FIXED_NOW,
        received_by_ms=None,
        switches=[ModelSwitch(at, model(text)) for at, text in switches],
        shadows=[ShadowStart(at, model(text)) for at, text in shadows],
        shadow_sink=shadow_out.append,
        backfill_from_ms=backfill_from,
    )
    for i, obj in enumerate(events):
        bt.feed_line(json.dumps(obj).encode(), i + 1)
    bt.finish(until)
    for t in out + shadow_out:
        validate(t)
    return bt, out, shadow_out


def _history(seed: int, days: float = 12) -> tuple[list[dict[str, Any]], int]:
    """A simulated history of 40 accounts, time-sorted, and its first instant."""
    events = sorted(generate(accounts=40, days=days, seed=seed), key=lambda e: e["timestamp"])
    start = iso_to_epoch_ms(events[0]["timestamp"])
    assert start is not None
    return events, start


def _ms(t: dict[str, Any]) -> int:
    ms = iso_to_epoch_ms(t["occurred_at"])
    assert ms is not None
    return ms


@pytest.mark.parametrize("seed", [3, 11])
def test_a_shadow_from_the_start_is_a_backtest_of_the_candidate(seed: int) -> None:
    events, _ = _history(seed)
    _, live, shadow = _bt(events, V1, shadows=[(0, V2)])
    _, alone, _ = _bt(events, V2)
    _, live_alone, _ = _bt(events, V1)
    assert shadow and shadow == alone  # every field, ids and effective_from included
    assert live == live_alone  # the live model decides as if no shadow ran beside it
    assert {t["model"]["version"] for t in live} == {1}


@pytest.mark.parametrize("seed", [3, 11])
def test_a_shadow_started_later_is_the_switch_to_it_from_then_on(seed: int) -> None:
    events, start = _history(seed)
    at = start + 5 * DAY + 12345
    _, live, shadow = _bt(events, V1, shadows=[(at, V2)])
    _, switched, _ = _bt(events, V1, switches=[(at, V2)])
    _, live_alone, _ = _bt(events, V1)
    assert live == live_alone
    after = [t for t in switched if _ms(t) >= at]
    assert any(t["trigger"] == "model_change" for t in after)
    assert shadow == after
    assert all(_ms(t) >= at and t["model"]["effective_from"] for t in shadow)


def test_two_shadows_run_side_by_side() -> None:
    events, start = _history(5)
    at = start + 3 * DAY
    _, live, shadow = _bt(events, V1, shadows=[(at, V2), (0, V3)])
    _, v2_from_at, _ = _bt(events, V1, switches=[(at, V2)])
    _, v3_alone, _ = _bt(events, V3)
    assert [t for t in shadow if t["model"]["version"] == 3] == v3_alone
    assert [t for t in shadow if t["model"]["version"] == 2] == [
        t for t in v2_from_at if _ms(t) >= at
    ]
    assert live == _bt(events, V1)[1]


def test_promotion_makes_the_shadow_live_where_it_was() -> None:
    events, start = _history(7)
    s, t_promote = start + 2 * DAY, start + 6 * DAY
    promoted_bt, live, shadow = _bt(
        events, V1, shadows=[(s, STICKY)], switches=[(t_promote, STICKY)]
    )
    shadow_bt, _, shadow_only = _bt(events, V1, shadows=[(s, STICKY)])
    # The shadow's topic ends at the promotion; the live model goes on exactly as the shadow
    # would have (same decisions, same ids: only `effective_from` tells them apart).
    assert shadow == [t for t in shadow_only if _ms(t) < t_promote]
    after = [t for t in live if _ms(t) >= t_promote and t["trigger"] != "model_change"]
    assert [t["transition_id"] for t in after] == [
        t["transition_id"]
        for t in shadow_only
        if _ms(t) >= t_promote and t["trigger"] != "model_change"
    ]
    assert after and all(t["model"]["version"] == 2 for t in after)
    # At the promotion the live decisions became the shadow's.
    changed = [t for t in live if _ms(t) == t_promote and t["trigger"] == "model_change"]
    assert changed
    for account, state in promoted_bt.states.items():
        theirs = shadow_bt.states[account].shadows[2]
        assert (state.pql, state.segments) == (theirs.pql, theirs.segments), account
        assert state.shadows == {}


def test_a_promoted_shadow_keeps_its_own_status_where_a_plain_switch_would_not() -> None:
    """A plain switch decides from the live status; a promoted shadow keeps its own. Account
    a scores 70 on day 0 (a PQL for the shadow, not for the live model), then 40 from day 7
    on: above the shadow's exit bar, below its qualify bar. Promoted on day 7.5, it stays a
    PQL, as the shadow showed; a plain switch there would not make it one."""
    events = [
        track("Message Sent", T0 + i * HOUR, user="a1", account="a", mid=f"m{i}") for i in (1, 2, 3)
    ] + [
        track("Message Sent", T0 + 6 * DAY, user="a1", account="a", mid="m4"),
        track("Message Sent", T0 + 6 * DAY + HOUR, user="a2", account="a", mid="m5"),
    ]
    s, t_promote = T0, T0 + 7 * DAY + 12 * HOUR
    promoted_bt, promoted, shadow = _bt(
        events, V1, shadows=[(s, STICKY)], switches=[(t_promote, STICKY)], until=t_promote
    )
    plain_bt, plain, _ = _bt(events, V1, switches=[(t_promote, STICKY)], until=t_promote)

    def pql(ts: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [
            (t["kind"], t["score"], t["trigger"], _ms(t))
            for t in ts
            if t["kind"] in ("qualified", "disqualified")
        ]

    assert pql(shadow) == [("qualified", 70, "event", T0 + 3 * HOUR)]
    assert promoted_bt.states["a"].score == plain_bt.states["a"].score == 40
    assert promoted_bt.states["a"].pql and not plain_bt.states["a"].pql
    assert pql(promoted) == [("qualified", 40, "model_change", t_promote)]
    assert pql(plain) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (V1, "must be after the live one's"),
        (
            V2.replace("window: 7d}\n  seats", "window: 3d}\n  seats"),
            "signal 'msgs' changed.*a shadow reads the live model's state",
        ),
        (V2.replace("name: chat", "name: other"), "name changed"),
    ],
)
def test_a_shadow_that_cannot_follow_the_live_model_is_refused(text: str, message: str) -> None:
    with pytest.raises(IncompatibleModel, match=message):
        Backtest(model(V1), shadows=[ShadowStart(0, model(text))], received_by_ms=None)


def test_shadow_decisions_are_kept_with_the_state() -> None:
    events, _ = _history(3)
    bt, _, _ = _bt(events, V1, shadows=[(0, V2)])
    codec = StateCodec(bt.scorer.model_tag)
    for state in bt.states.values():
        again = codec.decode(codec.encode(state))
        assert again is not None and again.shadows == state.shadows
        assert set(again.shadows) == {2}
    # A state written before shadows existed (and the fields after them: the playbook's
    # alerts, the recent transitions, the funnel's instants) decodes, with none.
    state = next(iter(bt.states.values()))
    fields = msgspec.msgpack.decode(codec.encode(state))
    old = codec.decode(msgspec.msgpack.encode(fields[:-6]))
    assert old is not None and old.shadows == {} and old.signals == state.signals


def _timeless(transitions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Without `detected_at` (the wall clock of the run)."""
    return [{k: v for k, v in t.items() if k != "detected_at"} for t in transitions]


def _read(path: Path) -> list[dict[str, Any]]:
    return _timeless([json.loads(line) for line in path.read_text().splitlines()])


def test_cli_shadow(tmp_path: Path) -> None:
    events, start = _history(3)
    at = start + 4 * DAY
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    files = {}
    for name, text in (("v1", V1), ("v2", V2), ("v3", V3)):
        files[name] = tmp_path / f"{name}.yaml"
        files[name].write_text(text)
    out, shadow_out, report = (tmp_path / n for n in ("out.jsonl", "shadow.jsonl", "r.json"))
    args = ["backtest", "--model", str(files["v1"]), "--received-by", "never", "--quiet"]
    res = CliRunner().invoke(
        main,
        [
            *args,
            "--shadow",
            f"{iso(at)}={files['v2']}",
            "--shadow-out",
            str(shadow_out),
            "--out",
            str(out),
            "--report",
            str(report),
            str(path),
        ],
    )
    assert res.exit_code == 0, res.output
    _, live, shadow = _bt(events, V1, shadows=[(at, V2)])
    assert _read(out) == _timeless(live)
    assert _read(shadow_out) == _timeless(shadow)
    summary = json.loads(report.read_text())
    assert summary["shadows"] == [
        {"at": iso(at), "model": "chat", "version": 2, "transitions": len(shadow)}
    ]
    assert "shadow v2" in res.output

    res = CliRunner().invoke(main, [*args, "--shadow", f"{iso(at)}={files['v1']}", str(path)])
    assert res.exit_code != 0 and "as a shadow" in res.output and "after the live" in res.output
    res = CliRunner().invoke(main, [*args, "--shadow-out", str(shadow_out), str(path)])
    assert res.exit_code != 0 and "without any --shadow" in res.output
    # Promotion offline: the shadow, then a switch to the same file.
    res = CliRunner().invoke(
        main,
        [
            *args,
            "--shadow",
            f"{iso(at)}={files['v3']}",
            "--switch-model",
            f"{iso(at + DAY)}={files['v3']}",
            "--out",
            str(out),
            str(path),
        ],
    )
    assert res.exit_code == 0, res.output
    _, promoted, _ = _bt(events, V1, shadows=[(at, V3)], switches=[(at + DAY, V3)])
    assert _read(out) == _timeless(promoted)
