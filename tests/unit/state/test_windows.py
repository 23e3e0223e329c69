"""Bucket arithmetic: an event stays in its window at least `window` and less than
`window + bucket`, and `expired_keys` agrees with `expiry_of` exactly at the edges."""

from hypothesis import given
from hypothesis import strategies as st

from streams.state.windows import bucket_of, expired_keys, expiry_of

DAY = 86_400_000
HOUR = 3_600_000


def test_event_expires_between_window_and_window_plus_bucket() -> None:
    ts = 10 * DAY + 5 * HOUR  # 05:00 on day 10
    b = bucket_of(ts, DAY)
    assert b == 10
    exp = expiry_of(b, DAY, 30 * DAY)
    assert exp == 41 * DAY  # end of day 10 + 30 days
    assert 30 * DAY <= exp - ts < 31 * DAY


def test_expired_keys_edges() -> None:
    buckets = {10: 1, 11: 2, 12: 3}
    exp10 = expiry_of(10, DAY, 30 * DAY)
    assert expired_keys(buckets, DAY, 30 * DAY, exp10 - 1) == []
    assert expired_keys(buckets, DAY, 30 * DAY, exp10) == [10]
    assert expired_keys(buckets, DAY, 30 * DAY, exp10 + DAY) == [10, 11]


def test_user_keyed_maps_use_values_as_bucket() -> None:
    users = {"u1": 10, "u2": 12}
    assert expired_keys(users, DAY, 7 * DAY, expiry_of(10, DAY, 7 * DAY)) == ["u1"]


@given(
    ts=st.integers(min_value=-(10**13), max_value=10**13),
    bucket=st.sampled_from([1000, 60_000, HOUR, 6 * HOUR, DAY]),
    windows=st.integers(min_value=1, max_value=90),
    at_offset=st.integers(min_value=-3 * DAY, max_value=3 * DAY),
)
def test_expired_keys_matches_expiry_instant(
    ts: int, bucket: int, windows: int, at_offset: int
) -> None:
    window = windows * bucket
    idx = bucket_of(ts, bucket)
    exp = expiry_of(idx, bucket, window)
    assert window <= exp - ts <= window + bucket
    at = exp + at_offset
    assert (expired_keys({idx: 1}, bucket, window, at) == [idx]) == (exp <= at)
