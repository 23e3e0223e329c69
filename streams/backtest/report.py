"""`pql backtest --html`: one self-contained HTML file (plotly.js inside, no CDN: it opens
offline) drawn from the backtest summary alone, so the `--report` JSON holds every number it
shows.

Sections: the headline numbers; PQLs and PQL rate per sign-up cohort week; time to PQL; conversion
of PQLs against non-PQLs with 95% intervals, lift, precision, recall (with --conversion-event);
revenue (with --revenue-property); the score distribution at the end with the qualifying bar;
which rules qualified accounts and which segments they entered; segment membership over time;
the model itself.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

from streams.model.spec import Model

_SCORE_BAR = re.compile(r"\bscore\s*>=?\s*(-?\d+(?:\.\d+)?)")
_LAYOUT: dict[str, Any] = {
    "template": "plotly_white",
    "height": 360,
    "margin": {"l": 60, "r": 30, "t": 50, "b": 50},
}


def _fig(title: str) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title=title, **_LAYOUT)
    return fig


def _pct(v: Any) -> str:
    return "–" if v is None else f"{100 * v:.1f} %"


def _num(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.2f}".rstrip("0").rstrip(".")
    return f"{v:,}"


def score_bar(model: Model) -> float | None:
    """The score a qualification needs, when `qualify.when` reads `score >= N`."""
    m = _SCORE_BAR.search(model.qualify.when.source)
    return float(m.group(1)) if m else None


def figures(summary: dict[str, Any], model: Model) -> list[tuple[str, go.Figure]]:
    f = summary["funnel"]
    out: list[tuple[str, go.Figure]] = []

    cohorts = f["cohorts"]
    fig = _fig(f"PQLs per sign-up cohort (entry: {f['entry']})")
    weeks = [c["week"] for c in cohorts]
    fig.add_bar(x=weeks, y=[c["entered"] for c in cohorts], name="entered the funnel")
    fig.add_bar(x=weeks, y=[c["pqls"] for c in cohorts], name="became PQLs")
    fig.add_scatter(
        x=weeks,
        y=[c["pql_rate"] for c in cohorts],
        name="PQL rate",
        yaxis="y2",
        mode="lines+markers",
    )
    fig.update_layout(
        barmode="group",
        xaxis_title="week of entry (UTC Monday)",
        yaxis_title="accounts",
        yaxis2={"overlaying": "y", "side": "right", "tickformat": ".0%", "title": "PQL rate"},
    )
    out.append(("cohorts", fig))

    ttp = f["hours_to_pql"]
    fig = _fig(f"Time to PQL (median {_num(ttp['median'])} h)")
    h = ttp["histogram"]
    if h["counts"]:
        mids = [(a + b) / 2 for a, b in zip(h["edges"], h["edges"][1:], strict=False)]
        fig.add_bar(x=mids, y=h["counts"], name="PQLs")
    fig.update_layout(xaxis_title="hours from entry to first qualification", yaxis_title="PQLs")
    out.append(("time-to-pql", fig))

    conv = f.get("conversion")
    if conv is not None:
        fig = _fig(
            f"Conversion: PQLs vs non-PQLs (lift {_num(conv['lift'])}, "
            f"precision {_pct(conv['precision'])}, recall {_pct(conv['recall'])})"
        )
        sides = [("PQLs", conv["pql"]), ("non-PQLs", conv["non_pql"])]
        rates = [s["rate"] or 0 for _, s in sides]
        lows = [r - (s["interval"] or (r, r))[0] for r, (_, s) in zip(rates, sides, strict=True)]
        highs = [(s["interval"] or (r, r))[1] - r for r, (_, s) in zip(rates, sides, strict=True)]
        fig.add_bar(
            x=[name for name, _ in sides],
            y=rates,
            error_y={"type": "data", "symmetric": False, "array": highs, "arrayminus": lows},
            text=[f"{s['converted']} / {s['accounts']}" for _, s in sides],
            name="conversion rate (95% interval)",
        )
        fig.update_layout(yaxis_tickformat=".0%", yaxis_title="converted")
        out.append(("conversion", fig))

    revenue = f.get("revenue")
    if revenue is not None:
        fig = _fig(f"Revenue ({revenue['property']}) from PQLs vs non-PQLs")
        names = ["PQLs", "non-PQLs"]
        groups = [revenue["pql"], revenue["non_pql"]]
        fig.add_bar(x=names, y=[g["total"] for g in groups], name="total")
        fig.add_bar(x=names, y=[g["per_account"] or 0 for g in groups], name="per account")
        fig.update_layout(barmode="group", yaxis_title=revenue["property"])
        out.append(("revenue", fig))

    scores = f["scores"]
    bar = score_bar(model)
    fig = _fig("Scores at the end" + (f" (PQL at score ≥ {_num(bar)})" if bar else ""))
    if scores["counts"]:
        mids = [(a + b) / 2 for a, b in zip(scores["edges"], scores["edges"][1:], strict=False)]
        fig.add_bar(x=mids, y=scores["counts"], name="accounts")
    if bar is not None:
        fig.add_vline(x=bar, line_dash="dash", line_color="firebrick", annotation_text="qualify")
    fig.update_layout(xaxis_title="score", yaxis_title="accounts")
    out.append(("scores", fig))

    rules = f["qualifying_rules"]
    fig = _fig("What qualified accounts: rules with points at the first qualification")
    fig.add_bar(y=list(rules)[::-1], x=list(rules.values())[::-1], orientation="h")
    fig.update_layout(xaxis_title="PQLs", height=max(300, 40 * len(rules) + 120))
    out.append(("rules", fig))

    entered = f["segments_entered"]
    fig = _fig("Segments entered")
    fig.add_bar(x=list(entered), y=list(entered.values()))
    fig.update_layout(yaxis_title="entries")
    out.append(("segments", fig))

    fig = _fig("Segment membership over time (end of each UTC day)")
    from datetime import date, timedelta

    for segment, series in f["segments_by_day"].items():
        start = date.fromisoformat(series["from"])
        days = [(start + timedelta(days=i)).isoformat() for i in range(len(series["members"]))]
        fig.add_scatter(x=days, y=series["members"], name=segment, mode="lines")
    fig.update_layout(yaxis_title="accounts")
    out.append(("membership", fig))
    return out


def _headline(summary: dict[str, Any]) -> list[tuple[str, str]]:
    f = summary["funnel"]
    rows = [
        ("events read", _num(summary["events_read"])),
        ("accounts that entered the funnel", _num(f["accounts_entered"])),
        ("PQLs among them", _num(f["pqls"])),
        (
            "PQL rate (95% interval)",
            f"{_pct(f['pql_rate'])}"
            + (
                f" ({_pct(f['pql_rate_interval'][0])} – {_pct(f['pql_rate_interval'][1])})"
                if f["pql_rate_interval"]
                else ""
            ),
        ),
        ("median time to PQL", f"{_num(f['hours_to_pql']['median'])} h"),
    ]
    conv = f.get("conversion")
    if conv is not None:
        lift = _num(conv["lift"])
        if conv["lift_interval"]:
            lo, hi = conv["lift_interval"]
            lift += f" ({_num(lo)} – {_num(hi)})"
        rows += [
            ("conversion of PQLs", _pct(conv["pql"]["rate"])),
            ("conversion of non-PQLs", _pct(conv["non_pql"]["rate"])),
            ("lift (95% interval)", lift),
            ("precision / recall", f"{_pct(conv['precision'])} / {_pct(conv['recall'])}"),
            ("median lead time (PQL to conversion)", f"{_num(conv['median_lead_hours'])} h"),
        ]
    return rows


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:1100px;color:#1f2933;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem} .sub{color:#52606d;margin-top:0}
table{border-collapse:collapse;margin:1rem 0} td{padding:.3rem 1rem;border-bottom:1px solid #e4e7eb}
td:first-child{color:#52606d} pre{background:#f5f7fa;padding:1rem;overflow:auto;font-size:.85rem}
section{margin:1.5rem 0}
"""


def _model_text(model: Model) -> str:
    if model.source_path and Path(model.source_path).is_file():
        return Path(model.source_path).read_text(encoding="utf-8")
    return "(model text not available)"


def _chart(fig: go.Figure, name: str, first: bool) -> str:
    return pio.to_html(
        fig,
        include_plotlyjs=first,  # plotly.js once, inline: no CDN
        full_html=False,
        div_id=f"chart-{name}",
        config={"displaylogo": False, "responsive": True},
    )


def render_compare(sides: list[tuple[dict[str, Any], Model]]) -> str:
    """`pql compare --html`: the headline numbers side by side, then each chart of every model
    next to each other, then the models."""
    title = " vs ".join(f"{html.escape(m.name)} v{m.version}" for _, m in sides)
    heads = [dict(_headline(s)) for s, _ in sides]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Compare {title}</title><style>{_CSS}"
        ".pair{display:grid;grid-template-columns:1fr 1fr;gap:1rem}</style></head><body>",
        f"<h1>Compare {title}</h1><p class='sub'>the same history through each model</p>",
        "<table id='headline'><tr><td></td>",
        *(f"<td><b>{html.escape(m.name)} v{m.version}</b></td>" for _, m in sides),
        "</tr>",
    ]
    for key in heads[0]:
        row = "".join(f"<td>{html.escape(h.get(key, '–'))}</td>" for h in heads)
        parts.append(f"<tr><td>{html.escape(key)}</td>{row}</tr>")
    parts.append("</table>")
    charts = [dict(figures(s, m)) for s, m in sides]
    first = True
    for name in charts[0]:
        divs = []
        for i, c in enumerate(charts):
            if name in c:
                divs.append(_chart(c[name], f"{name}-{i}", first))
                first = False
        parts.append(f"<section class='chart pair' data-chart='{name}'>{''.join(divs)}</section>")
    for _, m in sides:
        parts.append(
            f"<section><h2>{html.escape(m.name)} v{m.version}</h2>"
            f"<pre>{html.escape(_model_text(m))}</pre></section>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)


def render(summary: dict[str, Any], model: Model) -> str:
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Backtest of {html.escape(model.name)} v{model.version}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Backtest of {html.escape(model.name)} v{model.version}</h1>",
        f"<p class='sub'>{html.escape(model.description or '')}</p>",
        "<table id='headline'>",
        *(
            f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>"
            for k, v in _headline(summary)
        ),
        "</table>",
    ]
    for i, (name, fig) in enumerate(figures(summary, model)):
        parts.append(
            f"<section class='chart' data-chart='{name}'>{_chart(fig, name, i == 0)}</section>"
        )
    parts += [
        "<section><h2>The model</h2>",
        f"<pre id='model'>{html.escape(_model_text(model))}</pre></section>",
        "</body></html>",
    ]
    return "\n".join(parts)


def write_report(path: Path, summary: dict[str, Any], model: Model) -> None:
    path.write_text(render(summary, model), encoding="utf-8")
