"""Per-account state: one compact value per account, serialised to bytes for a RocksDB table.

Layout (msgpack, array-like structs, so field names are not repeated per account):

- one `SignalState` per model signal, in model order:
  - windowed `count` / `sum`: `buckets` maps event-time bucket index (ts // bucket_ms) to the
    amount in that bucket; `total` is the sum of the buckets still inside the window;
  - windowed `active_days`: `buckets` keyed by UTC day index; the value is the number of buckets;
  - `distinct_users` (windowed or not) and `users_with_trait`: `keys` maps user id -> last bucket
    index the user was seen in (or 1 for trait membership); the value is `len(keys)`;
  - lifetime `count` / `sum` / `ever`: only `total`.
- account traits the model reads (`traits`, with the event time of the last group call applied);
- the live model's decision (`score`, `pql`, `segments`) and each shadow model's (`shadows`).

Memory bound per account (documented in the README): for each windowed signal at most
window/bucket + 1 buckets (31 with the default bucket sizes); for user-keyed signals one entry per
distinct user seen in the window, capped at `MAX_KEYS_PER_SIGNAL`; traits only those the model
reads. Nothing grows with the number of events.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

# Upper bound on user-keyed entries per signal and account. Past it a signal saturates (new users
# are not added until old ones expire); the README documents this bound.
MAX_KEYS_PER_SIGNAL = 10_000
# Transitions kept per account for the lookup API's "last transitions" (newest last).
RECENT_TRANSITIONS = 5
# "No pending expiry": larger than any epoch-ms timestamp we will meet.
NEVER = 2**62


class SignalState(msgspec.Struct, array_like=True, omit_defaults=True):
    total: int | float = 0
    buckets: dict[int, int | float] = msgspec.field(default_factory=dict)
    keys: dict[str, int] = msgspec.field(default_factory=dict)


class Decision(msgspec.Struct, array_like=True, omit_defaults=True, dict=True):
    """A shadow model's decision about an account (`AccountState.shadows`): what the live
    model's is in `AccountState`'s own fields. `dict=True` for the same evaluation cache."""

    score: int | float = 0
    pql: bool = False
    segments: list[str] = msgspec.field(default_factory=list)
    evaluated: bool = False
    # The playbook's cooldown (`streams.scoring.playbook`): per play, the instant of the last
    # alert.
    alerted: dict[str, int] = msgspec.field(default_factory=dict)


class AccountState(msgspec.Struct, array_like=True, omit_defaults=True, dict=True):
    """`dict=True` lets the scorer attach an in-memory evaluation cache as an undeclared
    attribute (see `streams.scoring.engine`): msgspec encodes declared fields only, so the bytes
    are the same with or without it, and a decoded state simply has none."""

    # First 16 hex chars of the state fingerprint (`streams.model.spec.state_fingerprint`: the
    # signals) of the model that built this state: a value written for other signals is never
    # mixed with these (see `StateCodec.decode`); another model with the same signals reads it.
    model: str
    signals: list[SignalState]
    clock: int = 0  # account time: the last instant this account was evaluated at (epoch ms)
    first_seen: int = 0  # event time of the account's first event
    next_expiry: int = NEVER  # earliest instant a windowed value may change by time alone
    score: int | float = 0
    pql: bool = False
    segments: list[str] = msgspec.field(default_factory=list)  # segments the account is in
    traits: dict[str, object] = msgspec.field(default_factory=dict)
    traits_ts: int = 0  # event time of the group call the traits come from
    evaluated: bool = False  # False until the first evaluation (so the first one always runs)
    # Worker only: per "input partition:path", the highest position (input offset and delivery
    # index, see streams/app/wire.py) applied to this account, so an event re-sent or re-read
    # after a crash is never applied twice. At most input partitions x (by-user partitions + 1)
    # entries; empty in the backtest.
    seen: dict[str, int] = msgspec.field(default_factory=dict)
    # messageId de-duplication (`streams.state.dedup`): digests of the events that changed a
    # signal within the horizon, and [hour, count] runs of them. Appended last, so states
    # written before they existed still decode.
    dedup_ids: bytes = b""
    dedup_runs: list[list[int]] = msgspec.field(default_factory=list)
    # The version of the model whose decision `score`, `pql` and `segments` are (0: written
    # before versions were kept: the first model of the app's history).
    version: int = 0
    # Per shadow model version running over this account (`streams.scoring.shadow`): its own
    # decision, over the same signals (an empty map without shadows: one byte).
    shadows: dict[int, Decision] = msgspec.field(default_factory=dict)
    # The playbook's cooldown (`streams.scoring.playbook`): per play (`qualified` or a routed
    # segment), the instant of the account's last alert. At most 1 + routed segments entries.
    alerted: dict[str, int] = msgspec.field(default_factory=dict)
    # The live model's last `RECENT_TRANSITIONS` transitions of this account, oldest first, as
    # `recent_entry` packs them (about 26 bytes each; the lookup API shows them).
    recent: list[list[Any]] = msgspec.field(default_factory=list)
    # The funnel (epoch ms, 0: not yet): the live model's first qualification of the account
    # (set by the scorer), and, in the worker, its entry (first sign-up event) and first
    # conversion event (`streams.app.funnel`: the live funnel metrics).
    first_pql: int = 0
    entered: int = 0
    converted: int = 0


_KIND_CODES = {"qualified": 0, "disqualified": 1, "segment_entered": 2, "segment_exited": 3}
_KINDS = tuple(_KIND_CODES)


def recent_entry(at: int, kind: str, segment: str | None, transition_id: str) -> list[Any]:
    """A transition as `AccountState.recent` keeps it: [occurred_at ms, kind code, segment or
    None, the id's 16 bytes]."""
    return [at, _KIND_CODES[kind], segment, bytes.fromhex(transition_id)]


def recent_transition(entry: list[Any]) -> tuple[int, str, str | None, str]:
    """(occurred_at ms, kind, segment, transition_id) of a `recent_entry`."""
    at, code, segment, raw = entry
    return at, _KINDS[code], segment, raw.hex()


_S = TypeVar("_S", "AccountState", "StateSummary")


class StateSummary(msgspec.Struct, array_like=True):
    """The leading fields of an encoded `AccountState`, with its signals left undecoded
    (`msgspec.Raw`) and the fields after `segments` ignored: what indexing restored accounts
    needs, at a fraction of a full decode. Field order and defaults must match AccountState."""

    model: str
    signals: msgspec.Raw
    clock: int = 0
    first_seen: int = 0
    next_expiry: int = NEVER
    score: int | float = 0
    pql: bool = False
    segments: list[str] = msgspec.field(default_factory=list)


class StateCodec:
    """Bytes <-> AccountState for a table whose values are state of one model's signals.

    `also`: other tags read as ours (states written before the tag named the signals only:
    they carry the whole model's fingerprint)."""

    def __init__(self, model_tag: str, also: tuple[str, ...] = ()) -> None:
        self.model_tag = model_tag
        self._tags = frozenset((model_tag, *also))
        # Tags of later model versions' signals, read as they are (`accept`).
        self._kept: frozenset[str] = frozenset()
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder(AccountState)
        self._summary = msgspec.msgpack.Decoder(StateSummary)

    def accept(self, tag: str) -> None:
        """Read states of another model's signals too, keeping their tag: a table whose
        accounts switch to a model with other signals (`streams.scoring.backfill`) holds both
        kinds until every partition has switched."""
        self._kept = self._kept | {tag}

    def encode(self, state: AccountState) -> bytes:
        return self._encoder.encode(state)

    def decode(self, data: bytes | None) -> AccountState | None:
        """The state, or None when absent or written by another model (start afresh)."""
        return self._ours(self._decoder, data)

    def summary(self, data: bytes | None) -> StateSummary | None:
        """`decode`'s leading fields only (None in the same cases)."""
        return self._ours(self._summary, data)

    def _ours(self, decoder: msgspec.msgpack.Decoder[_S], data: bytes | None) -> _S | None:
        if not data:
            return None
        value = decoder.decode(data)
        if value.model == self.model_tag or value.model in self._kept:
            return value
        if value.model in self._tags:
            value.model = self.model_tag  # written again under the current tag
            return value
        return None
