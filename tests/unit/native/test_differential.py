"""The compiled core (`streams.native`, mypyc) against the pure-Python engine it is compiled
from: hypothesis draws models (windows with and without half-lives, integer and fractional
points, graded points, traits, segments) and event streams (users joining accounts, traits,
fractional sums, duplicates, late and out-of-order arrivals); both engines replay every case in
a process of their own, and the transitions and each account's state bytes must be identical.
The build is made here if `make native` has not made it (a failed build fails the test)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams import native
from streams.io.simulate import generate
from streams.scoring.transitions import iso_ms
from tests.unit.backtest.test_shards import backtest_outputs

ROOT = Path(__file__).resolve().parents[3]
T0 = 1_767_225_600_000  # 2026-01-01
HOUR = 3_600_000
DAY = 24 * HOUR


@pytest.fixture(scope="module")
def compiled() -> Path:
    built = native.build(quiet=True)
    assert built is not None, "the compiled core did not build: `python -m streams.native build`"
    return built


@st.composite
def models(draw: st.DrawFn) -> str:
    window = draw(st.sampled_from(["1d", "3d", "7d"]))
    half = draw(st.sampled_from(["", ", half_life: 1d", ", half_life: 2d"]))
    points = st.one_of(st.integers(1, 60), st.sampled_from([2.5, 7.25, 12.5, 0.1]))
    rules = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["msgs", "size", "seats", "days", "onboarded", "per"]))
        if kind == "per":
            rules.append(
                f"  - {{per: msgs, every: {draw(st.integers(1, 5))}, "
                f"points: {draw(points)}, max: {draw(st.integers(5, 80))}}}"
            )
        elif kind == "onboarded":
            rules.append(f'  - {{when: "onboarded", points: {draw(points)}}}')
        else:
            rules.append(
                f'  - {{when: "{kind} >= {draw(st.integers(1, 6))}", points: {draw(points)}}}'
            )
    bar = draw(st.integers(10, 90))
    icp = draw(st.sampled_from(["", " and employees >= 10"]))
    return "\n".join(
        [
            "name: diff",
            f"version: {draw(st.integers(1, 9))}",
            "signals:",
            f'  msgs: {{count: "Message Sent", window: {window}{half}}}',
            f'  size: {{sum: "File Uploaded", property: size, window: {window}{half}}}',
            "  seats: {distinct_users: any, window: 7d}",
            "  days: {active_days: any, window: 7d}",
            '  onboarded: {ever: "Onboarding Completed"}',
            "  employees: {trait: employees}",
            '  vps: {users_with_trait: title, in: ["VP"]}',
            "score:",
            *rules,
            "qualify:",
            f'  when: "score >= {bar}{icp}"',
            f'  exit: "score < {max(bar - draw(st.integers(0, 15)), 1)}"',
            "segments:",
            f'  busy: "msgs >= {draw(st.integers(2, 8))}"',
            f'  heavy: "size >= {draw(st.sampled_from([3, 10.5, 40]))}"',
            '  exec: "vps >= 1"',
            "",
        ]
    )


@st.composite
def histories(draw: st.DrawFn) -> list[dict[str, Any]]:
    items = []
    for i in range(draw(st.integers(1, 60))):
        account = draw(st.sampled_from(["a", "b", "c"]))
        user = draw(st.sampled_from(["u1", "u2", "u3", "u4"]))
        ts = T0 + draw(st.integers(0, 6 * DAY))
        what = draw(
            st.sampled_from(
                [
                    "Message Sent",
                    "Message Sent",
                    "File Uploaded",
                    "Onboarding Completed",
                    "group",
                    "identify",
                ]
            )
        )
        mid = f"e{i}" if draw(st.integers(0, 9)) else "e0"  # some duplicates
        base = {"userId": user, "timestamp": iso_ms(ts), "messageId": mid}
        if what == "group":
            obj = base | {
                "type": "group",
                "groupId": account,
                "traits": {"employees": draw(st.sampled_from([5, 50, 12.5]))},
            }
        elif what == "identify":
            obj = base | {
                "type": "identify",
                "traits": {"title": draw(st.sampled_from(["VP", "Dev"]))},
            }
        else:
            size = draw(
                st.one_of(
                    st.integers(0, 20), st.floats(0, 20, allow_nan=False).map(lambda x: round(x, 3))
                )
            )
            obj = base | {
                "type": "track",
                "event": what,
                "context": {"groupId": account},
                "properties": {"size": size},
            }
        delay = draw(st.sampled_from([0, 0, 0, 5 * 60_000, 2 * HOUR, 20 * HOUR]))
        items.append((ts + delay, i, obj))
    items.sort(key=lambda x: (x[0], x[1]))
    return [obj for _, _, obj in items]


# The team-chat example (playbook, decay-free) and the decaying one over simulated traffic.
SIMULATED = [
    (
        (ROOT / "examples" / name).read_text(),
        list(generate(accounts=8, days=10, seed=seed, bad_ratio=0.02)),
        HOUR,
        True,
    )
    for name, seed in (("team-chat.yaml", 4), ("decaying.yaml", 5))
]


def _run(engine: str, cases: Path, out: Path) -> list[bytes]:
    env = {**os.environ, "PQL_ENGINE": engine}
    done = subprocess.run(
        [sys.executable, "-m", "tests.unit.native.runner", str(cases), str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = out.read_bytes().splitlines()
    assert orjson.loads(lines[0])["engine"].startswith(engine), lines[0]
    return lines[1:]


@settings(
    max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    cases=st.lists(
        st.tuples(models(), histories(), st.sampled_from([0, HOUR]), st.booleans()),
        min_size=25,
        max_size=25,
    )
)
def test_the_compiled_core_is_the_pure_one_byte_for_byte(
    compiled: Path, tmp_path_factory: pytest.TempPathFactory, cases: list[Any]
) -> None:
    tmp = tmp_path_factory.mktemp("diff")
    path = tmp / "cases.jsonl"
    cases = [*cases, *SIMULATED]  # and two cases sure to decide a lot
    path.write_bytes(
        b"".join(
            orjson.dumps(
                {"model": m, "events": ev, "disorder": d, "until": T0 + 20 * DAY if late else None}
            )
            + b"\n"
            for m, ev, d, late in cases
        )
    )
    pure = _run("python", path, tmp / "pure.jsonl")
    fast = _run("compiled", path, tmp / "compiled.jsonl")
    assert len(pure) == len(fast) == len(cases)
    for i, (p, f) in enumerate(zip(pure, fast, strict=True)):
        assert p == f, (
            f"case {i} differs:\nmodel:\n{cases[i][0]}\n"
            f"pure:     {p[:600]!r}\ncompiled: {f[:600]!r}"
        )
    assert sum(len(orjson.loads(p)["transitions"]) for p in pure[-2:]) > 25


def test_a_stale_or_missing_build_is_not_used(tmp_path: Path) -> None:
    """A build is used only for the sources it was compiled from; without one `auto` says why
    and runs pure Python, and `compiled` refuses to start."""
    env = {**os.environ, "PQL_NATIVE_DIR": str(tmp_path / "none")}
    probe = [sys.executable, "-m", "streams.native", "status"]
    auto = subprocess.run(
        probe, cwd=ROOT, env=env | {"PQL_ENGINE": "auto"}, capture_output=True, text=True
    )
    assert auto.returncode == 0 and auto.stdout.startswith("python (no compiled core"), auto
    forced = subprocess.run(
        probe, cwd=ROOT, env=env | {"PQL_ENGINE": "compiled"}, capture_output=True, text=True
    )
    assert forced.returncode != 0 and "make native" in forced.stderr, forced.stderr[-500:]
    # A build for other sources (another digest) is ignored.
    (tmp_path / "none" / "0123456789abcdef0123" / "streams").mkdir(parents=True)
    (tmp_path / "none" / "0123456789abcdef0123" / "READY").write_text("1\n")
    again = subprocess.run(
        probe, cwd=ROOT, env=env | {"PQL_ENGINE": "auto"}, capture_output=True, text=True
    )
    assert again.stdout.startswith("python (no compiled core"), again


def test_the_build_is_used_when_it_matches(compiled: Path) -> None:
    env = {**os.environ, "PQL_ENGINE": "auto"}
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import streams.scoring.engine as e, streams.native as n; "
            "print(e.__file__); print(n.ENGINE)",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    where, engine = out.stdout.splitlines()
    assert where.startswith(str(compiled)) and where.endswith(".so"), out
    assert engine.startswith("compiled (mypyc"), engine


def test_a_sharded_replay_on_the_compiled_core_is_the_pure_single_one(
    compiled: Path, tmp_path: Path
) -> None:
    """`pql backtest --jobs 2` as users run it (compiled core, shards' parts through JSON)
    writes what one pure-Python process writes."""
    events = tmp_path / "events.jsonl"
    events.write_bytes(
        b"".join(orjson.dumps(e) + b"\n" for e in generate(accounts=10, days=6, seed=21))
    )
    outs = []
    for engine, jobs in (("python", "1"), ("compiled", "2")):
        out, report = tmp_path / f"{engine}.jsonl", tmp_path / f"{engine}.json"
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "streams.cli",
                "backtest",
                "--model",
                str(ROOT / "examples" / "team-chat.yaml"),
                str(events),
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
            cwd=ROOT,
            env={**os.environ, "PQL_ENGINE": engine},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        outs.append(backtest_outputs(out, report))
    assert outs[0][0] and outs[0] == outs[1]
