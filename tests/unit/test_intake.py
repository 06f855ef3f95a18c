"""Grouping and resolution rules, against a real SQLite database."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from bot.alerts import AlertmanagerWebhook
from bot.db import create_db_engine, transaction
from bot.incidents import store
from bot.incidents.intake import IntakeResult, apply_notification
from bot.incidents.models import Incident, Notification
from bot.outbox import OutboxJob
from bot.routing import Router
from bot.schema import init_schema
from bot.slack import notices
from tests.support.payloads import FIXED_START, alert, notification, recorded

T0 = FIXED_START


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'intake.db'}")
    init_schema(engine)
    yield engine
    engine.dispose()


def intake(engine: Engine, payload: dict[str, Any]) -> IntakeResult:
    with transaction(engine) as session:
        return apply_notification(
            session, AlertmanagerWebhook.model_validate(payload), router=Router(default_channel="C0DEFAULT")
        )


def incidents(engine: Engine) -> list[Incident]:
    with Session(engine) as session:
        return list(session.exec(select(Incident).order_by(Incident.id)).all())  # type: ignore[arg-type]


def jobs(engine: Engine) -> list[tuple[str, int | None]]:
    with Session(engine) as session:
        return [(j.kind, j.incident_id) for j in session.exec(select(OutboxJob).order_by(OutboxJob.id)).all()]  # type: ignore[arg-type]


def test_first_notification_opens_an_incident_and_queues_the_root_message(engine: Engine) -> None:
    result = intake(engine, notification(alert(pod="vllm-0")))
    assert result.incident_key == "INC-1"
    (incident,) = incidents(engine)
    assert incident.status == "triggered"
    assert incident.severity == "critical"
    assert incident.title == "VLLMHighE2ELatency: p99 latency above 2s"
    assert incident.channel == "C0DEFAULT"
    assert incident.started_at == T0
    assert jobs(engine) == [("slack.post_root", 1)]


def test_resent_notification_changes_nothing(engine: Engine) -> None:
    payload = notification(alert(pod="vllm-0"))
    intake(engine, payload)
    again = intake(engine, payload)
    assert again.duplicate
    assert again.incident_key == "INC-1"
    assert len(incidents(engine)) == 1
    assert len(jobs(engine)) == 1


def test_repeat_of_unchanged_group_adds_no_timeline_or_jobs(engine: Engine) -> None:
    intake(engine, notification(alert(pod="vllm-0")))
    # A repeat_interval resend differs on the wire (e.g. notification_reason) but not in substance.
    intake(engine, notification(alert(pod="vllm-0"), notification_reason="repeat interval elapsed"))
    assert len(incidents(engine)) == 1
    assert jobs(engine) == [("slack.post_root", 1)]


def test_new_alert_joins_the_open_incident_and_is_told_in_the_thread(engine: Engine) -> None:
    intake(engine, notification(alert(pod="vllm-0")))
    result = intake(engine, notification(alert(pod="vllm-0"), alert(pod="vllm-1")))
    assert result.incident_key == "INC-1"
    assert len(incidents(engine)) == 1
    assert jobs(engine) == [("slack.post_root", 1), ("slack.update_root", 1), ("slack.reply", 1)]
    with Session(engine) as session:
        reply = session.exec(select(OutboxJob).where(OutboxJob.kind == "slack.reply")).one()
    assert notices.render(reply.payload)["text"] == "INC-1: 1 alert firing"


def test_an_alert_listed_twice_in_one_notification_counts_once(engine: Engine) -> None:
    """Alertmanager never sends this, but a hand-made payload may: the first listing wins, and
    neither an opened nor an open incident gets the alert (or its timeline event) twice."""
    twice = alert(pod="vllm-0")
    result = intake(engine, notification(twice, twice))
    assert result.incident_key == "INC-1"
    intake(engine, notification(twice, alert(pod="vllm-1"), alert(pod="vllm-1")))
    with Session(engine) as session:
        assert sorted(a.labels["pod"] for a in store.alerts_of(session, 1)) == ["vllm-0", "vllm-1"]
        fired = [e.text for e in store.timeline_of(session, 1) if e.kind == "alert_fired"]
    assert len(fired) == 2, fired


def test_incident_resolves_only_when_every_alert_resolved(engine: Engine) -> None:
    a0, a1 = alert(pod="vllm-0"), alert(pod="vllm-1")
    intake(engine, notification(a0, a1))
    intake(engine, notification(alert(pod="vllm-0", status="resolved"), a1))
    assert incidents(engine)[0].status == "triggered"
    result = intake(
        engine, notification(alert(pod="vllm-0", status="resolved"), alert(pod="vllm-1", status="resolved"))
    )
    (incident,) = incidents(engine)
    assert incident.status == "resolved"
    assert incident.resolved_at is not None
    assert [i.id for i in result.resolved] == [1]
    with Session(engine) as session:
        kinds = [e.kind for e in store.timeline_of(session, 1)]
    # In time order: the alerts began before Alertmanager told us and the incident opened.
    assert kinds == ["alert_fired", "alert_fired", "opened", "alert_resolved", "alert_resolved", "resolved"]


def test_firing_after_resolution_opens_a_new_incident(engine: Engine) -> None:
    intake(engine, notification(alert(starts_at=T0)))
    intake(engine, notification(alert(starts_at=T0, status="resolved")))
    result = intake(engine, notification(alert(starts_at=T0 + timedelta(hours=1))))
    assert result.incident_key == "INC-2"
    assert [i.status for i in incidents(engine)] == ["resolved", "triggered"]


def test_stale_firing_resend_after_resolution_opens_nothing(engine: Engine) -> None:
    """Alertmanager HA peers can deliver an old 'firing' after the 'resolved'."""
    intake(engine, notification(alert(starts_at=T0), truncatedAlerts=0))
    intake(engine, notification(alert(starts_at=T0, status="resolved")))
    late = intake(engine, notification(alert(starts_at=T0), notification_reason="first notification"))
    assert late.incident_key is None
    assert len(incidents(engine)) == 1


def test_resolved_for_unknown_group_opens_nothing(engine: Engine) -> None:
    result = intake(engine, recorded("alertmanager_v4_resolved_k8s_deployment_with_truncatedAlerts0.json"))
    assert result.incident_key is None
    assert incidents(engine) == []
    with Session(engine) as session:
        assert len(session.exec(select(Notification)).all()) == 1  # still recorded


def test_groups_are_kept_apart_by_receiver_and_group_key(engine: Engine) -> None:
    intake(engine, notification(alert(), group_key="{}:{a}"))
    intake(engine, notification(alert(), group_key="{}:{b}"))
    intake(engine, notification(alert(), group_key="{}:{a}", receiver="other"))
    assert len(incidents(engine)) == 3


def test_severity_follows_the_worst_firing_alert_and_keeps_unknown_label(engine: Engine) -> None:
    intake(engine, notification(alert(pod="a", severity="P3-ish")))
    incident = incidents(engine)[0]
    assert (incident.severity, incident.severity_label) == ("warning", "P3-ish")
    intake(engine, notification(alert(pod="a", severity="P3-ish"), alert(pod="b", severity="page")))
    incident = incidents(engine)[0]
    assert (incident.severity, incident.severity_label) == ("critical", "page")


def test_truncated_alerts_are_recorded(engine: Engine) -> None:
    intake(engine, notification(alert(), truncatedAlerts=7))
    assert incidents(engine)[0].truncated_alerts == 7


def test_simultaneous_duplicates_yield_one_incident(engine: Engine) -> None:
    """Alertmanager in HA mode: both peers deliver the same notification at the same moment."""
    payload = notification(alert(pod="vllm-0"), alert(pod="vllm-1"))
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def deliver() -> None:
        barrier.wait()
        try:
            intake(engine, payload)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(incidents(engine)) == 1
    assert jobs(engine) == [("slack.post_root", 1)]
