"""The GitHub Actions expression evaluator of tests/helpers/gh_expressions.py, and every `if:`
of .github/workflows/ftci-pr.yml evaluated with it for a same-repository pull request.

Expected values follow GitHub's "Evaluate expressions in workflows and actions" page (its
examples are quoted where they exist) and the runner's behaviour where the page is silent.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.gh_expressions import ExpressionError, evaluate, evaluate_if, truthy

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = REPO_ROOT / ".github" / "workflows" / "ftci-pr.yml"

LABELS = [{"name": "bug", "color": "red"}, {"name": "Help Wanted"}, {"color": "blue"}]
CONTEXTS: dict[str, Any] = {
    "github": {
        "event_name": "pull_request",
        "repository": "acme/intents",
        "event": {"action": "labeled", "label": {"name": "ftci/safe-to-train"},
                  "pull_request": {"labels": LABELS, "number": 7,
                                   "head": {"repo": {"full_name": "fork/intents"}}}},
    },
    "inputs": {"count": 3, "flag": True, "empty": "", "labels": '["self-hosted", "gpu"]'},
    "fruits": [{"name": "apple", "quantity": 1}, {"name": "orange", "quantity": 2},
               {"name": "pear", "quantity": 1}],
    "matrix": {"os": "ubuntu", "versions": [[1, 2], [3], []]},
}


def ev(expression: str, **status: bool) -> Any:
    return evaluate(expression, CONTEXTS, status=status or None)


# Literals ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("expression", "expected"), [
    ("null", None), ("true", True), ("false", False),
    ("'Mona the Octocat'", "Mona the Octocat"), ("'It''s open source!'", "It's open source!"),
    ("''", ""), ("''''", "'"), ("'a \"b\" (c)'", 'a "b" (c)'), ("' x '", " x "),
])
def test_literals(expression: str, expected: Any) -> None:
    assert ev(expression) is expected or ev(expression) == expected


@pytest.mark.parametrize(("expression", "expected"), [
    ("711", 711), ("-9.2", -9.2), ("0xff", 255), ("-2.99e-2", -0.0299),  # the docs' examples
    ("1.", 1), (".5", 0.5), ("+3", 3), ("1E3", 1000), ("0o17", 15), ("0xffffffff", -1),
    ("0x100000000 == 0", None), ("Infinity", math.inf), ("-Infinity", -math.inf),
])
def test_number_literals(expression: str, expected: float | None) -> None:
    if expected is None:  # past Int32: not a number, so not a literal
        with pytest.raises(ExpressionError, match="unexpected '0x100000000'"):
            ev(expression)
    else:
        value = ev(expression)
        assert isinstance(value, float) and value == expected


def test_nan_literal() -> None:
    assert math.isnan(ev("NaN"))


@pytest.mark.parametrize("expression", ["True", "NULL", "FALSE"])
def test_literal_keywords_are_case_sensitive(expression: str) -> None:
    with pytest.raises(ExpressionError, match="unknown context"):
        ev(expression)


# Operators and precedence ------------------------------------------------------------------

@pytest.mark.parametrize(("expression", "expected"), [
    ("true || false && false", True),     # && binds tighter than ||
    ("(true || false) && false", False),  # ( ) groups
    ("false == false && false", False),   # == before &&
    ("false == (false && false)", True),
    ("1 < 2 == 2 < 3", True),             # < before ==
    ("1 < 2 == false", False),
    ("!false == true", True),             # ! before ==
    ("!(false == true)", True),
    ("!!'x'", True), ("!''", True), ("!github", False),
    ("!github.event.missing && 'yes'", "yes"),
    ("github.event.pull_request.labels[0].name == 'bug'", True),   # [ ] and . before ==
    ("!github.event.pull_request.labels[2].name", True),           # . before !
    ("1 <= 1 && 1 >= 1 && 1 < 2 && 2 > 1 && 1 != 2 && 1 == 1", True),
    ("2 < 1 || 1 > 2 || 2 <= 1 || 1 >= 2", False),
])
def test_operators_and_precedence(expression: str, expected: Any) -> None:
    assert ev(expression) == expected


@pytest.mark.parametrize(("expression", "expected"), [
    ("'a' && 'b'", "b"), ("'' && 'b'", ""), ("null && 'b'", None), ("0 && 'b'", 0),
    ("'a' || 'b'", "a"), ("null || 'default'", "default"), ("0 || ''", ""),
    ("inputs.count || 10", 3), ("inputs.empty || 'none'", "none"),
    # the docs' ternary: condition && 'if-true' || 'if-false'
    ("github.event_name == 'pull_request' && 'pr' || 'other'", "pr"),
    ("github.event_name == 'push' && 'push' || 'other'", "other"),
    ("github.event && github.event.action", "labeled"),
])
def test_and_or_return_an_operand(expression: str, expected: Any) -> None:
    value = ev(expression)
    assert value == expected and type(value) in (type(expected), float)


def test_and_or_short_circuit() -> None:
    assert ev("false && fromJSON('not json')") is False
    assert ev("true || fromJSON('not json')") is True
    with pytest.raises(ExpressionError, match="fromJSON"):
        ev("true && fromJSON('not json')")


# Comparisons and coercion ------------------------------------------------------------------

@pytest.mark.parametrize(("expression", "expected"), [
    ("'abc' == 'ABC'", True), ("'abc' != 'ABC'", False), ("'abc' == 'abd'", False),
    ("github.EVENT_NAME == 'PULL_REQUEST'", True),
    ("'a' < 'B'", True), ("'B' > 'a'", True), ("'a' >= 'A'", True), ("'a' <= 'A'", True),
    ("'apple' < 'Banana'", True), ("'b' < 'a'", False), ("'ß' == 'SS'", False),
])
def test_strings_compare_ignoring_case(expression: str, expected: bool) -> None:
    assert ev(expression) is expected


@pytest.mark.parametrize(("expression", "expected"), [
    # the docs' table: null -> 0, boolean -> 1 / 0, string -> a number or NaN ('' -> 0)
    ("null == 0", True), ("null == false", True), ("null == ''", True), ("null == 'null'", False),
    ("null == null", True), ("null != 1", True),
    ("true == 1", True), ("false == 0", True), ("true == 2", False), ("true == '1'", True),
    ("true == 'true'", False), ("'false' == false", False), ("false == ''", True),
    ("'1' == 1", True), ("' 12 ' == 12", True), ("'1.50' == 1.5", True), ("'1e2' == 100", True),
    ("'0x10' == 16", True), ("'abc' == 0", False), ("'' == 0", True), ("'-1' == -1", True),
    ("'1' == '1.0'", False),  # two strings: no coercion
    ("inputs.count == '3'", True), ("inputs.flag == 1", True), ("inputs.flag == 'true'", False),
    # arrays and objects: NaN to anything else, equal only to the same instance
    ("github.event == github.event", True), ("github.event == github.EVENT", True),
    ("github.event != github.event", False), ("github.event >= github.event", True),
    ("fromJSON('[]') == fromJSON('[]')", False), ("fromJSON('{}') == fromJSON('{}')", False),
    ("github.event == 'Object'", False), ("github.event == null", False),
    ("fromJSON('[]') == 0", False), ("fromJSON('[]') != 0", True),
    # NaN is never equal, and every relational comparison with it is false
    ("NaN == NaN", False), ("NaN != NaN", True), ("'abc' < 1", False), ("'abc' >= 1", False),
    ("NaN <= NaN", False), ("NaN > 0", False),
    # mixed relational comparisons coerce the same way
    ("null < 1", True), ("true > false", True), ("false < true", True), ("true >= 1", True),
    ("'10' > 2", True), ("'2' > 10", False), ("'2' > '10'", True), ("1 < '2'", True),
    ("-Infinity < -1e308", True), ("Infinity > 1e308", True), ("-0 == 0", True),
])
def test_loose_equality_and_coercion(expression: str, expected: bool) -> None:
    assert ev(expression) is expected


@pytest.mark.parametrize(("value", "expected"), [
    (False, False), (0, False), (-0.0, False), ("", False), (None, False), (math.nan, False),
    (True, True), (1, True), (-1, True), (0.5, True), (math.inf, True), ("false", True),
    ("0", True), (" ", True), ([], True), ({}, True),
])
def test_truthy(value: Any, expected: bool) -> None:
    assert truthy(value) is expected


# Property access and the object filter -----------------------------------------------------

@pytest.mark.parametrize(("expression", "expected"), [
    ("github.event.action", "labeled"), ("GITHUB.Event.ACTION", "labeled"),
    ("github['event']['action']", "labeled"), ("github['EVENT'].action", "labeled"),
    ("github.event.missing", None), ("github.event.missing.deeper.still", None),
    ("github.event_name.length", None),  # a property of a string is null
    ("github.event.pull_request.labels[1].name", "Help Wanted"),
    ("github.event.pull_request.labels[1.9].name", "Help Wanted"),  # the index is floored
    ("github.event.pull_request.labels['1'].name", "Help Wanted"),
    ("github.event.pull_request.labels[3]", None), ("github.event.pull_request.labels[-1]", None),
    ("github.event.pull_request.labels['name']", None),
    ("github.event.pull_request.labels[0].NAME", "bug"),
    ("matrix[format('o{0}', 's')]", "ubuntu"),
    ("fromJSON('{\"1\": \"one\"}')[1]", "one"),  # a number index on an object is its string
    ("github.event.pull_request.labels[github]", None),  # an object as the index
    ("github.true", None), ("github.null", None),  # keywords as property names
])
def test_property_access(expression: str, expected: Any) -> None:
    assert ev(expression) == expected


@pytest.mark.parametrize(("expression", "expected"), [
    ("fruits.*.name", ["apple", "orange", "pear"]),  # the docs' example
    ("fruits[*].quantity", [1, 2, 1]),
    ("github.event.pull_request.labels.*.name", ["bug", "Help Wanted"]),  # a miss is dropped
    ("github.event.pull_request.labels.*.color", ["red", "blue"]),
    ("github.event.label.*", ["ftci/safe-to-train"]),   # `*` on an object: its values
    ("matrix.versions.*.*", [1, 2, 3]),                 # `*` on each element
    ("matrix.versions.*[0]", [1, 3]),                   # an index on each element
    ("github.event_name.*", []), ("github.event.missing.*.name", []),
    ("fromJSON('[{\"a\": null}, {\"b\": 1}]').*.a", [None]),  # a null value is kept
    ("fruits.*.missing", []),
])
def test_object_filter(expression: str, expected: list[Any]) -> None:
    value = ev(expression)
    assert isinstance(value, list) and value == expected


def test_filter_feeds_functions() -> None:
    assert ev("contains(github.event.pull_request.labels.*.name, 'BUG')") is True
    assert ev("contains(github.event.pull_request.labels.*.name, 'help')") is False
    assert ev("join(fruits.*.name, ', ')") == "apple, orange, pear"


# Functions ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("expression", "expected"), [
    ("contains('Hello world', 'llo')", True), ("contains('Hello world', 'LLO')", True),
    ("contains('Hello world', 'xyz')", False), ("contains('abc123', 123)", True),
    ("contains('true story', true)", True), ("contains('anything', null)", True),
    ("contains(fromJSON('[1, \"a\"]'), 'A')", True), ("contains(fromJSON('[\"1\"]'), 1)", True),
    ("contains(fromJSON('[null]'), 0)", True), ("contains(fromJSON('[]'), 0)", False),
    ("contains(github.event.label, 'ftci/safe-to-train')", False),  # an object: false
    ("contains('abc', github.event)", False),
    ("startsWith('Hello world', 'He')", True), ("startsWith('Hello world', 'hE')", True),
    ("startsWith('Hello world', 'world')", False), ("startsWith(12345, 12)", True),
    ("endsWith('Hello world', 'ld')", True), ("endsWith('Hello world', 'LD')", True),
    ("endsWith('Hello world', 'He')", False), ("endsWith(fruits, 'x')", False),
    ("CONTAINS('abc', 'B')", True), ("StartsWith('abc', 'A')", True),  # names ignore case
])
def test_contains_starts_ends_with(expression: str, expected: bool) -> None:
    assert ev(expression) is expected


@pytest.mark.parametrize(("expression", "expected"), [
    ("format('Hello {0} {1} {2}', 'Mona', 'the', 'Octocat')", "Hello Mona the Octocat"),
    ("format('{{Hello {0} {1} {2}!}}', 'Mona', 'the', 'Octocat')", "{Hello Mona the Octocat!}"),
    ("format('{0}{0}-{1}', 'a', 'b')", "aa-b"), ("format('no args')", "no args"),
    ("format('{0}|{1}|{2}|{3}', null, true, 1, 1.5)", "|true|1|1.5"),
    ("format('{0} {1} {2}', 1e20, 0.1, -0.5)", "1E+20 0.1 -0.5"),
    ("format('{0} {1}', github.event, fruits)", "Object Array"),
    ("format('{{{0}}}', 'x')", "{x}"), ("format('}}{{')", "}{"),
    ("join(fromJSON('[\"a\", 1, true, null]'))", "a,1,true,"),
    ("join(fruits.*.name, ' + ')", "apple + orange + pear"),
    ("join('just a string', '-')", "just a string"), ("join(github.event, ',')", ""),
    ("join(fromJSON('[1, 2]'), github.event)", "1,2"),  # a non-primitive separator: ','
    ("toJSON('x')", '"x"'), ("toJSON(null)", "null"), ("toJSON(1)", "1"),
    ("toJSON(github.event.label)", '{\n  "name": "ftci/safe-to-train"\n}'),
    ("toJSON(matrix.versions)", "[\n  [\n    1,\n    2\n  ],\n  [\n    3\n  ],\n  []\n]"),
    ("fromJSON('{\"a\": [1, true, null]}').a[1]", True), ("fromJSON('12') == 12", True),
    ("fromJSON(inputs.labels)[1]", "gpu"), ("fromJSON(' \"s\" ')", "s"),
    ("toJSON(fromJSON('{\"b\": 1.5}'))", '{\n  "b": 1.5\n}'),
    ("fromJson('true')", True), ("TOJSON(1)", "1"),
])
def test_format_join_json(expression: str, expected: Any) -> None:
    assert ev(expression) == expected


@pytest.mark.parametrize(("expression", "message"), [
    ("format('{0} {1}', 'a')", "invalid format string"),
    ("format('{')", "invalid format string"), ("format('}')", "invalid format string"),
    ("format('{x}', 1)", "invalid format string"), ("format('{0:x}', 1)", "invalid format"),
    ("fromJSON('{')", "fromJSON"), ("fromJSON('')", "fromJSON"),
])
def test_function_errors(expression: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message):
        ev(expression)


def test_status_functions() -> None:
    assert ev("success()") is True and ev("failure()") is False  # default: all well so far
    assert ev("cancelled()") is False and ev("always()") is True
    assert ev("success()", success=False, failure=True) is False
    assert ev("failure()", success=False, failure=True) is True
    assert ev("cancelled()", success=False, cancelled=True) is True
    assert ev("always()", success=False, cancelled=True) is True
    assert ev("!cancelled() && 'go'", cancelled=True) is False
    assert ev("SUCCESS()") is True
    with pytest.raises(ExpressionError, match="unknown status keys"):
        ev("success()", succes=True)


# Templates and `if:` -----------------------------------------------------------------------

@pytest.mark.parametrize(("value", "expected"), [
    ("${{ 1 }}", 1), ("${{ fromJSON('[1]') }}", [1]), ("${{ null }}", None),  # keeps the type
    ("${{github.event.action}}", "labeled"),
    ("a ${{ 1 }} b ${{ 'two' }}", "a 1 b two"), ("${{ 1 }}${{ 2 }}", "12"),
    (" ${{ true }}", " true"), ("${{ null }}-", "-"),
    ("${{ '}}' }}", "}}"), ("${{ 'it''s }}' }} !", "it's }} !"),
    ("${{ github.event.pull_request.number }}/${{ github.event.missing }}", "7/"),
])
def test_templates(value: str, expected: Any) -> None:
    assert ev(value) == expected


@pytest.mark.parametrize(("condition", "status", "expected"), [
    (None, {}, True), ("", {}, True), ("  ", {}, True),  # no if: is success()
    (None, {"success": False, "failure": True}, False),
    (True, {}, True), (False, {}, False), ("true", {}, True), ("false", {}, False),
    # no status function: success() && (condition)
    ("true", {"success": False, "failure": True}, False),
    ("github.event_name == 'pull_request'", {}, True),
    ("${{ github.event_name == 'pull_request' }}", {}, True),
    ("${{ github.event_name == 'push' }}", {}, False),
    ("github.event_name == 'pull_request'", {"success": False, "cancelled": True}, False),
    ("always()", {"success": False, "cancelled": True}, True),
    ("${{ always() }}", {"success": False, "failure": True}, True),
    ("failure()", {"success": False, "failure": True}, True),
    ("failure()", {}, False),
    ("!cancelled() && github.event_name == 'pull_request'", {"success": False}, True),
    ("!cancelled()", {"success": False, "cancelled": True}, False),
    ("success() || failure()", {"success": False, "failure": True}, True),
    ("contains(toJSON(success()), 'true')", {}, True),  # a status call nested in arguments
    ("inputs.empty", {}, False), ("inputs.count", {}, True),
    # text around ${{ }} makes a string, which is truthy: GitHub's well-known pitfall
    ("${{ false }} && false", {}, True), ("${{ false }} ", {}, True), ("'${{ false }}'", {}, True),
    ("${{ false }} ", {"success": False}, False), (" false ", {}, False),
])
def test_evaluate_if(condition: str | bool | None, status: dict[str, bool],
                     expected: bool) -> None:
    assert evaluate_if(condition, CONTEXTS, status=status) is expected


def test_folded_yaml_condition() -> None:
    job = yaml.safe_load(
        "if: >-\n"
        "  github.event_name != 'pull_request' ||\n"
        "  (github.event.action == 'labeled' &&\n"
        "  github.event.label.name == 'ftci/safe-to-train')\n")
    assert "\n" not in job["if"]
    assert evaluate_if(job["if"], CONTEXTS) is True
    assert evaluate_if(job["if"], CONTEXTS, status={"success": False}) is False


# Errors ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("expression", "message"), [
    ("", "expected a value"), ("1 ==", "expected a value"), ("(true", r"expected '\)'"),
    ("true)", "expected an operator or the end"), ("1 2", "expected an operator"),
    ("github.", "expected a property name"), ("github.event.'x'", "expected a property name"),
    ("github..event", "unexpected"), ("a = b", "unexpected '='"), ("a & b", "unexpected '&'"),
    ("a | b", "unexpected '|'"), ("'unterminated", "unexpected"), ("1.2.3", "unexpected"),
    ("2abc", "unexpected '2abc'"),
    ("github *", "expected an operator"), ("github.event[*", r"expected '\]'"),
    ("contains('a', 'b'", r"expected ',' or '\)'"), ("contains('a',)", "expected a value"),
    ("!", "expected a value"), ("github.event.action()", "expected an operator"),
    ("'abc'[0]", "expected an operator"), ("$x", "unexpected"),
    ("${{ 1 }", "unclosed"), ("x ${{ }}", "expected a value"), ("${{ 'a }}", "unclosed"),
])
def test_syntax_errors(expression: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message):
        ev(expression)


@pytest.mark.parametrize(("expression", "message"), [
    ("githb.event_name == 'push'", "unknown context 'githb'"),  # a typo fails, it is not null
    ("needs.data.result == 'success'", "unknown context 'needs'"),  # not passed: an error
    ("false && secrets.token", "unknown context 'secrets'"),  # even where short-circuited
    ("containz('a', 'b')", "unknown function 'containz'"),
    ("hashFiles('**/x')", "unknown function 'hashFiles'"),   # not supported here
    ("contains('a')", r"contains\(\) takes 2 to 2 arguments, not 1"),
    ("success(1)", "takes 0 to 0 arguments"), ("format()", "takes 1 to 255 arguments"),
    ("join(1, 2, 3)", "takes 1 to 2 arguments"),
])
def test_unknown_names_and_arity(expression: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message):
        ev(expression)


def test_passed_contexts_are_the_known_ones() -> None:
    assert evaluate("needs.data.result", {"needs": {"data": {"result": "success"}}}) == "success"
    assert evaluate("NEEDS.DATA.RESULT", {"needs": {"data": {"result": "success"}}}) == "success"
    assert evaluate("needs.other.result", {"needs": {}}) is None  # below a context: null
    with pytest.raises(ExpressionError, match="not a JSON-like value"):
        evaluate("x.y == 1", {"x": {"y": object()}})
    with pytest.raises(ExpressionError, match="a string or a boolean"):
        evaluate_if(1, {})  # type: ignore[arg-type]


# Integration: every `if:` of ftci-pr.yml evaluates for a same-repository pull request -------
# (which jobs run for which event is asserted where those conditions are written)

def _load_workflow() -> dict[str, Any]:
    data: dict[Any, Any] = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))  # read anew
    if True in data:  # PyYAML reads the key `on` as a boolean
        data["on"] = data.pop(True)
    return data


def _job_ids() -> list[str]:
    return list(_load_workflow()["jobs"])


def _inputs(workflow: dict[str, Any]) -> dict[str, Any]:
    """The workflow_call inputs at their defaults; a required one gets a representative value."""
    declared = (workflow["on"].get("workflow_call") or {}).get("inputs") or {}
    fallback = {"number": 1, "boolean": False}
    return {name: spec.get("default", fallback.get(spec.get("type"), f"acme/{name}"))
            for name, spec in declared.items()}


def _contexts(workflow: dict[str, Any], job_id: str) -> dict[str, Any]:
    """What a job of this workflow sees for a pull request from a branch of the same repo."""
    job = workflow["jobs"][job_id]
    needs = job.get("needs") or []
    needs = [needs] if isinstance(needs, str) else list(needs)
    return {
        "github": {
            "event_name": "pull_request", "repository": "acme/intents", "token": "***",
            "ref": "refs/pull/7/merge", "sha": "a" * 40, "actor": "octocat",
            "event": {"action": "synchronize", "number": 7,
                      "pull_request": {"number": 7, "labels": [],
                                       "head": {"sha": "b" * 40,
                                                "repo": {"full_name": "acme/intents"}},
                                       "base": {"sha": "c" * 40,
                                                "repo": {"full_name": "acme/intents"}}}},
        },
        "needs": {name: {"result": "success",
                         "outputs": {key: "true" for key in
                                     workflow["jobs"][name].get("outputs") or {}}}
                  for name in needs},
        "inputs": _inputs(workflow),
        "vars": {},
    }


def _step_contexts(workflow: dict[str, Any], job_id: str) -> dict[str, Any]:
    steps = workflow["jobs"][job_id].get("steps") or []
    return {**_contexts(workflow, job_id),
            "steps": {step["id"]: {"outputs": {}, "outcome": "success", "conclusion": "success"}
                      for step in steps if "id" in step},
            "job": {"status": "success"}, "runner": {"os": "Linux", "temp": "/tmp"},
            "env": {}, "strategy": {}, "matrix": {}, "secrets": {}}


def _expressions(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if "${{" in value else []
    if isinstance(value, dict):
        return [found for item in value.values() for found in _expressions(item)]
    if isinstance(value, list):
        return [found for item in value for found in _expressions(item)]
    return []


def test_the_workflow_has_jobs_with_conditions() -> None:
    jobs = _load_workflow()["jobs"]
    assert jobs and any("if" in job for job in jobs.values())


@pytest.mark.parametrize("job_id", _job_ids())
def test_every_job_if_evaluates(job_id: str) -> None:
    workflow = _load_workflow()
    job = workflow["jobs"][job_id]
    assert isinstance(evaluate_if(job.get("if"), _contexts(workflow, job_id),
                                  status={"success": True}), bool)


@pytest.mark.parametrize("job_id", _job_ids())
def test_every_step_if_evaluates(job_id: str) -> None:
    workflow = _load_workflow()
    contexts = _step_contexts(workflow, job_id)
    for step in workflow["jobs"][job_id].get("steps") or []:
        assert isinstance(evaluate_if(step.get("if"), contexts), bool), step


@pytest.mark.parametrize("job_id", _job_ids())
def test_every_expression_of_a_job_evaluates(job_id: str) -> None:
    workflow = _load_workflow()
    contexts = _step_contexts(workflow, job_id)
    for value in _expressions(workflow["jobs"][job_id]):
        evaluate(value, contexts)
