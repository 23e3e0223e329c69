"""Expression language: syntax, precedence, None semantics, errors, and a reference property."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.model.expr import ExprSyntaxError, parse_condition, parse_expr


def ev(text: str, env: Mapping[str, Any] | None = None) -> Any:
    return parse_expr(text).fn(env or {})


# --- literals and names --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("42", 42),
        ("-7", -7),
        ("2.5", 2.5),
        ("-0.5", -0.5),
        (".5", 0.5),
        ("1e3", 1000.0),
    ],
)
def test_numbers(text: str, value: Any) -> None:
    result = ev(text)
    assert result == value and type(result) is type(value)


def test_strings_both_quotes_and_escapes() -> None:
    assert ev("'finance'") == "finance"
    assert ev('"finance"') == "finance"
    assert ev(r"'it\'s'") == "it's"
    assert ev(r'"say \"hi\""') == 'say "hi"'


def test_true_false_null() -> None:
    assert ev("true") is True
    assert ev("false") is False
    assert ev("null") is None


def test_names_read_with_get_and_missing_is_none() -> None:
    assert ev("messages", {"messages": 12}) == 12
    assert ev("messages", {}) is None


def test_dotted_names_read_nested_properties() -> None:
    env = {"plan": {"tier": {"name": "pro"}}, "flat": 3}
    assert ev("plan.tier.name == 'pro'", env) is True
    assert ev("plan.missing.name", env) is None
    assert ev("flat.x", env) is None  # not a mapping: None, never an AttributeError
    assert parse_expr("plan.tier.name == 'pro'").names == frozenset({"plan.tier.name"})


def test_names_lists_every_identifier() -> None:
    e = parse_expr("onboarded and score < 60 and active_days >= 1 or x in [1]")
    assert e.names == frozenset({"onboarded", "score", "active_days", "x"})
    assert e.source == "onboarded and score < 60 and active_days >= 1 or x in [1]"


# --- precedence ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("1 + 2 * 3", {}, 7),
        ("(1 + 2) * 3", {}, 9),
        ("10 - 2 - 3", {}, 5),  # left associative
        ("12 / 2 / 3", {}, 2.0),
        ("2 - -3", {}, 5),
        ("-2 * 3", {}, -6),
        ("-x", {"x": 4}, -4),
        ("1 + 2 >= 3", {}, True),  # arithmetic binds tighter than comparison
        # not binds looser than comparison (as in Python / SQL): not (a >= 5)
        ("not a >= 5", {"a": 3}, True),
        ("not a >= 5", {"a": 7}, False),
        # ... and tighter than and/or
        ("not a and b", {"a": 0, "b": 1}, True),
        ("not a and b", {"a": 1, "b": 1}, False),
        # and binds tighter than or
        ("a or b and c", {"a": 1, "b": 0, "c": 0}, True),
        ("(a or b) and c", {"a": 1, "b": 0, "c": 0}, False),
        ("a and b or c", {"a": 0, "b": 1, "c": 1}, True),
        ("not not a", {"a": 2}, True),
    ],
)
def test_precedence(text: str, env: dict[str, Any], expected: Any) -> None:
    assert ev(text, env) == expected


# --- None and mixed types ------------------------------------------------------------------


@pytest.mark.parametrize("op", ["<", "<=", ">", ">="])
def test_ordering_with_none_or_mixed_types_is_false(op: str) -> None:
    assert ev(f"missing {op} 5") is False
    assert ev(f"5 {op} missing") is False
    assert ev(f"a {op} b", {}) is False
    assert ev(f"a {op} 5", {"a": "x"}) is False
    assert ev(f"a {op} 'x'", {"a": 5}) is False
    assert ev(f"a {op} null", {"a": 5}) is False
    assert ev(f"a {op} b", {"a": {"k": 1}, "b": {"k": 2}}) is False


def test_ordering_between_strings_and_numbers_works() -> None:
    assert ev("'a' < 'b'") is True
    assert ev("a >= 'm'", {"a": "z"}) is True
    assert ev("a > b", {"a": 2, "b": 1.5}) is True
    assert ev("3 > a", {"a": 4}) is False  # constant on the left is flipped correctly


def test_equality_compares_normally() -> None:
    assert ev("missing == null") is True
    assert ev("missing != null") is False
    assert ev("missing != 1") is True
    assert ev("a == '5'", {"a": 5}) is False
    assert ev("a == 5.0", {"a": 5}) is True
    assert ev("industry == 'finance'", {"industry": "finance"}) is True


def test_arithmetic_on_none_or_non_numbers_is_none() -> None:
    assert ev("x + 1") is None
    assert ev("1 - x") is None
    assert ev("x * 2", {"x": "ab"}) is None  # no string repetition
    assert ev("x + 'b'", {"x": "a"}) is None  # no string concatenation
    assert ev("-x", {"x": "a"}) is None


def test_division_by_zero_is_none_and_comparison_false() -> None:
    assert ev("messages / seats", {"messages": 10, "seats": 0}) is None
    assert ev("messages / seats >= 10", {"messages": 100, "seats": 0}) is False
    assert ev("messages / seats >= 10", {"messages": 100, "seats": 5}) is True
    assert ev("1 / 0") is None


def test_boolean_operators_return_bools() -> None:
    assert ev("a and b", {"a": 5, "b": "x"}) is True
    assert ev("a and b", {"a": 5, "b": ""}) is False
    assert ev("a or b", {"a": 0, "b": ""}) is False
    assert ev("a or b", {"a": 0, "b": [1]}) is True
    assert ev("not a", {"a": None}) is True
    assert ev("a and b and c and d", {"a": 1, "b": 1, "c": 1, "d": 1}) is True
    assert ev("a and b and c and d", {"a": 1, "b": 1, "c": 1, "d": 0}) is False
    assert ev("a or b or c or d", {"d": 1}) is True
    assert ev("a or b or c or d", {}) is False


def test_and_or_short_circuit() -> None:
    calls: list[str] = []

    class Env(dict[str, Any]):
        def get(self, key: str, default: Any = None) -> Any:
            calls.append(key)
            return super().get(key, default)

    assert parse_expr("a and b").fn(Env(a=0, b=1)) is False
    assert parse_expr("a or b").fn(Env(a=1, b=0)) is True
    assert calls == ["a", "a"]


# --- in / not in ---------------------------------------------------------------------------


def test_in_and_not_in() -> None:
    e = parse_expr("industry in ['finance', 'software']")
    assert e.fn({"industry": "finance"}) is True
    assert e.fn({"industry": "retail"}) is False
    assert e.fn({}) is False
    n = parse_expr("industry not in ['finance', 'software']")
    assert n.fn({"industry": "retail"}) is True
    assert n.fn({"industry": "software"}) is False
    assert n.fn({}) is True
    assert ev("x in [1, -2, 3.5]", {"x": -2}) is True
    assert ev("x in [null]", {}) is True
    assert ev("x in [true]", {"x": True}) is True
    assert ev("x in []", {"x": 1}) is False
    assert ev("x in [1, 2,]", {"x": 2}) is True  # trailing comma allowed


def test_in_with_unhashable_value_never_raises() -> None:
    assert ev("tags in ['a']", {"tags": ["a"]}) is False
    assert ev("tags not in ['a']", {"tags": {"a": 1}}) is True


def test_not_in_versus_not_of_in() -> None:
    assert ev("not x in [1]", {"x": 1}) is False
    assert ev("x not in [1] and y", {"x": 2, "y": 1}) is True


# --- constants are folded but still correct ------------------------------------------------


def test_constant_subexpressions() -> None:
    assert ev("2 * 3 + x", {"x": 1}) == 7
    assert ev("x >= 2 * 3", {"x": 6}) is True
    assert ev("true and false or true") is True


# --- syntax errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("(a >= 1 and b", "expected ')' at column 14"),
        ("", "empty expression at column 1"),
        ("   ", "empty expression at column 1"),
        ("a >=", "expected a name, number, string or '(' but found end of expression at column 5"),
        ("a = 1", "unexpected '=' (use '==' to compare) at column 3"),
        ("a && b", "unexpected '&&' (use 'and') at column 3"),
        ("a || b", "unexpected '||' (use 'or') at column 3"),
        ("!a", "unexpected '!' (use 'not') at column 1"),
        ("a < b < c", "comparisons cannot be chained; join them with 'and' before '<' at column 7"),
        ("a in 1", "expected '[' after 'in' but found number 1 at column 6"),
        (
            "a in [b]",
            "lists may only hold numbers, strings, true, false or null; found name 'b' at column 7",
        ),
        ("a in [1 2]", "expected ',' or ']' but found number 2 at column 9"),
        ("'abc", "unterminated string at column 1"),
        ("a b", "unexpected name 'b' (expected an operator or the end) at column 3"),
        ("f(1)", "unexpected '(' (expected an operator or the end) at column 2"),
        ("a.", "expected a name after '.' at column 3"),
        ("5x", "unexpected 'x' after number 5 at column 2"),
        ("a % 2", "unexpected character '%' at column 3"),
        ("a and", "expected a name, number, string or '(' but found end of expression at column 6"),
        ("x in [-a]", "expected a number after '-' at column 8"),
    ],
)
def test_syntax_errors_have_column_and_message(text: str, message: str) -> None:
    with pytest.raises(ExprSyntaxError) as info:
        parse_expr(text)
    assert str(info.value) == message
    assert info.value.column == int(message.rsplit(" ", 1)[1])


def test_non_string_is_a_syntax_error() -> None:
    with pytest.raises(ExprSyntaxError, match="expected an expression string"):
        parse_expr(5)  # type: ignore[arg-type]


def test_module_never_uses_python_eval() -> None:
    # The source, also when the compiled core is running (its __file__ is the extension).
    source = (Path(__file__).resolve().parents[3] / "streams" / "model" / "expr.py").read_text()
    assert not re.search(r"(?<![\w.])(eval|exec|compile)\(", source)


# --- property: compiled closures agree with a reference evaluator --------------------------

NAMES = ("a", "b", "c")
PREC = {"or": 1, "and": 2, "not": 3, "cmp": 4, "in": 4, "+": 5, "-": 5, "*": 6, "/": 6}


def _num_tree() -> st.SearchStrategy[tuple[Any, ...]]:
    leaves = st.one_of(
        st.integers(-20, 20).map(lambda v: ("num", v)),
        st.sampled_from(NAMES).map(lambda n: ("name", n)),
    )
    return st.recursive(
        leaves,
        lambda kids: st.tuples(st.just("arith"), st.sampled_from("+-*/"), kids, kids),
        max_leaves=8,
    )


def _bool_tree() -> st.SearchStrategy[tuple[Any, ...]]:
    nums = _num_tree()
    atoms = st.one_of(
        st.tuples(st.just("cmp"), st.sampled_from(["<", "<=", ">", ">=", "==", "!="]), nums, nums),
        st.tuples(st.just("in"), nums, st.lists(st.integers(-5, 5), max_size=3), st.booleans()),
    )
    return st.recursive(
        atoms,
        lambda kids: st.one_of(
            st.tuples(st.just("not"), kids),
            st.tuples(st.sampled_from(["and", "or"]), kids, kids),
        ),
        max_leaves=6,
    )


def _prec(node: tuple[Any, ...]) -> int:
    kind = node[0]
    if kind in ("num", "name"):
        return 9
    if kind == "arith":
        return PREC[node[1]]
    return PREC[kind]


def _render(node: tuple[Any, ...]) -> str:
    """Render with only the parentheses precedence requires, so parsing is really tested."""
    kind = node[0]
    if kind == "num":
        return str(node[1])
    if kind == "name":
        return str(node[1])

    def wrap(child: tuple[Any, ...], need: bool) -> str:
        return f"({_render(child)})" if need else _render(child)

    if kind == "arith":
        p = PREC[node[1]]
        left = wrap(node[2], _prec(node[2]) < p)
        right = wrap(node[3], _prec(node[3]) <= p)
        return f"{left} {node[1]} {right}"
    if kind == "cmp":
        return f"{_render(node[2])} {node[1]} {_render(node[3])}"
    if kind == "in":
        op = "not in" if node[3] else "in"
        return f"{_render(node[1])} {op} [{', '.join(map(str, node[2]))}]"
    if kind == "not":
        return f"not {wrap(node[1], _prec(node[1]) < PREC['not'])}"
    p = PREC[kind]
    return f"{wrap(node[1], _prec(node[1]) < p)} {kind} {wrap(node[2], _prec(node[2]) <= p)}"


def _reference(node: tuple[Any, ...], env: Mapping[str, Any]) -> Any:
    kind = node[0]
    if kind == "num":
        return node[1]
    if kind == "name":
        return env.get(node[1])
    if kind == "arith":
        a, b = _reference(node[2], env), _reference(node[3], env)
        if a is None or b is None:
            return None
        op = node[1]
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        return None if b == 0 else a / b
    if kind == "cmp":
        a, b = _reference(node[2], env), _reference(node[3], env)
        op = node[1]
        if op == "==":
            return a == b
        if op == "!=":
            return a != b
        if a is None or b is None:
            return False
        return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
    if kind == "in":
        member = _reference(node[1], env) in set(node[2])
        return not member if node[3] else member
    if kind == "not":
        return not _reference(node[1], env)
    if kind == "and":
        return bool(_reference(node[1], env)) and bool(_reference(node[2], env))
    return bool(_reference(node[1], env)) or bool(_reference(node[2], env))


ENVS = st.fixed_dictionaries({n: st.one_of(st.none(), st.integers(-20, 20)) for n in NAMES})


@settings(max_examples=400, deadline=None)
@given(tree=_num_tree(), env=ENVS)
def test_arithmetic_agrees_with_reference(tree: tuple[Any, ...], env: dict[str, Any]) -> None:
    assert ev(_render(tree), env) == _reference(tree, env)


@settings(max_examples=400, deadline=None)
@given(tree=_bool_tree(), env=ENVS)
def test_boolean_expressions_agree_with_reference(
    tree: tuple[Any, ...], env: dict[str, Any]
) -> None:
    result = ev(_render(tree), env)
    assert result is _reference(tree, env)


def test_conditions_always_return_bools() -> None:
    assert parse_condition("onboarded").fn({"onboarded": 1}) is True
    assert parse_condition("onboarded").fn({}) is False
    assert parse_condition("a + 1").fn({"a": -1}) is False
    assert parse_condition("1").fn({}) is True
    assert parse_condition("null").fn({}) is False
    assert parse_condition("a >= 1").fn({"a": 1}) is True
    assert parse_expr("onboarded").fn({"onboarded": 1}) == 1  # plain expressions keep values
