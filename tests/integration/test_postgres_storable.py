"""Payloads valid for Alertmanager that PostgreSQL cannot store as they are: never answered
like a database outage (a 503 would make Alertmanager resend them forever). The real bot on a
real PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from bot.config import Settings
from bot.sandbox.slack_api import SlackStandIn
from tests.support.botserver import RunningBot, run_bot
from tests.support.payloads import alert, notification
from tests.support.postgres import PostgresServer, fresh_database


@pytest.fixture
def bot(postgres: PostgresServer, settings_for: Callable[..., Settings]) -> Iterator[RunningBot]:
    with run_bot(settings_for(database_url=fresh_database(postgres))) as running:
        yield running


def still_healthy(bot: RunningBot) -> None:
    assert httpx.get(f"{bot.url}/readyz", timeout=10).status_code == 200
    response = bot.post_alert(notification(alert(pod="ordinary"), group_key="ordinary"))
    assert response.status_code == 200
    assert response.json()["incident"] is not None


def test_a_nul_character_in_a_label_is_refused_naming_the_label(bot: RunningBot, slack: SlackStandIn) -> None:
    response = bot.post_alert(notification(alert(pod="gpu\u00000")))
    assert response.status_code == 422
    body = response.json()
    assert {
        "field": "alerts.0.labels.pod",
        "message": "contains a NUL character, which cannot be stored",
    } in (body["details"])
    still_healthy(bot)


def test_a_group_label_too_long_to_index_is_refused_naming_the_group_key(bot: RunningBot) -> None:
    huge = "x" * 5000
    response = bot.post_alert(notification(alert(model=huge), group_key=f'{{}}:{{model="{huge}"}}'))
    assert response.status_code == 422
    assert [d["field"] for d in response.json()["details"]] == ["groupKey"]
    still_healthy(bot)


def test_a_long_label_value_outside_the_group_key_is_stored(bot: RunningBot) -> None:
    huge = "y" * 20000
    response = bot.post_alert(notification(alert(pod="p", annotations={"description": huge, "summary": "s"})))
    assert response.status_code == 200
    detail = bot.incident(response.json()["incident"])
    assert detail["alerts"][0]["annotations"]["description"] == huge


def test_an_out_of_range_count_is_clamped_and_stored(bot: RunningBot) -> None:
    response = bot.post_alert(notification(alert(pod="many"), group_key="many", truncatedAlerts=2**40))
    assert response.status_code == 200
    assert response.json()["incident"] == "INC-1"
    still_healthy(bot)


def test_a_nul_character_in_an_extra_field_is_kept(bot: RunningBot) -> None:
    item = alert(pod="extra")
    item["comment"] = "before\u0000after"
    response = bot.post_alert(notification(item, group_key="extra"))
    assert response.status_code == 200
    assert response.json()["incident"] == "INC-1"
