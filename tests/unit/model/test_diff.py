"""`pql model diff`: the definition changes, the kind of change, and the history comparison."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from streams.cli import main
from streams.model.diff import change_kind, compare_on_history, definition_changes
from tests.unit.backtest.test_switch import V1, V2, _history
from tests.unit.scoring.util import model


def test_definition_changes_list_every_difference_in_model_order() -> None:
    new = (
        V2.replace("points: 50}", "points: 40}")
        .replace('exit: "score < 60"', 'exit: "score < 50"')
        .replace("  - {per: seats", '  - {when: "msgs >= 10", points: 5}\n  - {per: seats')
    )
    assert definition_changes(model(V1), model(new)) == [
        "version: 1 -> 2",
        "score rule 'msgs >= 3': 50 points when msgs >= 3 -> 40 points when msgs >= 3",
        "new score rule: 5 points when msgs >= 10",
        "qualify.when: score >= 100 -> score >= 70",
        "qualify.exit: score < 60 -> score < 50",
        "segment 'busy': msgs >= 5 -> msgs >= 4",
        "new segment 'team': seats >= 2",
    ]
    assert definition_changes(model(V1), model(V1)) == []


def test_change_kind_says_how_it_can_go_live() -> None:
    assert change_kind(model(V1), model(V1)).startswith("none")
    assert change_kind(model(V1), model(V2)).startswith("rules only")
    windowed = V2.replace("window: 7d}\n  seats", "window: 3d}\n  seats")
    assert change_kind(model(V1), model(windowed)).startswith("signals: applies live after a")
    same_version = V1.replace('"score >= 100"', '"score >= 90"')
    assert change_kind(model(V1), model(same_version)).startswith("refused")
    traits = V2.replace("  seats:", "  admins: {users_with_trait: role, in: [admin]}\n  seats:")
    assert "reads other user traits" in change_kind(model(V1), model(traits))


def test_history_says_who_enters_and_leaves(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps(e) + "\n" for e in _history()))
    h = compare_on_history(model(V1), model(V2), [events])
    # a (90 points) is a PQL under v2 only; c (110) under both; b under neither.
    assert h.enter == ["a"] and h.leave == []
    assert h.old.at_end == {"c"} and h.new.at_end == {"a", "c"}
    assert h.ever_enter == ["a"]
    assert h.old.summary["pql_accounts"] == 1 and h.new.summary["pql_accounts"] == 2
    assert h.new.segments_at_end["team"] == {"a", "c"}
    assert "team" not in h.old.segments_at_end
    back = compare_on_history(model(V2), model(V1), [events])
    assert back.leave == ["a"] and back.enter == []


def test_cli_prints_and_writes_json(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps(e) + "\n" for e in _history()))
    old, new = tmp_path / "v1.yaml", tmp_path / "v2.yaml"
    old.write_text(V1)
    new.write_text(V2)
    out = tmp_path / "diff.json"
    args = ["model", "diff", str(old), str(new), str(events), "--received-by", "never"]
    res = CliRunner().invoke(main, [*args, "--json", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "qualify.when: score >= 100 -> score >= 70" in res.output
    assert "rules only" in res.output
    assert "would enter (PQL at the end): 1: a" in res.output
    report = json.loads(out.read_text())
    assert report["history"]["enter"] == ["a"]
    assert report["kind"].startswith("rules only")
    # Without history: the definition only.
    res = CliRunner().invoke(main, ["model", "diff", str(old), str(new)])
    assert res.exit_code == 0 and "would enter" not in res.output
    # A broken file: its line and field, as `pql model check` says them.
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nversion: two\nsignals: {}\nqualify: {when: 'true'}\n")
    res = CliRunner().invoke(main, ["model", "diff", str(old), str(broken)])
    assert res.exit_code != 0 and f"{broken}:2: version" in res.output
