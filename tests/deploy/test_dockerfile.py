"""The container image definition: hadolint clean, and the deployment contract in the Dockerfile."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.deploy._tools import REPO, VENV_HINT, explain, run, tool

DOCKERFILE = REPO / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = DOCKERFILE.read_text()
    out: list[tuple[str, str]] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        word, _, rest = current.partition(" ")
        out.append((word.upper(), rest.strip()))
        current = ""
    return out


def test_hadolint_clean() -> None:
    hadolint = tool("hadolint", VENV_HINT)
    proc = run([hadolint, "--failure-threshold", "warning", str(DOCKERFILE)])
    assert proc.returncode == 0, explain(proc)


def test_hadolint_catches_an_unpinned_base(tmp_path: Path) -> None:
    """The linter really lints: an unpinned base image and an unpinned apt install are warnings."""
    hadolint = tool("hadolint", VENV_HINT)
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\n")
    proc = run([hadolint, "--failure-threshold", "warning", str(bad)])
    assert proc.returncode != 0
    assert "DL3007" in proc.stdout and "DL3008" in proc.stdout, explain(proc)


def test_multi_stage_on_a_pinned_slim_base() -> None:
    froms = [args for word, args in instructions() if word == "FROM"]
    assert len(froms) >= 2, "a build stage and a runtime stage"
    for args in froms:
        image = args.split()[0]
        assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", image), image
    # The runtime stage gets the wheels from the build stage, never the source tree.
    last_stage = DOCKERFILE.read_text().rsplit("\nFROM ", 1)[1]
    assert "from=build" in last_stage
    assert "COPY streams" not in last_stage


def test_runs_as_numeric_non_root_user() -> None:
    users = [args for word, args in instructions() if word == "USER"]
    assert users, "no USER instruction"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) >= 10000, f"USER {users[-1]}: use a numeric uid >= 10000"


def test_state_volume_port_entrypoint() -> None:
    ins = instructions()
    volumes = [args for word, args in ins if word == "VOLUME"]
    assert volumes and "/var/lib/pql" in volumes[-1]
    assert [args for word, args in ins if word == "EXPOSE"] == ["6066"]
    entrypoint = [args for word, args in ins if word == "ENTRYPOINT"]
    assert entrypoint and json.loads(entrypoint[-1]) == ["pql"]
    cmd = [args for word, args in ins if word == "CMD"]
    assert cmd and json.loads(cmd[-1]) == ["worker"]
    env = " ".join(args for word, args in ins if word == "ENV")
    assert "PQL_DATA_DIR=/var/lib/pql" in env


def test_healthcheck_uses_python_not_curl() -> None:
    checks = [args for word, args in instructions() if word == "HEALTHCHECK"]
    assert len(checks) == 1
    check = checks[0]
    assert "/healthz" in check and "urllib" in check
    assert "curl" not in check and "wget" not in check
    assert re.search(r"--start-period=\d+s", check)


def test_build_context_has_what_the_dockerfile_copies() -> None:
    """The allow-list .dockerignore keeps what the build needs and nothing else."""
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    rules = [line.strip() for line in ignore if line.strip() and not line.startswith("#")]
    assert rules[0] == "*", ".dockerignore should start by excluding everything"
    allowed = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    for word, args in instructions():
        if word != "COPY" or "--from" in args:
            continue
        *sources, _dest = args.split()
        for src in sources:
            assert src.rstrip("/") in allowed, f"COPY {src} is excluded by .dockerignore"
            assert (REPO / src).exists(), f"COPY {src}: missing from the repository"
    assert not allowed & {".git", ".venv", "tests", "deploy", "bench"}
