"""`pql backtest`: replay history through the core and print what a PM can act on."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import click
import orjson
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from streams import native
from streams.backtest.cli_args import (
    load_model_or_exit,
    out_option,
    parse_disorder,
    parse_received_by,
    parse_shadows,
    parse_shard,
    parse_switches,
    parse_until,
    report_option,
    shadow_out_option,
)
from streams.backtest.replay import run_backtest
from streams.events.timestamps import iso_to_epoch_ms
from streams.gc_tuning import tune_gc
from streams.scoring.transitions import iso_ms


def funnel_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--conversion-event, --signup-event and --revenue-property (`pql backtest`, `pql
    compare`; `streams.backtest.funnel`)."""
    for option in (
        click.option(
            "--revenue-property",
            default=None,
            help="Numeric property of the conversion event that is its revenue (e.g. mrr).",
        ),
        click.option(
            "--signup-event",
            default=None,
            help="Track event that enters an account into the funnel (default: its first).",
        ),
        click.option(
            "--conversion-event", default=None, help='Track event that means "converted".'
        ),
    ):
        command = option(command)
    return command


@click.command()
@click.option("--model", "model_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.argument("events", nargs=-1, required=True, type=click.Path(allow_dash=True))
@funnel_options
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False),
    help="Write a self-contained HTML report with charts (opens offline).",
)
@out_option
@report_option
@click.option("--until", default=None, help="Advance time to this ISO instant at the end.")
@click.option(
    "--max-disorder",
    default="1h",
    show_default=True,
    help="How far out of time order the file may be (0s: sorted). Events are applied in "
    "time order; one later than this is applied as a late event and counted.",
)
@click.option(
    "--received-by",
    default="now",
    show_default=True,
    help="When the history was received (ISO instant, 'now', or 'never' for none): an event "
    "without receivedAt timestamped after it comes from a wrong device clock and is rejected "
    "(future_timestamp), as the live worker rejects it.",
)
@click.option(
    "--switch-model",
    "switch_specs",
    multiple=True,
    metavar="TIME=FILE",
    help="From stream time TIME (ISO 8601) on, the model in FILE decides, over the state the "
    "previous one kept, as a live switch does; TIME is the `model.effective_from` of the live "
    "worker's transitions. A model with other signals has them built from the history first "
    "(a backfill, see --backfill-from). Repeatable.",
)
@click.option(
    "--backfill-from",
    "backfill_from",
    default=None,
    metavar="TIME",
    help="A --switch-model with other signals backfills them from the events at or after TIME "
    "only, as a live backfill limited by the input topic's retention does: those signals are "
    "partial until TIME plus their window, and its transitions list them in partial_signals. "
    "Default: from the first event.",
)
@click.option(
    "--shadow",
    "shadow_specs",
    multiple=True,
    metavar="TIME=FILE",
    help="From stream time TIME on, the model in FILE runs as a shadow beside the live one, as "
    "in the worker (`--shadow`): it decides every account without changing the live "
    "decisions; its transitions go to --shadow-out. A later --switch-model to the same file "
    "is its promotion. Repeatable.",
)
@shadow_out_option
@click.option(
    "--jobs",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="Shard the replay over this many processes by account (0: one per core). The output "
    "is the same: the same transitions in the same order, the same summary. Each process "
    "parses the whole input, so the gain is the scoring's share of the time.",
)
@click.option(
    "--shard",
    default=None,
    metavar="I/N",
    help="Run only shard I of N (0-based), for a replay spread over machines: each reads the "
    "whole input and writes its part to --shard-dir; `pql merge-shards DIR` puts the parts "
    "together (the same output as one process).",
)
@click.option(
    "--shard-dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Where --shard writes its part (shared storage, or copied to one place to merge).",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def backtest(
    model_path: str,
    events: tuple[str, ...],
    conversion_event: str | None,
    signup_event: str | None,
    revenue_property: str | None,
    html_path: str | None,
    out_path: str | None,
    report_path: str | None,
    until: str | None,
    max_disorder: str,
    received_by: str,
    switch_specs: tuple[str, ...],
    shadow_specs: tuple[str, ...],
    shadow_out_path: str | None,
    backfill_from: str | None,
    jobs: int,
    shard: str | None,
    shard_dir: str | None,
    quiet: bool,
) -> None:
    """Replay EVENTS (JSONL, optionally gzipped; - for stdin) through MODEL offline."""
    console = Console(stderr=True)
    if native.ENGINE.startswith("python (no compiled"):
        console.print(f"[dim]core: {native.ENGINE}[/]")
    model = load_model_or_exit(model_path)
    switches = parse_switches(model, switch_specs)
    shadows = parse_shadows(model, switches, shadow_specs)
    if revenue_property and not conversion_event:
        raise click.BadParameter(
            "the revenue is a property of the conversion event: give --conversion-event too",
            param_hint="--revenue-property",
        )
    if shadow_out_path and not shadows:
        raise click.BadParameter("--shadow-out without any --shadow", param_hint="--shadow-out")
    for p in events:
        if p != "-" and not os.path.exists(p):
            raise click.ClickException(f"no such events file: {p}")
    jobs = jobs or os.cpu_count() or 1
    part = parse_shard(shard, shard_dir, jobs, (out_path, report_path, html_path, shadow_out_path))
    if jobs > 1 and "-" in events:
        raise click.BadParameter(
            "each process reads the input: give files, not - (or --jobs 1)", param_hint="--jobs"
        )
    until_ms = parse_until(until)
    backfill_from_ms = None
    if backfill_from is not None:
        backfill_from_ms = iso_to_epoch_ms(backfill_from)
        if backfill_from_ms is None:
            raise click.BadParameter(
                f"not an ISO-8601 instant: {backfill_from!r}", param_hint="--backfill-from"
            )
    disorder_ms = parse_disorder(max_disorder)
    received_by_ms = parse_received_by(received_by)
    out: IO[bytes] | None = open(out_path, "wb") if out_path else None  # noqa: SIM115
    shadow_out: IO[bytes] | None = (
        open(shadow_out_path, "wb") if shadow_out_path else None  # noqa: SIM115
    )

    total = sum(os.path.getsize(p) for p in events if p != "-")
    try:
        with Progress(
            TextColumn("[bold]backtest"),
            BarColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=quiet or total == 0,
            transient=True,
        ) as bar:
            task = bar.add_task("replay", total=total or None)
            tune_gc()
            summary = run_backtest(
                model,
                [Path(p) if p != "-" else p for p in events],
                sink=_jsonl_sink(out),
                conversion_event=conversion_event,
                until=until_ms,
                max_disorder_ms=disorder_ms,
                received_by_ms=received_by_ms,
                progress=lambda done: bar.update(task, completed=done),
                switches=switches,
                shadows=shadows,
                shadow_sink=_jsonl_sink(shadow_out),
                backfill_from_ms=backfill_from_ms,
                signup_event=signup_event,
                revenue_property=revenue_property,
                jobs=jobs,
                shard=part,
                shard_dir=shard_dir,
            )
    finally:
        for f in (out, shadow_out):
            if f is not None:
                f.close()
    if part is not None:
        console.print(
            f"shard {part[0]} of {part[1]} written to {shard_dir}; once every shard ran: "
            f"`pql merge-shards {shard_dir} --out T.jsonl --report R.json`"
        )
        return
    summary["model"] = {"name": model.name, "version": model.version}
    for sw in switches:
        if not any(done["at"] == iso_ms(sw.at_ms) for done in summary.get("switches", [])):
            console.print(
                f"[yellow]the switch to {sw.model.name} v{sw.model.version} at "
                f"{iso_ms(sw.at_ms)} is after the history's end (and --until): not made[/yellow]"
            )
    for sh in shadows:
        if not any(done["at"] == iso_ms(sh.at_ms) for done in summary.get("shadows", [])):
            console.print(
                f"[yellow]the shadow {sh.model.name} v{sh.model.version} from "
                f"{iso_ms(sh.at_ms)} is after the history's end (and --until): not run[/yellow]"
            )
    if report_path:
        Path(report_path).write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    if html_path:
        from streams.backtest.report import write_report

        write_report(Path(html_path), summary, model)
        console.print(f"report written to {html_path}")
    _print_summary(Console(), summary, out_path, report_path)


def _jsonl_sink(out: IO[bytes] | None) -> Callable[[dict[str, Any]], None] | None:
    if out is None:
        return None
    write = out.write
    dumps = orjson.dumps

    def sink(t: dict[str, Any]) -> None:
        write(dumps(t) + b"\n")

    return sink


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:.1f}%"


def _num(x: Any, suffix: str = "") -> str:
    return "n/a" if x is None else f"{x:,}{suffix}"


def _print_summary(
    console: Console, s: dict[str, Any], out_path: str | None, report_path: str | None
) -> None:
    title = f"Backtest of {s['model']['name']} v{s['model']['version']}"
    for sw in s.get("switches", []):
        title += f", switched to {sw['model']} v{sw['version']} at {sw['at']}"
    for sh in s.get("shadows", []):
        title += f", shadow v{sh['version']} from {sh['at']} ({sh['transitions']:,} transitions)"
    t = Table(title=title, show_header=False)
    t.add_column(style="bold")
    t.add_column(justify="right")
    t.add_row("events read", _num(s["events_read"]))
    rejected = sum(s["events_rejected"].values())
    t.add_row("events rejected", f"{rejected:,} {s['events_rejected'] or ''}".strip())
    if s["duplicates_skipped"]:
        t.add_row("duplicates skipped (same messageId)", _num(s["duplicates_skipped"]))
    if s["timestamps_adjusted"]:
        t.add_row("timestamps from wrong clocks", str(s["timestamps_adjusted"]))
    t.add_row("accounts seen", _num(s["accounts_seen"]))
    t.add_row("accounts that became PQL", _num(s["pql_accounts"]))
    t.add_row("PQL rate", _pct(s["pql_rate"]))
    t.add_row("PQL at the end", _num(s["pql_at_end"]))
    t.add_row("median first event -> PQL", _num(s["median_hours_first_event_to_pql"], " h"))
    for seg, n in s["segments_entered"].items():
        t.add_row(f"entered segment {seg}", _num(n))
    conv = s.get("conversion")
    if conv:
        t.add_row(f"converted ({conv['event']})", _num(conv["converted_accounts"]))
        t.add_row("conversion rate, PQLs", _pct(conv["conversion_rate_pql"]))
        t.add_row("conversion rate, non-PQLs", _pct(conv["conversion_rate_non_pql"]))
        t.add_row("lift", _num(conv["lift"], "x"))
        t.add_row("precision (PQL -> converted)", _pct(conv["precision"]))
        t.add_row("recall (converted were PQL first)", _pct(conv["recall"]))
        t.add_row(
            "median lead time PQL -> conversion", _num(conv["median_hours_pql_to_conversion"], " h")
        )
    if s.get("events_per_second"):
        t.add_row("throughput", f"{s['events_per_second']:,} events/s")
    console.print(t)
    if s["events_out_of_order"]:
        console.print(
            f"[yellow]{s['events_out_of_order']:,} events came more than --max-disorder after "
            "later ones and were applied as late events; sort the file by timestamp or raise "
            "--max-disorder to apply them in order.[/yellow]"
        )
    if out_path:
        console.print(f"transitions written to {out_path}")
    if report_path:
        console.print(f"report written to {report_path}")
