"""The expression language of PQL models: tokenizer, recursive-descent parser, closure compiler.

Expressions run on every event (`where` filters) and on every state change (score rules,
qualification, segments), so they are compiled once into nested Python closures specialised per
operator — no AST walking at run time and never `eval`/`exec`/`compile` of Python source.

Semantics, chosen so a model can never crash the stream processor:
  * names read from a Mapping with `.get` (missing -> None); `a.b` reads nested mappings;
  * ordering comparisons (`< <= > >=`) involving None, or mixing numbers and strings, are False;
  * `==` / `!=` compare normally (so `x == null` tests for a missing value);
  * arithmetic on anything but numbers, or division by zero, gives None;
  * `and` / `or` / `not` use Python truthiness and always return bools.

Precedence, loosest first: `or`, `and`, `not`, comparisons (`== != < <= > >= in`, `not in`; not
chainable), `+ -`, `* /`, unary `-`. As in Python and SQL, `not messages >= 5` means
`not (messages >= 5)`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from streams.model.spec import Compiled, Expr, Value

__all__ = ["ExprSyntaxError", "parse_expr", "parse_condition", "parse_ast", "tokenize", "KEYWORDS"]

KEYWORDS = frozenset({"and", "or", "not", "in", "true", "false", "null"})


class ExprSyntaxError(ValueError):
    """An expression that does not parse; `column` is 1-based within the expression text."""

    def __init__(self, message: str, column: int) -> None:
        self.message = message
        self.column = column
        super().__init__(f"{message} at column {column}")


# ---------------------------------------------------------------------------------------------
# Tokenizer


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # NUM STR NAME KW OP EOF ( ) [ ] ,
    value: Any
    col: int  # 1-based
    text: str  # as written, for messages


_NUMBER = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TWO_CHAR_OPS = frozenset({">=", "<=", "==", "!="})
_ONE_CHAR_OPS = frozenset({">", "<", "+", "-", "*", "/"})
_PUNCT = frozenset({"(", ")", "[", "]", ","})
_MISTAKES = {"=": "use '==' to compare", "&&": "use 'and'", "||": "use 'or'", "!": "use 'not'"}
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", "'": "'", '"': '"'}


def tokenize(text: str) -> list[Token]:
    """Split an expression into tokens, ending with an EOF token."""
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        col = i + 1
        if ch.isdigit() or (ch == "." and i + 1 < n and text[i + 1].isdigit()):
            m = _NUMBER.match(text, i)
            assert m is not None
            raw = m.group(0)
            is_float = any(c in raw for c in ".eE")
            tokens.append(Token("NUM", float(raw) if is_float else int(raw), col, raw))
            i = m.end()
            if i < n and (text[i].isalpha() or text[i] == "_"):
                raise ExprSyntaxError(f"unexpected '{text[i]}' after number {raw}", i + 1)
            continue
        if ch.isalpha() or ch == "_":
            parts: list[str] = []
            j = i
            while True:
                m = _NAME.match(text, j)
                if m is None:
                    raise ExprSyntaxError("expected a name after '.'", j + 1)
                parts.append(m.group(0))
                j = m.end()
                if j < n and text[j] == ".":
                    j += 1
                    continue
                break
            word = ".".join(parts)
            kind = "KW" if word in KEYWORDS else "NAME"
            tokens.append(Token(kind, word, col, word))
            i = j
            continue
        if ch in "'\"":
            value, i = _read_string(text, i)
            tokens.append(Token("STR", value, col, text[col - 1 : i]))
            continue
        pair = text[i : i + 2]
        if pair in _TWO_CHAR_OPS:
            tokens.append(Token("OP", pair, col, pair))
            i += 2
            continue
        if pair in _MISTAKES:
            raise ExprSyntaxError(f"unexpected '{pair}' ({_MISTAKES[pair]})", col)
        if ch in _ONE_CHAR_OPS:
            tokens.append(Token("OP", ch, col, ch))
            i += 1
            continue
        if ch in _PUNCT:
            tokens.append(Token(ch, ch, col, ch))
            i += 1
            continue
        if ch in _MISTAKES:
            raise ExprSyntaxError(f"unexpected '{ch}' ({_MISTAKES[ch]})", col)
        raise ExprSyntaxError(f"unexpected character '{ch}'", col)
    tokens.append(Token("EOF", None, n + 1, "end of expression"))
    return tokens


def _read_string(text: str, start: int) -> tuple[str, int]:
    quote = text[start]
    out: list[str] = []
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == quote:
            return "".join(out), i + 1
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            out.append(_ESCAPES.get(nxt, "\\" + nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    raise ExprSyntaxError("unterminated string", start + 1)


# ---------------------------------------------------------------------------------------------
# AST


@dataclass(frozen=True, slots=True)
class Const:
    value: Value


@dataclass(frozen=True, slots=True)
class Name:
    path: tuple[str, ...]  # ("a", "b") for `a.b`

    @property
    def text(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True, slots=True)
class Neg:
    operand: Node


@dataclass(frozen=True, slots=True)
class Arith:
    op: str  # + - * /
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Cmp:
    op: str  # == != < <= > >=
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class In:
    operand: Node
    values: tuple[Value, ...]
    negated: bool


@dataclass(frozen=True, slots=True)
class Not:
    operand: Node


@dataclass(frozen=True, slots=True)
class BoolOp:
    op: str  # and / or
    items: tuple[Node, ...]


Node = Const | Name | Neg | Arith | Cmp | In | Not | BoolOp

_CMP_OPS = frozenset({"==", "!=", "<", "<=", ">", ">="})


# ---------------------------------------------------------------------------------------------
# Parser


def _describe(tok: Token) -> str:
    if tok.kind == "EOF":
        return "end of expression"
    if tok.kind == "NAME":
        return f"name '{tok.text}'"
    if tok.kind == "NUM":
        return f"number {tok.text}"
    if tok.kind == "STR":
        return f"string {tok.text}"
    return f"'{tok.text}'"


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.pos = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.pos]

    def advance(self) -> Token:
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def at(self, kind: str, value: Any = None) -> bool:
        tok = self.tok
        return tok.kind == kind and (value is None or tok.value == value)

    def parse(self) -> Node:
        if self.at("EOF"):
            raise ExprSyntaxError("empty expression", 1)
        node = self.or_expr()
        if not self.at("EOF"):
            tok = self.tok
            raise ExprSyntaxError(
                f"unexpected {_describe(tok)} (expected an operator or the end)", tok.col
            )
        return node

    def or_expr(self) -> Node:
        items = [self.and_expr()]
        while self.at("KW", "or"):
            self.advance()
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else BoolOp("or", tuple(items))

    def and_expr(self) -> Node:
        items = [self.not_expr()]
        while self.at("KW", "and"):
            self.advance()
            items.append(self.not_expr())
        return items[0] if len(items) == 1 else BoolOp("and", tuple(items))

    def not_expr(self) -> Node:
        if self.at("KW", "not"):
            self.advance()
            return Not(self.not_expr())
        return self.comparison()

    def comparison(self) -> Node:
        left = self.additive()
        node: Node
        if self.tok.kind == "OP" and self.tok.value in _CMP_OPS:
            op = self.advance().value
            node = Cmp(op, left, self.additive())
        elif self.at("KW", "in"):
            self.advance()
            node = In(left, self.literal_list(), negated=False)
        elif self.at("KW", "not") and self.tokens[self.pos + 1].value == "in":
            self.advance()
            self.advance()
            node = In(left, self.literal_list(), negated=True)
        else:
            return left
        tok = self.tok
        if (tok.kind == "OP" and tok.value in _CMP_OPS) or (tok.kind == "KW" and tok.value == "in"):
            raise ExprSyntaxError(
                f"comparisons cannot be chained; join them with 'and' before '{tok.text}'",
                tok.col,
            )
        return node

    def additive(self) -> Node:
        node = self.multiplicative()
        while self.tok.kind == "OP" and self.tok.value in ("+", "-"):
            op = self.advance().value
            node = Arith(op, node, self.multiplicative())
        return node

    def multiplicative(self) -> Node:
        node = self.unary()
        while self.tok.kind == "OP" and self.tok.value in ("*", "/"):
            op = self.advance().value
            node = Arith(op, node, self.unary())
        return node

    def unary(self) -> Node:
        if self.at("OP", "-"):
            self.advance()
            operand = self.unary()
            if isinstance(operand, Const) and _is_number(operand.value):
                return Const(-operand.value)  # type: ignore[operator]
            return Neg(operand)
        return self.primary()

    def primary(self) -> Node:
        tok = self.tok
        if tok.kind in ("NUM", "STR"):
            self.advance()
            return Const(tok.value)
        if tok.kind == "KW" and tok.value in ("true", "false", "null"):
            self.advance()
            return Const({"true": True, "false": False, "null": None}[tok.value])
        if tok.kind == "NAME":
            self.advance()
            return Name(tuple(tok.value.split(".")))
        if tok.kind == "(":
            self.advance()
            node = self.or_expr()
            if not self.at(")"):
                raise ExprSyntaxError("expected ')'", self.tok.col)
            self.advance()
            return node
        raise ExprSyntaxError(
            f"expected a name, number, string or '(' but found {_describe(tok)}", tok.col
        )

    def literal_list(self) -> tuple[Value, ...]:
        if not self.at("["):
            raise ExprSyntaxError(
                f"expected '[' after 'in' but found {_describe(self.tok)}", self.tok.col
            )
        self.advance()
        values: list[Value] = []
        while not self.at("]"):
            values.append(self.literal())
            if self.at(","):
                self.advance()
            elif not self.at("]"):
                raise ExprSyntaxError(
                    f"expected ',' or ']' but found {_describe(self.tok)}", self.tok.col
                )
        self.advance()
        return tuple(values)

    def literal(self) -> Value:
        tok = self.tok
        sign = 1
        if tok.kind == "OP" and tok.value == "-":
            self.advance()
            sign = -1
            if not self.at("NUM"):
                raise ExprSyntaxError("expected a number after '-'", self.tok.col)
            tok = self.tok
        if tok.kind == "NUM":
            self.advance()
            return sign * tok.value  # type: ignore[no-any-return]
        if tok.kind == "STR":
            self.advance()
            return tok.value  # type: ignore[no-any-return]
        if tok.kind == "KW" and tok.value in ("true", "false", "null"):
            self.advance()
            return {"true": True, "false": False, "null": None}[tok.value]
        raise ExprSyntaxError(
            f"lists may only hold numbers, strings, true, false or null; found {_describe(tok)}",
            tok.col,
        )


def parse_ast(text: str) -> Node:
    """Parse expression text into an AST (raises ExprSyntaxError)."""
    return _Parser(text).parse()


# ---------------------------------------------------------------------------------------------
# Compiler: AST -> nested closures, specialised per operator and per operand shape.

_NUMBER_TYPES = (int, float, bool)


def _is_number(value: object) -> bool:
    return type(value) in _NUMBER_TYPES


def _names(node: Node, out: set[str]) -> None:
    if isinstance(node, Name):
        out.add(node.text)
    elif isinstance(node, (Neg, Not)):
        _names(node.operand, out)
    elif isinstance(node, (Arith, Cmp)):
        _names(node.left, out)
        _names(node.right, out)
    elif isinstance(node, In):
        _names(node.operand, out)
    elif isinstance(node, BoolOp):
        for item in node.items:
            _names(item, out)


def _const_fn(value: Any) -> Compiled:
    def const(env: Mapping[str, Any]) -> Any:
        return value

    return const


def _name_fn(path: tuple[str, ...]) -> Compiled:
    key = path[0]
    if len(path) == 1:

        def name(env: Mapping[str, Any]) -> Any:
            return env.get(key)

        return name
    rest = path[1:]

    def dotted(env: Mapping[str, Any]) -> Any:
        value = env.get(key)
        for part in rest:
            if type(value) is dict or isinstance(value, Mapping):
                value = value.get(part)
            else:
                return None
        return value

    return dotted


def _neg_fn(f: Compiled) -> Compiled:
    def neg(env: Mapping[str, Any]) -> Any:
        v = f(env)
        return -v if type(v) in _NUMBER_TYPES else None

    return neg


def _arith_fn(op: str, f: Compiled, g: Compiled) -> Compiled:
    nums = _NUMBER_TYPES
    if op == "+":

        def add(env: Mapping[str, Any]) -> Any:
            a = f(env)
            b = g(env)
            return a + b if type(a) in nums and type(b) in nums else None

        return add
    if op == "-":

        def sub(env: Mapping[str, Any]) -> Any:
            a = f(env)
            b = g(env)
            return a - b if type(a) in nums and type(b) in nums else None

        return sub
    if op == "*":

        def mul(env: Mapping[str, Any]) -> Any:
            a = f(env)
            b = g(env)
            return a * b if type(a) in nums and type(b) in nums else None

        return mul
    if op == "/":

        def div(env: Mapping[str, Any]) -> Any:
            a = f(env)
            b = g(env)
            if type(a) in nums and type(b) in nums and b != 0:
                return a / b
            return None

        return div
    raise AssertionError(op)


_FLIPPED = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}


def _cmp_fn(op: str, f: Compiled, g: Compiled) -> Compiled:
    """General comparison: both sides computed."""
    if op == "==":

        def eq(env: Mapping[str, Any]) -> bool:
            return f(env) == g(env)

        return eq
    if op == "!=":

        def ne(env: Mapping[str, Any]) -> bool:
            return f(env) != g(env)

        return ne
    if op == ">=":

        def ge(env: Mapping[str, Any]) -> bool:
            try:
                return f(env) >= g(env)
            except TypeError:
                return False

        return ge
    if op == ">":

        def gt(env: Mapping[str, Any]) -> bool:
            try:
                return f(env) > g(env)
            except TypeError:
                return False

        return gt
    if op == "<=":

        def le(env: Mapping[str, Any]) -> bool:
            try:
                return f(env) <= g(env)
            except TypeError:
                return False

        return le
    if op == "<":

        def lt(env: Mapping[str, Any]) -> bool:
            try:
                return f(env) < g(env)
            except TypeError:
                return False

        return lt
    raise AssertionError(op)


def _cmp_name_const_fn(op: str, key: str, c: Any) -> Compiled:
    """`name OP constant`, the hot shape (`messages >= 5`): one dict lookup, one compare."""
    if op == "==":

        def eq(env: Mapping[str, Any]) -> bool:
            return env.get(key) == c

        return eq
    if op == "!=":

        def ne(env: Mapping[str, Any]) -> bool:
            return env.get(key) != c

        return ne
    if c is None:  # ordering against null is always False
        return _const_fn(False)
    if op == ">=":

        def ge(env: Mapping[str, Any]) -> bool:
            try:
                return env.get(key) >= c
            except TypeError:
                return False

        return ge
    if op == ">":

        def gt(env: Mapping[str, Any]) -> bool:
            try:
                return env.get(key) > c
            except TypeError:
                return False

        return gt
    if op == "<=":

        def le(env: Mapping[str, Any]) -> bool:
            try:
                return env.get(key) <= c
            except TypeError:
                return False

        return le
    if op == "<":

        def lt(env: Mapping[str, Any]) -> bool:
            try:
                return env.get(key) < c
            except TypeError:
                return False

        return lt
    raise AssertionError(op)


def _in_fn(f: Compiled, values: tuple[Value, ...], negated: bool) -> Compiled:
    members = frozenset(values)
    if negated:

        def not_in(env: Mapping[str, Any]) -> bool:
            try:
                return f(env) not in members
            except TypeError:  # unhashable (a list or object property): certainly not a member
                return True

        return not_in

    def is_in(env: Mapping[str, Any]) -> bool:
        try:
            return f(env) in members
        except TypeError:
            return False

    return is_in


def _not_fn(f: Compiled) -> Compiled:
    def not_(env: Mapping[str, Any]) -> bool:
        return not f(env)

    return not_


def _and_fn(fns: list[Compiled]) -> Compiled:
    if len(fns) == 2:
        a, b = fns

        def and2(env: Mapping[str, Any]) -> bool:
            return not (not a(env) or not b(env))

        return and2
    if len(fns) == 3:
        a, b, c = fns

        def and3(env: Mapping[str, Any]) -> bool:
            return not (not a(env) or not b(env) or not c(env))

        return and3
    # Longer chains nest: a and (b and (c and ...)), keeping every call specialised.
    return _and_fn([fns[0], _and_fn(fns[1:])])


def _or_fn(fns: list[Compiled]) -> Compiled:
    if len(fns) == 2:
        a, b = fns

        def or2(env: Mapping[str, Any]) -> bool:
            return not (not a(env) and not b(env))

        return or2
    return _or_fn([fns[0], _or_fn(fns[1:])])


_EMPTY: Mapping[str, Any] = {}


def _compile(node: Node) -> tuple[Compiled, Node]:
    """Compile `node`; returns the closure and the node, folded to a Const when it is constant."""
    if isinstance(node, Const):
        return _const_fn(node.value), node
    if isinstance(node, Name):
        return _name_fn(node.path), node
    fn: Compiled
    children: list[Node]
    if isinstance(node, Neg):
        inner, folded = _compile(node.operand)
        fn, children = _neg_fn(inner), [folded]
    elif isinstance(node, Not):
        inner, folded = _compile(node.operand)
        fn, children = _not_fn(inner), [folded]
    elif isinstance(node, Arith):
        (f, lnode), (g, rnode) = _compile(node.left), _compile(node.right)
        fn, children = _arith_fn(node.op, f, g), [lnode, rnode]
    elif isinstance(node, Cmp):
        (f, lnode), (g, rnode) = _compile(node.left), _compile(node.right)
        children = [lnode, rnode]
        if isinstance(lnode, Name) and len(lnode.path) == 1 and isinstance(rnode, Const):
            fn = _cmp_name_const_fn(node.op, lnode.path[0], rnode.value)
        elif isinstance(rnode, Name) and len(rnode.path) == 1 and isinstance(lnode, Const):
            fn = _cmp_name_const_fn(_FLIPPED[node.op], rnode.path[0], lnode.value)
        else:
            fn = _cmp_fn(node.op, f, g)
    elif isinstance(node, In):
        inner, folded = _compile(node.operand)
        fn, children = _in_fn(inner, node.values, node.negated), [folded]
    elif isinstance(node, BoolOp):
        compiled = [_compile(item) for item in node.items]
        fns = [c[0] for c in compiled]
        children = [c[1] for c in compiled]
        fn = _and_fn(fns) if node.op == "and" else _or_fn(fns)
    else:  # pragma: no cover - exhaustive over Node
        raise AssertionError(node)
    if all(isinstance(child, Const) for child in children):
        value = fn(_EMPTY)
        return _const_fn(value), Const(value)
    return fn, node


def compile_ast(node: Node) -> Compiled:
    """Compile an AST into a closure reading a Mapping of names."""
    return _compile(node)[0]


def parse_expr(text: object) -> Expr:
    """Parse and compile `text`; raises ExprSyntaxError with the 1-based column of the problem."""
    if not isinstance(text, str):
        raise ExprSyntaxError(f"expected an expression string, got {type(text).__name__}", 1)
    node = parse_ast(text)
    names: set[str] = set()
    _names(node, names)
    return Expr(source=text, names=frozenset(names), fn=compile_ast(node))


def _truth_fn(f: Compiled) -> Compiled:
    def truth(env: Mapping[str, Any]) -> bool:
        return bool(f(env))

    return truth


def parse_condition(text: str) -> Expr:
    """Like parse_expr, but the closure always returns a bool (Python truthiness of the value).

    Used for `when`, `exit`, segments and `where`, so a bare signal name (`when: onboarded`)
    yields True/False rather than the count itself. Comparisons and boolean operators already
    return bools and are not wrapped again.
    """
    if not isinstance(text, str):
        raise ExprSyntaxError(f"expected an expression string, got {type(text).__name__}", 1)
    node = parse_ast(text)
    names: set[str] = set()
    _names(node, names)
    fn, folded = _compile(node)
    if isinstance(folded, Const):
        fn = _const_fn(bool(folded.value))
    elif not isinstance(folded, (Cmp, In, Not, BoolOp)):
        fn = _truth_fn(fn)
    return Expr(source=text, names=frozenset(names), fn=fn)
