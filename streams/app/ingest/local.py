"""The ingest stage's local routing state (`--input-key user`): per input partition, the
record of every user whose calls it carried, made durable in the compacted topic
`<app id>-ingest-users` (same partition as the input record, key = user id, value = input
offset + record). After an assignment it is restored only from records written for offsets
*before* the committed one, so re-read input is routed exactly as it was the first time."""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import msgspec
from confluent_kafka import Message

from streams.events.resolver import UserRecord

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(tuple[int, bytes]).decode


def encode_local(offset: int, record: UserRecord) -> bytes:
    """The value written for a user's new record, routed from input `offset`."""
    return _encode((offset, record.to_bytes()))


def restore_local(records: Iterable[Message], committed: int) -> dict[str, UserRecord]:
    """user -> record, from one partition of the users topic, as of input offset `committed`."""
    users: dict[str, UserRecord] = {}
    for m in records:
        value = m.value()
        if not value:
            continue
        offset, record = _decode(value)
        if offset < committed:  # written for input this partition has committed
            # Every record of the users topic is produced with its user id as key.
            users[cast(bytes, m.key()).decode()] = UserRecord.from_bytes(record)
    return users
