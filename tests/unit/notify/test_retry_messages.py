"""`pql notify`'s retry schedule and what it sends: signatures, headers, Slack blocks."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from pathlib import Path

from streams.notify.messages import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    headline,
    sign,
    slack_message,
    verify,
    webhook_headers,
)
from streams.notify.retry import RetryPolicy, parse_retry_after, should_retry

ROOT = Path(__file__).resolve().parents[3]


def test_backoff_is_full_jitter_under_a_doubling_capped_ceiling() -> None:
    policy = RetryPolicy(attempts=8, base_s=0.5, cap_s=4.0)
    rng = random.Random(1)
    for attempt, ceiling in ((1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (7, 4.0)):
        waits = [policy.backoff(attempt, rng) for _ in range(300)]
        assert min(waits) >= 0 and max(waits) <= ceiling
        assert max(waits) > ceiling * 0.9 and min(waits) < ceiling * 0.1  # spread: jitter


def test_retry_after_is_honoured_and_capped() -> None:
    policy = RetryPolicy(retry_after_cap_s=60)
    rng = random.Random(0)
    now = 1_800_000_000.0
    assert policy.wait(1, "7", now, rng) == 7.0
    assert policy.wait(1, "3600", now, rng) == 60.0
    at = datetime(2027, 1, 15, 8, 0, 30, tzinfo=UTC).timestamp()
    assert parse_retry_after("Fri, 15 Jan 2027 08:00:30 GMT", at - 42) == 42.0
    assert parse_retry_after("soon", now) is None
    assert policy.wait(2, "soon", now, rng) <= 1.0  # unreadable: the backoff
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now) == 0.0  # past: now


def test_which_failures_are_retried() -> None:
    assert all(should_retry(s) for s in (None, 408, 425, 429, 500, 502, 503, 504))
    assert not any(should_retry(s) for s in (400, 401, 403, 404, 410, 422))
    assert RetryPolicy(attempts=3, retry_after_cap_s=10).total_s() == 20


def test_signatures_verify_and_fail_when_anything_changes() -> None:
    body = b'{"transition_id": "abc"}'
    headers = webhook_headers("abc", body, "k", 1_800_000_000.5)
    assert headers[IDEMPOTENCY_HEADER] == "abc"
    assert headers[TIMESTAMP_HEADER] == "1800000000"
    assert headers[SIGNATURE_HEADER] == sign("k", 1_800_000_000, body)
    assert verify("k", headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
    assert not verify("other", headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
    assert not verify("k", "1800000001", body, headers[SIGNATURE_HEADER])
    assert not verify("k", headers[TIMESTAMP_HEADER], body + b" ", headers[SIGNATURE_HEADER])
    assert not verify("k", "x", body, headers[SIGNATURE_HEADER])
    # The documented recipe: hex HMAC-SHA256 of "<timestamp>.<body>".
    import hashlib
    import hmac

    mac = hmac.new(b"k", b"1800000000." + body, hashlib.sha256).hexdigest()
    assert headers[SIGNATURE_HEADER] == f"v1={mac}"
    assert SIGNATURE_HEADER not in webhook_headers("abc", body, None, 0)


TRANSITION = {
    "transition_id": "0123456789abcdef0123456789abcdef",
    "account_id": "acme <inc>",
    "model": {"name": "team-chat", "version": 3, "effective_from": "1970-01-01T00:00:00.000Z"},
    "kind": "qualified",
    "segment": None,
    "score": 120,
    "previous_score": 70,
    "reasons": [
        {"rule": "invites >= 1", "points": 50, "signals": {}},
        {"rule": "inactive", "points": -10, "signals": {}},
    ],
    "occurred_at": "2026-01-05T10:00:00.000Z",
    "summary": "acme <inc> became a PQL: score >= 100 & more.",
    "playbook": {
        "play": "qualified", "route": "sales_led", "urgency_hours": 4, "alert": True,
        "respond_by": "2026-01-05T14:00:00.000Z", "deal_size": 5000, "deal_band": "large",
        "owner": "ana@example.com", "owner_from": "pool",
        "contacts": [{"user_id": "u1", "why": "vp_users"}],
    },
}  # fmt: skip


def test_the_slack_message_has_summary_route_owner_respond_by_and_reasons() -> None:
    msg = slack_message(TRANSITION)
    text = json.dumps(msg, ensure_ascii=False)
    assert msg["text"] == TRANSITION["summary"]
    assert msg["blocks"][0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "acme <inc> became a PQL", "emoji": True},
    }
    assert (
        msg["blocks"][1]["text"]["text"]
        == "acme &lt;inc&gt; became a PQL: score &gt;= 100 &amp; more."
    )
    fields = [f["text"] for f in msg["blocks"][2]["fields"]]
    assert fields == [
        "*Route*\nsales_led (within 4 h)",
        "*Owner*\nana@example.com",
        "*Respond by*\n<!date^1767621600^{date_short_pretty} {time}|2026-01-05T14:00:00.000Z>",
        "*Score*\n70 → 120",
    ]
    assert "invites &gt;= 1 (+50) · inactive (-10)" in text
    assert "u1 (vp_users)" in text
    assert msg["blocks"][-1]["elements"][0]["text"].endswith(TRANSITION["transition_id"])
    assert headline({**TRANSITION, "kind": "segment_exited", "segment": "purgatory"}) == (
        "acme <inc> left purgatory"
    )
    # Without a playbook: the score only.
    bare = slack_message({k: v for k, v in TRANSITION.items() if k != "playbook"})
    assert [f["text"] for f in bare["blocks"][2]["fields"]] == ["*Score*\n70 → 120"]
