"""`pql compare A B EVENTS` (issue 16 item 4): the same history through both, side by side, in
the terminal, as JSON and as one offline HTML report."""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner

from streams.backtest.replay import run_backtest
from streams.cli import main
from streams.model.loader import load_model
from tests.unit.backtest import test_report

ROOT = Path(__file__).resolve().parents[3]
A, B = ROOT / "examples" / "team-chat.yaml", ROOT / "examples" / "decaying.yaml"


def test_compare_shows_both_models_on_the_same_history(tmp_path: Path) -> None:
    events, converters = test_report.history(tmp_path)
    html, js = tmp_path / "compare.html", tmp_path / "compare.json"
    result = CliRunner().invoke(
        main,
        [
            "compare",
            str(A),
            str(B),
            str(events),
            "--conversion-event",
            "Subscription Started",
            "--signup-event",
            "Signed Up",
            "--html",
            str(html),
            "--json",
            str(js),
        ],  # fmt: skip
        terminal_width=200,
    )
    assert result.exit_code == 0, result.output
    assert "team-chat v3" in result.output and "decaying v1" in result.output
    both = json.loads(js.read_text())
    assert list(both) == ["team-chat v3", "decaying v1"]
    for (label, summary), model in zip(both.items(), (A, B), strict=True):
        alone = run_backtest(
            load_model(model),
            [events],
            conversion_event="Subscription Started",
            signup_event="Signed Up",
        )
        assert summary["funnel"] == json.loads(json.dumps(alone["funnel"])), label
        conv = summary["funnel"]["conversion"]
        assert conv["pql"]["converted"] + conv["non_pql"]["converted"] == len(converters)
        pqls = f"{summary['funnel']['pqls']:,}"
        assert re.search(rf"│ PQLs +│.*\b{pqls}\b", result.output)
    text = html.read_text()
    assert text.count("Plotly.newPlot") == 2 * 7  # every chart of each (no revenue asked)
    assert "name: team-chat" in text and "name: decaying" in text
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=[\"']?(https?:)?//", text)
