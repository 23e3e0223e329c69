"""`pql model diff`'s output: the definition changes, then (with history) both models' figures
side by side and the accounts that would enter or leave."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import click
import orjson
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from streams.backtest.cli_args import load_model_or_exit, parse_received_by, parse_until
from streams.model.diff import HistoryDiff, change_kind, compare_on_history, definition_changes

_ROWS = (
    ("accounts seen", "accounts_seen", "{:,}"),
    ("accounts that became PQL", "pql_accounts", "{:,}"),
    ("PQL rate", "pql_rate", "pct"),
    ("PQL at the end", "pql_at_end", "{:,}"),
    ("median first event -> PQL", "median_hours_first_event_to_pql", "{} h"),
)
_CONVERSION_ROWS = (
    ("conversion rate, PQLs", "conversion_rate_pql", "pct"),
    ("conversion rate, non-PQLs", "conversion_rate_non_pql", "pct"),
    ("lift", "lift", "{}x"),
    ("precision", "precision", "pct"),
    ("recall", "recall", "pct"),
    ("median lead time PQL -> conversion", "median_hours_pql_to_conversion", "{} h"),
)


def _fmt(value: Any, how: str) -> str:
    if value is None:
        return "n/a"
    if how == "pct":
        return f"{value * 100:.1f}%"
    return how.format(value)


def _accounts(names: list[str], limit: int) -> str:
    shown = ", ".join(names[:limit])
    more = f" and {len(names) - limit:,} more" if len(names) > limit else ""
    return f"{len(names):,}" + (f": {shown}{more}" if names else "")


def run_diff(
    old_path: str,
    new_path: str,
    events: tuple[str, ...],
    *,
    conversion_event: str | None,
    until: str | None,
    received_by: str,
    limit: int,
    json_path: str | None,
    quiet: bool,
) -> None:
    old = load_model_or_exit(old_path)
    new = load_model_or_exit(new_path)
    for p in events:
        if p != "-" and not os.path.exists(p):
            raise click.ClickException(f"no such events file: {p}")
    console = Console()
    changes = definition_changes(old, new)
    kind = change_kind(old, new)
    console.print(f"[bold]{old.name} v{old.version} -> {new.name} v{new.version}[/bold]")
    for line in changes or ["no change in the definition"]:
        console.print(f"  - {line}")
    console.print(f"[bold]kind of change:[/bold] {kind}")
    report: dict[str, Any] = {
        "old": {"name": old.name, "version": old.version, "path": old_path},
        "new": {"name": new.name, "version": new.version, "path": new_path},
        "changes": changes,
        "kind": kind,
    }
    if events:
        history = _history(old, new, events, conversion_event, until, received_by, quiet)
        _print_history(console, history, limit)
        report["history"] = _history_json(history)
    if json_path:
        Path(json_path).write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
        console.print(f"written to {json_path}")


def _history(
    old: Any,
    new: Any,
    events: tuple[str, ...],
    conversion_event: str | None,
    until: str | None,
    received_by: str,
    quiet: bool,
) -> HistoryDiff:
    received = parse_received_by(received_by)
    received_by_ms = time.time() * 1000 if received == "now" else received
    total = sum(os.path.getsize(p) for p in events if p != "-")
    with Progress(
        TextColumn("[bold]diff"),
        BarColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=quiet or total == 0,
        transient=True,
    ) as bar:
        task = bar.add_task("replay", total=total or None)
        return compare_on_history(
            old,
            new,
            [Path(p) if p != "-" else p for p in events],
            conversion_event=conversion_event,
            received_by_ms=received_by_ms,
            until=parse_until(until),
            progress=lambda done: bar.update(task, completed=done),
        )


def _print_history(console: Console, h: HistoryDiff, limit: int) -> None:
    old, new = h.old.summary, h.new.summary
    t = Table(title="Over the history", show_header=True)
    t.add_column("")
    t.add_column("old", justify="right")
    t.add_column("new", justify="right")
    for label, key, how in _ROWS:
        t.add_row(label, _fmt(old.get(key), how), _fmt(new.get(key), how))
    if "conversion" in old:
        for label, key, how in _CONVERSION_ROWS:
            t.add_row(
                label, _fmt(old["conversion"].get(key), how), _fmt(new["conversion"].get(key), how)
            )
    names = sorted(h.old.segments_at_end.keys() | h.new.segments_at_end.keys())
    for name in names:
        before = h.old.segments_at_end.get(name)
        after = h.new.segments_at_end.get(name)
        t.add_row(
            f"in segment {name} at the end",
            "-" if before is None else f"{len(before):,}",
            "-" if after is None else f"{len(after):,}",
        )
    console.print(t)
    console.print(f"[green]would enter[/green] (PQL at the end): {_accounts(h.enter, limit)}")
    console.print(f"[red]would leave[/red] (PQL at the end): {_accounts(h.leave, limit)}")
    if h.ever_enter or h.ever_leave:
        console.print(
            f"became a PQL at some point under the new model only: "
            f"{_accounts(h.ever_enter, limit)}; under the old only: "
            f"{_accounts(h.ever_leave, limit)}"
        )


def _history_json(h: HistoryDiff) -> dict[str, Any]:
    def side(s: Any) -> dict[str, Any]:
        return {
            "summary": s.summary,
            "pql_at_end": sorted(s.at_end),
            "segments_at_end": {k: sorted(v) for k, v in sorted(s.segments_at_end.items())},
        }

    return {
        "old": side(h.old),
        "new": side(h.new),
        "enter": h.enter,
        "leave": h.leave,
        "ever_enter": h.ever_enter,
        "ever_leave": h.ever_leave,
    }
