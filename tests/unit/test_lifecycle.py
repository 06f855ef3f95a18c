"""Responder transitions against a real SQLite database: state, timeline, outbox jobs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from bot.db import create_db_engine, transaction, utcnow
from bot.errors import Conflict, NotFound
from bot.incidents import jobs, lifecycle, store
from bot.incidents.lifecycle import Actor
from bot.incidents.models import Alert, AlertStatus, Incident, IncidentStatus, Severity, SlackRequest
from bot.outbox import OutboxJob
from bot.schema import init_schema

ALICE = Actor("U0ONCALL1", "alice")
BOB = Actor("U0ONCALL2", "bob")


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'bot.db'}")
    init_schema(engine)
    yield engine
    engine.dispose()


def make_incident(engine: Engine, *, firing: int = 1, resolved: int = 0) -> int:
    with transaction(engine) as session:
        incident = Incident(
            receiver="am",
            group_key='{}:{alertname="X"}',
            open_key="am\x1fg",
            title="VLLMHighE2ELatency: p99 latency above 2s",
            severity=Severity.WARNING,
            service="llm-prod/vllm",
            started_at=utcnow() - timedelta(minutes=10),
            created_at=utcnow() - timedelta(minutes=9),
            channel="C0INCIDENTS",
            slack_ts="1700000000.000100",
        )
        session.add(incident)
        session.flush()
        assert incident.id is not None
        for n in range(firing + resolved):
            session.add(
                Alert(
                    incident_id=incident.id,
                    fingerprint=f"fp{n}",
                    alertname="VLLMHighE2ELatency",
                    status=AlertStatus.FIRING if n < firing else AlertStatus.RESOLVED,
                    starts_at=utcnow() - timedelta(minutes=10),
                )
            )
        return incident.id


def kinds(session: Session, incident_id: int) -> list[str]:
    return [e.kind for e in store.timeline_of(session, incident_id)]


def job_kinds(session: Session, incident_id: int) -> list[str]:
    rows = session.exec(
        select(OutboxJob).where(OutboxJob.incident_id == incident_id).order_by(col(OutboxJob.id))
    ).all()
    return [j.kind for j in rows]


def test_acknowledge_once_with_actor_and_jobs(engine: Engine) -> None:
    number = make_incident(engine)
    with transaction(engine) as session:
        outcome = lifecycle.acknowledge(session, number, ALICE)
    assert outcome.changed
    assert outcome.first_ack
    assert outcome.message == "You acknowledged INC-1."
    with transaction(engine) as session:
        incident = store.get_incident(session, number)
        assert incident.status == IncidentStatus.ACKNOWLEDGED
        assert incident.acknowledged_by == ALICE.id
        (event,) = [e for e in store.timeline_of(session, number) if e.kind == "acknowledged"]
        assert (event.actor, event.actor_name, event.text) == (ALICE.id, "alice", "Acknowledged by alice")
        assert job_kinds(session, number) == [jobs.UPDATE_ROOT, jobs.REPLY]

    with transaction(engine) as session:
        again = lifecycle.acknowledge(session, number, BOB)
    assert not again.changed
    assert not again.first_ack
    assert again.message.startswith(f"INC-1 was already acknowledged by <@{ALICE.id}> <!date^")
    with transaction(engine) as session:
        assert kinds(session, number).count("acknowledged") == 1
        assert len(job_kinds(session, number)) == 2


def test_manual_resolve_while_firing_frees_the_group(engine: Engine) -> None:
    number = make_incident(engine, firing=2, resolved=1)
    with transaction(engine) as session:
        outcome = lifecycle.resolve(session, number, BOB, reason="drained the node")
    assert outcome.changed
    assert outcome.resolved
    assert "2 alerts still firing" in outcome.message
    with transaction(engine) as session:
        incident = store.get_incident(session, number)
        assert incident.status == IncidentStatus.RESOLVED
        assert incident.open_key is None  # a later firing opens a new incident
        assert (incident.manual_resolve, incident.resolved_by, incident.resolve_reason) == (
            True,
            BOB.id,
            "drained the node",
        )
        event = store.timeline_of(session, number)[-1]
        assert event.text == "Resolved by bob while 2 alerts still fired: drained the node"
        assert event.data == {"manual": True, "firing": 2, "reason": "drained the node"}

    with transaction(engine) as session:
        again = lifecycle.resolve(session, number, ALICE)
    assert not again.changed
    assert again.message.startswith(f"INC-1 is already resolved by <@{BOB.id}>")


def test_what_cannot_apply_to_a_resolved_incident_is_a_conflict(engine: Engine) -> None:
    number = make_incident(engine)
    with transaction(engine) as session:
        lifecycle.resolve(session, number, ALICE)
    for change in (
        lambda s: lifecycle.acknowledge(s, number, BOB),
        lambda s: lifecycle.take_command(s, number, BOB),
        lambda s: lifecycle.assign(s, number, ALICE, BOB),
    ):
        with (
            pytest.raises(Conflict, match=r"^INC-1 is already resolved by <@U0ONCALL1>"),
            transaction(engine) as session,
        ):
            change(session)
    # Notes and severity corrections are still welcome after the fact.
    with transaction(engine) as session:
        assert lifecycle.add_note(session, number, BOB, "root cause: bad rollout").changed
        assert lifecycle.set_severity(session, number, BOB, Severity.CRITICAL).changed


def test_take_command_never_silently_takes_over(engine: Engine) -> None:
    number = make_incident(engine)
    with transaction(engine) as session:
        assert lifecycle.take_command(session, number, ALICE).message == "You are now the commander of INC-1."
    with transaction(engine) as session:
        stolen = lifecycle.take_command(session, number, BOB)
        assert not stolen.changed
        assert stolen.message.startswith(f"<@{ALICE.id}> already has command of INC-1")
        assert (
            lifecycle.take_command(session, number, ALICE).message
            == "You are already the commander of INC-1."
        )
    with transaction(engine) as session:
        handed = lifecycle.assign(session, number, ALICE, BOB)
    assert handed.changed
    with transaction(engine) as session:
        incident = store.get_incident(session, number)
        assert (incident.commander_id, incident.commander_name) == (BOB.id, "bob")
        event = store.timeline_of(session, number)[-1]
        assert event.text == "alice made bob the incident commander"
        assert event.data["previous"] == ALICE.id


def test_set_severity_pins_it_and_asks_for_an_incident_channel(engine: Engine) -> None:
    number = make_incident(engine)
    with transaction(engine) as session:
        outcome = lifecycle.set_severity(session, number, ALICE, Severity.CRITICAL)
    assert outcome.message == "INC-1 is now critical."
    with transaction(engine) as session:
        incident = store.get_incident(session, number)
        assert (incident.severity, incident.severity_manual) == ("critical", True)
        assert job_kinds(session, number) == [jobs.UPDATE_ROOT, jobs.REPLY, jobs.INCIDENT_CHANNEL]
        assert store.timeline_of(session, number)[-1].data == {
            "from": "warning",
            "to": "critical",
            "manual": True,
        }
    with transaction(engine) as session:
        assert not lifecycle.set_severity(session, number, BOB, Severity.CRITICAL).changed


def test_unknown_incident_is_not_found(engine: Engine) -> None:
    with pytest.raises(NotFound, match="incident INC-999 does not exist"), transaction(engine) as session:
        lifecycle.acknowledge(session, 999, ALICE)


def test_a_request_is_claimed_once_even_by_concurrent_twins(engine: Engine) -> None:
    number = make_incident(engine)
    with transaction(engine) as session:
        assert store.claim_request(session, "command:1.2.3", incident_id=number)
    with transaction(engine) as session:
        assert not store.claim_request(session, "command:1.2.3")

    # Two sessions that both checked before either committed: the unique key stops the second.
    first, second = Session(engine), Session(engine)
    try:
        assert store.claim_request(first, "action:U1:incident_ack:1.5")
        first.commit()
        second.add(SlackRequest(key="action:U1:incident_ack:1.5"))
        with pytest.raises(IntegrityError, match="slack_requests"):
            second.commit()
    finally:
        first.close()
        second.rollback()
        second.close()
