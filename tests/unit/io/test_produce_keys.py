"""How `pql produce` keys and reads lines, without a broker."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from streams.io.produce import EventKeyer, read_lines

TS = "2026-01-05T10:00:00Z"


def _line(**fields: object) -> bytes:
    return json.dumps({"timestamp": TS, **fields}).encode()


def test_keys_follow_the_resolver() -> None:
    keyer = EventKeyer()
    assert keyer.key(_line(type="track", event="E", userId="u1")) == ("u1", "user")
    assert keyer.key(_line(type="group", userId="u1", groupId="acme")) == ("acme", "account")
    assert keyer.key(_line(type="track", event="E", userId="u1")) == ("acme", "account")
    assert keyer.key(
        _line(type="track", event="E", userId="u1", context={"groupId": "globex"})
    ) == ("globex", "account")
    assert keyer.key(_line(type="identify", userId="u2", traits={})) == ("u2", "user")
    assert keyer.key(_line(type="track", event="E", anonymousId="anon-1")) == ("anon-1", "user")


def test_unparseable_lines_are_unkeyed() -> None:
    keyer = EventKeyer()
    assert keyer.key(b"not json") == (None, "unkeyed")
    assert keyer.key(_line(type="alias", userId="u")) == (None, "unkeyed")
    assert keyer.key(b'{"type":"track","event":"E","userId":"u"}') == (None, "unkeyed")


def test_read_lines_plain_gzip_crlf_blank(tmp_path: Path) -> None:
    plain = tmp_path / "a.jsonl"
    plain.write_bytes(b"one\r\n\r\n  \ntwo  \nthree")
    gz = tmp_path / "b.bin"  # no .gz suffix: detected by magic bytes
    gz.write_bytes(gzip.compress(b"four\nfive\n"))
    assert list(read_lines([plain, gz])) == [b"one", b"two  ", b"three", b"four", b"five"]


def test_identify_before_group_is_keyed_by_the_account_the_user_joins_next(tmp_path) -> None:
    """Sign-up order (identify, then group) must not split an account across partitions."""
    import orjson

    from streams.io.produce import EventKeyer, first_groups

    lines = [
        {"type": "identify", "userId": "u1", "traits": {"title": "CTO"}},
        {"type": "group", "userId": "u1", "groupId": "acme"},
        {"type": "track", "event": "Message Sent", "userId": "u1"},
        {"type": "identify", "userId": "u2", "traits": {}},  # never joins: keyed by user
    ]
    path = tmp_path / "events.jsonl"
    path.write_bytes(
        b"\n".join(
            orjson.dumps(dict(e, timestamp="2026-01-05T10:00:00Z", messageId=f"m{i}"))
            for i, e in enumerate(lines)
        )
    )
    lookahead = first_groups([path])
    assert lookahead == {"u1": "acme"}
    keyer = EventKeyer(lookahead)
    keys = [keyer.key(line) for line in path.read_bytes().splitlines()]
    assert keys == [("acme", "account"), ("acme", "account"), ("acme", "account"), ("u2", "user")]
    # Without the look-ahead (stdin), the sign-up identify falls back to the user id.
    plain = EventKeyer()
    assert plain.key(path.read_bytes().splitlines()[0]) == ("u1", "user")
