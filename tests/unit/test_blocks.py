"""Block Kit rendering: what responders see, escaped and within Slack's limits."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from slack_sdk.models.blocks import Block

from bot.incidents.models import Alert, Incident
from bot.slack import blocks
from bot.text import escape, truncate

START = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)


def make_incident(**overrides: Any) -> Incident:
    values: dict[str, Any] = {
        "id": 42,
        "receiver": "incident-bot",
        "group_key": "{}:{}",
        "status": "triggered",
        "severity": "critical",
        "title": "VLLMHighE2ELatency: p99 latency above 2s",
        "description": "Requests to llama-3-8b take longer than 2s.",
        "service": "llm-prod/vllm-llama",
        "common_labels": {"namespace": "llm-prod", "deployment": "vllm-llama", "model_name": "llama-3-8b"},
        "common_annotations": {},
        "created_at": START,
        "started_at": START,
    }
    values.update(overrides)
    return Incident(**values)


def make_alert(**overrides: Any) -> Alert:
    values: dict[str, Any] = {
        "incident_id": 42,
        "fingerprint": "0123456789abcdef",
        "status": "firing",
        "alertname": "VLLMHighE2ELatency",
        "labels": {"namespace": "llm-prod", "pod": "vllm-llama-0"},
        "annotations": {"summary": "slow", "runbook_url": "https://runbooks.example/vllm"},
        "generator_url": "http://prometheus:9090/graph?g0.expr=x",
        "starts_at": START,
    }
    values.update(overrides)
    return Alert(**values)


def texts(node: Any) -> Iterator[str]:
    """Every mrkdwn string in a message (where Slack would parse mentions)."""
    if isinstance(node, dict):
        if node.get("type") == "mrkdwn":
            yield node["text"]
        for value in node.values():
            yield from texts(value)
    elif isinstance(node, list):
        for value in node:
            yield from texts(value)


def assert_valid_block_kit(message: dict[str, Any]) -> None:
    """slack-sdk's own validators: lengths, counts and required fields Slack enforces."""
    assert len(message["blocks"]) <= 50
    for raw in message["blocks"]:
        block = Block.parse(raw)
        assert block is not None
        block.validate_json()


def test_root_message_shows_what_a_responder_needs_first() -> None:
    message = blocks.root_message(make_incident(), [make_alert()])
    assert_valid_block_kit(message)
    header = message["blocks"][0]["text"]["text"]
    assert header == "INC-42 · VLLMHighE2ELatency: p99 latency above 2s"
    flat = json.dumps(message)
    assert "Critical" in flat
    assert "llm-prod/vllm-llama" in flat
    assert "`model_name=llama-3-8b`" in flat
    actions = [e.get("action_id") for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert actions[:3] == ["incident_ack", "incident_resolve", "incident_take_command"]
    urls = [
        e["url"] for b in message["blocks"] if b["type"] == "actions" for e in b["elements"] if "url" in e
    ]
    assert urls == ["http://prometheus:9090/graph?g0.expr=x", "https://runbooks.example/vllm"]
    assert message["text"].startswith(":red_circle: [CRITICAL] INC-42")


def test_broadcasts_and_mentions_in_alert_values_are_escaped() -> None:
    hostile = "<!channel> <@U0BOSS> <https://evil.example|click> & more"
    incident = make_incident(
        title=hostile,
        description=hostile,
        service=hostile,
        common_labels={"namespace": hostile, "pod": hostile},
        severity_label=hostile,
    )
    alert = make_alert(alertname=hostile, labels={"namespace": hostile}, annotations={"summary": hostile})
    for message in (
        blocks.root_message(incident, [alert]),
        blocks.alerts_changed_message(incident, [alert], [alert]),
        blocks.incident_resolved_message(incident, reason=hostile),
    ):
        for text in [*texts(message), message["text"]]:
            assert "<!channel>" not in text
            assert "<@U0BOSS>" not in text
            assert "<https://evil" not in text
        assert "&lt;!channel&gt;" in json.dumps(message)


def test_relative_and_non_http_urls_do_not_become_buttons() -> None:
    alert = make_alert(generator_url="/graph?g0.expr=up", annotations={"runbook_url": "javascript:alert(1)"})
    message = blocks.root_message(make_incident(), [alert])
    urls = [e.get("url") for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert all(u is None for u in urls)


def test_huge_values_are_cut_to_slack_limits() -> None:
    incident = make_incident(title="T" * 500, description="D" * 10_000)
    many = [make_alert(fingerprint=f"{i:016x}", annotations={"summary": "S" * 2000}) for i in range(200)]
    for message in (blocks.root_message(incident, many), blocks.alerts_changed_message(incident, many, many)):
        assert_valid_block_kit(message)
        assert len(message["text"]) <= 3000


def test_resolved_incident_has_no_buttons_and_says_so() -> None:
    incident = make_incident(status="resolved", resolved_at=START + timedelta(minutes=75))
    message = blocks.root_message(incident, [make_alert(status="resolved")])
    assert not any(
        e.get("action_id", "").startswith("incident_")
        for b in message["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
    )
    assert message["text"].startswith(":white_check_mark: RESOLVED")
    resolved = blocks.incident_resolved_message(incident)
    assert "after 1h 15m" in resolved["blocks"][0]["text"]["text"]


def test_manual_resolve_with_alerts_firing_is_shown_as_such() -> None:
    incident = make_incident(status="resolved", manual_resolve=True, resolved_at=START)
    message = blocks.root_message(incident, [make_alert(status="firing")])
    assert "manually, alerts still firing" in json.dumps(message)


def test_escape_and_truncate() -> None:
    assert escape("a < b > c & d") == "a &lt; b &gt; c &amp; d"
    assert truncate("abc", 5) == "abc"
    assert truncate("abcdefgh", 5) == "abcd…"
    # Never leave half an entity behind.
    assert truncate(escape("xx&yy"), 5) == "xx…"
