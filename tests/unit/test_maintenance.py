"""Pruning keeps what is audit and drops what only served a short purpose."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlmodel import Session, select

from bot.db import create_db_engine, transaction, utcnow
from bot.incidents.models import Incident, Notification, SlackRequest, TimelineEvent
from bot.maintenance import prune
from bot.outbox import JobStatus, OutboxJob
from bot.schema import init_schema


def test_prune_drops_old_finished_jobs_notifications_and_request_ids_only(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'bot.db'}")
    init_schema(engine)
    now = utcnow()
    old, recent = now - timedelta(days=40), now - timedelta(days=2)
    with transaction(engine) as session:
        incident = Incident(receiver="r", group_key="g", title="t", created_at=old, started_at=old)
        session.add(incident)
        session.flush()
        session.add(TimelineEvent(incident_id=incident.id, kind="opened", text="opened", at=old))
        session.add(OutboxJob(kind="old-done", status=JobStatus.DONE, finished_at=old))
        session.add(OutboxJob(kind="old-failed", status=JobStatus.FAILED, finished_at=old))
        session.add(OutboxJob(kind="recent-done", status=JobStatus.DONE, finished_at=recent))
        session.add(OutboxJob(kind="old-pending", status=JobStatus.PENDING, created_at=old))
        for digest, when in (("a", old), ("b", recent)):
            session.add(
                Notification(
                    body_sha256=digest,
                    received_at=when,
                    receiver="r",
                    group_key="g",
                    status="firing",
                    alert_count=1,
                )
            )
        session.add(SlackRequest(key="old-click", received_at=now - timedelta(days=2)))
        session.add(SlackRequest(key="new-click", received_at=now - timedelta(hours=1)))

    pruned = prune(engine, retention=timedelta(days=30), now=now)

    assert (pruned.jobs, pruned.notifications, pruned.slack_requests) == (2, 1, 1)
    with Session(engine) as session:
        assert sorted(j.kind for j in session.exec(select(OutboxJob))) == ["old-pending", "recent-done"]
        assert [n.body_sha256 for n in session.exec(select(Notification))] == ["b"]
        assert [r.key for r in session.exec(select(SlackRequest))] == ["new-click"]
        assert len(session.exec(select(Incident)).all()) == 1  # the audit stays
        assert len(session.exec(select(TimelineEvent)).all()) == 1
    engine.dispose()
