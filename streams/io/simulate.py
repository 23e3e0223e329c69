"""A deterministic generator of realistic Segment-spec product events for a B2B team-chat SaaS.

Why it exists: the demo, the parity test and the benchmark all need event files that exercise
every path of the example model `examples/team-chat.yaml` — accounts that qualify, hit the free
storage limit, look at pricing, are too small for the ICP, and go quiet and drop out again — and
they need the *same* file every time, so transitions can be compared run to run. Everything here
is driven by `random.Random` instances seeded from strings (seeded via SHA-512, so stable across
processes and Python versions, unlike `hash()`), and the default `start` is a fixed date.

Shape of the output:
- every account's founder signs up with a `group` call (account traits: `employees`, `industry`,
  `country`...), an `identify` call (user traits, including `title`) and a `Signed Up` track;
  each invited teammate who accepts does the same `group` + `identify` when they join;
- track events carry `context.groupId` for most accounts; every sixth account omits it, so the
  worker has to resolve the account from the user's earlier `group` call;
- events come out in timestamp order (ties broken by account, then creation order), each with a
  unique, deterministic `messageId` (UUIDv5 of seed/account/sequence).

Malformed input: with `bad_ratio > 0`, after each good event a malformed one is added with that
probability (missing timestamp, unparseable timestamp, wrong field types, unsupported type,
missing user, track without a name, or — in `lines()` only — a line that is not JSON). They are
drawn from a separate random stream, so the good events are identical whatever the ratio, and a
run with bad input must give the same transitions as one without.
"""

from __future__ import annotations

import gzip
import heapq
import io
import json
import math
import random
import sys
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, TextIO

import click

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MINUTE_MS = 60_000

# Fixed so the same seed gives the same file on any day. A Monday, so weekdays are predictable.
DEFAULT_START = datetime(2026, 1, 5, tzinfo=UTC)

_NAMESPACE = uuid.UUID("6f1c7a52-2d0e-4b8e-9a51-5e0c3d1f4a77")


class Persona(StrEnum):
    """How an account behaves over the simulated span, and what the model should make of it."""

    QUALIFIER = "qualifier"  # onboards, chats a lot, invites teammates -> PQL (ICP-sized)
    FREE_LIMIT = "free_limit"  # uploads big files -> free_limit_hit segment, not PQL
    WINDOW_SHOPPER = "window_shopper"  # views pricing, little usage -> buying_intent, not PQL
    TINY_TEAM = "tiny_team"  # as engaged as a qualifier but < 10 employees -> purgatory
    GOES_QUIET = "goes_quiet"  # qualifies early, then silent -> drops out once windows pass
    CASUAL = "casual"  # a few messages now and then -> nothing


# Assigned to accounts in this order, cycling: the first five accounts already cover every
# persona the demo has to show, and 40 accounts give 12 qualifiers, 8 that go quiet, etc.
DEFAULT_PERSONAS: tuple[Persona, ...] = (
    Persona.QUALIFIER,
    Persona.GOES_QUIET,
    Persona.FREE_LIMIT,
    Persona.WINDOW_SHOPPER,
    Persona.TINY_TEAM,
    Persona.QUALIFIER,
    Persona.CASUAL,
    Persona.QUALIFIER,
    Persona.GOES_QUIET,
    Persona.WINDOW_SHOPPER,
)

DECISION_MAKER_TITLES = ("VP Sales", "Head of Marketing")
OTHER_TITLES = (
    "CTO",
    "Engineering Manager",
    "Software Engineer",
    "Product Designer",
    "Account Executive",
    "Marketing Manager",
    "Customer Success Manager",
    "Operations Lead",
    "Founder",
)
INDUSTRIES = ("finance", "software", "retail", "education", "healthcare", "media", "logistics")
COUNTRIES = ("US", "GB", "DE", "FR", "NL", "CA", "AU", "IN", "BR", "JP")
_ADJECTIVES = (
    "acme",
    "blue",
    "bright",
    "cedar",
    "delta",
    "ember",
    "fable",
    "granite",
    "harbor",
    "iris",
    "juniper",
    "kite",
    "lumen",
    "maple",
    "nimbus",
    "orbit",
    "pine",
    "quartz",
    "river",
    "summit",
    "tidal",
    "umber",
    "vector",
    "willow",
    "zephyr",
)
_NOUNS = (
    "analytics",
    "bank",
    "cloud",
    "design",
    "health",
    "labs",
    "logistics",
    "media",
    "retail",
    "robotics",
    "school",
    "studio",
    "systems",
    "ventures",
    "works",
)
_FIRST = (
    "ana",
    "ben",
    "chen",
    "dara",
    "eli",
    "fatima",
    "gus",
    "hana",
    "ivan",
    "jo",
    "kofi",
    "lea",
    "mo",
    "nina",
    "omar",
    "priya",
    "quinn",
    "rosa",
    "sam",
    "tomas",
    "uma",
    "vik",
)


class BadKind(StrEnum):
    """The ways a malformed event is broken; each value is the `RejectReason` value the parser
    (`streams.events.parse`) must answer with, so tests can hold both sides to it."""

    NOT_JSON = "invalid_json"  # only in lines(): a dict cannot be "not JSON"
    MISSING_TIMESTAMP = "missing_timestamp"
    BAD_TIMESTAMP = "bad_timestamp"
    WRONG_FIELD_TYPE = "wrong_field_type"
    INVALID_TYPE = "invalid_type"
    MISSING_USER = "missing_user"
    MISSING_EVENT_NAME = "missing_event_name"


@dataclass(slots=True)
class UserPlan:
    user_id: str
    name: str
    email: str
    title: str
    joined_ms: int | None = None  # None until (unless) they accept an invite


@dataclass(slots=True)
class AccountPlan:
    """Everything decided about an account before its events are drawn (public for tests)."""

    index: int
    account_id: str
    name: str
    persona: Persona
    employees: int
    industry: str
    country: str
    signup_ms: int
    utc_offset_h: int  # local working hours are shifted by this
    group_context: bool  # whether track events carry context.groupId
    users: list[UserPlan] = field(default_factory=list)


def default_quiet_after(days: float) -> float:
    """Days after `start` when GOES_QUIET accounts stop: day 5 on a 40-day span (so their 30-day
    windows expire at day ~35, inside the span), proportionally earlier on shorter spans."""
    return min(5.0, days / 8)


def iso_ms(ms: int) -> str:
    """Epoch ms -> `YYYY-MM-DDTHH:MM:SS.mmmZ`, the form Segment libraries send."""
    dt = datetime.fromtimestamp(ms // 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


def _epoch_ms(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    return delta.days * DAY_MS + delta.seconds * 1000 + delta.microseconds // 1000


def plan_accounts(
    accounts: int = 40,
    days: float = 1.0,
    seed: int = 7,
    start: datetime | None = None,
    personas: Sequence[Persona] | None = None,
    quiet_after: float | None = None,
) -> list[AccountPlan]:
    """The accounts `generate()` would simulate with the same arguments, without their events."""
    if accounts < 0 or days <= 0:
        raise ValueError("accounts must be >= 0 and days > 0")
    cycle = tuple(personas) if personas else DEFAULT_PERSONAS
    start_ms = _epoch_ms(start or DEFAULT_START)
    qa = default_quiet_after(days) if quiet_after is None else quiet_after
    used: set[str] = set()
    plans: list[AccountPlan] = []
    for i in range(accounts):
        rng = random.Random(f"pql-sim/{seed}/plan/{i}")
        persona = cycle[i % len(cycle)]
        slug = f"{rng.choice(_ADJECTIVES)}-{rng.choice(_NOUNS)}"
        account_id = slug if slug not in used else f"{slug}-{i}"
        used.add(account_id)
        if persona is Persona.TINY_TEAM:
            employees = rng.randint(2, 8)
        elif persona is Persona.CASUAL:
            employees = rng.randint(3, 60)
        else:  # ICP-sized, log-uniform 12..800
            employees = int(math.exp(rng.uniform(math.log(12), math.log(800))))
        # Signup: quiet accounts early enough to be busy before they stop; the rest spread over
        # the first quarter of the span (at most a week) so transitions keep coming. Account 0
        # signs up within the first hour so the demo shows something right away.
        if i == 0:
            offset_ms = rng.randint(5 * MINUTE_MS, 45 * MINUTE_MS)
        elif persona is Persona.GOES_QUIET:
            offset_ms = int(rng.uniform(0, qa * 0.2) * DAY_MS)
        else:
            offset_ms = int(rng.uniform(0, min(days * 0.25, 7.0)) * DAY_MS)
        plan = AccountPlan(
            index=i,
            account_id=account_id,
            name=slug.replace("-", " ").title(),
            persona=persona,
            employees=employees,
            industry=rng.choice(INDUSTRIES),
            country=rng.choice(COUNTRIES),
            signup_ms=start_ms + offset_ms,
            utc_offset_h=rng.choice((-8, -5, 0, 1, 2, 5, 9)),
            group_context=(i % 6 != 5),
        )
        seats = {
            Persona.QUALIFIER: rng.randint(4, 8),
            Persona.GOES_QUIET: rng.randint(3, 6),
            Persona.TINY_TEAM: min(employees, rng.randint(2, 4)),
            Persona.FREE_LIMIT: rng.randint(1, 2),
            Persona.WINDOW_SHOPPER: rng.randint(1, 3),
            Persona.CASUAL: rng.randint(1, 2),
        }[persona]
        for u in range(seats):
            first = rng.choice(_FIRST)
            # Decision makers (what `icp_pql`-style rules look for): often the founder of a
            # bigger engaged account, sometimes an invitee.
            founder_dm = u == 0 and persona in (Persona.QUALIFIER, Persona.GOES_QUIET)
            if rng.random() < (0.5 if founder_dm else 0.15 if u > 0 else 0.0):
                title = rng.choice(DECISION_MAKER_TITLES)
            else:
                title = rng.choice(OTHER_TITLES)
            plan.users.append(
                UserPlan(
                    user_id=f"{account_id}.u{u + 1}",
                    name=first.title(),
                    email=f"{first}.{u + 1}@{account_id}.example",
                    title=title,
                )
            )
        plan.users[0].joined_ms = plan.signup_ms
        plans.append(plan)
    return plans


class _AccountSim:
    """Draws one account's events (unsorted) into `self.out` as (ts_ms, seq, event)."""

    def __init__(
        self, plan: AccountPlan, seed: int, start_ms: int, end_ms: int, quiet_ms: int
    ) -> None:
        self.p = plan
        self.seed = seed
        self.rng = random.Random(f"pql-sim/{seed}/events/{plan.index}")
        self.start_ms = start_ms
        # GOES_QUIET accounts produce nothing after quiet_ms: that is what makes them drop out.
        self.end_ms = min(end_ms, quiet_ms) if plan.persona is Persona.GOES_QUIET else end_ms
        self.seq = 0
        self.out: list[tuple[int, int, dict[str, Any]]] = []

    # -- event builders ------------------------------------------------------------------
    def _emit(self, ts: int, event: dict[str, Any]) -> None:
        if not (self.start_ms <= ts < self.end_ms):
            return
        event["messageId"] = str(
            uuid.uuid5(_NAMESPACE, f"{self.seed}/{self.p.account_id}/{self.seq}")
        )
        event["timestamp"] = iso_ms(ts)
        self.out.append((ts, self.seq, event))
        self.seq += 1

    def track(self, ts: int, user: UserPlan, name: str, props: dict[str, Any]) -> None:
        context: dict[str, Any] = {"library": {"name": "analytics-node", "version": "6.2.0"}}
        if self.p.group_context:
            context["groupId"] = self.p.account_id
        self._emit(
            ts,
            {
                "type": "track",
                "event": name,
                "userId": user.user_id,
                "properties": props,
                "context": context,
            },
        )

    def join(self, ts: int, user: UserPlan) -> None:
        """A user's first appearance: group call (account traits), then identify (user traits)."""
        p = self.p
        self._emit(
            ts,
            {
                "type": "group",
                "userId": user.user_id,
                "groupId": p.account_id,
                "traits": {
                    "name": p.name,
                    "employees": p.employees,
                    "industry": p.industry,
                    "country": p.country,
                    "plan": "free",
                    "created_at": iso_ms(p.signup_ms),
                },
            },
        )
        self._emit(
            ts + 150,
            {
                "type": "identify",
                "userId": user.user_id,
                "traits": {
                    "name": user.name,
                    "email": user.email,
                    "title": user.title,
                    "created_at": iso_ms(ts),
                },
            },
        )

    # -- behaviour -----------------------------------------------------------------------
    def _work_time(self, day_ms: int) -> int:
        """A moment in local working hours (08:00-19:00) of the account on that UTC day."""
        hour = self.rng.triangular(8.0, 19.0, 11.0) - self.p.utc_offset_h
        return day_ms + int(hour * HOUR_MS)

    def run(self) -> list[tuple[int, int, dict[str, Any]]]:
        p, rng = self.p, self.rng
        founder = p.users[0]
        t = p.signup_ms
        self.join(t, founder)
        self.track(
            t + 400,
            founder,
            "Signed Up",
            {"plan": "free", "source": rng.choice(("google", "referral", "producthunt", "direct"))},
        )
        persona = p.persona
        engaged = persona in (Persona.QUALIFIER, Persona.GOES_QUIET, Persona.TINY_TEAM)
        if engaged or (persona is Persona.WINDOW_SHOPPER and rng.random() < 0.5):
            t_onb = t + rng.randint(5, 40) * MINUTE_MS
            self.track(t_onb, founder, "Onboarding Completed", {"steps": 5})
        # Trying it out: a burst of messages in the first hour (why qualifiers qualify fast).
        burst = {
            Persona.QUALIFIER: (6, 14),
            Persona.GOES_QUIET: (6, 12),
            Persona.TINY_TEAM: (6, 14),
            Persona.FREE_LIMIT: (2, 5),
            Persona.WINDOW_SHOPPER: (1, 3),
            Persona.CASUAL: (1, 3),
        }[persona]
        for _ in range(rng.randint(*burst)):
            self.track(
                t + rng.randint(2, 60) * MINUTE_MS, founder, "Message Sent", self._message_props()
            )
        self.track(
            t + rng.randint(3, 50) * MINUTE_MS, founder, "Channel Created", {"visibility": "public"}
        )
        # Invites: teammates beyond the founder; most accept within a day.
        if engaged:
            inv_t = t + rng.randint(20, 120) * MINUTE_MS
            for user in p.users[1:]:
                self.track(
                    inv_t, founder, "Invite Sent", {"invitee_email": user.email, "role": "member"}
                )
                if rng.random() < 0.85:
                    user.joined_ms = inv_t + int(rng.uniform(0.2, 20) * HOUR_MS)
                    self.join(user.joined_ms, user)
                inv_t += int(rng.uniform(0.1, 30) * HOUR_MS)
        else:
            for user in p.users[1:]:  # small accounts: colleagues join without invites
                user.joined_ms = t + int(rng.uniform(1, 72) * HOUR_MS)
                self.join(user.joined_ms, user)
        if persona is Persona.WINDOW_SHOPPER:  # comparing plans right after signing up
            for _ in range(rng.randint(1, 3)):
                self.track(
                    t + rng.randint(5, 180) * MINUTE_MS,
                    founder,
                    "Pricing Viewed",
                    {
                        "plan": rng.choice(("pro", "business")),
                        "billing": "monthly",
                        "source": "signup_flow",
                    },
                )
        if persona is Persona.FREE_LIMIT:  # migrating an archive on day one
            up_t = t + rng.randint(30, 90) * MINUTE_MS
            for _ in range(rng.randint(12, 18)):
                self.track(up_t, founder, "File Uploaded", self._file_props(250, 600))
                up_t += rng.randint(1, 12) * MINUTE_MS
        self._days()
        return self.out

    def _message_props(self) -> dict[str, Any]:
        rng = self.rng
        return {
            "channel_type": rng.choice(("public", "public", "private", "dm")),
            "length": rng.randint(3, 400),
            "has_attachment": rng.random() < 0.1,
        }

    def _file_props(self, lo: float, hi: float) -> dict[str, Any]:
        rng = self.rng
        ext = rng.choice(("pdf", "png", "mp4", "zip", "xlsx", "docx"))
        return {"size_mb": round(rng.uniform(lo, hi), 2), "file_type": ext}

    def _days(self) -> None:
        p, rng = self.p, self.rng
        persona = p.persona
        day0 = self.start_ms + ((p.signup_ms - self.start_ms) // DAY_MS) * DAY_MS
        weekday_p, weekend_p, msgs = {
            Persona.QUALIFIER: (0.92, 0.15, (3, 12)),
            Persona.GOES_QUIET: (0.9, 0.1, (3, 10)),
            Persona.TINY_TEAM: (0.92, 0.2, (5, 14)),
            Persona.FREE_LIMIT: (0.6, 0.1, (1, 4)),
            Persona.WINDOW_SHOPPER: (0.35, 0.05, (0, 2)),
            Persona.CASUAL: (0.2, 0.05, (0, 2)),
        }[persona]
        day = day0
        while day < self.end_ms:
            weekday = datetime.fromtimestamp(day // 1000, tz=UTC).weekday()
            active_p = weekday_p if weekday < 5 else weekend_p
            for user in p.users:
                if user.joined_ms is None or rng.random() >= active_p:
                    continue
                for _ in range(rng.randint(*msgs)):
                    ts = self._work_time(day)
                    if ts > user.joined_ms:
                        self.track(ts, user, "Message Sent", self._message_props())
                if rng.random() < 0.05:
                    ts = self._work_time(day)
                    if ts > user.joined_ms:
                        self.track(
                            ts,
                            user,
                            "Channel Created",
                            {"visibility": rng.choice(("public", "private"))},
                        )
                upload_p = 0.5 if persona is Persona.FREE_LIMIT else 0.2
                if rng.random() < upload_p:
                    ts = self._work_time(day)
                    if ts > user.joined_ms:
                        big = persona is Persona.FREE_LIMIT
                        props = self._file_props(60, 500) if big else self._file_props(0.05, 25)
                        self.track(ts, user, "File Uploaded", props)
            hosts = [u for u in p.users if u.joined_ms is not None and u.joined_ms < day + DAY_MS]
            meet_p = {Persona.QUALIFIER: 0.45, Persona.GOES_QUIET: 0.4, Persona.TINY_TEAM: 0.3}.get(
                persona, 0.05
            )
            if hosts and weekday < 5 and rng.random() < meet_p:
                ts = self._work_time(day)
                host = rng.choice(hosts)
                if host.joined_ms is not None and ts > host.joined_ms:
                    participants = rng.randint(2, max(2, min(30, p.employees)))
                    self.track(
                        ts,
                        host,
                        "Meeting Hosted",
                        {
                            "participants": participants,
                            "duration_min": rng.choice((15, 30, 45, 60)),
                        },
                    )
            pricing_p = {Persona.WINDOW_SHOPPER: 0.45, Persona.FREE_LIMIT: 0.15}.get(persona, 0.04)
            if hosts and rng.random() < pricing_p:
                viewer = hosts[0]
                for _ in range(rng.randint(1, 3)):
                    ts = self._work_time(day)
                    if viewer.joined_ms is not None and ts > viewer.joined_ms:
                        self.track(
                            ts,
                            viewer,
                            "Pricing Viewed",
                            {
                                "plan": rng.choice(("pro", "business")),
                                "billing": rng.choice(("monthly", "annual")),
                                "source": rng.choice(("settings", "upgrade_banner", "limit_modal")),
                            },
                        )
            day += DAY_MS


def _break(rng: random.Random, event: dict[str, Any], n: int, seed: int) -> tuple[Any, BadKind]:
    """A malformed variant of `event` (a deep-enough copy; the original is left intact)."""
    kind = rng.choice(list(BadKind))
    bad: dict[str, Any] = json.loads(json.dumps(event))
    bad["messageId"] = str(uuid.uuid5(_NAMESPACE, f"{seed}/bad/{n}"))
    if kind is BadKind.NOT_JSON:
        text = json.dumps(bad, separators=(",", ":"))
        return text[: max(10, len(text) // 2)], kind  # truncated mid-object
    if kind is BadKind.MISSING_TIMESTAMP:
        del bad["timestamp"]
    elif kind is BadKind.BAD_TIMESTAMP:
        bad["timestamp"] = rng.choice(("yesterday", "2026-13-45T25:61:00Z", "05/01/2026 10:00"))
    elif kind is BadKind.WRONG_FIELD_TYPE:
        if bad["type"] == "track":
            bad["properties"] = "size_mb=12"
        else:
            bad["traits"] = ["employees", 12]
    elif kind is BadKind.INVALID_TYPE:
        bad["type"] = rng.choice(("alias", "batch", None))  # page/screen are accepted
    elif kind is BadKind.MISSING_USER:
        bad.pop("userId", None)
        bad.pop("anonymousId", None)
    elif kind is BadKind.MISSING_EVENT_NAME:
        bad["type"] = "track"
        bad.pop("event", None)
        bad.setdefault("properties", {})
    return bad, kind


def labelled(
    accounts: int = 40,
    days: float = 1.0,
    seed: int = 7,
    start: datetime | None = None,
    personas: Sequence[Persona] | None = None,
    *,
    quiet_after: float | None = None,
    bad_ratio: float = 0.0,
) -> Iterator[tuple[dict[str, Any] | str, BadKind | None]]:
    """Every item with how it is broken (None = a good event). `str` items are non-JSON lines.

    The single source the other entry points filter, so they can never disagree.
    """
    start_dt = start or DEFAULT_START
    start_ms = _epoch_ms(start_dt)
    end_ms = start_ms + int(days * DAY_MS)
    qa = default_quiet_after(days) if quiet_after is None else quiet_after
    quiet_ms = start_ms + int(qa * DAY_MS)
    plans = plan_accounts(accounts, days, seed, start_dt, personas, qa)
    streams = []
    for plan in plans:
        events = _AccountSim(plan, seed, start_ms, end_ms, quiet_ms).run()
        events.sort(key=lambda e: (e[0], e[1]))
        streams.append([(ts, plan.index, sq, ev) for ts, sq, ev in events])
    bad_rng = random.Random(f"pql-sim/{seed}/bad")
    n_bad = 0
    for _ts, _idx, _sq, event in heapq.merge(*streams, key=lambda e: (e[0], e[1], e[2])):
        yield event, None
        if bad_ratio > 0 and bad_rng.random() < bad_ratio:
            yield _break(bad_rng, event, n_bad, seed)
            n_bad += 1


def generate(
    accounts: int = 40,
    days: float = 1.0,
    seed: int = 7,
    start: datetime | None = None,
    personas: Sequence[Persona] | None = None,
    *,
    quiet_after: float | None = None,
    bad_ratio: float = 0.0,
) -> Iterator[dict[str, Any]]:
    """Event dicts in timestamp order (see the module docstring).

    With `bad_ratio > 0` malformed dicts are mixed in; "not JSON" ones only exist in `lines()`.
    """
    for item, _kind in labelled(
        accounts, days, seed, start, personas, quiet_after=quiet_after, bad_ratio=bad_ratio
    ):
        if isinstance(item, dict):
            yield item


def lines(
    accounts: int = 40,
    days: float = 1.0,
    seed: int = 7,
    start: datetime | None = None,
    personas: Sequence[Persona] | None = None,
    *,
    quiet_after: float | None = None,
    bad_ratio: float = 0.0,
) -> Iterator[str]:
    """JSON lines (no trailing newline), including non-JSON garbage when `bad_ratio > 0`."""
    for item, _kind in labelled(
        accounts, days, seed, start, personas, quiet_after=quiet_after, bad_ratio=bad_ratio
    ):
        yield item if isinstance(item, str) else json.dumps(item, separators=(",", ":"))


def write(
    path: str | Path,
    accounts: int = 40,
    days: float = 1.0,
    seed: int = 7,
    start: datetime | None = None,
    personas: Sequence[Persona] | None = None,
    *,
    quiet_after: float | None = None,
    bad_ratio: float = 0.0,
) -> Counter[str]:
    """Write a `.jsonl` (or `.jsonl.gz`, byte-identical across runs: mtime 0) file.

    Returns counts: `events` (good), `bad`, and one per bad kind, for summaries.
    """
    path = Path(path)
    counts: Counter[str] = Counter()
    with path.open("wb") as raw:
        gz = (
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0)
            if path.suffix == ".gz"
            else None
        )
        out = io.TextIOWrapper(gz if gz is not None else raw, encoding="utf-8")
        _write_to(out, counts, accounts, days, seed, start, personas, quiet_after, bad_ratio)
        out.flush()
        out.detach()  # leave closing to `gz` / `raw`, in the right order
        if gz is not None:
            gz.close()
    return counts


def _write_to(
    out: TextIO,
    counts: Counter[str],
    accounts: int,
    days: float,
    seed: int,
    start: datetime | None,
    personas: Sequence[Persona] | None,
    quiet_after: float | None,
    bad_ratio: float,
) -> None:
    for item, kind in labelled(
        accounts, days, seed, start, personas, quiet_after=quiet_after, bad_ratio=bad_ratio
    ):
        text = item if isinstance(item, str) else json.dumps(item, separators=(",", ":"))
        out.write(text + "\n")
        if kind is None:
            counts["events"] += 1
        else:
            counts["bad"] += 1
            counts[kind.value] += 1


def _parse_start(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> datetime | None:
    if value is None:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise click.BadParameter(f"not an ISO-8601 date/time: {value!r}") from exc
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


@click.command()
@click.option("--accounts", type=click.IntRange(min=0), default=40, show_default=True)
@click.option(
    "--days",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="Simulated span of event time.",
)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option(
    "--bad-ratio",
    type=click.FloatRange(0, 1),
    default=0.01,
    show_default=True,
    help="Chance of a malformed event after each good one (shows the DLQ).",
)
@click.option(
    "--quiet-after",
    type=click.FloatRange(min=0),
    default=None,
    help="Day when 'goes quiet' accounts stop. [default: min(5, days/8)]",
)
@click.option(
    "--start",
    callback=_parse_start,
    default=None,
    help=f"Event time of the start. [default: {DEFAULT_START.date()}]",
)
@click.option(
    "--out",
    "out",
    default="-",
    show_default=True,
    help="FILE.jsonl, FILE.jsonl.gz, or - for stdout.",
)
def simulate(
    accounts: int,
    days: float,
    seed: int,
    bad_ratio: float,
    quiet_after: float | None,
    start: datetime | None,
    out: str,
) -> None:
    """Generate simulated team-chat product events (Segment spec), deterministic per seed."""
    if out == "-":
        counts: Counter[str] = Counter()
        _write_to(sys.stdout, counts, accounts, days, seed, start, None, quiet_after, bad_ratio)
        sys.stdout.flush()
    else:
        counts = write(
            out, accounts, days, seed, start, None, quiet_after=quiet_after, bad_ratio=bad_ratio
        )
    plans = plan_accounts(accounts, days, seed, start, None, quiet_after)
    mix = Counter(p.persona.value for p in plans)
    click.echo(
        f"simulated {accounts} accounts over {days:g} days: {counts['events']} events, "
        f"{counts['bad']} malformed; personas: "
        + ", ".join(f"{k}={v}" for k, v in sorted(mix.items())),
        err=True,
    )


if __name__ == "__main__":
    simulate()
