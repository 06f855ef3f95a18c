"""The journal applier as `serve` runs it: a process of its own beside the server. Killed, it
is started again and nothing acknowledged is lost or applied twice; a killed server takes it
along; a notification the database refuses is kept for `incident-bot journal`; entries an
older version left in the journal table are applied. Real `serve` processes, the Slack
stand-in, SQLite files."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import httpx
import sqlalchemy as sa

from bot.db import create_db_engine, utcnow
from bot.intake_journal import FileSink, JournalEntry, journal_file_path
from bot.intake_process import CHILD_COMMAND
from bot.sandbox.slack_api import SlackStandIn
from bot.schema import prepare_schema
from tests.support.botserver import BotProcess, make_settings, settings_env, wait_until
from tests.support.payloads import alert, notification

STORM = 120


def children(bot: BotProcess) -> dict[int, bytes]:
    """The serving process's child processes, with their command lines."""
    assert bot.process is not None
    found = {}
    tasks = Path(f"/proc/{bot.process.pid}/task")
    for task in tasks.iterdir() if tasks.exists() else ():
        for child in (task / "children").read_text().split():
            try:
                found[int(child)] = Path(f"/proc/{child}/cmdline").read_bytes()
            except FileNotFoundError:
                continue
    return found


def applier_pid(bot: BotProcess) -> int | None:
    """The serving process's applier child (bot/intake_process.py starts it)."""
    for pid, cmdline in children(bot).items():
        if CHILD_COMMAND.encode() in cmdline:
            return pid
    return None


def gone(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status  # exited, not yet reaped by whoever adopted it


def metric(bot: BotProcess, name: str) -> float:
    for line in httpx.get(f"{bot.url}/metrics", timeout=10).text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not on /metrics")


def counts(url: str) -> tuple[int, int]:
    engine = create_db_engine(url)
    with engine.connect() as connection:
        total = int(connection.execute(sa.text("SELECT count(*) FROM incidents")).scalar() or 0)
        posted = int(
            connection.execute(sa.text("SELECT count(*) FROM incidents WHERE slack_ts IS NOT NULL")).scalar()
            or 0
        )
    engine.dispose()
    return total, posted


def root_keys(slack: SlackStandIn) -> list[str]:
    keys = []
    for message in slack.messages("C0INCIDENTS"):
        if message.thread_ts and message.thread_ts != message.ts:
            continue
        payload = (message.metadata or {}).get("event_payload") or {}
        if payload.get("incident"):
            keys.append(str(payload["incident"]))
    return keys


def storm(bot: BotProcess, start: int, count: int) -> None:
    def send(n: int) -> None:
        response = bot.post_alert(notification(alert(pod=f"p{n}"), group_key=f'{{}}:{{pod="p{n}"}}'))
        assert response.status_code == 200, response.text

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(send, range(start, start + count)))


def test_the_applier_killed_mid_storm_is_started_again_and_nothing_is_lost(
    tmp_path: Path, slack: SlackStandIn
) -> None:
    settings = make_settings(tmp_path, slack.url)
    bot = BotProcess(settings, tmp_path / "bot.log").start()
    try:
        first = wait_until(lambda: applier_pid(bot), message="the applier process")
        storm(bot, 0, STORM // 2)
        os.kill(first, signal.SIGKILL)
        # Acknowledged while no applier runs: journaled, applied by the next one.
        storm(bot, STORM // 2, STORM // 2)
        second = wait_until(lambda: applier_pid(bot), message="the applier started again")
        assert second != first
        wait_until(
            lambda: counts(settings.database_url) == (STORM, STORM),
            timeout=60,
            message="every acknowledged notification an incident, in Slack",
        )
        assert metric(bot, "incident_bot_intake_applier_up") == 1.0
        assert metric(bot, "incident_bot_intake_journal_pending") == 0.0
    finally:
        bot.stop()
    keys = root_keys(slack)
    assert sorted(keys) == sorted(f"INC-{n}" for n in range(1, STORM + 1)), "each incident posted once"
    log = (tmp_path / "bot.log").read_text()
    assert "intake applier process exited; starting it again" in log


def test_a_killed_server_takes_its_applier_along(tmp_path: Path, slack: SlackStandIn) -> None:
    bot = BotProcess(make_settings(tmp_path, slack.url), tmp_path / "bot.log").start()
    try:
        child = wait_until(lambda: applier_pid(bot), message="the applier process")
        bot.kill()
        wait_until(lambda: gone(child), timeout=10, message="the orphaned applier to exit")
    finally:
        bot.stop()


def test_the_applier_is_the_only_process_beside_the_server(tmp_path: Path, slack: SlackStandIn) -> None:
    """No resource tracker of multiprocessing (a process of 13 MB) nor anything else."""
    bot = BotProcess(make_settings(tmp_path, slack.url), tmp_path / "bot.log").start()
    try:
        child = wait_until(lambda: applier_pid(bot), message="the applier process")
        storm(bot, 0, 10)
        wait_until(lambda: counts(bot.settings.database_url)[1] == 10, message="the storm applied and posted")
        assert list(children(bot)) == [child]
    finally:
        bot.stop()


def test_stopping_the_server_stops_its_applier(tmp_path: Path, slack: SlackStandIn) -> None:
    bot = BotProcess(make_settings(tmp_path, slack.url), tmp_path / "bot.log").start()
    child = wait_until(lambda: applier_pid(bot), message="the applier process")
    bot.stop()
    assert "incident-bot stopped" in (tmp_path / "bot.log").read_text()  # a clean shutdown
    wait_until(lambda: gone(child), timeout=10, message="the applier to exit with the server")


def journal_cli(settings_url: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", "journal", *args],
        env={**env, "INCIDENT_BOT_DATABASE_URL": settings_url},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_notification_the_database_refuses_is_kept_listed_and_can_be_dropped(
    tmp_path: Path, slack: SlackStandIn
) -> None:
    settings = make_settings(tmp_path, slack.url)
    engine = create_db_engine(settings.database_url)
    prepare_schema(engine, migrate_on_start=True)
    engine.dispose()
    path = journal_file_path(settings.database_url)
    assert path is not None
    # Journaled (acknowledged) by a version that accepted it; this version cannot apply it.
    refused = json.dumps({**notification(alert(pod="old")), "version": "3"})
    sink = FileSink(path)
    sink.append([refused, json.dumps(notification(alert(pod="fine"), group_key='{}:{pod="fine"}'))])
    sink.close()
    env = settings_env(settings)

    bot = BotProcess(settings, tmp_path / "bot.log").start()
    try:
        wait_until(lambda: counts(settings.database_url) == (1, 1), message="the good one applied")
        wait_until(lambda: metric(bot, "incident_bot_intake_failures") == 1.0, message="the failure counted")
        listed = journal_cli(settings.database_url, env)
        assert listed.returncode == 0, listed.stderr
        assert "0 notification(s) acknowledged and not yet applied" in listed.stdout
        assert "1 notification(s) the database refused" in listed.stdout
        assert "unsupported webhook payload version '3'" in listed.stdout
        shown = journal_cli(settings.database_url, env, "show", "1")
        assert shown.returncode == 0, shown.stderr
        assert '"version": "3"' in shown.stdout

        # Retried without fixing the cause: refused again, listed again under a new id.
        retried = journal_cli(settings.database_url, env, "retry", "1")
        assert retried.returncode == 0, retried.stderr
        assert "journaled again" in retried.stdout
        wait_until(
            lambda: re.search(r"^\s+2\s", journal_cli(settings.database_url, env).stdout, re.MULTILINE),
            message="the retried notification refused again, as failure 2",
        )
        dropped = journal_cli(settings.database_url, env, "drop", "2")
        assert dropped.returncode == 0, dropped.stderr
        assert "0 notification(s) the database refused" in journal_cli(settings.database_url, env).stdout
        missing = journal_cli(settings.database_url, env, "show", "2")
        assert missing.returncode == 1
        assert "no journal failure 2" in missing.stderr
    finally:
        bot.stop()
    assert counts(settings.database_url) == (1, 1)


def test_entries_an_older_version_left_in_the_journal_table_are_applied(
    tmp_path: Path, slack: SlackStandIn
) -> None:
    settings = make_settings(tmp_path, slack.url)
    engine = create_db_engine(settings.database_url)
    prepare_schema(engine, migrate_on_start=True)
    table = JournalEntry.__table__  # type: ignore[attr-defined]
    with engine.begin() as connection:
        connection.execute(
            sa.insert(table),
            [
                {
                    # Old: entries of another host are adopted once they are old enough.
                    "received_at": utcnow() - timedelta(hours=1),
                    "owner": "gone-host:1:boot",  # a process of a host that no longer exists
                    "body": json.dumps(notification(alert(pod=f"legacy{n}"), group_key=f'{{}}:{{p="{n}"}}')),
                    "attempts": 0,
                }
                for n in range(3)
            ],
        )
    engine.dispose()
    bot = BotProcess(settings, tmp_path / "bot.log").start()
    try:
        wait_until(
            lambda: counts(settings.database_url) == (3, 3), timeout=30, message="legacy entries applied"
        )
    finally:
        bot.stop()
    engine = create_db_engine(settings.database_url)
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM intake_journal")).scalar() == 0
    engine.dispose()
