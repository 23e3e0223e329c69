"""What is sent: a Slack Block Kit message, or the transition itself signed for a webhook.

Webhook requests carry the transition's JSON exactly as it was on the topic, and:

- `Idempotency-Key: <transition_id>`: the same transition always carries the same key, so a
  receiver that stores the keys it has processed never acts twice on a retried or re-sent one;
- `X-PQL-Timestamp: <unix seconds>` and `X-PQL-Signature: v1=<hex>`, the hex HMAC-SHA256 of
  `<timestamp>.<body>` under the destination's secret (README "pql notify" shows how to verify
  it; reject old timestamps to stop replays).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

SIGNATURE_HEADER = "X-PQL-Signature"
TIMESTAMP_HEADER = "X-PQL-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
_HEADLINES = {
    "qualified": "{account} became a PQL",
    "disqualified": "{account} is no longer a PQL",
    "segment_entered": "{account} entered {segment}",
    "segment_exited": "{account} left {segment}",
}
_MAX_REASONS = 5
_MAX_CONTACTS = 5


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The `X-PQL-Signature` value for `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """What a receiver does (and the tests): constant-time comparison."""
    try:
        expected = sign(secret, int(timestamp), body)
    except ValueError:
        return False
    return hmac.compare_digest(expected, signature)


def webhook_headers(
    transition_id: str, body: bytes, secret: str | None, now: float
) -> dict[str, str]:
    headers = {"Content-Type": "application/json", IDEMPOTENCY_HEADER: transition_id}
    if secret:
        ts = int(now)
        headers[TIMESTAMP_HEADER] = str(ts)
        headers[SIGNATURE_HEADER] = sign(secret, ts, body)
    return headers


def _esc(text: Any) -> str:
    """Slack mrkdwn escaping: &, < and > are control characters."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _num(v: Any) -> str:
    if isinstance(v, float) and v == int(v):
        return str(int(v))
    return str(v)


def _signed(v: Any) -> str:
    text = _num(v)
    return text if text.startswith("-") else f"+{text}"


def headline(t: Mapping[str, Any]) -> str:
    template = _HEADLINES.get(str(t.get("kind")), "{account}: {kind}")
    return template.format(
        account=t.get("account_id", "?"), segment=t.get("segment") or "", kind=t.get("kind")
    )


def _slack_date(iso: str) -> str:
    """Slack's date formatting (shown in the reader's time zone), with the ISO text as the
    fallback."""
    from datetime import datetime

    try:
        epoch = int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return _esc(iso)
    return f"<!date^{epoch}^{{date_short_pretty}} {{time}}|{_esc(iso)}>"


def slack_message(t: Mapping[str, Any]) -> dict[str, Any]:
    """A Block Kit message: the headline, the summary, then route, owner, respond-by and score
    as fields, the reasons and the contacts as context."""
    title = headline(t)
    summary = str(t.get("summary") or title)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150], "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _esc(summary)[:3000]}},
    ]
    fields = []
    playbook = t.get("playbook")
    if isinstance(playbook, Mapping):
        route = f"{playbook.get('route')} (within {_num(playbook.get('urgency_hours'))} h)"
        fields.append(f"*Route*\n{_esc(route)}")
        fields.append(f"*Owner*\n{_esc(playbook.get('owner') or 'unassigned')}")
        if playbook.get("respond_by"):
            fields.append(f"*Respond by*\n{_slack_date(str(playbook['respond_by']))}")
        elif playbook.get("cooldown_until"):
            fields.append(f"*Cooldown until*\n{_slack_date(str(playbook['cooldown_until']))}")
    fields.append(f"*Score*\n{_num(t.get('previous_score'))} → {_num(t.get('score'))}")
    blocks.append({"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]})
    reasons = [r for r in t.get("reasons") or [] if isinstance(r, Mapping)]
    if reasons:
        ranked = sorted(reasons, key=lambda r: -abs(float(r.get("points") or 0)))
        text = " · ".join(
            f"{_esc(r.get('rule'))} ({_signed(r.get('points'))})" for r in ranked[:_MAX_REASONS]
        )
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"Reasons: {text}"}]}
        )
    contacts = playbook.get("contacts") if isinstance(playbook, Mapping) else None
    if contacts:
        text = ", ".join(
            f"{_esc(c.get('user_id'))} ({_esc(c.get('why'))})"
            for c in contacts[:_MAX_CONTACTS]
            if isinstance(c, Mapping)
        )
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"Contacts: {text}"}]}
        )
    model = t.get("model")
    if isinstance(model, Mapping):
        footer = (
            f"{_esc(model.get('name'))} v{_esc(model.get('version'))} · "
            f"{_esc(t.get('occurred_at'))} · {_esc(t.get('transition_id'))}"
        )
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": footer}]})
    return {"text": summary[:3000], "blocks": blocks}
