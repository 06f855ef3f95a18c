"""Action records in the database, given a session: conditional status transitions, target
locks, the cooldown's "last action", timeline events and the messages an action change
causes. Nothing here commits or talks to Slack or Kubernetes; callers own the transaction,
so a transition, its timeline event, its thread message and its outbox jobs land together.

Every transition is a conditional UPDATE (`WHERE status IN (expected)`): of two clicks, two
deliveries of one click or two bot replicas, exactly one moves a record on; the other sees
that it did not (`advance` returns False) and says where the record is instead.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from bot.actions.models import ActionRecord, ActionStatus, TargetLock
from bot.db import utcnow
from bot.errors import Conflict, NotFound
from bot.incidents import jobs, store
from bot.incidents.lifecycle import Actor
from bot.incidents.models import Incident
from bot.outbox import enqueue, job_kind
from bot.text import slack_date

__all__ = [
    "EXECUTE",
    "FINISHED",
    "LOCK_TTL",
    "POST",
    "VERIFY",
    "active_silence_ids",
    "advance",
    "busy_text",
    "event",
    "get_record",
    "incident_of",
    "last_action_at",
    "lock_holder",
    "lock_targets",
    "mark_expired",
    "queue_execution",
    "release_lock",
    "silence_records",
    "take_lock",
    "tell",
]

EXECUTE = job_kind("action.execute")
VERIFY = job_kind("action.verify")
POST = job_kind("action.post")

# A lock outlives any execution (the outbox lease is 5 minutes, retries stop after the
# execution deadline); a crashed bot leaves a lock that simply runs out.
LOCK_TTL = timedelta(minutes=30)

FINISHED = frozenset(
    {
        ActionStatus.SUCCEEDED,
        ActionStatus.FAILED,
        ActionStatus.REFUSED,
        ActionStatus.CANCELLED,
        ActionStatus.EXPIRED,
        ActionStatus.DRY_RUN,
    }
)
# Real actions that count for the cooldown: under way or done (not refused, failed or dry).
_COUNTS_FOR_COOLDOWN = (ActionStatus.QUEUED, ActionStatus.RUNNING, ActionStatus.SUCCEEDED)
# How many of the latest model rollbacks a restart's cooldown looks through for their restarts.
_RECENT_MODEL_ROLLBACKS = 200


def get_record(session: Session, record_id: int | str, *, for_update: bool = False) -> ActionRecord:
    try:
        number = int(record_id)
    except (TypeError, ValueError):
        raise NotFound(f"{record_id!r} is not an action id") from None
    query = select(ActionRecord).where(ActionRecord.id == number)
    if for_update and session.get_bind().dialect.name != "sqlite":
        query = query.with_for_update()
    record = session.exec(query).first()
    if record is None:
        raise NotFound(f"action #{number} does not exist")
    return record


def incident_of(session: Session, record: ActionRecord) -> Incident | None:
    return store.get_incident(session, record.incident_id) if record.incident_id is not None else None


def advance(
    session: Session,
    record: ActionRecord,
    expected: Collection[str],
    status: ActionStatus,
    **values: Any,
) -> bool:
    """Move `record` to `status` if it is still in one of `expected`; False if someone else
    moved it first. `values` are other columns to set in the same UPDATE."""
    now = utcnow()
    values.setdefault("updated_at", now)
    if status in FINISHED:
        values.setdefault("finished_at", now)
    result = session.exec(
        sa.update(ActionRecord)
        .where(col(ActionRecord.id) == record.id, col(ActionRecord.status).in_(list(expected)))
        .values(status=status.value, **values)
        .execution_options(synchronize_session=False)
    )
    moved = result.rowcount == 1
    session.refresh(record)
    return moved


def lock_holder(
    session: Session, target: str, now: datetime, *, exclude: int | None = None
) -> tuple[TargetLock, ActionRecord] | None:
    """The live lock on `target` and the action holding it, if any (other than `exclude`)."""
    lock = session.get(TargetLock, target)
    if lock is None or lock.action_id == exclude or lock.expires_at <= now:
        return None
    holder = session.get(ActionRecord, lock.action_id)
    if holder is None:
        return None
    return lock, holder


def busy_text(lock: TargetLock, holder: ActionRecord) -> str:
    """'llm-prod/vllm-llama is busy: rollback by <@U1> since 14:02'."""
    who = f"<@{holder.requested_by}>" if holder.requested_by else "someone"
    return (
        f"{lock.target} is busy: {holder.kind} by {who} since {slack_date(lock.locked_at, '{time}')}; "
        "try again when it has finished"
    )


def lock_targets(record: ActionRecord) -> list[str]:
    """What an action locks: its target, and for a model rollback the Deployments it restarts
    after moving the alias (its plan's `restart`), so no rollout runs on them meanwhile."""
    targets = [record.target] if record.target else []
    if record.kind == "model_rollback":
        targets += [str(t) for t in (record.plan or {}).get("restart") or [] if str(t) not in targets]
    return targets


def take_lock(session: Session, record: ActionRecord, now: datetime) -> None:
    """One action at a time per target. Raises Conflict naming the holder when a target is
    busy; a lock that ran out (a crashed bot) is taken over. A concurrent taker on another
    replica fails on the primary key when the transaction commits."""
    targets = lock_targets(record)
    if not targets:
        return
    assert record.id is not None
    for target in targets:
        busy = lock_holder(session, target, now, exclude=record.id)
        if busy is not None:
            raise Conflict(busy_text(*busy))
    for target in targets:
        existing = session.get(TargetLock, target)
        if existing is not None:
            session.delete(existing)
            session.flush()
        session.add(TargetLock(target=target, action_id=record.id, locked_at=now, expires_at=now + LOCK_TTL))
    session.flush()


def release_lock(session: Session, record: ActionRecord) -> None:
    for target in lock_targets(record):
        lock = session.get(TargetLock, target)
        if lock is not None and lock.action_id == record.id:
            session.delete(lock)
    session.flush()


def last_action_at(
    session: Session, kind: str, target: str | None, *, exclude: int | None = None
) -> datetime | None:
    """When the last real action of `kind` on `target` ran (or was queued): the cooldown's clock."""
    if not target:
        return None
    query = select(ActionRecord).where(
        ActionRecord.kind == kind,
        ActionRecord.target == target,
        col(ActionRecord.status).in_([s.value for s in _COUNTS_FOR_COOLDOWN]),
        col(ActionRecord.dry_run).is_(False),
    )
    if exclude is not None:
        query = query.where(ActionRecord.id != exclude)
    times = [r.finished_at or r.updated_at for r in session.exec(query).all()]
    if kind == "restart":
        # A model rollback that restarts the Deployment after moving the alias restarts it too.
        rollbacks = (
            select(ActionRecord)
            .where(
                ActionRecord.kind == "model_rollback",
                col(ActionRecord.status).in_([s.value for s in _COUNTS_FOR_COOLDOWN]),
                col(ActionRecord.dry_run).is_(False),
            )
            .order_by(col(ActionRecord.id).desc())
            .limit(_RECENT_MODEL_ROLLBACKS)
        )
        if exclude is not None:
            rollbacks = rollbacks.where(ActionRecord.id != exclude)
        times += [
            r.finished_at or r.updated_at
            for r in session.exec(rollbacks).all()
            if target in ((r.plan or {}).get("restart") or [])
        ]
    return max(times) if times else None


def event(
    session: Session,
    record: ActionRecord,
    text: str,
    *,
    by: Actor | None,
    data: Mapping[str, Any] | None = None,
) -> None:
    """An `action` event on the incident's timeline (actions without an incident are audited
    by their record alone)."""
    incident = incident_of(session, record)
    if incident is None:
        return
    store.add_event(
        session,
        incident,
        "action",
        text,
        actor=by.id if by else None,
        actor_name=by.name if by else None,
        data={
            "action_id": record.id,
            "action": record.kind,
            "target": record.target,
            "status": record.status,
            **(data or {}),
        },
    )


def tell(session: Session, record: ActionRecord, message: jobs.Message) -> int:
    """Post `message` where the action belongs: the incident's thread, or else the channel it
    was asked for in. Through the outbox, so it survives a Slack outage."""
    incident = incident_of(session, record)
    if incident is not None:
        return jobs.reply(session, incident, message)
    channel = (record.plan or {}).get("channel")
    if not channel:
        return 0
    enqueue(
        session,
        POST,
        payload={"channel": channel, "message": message, "action_id": record.id},
        lane="actions",
    )
    return 1


def queue_execution(
    session: Session, record: ActionRecord, expected: Collection[str], now: datetime, **values: Any
) -> bool:
    """Lock the target and queue the execution job (dedupe key `action:<id>`: a second queueing
    of the same record is a no-op). False when the record had already moved on."""
    take_lock(session, record, now)
    plan = {**(record.plan or {}), "queued_at": now.isoformat()}
    if not advance(session, record, expected, ActionStatus.QUEUED, plan=plan, **values):
        release_lock(session, record)
        return False
    enqueue(
        session,
        EXECUTE,
        incident_id=record.incident_id,
        payload={"action_id": record.id},
        lane=f"action-{record.id}",
        priority=1,
        dedupe_key=f"action:{record.id}",
    )
    return True


def silence_records(session: Session, incident_id: int) -> list[ActionRecord]:
    """The incident's silence actions that created silences."""
    return list(
        session.exec(
            select(ActionRecord).where(
                ActionRecord.incident_id == incident_id,
                ActionRecord.kind == "silence",
                ActionRecord.status == ActionStatus.SUCCEEDED.value,
            )
        ).all()
    )


def active_silence_ids(session: Session, incident_id: int) -> list[str]:
    """Silences the bot made for the incident and has not seen expired."""
    ids: list[str] = []
    for record in silence_records(session, incident_id):
        result = record.result or {}
        expired = set(result.get("expired") or [])
        ids += [str(i) for i in result.get("silences") or [] if str(i) not in expired]
    return ids


def mark_expired(
    session: Session, incident: Incident, silence_ids: Collection[str], *, by: str | None
) -> None:
    """Note on the bot's silence records that these silences were expired (by a person, or
    None: on resolution)."""
    assert incident.id is not None
    wanted = {str(i) for i in silence_ids}
    for record in silence_records(session, incident.id):
        result = dict(record.result or {})
        ids = {str(i) for i in result.get("silences") or []}
        if ids & wanted:
            result["expired"] = sorted(set(result.get("expired") or []) | (ids & wanted))
            result["expired_by"] = by
            record.result = result
            session.add(record)
