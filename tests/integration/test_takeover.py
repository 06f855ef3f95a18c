"""A bot killed with SIGKILL while it holds outbox jobs: its work is taken over quickly and
every incident reaches Slack exactly once. Real `serve` processes, the Slack stand-in, SQLite
and a real PostgreSQL."""

from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy as sa

from bot.db import create_db_engine
from bot.sandbox.slack_api import SlackStandIn
from tests.support.botserver import BotProcess, make_settings, wait_until
from tests.support.payloads import alert, notification
from tests.support.postgres import PostgresServer, fresh_database

INCIDENTS = 6


def root_markers(slack: SlackStandIn) -> list[str]:
    """The incident key of every root message in the channel (the metadata the bot attaches)."""
    keys = []
    for message in slack.messages("C0INCIDENTS"):
        if message.thread_ts and message.thread_ts != message.ts:
            continue
        payload = (message.metadata or {}).get("event_payload") or {}
        keys.append(str(payload.get("incident")))
    return keys


def running_roots(url: str, pid: int | None = None) -> int:
    """Root-message jobs claimed and not finished (by `pid`, when given)."""
    engine = create_db_engine(url)
    query = "SELECT count(*) FROM outbox_jobs WHERE status = 'running' AND kind = 'slack.post_root'"
    params: dict[str, str] = {}
    if pid is not None:
        query += " AND locked_by LIKE :owner"
        params["owner"] = f"%:{pid}:%"
    with engine.connect() as connection:
        count = int(connection.execute(sa.text(query), params).scalar() or 0)
    engine.dispose()
    return count


def posted_everywhere(url: str) -> bool:
    engine = create_db_engine(url)
    with engine.connect() as connection:
        unposted = sa.text("SELECT count(*) FROM incidents WHERE slack_ts IS NULL")
        missing = connection.execute(unposted).scalar()
        total = connection.execute(sa.text("SELECT count(*) FROM incidents")).scalar()
    engine.dispose()
    return total == INCIDENTS and missing == 0


def post_storm(bot: BotProcess) -> None:
    for n in range(INCIDENTS):
        response = bot.post_alert(notification(alert(pod=f"p{n}"), group_key=f'{{}}:{{pod="p{n}"}}'))
        assert response.status_code == 200, response.text


def test_a_bot_restarted_after_kill9_on_sqlite_runs_its_jobs_at_once(
    tmp_path: Path, slack: SlackStandIn
) -> None:
    settings = make_settings(tmp_path, slack.url, slack_timeout=30.0)
    # Slack is slow: the first root message is still on the wire when the bot dies, and the
    # other workers hold their jobs waiting for the channel.
    slack.delay_next("chat.postMessage", 2.0)
    bot = BotProcess(settings, tmp_path / "bot.log").start()
    try:
        post_storm(bot)
        wait_until(lambda: running_roots(settings.database_url) >= 2, message="jobs held by the bot")
        bot.kill()
        # The post in flight went through although the bot never learned of it.
        slack.wait_for("chat.postMessage", 1, timeout=10)
        bot.start()
        wait_until(
            lambda: posted_everywhere(settings.database_url),
            timeout=25,
            message="every incident in Slack after the restart (not after a lease of minutes)",
        )
    finally:
        bot.stop()
    keys = root_markers(slack)
    assert sorted(keys) == sorted(f"INC-{n}" for n in range(1, INCIDENTS + 1)), keys


def test_a_replica_killed_on_postgresql_hands_its_jobs_to_the_other(
    tmp_path: Path, slack: SlackStandIn, postgres: PostgresServer
) -> None:
    url = fresh_database(postgres)
    settings = make_settings(tmp_path, slack.url, database_url=url, slack_timeout=30.0)
    slack.delay_next("chat.postMessage", 2.0, times=2)
    doomed = BotProcess(settings, tmp_path / "doomed.log").start()
    survivor = BotProcess(settings, tmp_path / "survivor.log").start()
    try:
        post_storm(doomed)
        assert doomed.process is not None
        pid = doomed.process.pid
        wait_until(lambda: running_roots(url, pid) >= 1, message="jobs held by the doomed replica")
        doomed.kill()
        assert not _alive(pid)
        wait_until(
            lambda: posted_everywhere(url),
            timeout=30,
            message="the surviving replica to finish the dead one's jobs within 30 s",
        )
    finally:
        doomed.stop()
        survivor.stop()
    keys = root_markers(slack)
    assert sorted(keys) == sorted(f"INC-{n}" for n in range(1, INCIDENTS + 1)), keys


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
