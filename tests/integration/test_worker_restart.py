"""At-least-once across restarts: the worker is stopped mid-stream with SIGTERM (clean stop), then
killed mid-stream with SIGKILL (crash), restarted each time on its data dir, and in the end no
transition is missing and every re-emitted one carries the same id and payload.

The input is a simulated stretch of 12 days where every call names its account (so the
comparison with `pql backtest` is not about the user-stage ordering limit, see
test_worker_parity), produced in two paced parts so a stream is flowing at each stop: the
first around the SIGTERM, the second around the SIGKILL. It includes transitions triggered by
time passing (stream time).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

from streams.io.simulate import generate
from tests.integration.worker_harness import (
    EXAMPLES,
    TopicReader,
    WorkerNames,
    Workers,
    assert_duplicates_identical,
    backtest,
    collect,
    diff_report,
    name_accounts,
    produce,
    produce_in_background,
    transition_key,
    wait_committed,
    workers,  # noqa: F401 - fixture
    write_jsonl,
)

MODEL = EXAMPLES / "team-chat.yaml"
# events/s: slow enough that each stop lands while input is still flowing (~6 s and ~12 s of
# stream), fast enough to finish soon.
FIRST_RATE = 100.0
SECOND_RATE = 200.0


def _distinct(reader: TopicReader) -> int:
    return len({t["transition_id"] for t in reader.transitions()})


def _wait_more(reader: TopicReader, than: int, timeout: float) -> int:
    """Until more than `than` distinct transitions were read; returns how many."""
    assert reader.wait_for(lambda _r: _distinct(reader) > than, timeout), (
        f"no new transition within {timeout:.0f} s (have {_distinct(reader)})"
    )
    return _distinct(reader)


def test_worker_restart(broker: object, workers: Workers, tmp_path: Path) -> None:  # noqa: F811
    bootstrap = workers.bootstrap
    events = name_accounts(generate(accounts=24, days=12, seed=11))
    half = len(events) // 5  # most transitions come early (signups): split so both matter
    first = write_jsonl(tmp_path / "first.jsonl", events[:half])
    second = write_jsonl(tmp_path / "second.jsonl", events[half:])
    expected = backtest(MODEL, first, second, out_dir=tmp_path)
    want_ids = {t["transition_id"] for t in expected}
    first_only = {t["transition_id"] for t in backtest(MODEL, first, out_dir=tmp_path)}
    assert any(t["trigger"] == "time" for t in expected), "the file should exercise stream time"
    assert 10 < len(first_only & want_ids) < len(want_ids) - 10, "both halves must matter"

    names = WorkerNames.unique("restart")
    names.create_topics(bootstrap)
    reader = workers.reader(names.output_topic)
    w = workers.start(MODEL, names)

    # 1. First half, paced; SIGTERM as soon as the worker is visibly busy with it.
    feeding = produce_in_background(bootstrap, names.input_topic, first, rate=FIRST_RATE)
    at_term = _wait_more(reader, 0, timeout=60)
    mid_stream = feeding.is_alive()
    started = time.monotonic()
    assert w.stop(signal.SIGTERM) == 0, f"unclean exit on SIGTERM:\n{w.log_tail()}"
    stop_s = time.monotonic() - started
    assert mid_stream, "SIGTERM came too late to be mid-stream (the first part was all sent)"

    # 2. Restart on the same data dir; second half; SIGKILL once it is visibly busy with it.
    w.start().wait_ready()
    feeding.join(120)
    feeding = produce_in_background(bootstrap, names.input_topic, second, rate=SECOND_RATE)
    late = want_ids - first_only  # transitions only the second half can cause
    assert reader.wait_for(
        lambda _r: bool(late & {t["transition_id"] for t in reader.transitions()}), timeout=60
    ), "no transition of the second half after the restart"
    at_kill = _distinct(reader)
    mid_stream = feeding.is_alive()
    w.kill()
    assert mid_stream, "SIGKILL came too late to be mid-stream (the second part was all sent)"

    # 3. Restart after the crash and let it finish.
    w.start().wait_ready(timeout=90)
    feeding.join(120)
    # After a SIGKILL the group waits out the dead member's session and partitions recover from
    # the changelog: quiet spells of several seconds are normal, so give up only after 20 s.
    got = collect(reader, expected, timeout=120, settle=w.settle, give_up_idle=20)

    assert {t["transition_id"] for t in got} == want_ids, diff_report(got, expected)
    assert {transition_key(t) for t in got} == {transition_key(t) for t in expected}
    dupes = assert_duplicates_identical(got)
    print(
        f"restart: {len(want_ids)} transitions, {dupes} re-emitted; SIGTERM at {at_term}, "
        f"stopped in {stop_s:.1f} s; SIGKILL at {at_kill}"
    )


def test_worker_restart_resumes_stream_time(
    broker: object,
    workers: Workers,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A clean restart after everything was read and committed, but before quiet accounts were
    advanced to the stream time already reached, must still drop them out: stream time is part
    of what a restart has to keep. (The first run holds accounts with a long --advance-idle, so
    the moment is not left to chance.)"""
    bootstrap = workers.bootstrap
    events = write_jsonl(
        tmp_path / "events.jsonl", name_accounts(generate(accounts=24, days=12, seed=11))
    )
    expected = backtest(MODEL, events, out_dir=tmp_path)
    by_time = {t["transition_id"] for t in expected if t["trigger"] == "time"}
    by_event = {t["transition_id"] for t in expected if t["trigger"] == "event"}
    assert len(by_time) >= 2

    names = WorkerNames.unique("streamtime")
    names.create_topics(bootstrap)
    reader = workers.reader(names.output_topic)
    w = workers.new(MODEL, names, advance_idle_s=600).start()
    w.wait_ready()
    stats = produce(bootstrap, names.input_topic, events)
    assert reader.wait_for(
        lambda _r: by_event <= {t["transition_id"] for t in reader.transitions()}, timeout=60
    ), diff_report(reader.transitions(), expected)
    wait_committed(bootstrap, names.app_id, names.input_topic, dict(stats.partitions), 30)
    assert w.stop() == 0, w.log_tail()

    w.advance_idle_s = 2.0
    w.start().wait_ready()
    # The time-triggered transitions come only once the restarted worker has restored, turned
    # its input idle (3 s), held 1 s and waited out --advance-idle: on a loaded machine that is
    # more than the settle time without any record, so give up only after 20 s of quiet.
    got = collect(reader, expected, timeout=60, settle=w.settle, give_up_idle=20)
    assert {transition_key(t) for t in got} == {transition_key(t) for t in expected}, (
        diff_report(got, expected) + "\n--- worker log ---\n" + w.log_tail()
    )
