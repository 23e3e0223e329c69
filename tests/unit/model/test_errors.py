"""ModelIssue / ModelError formatting."""

from __future__ import annotations

from streams.model.errors import ModelError, ModelIssue


def test_issue_str() -> None:
    issue = ModelIssue(7, "signals.big_meetings.where", "expected ')' at column 14")
    assert str(issue) == "7: signals.big_meetings.where: expected ')' at column 14"


def test_error_lists_every_issue_one_per_line() -> None:
    err = ModelError([ModelIssue(1, "name", "a"), ModelIssue(9, "score[3].every", "b")], "m.yaml")
    assert str(err) == "1: name: a\n9: score[3].every: b"
    assert len(err.issues) == 2
    assert err.source == "m.yaml"
