"""`pql backtest --jobs N` (`streams.backtest.shards`): sharded over processes by account, a
replay gives exactly what one process gives — the transitions in the same order with the same
payloads, the shadow transitions, the summary — over histories with every kind of block
(rejected lines, users in groups, late and duplicated events, window expiries, a switch over
kept state, a switch over backfilled signals, a shadow)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.backtest.replay import run_backtest
from streams.backtest.runner import Backtest
from streams.backtest.shards import ShardFailed, shard_of
from streams.cli import main
from streams.events.timestamps import iso_to_epoch_ms
from streams.io.simulate import generate
from streams.model.loader import parse_model
from streams.scoring.shadow import ShadowStart
from streams.scoring.switch import ModelSwitch
from streams.scoring.transitions import iso_ms

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "team-chat.yaml"
V3 = EXAMPLE.read_text()
# v4: the same signals, a lower bar and a new segment (a switch over kept state; also run as a
# shadow).
V4 = (
    V3.replace("version: 3 ", "version: 4 ")
    .replace("score >= 100 and employees >= 10", "score >= 60")
    .replace("segments:", 'segments:\n  team: "seats >= 2"', 1)
)
# v5: messages over 14 days and a new signal: a switch over backfilled signals.
V5 = (
    V4.replace("version: 4 ", "version: 5 ")
    .replace('{count: "Message Sent", window: 30d}', '{count: "Message Sent", window: 14d}')
    .replace("  onboarded:", '  uploads:       {count: "File Uploaded", window: 7d}\n  onboarded:')
    .replace(
        "score:                             # points while a condition holds\n",
        'score:\n  - {when: "uploads >= 3", points: 20}\n',
    )
)


def _history(tmp: Path, seed: int, accounts: int = 30, days: float = 12) -> Path:
    events = list(generate(accounts=accounts, days=days, seed=seed, bad_ratio=0.02))
    lines = [orjson.dumps(e) for e in events]
    # Every tenth line twice, and a few lines far out of order (the late path).
    lines = [x for i, line in enumerate(lines) for x in ([line] * (2 if i % 10 == 0 else 1))]
    lines += lines[100:103]
    # Then one event 40 days on: one advance passes many accounts' expiries, at many instants.
    last_ms, i = max(
        (ms, i)
        for i, e in enumerate(events)
        if isinstance(e.get("timestamp"), str) and (ms := iso_to_epoch_ms(e["timestamp"]))
    )
    last = events[i]
    last = dict(last, messageId="after-the-gap")
    last["timestamp"] = iso_ms(last_ms + 40 * 86_400_000)
    lines.append(orjson.dumps(last))
    path = tmp / f"history-{seed}.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _replay(path: Path, jobs: int, changes: bool) -> tuple[list[bytes], list[bytes], dict]:
    out: list[bytes] = []
    shadow: list[bytes] = []
    first = iso_to_epoch_ms(orjson.loads(path.read_bytes().split(b"\n", 1)[0])["timestamp"])
    assert first is not None
    day = 86_400_000
    kw: dict[str, Any] = {}
    if changes:
        kw = {
            "switches": [
                ModelSwitch(first + 4 * day, parse_model(V4)),
                ModelSwitch(first + 8 * day + 1234, parse_model(V5)),
            ],
            "shadows": [ShadowStart(first + 2 * day, parse_model(V4))],
        }
    summary = run_backtest(
        parse_model(V3),
        [path],
        sink=lambda t: out.append(_stable(t)),
        shadow_sink=lambda t: shadow.append(_stable(t)),
        received_by_ms=None,
        conversion_event="Plan Upgraded",
        jobs=jobs,
        **kw,
    )
    for wall in ("elapsed_seconds", "events_per_second"):
        summary.pop(wall)
    return out, shadow, summary


def _stable(t: dict[str, Any]) -> bytes:
    t.pop("detected_at")  # the wall clock
    return orjson.dumps(t)


def backtest_outputs(out: Path, report: Path | None = None) -> tuple[list[Any], dict[str, Any]]:
    """A backtest's --out transitions and --report summary, less what the wall clock sets."""
    lines = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    for t in lines:
        t.pop("detected_at")
    body: dict[str, Any] = orjson.loads(report.read_bytes()) if report is not None else {}
    for wall in ("elapsed_seconds", "events_per_second"):
        body.pop(wall, None)
    return lines, body


@pytest.mark.parametrize("changes", [False, True], ids=["one-model", "switches-and-shadow"])
def test_sharded_replays_are_the_single_process_replay(tmp_path: Path, changes: bool) -> None:
    path = _history(tmp_path, seed=5)
    one = _replay(path, 1, changes)
    transitions, shadows, summary = one
    assert len(transitions) > 50 and summary["events_rejected"] and summary["duplicates_skipped"]
    assert summary["events_out_of_order"] and summary["accounts_seen"] == 30
    if changes:
        assert shadows and {s["version"] for s in summary["switches"]} == {4, 5}
        assert summary["switches"][1]["backfill"]["changes"]
        assert any(b'"model_change"' in t for t in transitions)
    for jobs in (2, 3):
        assert _replay(path, jobs, changes) == one, f"{jobs} shards"


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 10_000), jobs=st.integers(2, 4), accounts=st.integers(3, 25))
def test_any_history_any_shard_count(tmp_path: Path, seed: int, jobs: int, accounts: int) -> None:
    path = _history(tmp_path, seed, accounts=accounts, days=6)
    assert _replay(path, jobs, True) == _replay(path, 1, True)


def test_every_account_is_in_exactly_one_shard() -> None:
    accounts = [f"acct-{i}" for i in range(2000)]
    for n in (2, 3, 8):
        counts = [sum(shard_of(a, n) == i for a in accounts) for i in range(n)]
        assert sum(counts) == 2000 and min(counts) > 2000 / n * 0.8, counts


def test_a_failing_shard_fails_the_replay_with_its_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _history(tmp_path, seed=1, accounts=5, days=2)

    def broken(self: Backtest, until: int | None = None) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Backtest, "finish", broken)  # inherited by the forked shards
    with pytest.raises(ShardFailed, match=r"(?s)shard \d of 2 failed.*disk on fire"):
        run_backtest(parse_model(V3), [path], jobs=2, received_by_ms=None)


def test_stdin_cannot_be_sharded(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not -"):
        run_backtest(parse_model(V3), ["-"], jobs=2)


def test_cli_jobs_writes_what_one_process_writes(tmp_path: Path) -> None:
    path = _history(tmp_path, seed=9, accounts=12, days=5)
    outs = []
    for jobs in ("1", "2"):
        out = tmp_path / f"out-{jobs}.jsonl"
        report = tmp_path / f"report-{jobs}.json"
        r = CliRunner().invoke(
            main,
            [
                "backtest",
                "--model",
                str(EXAMPLE),
                str(path),
                "--out",
                str(out),
                "--report",
                str(report),
                "--received-by",
                "never",
                "--jobs",
                jobs,
                "--quiet",
            ],
        )
        assert r.exit_code == 0, r.output
        outs.append(backtest_outputs(out, report))
    assert outs[0][0] and outs[0] == outs[1]


def _cli(*args: str) -> str:
    r = CliRunner().invoke(main, list(args))
    assert r.exit_code == 0, r.output
    return r.output


def test_shards_run_apart_then_merged_are_one_process(tmp_path: Path) -> None:
    """`pql backtest --shard I/N` on any machine, then `pql merge-shards`: the same files as one
    process writes (transitions, shadow transitions, report), switch and shadow included."""
    path = _history(tmp_path, seed=11, accounts=15, days=9)
    v4, v5 = tmp_path / "v4.yaml", tmp_path / "v5.yaml"
    v4.write_text(V4)
    v5.write_text(V5)
    first = iso_to_epoch_ms(orjson.loads(path.read_bytes().split(b"\n", 1)[0])["timestamp"])
    assert first is not None
    day = 86_400_000
    changes = ["--switch-model", f"{iso_ms(first + 6 * day)}={v5}"]
    changes += ["--shadow", f"{iso_ms(first + 2 * day)}={v4}", "--received-by", "never"]
    common = ["backtest", "--model", str(EXAMPLE), str(path), *changes, "--quiet"]
    one = tmp_path / "one"
    one.mkdir()
    _cli(
        *common,
        "--out",
        str(one / "t.jsonl"),
        "--shadow-out",
        str(one / "s.jsonl"),
        "--report",
        str(one / "r.json"),
    )
    parts = tmp_path / "parts"
    for i in range(3):
        said = _cli(*common, "--shard", f"{i}/3", "--shard-dir", str(parts))
        assert f"shard {i} of 3 written" in said
    merged = tmp_path / "merged"
    merged.mkdir()
    _cli(
        "merge-shards",
        str(parts),
        "--out",
        str(merged / "t.jsonl"),
        "--shadow-out",
        str(merged / "s.jsonl"),
        "--report",
        str(merged / "r.json"),
    )

    def read(d: Path) -> tuple[list[Any], list[Any], dict[str, Any]]:
        transitions, report = backtest_outputs(d / "t.jsonl", d / "r.json")
        return transitions, backtest_outputs(d / "s.jsonl")[0], report

    expected = read(one)
    assert expected[0] and expected[1] and expected[2]["switches"] and expected[2]["shadows"]
    assert read(merged) == expected


def test_merging_needs_every_shard_and_a_shard_only_its_part(tmp_path: Path) -> None:
    path = _history(tmp_path, seed=2, accounts=6, days=3)
    common = ["backtest", "--model", str(EXAMPLE), str(path), "--received-by", "never", "--quiet"]
    parts = tmp_path / "parts"
    for i in (0, 1):
        _cli(*common, "--shard", f"{i}/3", "--shard-dir", str(parts))
    r = CliRunner().invoke(main, ["merge-shards", str(parts)])
    assert r.exit_code != 0 and "no result of shard 2 of 3" in r.output
    for bad, why in [
        (["--shard", "3/3", "--shard-dir", str(parts)], "0 <= I < N"),
        (["--shard", "0/3"], "--shard-dir"),
        (["--shard", "0/3", "--shard-dir", str(parts), "--out", "x.jsonl"], "merge-shards"),
        (["--shard-dir", str(parts)], "without --shard"),
    ]:
        r = CliRunner().invoke(main, [*common, *bad])
        assert r.exit_code == 2 and why in r.output, (bad, r.output)
