"""The package stays typed: `mypy streams` (config in pyproject.toml) reports no errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_mypy_streams_is_clean() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "streams"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"mypy streams failed:\n{proc.stdout}{proc.stderr}"
