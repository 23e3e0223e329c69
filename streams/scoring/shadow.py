"""Shadow models: candidate models deciding every account beside the live one, over the same
signals, without acting (their transitions go elsewhere). The definition the worker and
`pql backtest --shadow` share.

A shadow of model CANDIDATE started at stream time S is "what if CANDIDATE had been switched to
at S" (`streams.scoring.switch`), run beside the live model:

1. every account existing at S is advanced to S under the live model; then CANDIDATE takes a
   copy of the live decision (`AccountState.shadows[version]`) and decides in full at S: what it
   decides differently is its `model_change` transition at S;
2. from then on, whenever the live model decides an account (an event, a late event, a window
   expiry), CANDIDATE decides it too, from the same signals and at the same instant; an account
   created after S is decided by CANDIDATE from its first event. So CANDIDATE's transitions are
   those at or after S of a backtest switching to it at S (tested), and, for a shadow running
   from the app's start, those of a backtest of CANDIDATE alone. (One difference by design: a
   switch moves each account's clock to S, a shadow does not — the live model must decide the
   same with or without shadows — so an event older than S read after S is decided at its own
   time, not at S, by both models);
3. promotion is a switch to CANDIDATE (`switch_account`): at the switch, an account with a
   shadow decision of CANDIDATE's version takes it as the live decision (`Scorer.adopt`), so
   the live model goes on exactly where the shadow was, and a shadow of a version at or before
   the new live one ends.

A shadow must read the same signals as the live model (the state is shared); a candidate with
other signals would need their history (a backfill) first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streams.model.spec import Model
from streams.scoring.engine import Scorer
from streams.scoring.switch import IncompatibleModel, check_switch, signal_changes
from streams.state.account import AccountState


@dataclass(frozen=True, slots=True)
class ShadowStart:
    at_ms: int  # stream time from which `model` runs as a shadow
    model: Model


def check_shadow(live: Model, candidate: Model) -> None:
    """Raise `IncompatibleModel` unless `candidate` can shadow `live` (and later follow it:
    the same name and signals, a later version)."""
    if candidate.version <= live.version:
        raise IncompatibleModel(
            f"a shadow model's version ({candidate.version}) must be after the live one's "
            f"({live.version}): a shadow is a candidate to follow it"
        )
    changes = signal_changes(live, candidate)
    if changes and candidate.name == live.name:
        raise IncompatibleModel(
            f"{candidate.name} v{candidate.version} computes other signals than the live "
            f"v{live.version} (" + "; ".join(changes) + "): a shadow reads the live model's "
            "state, so it cannot run as one; make it the model file instead (a switch after a "
            "backfill), or try it offline with pql backtest --switch-model"
        )
    check_switch(live, candidate)


def start_shadow(
    live: Scorer, shadow: Scorer, account_id: str, state: AccountState, at: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Advance the account to `at` under `live`, then start `shadow` on it there (see module):
    (the live model's transitions, the shadow's)."""
    transitions = live.advance(account_id, state, at)
    return transitions, shadow.start_shadow(account_id, state, at)
