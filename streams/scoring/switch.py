"""Switching model versions over kept state: the one definition the worker and `pql backtest
--switch-model` share.

A switch to model NEW at stream time T (epoch ms):

1. every event before T is applied under the old model, and every window expiry at or before T
   fires under it (the account is advanced to T);
2. at T, NEW takes the account's state as it is (the signals are the same, see
   `compatibility`) and decides in full; whatever it decides differently (PQL status, segment
   membership) is emitted as a `model_change` transition at T, stamped with NEW's version and
   `model.effective_from` = T;
3. every event at or after T, and every later expiry, is applied under NEW. An event older than T
   that arrives after the switch is late for the account and applied under NEW, as any late event.

Only the signals make the state, so a change to score rules, qualify/exit or segments applies
from kept state; a change to a signal needs that signal's history (a backfill) first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streams.model.spec import Model, Signal, signal_key, state_fingerprint
from streams.scoring.engine import Scorer
from streams.state.account import AccountState


@dataclass(frozen=True, slots=True)
class ModelSwitch:
    at_ms: int  # stream time from which `model` applies
    model: Model


class IncompatibleModel(ValueError):
    """The new model cannot take over the old one's state (or is the same version changed)."""


def _signal_text(s: Signal) -> str:
    parts = [s.kind.value]
    if s.events is not None:
        parts.append("events " + ", ".join(sorted(s.events)))
    if s.where is not None:
        parts.append(f"where {s.where.source}")
    if s.property:
        parts.append(f"property {s.property}")
    if s.window_ms is not None:
        parts.append(f"window {s.window_ms} ms, bucket {s.bucket_ms} ms")
    if s.trait:
        parts.append(f"trait {s.trait}")
    if s.values is not None:
        parts.append("in " + ", ".join(sorted(repr(v) for v in s.values)))
    if s.half_life_ms is not None:
        parts.append(f"half-life {s.half_life_ms} ms")
    return "; ".join(parts)


def signal_changes(old: Model, new: Model) -> list[str]:
    """What differs between the two models' signals, one line each (empty: the same state)."""
    if state_fingerprint(old) == state_fingerprint(new):
        return []
    before = {s.name: s for s in old.signals}
    after = {s.name: s for s in new.signals}
    out = [f"new signal {name!r}" for name in after if name not in before]
    out += [f"signal {name!r} removed" for name in before if name not in after]
    for name in sorted(after.keys() & before.keys()):
        if signal_key(before[name]) != signal_key(after[name]):
            out.append(
                f"signal {name!r} changed: {_signal_text(before[name])} -> "
                f"{_signal_text(after[name])}"
            )
    if not out:
        out.append("the signals are listed in another order")
    return sorted(out)


def check_switch(old: Model, new: Model) -> None:
    """Raise `IncompatibleModel` unless `new` can take over `old`'s state at a switch."""
    if old.fingerprint and new.fingerprint == old.fingerprint:
        return
    if new.name != old.name:
        raise IncompatibleModel(
            f"the model's name changed ({old.name} -> {new.name}): a renamed model is another "
            "model (its name is in every transition id and, by default, in the app id); keep "
            "the name, or deploy it side by side under its own app id"
        )
    if new.version == old.version:
        raise IncompatibleModel(
            f"the model changed but its version did not (still {old.name} v{old.version}): "
            "give the new definition a new `version:`, so that its transitions are told apart"
        )
    changes = signal_changes(old, new)
    if changes:
        raise IncompatibleModel(
            f"{new.name} v{new.version} changes what {old.name} v{old.version} keeps per account "
            "(" + "; ".join(changes) + "): only score rules, qualify/exit, segments and the "
            "playbook can change over kept state; a signal change needs that signal's history"
        )


def switch_account(
    old: Scorer, new: Scorer, account_id: str, state: AccountState, at: int
) -> list[dict[str, Any]]:
    """Advance the account to `at` under `old`, then let `new` decide it there (see module).
    If `new` ran as a shadow over the account its decision is taken as it is
    (`streams.scoring.shadow`); shadows of versions up to `new`'s end."""
    transitions = old.advance(account_id, state, at)
    version = new.model.version
    shadow = state.shadows.pop(version, None)
    if state.shadows:
        for v in [v for v in state.shadows if v < version]:
            del state.shadows[v]
    if shadow is not None:
        transitions.extend(new.adopt(account_id, state, shadow, at))
    else:
        transitions.extend(new.rescore(account_id, state, at))
    return transitions
