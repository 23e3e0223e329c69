"""`pql merge-shards DIR`: a backtest run as shards (`pql backtest --shard I/N --shard-dir DIR`,
each on any machine, all reading the same input) put together: the transitions in the order
one process gives them, and the summary (`streams.backtest.shards`)."""

from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path

import click
import orjson
from rich.console import Console

from streams.backtest.cli import _jsonl_sink, _print_summary
from streams.backtest.cli_args import (
    load_model_or_exit,
    out_option,
    report_option,
    shadow_out_option,
)
from streams.backtest.shards import ShardFailed, merge_shards, shard_info


@click.command("merge-shards")
@click.argument("shard_dir", type=click.Path(exists=True, file_okay=False))
@out_option
@shadow_out_option
@report_option
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False),
    help="Write the HTML report (give --model: the file the shards replayed).",
)
@click.option("--model", "model_path", default=None, help="The model file (for --html).")
def merge_shards_command(
    shard_dir: str,
    out_path: str | None,
    shadow_out_path: str | None,
    report_path: str | None,
    html_path: str | None,
    model_path: str | None,
) -> None:
    """Merge the parts of a sharded backtest in SHARD_DIR (every shard must have run)."""
    work = Path(shard_dir)
    started = time.perf_counter()
    try:
        count, model_info = shard_info(work)
        with ExitStack() as files:
            out = files.enter_context(open(out_path, "wb")) if out_path else None
            sout = files.enter_context(open(shadow_out_path, "wb")) if shadow_out_path else None
            summary = merge_shards(
                work,
                count,
                _jsonl_sink(out),
                _jsonl_sink(sout),
                lambda: time.perf_counter() - started,
            )
    except ShardFailed as exc:
        raise click.ClickException(str(exc)) from exc
    summary["model"] = model_info
    if report_path:
        Path(report_path).write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    if html_path:
        if model_path is None:
            raise click.BadParameter(
                "the report shows the model: give --model", param_hint="--html"
            )
        from streams.backtest.report import write_report

        write_report(Path(html_path), summary, load_model_or_exit(model_path))
    _print_summary(Console(), summary, out_path, report_path)
