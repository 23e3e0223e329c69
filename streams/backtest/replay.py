"""Running a replay over files: `run_backtest` (what `pql backtest`, `pql compare` and the bench
call), in one process or sharded over several (`jobs`, `streams.backtest.shards`), and the line
source every replay reads (`history_lines`, gzip or plain, files or stdin)."""

from __future__ import annotations

import gzip
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from streams.backtest.runner import DEFAULT_MAX_DISORDER_MS, Backtest, TransitionSink
from streams.model.spec import Model
from streams.scoring.backfill import partial_windows
from streams.scoring.shadow import ShadowStart
from streams.scoring.switch import ModelSwitch
from streams.scoring.transitions import iso_ms


@contextmanager
def open_events(path: str | Path) -> Iterator[tuple[IO[bytes], Callable[[], int] | None]]:
    """(a binary line source, a function giving how many input bytes were read — None for a
    pipe, which cannot tell). gzip is detected by its magic bytes, not the file name. Every
    file opened here is closed on exit."""
    if str(path) == "-":
        yield sys.stdin.buffer, None
        return
    with open(path, "rb") as raw:
        position = raw.tell
        if raw.peek(2)[:2] == b"\x1f\x8b":
            with gzip.GzipFile(fileobj=raw) as unzipped:
                yield unzipped, position  # type: ignore[misc]
        else:
            yield raw, position


def history_lines(
    paths: Iterable[str | Path], progress: Callable[[int], None] | None = None
) -> Iterator[tuple[int, bytes]]:
    """(line number, line) of every non-blank line of the files, numbered across them;
    `progress(bytes_read)` every few thousand lines (not for a pipe)."""
    n = 0
    for path in paths:
        with open_events(path) as (src, position):
            for line in src:
                n += 1
                if not line.strip():
                    continue
                yield n, line
                if progress is not None and position is not None and n % 8192 == 0:
                    progress(position())


@dataclass(frozen=True)
class Replay:
    """What one replay needs besides its sinks (the same in every shard)."""

    model: Model
    paths: list[str | Path]
    conversion_event: str | None = None
    until: int | None = None
    max_disorder_ms: int = DEFAULT_MAX_DISORDER_MS
    received_by_ms: float | None = None  # resolved: "now" is read once, before any shard
    switches: Sequence[ModelSwitch] = ()
    shadows: Sequence[ShadowStart] = ()
    backfill_from_ms: int | None = None
    signup_event: str | None = None
    revenue_property: str | None = None

    def backtest(
        self, sink: TransitionSink | None = None, shadow_sink: TransitionSink | None = None
    ) -> Backtest:
        bt = Backtest(
            self.model,
            sink=sink,
            conversion_event=self.conversion_event,
            max_disorder_ms=self.max_disorder_ms,
            received_by_ms=self.received_by_ms,
            switches=self.switches,
            shadows=self.shadows,
            shadow_sink=shadow_sink,
            backfill_from_ms=self.backfill_from_ms,
        )
        bt.summary.signup_event = self.signup_event
        bt.summary.revenue_property = self.revenue_property
        return bt

    def run(self, bt: Backtest, progress: Callable[[int], None] | None = None) -> None:
        for n, line in history_lines(self.paths, progress):
            bt.feed_line(line, n)
        bt.finish(self.until)

    def extras(self, bt: Backtest) -> dict[str, Any]:
        """The summary's switches and shadows (none: {})."""
        out: dict[str, Any] = {}
        if self.switches:
            out["switches"] = [_switch_summary(bt, sw) for sw in bt.switched]
        if self.shadows:
            out["shadows"] = [
                {
                    "at": iso_ms(sh.at_ms),
                    "model": sh.model.name,
                    "version": sh.model.version,
                    "transitions": bt.shadow_transitions.get(sh.model.version, 0),
                }
                for sh in bt.shadows_started
            ]
        return out


def run_backtest(
    model: Model,
    paths: list[str | Path],
    sink: TransitionSink | None = None,
    conversion_event: str | None = None,
    until: int | None = None,
    progress: Callable[[int], None] | None = None,
    max_disorder_ms: int = DEFAULT_MAX_DISORDER_MS,
    received_by_ms: float | Literal["now"] | None = "now",
    switches: Sequence[ModelSwitch] = (),
    shadows: Sequence[ShadowStart] = (),
    shadow_sink: TransitionSink | None = None,
    backfill_from_ms: int | None = None,
    signup_event: str | None = None,
    revenue_property: str | None = None,
    jobs: int = 1,
    shard: tuple[int, int] | None = None,
    shard_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Replay files through the core; return the summary. `progress(bytes_read)` is called
    every few thousand lines. `signup_event`, `revenue_property`: the funnel's
    (`streams.backtest.funnel`). `jobs` > 1: sharded over that many processes by account,
    with the same transitions in the same order and the same summary
    (`streams.backtest.shards`; the input must be files, not stdin). `shard` (I, N): only
    shard I of N, in this process, its part written to `shard_dir` for `merge_shards` (on
    several machines: `pql backtest --shard`, then `pql merge-shards`)."""
    replay = Replay(
        model,
        list(paths),
        conversion_event,
        until,
        max_disorder_ms,
        time.time() * 1000 if received_by_ms == "now" else received_by_ms,
        switches,
        shadows,
        backfill_from_ms,
        signup_event,
        revenue_property,
    )
    if shard is not None:
        from streams.backtest.shards import run_shard

        assert shard_dir is not None, "a shard writes its part to shard_dir"
        run_shard(replay, shard[0], shard[1], Path(shard_dir), progress)
        return {"shard": shard[0], "of": shard[1], "dir": str(shard_dir)}
    if jobs > 1:
        from streams.backtest.shards import run_sharded

        return run_sharded(replay, jobs, sink, shadow_sink, progress)
    started = time.perf_counter()
    bt = replay.backtest(sink, shadow_sink)
    replay.run(bt, progress)
    summary = bt.summary.build(time.perf_counter() - started, (s.score for s in bt.states.values()))
    summary.update(replay.extras(bt))
    return summary


def _switch_summary(bt: Backtest, sw: ModelSwitch) -> dict[str, Any]:
    out: dict[str, Any] = {
        "at": iso_ms(sw.at_ms),
        "model": sw.model.name,
        "version": sw.model.version,
    }
    bf = bt.backfilled.get(sw.model.version)
    if bf is not None:
        out["backfill"] = {
            "changes": bf.changes,
            "signals": [name for name, _ in partial_windows(sw.model, bf.carry)],
            "from": None if bf.from_ms is None else iso_ms(bf.from_ms),
        }
    return out
