"""Every kind of model error, with its exact line, field and message."""

from __future__ import annotations

import textwrap

import pytest

from streams.model.errors import ModelError, ModelIssue
from streams.model.loader import check_model, parse_model

HEADER = """\
name: m
version: 1
"""
# A model body is appended after HEADER, so its first line is line 3.
SIGNALS = """\
signals:
  messages: {count: "Message Sent", window: 30d}
"""
QUALIFY = 'qualify: {when: "messages >= 1"}\n'


def issues(text: str) -> list[tuple[int, str, str]]:
    return [(i.line, i.field, i.message) for i in check_model(textwrap.dedent(text))]


def one(text: str) -> tuple[int, str, str]:
    found = issues(text)
    assert len(found) == 1, found
    return found[0]


def test_valid_model_has_no_issues() -> None:
    assert issues(HEADER + SIGNALS + QUALIFY) == []


# --- YAML level ----------------------------------------------------------------------------


def test_yaml_syntax_error_has_line() -> None:
    line, field, message = one(HEADER + "signals: {a: [\n" + QUALIFY)
    # PyYAML notices the unclosed list at the end of the file; the message points at line 3.
    assert (line, field) == (5, "yaml")
    assert message.startswith("invalid YAML: while parsing a flow sequence")
    assert message.endswith("(the construct started on line 3)")


def test_bad_indentation_is_a_yaml_issue() -> None:
    line, field, _ = one(HEADER + "signals:\n  a: {count: A}\n b: 1\n")
    assert (line, field) == (5, "yaml")


def test_empty_file() -> None:
    assert one("") == (1, "model", "the model is empty; expected name, version, signals, qualify")
    assert one("# only a comment\n")[1] == "model"


def test_top_level_not_a_mapping() -> None:
    assert one("- a\n- b\n") == (
        1,
        "model",
        "expected a mapping with name, version, signals, score and qualify",
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            HEADER + "name: other\n" + SIGNALS + QUALIFY,
            (3, "name", "duplicate key 'name' (first defined on line 1)"),
        ),
        (
            HEADER + SIGNALS + '  messages: {count: "X"}\n' + QUALIFY,
            (5, "signals.messages", "duplicate key 'messages' (first defined on line 4)"),
        ),
        (
            HEADER
            + 'signals:\n  a: {count: "A", window: 1d, window: 2d}\n'
            + 'qualify: {when: "a >= 1"}\n',
            (4, "signals.a.window", "duplicate key 'window' (first defined on line 4)"),
        ),
        (
            HEADER + SIGNALS + QUALIFY + 'segments:\n  s: "messages > 1"\n  s: "pql"\n',
            (8, "segments.s", "duplicate key 's' (first defined on line 7)"),
        ),
    ],
)
def test_duplicate_keys(text: str, expected: tuple[int, str, str]) -> None:
    assert one(text) == expected


def test_merge_keys_are_refused() -> None:
    text = HEADER + "base: &b {window: 30d}\n"  # unknown key too
    found = issues(text + 'signals:\n  a: {<<: *b, count: "A"}\n' + 'qualify: {when: "a > 1"}\n')
    assert (5, "signals.a", "YAML merge keys ('<<') are not supported; write keys out") in found


# --- header --------------------------------------------------------------------------------


def test_required_top_level_keys() -> None:
    assert issues("description: nothing else\n") == [
        (1, "name", "'name' is required"),
        (1, "version", "'version' is required"),
        (1, "signals", "'signals' is required"),
        (1, "qualify", "'qualify' is required"),
    ]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("name: m\nversion: '1'\n", (2, "version", "version must be a whole number, got '1'")),
        ("name: m\nversion: 1.5\n", (2, "version", "version must be a whole number, got 1.5")),
        ("name: m\nversion: true\n", (2, "version", "version must be a whole number, got True")),
        ("name: m\nversion: -1\n", (2, "version", "version must be a whole number, got -1")),
        ("name: 5\nversion: 1\n", (1, "name", "expected a model name, got 5")),
        (
            "name: my model\nversion: 1\n",
            (1, "name", "name 'my model' must use only letters, digits, '-', '_' and '.'"),
        ),
    ],
)
def test_header_types(header: str, expected: tuple[int, str, str]) -> None:
    assert one(header + SIGNALS + QUALIFY) == expected


def test_unknown_top_level_key_suggests() -> None:
    assert one(HEADER + SIGNALS + QUALIFY + "segmnts: {}\n") == (
        6,
        "segmnts",
        "unknown key 'segmnts' (did you mean 'segments'?)",
    )
    assert one(HEADER + SIGNALS + QUALIFY + "zzz: 1\n") == (6, "zzz", "unknown key 'zzz'")


# --- signals -------------------------------------------------------------------------------


def sig(line: str) -> str:
    """A model whose only signal (line 4) is `a: <line>`."""
    return HEADER + f"signals:\n  a: {line}\n" + 'qualify: {when: "a >= 1"}\n'


@pytest.mark.parametrize(
    ("signal", "expected"),
    [
        (
            '{count: "A", windw: 30d}',
            (4, "signals.a.windw", "unknown key 'windw' (did you mean 'window'?)"),
        ),
        (
            "{window: 30d}",
            (
                4,
                "signals.a",
                "a signal needs one of: count, sum, distinct_users, active_days, "
                "ever, trait, users_with_trait",
            ),
        ),
        (
            '{count: "A", sum: "B", property: x}',
            (4, "signals.a.sum", "a signal has exactly one kind, but found 'count' and 'sum'"),
        ),
        (
            '{count: "A", window: 30}',
            (4, "signals.a.window", "expected a duration like '30d' (units s, m, h, d, w), got 30"),
        ),
        (
            '{count: "A", window: 3 days}',
            (
                4,
                "signals.a.window",
                "invalid duration '3 days': expected a whole number and a "
                "unit, like '45s', '15m', '12h', '30d' or '2w'",
            ),
        ),
        (
            '{ever: "A", window: 30d}',
            (4, "signals.a.window", "'window' is not allowed on ever signals: they never expire"),
        ),
        (
            "{trait: plan, window: 30d}",
            (
                4,
                "signals.a.window",
                "'window' is not allowed on trait signals: they hold the latest value",
            ),
        ),
        (
            "{users_with_trait: title, window: 30d}",
            (
                4,
                "signals.a.window",
                "'window' is not allowed on users_with_trait signals: they "
                "count users by their latest trait",
            ),
        ),
        (
            '{sum: "A", window: 30d}',
            (
                4,
                "signals.a.property",
                "sum signals need 'property': the numeric event property to add up",
            ),
        ),
        (
            '{count: "A", property: x}',
            (4, "signals.a.property", "'property' only applies to sum signals"),
        ),
        (
            '{trait: plan, where: "x > 1"}',
            (
                4,
                "signals.a.where",
                "'where' only applies to event signals (count, sum, "
                "distinct_users, active_days, ever)",
            ),
        ),
        (
            '{count: "A", in: [1]}',
            (4, "signals.a.in", "'in' only applies to users_with_trait signals"),
        ),
        (
            '{users_with_trait: title, in: "VP"}',
            (4, "signals.a.in", 'expected a non-empty list of trait values, like ["VP Sales"]'),
        ),
        (
            "{users_with_trait: title, in: []}",
            (4, "signals.a.in", 'expected a non-empty list of trait values, like ["VP Sales"]'),
        ),
        (
            "{users_with_trait: title, in: [[1]]}",
            (4, "signals.a.in[0]", "expected a single value, got a list"),
        ),
        (
            "{count: 5}",
            (
                4,
                "signals.a.count",
                "expected an event name, 'any', or a list of event names, got 5",
            ),
        ),
        (
            "{count: []}",
            (
                4,
                "signals.a.count",
                "expected an event name, 'any', or a list of event names; the list is empty",
            ),
        ),
        (
            '{count: ["A", any]}',
            (4, "signals.a.count[1]", "'any' cannot be mixed with event names"),
        ),
        (
            "{count: {a: 1}}",
            (4, "signals.a.count", "expected an event name, 'any', or a list of event names"),
        ),
        (
            '{trait: ""}',
            (4, "signals.a.trait", "expected a trait name, got ''"),
        ),
        (
            '{count: "A", where: "(participants >= 5"}',
            (4, "signals.a.where", "expected ')' at column 19"),
        ),
        (
            '{count: "A", where: 5}',
            (4, "signals.a.where", "expected an expression string, got 5"),
        ),
        (
            "{active_days: any, window: 12h}",
            (4, "signals.a.window", "active_days needs a window of at least 1d, got 12h"),
        ),
        (
            "{active_days: any, window: 30d, bucket: 1h}",
            (
                4,
                "signals.a.bucket",
                "'bucket' is not allowed on active_days signals: they always use 1d buckets",
            ),
        ),
        (
            '{ever: "A", bucket: 1h}',
            (
                4,
                "signals.a.bucket",
                "'bucket' is only allowed on windowed count, sum and distinct_users signals",
            ),
        ),
        (
            '{count: "A", window: 1h, bucket: 2h}',
            (4, "signals.a.bucket", "bucket 2h is longer than the window 1h"),
        ),
        (
            '{count: "A", bucket: 1h}',
            (4, "signals.a.bucket", "'bucket' needs a 'window'"),
        ),
        (
            '"Message Sent"',
            (4, "signals.a", 'expected a mapping like {count: "Message Sent", window: 30d}'),
        ),
    ],
)
def test_signal_errors(signal: str, expected: tuple[int, str, str]) -> None:
    assert one(sig(signal)) == expected


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("score", "'score' is reserved and cannot name a signal"),
        ("pql", "'pql' is reserved and cannot name a signal"),
        ("and", "'and' is reserved and cannot name a signal"),
        (
            "big-meetings",
            "signal name 'big-meetings' must be an identifier (letters, digits, '_'; not "
            "starting with a digit) so expressions can read it",
        ),
    ],
)
def test_signal_names(name: str, message: str) -> None:
    text = HEADER + SIGNALS + f'  {name}: {{count: "A"}}\n' + QUALIFY
    assert one(text) == (5, f"signals.{name}", message)


def test_empty_signals() -> None:
    assert one(HEADER + "signals: {}\n" + 'qualify: {when: "1 > 0"}\n') == (
        3,
        "signals",
        "define at least one signal",
    )


def test_broken_signal_still_counts_as_known() -> None:
    # Only the definition is reported, not every use of the name.
    text = HEADER + 'signals:\n  a: {count: "A", window: 3x}\n' + 'qualify: {when: "a >= 1"}\n'
    assert [f for _, f, _ in issues(text)] == ["signals.a.window"]


# --- score rules ---------------------------------------------------------------------------


def rules(*lines: str) -> str:
    """A model whose score rules start on line 6."""
    body = "".join(f"  - {line}\n" for line in lines)
    return HEADER + SIGNALS + "score:\n" + body + QUALIFY


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (
            '{when: "mesages >= 5", points: 40}',
            (6, "score[0].when", "unknown signal 'mesages' (did you mean 'messages'?)"),
        ),
        (
            '{when: "score >= 5", points: 1}',
            (
                6,
                "score[0].when",
                "'score' cannot be used inside score rules: a rule cannot "
                "depend on the total it adds to",
            ),
        ),
        (
            '{when: "pql", points: 1}',
            (6, "score[0].when", "'pql' can only be used in segments"),
        ),
        (
            '{when: "messages >=", points: 1}',
            (
                6,
                "score[0].when",
                "expected a name, number, string or '(' but found end of expression at column 12",
            ),
        ),
        ('{when: "messages >= 1"}', (6, "score[0].points", "'points' is required")),
        (
            '{when: "messages >= 1", points: lots}',
            (6, "score[0].points", "points must be a number, got 'lots'"),
        ),
        (
            '{when: "messages >= 1", points: true}',
            (6, "score[0].points", "points must be a number, got True"),
        ),
        (
            '{when: "messages >= 1", points: 1, max: 3}',
            (6, "score[0].max", "'max' only applies to 'per' rules"),
        ),
        (
            '{when: "messages >= 1", points: 1, pionts: 3}',
            (6, "score[0].pionts", "unknown key 'pionts' (did you mean 'points'?)"),
        ),
        (
            "{points: 5}",
            (
                6,
                "score[0]",
                "a rule needs 'when' (points while a condition holds) or 'per' (graded points)",
            ),
        ),
        (
            '{when: "messages > 1", per: messages, points: 5}',
            (6, "score[0].per", "a rule has 'when' or 'per', not both"),
        ),
        (
            "{per: mesages, points: 5}",
            (6, "score[0].per", "unknown signal 'mesages' (did you mean 'messages'?)"),
        ),
        (
            "{per: messages, every: 0, points: 5}",
            (6, "score[0].every", "every must be greater than 0, got 0"),
        ),
        (
            "{per: messages, every: -2, points: 5}",
            (6, "score[0].every", "every must be greater than 0, got -2"),
        ),
        (
            "{per: messages, every: 10, points: 5, max: lots}",
            (6, "score[0].max", "max must be a number, got 'lots'"),
        ),
        ("{per: messages, every: 10}", (6, "score[0].points", "'points' is required")),
        (
            '{when: "messages > 1", points: 1, name: ""}',
            (6, "score[0].name", "expected a rule name, got ''"),
        ),
        (
            '"messages >= 5"',
            (6, "score[0]", 'expected a rule like {when: "messages >= 5", points: 40}'),
        ),
    ],
)
def test_rule_errors(rule: str, expected: tuple[int, str, str]) -> None:
    assert one(rules(rule)) == expected


def test_rule_index_and_line_for_later_rules() -> None:
    text = rules(
        '{when: "messages >= 1", points: 1}',
        '{when: "messages >= 2", points: 1}',
        '{when: "messages >= 3", points: 1}',
        "{per: messages, every: 0, points: 5, max: 40}",
    )
    assert one(text) == (9, "score[3].every", "every must be greater than 0, got 0")


def test_score_must_be_a_list() -> None:
    text = HEADER + SIGNALS + 'score: {when: "messages > 1", points: 1}\n' + QUALIFY
    assert one(text) == (5, "score", "expected a list of rules")


def test_score_rules_cannot_read_segments() -> None:
    text = rules('{when: "busy", points: 1}') + 'segments:\n  busy: "messages > 9"\n'
    assert one(text) == (
        6,
        "score[0].when",
        "'busy' is a segment; score rules cannot read segments (only later segments can)",
    )


# --- qualify -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("qualify", "expected"),
    [
        ('qualify: {exit: "score < 1"}\n', (5, "qualify.when", "'qualify.when' is required")),
        (
            'qualify: {when: "score >= 1", exti: "score < 1"}\n',
            (5, "qualify.exti", "unknown key 'exti' (did you mean 'exit'?)"),
        ),
        (
            'qualify: {when: "pql"}\n',
            (5, "qualify.when", "'pql' cannot be used in qualify: it is what qualify decides"),
        ),
        (
            'qualify: {when: "score >= 1", exit: "scor < 1"}\n',
            (5, "qualify.exit", "unknown signal 'scor' (did you mean 'score'?)"),
        ),
        ('qualify: "score >= 1"\n', (5, "qualify", 'expected a mapping like {when: "..."}')),
    ],
)
def test_qualify_errors(qualify: str, expected: tuple[int, str, str]) -> None:
    assert one(HEADER + SIGNALS + qualify) == expected


def test_qualify_cannot_read_segments() -> None:
    text = HEADER + SIGNALS + 'qualify: {when: "busy"}\n' + 'segments:\n  busy: "messages > 9"\n'
    assert one(text) == (
        5,
        "qualify.when",
        "'busy' is a segment; qualify cannot read segments (only later segments can)",
    )


def test_multiline_qualify_expression_reports_its_node_line() -> None:
    text = HEADER + SIGNALS + "qualify:\n  when: >-\n    messages >= 1\n    and nope\n"
    assert one(text) == (6, "qualify.when", "unknown signal 'nope'")


# --- segments ------------------------------------------------------------------------------


def segs(*lines: str) -> str:
    """A model whose segments start on line 7."""
    return HEADER + SIGNALS + QUALIFY + "segments:\n" + "".join(f"  {s}\n" for s in lines)


@pytest.mark.parametrize(
    ("segments", "expected"),
    [
        (
            ['later: "first"', 'first: "messages > 1"'],
            (
                7,
                "segments.later",
                "segment 'first' is defined below 'later'; a segment can "
                "only read segments above it",
            ),
        ),
        (['loop: "loop or pql"'], (7, "segments.loop", "segment 'loop' cannot read itself")),
        (
            ['messages: "pql"'],
            (7, "segments.messages", "segment 'messages' has the same name as a signal"),
        ),
        (['pql: "score > 1"'], (7, "segments.pql", "'pql' is reserved and cannot name a segment")),
        (
            ['buying: "pricng_views >= 1"'],
            (7, "segments.buying", "unknown signal 'pricng_views'"),
        ),
        (
            ['s: "mesages > 1"'],
            (7, "segments.s", "unknown signal 'mesages' (did you mean 'messages'?)"),
        ),
        (
            ['s: {description: "no condition"}'],
            (7, "segments.s.when", "'when' is required"),
        ),
        (
            ['s: {when: "pql", descripton: "x"}'],
            (7, "segments.s.descripton", "unknown key 'descripton' (did you mean 'description'?)"),
        ),
        (
            ['s: {when: "pql and ("}'],
            (
                7,
                "segments.s.when",
                "expected a name, number, string or '(' but found end of expression at column 10",
            ),
        ),
        (["s: 5"], (7, "segments.s", "expected an expression string, got 5")),
    ],
)
def test_segment_errors(segments: list[str], expected: tuple[int, str, str]) -> None:
    assert one(segs(*segments)) == expected


# --- all issues at once --------------------------------------------------------------------


def test_parse_model_raises_with_every_issue_in_line_order() -> None:
    text = (
        "name: m\n"
        "version: x\n"
        "signals:\n"
        '  a: {count: "A", window: 30q}\n'
        '  b: {sum: "B"}\n'
        "score:\n"
        '  - {when: "c > 1", points: 1}\n'
        'qualify: {when: "score >= (1"}\n'
    )
    with pytest.raises(ModelError) as info:
        parse_model(text, source="m.yaml")
    err = info.value
    assert [(i.line, i.field) for i in err.issues] == [
        (2, "version"),
        (4, "signals.a.window"),
        (5, "signals.b.property"),
        (7, "score[0].when"),
        (8, "qualify.when"),
    ]
    assert err.source == "m.yaml"
    assert str(err).splitlines()[0] == "2: version: version must be a whole number, got 'x'"
    assert all(isinstance(i, ModelIssue) for i in err.issues)
    assert check_model(text) == err.issues
