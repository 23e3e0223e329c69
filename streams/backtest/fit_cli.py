"""`pql fit EVENTS --conversion-event E --out MODEL.yaml [--base MODEL.yaml]`
(`streams.backtest.fit`)."""

from __future__ import annotations

import os
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from streams.backtest.cli_args import load_model_or_exit
from streams.model.durations import DurationError, parse_duration
from streams.model.loader import check_model


@click.command("fit")
@click.argument("events", nargs=-1, required=True, type=click.Path())
@click.option("--conversion-event", required=True, help='Track event that means "converted".')
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Where to write the fitted model (YAML).",
)
@click.option(
    "--base",
    "base_path",
    type=click.Path(exists=True, dir_okay=False),
    help="A model to compare with on the held-out period; its signals are candidates.",
)
@click.option(
    "--signup-event",
    default=None,
    help="Track event that enters an account into the funnel (default: its first).",
)
@click.option(
    "--horizon",
    default="14d",
    show_default=True,
    help="Each account is observed this long after it entered.",
)
@click.option(
    "--holdout",
    type=click.FloatRange(0.1, 0.9),
    default=0.3,
    show_default=True,
    help="Share of the latest entrants held out for validation.",
)
@click.option(
    "--top",
    type=click.IntRange(1, 50),
    default=12,
    show_default=True,
    help="How many of the most common events become candidate signals.",
)
@click.option("--name", default="fitted", show_default=True, help="The fitted model's name.")
def fit_command(
    events: tuple[str, ...],
    conversion_event: str,
    out_path: str,
    base_path: str | None,
    signup_event: str | None,
    horizon: str,
    holdout: float,
    top: int,
    name: str,
) -> None:
    """Learn an editable points model from EVENTS with outcomes; validate it on a later period."""
    from streams.backtest.fit import fit

    console = Console(stderr=True)
    for p in events:
        if not os.path.exists(p):
            raise click.ClickException(f"no such events file: {p}")
    try:
        horizon_ms = parse_duration(horizon)
    except DurationError as exc:
        raise click.BadParameter(str(exc), param_hint="--horizon") from None
    base = load_model_or_exit(base_path) if base_path else None
    with console.status("fitting") as status:
        try:
            result = fit(
                [Path(p) for p in events],
                conversion_event,
                signup_event=signup_event,
                base=base,
                horizon_ms=horizon_ms,
                holdout=holdout,
                top=top,
                name=name,
                progress=lambda msg: status.update(msg),
            )
        except ValueError as exc:
            raise click.ClickException(
                f"{exc}; try a longer history, another --horizon or --conversion-event"
            ) from None
    issues = check_model(result.model_text)
    if issues:  # a bug of ours, never the user's: say so rather than write a broken file
        raise click.ClickException(f"the fitted model does not pass pql model check: {issues}")
    Path(out_path).write_text(result.model_text, encoding="utf-8")
    table = Table(title=f"Held out: the {result.test} accounts that entered last")
    table.add_column("")
    for side in result.metrics:
        table.add_column(side if side == "fitted" else f"base ({base.name} v{base.version})"
                         if base else side, justify="right")  # fmt: skip
    rows = [("accounts", "accounts"), ("PQLs", "pqls"), ("converted", "converted"),
            ("precision", "precision"), ("recall", "recall"), ("lift", "lift")]  # fmt: skip
    for label, key in rows:
        table.add_row(label, *(_cell(m.get(key), key, m) for m in result.metrics.values()))
    out = Console()
    out.print(table)
    out.print(
        f"{len(result.rules)} rules, PQL at score >= {result.bar}; learnt from {result.train} "
        f"accounts. Written to {out_path} (passes pql model check)."
    )


def _cell(value: object, key: str, m: dict[str, object]) -> str:
    if value is None and key == "lift" and m.get("non_pql_converted") == 0 and m.get("pqls"):
        return "inf (no non-PQL converted)"
    if value is None:
        return "n/a"
    if key in ("precision", "recall") and isinstance(value, float):
        return f"{100 * value:.1f} %"
    return f"{value}"
