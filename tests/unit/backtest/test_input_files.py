"""Backtest input handling: pipes longer than a progress interval, gzip closing its file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
MODEL = (
    'name: b\nversion: 1\nsignals:\n  m: {count: "Message Sent", window: 1d}\n'
    'qualify:\n  when: "m >= 3"\n'
)


def _events(n: int) -> bytes:
    lines = [
        json.dumps(
            {
                "type": "track",
                "event": "Message Sent",
                "userId": "u1",
                "messageId": f"m{i}",
                "timestamp": "2026-01-05T10:00:00Z",
                "context": {"groupId": "a"},
            }
        )
        for i in range(n)
    ]
    return ("\n".join(lines) + "\n").encode()


def test_backtest_from_a_pipe_with_more_than_8192_lines(tmp_path: Path) -> None:
    """`cat big.jsonl | pql backtest --model M -` crashes: run_backtest calls
    `sys.stdin.buffer.tell()` for progress every 8192 lines, which raises
    OSError [Errno 29] Illegal seek on a pipe (even with --quiet)."""
    model = tmp_path / "m.yaml"
    model.write_text(MODEL)
    proc = subprocess.run(
        [sys.executable, "-m", "streams.cli", "backtest", "--model", str(model), "-", "--quiet"],
        input=_events(9000),
        capture_output=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert b"Illegal seek" not in proc.stderr


def test_gzip_input_closes_its_file(tmp_path: Path) -> None:
    """open_events wraps the file in gzip.GzipFile(fileobj=f); closing the GzipFile does not
    close `f`, so every gzipped input leaks an open file (ResourceWarning)."""
    import gzip

    path = tmp_path / "e.jsonl"
    path.write_bytes(gzip.compress(_events(3)))
    (tmp_path / "m.yaml").write_text(MODEL)
    code = (
        "import gc\n"
        "from streams.model.loader import load_model\n"
        "from streams.backtest.replay import run_backtest\n"
        f"run_backtest(load_model({str(tmp_path / 'm.yaml')!r}), [{str(path)!r}])\n"
        "gc.collect()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "always::ResourceWarning", "-c", code],
        capture_output=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"ResourceWarning" not in proc.stderr, proc.stderr.decode()
