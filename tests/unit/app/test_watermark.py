"""Stream time: the ingest's input progress, the marks that carry it, and the account stage's
per-partition clock (`streams.app.watermark`, `streams.app.wire`)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.app.align import Aligned
from streams.app.watermark import (
    DIRECT,
    NO_TIME,
    NO_TIME_END,
    InputProgress,
    StreamClock,
    released_progress,
    stream_time,
)
from streams.app.wire import (
    MARK,
    MAX_ITEMS_PER_RECORD,
    RELAY,
    decode,
    decode_batch,
    decode_mark,
    decode_relay,
    encode_batch,
    encode_mark,
    encode_relay,
    frames,
)
from streams.events.order import order_key
from streams.events.types import Event, EventType


def test_stream_time_is_the_least_active_partition_else_the_latest() -> None:
    assert stream_time({}) is None
    # Partitions 1 and 2 are active: nothing later than the least of them is safe.
    assert stream_time({0: (9_000, 5, False), 1: (4_000, 2, True), 2: (6_000, 1, True)}) == (
        4_000,
        False,
    )
    # Every partition idle: the largest event time seen, and nothing left to wait for.
    assert stream_time({0: (9_000, 5, False), 1: (4_000, 2, False)}) == (9_000, True)


def test_input_progress_tracks_latest_time_and_activity() -> None:
    p = InputProgress(idle_s=3.0)
    p.observe(0, 5_000, offset=9, highwater=20, now=100.0)
    p.observe(1, 7_000, offset=3, highwater=4, now=100.0)
    # Partition 1 is caught up but heard from within the idleness timeout: still active.
    assert p.snapshot(101.0) == {0: (5_000, 9, True), 1: (7_000, 3, True)}
    # Three seconds of silence: partition 1 turns idle; partition 0 has unread records.
    assert p.snapshot(103.5) == {0: (5_000, 9, True), 1: (7_000, 3, False)}
    p.observe(0, 4_000, offset=12, highwater=20, now=104.0)  # an older event: latest stays
    assert p.snapshot(104.0)[0] == (5_000, 12, True)
    assert p.behind() == [0]
    # Drained since (no record says so): a fresh high watermark clears "behind".
    p.refresh({0: 13})
    assert p.snapshot(110.0)[0] == (5_000, 12, False)
    p.forget(1)
    assert p.snapshot(110.0) == {0: (5_000, 12, False)}


def test_an_assigned_partition_holds_stream_time_until_it_delivers_or_idles() -> None:
    p = InputProgress(idle_s=3.0)
    p.assign(0, now=100.0, committed=5)
    p.observe(1, 7_000, offset=3, highwater=4, now=100.0)
    assert stream_time(p.snapshot(101.0)) == (NO_TIME, False)  # nothing is safe yet
    # Not fetched yet: its end is unknown, so it is not idle however long that takes.
    assert p.behind() == [0]
    p.refresh({0: None})
    assert stream_time(p.snapshot(200.0)) == (NO_TIME, False)
    # A fetch shows a backlog after the committed offset: still behind.
    p.refresh({0: 40})
    assert stream_time(p.snapshot(200.0)) == (NO_TIME, False)


def test_an_assigned_empty_partition_turns_idle() -> None:
    p = InputProgress(idle_s=3.0)
    p.assign(0, now=100.0)
    p.observe(1, 7_000, offset=3, highwater=4, now=100.0)
    p.refresh({0: 0})  # fetched: nothing in it
    assert p.behind() == []
    assert stream_time(p.snapshot(101.0)) == (NO_TIME, False)  # active until the timeout
    assert stream_time(p.snapshot(104.0)) == (7_000, True)  # both idle now


def test_a_partition_whose_end_is_unknown_counts_as_behind() -> None:
    """After a restart the ingest restores each partition's last committed event time before
    any fetch: until a fetch tells where the partition ends, it may hold older unread
    records, so it bounds stream time instead of being taken as caught up."""
    p = InputProgress(idle_s=0.0)
    p.observe(0, 9_000, offset=99, highwater=None, now=0.0)  # restored, not fetched yet
    p.observe(1, 4_000, offset=10, highwater=None, now=0.0)
    assert stream_time(p.snapshot(1.0)) == (4_000, False)
    p.refresh({0: None, 1: None})  # still no fetch
    assert p.behind() == [0, 1]
    p.refresh({1: 11})  # partition 1 fetched: nothing after its committed record
    assert p.behind() == [0]
    assert stream_time(p.snapshot(1.0)) == (9_000, False)


def test_partitions_running_ahead_are_reported_for_pausing() -> None:
    p = InputProgress(idle_s=3.0)
    p.observe(0, 1_000, offset=1, highwater=9, now=0.0)
    p.observe(1, 50_000, offset=1, highwater=9, now=0.0)
    p.observe(2, 9_000, offset=1, highwater=9, now=0.0)
    assert p.ahead(now=0.0, max_drift_ms=10_000) == {1}
    assert p.ahead(now=0.0, max_drift_ms=60_000) == set()
    p.assign(3, now=0.0)  # nothing read from it yet: it may hold the oldest events of all
    assert p.ahead(now=0.0, max_drift_ms=60_000) == {0, 1, 2}
    p.refresh({3: 0})  # fetched: empty; once idle it no longer holds the others back
    assert p.ahead(now=5.0, max_drift_ms=60_000) == set()


def test_clock_merges_marks_of_several_ingests_and_never_moves_back() -> None:
    clock = StreamClock(grace_ms=0, idle_hold_s=0.0)
    assert clock.value is None and clock.releasable() is None
    # Worker A's ingest reads input partitions 0 and 1, worker B's reads 2.
    assert clock.merge({0: (5_000, 1, False), 1: (8_000, 1, False)}) == 8_000
    assert clock.releasable() == NO_TIME_END  # every partition idle: all may go
    assert clock.merge({2: (6_000, 1, True)}) == 8_000  # 6 s is active, but W never moves back
    assert clock.releasable() == 8_000
    assert clock.merge({0: (9_000, 2, True)}) == 8_000  # min over active: 6 s
    assert clock.merge({2: (12_000, 9, False)}) == 9_000  # now only partition 0 is active
    assert clock.merge({0: (11_000, 3, False)}) == 12_000  # all idle: the latest


def test_while_a_partition_is_idle_time_moves_only_as_far_as_it_had_a_while_ago() -> None:
    """An idle partition that wakes up (another worker's, whose mark is still on its way)
    must not be overtaken: with any partition idle, W is held to what it was `idle_hold_s`
    ago."""
    clock = StreamClock(grace_ms=0, idle_hold_s=1.0)
    assert clock.merge({0: (5_000, 1, True), 1: (NO_TIME, -1, False)}, now=10.0) is None
    assert clock.merge({0: (9_000, 2, True)}, now=10.5) is None  # nothing a second old yet
    assert clock.merge({0: (12_000, 3, True)}, now=11.2) == 5_000  # what it was at 10.0
    # Partition 1 woke up at 6 s: reported at 11.4, it holds W (nothing of it was overtaken).
    assert clock.merge({1: (6_000, 0, True)}, now=11.4) == 6_000
    # Every partition active: no hold.
    assert clock.merge({1: (11_000, 5, True)}, now=11.5) == 11_000
    # All idle: everything may go once that has lasted a second.
    clock.merge({0: (12_000, 3, False), 1: (11_000, 5, False)}, now=20.0)
    assert clock.releasable() == 11_000
    clock.merge({}, now=21.5)
    assert clock.releasable() == NO_TIME_END and clock.value == 12_000


def test_clock_waits_for_every_path() -> None:
    clock = StreamClock(grace_ms=0, paths=(DIRECT, 0, 1), idle_hold_s=0.0)
    assert clock.merge({0: (5_000, 1, True)}) is None
    # A relayed mark of no partition (its ingest had nothing assigned yet) is not a report.
    assert clock.merge({}, path=1) is None
    assert clock.merge({0: (4_000, 1, True)}, path=0) is None  # by-user partition 1 unheard
    assert clock.merge({0: (3_000, 1, True)}, path=1) == 3_000  # the least of all paths


def test_clock_holds_stream_time_back_by_the_grace_period() -> None:
    clock = StreamClock(grace_ms=2_000, idle_hold_s=0.0)
    assert clock.merge({0: (10_000, 1, True)}) == 8_000
    assert clock.merge({}) == 8_000


# -- the ordering piece: any interleaving gives the time-sorted order --------------------------

_event = st.tuples(
    st.integers(0, 40),  # event time: few values, so ties are common
    st.sampled_from(["track", "identify", "group"]),
    st.text("abcdef", min_size=1, max_size=3),  # messageId
)


@given(
    st.lists(st.lists(_event, max_size=12), min_size=1, max_size=4),
    st.data(),
    st.integers(0, 3),
)
def test_any_interleaving_of_time_ordered_partitions_yields_the_sorted_stream(
    partitions: list[list[tuple[int, str, str]]], data: st.DataObject, marks_every: int
) -> None:
    """Per-partition time-ordered streams, read in any interleaving, with a mark of every
    partition's progress after every few records (as the ingest writes them), through the
    stage's pieces (StreamClock + Aligned/HoldBuffer) come out exactly in the order of the
    time-sorted stream: canonical key order."""
    streams = [sorted(p) for p in partitions]  # each partition in time order (ties any way)
    events = [Event(EventType(kind), mid, ts, "u", "acme") for p in streams for ts, kind, mid in p]
    expected = sorted(order_key(ev) for ev in events)
    queues = [
        [Event(EventType(kind), mid, ts, "u", "acme") for ts, kind, mid in p] for p in streams
    ]
    align: Aligned[Event] = Aligned(StreamClock(grace_ms=0, idle_hold_s=0.0))
    progress: dict[int, tuple[int, int, bool]] = {
        q: (NO_TIME, -1, True) for q in range(len(queues))
    }
    out: list[Event] = []
    read = 0
    entry = align.entry(None)
    while any(queues):
        q = data.draw(st.sampled_from([i for i, queue in enumerate(queues) if queue]))
        ev = queues[q].pop(0)
        if align.due(ev.ts):
            out.append(ev)  # late: cannot happen with time-ordered partitions
        else:
            align.hold(order_key(ev), ev, entry)
        latest, offset, _ = progress[q]
        progress[q] = (max(latest, ev.ts), offset + 1, True)
        read += 1
        if marks_every == 0 or read % marks_every == 0:
            align.clock.merge(dict(progress))
            out.extend(ev for ev, _ in align.release())
    # The end: every partition drained and idle.
    align.clock.merge({q: (latest, offset, False) for q, (latest, offset, _) in progress.items()})
    out.extend(ev for ev, _ in align.release())
    assert [order_key(ev) for ev in out] == expected


progress = st.dictionaries(
    st.integers(0, 1023),
    st.tuples(st.integers(-(2**62), 2**62), st.integers(0, 2**62), st.booleans()),
    max_size=64,
)


@given(progress)
def test_a_mark_round_trips(p: dict[int, tuple[int, int, bool]]) -> None:
    data = encode_mark(p)
    assert data[:1] == MARK
    assert decode_mark(data) == p


def test_marks_and_batches_are_told_apart() -> None:
    batch = encode_batch([("acme", 0, 8, -1, b"x")])
    with pytest.raises(ValueError, match="not a mark"):
        decode_mark(batch)
    with pytest.raises(ValueError, match="not a batch"):
        decode_batch(encode_mark({0: (1, 2, False)}))


@given(st.integers(0, 63), progress)
def test_a_relayed_mark_round_trips(path: int, p: dict[int, tuple[int, int, bool]]) -> None:
    data = encode_relay(path, p)
    assert data[:1] == RELAY
    assert decode_relay(data) == (path, p)
    with pytest.raises(ValueError, match="not a mark"):
        decode_mark(data)


def test_a_stage_relays_how_far_it_released_not_what_it_read() -> None:
    """The user stage holds events too: the mark it relays must not claim more than it has
    released, or the account stage would overtake what it still holds."""
    clock = StreamClock(grace_ms=500, idle_hold_s=0.0)
    assert released_progress(clock) == {DIRECT: (NO_TIME, -1, True)}  # nothing released yet
    clock.merge({0: (10_000, 3, True), 1: (4_000, 1, True)})
    assert released_progress(clock) == {DIRECT: (4_000, 0, True)}  # W 3_500 plus the grace
    clock.merge({0: (10_000, 3, False), 1: (4_000, 1, False)})  # everything released
    assert released_progress(clock) == {DIRECT: (10_000, 0, False)}


def test_frames_split_events_and_put_the_time_on_the_last() -> None:
    times = {DIRECT: {0: (5, 7, True)}}
    assert frames(None, None) == [] and frames([], None) == []
    assert [decode(v) for v in frames([], times)] == [([], times)]
    items = [("acme", 0, i, DIRECT, b"x") for i in range(2 * MAX_ITEMS_PER_RECORD + 1)]
    out = [decode(v) for v in frames(items, times)]
    assert [len(got) for got, _ in out] == [MAX_ITEMS_PER_RECORD, MAX_ITEMS_PER_RECORD, 1]
    assert [t for _, t in out] == [{}, {}, times]
    assert [item for got, _ in out for item in got] == items
