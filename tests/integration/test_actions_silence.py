"""Silencing an incident's alerts from Slack against a real Alertmanager (Debian's 0.25): the
silence, its author and matchers, listing and expiring it, its end when the incident resolves,
and the policy's bounds."""

from __future__ import annotations

import html
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings
from bot.sandbox.kube_api import KubeStandIn
from bot.sandbox.slack_api import SlackStandIn
from tests.support.actions import NAME, ONCALL_POLICY, Harness, write_policy
from tests.support.botserver import run_bot, wait_until
from tests.support.promstack import AlertmanagerServer, start_alertmanager
from tests.support.slack_requests import ALICE, CAROL, SlackSender

pytestmark = pytest.mark.prometheus

RUNBOOKS = Path(__file__).resolve().parents[2] / "runbooks"


@pytest.fixture(scope="module")
def am(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AlertmanagerServer]:
    """One Alertmanager for the module: every test silences alerts with labels of its own."""
    server = start_alertmanager(tmp_path_factory.mktemp("alertmanager"))
    yield server
    server.stop()


@pytest.fixture
def start(
    tmp_path: Path, settings_for: Callable[..., Settings], slack: SlackStandIn, am: AlertmanagerServer
) -> Iterator[Callable[..., Harness]]:
    contexts: list[Any] = []
    kube = KubeStandIn()  # not started: silences need no cluster

    def factory(policy: str = ONCALL_POLICY, **overrides: Any) -> Harness:
        values: dict[str, Any] = {"policy_file": write_policy(tmp_path, policy), "alertmanager_url": am.url}
        values.update(overrides)
        context = run_bot(settings_for(**values))
        bot = context.__enter__()
        contexts.append(context)
        return Harness(bot, slack, kube, SlackSender(bot.url, slack))

    yield factory
    for context in reversed(contexts):
        context.__exit__(None, None, None)


def silences_for(am: AlertmanagerServer, pod: str) -> list[dict[str, Any]]:
    return [s for s in am.silences() if any(m["name"] == "pod" and m["value"] == pod for m in s["matchers"])]


def test_silence_list_and_unsilence_from_slack(start: Callable[..., Harness], am: AlertmanagerServer) -> None:
    harness = start()
    pod = f"vllm-llama-{uuid.uuid4().hex[:6]}"
    incident = harness.open_incident(pod=pod)
    key = incident["key"]

    sent = harness.command("/incident", f"silence {key} 2h rollout of v15 in progress")
    assert f"silence `1 alert of {key}`* (for 2h)" in harness.text(harness.answer(sent))

    [silence] = wait_until(lambda: silences_for(am, pod), message="the silence in Alertmanager")
    assert silence["status"]["state"] == "active"
    assert silence["createdBy"] == f"{ALICE.name} ({ALICE.id})"
    assert silence["comment"] == f"rollout of v15 in progress [{key}, incident-bot]"
    labels = bot_alert_labels(harness, incident)
    assert {(m["name"], m["value"]) for m in silence["matchers"]} == set(labels.items())
    assert all(m["isEqual"] and not m["isRegex"] for m in silence["matchers"])

    done = harness.wait_thread(incident, "silence `1 alert of")
    assert silence["id"] in html.unescape(done.text)
    event = harness.wait_event(incident, ": done,")
    assert event["actor"] == ALICE.id
    assert silence["id"] in event["text"]

    listed = harness.text(harness.answer(harness.command("/incident", f"silences {key}")))
    assert silence["id"] in listed
    assert "(incident-bot)" in listed

    ended = harness.text(harness.answer(harness.command("/incident", f"unsilence {key} {silence['id']}")))
    assert f"Silence `{silence['id']}` expired" in ended
    assert silences_for(am, pod)[0]["status"]["state"] == "expired"
    harness.wait_event(incident, f"alice expired silence {silence['id']}")
    assert "No active silence" in harness.text(
        harness.answer(harness.command("/incident", f"silences {key}"))
    )


def test_resolving_the_incident_expires_its_silences(
    start: Callable[..., Harness], am: AlertmanagerServer
) -> None:
    harness = start(runbooks_dir=RUNBOOKS)
    pod = f"vllm-llama-{uuid.uuid4().hex[:6]}"
    incident = harness.open_incident(pod=pod, model_name="meta-llama/Llama-3.1-8B-Instruct")
    runbook = harness.wait_thread(incident, "Runbook: vllm-latency")
    harness.click("runbook_action:1", runbook)  # "Silence for 1h" (no scale: no current_replicas)
    [silence] = wait_until(lambda: silences_for(am, pod), message="the runbook's silence")
    assert silence["comment"].startswith(
        f"Latency of meta-llama/Llama-3.1-8B-Instruct acknowledged in {incident['key']}"
    )

    harness.command("/incident", f"resolve {incident['key']} fixed by the rollback")
    wait_until(
        lambda: silences_for(am, pod)[0]["status"]["state"] == "expired",
        message="the silence expired on resolution",
    )
    harness.wait_event(incident, "Silences expired on resolution")
    harness.wait_thread(incident, "silence(s) were expired")


def test_the_policy_bounds_who_silences_and_for_how_long(
    start: Callable[..., Harness], am: AlertmanagerServer
) -> None:
    harness = start(
        ONCALL_POLICY.replace(
            "replicas: {min: 1, max: 8}", "replicas: {min: 1, max: 8}\n    max_silence_duration: 1h"
        )
    )
    pod = f"vllm-llama-{uuid.uuid4().hex[:6]}"
    incident = harness.open_incident(pod=pod)
    key = incident["key"]
    too_long = harness.text(harness.answer(harness.command("/incident", f"silence {key} 2h noisy")))
    assert (
        "silence for 2h is longer than the maximum of 1h for llm-prod/vllm-llama (rule 'oncall')" in too_long
    )
    outsider = harness.text(
        harness.answer(harness.command("/incident", f"silence {key} 30m noisy", user=CAROL))
    )
    assert "no policy rule names U0ANALYST" in outsider
    assert silences_for(am, pod) == []
    assert [r.status for r in harness.records()] == ["refused", "refused"]


def test_silence_needs_a_reason_and_alertmanager(start: Callable[..., Harness]) -> None:
    harness = start(alertmanager_url=None)
    incident = harness.open_incident(pod="vllm-llama-0")
    no_reason = harness.command("/incident", f"silence {incident['key']} 2h")
    assert "`silence` needs a reason after the duration" in html.unescape(no_reason.response.text)
    missing = harness.text(
        harness.answer(harness.command("/incident", f"silence {incident['key']} 2h noisy"))
    )
    assert "Alertmanager is not configured: set ALERTMANAGER_URL" in missing


def bot_alert_labels(harness: Harness, incident: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = harness.bot.incident(incident["id"])["alerts"][0]["labels"]
    assert labels["deployment"] == NAME
    return labels
