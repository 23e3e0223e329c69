"""`pql backtest --jobs N`: one replay sharded over N processes by account, giving what the
single process gives: the same transitions in the same order, the same summary.

Every shard reads and parses the whole input and routes every event (routing is global: a group
call sends a user's later events to another account), but applies only the deliveries to the
accounts it owns (crc32 of the account id modulo N), builds only their backfilled signals and
advances only their timers. What decides *when* anything happens is the same in every shard:
the order the hold buffer releases events in, the watermark, the switch and shadow instants.

Order: a replay counts *blocks* (`Backtest.tick`): a rejected line, one event's deliveries, one
advance of the watermark, one switch or shadow start. Every shard counts the same blocks.
Inside a block the single process emits in an order every shard can name (`Backtest.sub`):
deliveries by their index, advanced accounts by (expiry, account), switched accounts by
account. Each shard writes its transitions tagged (block, position, its own sequence), which is
already the order it emitted them in; the parent merges the N files on the tag, which gives
the single process's order.

Summary: an account's figures live in one shard and are united; counts of applied events and
transitions add up; what every shard sees alike (lines read, parse and routing rejects, events
out of order, adjusted timestamps) is reported by shard 0 only.

Parsing is repeated in every shard, so N shards cost N parses: the speed-up is bounded by
parse / (parse + scoring) (README "Performance"). Processes are forked (the model is not
pickled); a shard that fails fails the whole replay with its traceback.
"""

from __future__ import annotations

import heapq
import itertools
import multiprocessing
import pickle
import tempfile
import time
import traceback
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from multiprocessing.sharedctypes import Synchronized
from operator import itemgetter
from pathlib import Path
from typing import IO, Any

import orjson

from streams.backtest.replay import Replay
from streams.backtest.runner import Backtest, TransitionSink


class ShardFailed(RuntimeError):
    """A shard process failed: its traceback is the message."""


def shard_of(account: str, count: int) -> int:
    return zlib.crc32(account.encode()) % count


def run_sharded(
    replay: Replay,
    jobs: int,
    sink: TransitionSink | None,
    shadow_sink: TransitionSink | None,
    progress: Callable[[int], None] | None,
) -> dict[str, Any]:
    if any(str(p) == "-" for p in replay.paths):
        raise ValueError("a sharded replay reads its input once per shard: give files, not -")
    replay.backtest()  # a model that cannot follow or shadow fails here, before any fork
    started = time.perf_counter()
    ctx = multiprocessing.get_context("fork")
    read = ctx.Value("q", 0)
    with tempfile.TemporaryDirectory(prefix="pql-shards-") as tmp:
        work = Path(tmp)
        procs = [
            ctx.Process(
                target=_shard,
                args=(replay, i, jobs, work, read, sink is not None, shadow_sink is not None),
                name=f"pql-shard-{i}",
                daemon=True,
            )
            for i in range(jobs)
        ]
        try:
            for p in procs:
                p.start()
            while any(p.is_alive() for p in procs):
                time.sleep(0.1)
                if progress is not None:
                    progress(read.value)
                if any(p.exitcode for p in procs):
                    break  # one failed: the others are stopped below
        finally:
            for p in procs:
                if p.is_alive():
                    p.kill()
                p.join()
        failed = [i for i, p in enumerate(procs) if p.exitcode != 0]
        if failed:
            # The one that says why (the others may only have been stopped).
            i = next((i for i in failed if (work / f"error-{i}").exists()), failed[0])
            error = work / f"error-{i}"
            why = error.read_text() if error.exists() else f"exit code {procs[i].exitcode}"
            raise ShardFailed(f"shard {i} of {jobs} failed:\n{why}")
        results = [pickle.loads((work / f"result-{i}").read_bytes()) for i in range(jobs)]
        if sink is not None:
            _merge([work / f"t{i}" for i in range(jobs)], sink)
        if shadow_sink is not None:
            _merge([work / f"s{i}" for i in range(jobs)], shadow_sink)
    builder = results[0]["summary"]
    for r in results[1:]:
        builder.merge(r["summary"])
    scores = itertools.chain.from_iterable(r["scores"] for r in results)
    summary = builder.build(time.perf_counter() - started, scores)
    extras = results[0]["extras"]
    shadow_counts: Counter[int] = Counter()
    for r in results:
        shadow_counts.update(r["shadow_transitions"])
    for entry in extras.get("shadows", ()):
        entry["transitions"] = shadow_counts[entry["version"]]
    summary.update(extras)
    return summary


def _shard(
    replay: Replay,
    index: int,
    count: int,
    work: Path,
    read: Synchronized[int],
    keep: bool,
    keep_shadow: bool,
) -> None:
    """One shard's replay (in its own process): tagged transitions to t<index> (s<index> for
    the shadows'), the rest pickled to result-<index>."""
    try:
        with open(work / f"t{index}", "wb") as out, open(work / f"s{index}", "wb") as shadow_out:
            bt = replay.backtest()
            owned: dict[str, bool] = {}

            def owns(account: str) -> bool:
                mine = owned.get(account)
                if mine is None:
                    mine = owned[account] = shard_of(account, count) == index
                return mine

            bt.owns = owns
            bt.shared_effects = index == 0
            if keep:
                bt.sink = _tagged(bt, out)
            if keep_shadow:
                bt.shadow_sink = _tagged(bt, shadow_out)

            def progress(done: int) -> None:
                read.value = done

            replay.run(bt, progress if index == 0 else None)
        summary = bt.summary
        if index:  # shard 0 reports what every shard saw alike
            summary.events_read = summary.out_of_order = 0
            summary.adjusted = Counter()
        result = {
            "summary": summary,
            "scores": [s.score for s in bt.states.values()],
            "shadow_transitions": bt.shadow_transitions,
            "extras": replay.extras(bt) if index == 0 else {},
        }
        (work / f"result-{index}").write_bytes(pickle.dumps(result))
    except BaseException:
        (work / f"error-{index}").write_text(traceback.format_exc())
        raise


def _tagged(bt: Backtest, out: IO[bytes]) -> TransitionSink:
    write = out.write
    dumps = orjson.dumps
    seq = itertools.count()

    def sink(t: dict[str, Any]) -> None:
        write(dumps((bt.tick, bt.sub, next(seq))) + b"\t" + dumps(t) + b"\n")

    return sink


def _merge(paths: list[Path], sink: TransitionSink) -> None:
    """The shards' tagged transitions, merged on their tags, to `sink`."""

    def read(path: Path) -> Iterator[tuple[list[Any], bytes]]:
        with open(path, "rb") as f:
            for line in f:
                head, _, body = line.partition(b"\t")
                yield orjson.loads(head), body

    loads = orjson.loads
    for _, body in heapq.merge(*(read(p) for p in paths), key=itemgetter(0)):
        sink(loads(body))
