"""Kill an embedded broker when the process that started it dies without stopping it.

atexit does not run on SIGKILL, an OOM kill or a hard timeout, and a broker left behind holds its
port and memory until someone notices. `EmbeddedBroker` starts this module as
`python .../watchdog.py PID` with a pipe on stdin that only the parent holds. When the
parent dies the pipe reaches EOF and the watchdog stops the broker's process group (SIGTERM, wait,
then SIGKILL). On a normal stop the parent kills the watchdog first, so it never fires.

The broker's start time (from /proc) is recorded up front and checked before signalling, so a
recycled PID is never hit.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time

GRACE_S = 20.0


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks); None where there is no /proc."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; the fields after its ')' are fixed.
    return stat.rsplit(")", 1)[1].split()[19]


def _same_process(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    return started is None or _start_time(pid) == started


def main(argv: list[str]) -> int:
    pid = int(argv[1])
    started = _start_time(pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while sys.stdin.buffer.read(4096):  # returns b"" only at EOF: the parent is gone
        pass
    if not _same_process(pid, started):
        return 0
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    while _same_process(pid, started) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _same_process(pid, started):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
