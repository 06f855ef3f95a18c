"""An alert storm in one channel: one digest message makes it visible at once and links each
incident's own root message as it follows at Slack's pace, critical first. The real bot, the
Slack stand-in enforcing Slack's per-channel posting rate."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bot.config import Settings
from bot.sandbox.slack_api import SlackStandIn
from tests.support.botserver import run_bot, wait_until
from tests.support.payloads import alert, notification

CHANNEL = "C0INCIDENTS"
INCIDENTS = 12


def digests(slack: SlackStandIn) -> list[Any]:
    return [
        m for m in slack.messages(CHANNEL) if ((m.metadata or {}).get("event_payload") or {}).get("digest")
    ]


def roots(slack: SlackStandIn) -> list[Any]:
    found = []
    for message in slack.messages(CHANNEL):
        payload = (message.metadata or {}).get("event_payload") or {}
        if payload.get("incident") and (not message.thread_ts or message.thread_ts == message.ts):
            found.append(message)
    return found


def text_of(message: Any) -> str:
    return "\n".join(
        str(block.get("text", {}).get("text", ""))
        for block in message.blocks
        if block.get("type") == "section"
    )


def test_a_storm_gets_one_digest_kept_current_and_roots_at_the_pace(
    settings_for: Callable[..., Settings], slack: SlackStandIn
) -> None:
    slack.set_rate_limit(1.0)  # Slack: about one message per second per channel
    with run_bot(settings_for(slack_post_interval=1.0)) as bot:
        for n in range(INCIDENTS):
            severity = "critical" if n % 3 == 2 else "warning"
            payload = notification(
                alert(f"GpuXidError{n}", pod=f"gpu-{n}", severity=severity), group_key=f"storm-{n}"
            )
            assert bot.post_alert(payload).status_code == 200

        # Visible at once: one digest listing the incidents still waiting for their own message,
        # with severity and title. (Those already announced when the storm began are not listed.)
        wait_until(
            lambda: len(digests(slack)) == 1 and f"INC-{INCIDENTS}" in text_of(digests(slack)[0]),
            timeout=10,
            message="a digest listing the storm's incidents",
        )
        listed = text_of(digests(slack)[0])
        assert "GpuXidError11" in listed
        assert "critical" in listed
        assert "warning" in listed

        # The roots follow at the pace; the digest ends up linking every one of them.
        wait_until(lambda: len(roots(slack)) == INCIDENTS, timeout=60, message="every root message")
        wait_until(
            lambda: "all announced" in digests(slack)[0].text,
            timeout=15,
            message="the digest to say all announced",
        )
        incidents = bot.incidents()

    assert len(digests(slack)) == 1
    by_incident = [(m.metadata or {})["event_payload"]["incident"] for m in roots(slack)]
    assert sorted(by_incident) == sorted(f"INC-{n}" for n in range(1, INCIDENTS + 1)), "one root each"
    final = text_of(digests(slack)[0])
    digest_ts = float(digests(slack)[0].ts)
    for message in roots(slack):
        key = message.metadata["event_payload"]["incident"]
        link = f"<https://slack.com/archives/{CHANNEL}/p{message.ts.replace('.', '')}|{key}>"
        if float(message.ts) > digest_ts:
            assert link in final, f"the digest links {key}'s root message"
        else:
            assert f"*{key}*" not in final, f"{key} is listed without its link"
    # Never over Slack's rate: the stand-in answers 429 to a post over it.
    assert [c for c in slack.calls("chat.postMessage") if c.status == 429] == []
    # Critical first: from the moment a critical incident is open, at most the four workers'
    # jobs in hand (and the post on the wire) can go out before its root message.
    opened = {
        i["key"]: datetime.fromisoformat(i["created_at"]).replace(tzinfo=UTC).timestamp() for i in incidents
    }
    posts = [
        (c.at, c.params["metadata"]["event_payload"]["incident"], "[CRITICAL]" in c.params.get("text", ""))
        for c in slack.calls("chat.postMessage")
        if c.status == 200
        and not c.params.get("thread_ts")
        and (c.params.get("metadata") or {}).get("event_payload", {}).get("incident")
    ]
    for at, key, critical in posts:
        if critical:
            overtaking = [k for when, k, crit in posts if not crit and opened[key] < when < at]
            assert len(overtaking) <= 5, f"{key} waited behind warnings {overtaking}"
