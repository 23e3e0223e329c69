"""Where a worker's time goes: py-spy samples a real worker while it works through a preloaded
workload on the embedded broker, then the hottest frames are printed (self and inclusive time).

    python -m bench.profile [--events 200000] [--accounts 20000] [--seconds 30] [--out DIR]

Needs `py-spy` (`pip install py-spy`; it is not a dependency of the package). Writes the raw
collapsed stacks to `<out>/worker.folded` (feed them to any flame-graph tool) and a speedscope
file beside them. Starts and stops its own broker and worker, like `bench.run`.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.procs import Worker, cpu_seconds, descendants, stop_all
from bench.run import MODEL, PARTITIONS, metric_sum, say
from bench.workload import events_file
from streams.broker.embedded import EmbeddedBroker, free_port
from streams.io.produce import produce_file


def _py_spy() -> str:
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(exe).exists():
        raise SystemExit("py-spy is not installed: run `.venv/bin/pip install py-spy` and retry")
    return exe


def summarize(folded: Path, top: int) -> str:
    """Self and inclusive sample shares per function from collapsed stacks."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in folded.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    out = [f"{total} samples", "", "self %  function"]
    out += [f"{100 * n / total:5.1f}  {f}" for f, n in own.most_common(top)]
    out += ["", "incl %  function"]
    out += [f"{100 * n / total:5.1f}  {f}" for f, n in incl.most_common(top)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--accounts", type=int, default=20_000)
    ap.add_argument("--seconds", type=float, default=30.0, help="how long to sample")
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "pql-profile")
    ap.add_argument(
        "--after-ingest",
        action="store_true",
        help="start sampling once the ingest stage has read every event (the account stage alone)",
    )
    ap.add_argument("--native", action="store_true", help="py-spy --native (C frames too)")
    args = ap.parse_args(argv)
    spy = _py_spy()
    path, n, _ = events_file(args.events, args.accounts, say)
    args.out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="pql-profile-"))
    broker = EmbeddedBroker()
    try:
        broker.start()
        topic = "profile-events"
        say(f"preloading {n:,} events")
        produce_file(broker.bootstrap, [path], topic, PARTITIONS)
        port = free_port()
        wargs = ["--model", str(MODEL), "--broker", broker.bootstrap, "--input-topic", topic]
        wargs += ["--output-topic", "profile-out", "--dlq-topic", "profile-dlq"]
        wargs += ["--data-dir", str(workdir / "data"), "--web-port", str(port)]
        wargs += ["--web-host", "127.0.0.1", "--app-id", "profile"]
        wargs += ["--partitions", str(PARTITIONS), "--session-timeout", "6"]
        wargs += ["--log-level", "warning"]
        w = Worker("profile", wargs, port, workdir / "worker.log").start()
        w.wait_ready()
        say(f"worker ready (pid {w.pid})")
        while args.after_ingest:
            consumed = metric_sum(w.metrics(), "pql_events_consumed_total", f'topic="{topic}"')
            if consumed >= n:
                break
            time.sleep(0.2)
        say(f"sampling for {args.seconds:.0f} s")
        folded = args.out / "worker.folded"
        cmd = [spy, "record", "--pid", str(w.pid), "--duration", str(int(args.seconds))]
        # Native frames need the process stopped while its stack is read (a few ms each: a
        # low rate keeps it running); Python frames alone are read without stopping it.
        rate = "20" if args.native else "200"
        cmd += ["--rate", rate, "--format", "raw", "--output", str(folded)]
        cmd += ["--subprocesses"]  # the ingest process too
        cmd.append("--native" if args.native else "--nonblocking")
        t0 = time.monotonic()
        p0 = metric_sum(w.metrics(), "pql_events_processed_total")
        assert broker.pid is not None
        pids = [w.pid, *descendants(w.pid), broker.pid]  # worker, its ingest process, broker
        cpu0 = [cpu_seconds(pid) for pid in pids]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        cpu1 = [cpu_seconds(pid) for pid in pids]
        p1 = metric_sum(w.metrics(), "pql_events_processed_total")
        wall = time.monotonic() - t0
        say(f"processed {p1 - p0:,.0f} events while sampling (~{(p1 - p0) / wall:,.0f}/s)")
        shares = [f"{100 * (b - a) / wall:.0f}%" for a, b in zip(cpu0, cpu1, strict=True)]
        say(
            f"CPU while sampling (of one core): worker {shares[0]}, "
            f"its child processes {', '.join(shares[1:-1]) or '-'}, broker {shares[-1]}"
        )
        w.stop()
        print(summarize(folded, args.top))
        say(f"collapsed stacks: {folded}")
    finally:
        stop_all()
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
