"""`pql model check` through click's CliRunner."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from streams.cli import main
from streams.model.cli import model

ROOT = Path(__file__).resolve().parents[3]
TEAM_CHAT = ROOT / "examples" / "team-chat.yaml"

BAD = """\
name: m
version: 1
signals:
  messages: {count: "Message Sent", window: 30x}
qualify: {when: "mesages >= 1"}
"""


def test_check_valid_file_prints_summary() -> None:
    result = CliRunner().invoke(model, ["check", str(TEAM_CHAT)])
    assert result.exit_code == 0, result.output
    assert result.output == f"{TEAM_CHAT}: ok: team-chat v3: 11 signals, 4 rules, 4 segments\n"


def test_check_through_the_pql_entry_point() -> None:
    result = CliRunner().invoke(main, ["model", "check", str(TEAM_CHAT)])
    assert result.exit_code == 0, result.output
    assert "team-chat v3" in result.output


def test_check_every_example_succeeds() -> None:
    paths = sorted(str(p) for p in (ROOT / "examples").glob("*.yaml"))
    result = CliRunner().invoke(model, ["check", *paths])
    assert result.exit_code == 0, result.output
    assert len(result.output.splitlines()) == len(paths)


def test_check_invalid_file_lists_issues_and_hint(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    result = CliRunner().invoke(model, ["check", str(bad)])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines == [
        f"{bad}:4: signals.messages.window: invalid duration '30x': expected a whole number "
        "and a unit, like '45s', '15m', '12h', '30d' or '2w'",
        f"{bad}:5: qualify.when: unknown signal 'mesages' (did you mean 'messages'?)",
    ]
    assert result.stderr.startswith("hint: fix the issues above")


def test_mixed_files_fail_but_report_the_valid_ones(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [\n")
    result = CliRunner().invoke(model, ["check", str(TEAM_CHAT), str(bad)])
    assert result.exit_code == 1
    out = result.stdout.splitlines()
    assert out[0].startswith(f"{TEAM_CHAT}: ok: ")
    assert out[1].startswith(f"{bad}:2: yaml: invalid YAML: ")


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(model, ["check", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_no_files_is_a_usage_error() -> None:
    result = CliRunner().invoke(model, ["check"])
    assert result.exit_code == 2
