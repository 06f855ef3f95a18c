"""Faults through the real boundaries: `serve` processes on one real PostgreSQL receiving the
same notifications at once (Alertmanager HA sends each to every replica), Slack answering 429
and 500 for a while, PostgreSQL restarted mid-storm. Afterwards every acknowledged
notification is in the database and every incident is in Slack exactly once."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from bot.db import create_db_engine
from bot.sandbox.slack_api import SlackStandIn
from tests.support.botserver import WEBHOOK_TOKEN, BotProcess, make_settings, wait_until
from tests.support.payloads import alert, notification
from tests.support.postgres import PostgresServer, fresh_database

GROUPS = 10


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.remove()


def payload(n: int) -> dict[str, Any]:
    return notification(alert(pod=f"gpu-{n}"), group_key=f'{{}}:{{pod="gpu-{n}"}}')


def root_keys(slack: SlackStandIn) -> list[str]:
    keys = []
    for message in slack.messages("C0INCIDENTS"):
        event = (message.metadata or {}).get("event_payload") or {}
        if event.get("incident") and (not message.thread_ts or message.thread_ts == message.ts):
            keys.append(str(event["incident"]))
    return keys


def incidents_by_group(url: str) -> dict[str, list[tuple[int, str | None]]]:
    engine = create_db_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT id, group_key, slack_ts FROM incidents")).all()
    engine.dispose()
    found: dict[str, list[tuple[int, str | None]]] = {}
    for row in rows:
        found.setdefault(row.group_key, []).append((row.id, row.slack_ts))
    return found


def deliver_until_accepted(url: str, body: dict[str, Any], deadline: float) -> None:
    """Alertmanager's behaviour: resend after a 5xx or a network error until a 2xx."""
    while True:
        try:
            response = httpx.post(
                f"{url}/alertmanager",
                json=body,
                headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"},
                timeout=15,
            )
            if response.status_code == 200:
                return
            assert response.status_code >= 500, response.text  # a 4xx would be lost for good
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "notification never accepted"
        time.sleep(0.2)


def stored_notifications(url: str) -> tuple[list[str], list[str], int]:
    """Group keys of the stored notifications, pods of the stored alerts, unapplied journal rows."""
    engine = create_db_engine(url)
    with engine.connect() as connection:
        groups = connection.execute(sa.text("SELECT group_key FROM notifications")).scalars().all()
        alerts = connection.execute(sa.text("SELECT labels FROM alerts")).scalars().all()
        journal = connection.execute(sa.text("SELECT count(*) FROM intake_journal")).scalar_one()
    engine.dispose()
    pods = [str((labels if isinstance(labels, dict) else json.loads(labels))["pod"]) for labels in alerts]
    return sorted(groups), sorted(pods), int(journal)


@pytest.mark.parametrize("replicas", [2, 3])
def test_replicas_receiving_the_same_notifications_open_one_incident_and_post_once(
    tmp_path: Path, slack: SlackStandIn, postgres: PostgresServer, replicas: int
) -> None:
    url = fresh_database(postgres)
    settings = make_settings(tmp_path, slack.url, database_url=url)
    # Slack rate-limits, then fails, for a while.
    slack.fail_next("chat.postMessage", status=429, retry_after=1, times=3)
    slack.fail_next("chat.postMessage", status=500, times=3)
    bots = [BotProcess(settings, tmp_path / f"replica{i}.log").start() for i in range(replicas)]
    acknowledged: list[tuple[int, int]] = []
    try:
        deadline = time.monotonic() + 60

        def deliver(replica: int, n: int) -> None:
            deliver_until_accepted(bots[replica].url, payload(n), deadline)
            acknowledged.append((replica, n))

        # Every replica gets every notification at the same moment, as from Alertmanager HA.
        threads = [
            threading.Thread(target=deliver, args=(replica, n))
            for n in range(GROUPS)
            for replica in range(replicas)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wait_until(
            lambda: (
                len(incidents_by_group(url)) == GROUPS
                and all(ts for rows in incidents_by_group(url).values() for _, ts in rows)
            ),
            timeout=60,
            message="every group's incident in Slack",
        )
    finally:
        for bot in bots:
            bot.stop()
    assert sorted(acknowledged) == [(r, n) for r in range(replicas) for n in range(GROUPS)]
    # Every acknowledged notification is in the database, applied once (the copies the other
    # replicas received are the same body: one row), and nothing is left in the journal.
    group_keys, pods, unapplied = stored_notifications(url)
    assert group_keys == sorted(payload(n)["groupKey"] for n in range(GROUPS))
    assert pods == sorted(f"gpu-{n}" for n in range(GROUPS))
    assert unapplied == 0
    groups = incidents_by_group(url)
    assert all(len(rows) == 1 for rows in groups.values()), groups
    keys = root_keys(slack)
    assert sorted(keys) == sorted(f"INC-{rows[0][0]}" for rows in groups.values()), keys
    assert [c for c in slack.calls("chat.postMessage") if c.status in (429, 500)], "the faults were served"


def test_postgres_restarted_mid_storm_loses_nothing(
    tmp_path: Path, slack: SlackStandIn, postgres: PostgresServer
) -> None:
    url = fresh_database(postgres)
    bot = BotProcess(make_settings(tmp_path, slack.url, database_url=url), tmp_path / "bot.log").start()
    accepted: list[int] = []
    try:
        deadline = time.monotonic() + 90

        def storm() -> None:
            for n in range(2 * GROUPS):
                deliver_until_accepted(bot.url, payload(n), deadline)
                accepted.append(n)
                time.sleep(0.05)

        sender = threading.Thread(target=storm)
        sender.start()
        wait_until(lambda: len(accepted) >= GROUPS // 2, timeout=30, message="the storm to be under way")
        postgres.stop()
        time.sleep(2)
        postgres.start()
        sender.join()
        wait_until(
            lambda: (
                len(incidents_by_group(url)) == 2 * GROUPS
                and all(ts for rows in incidents_by_group(url).values() for _, ts in rows)
            ),
            timeout=60,
            message="every accepted notification applied and posted",
        )
    finally:
        bot.stop()
    assert accepted == list(range(2 * GROUPS))
    groups = incidents_by_group(url)
    assert all(len(rows) == 1 for rows in groups.values()), groups
    assert sorted(root_keys(slack)) == sorted(f"INC-{rows[0][0]}" for rows in groups.values())
