"""Who holds an outbox job, for how long, and how a dead holder's jobs come back quickly.

A claim is a short lease (`LEASE`) that a heartbeat renews while the job runs, so a replica
killed with SIGKILL (no shutdown hook runs) holds its jobs at most `LEASE` longer, not the
minutes a slow Slack call might need. Every claim also names its owner as
`host:pid:boot/worker`: a process on the same host whose pid is gone, or that is this very
pid under another boot token (a container restarted as pid 1), is certainly dead, so its jobs
are released at once, at start and by a periodic sweep: a single bot restarted after a
kill -9 on SQLite runs its previous jobs immediately. A released job keeps its attempt count,
so its handler knows the outcome of the earlier attempt is unknown and first looks for what
that attempt may already have done (the Slack metadata marker).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime, timedelta

import anyio
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bot.db import utcnow

__all__ = [
    "HEARTBEAT_SECONDS",
    "LEASE",
    "SWEEP_SECONDS",
    "heartbeat",
    "owner_dead",
    "process_identity",
    "release_dead_claims",
    "sweep_periodically",
]

logger = logging.getLogger(__name__)

LEASE = timedelta(seconds=20)
HEARTBEAT_SECONDS = 5.0
SWEEP_SECONDS = 5.0

_BOOT = uuid.uuid4().hex[:8]
_JOBS = sa.table(
    "outbox_jobs",
    sa.column("id", sa.Integer),
    sa.column("status", sa.String),
    sa.column("locked_by", sa.String),
    sa.column("locked_until", sa.DateTime),
    sa.column("not_before", sa.DateTime),
)


def _naive(moment: datetime) -> datetime:
    """The columns store naive UTC (bot.db.UTCDateTime); plain Core needs it spelled out."""
    return moment.astimezone(UTC).replace(tzinfo=None)


def process_identity() -> str:
    """`host:pid:boot`, the prefix of every claim this process makes."""
    return f"{socket.gethostname()}:{os.getpid()}:{_BOOT}"


def owner_dead(owner: str, identity: str) -> bool:
    """Whether the process named by `owner` (a claim or journal owner) is certainly gone,
    seen from the process `identity`; False when it cannot tell (another host)."""
    host, pid, boot = identity.split(":")
    return _owner_dead(owner, host, int(pid), boot)


def _owner_dead(locked_by: str, host: str, pid: int, boot: str) -> bool:
    owner = locked_by.split("/", 1)[0]
    parts = owner.split(":")
    if len(parts) < 2 or parts[0] != host or not parts[1].isdigit():
        return False  # another host: its lease tells
    owner_pid = int(parts[1])
    owner_boot = parts[2] if len(parts) > 2 else None
    if owner_pid == pid:
        return owner_boot != boot
    return not _alive(owner_pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child its parent has not reaped yet is a zombie: dead for our purpose
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def release_dead_claims(engine: Engine, identity: str) -> int:
    """Put the running jobs of dead processes on this host back to pending, due now."""
    host, pid, boot = identity.split(":")
    with engine.begin() as connection:
        rows = connection.execute(
            sa.select(_JOBS.c.id, _JOBS.c.locked_by).where(
                _JOBS.c.status == "running", _JOBS.c.locked_by.like(f"{host}:%")
            )
        ).all()
        dead = [row.id for row in rows if row.locked_by and _owner_dead(row.locked_by, host, int(pid), boot)]
        if not dead:
            return 0
        now = _naive(utcnow())
        connection.execute(
            sa.update(_JOBS)
            .where(_JOBS.c.id.in_(dead), _JOBS.c.status == "running")
            .values(status="pending", locked_by=None, locked_until=None, not_before=now)
        )
    logger.warning("released outbox jobs of a dead process", extra={"jobs": dead})
    return len(dead)


def renew(engine: Engine, job_id: int, worker: str) -> bool:
    """Extend the lease of a job we still hold; False when it is no longer ours."""
    with engine.begin() as connection:
        result = connection.execute(
            sa.update(_JOBS)
            .where(_JOBS.c.id == job_id, _JOBS.c.locked_by == worker, _JOBS.c.status == "running")
            .values(locked_until=_naive(utcnow() + LEASE))
        )
        return bool(result.rowcount)


@asynccontextmanager
async def heartbeat(engine: Engine, job_id: int, worker: str) -> AsyncIterator[None]:
    """Renew the job's lease while the body runs (a slow Slack call, a long action)."""

    async def beat() -> None:
        while True:
            await anyio.sleep(HEARTBEAT_SECONDS)
            try:
                if not await anyio.to_thread.run_sync(renew, engine, job_id, worker):
                    logger.warning("outbox job lease lost", extra={"job": job_id})
                    return
            except Exception:
                logger.warning("outbox lease renewal failed; will retry", extra={"job": job_id})

    task = asyncio.create_task(beat(), name=f"lease-{job_id}")
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


async def sweep_periodically(
    engine: Engine, identity: str, on_release: Callable[[], None] | None = None
) -> None:
    """Release dead same-host claims every few seconds (a sibling replica killed on this host)."""
    while True:
        try:
            released = await anyio.to_thread.run_sync(release_dead_claims, engine, identity)
            if released and on_release is not None:
                on_release()
        except Exception:
            logger.warning("outbox claim sweep failed; database unavailable?")
        await anyio.sleep(SWEEP_SECONDS)
