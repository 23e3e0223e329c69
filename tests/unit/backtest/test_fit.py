"""`pql fit` (issue 16 item 3): on simulated history with known converters (and a tell-tale
event fired just before converting, which a leak would love), and on the shared OULAD slice."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from streams.backtest.fit import fit
from streams.cli import main
from streams.io.oulad import convert
from streams.io.simulate import iso_ms, plan_accounts
from streams.model.loader import check_model, load_model, parse_model
from tests.unit.backtest import test_report

ROOT = Path(__file__).resolve().parents[3]


def _oulad() -> Path:
    """The shared OULAD slice: beside the checkout (`../shared/data`), or, for a clone elsewhere
    on the machine (CI clones to a temporary directory), where the checkout's is; or
    $PQL_SHARED_DATA. Missing is a failure, not a skip."""
    candidates = [
        Path(os.environ["PQL_SHARED_DATA"]) if os.environ.get("PQL_SHARED_DATA") else None,
        ROOT.parent / "shared" / "data",
        Path("/work/shared/data"),
    ]
    for base in candidates:
        if base is not None and (base / "oulad-aaa-2013j" / "vle.csv").is_file():
            return base / "oulad-aaa-2013j"
    raise AssertionError(f"the OULAD slice is not in any of {candidates}: set PQL_SHARED_DATA")


DAY = 86_400_000


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """test_report's history for 90 accounts over 35 days, plus `Checkout Opened` one minute
    before every conversion (three weeks after signing up: after the 7-day observation)."""
    tmp = tmp_path_factory.mktemp("fit")
    path, converters = test_report.history(tmp, accounts=90, days=35)
    plans = {p.account_id: p for p in plan_accounts(accounts=90, days=35, seed=7)}
    with path.open("a") as f:
        for account in sorted(converters):
            f.write(json.dumps({
                "type": "track", "event": "Checkout Opened", "userId": f"{account}-billing",
                "context": {"groupId": account}, "messageId": f"co-{account}",
                "timestamp": iso_ms(plans[account].signup_ms + 21 * DAY - 60_000),
            }) + "\n")  # fmt: skip
    return path


def test_a_fitted_model_finds_the_converters_without_peeking(simulated: Path) -> None:
    result = fit(
        [simulated],
        "Subscription Started",
        signup_event="Signed Up",
        base=load_model(ROOT / "examples" / "team-chat.yaml"),
        horizon_ms=7 * DAY,
    )
    assert check_model(result.model_text) == []
    model = parse_model(result.model_text)
    assert model.score and result.bar > 0
    # Only what was known 7 days after signing up: never the checkout of week three.
    assert "Checkout" not in result.model_text
    # Every rule says where its numbers came from.
    lines = result.model_text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("  - {when:"):
            assert lines[i - 1].startswith("  # ") and "training accounts converted" in lines[i - 1]
    held = result.metrics["fitted"]
    assert held["accounts"] == result.test > 10
    base_rate = held["converted"] / held["accounts"]
    assert held["precision"] > base_rate and held["recall"] >= 0.75
    assert set(result.metrics) == {"fitted", "base"}
    assert result.split_at > 0 and result.train > result.test


def test_fit_on_the_oulad_slice(tmp_path: Path) -> None:
    """Real behaviour with an outcome: whatever the held-out lift is, it is measured and the
    model is a valid, editable file (the README reports the figures)."""
    events = tmp_path / "oulad.jsonl"
    written, passed = convert(_oulad(), events)
    assert written > 13_000 and passed == 278
    result = fit([events], "Passed", horizon_ms=7 * DAY)
    assert check_model(result.model_text) == []
    held = result.metrics["fitted"]
    assert held["accounts"] == result.test and held["pqls"] > 0
    assert 0 < held["precision"] <= 1 and 0 < held["recall"] <= 1 and held["lift"] is not None
    print(f"OULAD held-out: {held}")


def test_the_command_writes_a_checked_model_and_compares_it(
    simulated: Path, tmp_path: Path
) -> None:
    out = tmp_path / "fitted.yaml"
    result = CliRunner().invoke(
        main,
        [
            "fit",
            str(simulated),
            "--conversion-event",
            "Subscription Started",
            "--signup-event",
            "Signed Up",
            "--horizon",
            "7d",
            "--out",
            str(out),
            "--base",
            str(ROOT / "examples" / "team-chat.yaml"),
            "--name",
            "team-chat-fit",
        ],  # fmt: skip
        terminal_width=200,
    )
    assert result.exit_code == 0, result.output
    assert "base (team-chat v3)" in result.output and "precision" in result.output
    assert "passes pql model check" in result.output
    assert load_model(out).name == "team-chat-fit"
    bad = CliRunner().invoke(
        main, ["fit", str(simulated), "--conversion-event", "Nope", "--out", str(out)]
    )
    assert bad.exit_code == 1 and "try a longer history" in bad.output
