"""Alertmanager notifications through HTTP into the real bot, out to the Slack stand-in."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx

from bot.config import Settings
from bot.sandbox.slack_api import SlackStandIn
from tests.support.botserver import RunningBot, run_bot, wait_until
from tests.support.payloads import alert, notification, recorded_bytes


def root_messages(slack: SlackStandIn) -> list[object]:
    return [m for m in slack.messages("C0INCIDENTS") if m.thread_ts in (None, m.ts)]


def test_alert_becomes_one_root_message_with_thread_updates_and_resolution(
    bot: RunningBot, slack: SlackStandIn
) -> None:
    firing = notification(alert(pod="vllm-0", model_name="llama-3-8b", deployment="vllm-llama"))
    response = bot.post_alert(firing)
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "incident": "INC-1", "duplicate": False}

    (post,) = slack.wait_for("chat.postMessage")
    assert post.params["channel"] == "C0INCIDENTS"
    assert "INC-1 · VLLMHighE2ELatency: p99 latency above 2s" in json.dumps(
        post.params["blocks"], ensure_ascii=False
    )
    incident = wait_until(lambda: bot.incident("INC-1")["ts"] and bot.incident("INC-1"), message="ts stored")
    assert incident["channel"] == "C0INCIDENTS"

    # A second alert joins: the root is updated, the thread is told.
    bot.post_alert(
        notification(
            alert(pod="vllm-0", model_name="llama-3-8b", deployment="vllm-llama"),
            alert(pod="vllm-1", model_name="llama-3-8b", deployment="vllm-llama"),
        )
    )
    slack.wait_for("chat.update")
    replies = wait_until(lambda: slack.thread("C0INCIDENTS", incident["ts"]), message="thread reply")
    assert "1 alert firing" in replies[0].text

    # Everything resolves: the root says so, the thread too, and nothing is posted twice.
    bot.post_alert(
        notification(
            alert(pod="vllm-0", model_name="llama-3-8b", deployment="vllm-llama", status="resolved"),
            alert(pod="vllm-1", model_name="llama-3-8b", deployment="vllm-llama", status="resolved"),
        )
    )
    wait_until(lambda: len(slack.thread("C0INCIDENTS", incident["ts"])) == 2, message="resolution reply")
    wait_until(
        lambda: slack.message("C0INCIDENTS", incident["ts"]).text.startswith(":white_check_mark: RESOLVED"),
        message="root message shows resolved",
    )
    assert len(root_messages(slack)) == 1
    assert bot.incident(1)["status"] == "resolved"


def test_resent_notification_is_acknowledged_and_posts_nothing_new(
    bot: RunningBot, slack: SlackStandIn
) -> None:
    payload = notification(alert())
    assert bot.post_alert(payload).json()["duplicate"] is False
    assert bot.post_alert(payload).json() == {"status": "ok", "incident": "INC-1", "duplicate": True}
    slack.wait_for("chat.postMessage")
    wait_until(lambda: bot.incident(1)["ts"], message="root posted")
    assert len(slack.calls("chat.postMessage")) == 1
    assert len(bot.incidents()) == 1


def test_webhook_token_is_required_when_set(bot: RunningBot) -> None:
    missing = bot.post_alert(notification(alert()), token=None)
    wrong = bot.post_alert(notification(alert()), token="guess")
    assert missing.status_code == wrong.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert bot.incidents() == []


def test_bad_input_gets_clear_errors_and_the_server_stays_healthy(bot: RunningBot) -> None:
    malformed = bot.post_alert(b'{"receiver": "x", ')
    assert malformed.status_code == 400
    assert "malformed JSON" in malformed.json()["error"]

    invalid = bot.post_alert({"receiver": "x", "status": "firing", "alerts": [{"labels": {}}]})
    assert invalid.status_code == 422
    fields = {d["field"] for d in invalid.json()["details"]}
    assert {"groupKey", "alerts.0.labels", "alerts.0.startsAt"} <= fields

    with bot.client() as client:
        too_big = client.post("/alertmanager", content=b"x" * (bot.services.settings.max_body_bytes + 1))
        assert too_big.status_code == 413
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").status_code == 200
    assert bot.post_alert(notification(alert())).status_code == 200


def test_body_limit_applies_without_content_length(settings_for: Callable[..., Settings]) -> None:
    with run_bot(settings_for(max_body_bytes=1000)) as bot:

        def chunks():  # type: ignore[no-untyped-def]
            for _ in range(10):
                yield b"x" * 500

        with bot.client() as client:
            response = client.post("/alertmanager", content=chunks())
        assert response.status_code == 413


def test_recorded_real_payloads_are_all_accepted(bot: RunningBot, slack: SlackStandIn) -> None:
    for name in (
        "alertmanager_v4_firing_1alert_tz_offset_metalmatze.json",
        "alertmanager_v4_firing_3alerts_blackbox_alertmonitor.json",
        "alertmanager_v4_firing_12alerts_large_group_msteams.json",
    ):
        assert bot.post_alert(recorded_bytes(name)).status_code == 200
    slack.wait_for("chat.postMessage", 3)
    assert {i["key"] for i in bot.incidents()} == {"INC-1", "INC-2", "INC-3"}


def test_metrics_count_what_happened(bot: RunningBot, slack: SlackStandIn) -> None:
    bot.post_alert(notification(alert()))
    bot.post_alert(b"nope")
    slack.wait_for("chat.postMessage")
    wait_until(lambda: bot.incident(1)["ts"], message="root posted")
    text = httpx.get(f"{bot.url}/metrics").text
    assert 'incident_bot_notifications_received_total{result="accepted"} 1.0' in text
    assert 'incident_bot_notifications_received_total{result="malformed"} 1.0' in text
    assert 'incident_bot_incidents_opened_total{severity="critical"} 1.0' in text
    assert 'incident_bot_slack_calls_total{method="chat.postMessage"} 1.0' in text
    assert 'incident_bot_outbox_jobs{status="pending"} 0.0' in text


def test_label_with_broadcast_does_not_ping_anyone(bot: RunningBot, slack: SlackStandIn) -> None:
    bot.post_alert(notification(alert(pod="<!channel>", annotations={"summary": "<!here> <@U0ONCALL1> hi"})))
    (post,) = slack.wait_for("chat.postMessage")
    raw = json.dumps(post.params)
    for needle in ("<!channel>", "<!here>", "<@U0ONCALL1>"):
        assert needle not in raw
    assert "&lt;!channel&gt;" in raw
