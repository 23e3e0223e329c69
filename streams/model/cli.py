"""`pql model ...`: validate model files before they reach a running worker.

Output is one line per finding in the `FILE:LINE: FIELD: MESSAGE` shape editors and CI annotate,
so a broken model fails a pull request rather than a deploy.
"""

from __future__ import annotations

from pathlib import Path

import click

from streams.model.loader import check_model, parse_model

_HINT = (
    "hint: fix the issues above and run `pql model check` again; "
    "the language is described in schemas/pql-model.schema.json and examples/."
)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


@click.group("model")
def model() -> None:
    """Work with PQL model files."""


@model.command("check")
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
def check(files: tuple[Path, ...]) -> None:
    """Validate model FILES; exit 1 if any has issues."""
    failed = False
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            click.echo(f"{path}:1: file: cannot read: {exc}")
            failed = True
            continue
        issues = check_model(text)
        if issues:
            failed = True
            for issue in issues:
                click.echo(f"{path}:{issue.line}: {issue.field}: {issue.message}")
            continue
        m = parse_model(text, source=str(path))
        click.echo(
            f"{path}: ok: {m.name} v{m.version}: {_plural(len(m.signals), 'signal')}, "
            f"{_plural(len(m.score), 'rule')}, {_plural(len(m.segments), 'segment')}"
        )
    if failed:
        click.echo(_HINT, err=True)
        raise SystemExit(1)


@model.command("diff")
@click.argument("old_path", type=click.Path(exists=True, dir_okay=False))
@click.argument("new_path", type=click.Path(exists=True, dir_okay=False))
@click.argument("events", nargs=-1, type=click.Path(allow_dash=True))
@click.option("--conversion-event", default=None, help='Track event that means "converted".')
@click.option("--until", default=None, help="Advance time to this ISO instant at the end.")
@click.option(
    "--received-by",
    default="now",
    show_default=True,
    help="As `pql backtest --received-by` (an ISO instant, 'now' or 'never').",
)
@click.option("--limit", default=20, show_default=True, help="Accounts listed per change.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write it all (JSON).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def diff(
    old_path: str,
    new_path: str,
    events: tuple[str, ...],
    conversion_event: str | None,
    until: str | None,
    received_by: str,
    limit: int,
    json_path: str | None,
    quiet: bool,
) -> None:
    """What changed from model OLD to NEW and, over EVENTS (JSONL history, optional), which
    accounts would enter or leave, and PQL rate and lift before and after."""
    from streams.model.diff_report import run_diff

    run_diff(
        old_path,
        new_path,
        events,
        conversion_event=conversion_event,
        until=until,
        received_by=received_by,
        limit=limit,
        json_path=json_path,
        quiet=quiet,
    )
