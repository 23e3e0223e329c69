"""`pql backtest --jobs N`: one replay sharded over N processes by account, giving what the
single process gives: the same transitions in the same order, the same summary. The same
shards run apart (`pql backtest --shard I/N --shard-dir DIR`, on any machine) and `pql
merge-shards DIR` puts their parts together.

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

A shard's part, in its directory: t<I> and s<I> (its transitions and its shadows', tagged, one
JSON line each) and result-<I>.json (its summary figures, scores, shadow counts, the split and
the model). Parsing is repeated in every shard, so N shards cost N parses: the speed-up is
bounded by parse / (parse + scoring) (README "The backtest in parallel, and a compiled core").
`--jobs` forks its processes (the model is not pickled); a shard that fails stops the others
and fails the replay with its traceback.
"""

from __future__ import annotations

import heapq
import itertools
import multiprocessing
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
from streams.backtest.summary import SummaryBuilder

_INT_KEYS = orjson.OPT_NON_STR_KEYS  # shadow versions


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
                target=_shard_process,
                args=(replay, i, jobs, work, read),
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
        summary = merge_shards(work, jobs, sink, shadow_sink, lambda: time.perf_counter() - started)
    return summary


def run_shard(
    replay: Replay,
    index: int,
    count: int,
    work: Path,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Shard `index` of `count` of the replay, in this process: its tagged transitions to
    `work`/t<index> (s<index>: the shadows'), the rest of its part to result-<index>.json.
    `pql backtest --shard I/N` runs one on any machine; `merge_shards` puts them together."""
    work.mkdir(parents=True, exist_ok=True)
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
        bt.sink = _tagged(bt, out)
        bt.shadow_sink = _tagged(bt, shadow_out)
        replay.run(bt, progress)
    summary = bt.summary
    if index:  # shard 0 reports what every shard saw alike
        summary.events_read = summary.out_of_order = 0
        summary.adjusted = Counter()
    result = {
        "shard": index,
        "of": count,
        "model": {"name": replay.model.name, "version": replay.model.version},
        "summary": summary.to_json(),
        "scores": [s.score for s in bt.states.values()],
        "shadow_transitions": bt.shadow_transitions,
        "extras": replay.extras(bt) if index == 0 else {},
    }
    (work / f"result-{index}.json").write_bytes(orjson.dumps(result, option=_INT_KEYS))


def merge_shards(
    work: Path,
    count: int,
    sink: TransitionSink | None,
    shadow_sink: TransitionSink | None,
    elapsed_s: Callable[[], float] | None = None,
) -> dict[str, Any]:
    """The summary of the `count` shards' parts in `work`; their transitions, merged into the
    single process's order, to the sinks. Raises ShardFailed when a part is missing or belongs
    to another split."""
    results: list[dict[str, Any]] = []
    for i in range(count):
        path = work / f"result-{i}.json"
        if not path.exists():
            raise ShardFailed(f"no result of shard {i} of {count} in {work}: run it first")
        result = orjson.loads(path.read_bytes())
        if result["of"] != count:
            raise ShardFailed(
                f"{path} is shard {result['shard']} of {result['of']}, not of {count}"
            )
        if results and result["model"] != results[0]["model"]:
            raise ShardFailed(f"{path} replayed {result['model']}, shard 0 {results[0]['model']}")
        results.append(result)
    if sink is not None:
        _merge([work / f"t{i}" for i in range(count)], sink)
    if shadow_sink is not None:
        _merge([work / f"s{i}" for i in range(count)], shadow_sink)
    builder = SummaryBuilder.from_json(results[0]["summary"])
    for r in results[1:]:
        builder.merge(SummaryBuilder.from_json(r["summary"]))
    scores = itertools.chain.from_iterable(r["scores"] for r in results)
    summary = builder.build(elapsed_s() if elapsed_s is not None else None, scores)
    extras = results[0]["extras"]
    shadow_counts: Counter[int] = Counter()
    for r in results:
        shadow_counts.update({int(v): n for v, n in r["shadow_transitions"].items()})
    for entry in extras.get("shadows", ()):
        entry["transitions"] = shadow_counts[entry["version"]]
    summary.update(extras)
    return summary


def shard_info(work: Path) -> tuple[int, dict[str, Any]]:
    """How many shards the parts in `work` were split into, and the model (name, version)
    they replayed: shard 0's part says."""
    path = work / "result-0.json"
    if not path.exists():
        raise ShardFailed(f"no result of shard 0 in {work}: run `pql backtest --shard 0/N` first")
    part = orjson.loads(path.read_bytes())
    return int(part["of"]), dict(part["model"])


def _shard_process(
    replay: Replay, index: int, count: int, work: Path, read: Synchronized[int]
) -> None:
    """`run_shard` in a forked process: its traceback to error-<index> if it fails."""

    def progress(done: int) -> None:
        read.value = done

    try:
        run_shard(replay, index, count, work, progress if index == 0 else None)
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
