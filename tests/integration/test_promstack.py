"""The promstack harness against the real binaries: an exporter is scraped by a real Prometheus,
a rule fires, a real Alertmanager posts the v4 webhook with a bearer token, and the resolution
follows."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from tests.support.promstack import (
    AlertmanagerServer,
    PrometheusServer,
    RecordedRequest,
    WebhookRecorder,
    alert_rule,
    find_binary,
    rules_file,
    start_prometheus,
)

pytest_plugins = ["tests.support.promstack"]
pytestmark = pytest.mark.prometheus

TOKEN = "test-webhook-token-0123"
ZERO_TIME = "0001-01-01T00:00:00Z"


class Exporter:
    """One gauge on a private registry, served by prometheus_client on a free port."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.queue_depth = Gauge(
            "promstack_test_queue_depth", "Requests waiting", ["model"], registry=self.registry
        )
        self.queue_depth.labels(model="llama-3-8b").set(0)
        self._server, self._thread = start_http_server(0, addr="127.0.0.1", registry=self.registry)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self._server.server_port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


@pytest.fixture
def exporter() -> Iterator[Exporter]:
    exp = Exporter()
    yield exp
    exp.close()


def _status(status: str) -> Callable[[RecordedRequest], bool]:
    return lambda request: request.json().get("status") == status


def test_alert_fires_and_resolves_through_real_prometheus_and_alertmanager(
    exporter: Exporter,
    webhook_recorder: WebhookRecorder,
    prometheus_factory: Callable[..., PrometheusServer],
    alertmanager_factory: Callable[..., AlertmanagerServer],
) -> None:
    am = alertmanager_factory(webhook_url=webhook_recorder.url, bearer_token=TOKEN)
    prom = prometheus_factory(
        scrape_targets=[exporter.target],
        rules=rules_file(
            alert_rule(
                "ModelQueueTooDeep",
                "promstack_test_queue_depth > 10",
                labels={"severity": "page"},
                annotations={"summary": "queue of {{ $labels.model }} is {{ $value }}"},
            )
        ),
        alertmanager_url=am.url,
    )
    prom.wait_for_targets_up()
    assert prom.query("promstack_test_queue_depth")[0]["value"][1] == "0"

    exporter.queue_depth.labels(model="llama-3-8b").set(42)
    changed_at = time.monotonic()
    firing = webhook_recorder.wait_for(_status("firing"), timeout=60, what="firing webhook")
    fire_latency = firing.received_at - changed_at

    assert firing.path == "/alertmanager"
    assert firing.headers["authorization"] == f"Bearer {TOKEN}"
    assert firing.headers["content-type"].startswith("application/json")
    body = firing.json()
    assert body["version"] == "4"
    assert body["receiver"] == "incident-bot"
    assert body["groupLabels"] == {"alertname": "ModelQueueTooDeep"}
    assert body["externalURL"] == am.url
    assert body["groupKey"]
    (alert,) = body["alerts"]
    assert alert["status"] == "firing"
    assert alert["labels"] == {
        "alertname": "ModelQueueTooDeep",
        "severity": "page",
        "model": "llama-3-8b",
        "instance": exporter.target,
        "job": "promstack",
    }
    assert alert["annotations"] == {"summary": "queue of llama-3-8b is 42"}
    assert alert["endsAt"] == ZERO_TIME
    assert re.fullmatch(r"[0-9a-f]{16}", alert["fingerprint"])
    assert alert["generatorURL"].startswith(prom.url + "/graph?")

    exporter.queue_depth.labels(model="llama-3-8b").set(0)
    changed_at = time.monotonic()
    resolved = webhook_recorder.wait_for(_status("resolved"), timeout=60, what="resolved webhook")
    resolve_latency = resolved.received_at - changed_at

    resolved_body = resolved.json()
    assert resolved.headers["authorization"] == f"Bearer {TOKEN}"
    assert resolved_body["groupKey"] == body["groupKey"]
    (resolved_alert,) = resolved_body["alerts"]
    assert resolved_alert["status"] == "resolved"
    assert resolved_alert["fingerprint"] == alert["fingerprint"]
    assert resolved_alert["endsAt"] != ZERO_TIME
    prom.wait_for_alert("ModelQueueTooDeep", state="inactive")
    # Not an assertion (machine load varies): shown with -s, for the record.
    print(f"loop latency: firing {fire_latency:.2f}s, resolved {resolve_latency:.2f}s")


def test_prometheus_reload_query_and_clean_stop(
    prometheus_factory: Callable[..., PrometheusServer],
) -> None:
    prom = prometheus_factory()
    assert prom.query("vector(7)")[0]["value"][1] == "7"

    prom.set_rules(rules_file(alert_rule("AlwaysOn", "vector(1)", labels={"team": "ml"})))
    alert = prom.wait_for_alert("AlwaysOn", state="firing")
    assert alert["labels"] == {"alertname": "AlwaysOn", "team": "ml"}

    with pytest.raises(RuntimeError, match="reload"):
        prom.set_rules("groups: [{name: broken, rules: [{alert: X, expr: 'sum('}]}]\n")

    prom.stop()
    assert prom.process.poll() is not None
    prom.stop()  # idempotent


def test_start_failure_names_the_cause(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"prometheus exited with code \d+ during start") as info:
        start_prometheus(tmp_path, rules="groups: [{name: g, rules: [{alert: X, expr: 'sum('}]}]\n")
    assert "rules.yml" in str(info.value)


def test_find_binary_names_the_debian_package() -> None:
    assert find_binary("no-such-binary", "prometheus").endswith("/prometheus")
    with pytest.raises(RuntimeError, match="none of incident-bot-no-such-tool found on PATH"):
        find_binary("incident-bot-no-such-tool")
