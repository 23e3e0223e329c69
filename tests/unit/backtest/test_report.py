"""`pql backtest --html` (issue 16 item 1) and the funnel in the summary (item 2), on simulated
history with known converters: every qualifier subscribes three weeks after signing up, and some
window shoppers on their third day, before they could qualify. The report is opened in a real
headless browser (Debian's chromium, through selenium and chromedriver): every chart renders,
no script error, and a screenshot is not blank."""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from streams.cli import main
from streams.io.simulate import Persona, generate, iso_ms, plan_accounts

ROOT = Path(__file__).resolve().parents[3]
DAY = 86_400_000
ACCOUNTS, DAYS = 40, 30
CHARTS = {"cohorts", "time-to-pql", "conversion", "revenue", "scores", "rules", "segments",
          "membership"}  # fmt: skip


def history(tmp: Path, accounts: int = ACCOUNTS, days: int = DAYS) -> tuple[Path, set[str]]:
    """The simulator's history plus the converters' `Subscription Started` (with `mrr`)."""
    events: list[dict[str, Any]] = list(generate(accounts=accounts, days=days, seed=7))
    converters = set()
    shoppers = 0
    for p in plan_accounts(accounts=accounts, days=days, seed=7):
        if p.persona is Persona.QUALIFIER:
            at, mrr = p.signup_ms + 21 * DAY, 20 * p.employees
        elif p.persona is Persona.WINDOW_SHOPPER and (shoppers := shoppers + 1) % 2:
            at, mrr = p.signup_ms + 2 * DAY, 50
        else:
            continue
        converters.add(p.account_id)
        events.append(
            {
                "type": "track",
                "event": "Subscription Started",
                "userId": f"{p.account_id}-billing",
                "context": {"groupId": p.account_id},
                "timestamp": iso_ms(at),
                "properties": {"mrr": mrr},
                "messageId": f"sub-{p.account_id}",
            }
        )
    path = tmp / "history.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return path, converters


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], set[str]]:
    tmp = tmp_path_factory.mktemp("report")
    events, converters = history(tmp)
    html, js = tmp / "report.html", tmp / "summary.json"
    result = CliRunner().invoke(
        main,
        [
            "backtest",
            "--model",
            str(ROOT / "examples" / "team-chat.yaml"),
            str(events),
            "--conversion-event",
            "Subscription Started",
            "--revenue-property",
            "mrr",
            "--signup-event",
            "Signed Up",
            "--html",
            str(html),
            "--report",
            str(js),
            "--quiet",
        ],  # fmt: skip
    )
    assert result.exit_code == 0, result.output
    return html, json.loads(js.read_text()), converters


def test_the_funnel_finds_the_known_converters(
    report: tuple[Path, dict[str, Any], set[str]],
) -> None:
    _, summary, converters = report
    f = summary["funnel"]
    assert f["entry"] == "first 'Signed Up' event" and f["accounts_entered"] == ACCOUNTS
    assert sum(c["entered"] for c in f["cohorts"]) == ACCOUNTS
    assert sum(c["converted"] for c in f["cohorts"]) == len(converters)
    conv = f["conversion"]
    assert conv["pql"]["converted"] + conv["non_pql"]["converted"] == len(converters)
    # Qualifiers convert after qualifying: a strong, significant lift; the early window shoppers
    # converted without qualifying, so recall is below 1.
    assert conv["lift"] == 3.0 and conv["lift_interval"][0] > 1  # 12/20 against 4/20
    assert (conv["recall"], conv["precision"]) == (0.75, 0.6)
    assert conv["median_lead_hours"] > 0
    revenue = f["revenue"]
    assert revenue["pql"]["per_paying"] > revenue["non_pql"]["per_paying"] == 50.0
    assert f["qualifying_rules"] and f["segments_by_day"]
    assert sum(f["scores"]["counts"]) == summary["accounts_seen"]


def test_the_report_is_one_offline_file(report: tuple[Path, dict[str, Any], set[str]]) -> None:
    html, _, _ = report
    text = html.read_text()
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=[\"']?(https?:)?//", text)
    assert text.count("Plotly.newPlot") == len(CHARTS)
    for chart in CHARTS:
        assert f'data-chart="{chart}"' in text or f"data-chart='{chart}'" in text
    assert "name: team-chat" in text  # the model itself
    assert "lift (95% interval)" in text


def test_the_report_renders_in_a_headless_browser(
    report: tuple[Path, dict[str, Any], set[str]], tmp_path: Path
) -> None:
    from PIL import Image
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver_path, "Debian's chromium and chromium-driver: run `make tools`"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--no-first-run", "--disable-background-networking", "--disable-sync",
                 "--disable-component-update", f"--user-data-dir={tmp_path / 'profile'}",
                 "--window-size=1200,2400"):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        html, _, _ = report
        driver.get(html.resolve().as_uri())
        drawn = "return document.querySelectorAll('.js-plotly-plot .main-svg').length"
        WebDriverWait(driver, 30).until(lambda d: d.execute_script(drawn) >= len(CHARTS))
        bars = driver.execute_script(
            "return document.querySelectorAll('.js-plotly-plot .point, .js-plotly-plot .trace')"
            ".length"
        )
        assert bars > 20
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [], errors
        png = driver.get_screenshot_as_png()
    finally:
        driver.quit()
    image = Image.open(io.BytesIO(png)).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20) or []
    non_white = sum(n for n, rgb in colours if rgb != (255, 255, 255))
    assert len(colours) > 50 and non_white > 0.05 * image.width * image.height


@pytest.mark.parametrize(
    "name", ["weighted", "zoom", "slack", "team-chat", "icp-segments", "notion", "decaying"]
)
def test_every_seed_example_gets_a_report(name: str, tmp_path: Path) -> None:
    """The seed examples over their seed files (decaying over team-chat's): a funnel and an
    offline report with every chart, whatever the model reads."""
    seeds = ROOT / "tests" / "data" / "seeds"
    events = seeds / f"{name}.jsonl" if name != "decaying" else seeds / "team-chat.jsonl"
    html, js = tmp_path / "r.html", tmp_path / "r.json"
    result = CliRunner().invoke(
        main,
        [
            "backtest",
            "--model",
            str(ROOT / "examples" / f"{name}.yaml"),
            str(events),
            "--html",
            str(html),
            "--report",
            str(js),
            "--quiet",
        ],  # fmt: skip
    )
    assert result.exit_code == 0, result.output
    f = json.loads(js.read_text())["funnel"]
    assert f["accounts_entered"] > 0 and f["pqls"] <= f["accounts_entered"]
    text = html.read_text()
    assert text.count("Plotly.newPlot") == len(CHARTS) - 2  # no conversion or revenue asked
    assert f"name: {name}" in text
