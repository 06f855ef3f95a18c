"""The bot on a real PostgreSQL: the database several replicas share in production."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import ExitStack

import httpx
import pytest

from bot.config import Settings
from bot.sandbox.slack_api import SlackStandIn
from tests.support.botserver import run_bot, wait_until
from tests.support.payloads import alert, notification
from tests.support.postgres import PostgresServer, fresh_database


@pytest.fixture
def database_url(postgres: PostgresServer) -> str:
    return fresh_database(postgres)


def roots(slack: SlackStandIn) -> list[object]:
    return [m for m in slack.messages("C0INCIDENTS") if not m.thread_ts or m.thread_ts == m.ts]


def test_alert_to_slack_on_postgres(
    settings_for: Callable[..., Settings], slack: SlackStandIn, database_url: str
) -> None:
    with run_bot(settings_for(database_url=database_url)) as bot:
        assert bot.post_alert(notification(alert())).status_code == 200
        wait_until(lambda: bot.incident("INC-1")["ts"], message="root posted")
        bot.post_alert(notification(alert(status="resolved")))
        wait_until(lambda: bot.incident(1)["status"] == "resolved", message="resolved")
    assert len(roots(slack)) == 1


def test_simultaneous_duplicate_deliveries_yield_one_incident(
    settings_for: Callable[..., Settings], slack: SlackStandIn, database_url: str
) -> None:
    payload = notification(alert(pod="a"), alert(pod="b"))
    with run_bot(settings_for(database_url=database_url)) as bot:
        barrier = threading.Barrier(6)
        codes: list[int] = []

        def deliver() -> None:
            barrier.wait()
            codes.append(bot.post_alert(payload).status_code)

        threads = [threading.Thread(target=deliver) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert codes == [200] * 6
        assert len(bot.incidents()) == 1
        wait_until(lambda: bot.incident(1)["ts"], message="root posted")
    assert len(roots(slack)) == 1


def test_database_down_answers_503_so_alertmanager_resends(
    settings_for: Callable[..., Settings], slack: SlackStandIn, postgres: PostgresServer, database_url: str
) -> None:
    with run_bot(settings_for(database_url=database_url)) as bot:
        postgres.stop()
        try:
            response = bot.post_alert(notification(alert()))
            assert response.status_code == 503
            assert response.headers["retry-after"] == "5"
            assert httpx.get(f"{bot.url}/readyz", timeout=30).status_code == 503
            assert httpx.get(f"{bot.url}/healthz").status_code == 200
        finally:
            postgres.start()
        # Alertmanager's resend now succeeds, and the incident reaches Slack.
        assert bot.post_alert(notification(alert())).status_code == 200
        wait_until(lambda: bot.incident(1)["ts"], timeout=30, message="delivered after the database returned")
        assert httpx.get(f"{bot.url}/readyz").status_code == 200
    assert len(roots(slack)) == 1


def test_replicas_share_the_outbox_without_posting_twice(
    settings_for: Callable[..., Settings], slack: SlackStandIn, database_url: str
) -> None:
    """Two bot replicas on one database: FOR UPDATE SKIP LOCKED hands each job to one of them."""
    slack.outage()
    with ExitStack() as stack:
        first = stack.enter_context(run_bot(settings_for(database_url=database_url, workers=3)))
        second = stack.enter_context(run_bot(settings_for(database_url=database_url, workers=3)))
        for n in range(10):
            (first if n % 2 else second).post_alert(notification(alert(pod=f"p{n}"), group_key=f"g{n}"))
        slack.restore()
        wait_until(lambda: len(roots(slack)) == 10, timeout=60, message="ten incidents posted")
        wait_until(lambda: all(i["ts"] for i in first.incidents()), timeout=30, message="every ts stored")
    assert len(roots(slack)) == 10


def test_migrations_build_the_models_schema_on_postgres(database_url: str) -> None:
    from bot.db import create_db_engine
    from bot.schema import init_schema
    from tests.unit.test_migrations import schema_drift

    engine = create_db_engine(database_url)
    init_schema(engine)
    init_schema(engine)  # a second replica starting: nothing to do
    assert schema_drift(engine) == []
    engine.dispose()
