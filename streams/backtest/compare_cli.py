"""`pql compare A.yaml B.yaml EVENTS...`: the same history through both models, side by side
(the funnel of each, `streams.backtest.funnel`), optionally as one HTML report with both."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click
import orjson
from rich.console import Console
from rich.table import Table

from streams.backtest.cli import funnel_options
from streams.backtest.cli_args import load_model_or_exit
from streams.backtest.replay import run_backtest


def _pct(v: Any) -> str:
    return "n/a" if v is None else f"{100 * v:.1f} %"


def rows(summary: dict[str, Any]) -> dict[str, str]:
    """The compared figures of one model's backtest, as text."""
    f = summary["funnel"]
    out = {
        "accounts that entered": f"{f['accounts_entered']:,}",
        "PQLs": f"{f['pqls']:,}",
        "PQL rate": _pct(f["pql_rate"]),
        "median hours to PQL": "n/a" if f["hours_to_pql"]["median"] is None
        else f"{f['hours_to_pql']['median']:,}",
        "PQLs at the end": f"{summary['pql_at_end']:,}",
    }  # fmt: skip
    conv = f.get("conversion")
    if conv is not None:
        lift = "n/a" if conv["lift"] is None else f"{conv['lift']}"
        if conv["lift_interval"]:
            lift += f" ({conv['lift_interval'][0]}-{conv['lift_interval'][1]})"
        out |= {
            "precision": _pct(conv["precision"]),
            "recall": _pct(conv["recall"]),
            "lift (95% interval)": lift,
            "median lead hours": "n/a"
            if conv["median_lead_hours"] is None
            else f"{conv['median_lead_hours']:,}",
        }
    revenue = f.get("revenue")
    if revenue is not None:
        out[f"revenue from PQLs ({revenue['property']})"] = f"{revenue['pql']['total']:,}"
    return out


@click.command("compare")
@click.argument("model_a", type=click.Path(exists=True, dir_okay=False))
@click.argument("model_b", type=click.Path(exists=True, dir_okay=False))
@click.argument("events", nargs=-1, required=True, type=click.Path())
@funnel_options
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False),
    help="One self-contained HTML report with both models side by side.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False),
    help="Both summaries (JSON: {A: ..., B: ...}).",
)
def compare(
    model_a: str,
    model_b: str,
    events: tuple[str, ...],
    conversion_event: str | None,
    signup_event: str | None,
    revenue_property: str | None,
    html_path: str | None,
    json_path: str | None,
) -> None:
    """Replay EVENTS through MODEL_A and MODEL_B and show them side by side."""
    if revenue_property and not conversion_event:
        raise click.BadParameter(
            "the revenue is a property of the conversion event: give --conversion-event too",
            param_hint="--revenue-property",
        )
    for p in events:
        if not os.path.exists(p):
            raise click.ClickException(f"no such events file: {p}")
    models = [load_model_or_exit(model_a), load_model_or_exit(model_b)]
    console = Console(stderr=True)
    summaries = []
    with console.status("replaying") as status:
        for m in models:
            status.update(f"replaying the history through {m.name} v{m.version}")
            s = run_backtest(
                m,
                [Path(p) for p in events],
                conversion_event=conversion_event,
                signup_event=signup_event,
                revenue_property=revenue_property,
            )
            s["model"] = {"name": m.name, "version": m.version}
            summaries.append(s)
    labels = [f"{m.name} v{m.version}" for m in models]
    if labels[0] == labels[1]:
        labels = [f"A: {labels[0]}", f"B: {labels[1]}"]
    table = Table(title="The same history through both")
    table.add_column("")
    for label in labels:
        table.add_column(label, justify="right")
    cells = [rows(s) for s in summaries]
    for key in cells[0]:
        table.add_row(key, *(c.get(key, "n/a") for c in cells))
    Console().print(table)
    if json_path:
        Path(json_path).write_bytes(
            orjson.dumps(dict(zip(labels, summaries, strict=True)), option=orjson.OPT_INDENT_2)
        )
    if html_path:
        from streams.backtest.report import render_compare

        Path(html_path).write_text(
            render_compare(list(zip(summaries, models, strict=True))), encoding="utf-8"
        )
        console.print(f"report written to {html_path}")
