"""The arguments of `pql backtest` and its neighbours (`pql compare`, `pql fit`, `pql model
diff`, `pql merge-shards`): model files, instants, durations, switches, shadows, shards, each
refused with a message that says what to give instead."""

from __future__ import annotations

from typing import Literal

import click

from streams.events.timestamps import iso_to_epoch_ms
from streams.model.durations import DurationError, parse_duration
from streams.model.errors import ModelError
from streams.model.loader import load_model
from streams.model.spec import Model
from streams.scoring.backfill import check_backfill
from streams.scoring.shadow import ShadowStart, check_shadow
from streams.scoring.switch import IncompatibleModel, ModelSwitch
from streams.scoring.transitions import iso_ms

# The output files `pql backtest` and `pql merge-shards` share.
out_option = click.option(
    "--out", "out_path", type=click.Path(dir_okay=False), help="Write transitions (JSONL)."
)
report_option = click.option(
    "--report", "report_path", type=click.Path(dir_okay=False), help="Write the summary (JSON)."
)
shadow_out_option = click.option(
    "--shadow-out",
    "shadow_out_path",
    type=click.Path(dir_okay=False),
    help="Write the shadow models' transitions (JSONL).",
)


def load_model_or_exit(path: str) -> Model:
    try:
        return load_model(path)
    except ModelError as exc:
        issues = "\n".join(f"{path}:{issue}" for issue in exc.issues)
        raise click.ClickException(
            f"{path} is not a valid model:\n{issues}\nFix it, then check with "
            f"`pql model check {path}`."
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"cannot read the model {path}: {exc}") from exc


def _timed_models(specs: tuple[str, ...], option: str) -> list[tuple[int, Model]]:
    """TIME=FILE specs -> (epoch ms, model), in time order."""
    out = []
    for spec in specs:
        at_text, sep, path = spec.partition("=")
        at = iso_to_epoch_ms(at_text.strip()) if sep else None
        if at is None or not path:
            raise click.BadParameter(
                f"{spec!r}: expected TIME=FILE, an ISO-8601 instant, '=' and a model file "
                "(e.g. 2026-03-01T00:00:00Z=model-v2.yaml)",
                param_hint=option,
            )
        out.append((at, load_model_or_exit(path)))
    out.sort(key=lambda x: x[0])
    return out


def parse_shadows(
    first: Model, switches: list[ModelSwitch], specs: tuple[str, ...]
) -> list[ShadowStart]:
    shadows = [ShadowStart(at, m) for at, m in _timed_models(specs, "--shadow")]
    seen: set[int] = set()
    for sh in shadows:
        live = first
        for sw in switches:
            if sw.at_ms <= sh.at_ms:
                live = sw.model
        try:
            if sh.model.version in seen:
                raise IncompatibleModel("another --shadow has the same version: one per version")
            check_shadow(live, sh.model)
        except IncompatibleModel as exc:
            raise click.ClickException(
                f"cannot run {sh.model.source_path} as a shadow from {iso_ms(sh.at_ms)}: {exc}."
            ) from exc
        seen.add(sh.model.version)
    return shadows


def parse_switches(first: Model, specs: tuple[str, ...]) -> list[ModelSwitch]:
    switches = [ModelSwitch(at, m) for at, m in _timed_models(specs, "--switch-model")]
    previous = first
    for sw in switches:
        try:
            check_backfill(previous, sw.model)
        except IncompatibleModel as exc:
            raise click.ClickException(
                f"cannot switch to {sw.model.source_path} at {iso_ms(sw.at_ms)}: {exc}."
            ) from exc
        previous = sw.model
    return switches


def parse_shard(
    shard: str | None, shard_dir: str | None, jobs: int, outputs: tuple[str | None, ...]
) -> tuple[int, int] | None:
    if shard is None:
        if shard_dir is not None:
            raise click.BadParameter("--shard-dir without --shard I/N", param_hint="--shard-dir")
        return None
    i, _, n = shard.partition("/")
    if not (i.isdigit() and n.isdigit() and int(i) < int(n)):
        raise click.BadParameter(f"{shard!r}: say I/N with 0 <= I < N", param_hint="--shard")
    if shard_dir is None:
        raise click.BadParameter("a shard writes its part to --shard-dir", param_hint="--shard")
    if jobs > 1 or any(outputs):
        raise click.BadParameter(
            "a shard writes only its part: give --out, --report, --html, --shadow-out to "
            "`pql merge-shards`, and no --jobs",
            param_hint="--shard",
        )
    return int(i), int(n)


def parse_until(text: str | None) -> int | None:
    if text is None:
        return None
    ms = iso_to_epoch_ms(text)
    if ms is None:
        raise click.BadParameter(f"not an ISO-8601 instant: {text!r}", param_hint="--until")
    return ms


def parse_received_by(text: str) -> float | Literal["now"] | None:
    if text == "now":
        return "now"
    if text == "never":
        return None
    ms = iso_to_epoch_ms(text)
    if ms is None:
        raise click.BadParameter(
            f"not an ISO-8601 instant, 'now' or 'never': {text!r}", param_hint="--received-by"
        )
    return float(ms)


def parse_disorder(text: str) -> int:
    if text.strip() in ("0", "0s"):
        return 0
    try:
        return parse_duration(text)
    except DurationError as exc:
        raise click.BadParameter(str(exc), param_hint="--max-disorder") from exc
