"""Takeover time after SIGKILL of a bot holding outbox jobs.

- PostgreSQL: two `serve` replicas on one real PostgreSQL (Debian's package, started here);
  Slack is slow (the stand-in delays chat.postMessage 2 s), the replica that received the
  storm is killed with SIGKILL while holding root-message jobs; figure: seconds from the kill
  until every incident has its root message, posted by the survivor.
- SQLite: one bot, killed the same way and started again; figure: seconds from the restart
  command until every incident has its root message.
Both also check every incident is in Slack exactly once.

    python -m bench.takeover [--incidents 20]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa

from bot.db import create_db_engine
from bot.sandbox.slack_api import SlackStandIn
from tests.support.botserver import BotProcess, make_settings, wait_until
from tests.support.payloads import alert, notification
from tests.support.postgres import PostgresServer


def held_by(url: str, pid: int) -> int:
    engine = create_db_engine(url)
    with engine.connect() as connection:
        count = connection.execute(
            sa.text("SELECT count(*) FROM outbox_jobs WHERE status = 'running' AND locked_by LIKE :owner"),
            {"owner": f"%:{pid}:%"},
        ).scalar()
    engine.dispose()
    return int(count or 0)


def all_posted(url: str, total: int) -> bool:
    engine = create_db_engine(url)
    with engine.connect() as connection:
        posted = connection.execute(
            sa.text("SELECT count(*) FROM incidents WHERE slack_ts IS NOT NULL")
        ).scalar()
    engine.dispose()
    return posted == total


def roots(slack: SlackStandIn) -> list[str]:
    keys = []
    for message in slack.messages("C0INCIDENTS"):
        event = (message.metadata or {}).get("event_payload") or {}
        if event.get("incident") and not message.thread_ts:
            keys.append(str(event["incident"]))
    return keys


def storm(bot: BotProcess, incidents: int) -> None:
    for n in range(incidents):
        response = bot.post_alert(notification(alert(pod=f"p{n}"), group_key=f"takeover-{n}"))
        assert response.status_code == 200, response.text


def on_postgres(incidents: int) -> None:
    server = PostgresServer().start()
    try:
        name = f"bot_{uuid.uuid4().hex[:12]}"
        admin = sa.create_engine(server.url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        url = server.url.rsplit("/", 1)[0] + f"/{name}"
        with tempfile.TemporaryDirectory() as tmp, SlackStandIn() as slack:
            settings = make_settings(Path(tmp), slack.url, database_url=url, slack_timeout=30.0)
            slack.delay_next("chat.postMessage", 2.0, times=3)
            doomed = BotProcess(settings, Path(tmp) / "doomed.log").start()
            survivor = BotProcess(settings, Path(tmp) / "survivor.log").start()
            try:
                storm(doomed, incidents)
                assert doomed.process is not None
                pid = doomed.process.pid
                wait_until(lambda: held_by(url, pid) >= 1, timeout=30, message="jobs held")
                held = held_by(url, pid)
                killed = time.monotonic()
                doomed.kill()
                wait_until(lambda: all_posted(url, incidents), timeout=120, message="all posted")
                took = time.monotonic() - killed
            finally:
                doomed.stop()
                survivor.stop()
            keys = roots(slack)
            print(
                f"PostgreSQL, 2 replicas: killed one holding {held} job(s); every incident in Slack "
                f"{took:.1f} s after the kill; root messages {len(keys)} for {incidents} incidents "
                f"({len(set(keys))} distinct)"
            )
    finally:
        server.remove()


def on_sqlite(incidents: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, SlackStandIn() as slack:
        settings = make_settings(Path(tmp), slack.url, slack_timeout=30.0)
        slack.delay_next("chat.postMessage", 2.0)
        bot = BotProcess(settings, Path(tmp) / "bot.log").start()
        try:
            storm(bot, incidents)
            assert bot.process is not None
            pid = bot.process.pid
            wait_until(lambda: held_by(settings.database_url, pid) >= 1, timeout=30, message="jobs held")
            held = held_by(settings.database_url, pid)
            bot.kill()
            slack.wait_for("chat.postMessage", 1, timeout=10)
            restarted = time.monotonic()
            bot.start()
            started = time.monotonic() - restarted
            wait_until(
                lambda: all_posted(settings.database_url, incidents), timeout=120, message="all posted"
            )
            took = time.monotonic() - restarted
        finally:
            bot.stop()
        keys = roots(slack)
        print(
            f"SQLite, restart after kill -9 holding {held} job(s): every incident in Slack {took:.1f} s "
            f"after the restart command (process up after {started:.1f} s); root messages {len(keys)} "
            f"for {incidents} incidents ({len(set(keys))} distinct)"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--incidents", type=int, default=20)
    args = parser.parse_args(argv)
    on_postgres(args.incidents)
    on_sqlite(args.incidents)
    return 0


if __name__ == "__main__":
    sys.exit(main())
