"""Stream time: the ingest's input progress, the marks that carry it, and the account stage's
per-partition clock (`streams.app.watermark`, `streams.app.wire`)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.app.watermark import InputProgress, StreamClock, stream_time
from streams.app.wire import MARK, decode_batch, decode_mark, encode_batch, encode_mark


def test_stream_time_is_the_least_partition_behind_else_the_latest() -> None:
    assert stream_time({}) is None
    # Partition 1 still has unread records: nothing later than it is safe.
    assert stream_time({0: (9_000, 5, False), 1: (4_000, 2, True), 2: (6_000, 1, True)}) == 4_000
    # Every partition caught up: the largest event time seen.
    assert stream_time({0: (9_000, 5, False), 1: (4_000, 2, False)}) == 9_000


def test_input_progress_tracks_latest_time_and_whether_records_remain() -> None:
    p = InputProgress()
    p.observe(0, 5_000, offset=9, highwater=20)
    p.observe(1, 7_000, offset=3, highwater=4)
    assert p.snapshot() == {0: (5_000, 9, True), 1: (7_000, 3, False)}
    p.observe(0, 4_000, offset=12, highwater=20)  # an older event: the latest time stays
    assert p.snapshot()[0] == (5_000, 12, True)
    assert p.behind() == [0]
    # Drained since (no record says so): a fresh high watermark clears "behind".
    p.refresh({0: 13})
    assert p.snapshot()[0] == (5_000, 12, False)
    p.forget(1)
    assert p.snapshot() == {0: (5_000, 12, False)}


def test_a_partition_whose_end_is_unknown_counts_as_behind() -> None:
    """After a restart the ingest restores each partition's last committed event time before
    any fetch: until a fetch tells where the partition ends, it may hold older unread
    records, so it bounds stream time instead of being taken as caught up."""
    p = InputProgress()
    p.observe(0, 9_000, offset=99, highwater=None)  # restored, not fetched yet
    p.observe(1, 4_000, offset=10, highwater=None)
    assert stream_time(p.snapshot()) == 4_000
    p.refresh({0: None, 1: None})  # still no fetch
    assert p.behind() == [0, 1]
    p.refresh({1: 11})  # partition 1 fetched: nothing after its committed record
    assert p.behind() == [0]
    assert stream_time(p.snapshot()) == 9_000


def test_clock_merges_marks_of_several_ingests_and_never_moves_back() -> None:
    clock = StreamClock(grace_ms=0)
    assert clock.value is None
    # Worker A's ingest reads input partitions 0 and 1, worker B's reads 2.
    assert clock.merge({0: (5_000, 1, False), 1: (8_000, 1, False)}) == 8_000
    assert clock.merge({2: (6_000, 1, True)}) == 8_000  # 6 s is behind, but W never moves back
    assert clock.merge({0: (9_000, 2, True)}) == 8_000  # min over behind: 6 s
    assert clock.merge({2: (12_000, 9, False)}) == 9_000  # now only partition 0 is behind
    assert clock.merge({0: (11_000, 3, False)}) == 12_000  # all caught up: the latest


def test_clock_holds_stream_time_back_by_the_grace_period() -> None:
    clock = StreamClock(grace_ms=2_000)
    assert clock.merge({0: (10_000, 1, False)}) == 8_000
    assert clock.merge({}) == 8_000


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
