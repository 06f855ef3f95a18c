"""Slack misbehaving: outages, rate limits, refusals, lost answers, and the bot killed mid-way.
An alert acknowledged with 200 must reach Slack exactly once, whatever happens."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from bot.config import Settings
from bot.sandbox.slack_api import SlackStandIn
from tests.support.botserver import BotProcess, RunningBot, run_bot, wait_until
from tests.support.payloads import alert, notification


def roots(slack: SlackStandIn, channel: str = "C0INCIDENTS") -> list[object]:
    return [m for m in slack.messages(channel) if not m.thread_ts or m.thread_ts == m.ts]


def test_slack_outage_delays_but_never_loses_an_incident(bot: RunningBot, slack: SlackStandIn) -> None:
    slack.outage()
    assert bot.post_alert(notification(alert())).status_code == 200
    slack.wait_for("chat.postMessage")  # tried, and failed
    assert roots(slack) == []
    slack.restore()
    wait_until(lambda: bot.incident(1)["ts"], timeout=30, message="delivery after the outage")
    assert len(roots(slack)) == 1


def test_server_errors_are_retried(bot: RunningBot, slack: SlackStandIn) -> None:
    slack.fail_next("chat.postMessage", status=500, times=2)
    bot.post_alert(notification(alert()))
    wait_until(lambda: bot.incident(1)["ts"], timeout=30, message="delivery after two 500s")
    statuses = [c.status for c in slack.calls("chat.postMessage")]
    assert statuses == [500, 500, 200]
    assert len(roots(slack)) == 1


def test_rate_limit_waits_for_retry_after(bot: RunningBot, slack: SlackStandIn) -> None:
    slack.fail_next("chat.postMessage", status=429, retry_after=2)
    bot.post_alert(notification(alert()))
    wait_until(lambda: bot.incident(1)["ts"], timeout=30, message="delivery after 429")
    limited, accepted = slack.calls("chat.postMessage")
    assert limited.status == 429
    assert accepted.at - limited.at >= 2.0 - 0.05  # Retry-After honoured (stand-in's own clock)


def test_permanent_slack_error_is_recorded_not_retried(bot: RunningBot, slack: SlackStandIn) -> None:
    slack.fail_next("chat.postMessage", ok_false_error="channel_not_found")
    bot.post_alert(notification(alert()))
    timeline = wait_until(
        lambda: [e for e in bot.incident(1)["timeline"] if e["kind"] == "slack_failed"],
        message="failure on timeline",
    )
    assert "channel_not_found" in timeline[0]["text"]
    with bot.client() as client:
        wait_until(
            lambda: 'incident_bot_outbox_jobs{status="failed"} 1.0' in client.get("/metrics").text,
            message="failed job counted",
        )
    assert len(slack.calls("chat.postMessage")) == 1
    assert "channel_not_found" in bot.incident(1)["slack_error"]
    # Later news for that incident is recorded but not queued behind a root that never came.
    bot.post_alert(notification(alert(), alert(pod="other")))
    with bot.client() as client:
        wait_until(
            lambda: 'incident_bot_outbox_jobs{status="failed"} 3.0' in client.get("/metrics").text,
            message="thread jobs recorded as failed",
        )
        assert 'incident_bot_outbox_jobs{status="pending"} 0.0' in client.get("/metrics").text


def test_lost_answer_after_timeout_does_not_duplicate_the_root(
    settings_for: Callable[..., Settings], slack: SlackStandIn
) -> None:
    # Slack posts the message but answers after the client gave up: the retry must find it.
    with run_bot(settings_for(slack_timeout=1.0)) as bot:
        slack.delay_next("chat.postMessage", 2.5)
        bot.post_alert(notification(alert()))
        incident = wait_until(
            lambda: bot.incident(1)["ts"] and bot.incident(1), timeout=30, message="ts found"
        )
        assert len(roots(slack)) == 1
        assert incident["ts"] == roots(slack)[0].ts
        assert slack.calls("conversations.history")  # it looked before posting again


def test_posting_respects_slacks_per_channel_rate(
    settings_for: Callable[..., Settings], slack: SlackStandIn
) -> None:
    slack.set_rate_limit(1.0, burst=1)
    with run_bot(settings_for(slack_post_interval=1.0)) as bot:
        for n in range(4):
            bot.post_alert(notification(alert(pod=f"p{n}"), group_key=f"{{}}:{{pod=p{n}}}"))
        wait_until(lambda: len(roots(slack)) == 4, timeout=30, message="four incidents posted")
        assert [c.status for c in slack.calls("chat.postMessage")] == [200] * 4


def test_kill_9_after_acknowledging_loses_nothing(
    settings_for: Callable[..., Settings], slack: SlackStandIn, tmp_path: Path
) -> None:
    settings = settings_for()
    process = BotProcess(settings, tmp_path / "bot.log").start()
    try:
        slack.outage()
        accepted = [process.post_alert(notification(alert(pod=f"p{n}"), group_key=f"g{n}")) for n in range(3)]
        assert [r.status_code for r in accepted] == [200, 200, 200]
        process.kill()
        slack.restore()
        process.start()  # same database, new process
        wait_until(lambda: len(roots(slack)) == 3, timeout=60, message="all three delivered after restart")
        titles = sorted(json.dumps(m.blocks) for m in roots(slack))
        assert all("VLLMHighE2ELatency" in t for t in titles)
    finally:
        process.stop()
    assert len(roots(slack)) == 3


def test_bot_starts_and_records_alerts_while_slack_is_unreachable(
    settings_for: Callable[..., Settings], slack: SlackStandIn
) -> None:
    settings = settings_for(slack_api_url="http://127.0.0.1:9/api/")  # nothing listens there
    with run_bot(settings) as bot:
        assert bot.post_alert(notification(alert())).status_code == 200
        assert bot.incident(1)["status"] == "triggered"
        with bot.client() as client:
            wait_until(
                lambda: (
                    'incident_bot_slack_call_failures_total{error="ClientConnectorError",method="chat.postMessage"}'
                    in client.get("/metrics").text
                ),
                message="failed call counted",
            )
