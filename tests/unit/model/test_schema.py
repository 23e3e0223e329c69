"""The JSON Schema describes the same language the loader accepts."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from streams.model.loader import check_model

ROOT = Path(__file__).resolve().parents[3]
SCHEMA_PATH = ROOT / "schemas" / "pql-model.schema.json"
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    return Draft202012Validator(schema)


def errors(validator: Draft202012Validator, text: str) -> list[str]:
    data: Any = yaml.safe_load(text)
    return [e.message for e in validator.iter_errors(data)]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_validates(validator: Draft202012Validator, path: Path) -> None:
    assert errors(validator, path.read_text()) == []


VALID_BASE = """\
name: m
version: 1
signals:
  a: {count: "A", window: 30d}
  t: {trait: plan}
  u: {users_with_trait: title, in: ["VP"]}
score:
  - {when: "a >= 1", points: 10}
  - {per: a, every: 5, points: 1, max: 10}
qualify: {when: "score >= 10", exit: "score < 5"}
segments:
  s: "pql"
  d: {when: "s and a > 2", description: "x"}
"""


def test_valid_base_is_accepted_by_both(validator: Draft202012Validator) -> None:
    assert errors(validator, VALID_BASE) == []
    assert check_model(VALID_BASE) == []


INVALID = {
    "missing name": VALID_BASE.replace("name: m\n", ""),
    "version is a string": VALID_BASE.replace("version: 1", "version: one"),
    "unknown top-level key": VALID_BASE + "extra_stuff: 1\n",
    "two kinds": VALID_BASE.replace('{count: "A", window: 30d}', '{count: "A", ever: "B"}'),
    "bad duration": VALID_BASE.replace("window: 30d", "window: 30 days"),
    "zero duration": VALID_BASE.replace("window: 30d", "window: 0d"),
    "window on trait": VALID_BASE.replace("{trait: plan}", "{trait: plan, window: 7d}"),
    "sum without property": VALID_BASE.replace('{count: "A", window: 30d}', '{sum: "A"}'),
    "unknown signal key": VALID_BASE.replace("window: 30d", "windw: 30d"),
    "empty in list": VALID_BASE.replace('in: ["VP"]', "in: []"),
    "rule without when or per": VALID_BASE.replace('{when: "a >= 1", points: 10}', "{points: 1}"),
    "rule without points": VALID_BASE.replace('{when: "a >= 1", points: 10}', '{when: "a > 1"}'),
    "every is zero": VALID_BASE.replace("every: 5", "every: 0"),
    "points not a number": VALID_BASE.replace("points: 10}", "points: ten}"),
    "qualify without when": VALID_BASE.replace('when: "score >= 10", ', ""),
    "reserved signal name": VALID_BASE.replace("  t: {trait: plan}", "  score: {trait: plan}"),
    "segment name not an identifier": VALID_BASE.replace("  s: ", "  my-seg: ").replace(
        '"s and', '"pql and'
    ),
    "segment mapping without when": VALID_BASE.replace(
        '{when: "s and a > 2", description: "x"}', '{description: "x"}'
    ),
    "signals empty": VALID_BASE.split("signals:")[0] + 'signals: {}\nqualify: {when: "1 > 0"}\n',
}


@pytest.mark.parametrize("text", INVALID.values(), ids=list(INVALID))
def test_invalid_models_rejected_by_schema_and_loader(
    validator: Draft202012Validator, text: str
) -> None:
    assert errors(validator, text), "schema accepted an invalid model"
    assert check_model(text), "loader accepted an invalid model"


def test_schema_and_loader_agree_on_signal_kinds(validator: Draft202012Validator) -> None:
    from streams.model.spec import SignalKind

    schema = json.loads(SCHEMA_PATH.read_text())
    titles = {alt["title"] for alt in schema["$defs"]["signal"]["oneOf"]}
    assert titles == {kind.value for kind in SignalKind}


def test_loader_rejects_what_only_it_can_see(validator: Draft202012Validator) -> None:
    # Names read by expressions are beyond JSON Schema: the loader is the authority.
    text = textwrap.dedent(VALID_BASE).replace('"a >= 1"', '"mesages >= 1"')
    assert errors(validator, text) == []
    assert [i.field for i in check_model(text)] == ["score[0].when"]
