"""Binary encoding of `Event` for the internal Kafka topics (resolved events, repartitioning).

msgpack via msgspec, as a positional array with a leading format version: about half the size
of JSON with field names, and decoding validates every field's type in C. The version lets a
later format be added without misreading records still sitting in a topic.

Values in properties/traits are whatever JSON produced (str, int within 64 bits, float, bool,
None, list, dict with str keys); those round-trip exactly. `decode_event` raises
`msgspec.DecodeError`/`ValueError` on bytes it did not write: internal topics are trusted, and a
corrupt record should fail loudly rather than be scored.
"""

from __future__ import annotations

from typing import Any

import msgspec

from streams.events.types import Event, EventType

__all__ = ["encode_event", "decode_event", "FORMAT_VERSION"]

FORMAT_VERSION = 1

_Wire = tuple[
    int,  # format version
    str,  # type
    str,  # message_id
    int,  # ts
    str | None,  # user_id
    str | None,  # account_id
    str | None,  # event
    dict[str, Any],  # properties
    dict[str, Any],  # traits
    dict[str, Any] | None,  # user_traits
]

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(_Wire).decode
_TYPES: dict[str, EventType] = {t.value: t for t in EventType}


def encode_event(ev: Event) -> bytes:
    """The event as msgpack bytes (format `FORMAT_VERSION`)."""
    return _encode(
        (
            FORMAT_VERSION,
            ev.type.value,
            ev.message_id,
            ev.ts,
            ev.user_id,
            ev.account_id,
            ev.event,
            ev.properties,
            ev.traits,
            ev.user_traits,
        )
    )


def decode_event(data: bytes) -> Event:
    """Inverse of `encode_event`. Raises on bytes that are not an encoded event."""
    version, etype, message_id, ts, user_id, account_id, event, props, traits, user_traits = (
        _decode(data)
    )
    if version != FORMAT_VERSION:
        raise ValueError(f"unsupported event format version {version} (this code reads 1)")
    kind = _TYPES.get(etype)
    if kind is None:
        raise ValueError(f"unknown event type {etype!r} in encoded event")
    return Event(kind, message_id, ts, user_id, account_id, event, props, traits, user_traits)
