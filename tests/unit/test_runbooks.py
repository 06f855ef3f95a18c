"""Runbooks: the format, matchers, selection, the sandbox, and the errors an author sees.

Everything goes through the public entry points a user or the server uses: files in a
directory, `load_runbooks` / `check_dir` / `check_command`, `render_runbook` with an
explicit `RunbookContext`. PromQL is parsed by Debian's real `promtool`.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest
import yaml

from bot.runbooks import (
    AlertInfo,
    IncidentInfo,
    MatcherSyntaxError,
    MatchType,
    RunbookContext,
    RunbookError,
    RunbookRenderError,
    best_matches,
    load_directory,
    load_runbooks,
    load_verified_runbooks,
    parse_matcher,
    parse_matchers,
    render_runbook,
)
from bot.runbooks import check as runbook_check
from bot.runbooks.cli import check_command
from bot.runbooks.cli import test_command as run_test_command
from bot.runbooks.matchers import specificity
from bot.runbooks.schema import RollbackParams, ScaleParams, SilenceParams, schema_json
from tests.support.promstack import find_binary

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "runbooks"
RULES = ROOT / "manifests" / "prometheus-rules.yaml"


@pytest.fixture(scope="module")
def promtool() -> str:
    return find_binary("promtool")


# A valid runbook; the mistake cases below edit one line of it, so line numbers are known:
#  1 name            6 - title        11 - |               16 - silence
#  2 description     7   query        12   Roll back...    17 examples:
#  3 match:          8   unit         13   Then watch...   18 - labels
#  4 - alertname     9 steps:         14 actions:
#  5 diagnostics:   10 - Check...     15 - scale
GOOD = """\
name: good
description: Latency of {{ labels.model_name }} is high.
match:
  - alertname="HighLatency"
diagnostics:
  - title: p99 latency
    query: histogram_quantile(0.99, sum by (le) (rate(x_bucket{namespace="{{ labels.namespace }}"}[5m])))
    unit: seconds
steps:
  - Check the dashboard.
  - |
    Roll back if a deploy went out.
    Then watch {{ labels.namespace }}.
actions:
  - {action: scale, namespace: "{{ labels.namespace }}", deployment: "{{ labels.deployment }}", replicas: 3}
  - {action: silence, duration: 2h}
examples:
  - labels: {alertname: HighLatency, namespace: prod, deployment: api, model_name: m}
"""


def edit(line: int, new: str | None) -> str:
    lines = GOOD.splitlines()
    if new is None:
        del lines[line - 1]
    else:
        lines[line - 1] = new
    return "\n".join(lines) + "\n"


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")
    return directory


def context(labels: dict[str, str], annotations: dict[str, str] | None = None) -> RunbookContext:
    started = datetime(2025, 3, 1, 3, 0, tzinfo=UTC)
    alert = AlertInfo(
        labels=labels,
        annotations=annotations or {},
        status="firing",
        starts_at=started,
        fingerprint="1a2b3c4d5e6f7a8b",
        generator_url="http://prometheus:9090/graph",
    )
    incident = IncidentInfo(
        key="INC-42",
        number=42,
        severity="critical",
        title="p99 latency",
        status="triggered",
        started_at=started,
    )
    return RunbookContext(alert=alert, incident=incident, alerts=(alert,))


# --- the format -------------------------------------------------------------------------------


def test_shipped_json_schema_is_the_one_generated_from_the_models() -> None:
    assert (SHIPPED / "runbook.schema.json").read_text(encoding="utf-8") == schema_json()


def test_gen_schema_check_reports_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "runbook.schema.json"
    stale.write_text("{}\n")
    command = [str(ROOT / ".venv" / "bin" / "python"), "-m", "bot.runbooks.gen_schema", "--check", str(stale)]
    stale_run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    assert stale_run.returncode == 1
    assert "out of date" in stale_run.stderr
    subprocess.run([*command[:-2], str(stale)], cwd=ROOT, check=True, capture_output=True)
    assert stale.read_text() == schema_json()


def test_json_schema_accepts_every_shipped_runbook_and_rejects_unknown_keys() -> None:
    validator = jsonschema.Draft202012Validator(json.loads(schema_json()))
    for path in sorted(SHIPPED.glob("*.yaml")):
        assert list(validator.iter_errors(yaml.safe_load(path.read_text()))) == [], path.name
    broken = yaml.safe_load(edit(8, "    units: seconds"))
    assert [e.message for e in validator.iter_errors(broken)] == [
        "Additional properties are not allowed ('units' was unexpected)"
    ]


def test_the_documented_example_is_a_valid_runbook(tmp_path: Path, promtool: str) -> None:
    readme = (SHIPPED / "README.md").read_text(encoding="utf-8")
    example = readme.split("```yaml\n", 1)[1].split("```", 1)[0]
    directory = write(tmp_path / "rb", {"example.yaml": example})
    report = runbook_check.check_report(directory, promtool=promtool)
    assert report.errors == []
    assert report.warnings == []
    (rendered,) = report.rendered["vllm-queue"]
    assert [a.action for a in rendered.actions] == ["scale", "rollback", "restart", "silence"]
    assert rendered.actions[0].params == ScaleParams(
        namespace="llm-prod", deployment="vllm-llama", replicas=3
    )


def test_good_runbook_loads_with_its_version_and_renders(tmp_path: Path) -> None:
    directory = write(tmp_path / "rb", {"good.yaml": GOOD})
    runbooks = load_runbooks(directory)
    runbook = runbooks.get("good")
    assert runbook is not None
    assert runbook.version == hashlib.sha256(GOOD.encode()).hexdigest()[:12]
    rendered = render_runbook(
        runbook,
        context({"alertname": "HighLatency", "namespace": "prod", "deployment": "api", "model_name": "m"}),
    )
    assert rendered.name == "good"
    assert rendered.version == runbook.version
    assert rendered.description == "Latency of m is high."
    assert rendered.steps == ("Check the dashboard.", "Roll back if a deploy went out.\nThen watch prod.")
    (diag,) = rendered.diagnostics
    assert diag.query == 'histogram_quantile(0.99, sum by (le) (rate(x_bucket{namespace="prod"}[5m])))'
    assert (diag.type, diag.unit, diag.range, diag.step) == ("range", "seconds", timedelta(hours=1), None)
    scale, silence = rendered.actions
    assert scale.action == "scale"
    assert scale.params == ScaleParams(namespace="prod", deployment="api", replicas=3)
    assert scale.label == "Scale api to 3"
    assert silence.params == SilenceParams(duration=timedelta(hours=2), duration_text="2h", comment=None)
    assert rendered.recovery_query is None


# --- matchers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ('alertname="X"', {"alertname": "X"}, True),
        ('alertname="X"', {"alertname": "XY"}, False),
        ('alertname!="X"', {"alertname": "Y"}, True),
        ('alertname!="X"', {"alertname": "X"}, False),
        ('alertname=~"X|Y"', {"alertname": "Y"}, True),
        ('alertname=~"X"', {"alertname": "XY"}, False),  # anchored: ^(?:X)$
        ('alertname=~"VLLM.*"', {"alertname": "MyVLLMAlert"}, False),
        ('alertname=~"a|b"', {"alertname": "ab"}, False),  # the alternation is anchored as a whole
        ('alertname!~"X.*"', {"alertname": "XY"}, False),
        ('alertname!~"X.*"', {"alertname": "YX"}, True),
        ('namespace!=""', {}, False),  # a missing label is the empty string
        ('namespace=""', {}, True),
        ('namespace=~".*"', {}, True),
        ('namespace!~".+"', {}, True),
        ("severity=critical", {"severity": "critical"}, True),  # unquoted value
        ("code=~5..", {"code": "503"}, True),
        ('msg="say \\"hi\\""', {"msg": 'say "hi"'}, True),  # escaped quote
        ('path="C:\\\\tmp"', {"path": "C:\\tmp"}, True),  # escaped backslash
        ('text="a\\nb"', {"text": "a\nb"}, True),  # \n is a line feed
        ('"name with space"="v"', {"name with space": "v"}, True),  # quoted UTF-8 label name
        ('team="größe"', {"team": "größe"}, True),
    ],
)
def test_matcher_semantics_follow_alertmanager(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_matcher(text).matches(labels) is expected


def test_parse_matchers_takes_braces_commas_and_a_trailing_comma() -> None:
    found = parse_matchers('{alertname="X", namespace=~"llm-.*",}')
    assert [(m.name, m.type, m.value) for m in found] == [
        ("alertname", MatchType.EQUAL, "X"),
        ("namespace", MatchType.REGEX, "llm-.*"),
    ]
    assert parse_matchers('a="1",b!="2"') == parse_matchers('{ a = "1" , b != "2" }')


@pytest.mark.parametrize("text", ['a="x"', 'a!~"y|z"', 'msg="q\\"uote\\\\ and\\nline"', 'a=~"[0-9]+"'])
def test_matcher_string_form_parses_back_to_the_same_matcher(text: str) -> None:
    matcher = parse_matcher(text)
    assert parse_matcher(str(matcher)) == matcher


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "alertname",
            "bad matcher 'alertname': expected an operator such as "
            "'=', '!=', '=~' or '!~' after 'alertname' at the end",
        ),
        (
            "alertname=",
            "bad matcher 'alertname=': expected a label value "
            "after 'alertname=' at the end; write \"\" for empty",
        ),
        ('="X"', "bad matcher '=\"X\"': expected a label name at column 1, found '='"),
        (
            'alertname!"X"',
            "bad matcher 'alertname!\"X\"': unexpected '!' at column 10: expected '!=' or '!~'",
        ),
        ('alertname="X', "bad matcher 'alertname=\"X': unterminated quoted string starting at column 11"),
        (
            'a=~"(x"',
            "bad matcher 'a=~\"(x\"': invalid regular expression: "
            "missing ), unterminated subpattern at position 0",
        ),
        (
            'a=~"(?=x)"',
            "bad matcher 'a=~\"(?=x)\"': look-ahead '(?=' is "
            "not supported by Alertmanager's RE2 regex engine",
        ),
        ('a=~"(x)\\\\1"', "back-reference '\\1' is not supported by Alertmanager's RE2 regex engine"),
        (
            'a="\\q"',
            "bad matcher 'a=\"\\q\"': invalid escape sequence '\\q' in the quoted string at column 3",
        ),
        ("a=b c", "bad matcher 'a=b c': expected ',' between matchers at column 5, found 'c'"),
        ('{a="b"', "bad matcher '{a=\"b\"': expected a closing '}'"),
        ("a=b'c", "bad matcher 'a=b'c': unexpected \"'\" at column 4; quote values that contain it"),
    ],
)
def test_bad_matchers_get_an_error_naming_the_matcher(text: str, message: str) -> None:
    with pytest.raises(MatcherSyntaxError) as caught:
        parse_matchers(text)
    assert message in caught.value.message


def test_specificity_prefers_equality_then_regex_then_the_rest() -> None:
    exact = specificity(parse_matchers('alertname="X", namespace="prod"'))
    one_equal = specificity(parse_matchers('alertname="X"'))
    regex = specificity(parse_matchers('alertname=~"X|Y"'))
    negative = specificity(parse_matchers('alertname!="Z"'))
    catch_all_regex = specificity(parse_matchers('alertname=~".*"'))  # matches "": only excludes nothing
    assert exact > one_equal > regex > negative
    assert catch_all_regex == negative


# --- selection and ties -----------------------------------------------------------------------


def runbook_text(name: str, matchers: list[str], examples: list[dict[str, str]] | None = None) -> str:
    doc = {
        "name": name,
        "description": f"{name} runbook",
        "match": matchers,
        "examples": [{"labels": e} for e in examples or []],
    }
    return yaml.safe_dump(doc, sort_keys=False)


def test_the_most_specific_matching_runbook_wins(tmp_path: Path) -> None:
    directory = write(
        tmp_path / "rb",
        {
            "generic.yaml": runbook_text("vllm-generic", ['alertname=~"VLLM.+"']),
            "queue.yaml": runbook_text("vllm-queue", ['alertname="VLLMQueueGrowing"']),
            "queue-prod.yaml": runbook_text(
                "vllm-queue-prod", ['alertname="VLLMQueueGrowing"', 'namespace="llm-prod"']
            ),
        },
    )
    runbooks = load_runbooks(directory)

    def chosen(**labels: str) -> str | None:
        found = runbooks.match(labels)
        return found.name if found else None

    assert chosen(alertname="VLLMQueueGrowing", namespace="llm-prod") == "vllm-queue-prod"
    assert chosen(alertname="VLLMQueueGrowing", namespace="llm-dev") == "vllm-queue"
    assert chosen(alertname="VLLMEngineStalled", namespace="llm-prod") == "vllm-generic"
    assert chosen(alertname="TritonDown") is None


def test_check_reports_a_tie_once_and_a_shadowed_example(tmp_path: Path, promtool: str) -> None:
    example = {"alertname": "VLLMQueueGrowing", "namespace": "llm-prod"}
    directory = write(
        tmp_path / "rb",
        {
            "a.yaml": runbook_text("queue-a", ['alertname="VLLMQueueGrowing"'], [example]),
            "b.yaml": runbook_text("queue-b", ['alertname="VLLMQueueGrowing"'], [example]),
            "c.yaml": runbook_text("generic", ['alertname=~"VLLM.+"'], [example]),
        },
    )
    assert [rb.name for rb in best_matches(load_runbooks(directory), example)] == ["queue-a", "queue-b"]
    errors = runbook_check.check_dir(directory, promtool=promtool)
    assert errors == [
        f"{directory / 'a.yaml'}:6: examples[0]: tie: runbook "
        f"'queue-a' and 'queue-b' ({directory / 'b.yaml'}:1) "
        "match this alert equally specifically (1 equality, 0 regex, 0 other matcher(s)); "
        "add a matcher to the one that should win",
        f"{directory / 'c.yaml'}:6: examples[0]: this alert would get the more specific runbook 'queue-a' "
        f"({directory / 'a.yaml'}:1: 1 equality, 0 regex, 0 other matcher(s)) instead of 'generic' "
        "(0 equality, 1 regex, 0 other matcher(s))",
    ]


# --- every kind of mistake --------------------------------------------------------------------

MISTAKES = [
    pytest.param(
        edit(8, "    unit: [seconds"),
        "8: invalid YAML: while parsing a flow sequence: expected "
        "',' or ']', but got ':' (noticed at line 9, column 6)",
        id="bad-yaml",
    ),
    pytest.param(
        edit(2, "description: d\nname: twice"),
        "3: duplicate key 'name' (first at line 1)",
        id="duplicate-key",
    ),
    pytest.param(
        edit(8, "    units: seconds"),
        "8: diagnostics[0]: unknown key 'units'; did you mean 'unit'?",
        id="unknown-key",
    ),
    pytest.param(edit(2, None), "1: missing required key 'description'", id="missing-field"),
    pytest.param(
        edit(4, '  - alertname!"HighLatency"'),
        "4: match[0]: bad matcher 'alertname!\"HighLatency\"': "
        "unexpected '!' at column 10: expected '!=' or '!~'",
        id="bad-matcher",
    ),
    pytest.param(
        edit(4, '  - alertname=~"High(Latency"'),
        "4: match[0]: bad matcher 'alertname=~\"High(Latency\"': invalid regular expression: "
        "missing ), unterminated subpattern at position 4",
        id="bad-regex",
    ),
    pytest.param(
        edit(13, "    Then watch {{ labels.namespace }."),
        "13: steps[1]: template syntax error: unexpected '}'",
        id="template-syntax",
    ),
    pytest.param(
        edit(13, "    Then watch {{ labels.cluster }}."),
        "13: steps[1]: template error: labels.cluster is undefined: the alert has no label 'cluster' "
        "(it has: alertname, deployment, model_name, namespace) (example 0)",
        id="undefined-variable",
    ),
    pytest.param(
        edit(7, '    query: rate(x_bucket{namespace="{{ labels.namespace }}"}[5m]'),
        "7: diagnostics[0].query: invalid PromQL (promtool): 1:36: parse error: unclosed left parenthesis "
        '(example 0; rendered query: rate(x_bucket{namespace="prod"}[5m])',
        id="bad-promql",
    ),
    pytest.param(
        edit(15, "  - {action: reboot, namespace: prod}"),
        "15: actions[0].action: unknown action 'reboot'; "
        "expected one of: rollback, scale, restart, silence, model_rollback",
        id="unknown-action",
    ),
    pytest.param(
        edit(15, "  - {action: scale, namespace: prod, deployment: api, replicas: three}"),
        "15: actions[0].replicas: replicas must be a whole number, got 'three'",
        id="non-integer-replicas",
    ),
    pytest.param(
        edit(15, '  - {action: scale, namespace: prod, deployment: api, replicas: "{{ 7 / 2 }}"}'),
        "15: actions[0].replicas: replicas must be a whole number, "
        "got '3.5' (rendered from '{{ 7 / 2 }}') (example 0)",
        id="templated-replicas-not-integer",
    ),
    pytest.param(
        edit(16, "  - {action: silence, duration: 2 hours}"),
        "16: actions[1].duration: invalid duration '2 hours': write it like 30s, 5m, 2h, 1h30m or 1d",
        id="bad-duration",
    ),
    pytest.param(
        edit(8, "    unit: seconds\n    type: instant\n    range: 1h"),
        "6: diagnostics[0]: range and step apply only to type: range queries",
        id="instant-with-range",
    ),
    pytest.param(
        edit(10, "  - Check the dashboard: now"),
        "10: steps[0]: expected text, found a mapping; quote the text: in YAML an unquoted ': ' starts a key",
        id="unquoted-colon",
    ),
    pytest.param(
        edit(18, "  - labels: {alertname: Other, namespace: prod, deployment: api, model_name: m}"),
        '18: examples[0]: example alert does not match the runbook: matcher alertname="HighLatency" '
        "(the alert has alertname='Other') does not hold",
        id="example-does-not-match",
    ),
    pytest.param(
        edit(18, "  - labels: {alertname: HighLatency, namespace: Prod_1, deployment: api, model_name: m}"),
        "15: actions[0].namespace: namespace 'Prod_1' is not "
        "a valid Kubernetes namespace name (RFC 1123 label) "
        "(rendered from '{{ labels.namespace }}') (example 0)",
        id="label-renders-to-invalid-namespace",
    ),
    pytest.param(
        edit(13, "    Then watch {{ labels.__class__ }}."),
        "13: steps[1]: template error: unsafe operation blocked by the sandbox: "
        "access to attribute '__class__' of 'DataView' object is unsafe. (example 0)",
        id="unsafe-attribute",
    ),
    pytest.param(
        edit(1, "name: Not_A_Name"),
        "1: name: String should match pattern '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'",
        id="bad-name",
    ),
]


@pytest.mark.parametrize(("text", "expected"), MISTAKES)
def test_every_kind_of_mistake_gets_one_precise_file_line_error(
    tmp_path: Path, promtool: str, text: str, expected: str
) -> None:
    directory = write(tmp_path / "rb", {"runbook.yaml": text})
    assert runbook_check.check_dir(directory, promtool=promtool) == [
        f"{directory / 'runbook.yaml'}:{expected}"
    ]


def test_all_problems_of_all_files_are_reported_not_just_the_first(tmp_path: Path) -> None:
    many = (
        edit(4, '  - alertname=~"(x"')
        .replace("replicas: 3", "replicas: three")
        .replace("duration: 2h", "duration: 2x")
    )
    directory = write(
        tmp_path / "rb",
        {"a.yaml": many, "b.yaml": "name: [\n", "c.yaml": GOOD.replace("name: good", "name: a-b")},
    )
    errors = runbook_check.check_dir(directory, promtool=None)
    assert [e.split(": ", 1)[0] for e in errors] == [
        f"{directory / 'a.yaml'}:4",
        f"{directory / 'a.yaml'}:15",
        f"{directory / 'a.yaml'}:16",
        f"{directory / 'b.yaml'}:2",
    ]


def test_duplicate_runbook_names_are_reported_with_both_places(tmp_path: Path) -> None:
    directory = write(tmp_path / "rb", {"a.yaml": GOOD, "b.yaml": "# same name\n" + GOOD})
    errors = load_directory(directory).errors
    assert errors == [
        f"{directory / 'b.yaml'}:2: duplicate runbook name 'good' (also in {directory / 'a.yaml'}:1)"
    ]


def test_the_server_refuses_invalid_runbooks_with_the_same_messages(tmp_path: Path) -> None:
    directory = write(tmp_path / "rb", {"a.yaml": edit(8, "    units: seconds"), "b.yaml": ""})
    with pytest.raises(RunbookError) as caught:
        load_runbooks(directory)
    assert caught.value.errors == [
        f"{directory / 'a.yaml'}:8: diagnostics[0]: unknown key 'units'; did you mean 'unit'?",
        f"{directory / 'b.yaml'}:1: empty file: a runbook needs at least name, description and match",
    ]
    assert str(caught.value).startswith("2 runbook errors:\n")
    with pytest.raises(RunbookError, match="runbooks directory not found"):
        load_runbooks(tmp_path / "missing")


def test_verified_loading_also_refuses_runbooks_whose_examples_fail(tmp_path: Path) -> None:
    directory = write(tmp_path / "rb", {"a.yaml": edit(13, "    Then watch {{ labels.cluster }}.")})
    assert len(load_runbooks(directory)) == 1  # syntax and schema are fine
    with pytest.raises(RunbookError) as caught:
        load_verified_runbooks(directory)
    assert caught.value.errors == [
        f"{directory / 'a.yaml'}:13: steps[1]: template error: labels.cluster is undefined: the alert has no "
        "label 'cluster' (it has: alertname, deployment, model_name, namespace) (example 0)"
    ]
    assert [rb.name for rb in load_verified_runbooks(SHIPPED)] == sorted(
        rb.name for rb in load_runbooks(SHIPPED)
    )


# --- the sandbox ------------------------------------------------------------------------------

STEP_RUNBOOK = """\
name: sandbox
description: "{{ labels.alertname }}"
match: ['alertname="X"']
diagnostics:
  - title: "{{ labels.model }} queue"
    query: 'sum(queue{model="{{ labels.model }}", pod=~"{{ labels.model | regex_escape }}-.+"})'
    type: instant
steps:
  - STEP
links:
  - title: "Dashboard for {{ labels.model }}"
    url: "https://grafana.example/d/x?var-model={{ labels.model }}"
actions:
  - action: silence
    duration: 30m
    label: "Silence {{ labels.model }}"
    comment: "{{ labels.model }} in {{ incident.key }}"
"""


def render_step(
    tmp_path: Path, step: str, labels: dict[str, str], annotations: dict[str, str] | None = None
) -> str:
    text = STEP_RUNBOOK.replace("STEP", json.dumps(step))
    directory = write(tmp_path / "sandbox", {"sandbox.yaml": text})
    runbook = load_runbooks(directory).get("sandbox")
    assert runbook is not None
    return render_runbook(runbook, context({"alertname": "X", **labels}, annotations)).steps[0]


def test_label_values_are_data_never_template_code(tmp_path: Path) -> None:
    directory = write(
        tmp_path / "rb", {"sandbox.yaml": STEP_RUNBOOK.replace("STEP", '"Model {{ labels.model }}"')}
    )
    runbook = load_runbooks(directory).get("sandbox")
    assert runbook is not None
    hostile = "{{ 7*7 }}<!channel>\"&'\\"
    rendered = render_runbook(runbook, context({"alertname": "X", "model": hostile}))
    # Slack mrkdwn: the text is shown as typed (`*` as a look-alike that cannot open bold),
    # and <!channel> cannot ping anyone.
    assert rendered.steps == ("Model {{ 7\u22177 }}&lt;!channel&gt;\"&amp;'\\",)
    assert rendered.diagnostics[0].title == "{{ 7\u22177 }}&lt;!channel&gt;\"&amp;'\\ queue"
    # PromQL: the value stays inside its string literal.
    assert rendered.diagnostics[0].query == (
        'sum(queue{model="{{ 7*7 }}<!channel>\\"&\'\\\\", '
        'pod=~"\\\\{\\\\{ 7\\\\*7 \\\\}\\\\}<!channel>\\"&\'\\\\\\\\-.+"})'
    )
    # URL: percent-encoded, so it cannot end the URL or add parameters.
    assert rendered.links[0].url == (
        "https://grafana.example/d/x?var-model=%7B%7B%207%2A7%20%7D%7D%3C%21channel%3E%22%26%27%5C"
    )
    # Button text is Slack plain_text, shown as typed.
    assert rendered.actions[0].label == "Silence {{ 7*7 }}<!channel>\"&'\\"


def test_escaped_promql_is_accepted_by_prometheus_own_parser(tmp_path: Path, promtool: str) -> None:
    text = (
        STEP_RUNBOOK.replace("STEP", '"step"')
        + "examples:\n  - labels: {alertname: X, model: 'a\"b\\\\c.d{e}'}\n"
    )
    directory = write(tmp_path / "rb", {"sandbox.yaml": text})
    assert runbook_check.check_dir(directory, promtool=promtool) == []


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ("{{ labels.__class__.__mro__ }}", "access to attribute '__class__' of 'DataView' object is unsafe"),
        (
            "{{ ''.__class__.__mro__[1].__subclasses__() }}",
            "access to attribute '__class__' of 'str' object is unsafe",
        ),
        ("{{ labels._data }}", "access to attribute '_data' of 'DataView' object is unsafe"),
        ("{{ labels.model._raw }}", "access to attribute '_raw' of 'EscapedStr' object is unsafe"),
        ("{% set x = [] %}{{ x.append(1) }}", "access to attribute 'append' of 'list' object is unsafe"),
        ("{{ range(10**9) | list }}", "Range too big"),
    ],
)
def test_the_sandbox_blocks_unsafe_operations(tmp_path: Path, step: str, message: str) -> None:
    with pytest.raises(RunbookRenderError) as caught:
        render_step(tmp_path, step, {"model": "m"})
    (error,) = caught.value.errors
    assert ": steps[0]: template error: " in error
    assert message in error


def test_an_undefined_variable_is_an_error_that_names_it(tmp_path: Path) -> None:
    with pytest.raises(RunbookRenderError) as caught:
        render_step(tmp_path, "Check {{ labels.deployment }} and {{ nothing }}", {"model": "m"})
    (error,) = caught.value.errors
    assert error.endswith(
        "steps[0]: template error: labels.deployment is undefined: the alert has no label 'deployment' "
        "(it has: alertname, model)"
    )
    with pytest.raises(RunbookRenderError, match="'nothing' is undefined"):
        render_step(tmp_path, "{{ nothing }}", {"model": "m"})
    with pytest.raises(RunbookRenderError, match=r"incident\.owner is undefined"):
        render_step(tmp_path, "{{ incident.owner }}", {"model": "m"})


def test_templates_see_the_documented_context(tmp_path: Path) -> None:
    step = (
        "{{ incident.key }} #{{ incident.number }} {{ incident.severity }} {{ incident.status }} "
        "{{ alert.status }} {{ alert.fingerprint }} {{ alert.starts_at.strftime('%H:%M') }} "
        "{{ alerts | length }} {{ annotations.summary }} {{ labels.get('missing', 'none') }} "
        "{{ labels.deployment | default('no deployment') }} {{ labels['model'] }} {{ labels.items }}"
    )
    rendered = render_step(tmp_path, step, {"model": "m", "items": "label-named-items"}, {"summary": "a < b"})
    assert rendered == (
        "INC-42 #42 critical triggered firing 1a2b3c4d5e6f7a8b "
        "03:00 1 a &lt; b none no deployment m label-named-items"
    )


def test_author_text_becomes_safe_slack_mrkdwn(tmp_path: Path) -> None:
    step = (
        "**Bold** and [docs](https://docs.vllm.ai/x?a=1&b=2), keep <https://grafana.example/d/1|Grafana>, "
        "<!here> and `p99 < 2s`; p50 < 1s & rising; {{ labels.model }}"
    )
    assert render_step(tmp_path, step, {"model": "**m**"}) == (
        "*Bold* and <https://docs.vllm.ai/x?a=1&amp;b=2|docs>, keep <https://grafana.example/d/1|Grafana>, "
        "<!here> and `p99 &lt; 2s`; p50 &lt; 1s &amp; rising; \u2217\u2217m\u2217\u2217"
    )


def test_non_string_values_are_escaped_too(tmp_path: Path) -> None:
    # Printing a whole mapping goes through repr(); what it contains is still escaped.
    assert "&lt;" in render_step(tmp_path, "{{ labels }}", {"model": "<x>"})
    assert "<x>" not in render_step(tmp_path, "{{ alerts[0].labels.values() | list }}", {"model": "<x>"})


# --- actions, `when`, and the rendered result -------------------------------------------------

ACTIONS = """\
name: actions
description: d
match: ['alertname="X"']
diagnostics:
  - title: only with a pod
    query: up{pod="{{ labels.pod }}"}
    when: ['pod!=""']
actions:
  - action: scale
    namespace: "{{ labels.namespace }}"
    deployment: "{{ labels.deployment }}"
    replicas: "{{ annotations.current_replicas | int * 2 }}"
    when: ['deployment!=""', 'annotations.current_replicas=~"[0-9]+"']
  - action: rollback
    namespace: "{{ labels.namespace }}"
    deployment: "{{ labels.deployment }}"
    revision: "{{ labels.revision | default(3) }}"
    when: ['deployment!=""']
  - {action: restart, namespace: ml, deployment: fixed-name, label: "Restart it"}
  - {action: silence, duration: "{{ '1h' if labels.severity == 'warning' else '15m' }}"}
"""


def test_actions_are_rendered_validated_and_filtered_by_when(tmp_path: Path) -> None:
    runbook = load_runbooks(write(tmp_path / "rb", {"actions.yaml": ACTIONS})).get("actions")
    assert runbook is not None
    full = render_runbook(
        runbook,
        context(
            {
                "alertname": "X",
                "namespace": "llm",
                "deployment": "vllm",
                "pod": "vllm-1",
                "severity": "warning",
            },
            {"current_replicas": "3"},
        ),
    )
    assert [(a.action, a.label, a.params) for a in full.actions] == [
        ("scale", "Scale vllm to 6", ScaleParams(namespace="llm", deployment="vllm", replicas=6)),
        ("rollback", "Roll back vllm", RollbackParams(namespace="llm", deployment="vllm", revision=3)),
        ("restart", "Restart it", full.actions[2].params),
        ("silence", "Silence for 1h", SilenceParams(duration=timedelta(hours=1), duration_text="1h")),
    ]
    assert [d.query for d in full.diagnostics] == ['up{pod="vllm-1"}']
    bare = render_runbook(runbook, context({"alertname": "X", "severity": "critical"}))
    assert [(a.action, a.label) for a in bare.actions] == [
        ("restart", "Restart it"),
        ("silence", "Silence for 15m"),
    ]
    assert bare.diagnostics == ()


def test_a_render_failure_lists_every_broken_field(tmp_path: Path) -> None:
    runbook = load_runbooks(write(tmp_path / "rb", {"actions.yaml": ACTIONS})).get("actions")
    assert runbook is not None
    labels = {
        "alertname": "X",
        "namespace": "LLM",
        "deployment": "vllm",
        "revision": "zero",
        "severity": "info",
    }
    with pytest.raises(RunbookRenderError) as caught:
        render_runbook(runbook, context(labels, {"current_replicas": "2"}))
    path = tmp_path / "rb" / "actions.yaml"
    assert caught.value.errors == [
        f"{path}:10: actions[0].namespace: namespace 'LLM' is "
        "not a valid Kubernetes namespace name (RFC 1123 label) "
        "(rendered from '{{ labels.namespace }}')",
        f"{path}:15: actions[1].namespace: namespace 'LLM' is "
        "not a valid Kubernetes namespace name (RFC 1123 label) "
        "(rendered from '{{ labels.namespace }}')",
        f"{path}:17: actions[1].revision: revision must be a whole number, got 'zero' "
        "(rendered from '{{ labels.revision | default(3) }}')",
    ]


# --- the commands -----------------------------------------------------------------------------


def test_check_command_exit_codes_and_output(tmp_path: Path, promtool: str) -> None:
    good = write(tmp_path / "good", {"good.yaml": GOOD})
    out, err = io.StringIO(), io.StringIO()
    assert check_command(good, promtool=promtool, stdout=out, stderr=err) == 0
    assert out.getvalue() == f"1 runbook checked in {good}: no errors\n"
    assert err.getvalue() == ""

    bad = write(tmp_path / "bad", {"bad.yaml": edit(16, "  - {action: silence, duration: soon}")})
    out = io.StringIO()
    assert check_command(bad, promtool=promtool, stdout=out, stderr=io.StringIO()) == 1
    assert out.getvalue().splitlines() == [
        f"{bad / 'bad.yaml'}:16: actions[1].duration: invalid "
        "duration 'soon': write it like 30s, 5m, 2h, 1h30m or 1d",
        f"0 runbooks checked in {bad}: 1 error",
    ]

    out, err = io.StringIO(), io.StringIO()
    assert check_command(tmp_path / "nowhere", promtool=None, stdout=out, stderr=err) == 1
    assert out.getvalue().splitlines()[0] == f"{tmp_path / 'nowhere'}: runbooks directory not found"
    assert "promtool not found" in err.getvalue()


def test_check_command_reads_the_directory_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INCIDENT_BOT_RUNBOOKS_DIR", str(write(tmp_path / "env", {"good.yaml": GOOD})))
    out = io.StringIO()
    assert check_command(promtool=None, stdout=out, stderr=io.StringIO()) == 0
    assert str(tmp_path / "env") in out.getvalue()


def test_test_command_lists_each_runbook_and_warns_about_missing_examples(tmp_path: Path) -> None:
    without_examples = (
        GOOD.split("examples:")[0].replace("name: good", "name: no-examples").replace("HighLatency", "Other")
    )
    directory = write(tmp_path / "rb", {"good.yaml": GOOD, "none.yaml": without_examples})
    out, err = io.StringIO(), io.StringIO()
    assert run_test_command(directory, stdout=out, stderr=err) == 0
    version = hashlib.sha256(GOOD.encode()).hexdigest()[:12]
    assert out.getvalue().splitlines() == [
        f"ok   good (good.yaml, version {version}): 1 example",
        f"2 runbooks tested in {directory}: no errors",
    ]
    assert "runbook 'no-examples' has no examples" in err.getvalue()


def test_shipped_runbooks_pass_check_and_test(promtool: str) -> None:
    out = io.StringIO()
    assert check_command(SHIPPED, promtool=promtool, stdout=out, stderr=io.StringIO()) == 0, out.getvalue()
    report = runbook_check.check_report(SHIPPED, promtool=promtool)
    assert report.promql_checked
    assert report.warnings == []
    assert len(report.runbooks) >= 17
    assert len(report.queries) > 100
    assert run_test_command(SHIPPED, stdout=io.StringIO(), stderr=io.StringIO()) == 0


# --- the example alert rules ------------------------------------------------------------------


def test_prometheus_rules_manifest_parses_with_promtool(tmp_path: Path, promtool: str) -> None:
    manifest = yaml.safe_load(RULES.read_text())
    assert manifest["apiVersion"] == "monitoring.coreos.com/v1"
    assert manifest["kind"] == "PrometheusRule"
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": manifest["spec"]["groups"]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(rules_file)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_rule_is_labelled_and_points_at_a_runbook_that_takes_it() -> None:
    manifest = yaml.safe_load(RULES.read_text())
    runbooks = load_runbooks(SHIPPED)
    alerts = [rule for group in manifest["spec"]["groups"] for rule in group["rules"] if "alert" in rule]
    assert len(alerts) >= 30
    for rule in alerts:
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}, name
        assert rule["annotations"]["summary"], name
        assert rule["annotations"]["description"], name
        url = rule["annotations"]["runbook_url"]
        runbook = runbooks.get(url.rsplit("/", 1)[1].removesuffix(".yaml"))
        assert runbook is not None, (name, url)
        on_name = [m for m in runbook.matchers if m.name == "alertname"]
        assert on_name, runbook.name
        assert all(m.matches({"alertname": name}) for m in on_name), (name, runbook.name)
