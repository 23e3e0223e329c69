"""The compiled core: the hot modules of the functional core compiled with mypyc, from the very
source the pure-Python engine runs, so there is one semantics (a differential test holds the
two to the same transitions and state bytes: tests/unit/native/test_differential.py).

    python -m streams.native build   # `make native`; part of `make test`, `make demo`, `make bench`
    python -m streams.native status  # which engine `pql` runs, and why

The build copies the `streams` package into `<venv>/pql-native/<digest>/` (`PQL_NATIVE_DIR`
moves it), compiles `MODULES` there and keeps the copy. The digest covers every source file of
the package, the Python version and mypyc's, so a build is used only for the sources it was
compiled from: after an edit, `pql` runs pure Python (and says so) until the next build.

Which engine runs, decided once when `streams` is imported (`activate`): `PQL_ENGINE=python`
forces pure Python; `compiled` requires the build (an error without one); `auto` (the default)
takes the build if there is one for these sources. The compiled copy is put first on the
package's `__path__`, so every `streams.*` module below the top one comes from it, compiled or
copied. `ENGINE` says what was chosen and why; `pql backtest` and `pql worker` log it.

Not compiled: modules with msgspec Structs (the account state, the user records: mypyc cannot
compile their field defaults) and the Faust shell. Compiling the shell's per-record parts too
(alignment, the wire format, stream time, the table writer and write-behind, the user and
ingest stages) was measured with `bench.run` (3 reps each): no gain in events per second or
per CPU second, so they stay Python.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODULES = (
    "streams/events/parse.py",
    "streams/events/timestamps.py",
    "streams/events/order.py",
    "streams/events/routing.py",
    "streams/events/types.py",
    "streams/events/codec.py",
    "streams/state/dedup.py",
    "streams/state/windows.py",
    "streams/model/expr.py",
    "streams/scoring/timers.py",
    "streams/scoring/engine.py",
    "streams/scoring/signals.py",
    "streams/scoring/evaluate.py",
    "streams/scoring/transitions.py",
    "streams/scoring/summary.py",
    "streams/scoring/playbook.py",
    "streams/scoring/backfill.py",
    "streams/scoring/switch.py",
    "streams/scoring/shadow.py",
    "streams/backtest/runner.py",
    "streams/backtest/summary.py",
)
PACKAGE = Path(__file__).resolve().parents[1]
ENGINE = "python"  # what `activate` chose, with the reason


def build_root() -> Path:
    return Path(os.environ.get("PQL_NATIVE_DIR") or Path(sys.prefix) / "pql-native")


def _mypyc_version() -> str:
    try:
        from importlib.metadata import version

        return version("mypy")
    except Exception:  # noqa: BLE001 - no mypy: no build, and the digest says so
        return "none"


def digest() -> str:
    """Of every source file of the package (names and bytes), Python's and mypyc's versions."""
    h = hashlib.sha256(f"{sys.version}|{_mypyc_version()}|{MODULES}".encode())
    for path in sorted(PACKAGE.rglob("*.py")):
        h.update(str(path.relative_to(PACKAGE)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:20]


def build_dir() -> Path:
    return build_root() / digest()


def activate(package_path: list[str]) -> str:
    """Choose the engine (module doc) and put the compiled copy first on `package_path`."""
    global ENGINE
    wanted = os.environ.get("PQL_ENGINE", "auto")
    if wanted not in ("auto", "compiled", "python"):
        raise ImportError(f"PQL_ENGINE={wanted!r}: say auto, compiled or python")
    if wanted == "python":
        ENGINE = "python (PQL_ENGINE=python)"
        return ENGINE
    where = build_dir()
    if not (where / "READY").exists():
        if wanted == "compiled":
            raise ImportError(
                f"PQL_ENGINE=compiled but no compiled core for these sources in {where}: run "
                "`make native` (python -m streams.native build)"
            )
        ENGINE = "python (no compiled core for these sources: `make native` builds one; slower)"
        return ENGINE
    package_path.insert(0, str(where / "streams"))
    sys.path.append(str(where))  # mypyc's shared library is a top-level module
    ENGINE = f"compiled (mypyc, {len(MODULES)} modules, {where})"
    return ENGINE


def build(quiet: bool = False) -> Path | None:
    """Compile (module doc); the build's directory, or None when it failed (pure Python then,
    and the reason printed)."""

    def say(msg: str) -> None:
        if not quiet:
            print(f"native: {msg}", file=sys.stderr, flush=True)

    target = build_dir()
    if (target / "READY").exists():
        say(f"compiled core up to date ({target})")
        return target
    if _mypyc_version() == "none":
        say("no mypy/mypyc installed: pql runs pure Python (pip install mypy to compile)")
        return None
    root = build_root()
    root.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(dir=root, prefix="building-"))
    try:
        shutil.copytree(PACKAGE, work / "streams", ignore=_not_source)
        say(f"compiling {len(MODULES)} modules with mypyc (a minute or two)...")
        done = subprocess.run(
            [sys.executable, "-m", "mypyc", *MODULES],
            cwd=work,
            capture_output=True,
            text=True,
            env={**os.environ, "PQL_ENGINE": "python"},
        )
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
            say(f"mypyc failed, pql runs pure Python:\n{tail}")
            return None
        shutil.rmtree(work / "build", ignore_errors=True)
        for c in work.rglob("*.c"):
            c.unlink()
        (work / "READY").write_text(f"{time.time():.0f}\n")
        shutil.rmtree(target, ignore_errors=True)
        work.rename(target)  # whole or not at all: READY is inside
    finally:
        shutil.rmtree(work, ignore_errors=True)  # gone already when it became the build
    for old in root.iterdir():
        if old != target and old.is_dir() and not old.name.startswith("building-"):
            shutil.rmtree(old, ignore_errors=True)  # builds of older sources
    say(f"compiled core built in {time.monotonic() - started:.0f} s: {target}")
    return target


def _not_source(directory: str, names: list[str]) -> list[str]:
    return [n for n in names if n == "__pycache__" or n.endswith((".so", ".c"))]
