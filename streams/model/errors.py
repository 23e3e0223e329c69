"""Model errors that point at the offending line and field.

A model author fixes a file, not a stack trace: every problem carries the 1-based line of the
YAML node it is about and a dotted field path (`signals.big_meetings.where`, `score[3].every`),
and the loader collects all of them before raising so one `pql model check` run shows them all.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ModelIssue:
    """One problem in a model file."""

    line: int  # 1-based line of the offending YAML node
    field: str  # dotted path, e.g. `signals.big_meetings.where` or `score[3].every`
    message: str

    def __str__(self) -> str:
        return f"{self.line}: {self.field}: {self.message}"


class ModelError(Exception):
    """A model that cannot be used; `issues` lists every problem found, in file order."""

    def __init__(self, issues: list[ModelIssue], source: str | None = None) -> None:
        self.issues = list(issues)
        self.source = source
        super().__init__(self.__str__())

    def __str__(self) -> str:
        return "\n".join(str(issue) for issue in self.issues)
