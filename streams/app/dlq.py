"""The dead-letter topic's records, written by every stage the same way: the event's bytes (the
original input bytes where the stage has them), with headers that say why — `pql-reason` (a
`RejectReason` value), `pql-detail`, `pql-field` (the offending field, if any) and `pql-stage`
(`ingest`, `users` or `accounts`)."""

from __future__ import annotations

from typing import Any

import orjson

from streams.events.types import Event, Reject


def dlq_headers(reject: Reject, stage: str) -> list[tuple[str, bytes]]:
    return [
        ("pql-reason", reject.reason.value.encode()),
        ("pql-detail", reject.detail.encode()),
        ("pql-field", (reject.field or "").encode()),
        ("pql-stage", stage.encode()),
    ]


def event_json(ev: Event) -> bytes:
    """A too-late event as Segment-spec JSON (the original bytes stay at the ingest stage; this
    carries every field the worker read)."""
    from streams.scoring.transitions import iso_ms

    body: dict[str, Any] = {
        "type": ev.type.value,
        "messageId": ev.message_id,
        "timestamp": iso_ms(ev.ts),
        "userId": ev.user_id,
    }
    if ev.event is not None:
        body["event"] = ev.event
    if ev.properties:
        body["properties"] = ev.properties
    if ev.traits:
        body["traits"] = ev.traits
    if ev.account_id:
        body["context"] = {"groupId": ev.account_id}
    return orjson.dumps(body)
