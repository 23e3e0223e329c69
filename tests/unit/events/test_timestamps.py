"""iso_to_epoch_ms against an independent RFC 3339 validator and exact millisecond arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st
from rfc3339_validator import validate_rfc3339 as rfc3339

from streams.events.timestamps import iso_to_epoch_ms

from .strategies import aware_datetimes, bad_timestamps, rfc3339_timestamps


def expected_ms(dt: datetime) -> int:
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    return delta.days * 86_400_000 + delta.seconds * 1000 + delta.microseconds // 1000


@settings(max_examples=300)
@given(aware_datetimes)
def test_value_matches_exact_arithmetic(dt: datetime) -> None:
    assert iso_to_epoch_ms(dt.isoformat()) == expected_ms(dt)


@settings(max_examples=300)
@given(aware_datetimes)
def test_naive_reads_as_utc(dt: datetime) -> None:
    naive = dt.replace(tzinfo=None)
    assert iso_to_epoch_ms(naive.isoformat()) == expected_ms(naive.replace(tzinfo=UTC))


def _mutations() -> st.SearchStrategy[str]:
    """Valid timestamps with one character replaced, dropped or inserted."""

    def mutate(text: str, pos: int, ch: str, how: int) -> str:
        pos %= len(text) + 1
        if how == 0:
            return text[:pos] + ch + text[pos + 1 :]
        if how == 1:
            return text[:pos] + text[pos + 1 :]
        return text[:pos] + ch + text[pos:]

    chars = st.sampled_from("0123456789-:+TZtz., ٣")
    return st.builds(mutate, rfc3339_timestamps, st.integers(0, 40), chars, st.integers(0, 2))


@settings(max_examples=1000)
@given(rfc3339_timestamps | bad_timestamps | _mutations())
def test_accepts_exactly_rfc3339_or_rfc3339_without_offset(text: str) -> None:
    # Documented difference: a missing offset is accepted (UTC), so compare against the
    # validator on the text as given or with "Z" appended.
    accepted = iso_to_epoch_ms(text) is not None
    leap_second = len(text) > 18 and text[17:19] == "60"
    if leap_second:  # refused here; rfc3339-validator also refuses except on real leap dates
        assert not accepted
        return
    assert accepted == (rfc3339(text) or rfc3339(text + "Z")), text


def _segment_form(dt: datetime) -> str:
    """`YYYY-MM-DDTHH:MM:SS.mmmZ`, what Segment libraries send (the parser's cached fast path)."""
    utc = dt.astimezone(UTC)
    return f"{utc.year:04d}-{utc:%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


@settings(max_examples=500)
@given(aware_datetimes)
def test_segment_form_matches_exact_arithmetic(dt: datetime) -> None:
    text = _segment_form(dt)
    want = expected_ms(dt.replace(microsecond=dt.microsecond // 1000 * 1000))
    assert iso_to_epoch_ms(text) == want
    assert iso_to_epoch_ms(text) == want  # the second time from the cached minute


def _segment_mutations() -> st.SearchStrategy[str]:
    """Segment-form timestamps with one character replaced."""

    def mutate(text: str, pos: int, ch: str) -> str:
        return text[:pos] + ch + text[pos + 1 :]

    chars = st.sampled_from("0123456789-:+TZtz., ٣²")
    return st.builds(mutate, aware_datetimes.map(_segment_form), st.integers(0, 23), chars)


@settings(max_examples=1000)
@given(_segment_mutations())
def test_segment_form_mutations_are_judged_like_any_timestamp(text: str) -> None:
    first = iso_to_epoch_ms(text)
    assert iso_to_epoch_ms(text) == first  # cached or not, the same answer
    if text[17:19] >= "6":  # leap seconds, or a non-digit there: refused
        assert first is None
        return
    assert (first is not None) == (rfc3339(text) or rfc3339(text + "Z")), text
    if first is not None:
        dt = datetime.fromisoformat(text)
        assert first == expected_ms(dt if dt.tzinfo else dt.replace(tzinfo=UTC))
