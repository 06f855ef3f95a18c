"""Severity, title and service rules, and routing of incidents to channels."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.incidents.models import Severity
from bot.incidents.rules import service_of, severity_of, title_of
from bot.routing import Router


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("critical", Severity.CRITICAL),
        ("Warning", Severity.WARNING),
        ("page", Severity.CRITICAL),
        ("info", Severity.INFO),
        (" none ", Severity.INFO),
        ("weird", Severity.WARNING),
    ],
)
def test_severity_label_maps_to_our_levels(raw: str, expected: Severity) -> None:
    assert severity_of({"severity": raw}) == (expected, raw)


def test_missing_severity_uses_the_default() -> None:
    assert severity_of({}) == (Severity.WARNING, None)


def test_title_and_service() -> None:
    assert title_of(["KubePodCrashLooping"], {"summary": "Pod is crash looping."}) == (
        "KubePodCrashLooping: Pod is crash looping."
    )
    assert title_of(["B", "A", "A"], {}) == "A (+1 more)"
    assert title_of(["X"], {"description": "first line\nsecond"}) == "X: first line"
    assert service_of({"namespace": "llm", "deployment": "vllm"}) == "llm/vllm"
    assert service_of({"exported_namespace": "llm", "model": "resnet"}) == "llm/resnet"
    assert service_of({"job": "dcgm"}) == "dcgm"
    assert service_of({}) is None


ROUTES = """
routes:
  - name: llm-critical
    match: ['namespace=~"llm-.*"', 'severity="critical"']
    channel: C0LLMPAGE
    incident_channel:
      severities: [critical]
      responders: [U0ONCALL1]
  - name: analytics
    match: ['team="analytics"']
    channel: C0ANALYTICS
"""


def test_first_matching_route_wins_and_default_catches_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(ROUTES)
    router = Router.load(path, default_channel="C0DEFAULT")
    first = router.route({"namespace": "llm-prod", "severity": "critical", "team": "analytics"})
    assert (first.name, first.channel) == ("llm-critical", "C0LLMPAGE")
    assert first.wants_incident_channel("critical")
    assert not first.wants_incident_channel("warning")
    assert (
        router.route({"namespace": "llm-prod", "severity": "warning", "team": "analytics"}).channel
        == "C0ANALYTICS"
    )
    assert router.route({"namespace": "web"}).channel == "C0DEFAULT"
    assert router.route({"namespace": "web"}).name is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("routes: [{name: a, match: ['x=~\"(\"'], channel: C0A}]", r":1: routes\[0\]\.match: "),
        ("routes: [{name: a, match: ['x=\"1\"'], channel: incidents}]", ":1: .*not a Slack channel ID"),
        ("routes: [{name: a, match: [], channel: C0A}]", r":1: routes\[0\]\.match: needs at least one entry"),
        (
            "routes:\n  - {name: a, match: ['x=\"1\"'], channel: C0A, colour: red}",
            r":2: routes\[0\]: unknown key 'colour'",
        ),
        ("routes: [oops", ":1: invalid YAML"),
    ],
)
def test_bad_routing_file_names_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        Router.load(path, default_channel="C0DEFAULT")
    assert str(path) in str(info.value)


def test_missing_routing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read routing file"):
        Router.load(tmp_path / "nope.yaml", default_channel=None)
