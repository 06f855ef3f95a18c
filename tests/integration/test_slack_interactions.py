"""Responders drive incidents from Slack: signed slash commands, button clicks and events
through HTTP into the real bot, answers and messages observed on the Slack stand-in."""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.config import Settings
from bot.incidents.models import Incident
from bot.sandbox.slack_api import SlackStandIn
from bot.sandbox.slack_models import Message
from bot.slack.channels import channel_name
from tests.support.botserver import RunningBot, run_bot, wait_until
from tests.support.payloads import FIXED_START, alert, notification
from tests.support.slack_requests import ALICE, BOB, CAROL, SlackSender, answer_text

CHANNEL = "C0INCIDENTS"


@pytest.fixture
def sender(bot: RunningBot, slack: SlackStandIn) -> SlackSender:
    return SlackSender(bot.url, slack)


def open_incident(bot: RunningBot, slack: SlackStandIn, **labels: str) -> tuple[dict[str, Any], Message]:
    """Fire an alert and wait until its root message is in Slack."""
    key = bot.post_alert(notification(alert(**labels), group_key=f"group-{sorted(labels.items())}")).json()[
        "incident"
    ]
    incident = wait_until(lambda: bot.incident(key)["ts"] and bot.incident(key), message=f"{key} posted")
    return incident, slack.message(CHANNEL, incident["ts"])


def root_text(slack: SlackStandIn, incident: dict[str, Any]) -> str:
    return json.dumps(slack.message(CHANNEL, incident["ts"]).blocks, ensure_ascii=False)


def thread_texts(slack: SlackStandIn, incident: dict[str, Any]) -> list[str]:
    return [m.text + json.dumps(m.blocks) for m in slack.thread(CHANNEL, incident["ts"])]


def events(bot: RunningBot, ref: str | int, kind: str) -> list[dict[str, Any]]:
    return [e for e in bot.incident(ref)["timeline"] if e["kind"] == kind]


def ack_answer(response: httpx.Response) -> str:
    """What Slack shows from the ack itself (the HTTP answer to the command)."""
    assert response.status_code == 200, response.text
    return answer_text(response.json())


# ------------------------------------------------------------------ request verification


def test_invalid_signature_is_401_and_nothing_happens(
    bot: RunningBot, slack: SlackStandIn, sender: SlackSender
) -> None:
    incident, root = open_incident(bot, slack, pod="vllm-0")
    forged = SlackSender(bot.url, slack, secret="not-the-signing-secret")

    command = forged.command("ack INC-1")
    click = forged.click("incident_ack", root)

    assert command.response.status_code == click.response.status_code == 401
    assert command.response.json() == {"error": "invalid or expired Slack signature"}
    assert bot.incident(1)["status"] == "triggered"
    assert events(bot, 1, "acknowledged") == []
    assert slack.responses() == []
    assert slack.message(CHANNEL, incident["ts"]).edits == ()


def test_stale_timestamp_is_401_and_nothing_happens(
    bot: RunningBot, slack: SlackStandIn, sender: SlackSender
) -> None:
    open_incident(bot, slack, pod="vllm-0")
    now = int(time.time())
    stale = sender.command("resolve INC-1 old replay", timestamp=now - 6 * 60)
    future = sender.command("resolve INC-1 from the future", timestamp=now + 6 * 60)
    assert stale.response.status_code == future.response.status_code == 401
    assert bot.incident(1)["status"] == "triggered"
    assert slack.responses() == []


def test_without_a_signing_secret_nothing_is_accepted(
    settings_for: Callable[..., Settings], slack: SlackStandIn
) -> None:
    with run_bot(settings_for(slack_signing_secret=None)) as bot:
        signed = SlackSender(bot.url, slack).command("help")
        assert signed.response.status_code == 401
        # An empty key must not become a key anyone can sign with.
        stamp = str(int(time.time()))
        digest = hmac.new(b"", f"v0:{stamp}:{signed.body}".encode(), hashlib.sha256).hexdigest()
        forged = httpx.post(
            f"{bot.url}/slack/events",
            content=signed.body,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Slack-Request-Timestamp": stamp,
                "X-Slack-Signature": f"v0={digest}",
            },
        )
        assert forged.status_code == 401


# ------------------------------------------------------------------ slash commands


def test_ack_command_acknowledges_and_tells_the_root_and_thread(
    bot: RunningBot, slack: SlackStandIn, sender: SlackSender
) -> None:
    incident, _ = open_incident(bot, slack, pod="vllm-0", deployment="vllm-llama")
    sent = sender.command("ack INC-1", user=BOB)
    assert sent.response.status_code == 200
    assert sent.response.text == ""  # acknowledged at once; the answer follows on response_url

    assert "You acknowledged INC-1" in sender.answer(sent)
    detail = bot.incident(1)
    assert detail["status"] == "acknowledged"
    assert detail["acknowledged_by"] == BOB.id
    (event,) = events(bot, 1, "acknowledged")
    assert (event["actor"], event["actor_name"]) == (BOB.id, BOB.name)

    wait_until(lambda: "Acknowledged" in root_text(slack, incident), message="root shows acknowledged")
    assert "incident_ack" not in root_text(slack, incident)
    wait_until(
        lambda: any(f"acknowledged* by <@{BOB.id}>" in t for t in thread_texts(slack, incident)),
        message="thread told",
    )


def test_every_subcommand_answers(bot: RunningBot, slack: SlackStandIn, sender: SlackSender) -> None:
    open_incident(bot, slack, pod="vllm-0", deployment="vllm-llama")
    open_incident(bot, slack, pod="triton-0", deployment="triton")

    help_text = ack_answer(sender.command("help").response)
    for sub in ("list", "show ID", "ack ID", "resolve ID [reason]", "assign ID @user", "timeline ID"):
        assert f"/incident {sub}" in help_text
    assert "/incident help" in ack_answer(sender.command("").response)

    listed = sender.answer(sender.command("list"))
    assert listed.index("INC-2") < listed.index("INC-1")  # newest first
    assert "triggered" in listed
    assert "llm-prod/vllm-llama" in listed

    shown = sender.answer(sender.command("show inc-1"))
    assert "INC-1" in shown
    assert "llm-prod/vllm-llama" in shown
    assert "1 firing" in shown

    assert f"<@{BOB.id}> is now the commander of INC-1" in sender.answer(
        sender.command(f"assign INC-1 <@{BOB.id}|bob>")
    )
    assert bot.incident(1)["commander"] == BOB.id
    # Newer workspaces send the mention without a name; the name is looked up for the record.
    sender.answer(sender.command(f"assign 1 <@{CAROL.id}>"))
    assert events(bot, 1, "assigned")[-1]["text"] == "alice made carol the incident commander"

    assert "INC-1 is now info" in sender.answer(sender.command("severity INC-1 info"))
    assert bot.incident(1)["severity"] == "info"

    note = "Rolled back to r41 &amp; watching <p99>"
    assert "Note added to INC-1" in sender.answer(sender.command(f"note INC-1 {note}"))
    assert events(bot, 1, "note")[-1]["text"] == "Rolled back to r41 & watching <p99>"

    timeline = sender.answer(sender.command("timeline INC-1"))
    for text in ("Incident opened", "alice made carol the incident commander", "Severity changed"):
        assert text in timeline
    assert "&lt;p99&gt;" in timeline  # typed text is escaped again for Slack

    assert "You marked INC-1 mitigated" in sender.answer(
        sender.command("mitigate INC-1 traffic moved to v13")
    )
    assert bot.incident(1)["status"] == "mitigated"
    assert events(bot, 1, "mitigated")[-1]["text"] == "Mitigated by alice: traffic moved to v13"
    assert "already mitigated" in sender.answer(sender.command("mitigate INC-1"))

    resolved = sender.answer(sender.command("resolve INC-1 fixed by rollback"))
    assert "You resolved INC-1" in resolved
    assert bot.incident(1)["resolve_reason"] == "fixed by rollback"
    assert [i["key"] for i in bot.incidents() if i["status"] != "resolved"] == ["INC-2"]

    assert "INC-2" in sender.answer(sender.command("list"))
    assert "INC-1" not in sender.answer(sender.command("ls"))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("frobnicate 1", "`frobnicate` is not an /incident subcommand"),
        ("ack", "`ack` needs an incident ID"),
        ("ack banana", "`banana` is not an incident ID"),
        ("show 1 2", "`show` takes only an incident ID"),
        ("severity 1 huge", "`huge` is not a severity"),
        ("assign 1 bob", "`bob` is not a user"),
        ("assign 1 @bob", "reached the bot as plain text"),
        ("note 1", "`note` needs some text"),
        ("list everything", "`list` takes no arguments"),
    ],
)
def test_bad_commands_get_usage_in_the_ack(
    bot: RunningBot, sender: SlackSender, text: str, problem: str
) -> None:
    shown = ack_answer(sender.command(text).response)
    assert problem in shown
    assert "Usage: `/incident" in shown


def test_unknown_incident_is_named_in_an_ephemeral_answer(bot: RunningBot, sender: SlackSender) -> None:
    for text in ("show INC-999", "ack INC-999", "resolve 999 done", "postmortem INC-999", "timeline 999"):
        sent = sender.command(text)
        assert sent.response.status_code == 200
        answer = sender.answer(sent)
        assert "incident INC-999 does not exist" in answer, text
        assert "Traceback" not in answer
    assert all(r.body.get("response_type") == "ephemeral" for r in sender.slack.responses())


# ------------------------------------------------------------------ buttons


def test_buttons_acknowledge_take_command_and_resolve(
    bot: RunningBot, slack: SlackStandIn, sender: SlackSender
) -> None:
    incident, root = open_incident(bot, slack, pod="vllm-0")

    assert sender.click("incident_ack", root).response.status_code == 200
    wait_until(lambda: bot.incident(1)["status"] == "acknowledged", message="acknowledged")
    root = wait_until(
        lambda: (m := slack.message(CHANNEL, incident["ts"])).edits and m, message="root updated"
    )

    sender.click("incident_take_command", root, user=BOB)
    wait_until(lambda: bot.incident(1)["commander"] == BOB.id, message="commander set")
    wait_until(lambda: f"<@{BOB.id}>" in root_text(slack, incident), message="root shows commander")

    # Carol clicks Take command on the stale message: Bob keeps command, Carol is told why.
    stale = sender.click("incident_take_command", root, user=CAROL)
    assert f"<@{BOB.id}> already has command of INC-1" in sender.answer(stale)
    assert bot.incident(1)["commander"] == BOB.id

    sender.click("incident_resolve", root, user=BOB)
    wait_until(lambda: bot.incident(1)["status"] == "resolved", message="resolved")
    assert bot.incident(1)["resolved_by"] == BOB.id
    wait_until(lambda: "manually, alerts still firing" in root_text(slack, incident), message="root resolved")
    assert "incident_resolve" not in root_text(slack, incident)
    # URL buttons send block_actions too; they are acknowledged and change nothing.
    link = sender.click("link_0", slack.message(CHANNEL, incident["ts"]))
    assert link.response.status_code == 200


def test_double_click_transitions_once(bot: RunningBot, slack: SlackStandIn, sender: SlackSender) -> None:
    incident, root = open_incident(bot, slack, pod="vllm-0")
    first = sender.click("incident_ack", root)
    second = sender.click("incident_ack", root)  # same button, a moment later: a new action_ts
    assert first.response.status_code == second.response.status_code == 200

    answers = wait_until(
        lambda: sender.responses(first) + sender.responses(second), message="the repeat is told"
    )
    assert "INC-1 was already acknowledged by <@U0ONCALL1>" in answer_text(answers[0].body)
    assert answers[0].body["response_type"] == "ephemeral"
    assert answers[0].body["replace_original"] is False
    assert len(events(bot, 1, "acknowledged")) == 1
    wait_until(lambda: thread_texts(slack, incident), message="thread reply")
    assert sum("acknowledged*" in t for t in thread_texts(slack, incident)) == 1


def test_click_on_a_resolved_incident_says_so(
    bot: RunningBot, slack: SlackStandIn, sender: SlackSender
) -> None:
    _, root = open_incident(bot, slack, pod="vllm-0")
    sender.answer(sender.command("resolve INC-1"))

    ack = sender.click("incident_ack", root, user=BOB)
    assert "INC-1 is already resolved by <@U0ONCALL1>" in sender.answer(ack)
    resolve = sender.click("incident_resolve", root, user=BOB)
    assert "already resolved" in sender.answer(resolve)
    take = sender.click("incident_take_command", root, user=BOB)
    assert "already resolved" in sender.answer(take)
    detail = bot.incident(1)
    assert (detail["status"], detail["acknowledged_by"], detail["commander"]) == ("resolved", None, None)
    assert len(events(bot, 1, "resolved")) == 1


def test_retried_deliveries_do_not_act_twice(
    bot: RunningBot, slack: SlackStandIn, sender: SlackSender
) -> None:
    _, root = open_incident(bot, slack, pod="vllm-0")
    note = sender.command("note INC-1 checking GPU memory")
    click = sender.click("incident_ack", root)
    assert sender.resend(note).status_code == 200
    assert sender.resend(click, retry_num=2).status_code == 200

    sender.answer(note)
    wait_until(lambda: events(bot, 1, "acknowledged"), message="acknowledged")
    home = {"type": "app_home_opened", "user": ALICE.id, "channel": "D0ALICE", "tab": "home"}
    opened = sender.event(home, event_id="Ev0HOME1")
    assert opened.response.status_code == 200
    assert sender.resend(opened).status_code == 200
    slack.wait_for("views.publish")

    # A later command proves the repeats had their chance to run: they did nothing.
    sender.answer(sender.command("show INC-1"))
    assert len(events(bot, 1, "note")) == 1
    assert len(events(bot, 1, "acknowledged")) == 1
    assert len(sender.responses(note)) == 1
    assert len(slack.calls("views.publish")) == 1


# ------------------------------------------------------------------ lifecycle with alerts


def test_manual_resolve_while_firing_then_a_new_firing_opens_a_new_incident(
    bot: RunningBot, slack: SlackStandIn, sender: SlackSender
) -> None:
    firing = notification(alert(pod="vllm-0"))
    bot.post_alert(firing)
    incident = wait_until(lambda: bot.incident(1)["ts"] and bot.incident(1), message="posted")

    assert "1 alert still firing" in sender.answer(sender.command("resolve INC-1 traffic drained"))
    detail = bot.incident(1)
    assert detail["manual_resolve"] is True
    (event,) = events(bot, 1, "resolved")
    assert event["text"] == "Resolved by alice while 1 alert still fired: traffic drained"
    wait_until(lambda: "manually, alerts still firing" in root_text(slack, incident), message="root")
    wait_until(
        lambda: any("1 alert is still firing" in t for t in thread_texts(slack, incident)), message="thread"
    )

    # Alertmanager keeps resending the same firing: nothing new opens.
    assert (
        bot.post_alert(notification(alert(pod="vllm-0", annotations={"summary": "resent"}))).status_code
        == 200
    )
    assert [i["key"] for i in bot.incidents()] == ["INC-1"]

    # It stops, then fires again later: a new incident.
    later = FIXED_START + timedelta(minutes=3)
    response = bot.post_alert(notification(alert(pod="vllm-0", starts_at=later)))
    assert response.json()["incident"] == "INC-2"
    assert bot.incident(2)["status"] == "triggered"


def test_metrics_have_time_to_acknowledge_and_resolve(
    bot: RunningBot, slack: SlackStandIn, sender: SlackSender
) -> None:
    open_incident(bot, slack, pod="vllm-0", deployment="vllm-llama")
    sender.answer(sender.command("ack INC-1"))
    sender.answer(sender.command("resolve INC-1"))
    text = httpx.get(f"{bot.url}/metrics").text
    labels = 'service="llm-prod/vllm-llama",severity="critical"'
    assert f"incident_bot_time_to_acknowledge_seconds_count{{{labels}}} 1.0" in text
    assert f"incident_bot_time_to_resolve_seconds_count{{{labels}}} 1.0" in text
    assert 'incident_bot_incidents_resolved_total{severity="critical"} 1.0' in text


# ------------------------------------------------------------------ acks whatever else is going on


def test_acks_arrive_while_slack_is_down_and_changes_catch_up(
    bot: RunningBot, slack: SlackStandIn, sender: SlackSender
) -> None:
    incident, root = open_incident(bot, slack, pod="vllm-0")
    slack.outage()
    assert sender.command("ack INC-1").response.status_code == 200
    assert sender.click("incident_take_command", root).response.status_code == 200
    wait_until(lambda: bot.incident(1)["commander"] == ALICE.id, message="recorded during the outage")
    assert bot.incident(1)["status"] == "acknowledged"

    slack.restore()
    wait_until(lambda: f"<@{ALICE.id}>" in root_text(slack, incident), timeout=30, message="root catches up")


def test_acks_arrive_while_the_database_is_locked(
    bot: RunningBot, slack: SlackStandIn, sender: SlackSender
) -> None:
    open_incident(bot, slack, pod="vllm-0")
    database = bot.services.settings.database_url.removeprefix("sqlite:///")
    blocker = sqlite3.connect(database, timeout=30, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # every other writer now waits
        sent = sender.command("ack INC-1")
        assert sent.response.status_code == 200
        # The API would wait for the lock too; the lock holder can look.
        (status,) = blocker.execute("SELECT status FROM incidents WHERE id = 1").fetchone()
        assert status == "triggered"  # the change waits for the database, the ack did not
    finally:
        blocker.execute("COMMIT")
        blocker.close()
    assert "You acknowledged INC-1" in sender.answer(sent)
    assert bot.incident(1)["status"] == "acknowledged"


# ------------------------------------------------------------------ App Home


def test_app_home_lists_open_incidents_and_opens_one(
    bot: RunningBot, slack: SlackStandIn, sender: SlackSender
) -> None:
    open_incident(bot, slack, pod="vllm-0", deployment="vllm-llama")
    open_incident(bot, slack, pod="triton-0", deployment="triton")
    sender.answer(sender.command("assign INC-1 <@U0ONCALL2|bob>"))

    event = {"type": "app_home_opened", "user": ALICE.id, "channel": "D0ALICE", "tab": "home"}
    assert sender.event(event).response.status_code == 200
    slack.wait_for("views.publish")
    view = slack.home_view(ALICE.id)
    assert view is not None
    shown = json.dumps(view["blocks"], ensure_ascii=False)
    assert shown.index("INC-2") < shown.index("INC-1")
    assert "triggered" in shown
    assert ":red_circle: critical" in shown
    assert "<@U0ONCALL2>" in shown
    assert "old" in shown

    sent = sender.click_in_view("incident_open", view)
    assert sent.response.status_code == 200
    (opened,) = slack.wait_for("views.open")
    assert opened.params["trigger_id"] == sent.extra["trigger_id"]
    modal = slack.views()[0]
    assert modal["title"]["text"] == "INC-2"
    assert "llm-prod/triton" in json.dumps(modal["blocks"])

    # The Messages tab is not the Home tab: nothing to publish.
    sender.event({**event, "tab": "messages"})
    sender.answer(sender.command("list"))
    assert len(slack.calls("views.publish")) == 1


def test_app_home_is_refreshed_when_an_incident_it_lists_changes(
    bot: RunningBot, slack: SlackStandIn, sender: SlackSender
) -> None:
    open_incident(bot, slack, pod="vllm-0", deployment="vllm-llama")
    event = {"type": "app_home_opened", "user": ALICE.id, "channel": "D0ALICE", "tab": "home"}
    sender.event(event)
    slack.wait_for("views.publish")

    def shown() -> str:
        view = slack.home_view(ALICE.id)
        return json.dumps(view["blocks"], ensure_ascii=False) if view else ""

    assert "INC-1" in shown()
    assert "INC-2" not in shown()

    # A new incident: Alice's Home lists it without her opening the tab again.
    open_incident(bot, slack, pod="triton-0", deployment="triton")
    wait_until(lambda: "INC-2" in shown(), message="the Home to list INC-2")

    # A change to a listed incident (acknowledged) shows there too.
    sender.answer(sender.command("ack INC-2"))
    wait_until(lambda: "acknowledged" in shown(), message="the Home to show INC-2 acknowledged")

    # Resolved: it leaves the list of open incidents.
    sender.answer(sender.command("resolve INC-1"))
    wait_until(lambda: "INC-1" not in shown(), message="the Home to drop the resolved INC-1")
    assert "INC-2" in shown()


def test_a_rate_limited_modal_tells_the_person_what_slack_said(
    bot: RunningBot, slack: SlackStandIn, sender: SlackSender
) -> None:
    """views.open goes through the one Slack adapter: a 429 is classified like any call and
    the person reads that Slack is rate-limiting, not "Something went wrong"."""
    open_incident(bot, slack, pod="vllm-0", deployment="vllm-llama")
    event = {"type": "app_home_opened", "user": ALICE.id, "channel": "D0ALICE", "tab": "home"}
    sender.event(event)
    slack.wait_for("views.publish")
    view = slack.home_view(ALICE.id)
    assert view is not None

    slack.fail_next("views.open", status=429, retry_after=7)
    assert sender.click_in_view("incident_open", view).response.status_code == 200

    (told,) = slack.wait_for("chat.postMessage", ok_only=True, count=2)[1:]
    assert told.params["channel"] == ALICE.id
    assert "Slack rate-limited views.open; retry after 7s" in told.params["text"]
    assert "Something went wrong" not in told.params["text"]
    assert slack.views() == []


# ------------------------------------------------------------------ incident channel


ROUTING = """
routes:
  - name: llm-platform
    match: ['namespace="llm-prod"']
    channel: C0INCIDENTS
    incident_channel:
      severities: [critical]
      responders: [U0ONCALL2, U0ANALYST]
"""


@pytest.fixture
def routed_bot(settings_for: Callable[..., Settings], tmp_path: Path) -> Iterator[RunningBot]:
    routing = tmp_path / "routing.yaml"
    routing.write_text(ROUTING)
    with run_bot(settings_for(routing_file=routing)) as running:
        yield running


def test_critical_incident_gets_its_own_channel(routed_bot: RunningBot, slack: SlackStandIn) -> None:
    bot = routed_bot
    # Someone already has the channel name this incident would get: the bot picks the next one.
    title = "VLLMHighE2ELatency: p99 latency above 2s"
    taken = channel_name(Incident(id=1, receiver="r", group_key="g", title=title))
    assert taken == "inc-1-vllmhighe2elatency-p99-latency-above-2s"
    slack.add_channel(taken, members=["U0ONCALL1"], bot_member=False)

    incident, _ = open_incident(bot, slack, pod="vllm-0")
    detail = wait_until(lambda: bot.incident(1)["incident_channel"] and bot.incident(1), message="channel")
    channel = slack.channel(detail["incident_channel"])
    assert channel.name == f"{taken}-2"
    wait_until(
        lambda: {"U0ONCALL2", "U0ANALYST"} <= set(slack.channel(channel.id).members), message="invited"
    )
    summary = wait_until(lambda: slack.messages(channel.id), message="summary posted")
    assert "INC-1" in json.dumps(summary[0].blocks)
    assert "This channel is for" in json.dumps(summary[0].blocks)
    wait_until(lambda: f"<#{channel.id}>" in root_text(slack, incident), message="root links the channel")
    wait_until(
        lambda: any(f"<#{channel.id}>" in t for t in thread_texts(slack, incident)), message="thread told"
    )
    assert len(slack.calls("conversations.create")) == 2  # the taken name, then the free one
    assert events(bot, 1, "incident_channel")[0]["text"] == f"Incident channel #{taken}-2 created"


def test_escalation_to_critical_creates_the_channel_with_the_commander(
    routed_bot: RunningBot, slack: SlackStandIn
) -> None:
    bot = routed_bot
    sender = SlackSender(bot.url, slack)
    open_incident(bot, slack, pod="vllm-0", severity="warning")
    sender.answer(sender.command("assign INC-1 <@U0ONCALL1|alice>"))
    wait_until(lambda: slack.calls("chat.update"), message="root updated")
    assert bot.incident(1)["incident_channel"] is None

    sender.answer(sender.command("severity INC-1 critical"))
    channel_id = wait_until(lambda: bot.incident(1)["incident_channel"], message="channel created")
    wait_until(
        lambda: {"U0ONCALL1", "U0ONCALL2", "U0ANALYST"} <= set(slack.channel(channel_id).members),
        message="commander and responders invited",
    )
    wait_until(lambda: slack.messages(channel_id), message="summary posted")
    assert len(slack.calls("conversations.create")) == 1
