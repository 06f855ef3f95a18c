"""Slack over Socket Mode: the real bot opens a WebSocket to the Socket Mode stand-in
(bot/sandbox/slack_socket.py) with the URL the Web API stand-in's `apps.connections.open`
gives for the app-level token, and works incidents from envelopes exactly as from
`POST /slack/events`: slash commands, button clicks, retried envelopes acting once,
Slack's `disconnect` and a lost network both followed by a reconnect that /readyz and
/metrics show. Alerts still come in over HTTP."""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl, unquote

import httpx
import pytest

from bot.config import Settings
from bot.errors import ConfigError
from bot.sandbox.slack_api import SlackStandIn
from bot.sandbox.slack_models import Message
from bot.sandbox.slack_socket import SocketModeStandIn
from tests.support.botserver import RunningBot, run_bot, wait_until
from tests.support.payloads import alert, notification
from tests.support.slack_requests import (
    ALICE,
    BOB,
    Person,
    answer_text,
    block_actions_body,
    event_body,
    slash_command_body,
)

APP_TOKEN = "xapp-1-A0SANDBOX-1234-sandboxappleveltoken"
CHANNEL = ("C0INCIDENTS", "incidents")


@pytest.fixture
def socket(slack: SlackStandIn) -> Iterator[SocketModeStandIn]:
    with SocketModeStandIn() as standin:
        slack.attach_socket_mode(standin, APP_TOKEN)
        yield standin


@pytest.fixture
def bot(settings_for: Callable[..., Settings], socket: SocketModeStandIn) -> Iterator[RunningBot]:
    settings = settings_for(slack_app_token=APP_TOKEN, slack_signing_secret=None, slack_ping_interval=0.5)
    settings.require_for_serve()  # Socket Mode needs no signing secret
    with run_bot(settings) as running:
        socket.wait_for_connections(1)
        yield running


class SlackOverSocket:
    """Slack's side of Socket Mode: what a person does, as envelopes on the socket."""

    def __init__(self, socket: SocketModeStandIn, slack: SlackStandIn) -> None:
        self.socket = socket
        self.slack = slack

    def command(self, text: str, *, user: Person = ALICE) -> tuple[str, str]:
        """(envelope_id, response_url name) of `/incident <text>`."""
        name = f"cmd-{secrets.token_hex(6)}"
        body = slash_command_body(
            text,
            user=user,
            channel_id=CHANNEL[0],
            channel_name=CHANNEL[1],
            response_url=self.slack.response_url(name, channel=CHANNEL[0], user=user.id),
            trigger_id=self.slack.trigger_id(),
        )
        return self.socket.slash_command(dict(parse_qsl(body, keep_blank_values=True))), name

    def click_payload(self, action_id: str, message: Message, *, user: Person = ALICE) -> dict[str, Any]:
        name = f"click-{secrets.token_hex(6)}"
        body = block_actions_body(
            action_id,
            user=user,
            trigger_id=self.slack.trigger_id(),
            action_ts=f"{time.time():.6f}",
            message=message,
            channel=CHANNEL,
            response_url=self.slack.response_url(
                name, channel=CHANNEL[0], message_ts=message.ts, user=user.id
            ),
        )
        payload: dict[str, Any] = json.loads(unquote(body.removeprefix("payload=")))
        return payload

    def answer(self, name: str) -> str:
        found = wait_until(
            lambda: [r for r in self.slack.responses() if r.name == name], message="an answer on response_url"
        )
        return answer_text(found[0].body)


@pytest.fixture
def person(socket: SocketModeStandIn, slack: SlackStandIn) -> SlackOverSocket:
    return SlackOverSocket(socket, slack)


def open_incident(bot: RunningBot, slack: SlackStandIn, **labels: str) -> tuple[dict[str, Any], Message]:
    key = bot.post_alert(notification(alert(**labels), group_key=f"group-{sorted(labels.items())}")).json()[
        "incident"
    ]
    incident = wait_until(lambda: bot.incident(key)["ts"] and bot.incident(key), message=f"{key} posted")
    return incident, slack.message(CHANNEL[0], incident["ts"])


def events(bot: RunningBot, ref: str | int, kind: str) -> list[dict[str, Any]]:
    return [e for e in bot.incident(ref)["timeline"] if e["kind"] == kind]


def readyz(bot: RunningBot) -> dict[str, Any]:
    response = httpx.get(f"{bot.url}/readyz", timeout=10)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def metric(bot: RunningBot, name: str, **labels: str) -> float | None:
    text = httpx.get(f"{bot.url}/metrics", timeout=10).text
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if labels else "") + r" (\S+)"
    found = re.search("^" + pattern + "$", text, re.MULTILINE)
    return float(found.group(1)) if found else None


# ------------------------------------------------------------------ connecting


def test_the_bot_opens_the_socket_with_the_app_level_token(
    bot: RunningBot, slack: SlackStandIn, socket: SocketModeStandIn
) -> None:
    (opened,) = slack.calls("apps.connections.open")
    assert opened.response is not None
    assert opened.response["ok"] is True
    headers = {k.lower(): v for k, v in opened.headers.items()}
    assert headers["authorization"] == "Bearer [REDACTED]", "the app-level token went in the header"
    assert socket.connects == 1
    assert socket.refused == 0
    ready = readyz(bot)
    assert ready["status"] == "ready"
    assert ready["slack"]["mode"] == "socket"
    assert ready["slack"]["state"] == "connected"
    assert ready["slack"]["reconnects"] == 0
    assert metric(bot, "incident_bot_slack_socket_connected") == 1.0


def test_apps_connections_open_takes_only_the_app_level_token(
    slack: SlackStandIn, socket: SocketModeStandIn
) -> None:
    """What the stand-in answers, as Slack does: a bot token is the wrong kind of token."""

    def open_with(token: str) -> dict[str, Any]:
        response = httpx.post(
            f"{slack.url}apps.connections.open", headers={"Authorization": f"Bearer {token}"}
        )
        body: dict[str, Any] = response.json()
        return body

    assert open_with(slack.bot_token) == {"ok": False, "error": "not_allowed_token_type"}
    assert open_with("xapp-1-someone-else") == {"ok": False, "error": "invalid_auth"}
    url = open_with(APP_TOKEN)["url"]
    assert url.startswith("ws://127.0.0.1:")
    assert "ticket=" in url


def test_a_start_while_slack_refuses_the_token_keeps_serving_alerts_and_retries(
    settings_for: Callable[..., Settings],
    slack: SlackStandIn,
    socket: SocketModeStandIn,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = settings_for(
        slack_app_token="xapp-1-revoked", slack_signing_secret=None, slack_ping_interval=0.2
    )
    with run_bot(settings) as bot:
        slack.wait_for("apps.connections.open", count=2)
        assert socket.connects == 0
        assert readyz(bot)["slack"]["state"] == "connecting"
        assert bot.post_alert(notification(alert(pod="vllm-0"))).status_code == 200
        assert metric(bot, "incident_bot_slack_socket_connected") == 0.0
    assert "invalid_auth" in caplog.text, "the refusal is logged"
    assert "xapp-1-revoked" not in caplog.text, "the token is not"


def test_without_a_signing_secret_http_events_are_refused_in_socket_mode(bot: RunningBot) -> None:
    response = httpx.post(
        f"{bot.url}/slack/events",
        content=b"command=%2Fincident&text=help",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 401


def test_socket_mode_needs_an_app_level_token_and_no_signing_secret(
    settings_for: Callable[..., Settings],
) -> None:
    settings_for(slack_app_token=APP_TOKEN, slack_signing_secret=None).require_for_serve()
    with pytest.raises(ConfigError, match=r"SLACK_APP_TOKEN must be an app-level token \(xapp-"):
        settings_for(slack_app_token="xoxb-a-bot-token", slack_signing_secret=None).require_for_serve()
    with pytest.raises(ConfigError, match="SLACK_SIGNING_SECRET"):
        settings_for(slack_signing_secret=None).require_for_serve()


# ------------------------------------------------------------------ commands and clicks


def test_a_slash_command_over_the_socket_is_answered_in_its_ack(
    bot: RunningBot, socket: SocketModeStandIn, person: SlackOverSocket
) -> None:
    envelope, _ = person.command("help")
    ack = socket.wait_for_ack(envelope)
    assert ack.payload is not None
    assert "/incident ack" in answer_text(ack.payload)


def test_a_slash_command_over_the_socket_acknowledges_an_incident(
    bot: RunningBot, slack: SlackStandIn, socket: SocketModeStandIn, person: SlackOverSocket
) -> None:
    open_incident(bot, slack, pod="vllm-0", deployment="vllm-llama")
    envelope, name = person.command("ack INC-1", user=BOB)
    assert socket.wait_for_ack(envelope).payload is None  # acknowledged at once, answer follows
    assert "You acknowledged INC-1" in person.answer(name)
    detail = bot.incident(1)
    assert detail["status"] == "acknowledged"
    assert detail["acknowledged_by"] == BOB.id


def test_a_failed_command_over_the_socket_is_told_to_its_user(
    bot: RunningBot, socket: SocketModeStandIn, person: SlackOverSocket
) -> None:
    envelope, name = person.command("ack INC-404", user=BOB)
    socket.wait_for_ack(envelope)
    assert "INC-404" in person.answer(name)


def test_a_button_click_over_the_socket_acknowledges_the_incident(
    bot: RunningBot, slack: SlackStandIn, socket: SocketModeStandIn, person: SlackOverSocket
) -> None:
    incident, root = open_incident(bot, slack, pod="vllm-0", deployment="vllm-llama")
    envelope = socket.interactive(person.click_payload("incident_ack", root, user=BOB))
    socket.wait_for_ack(envelope)
    wait_until(lambda: events(bot, 1, "acknowledged"), message="acknowledged by the click")
    (event,) = events(bot, 1, "acknowledged")
    assert event["actor"] == BOB.id
    wait_until(
        lambda: "Acknowledged" in json.dumps(slack.message(CHANNEL[0], incident["ts"]).blocks),
        message="the root message shows it",
    )


def test_retried_envelopes_are_acknowledged_and_act_once(
    bot: RunningBot, slack: SlackStandIn, socket: SocketModeStandIn, person: SlackOverSocket
) -> None:
    incident, root = open_incident(bot, slack, pod="vllm-0", deployment="vllm-llama")
    click = person.click_payload("incident_ack", root, user=BOB)
    first, again = socket.interactive(click), socket.interactive(click)
    for envelope in (first, again):
        socket.wait_for_ack(envelope)
    # The root message shows the change once it is done (the App Home, opened only below, is
    # then not refreshed by it).
    wait_until(
        lambda: "Acknowledged" in json.dumps(slack.message(CHANNEL[0], incident["ts"]).blocks),
        message="the root message shows the acknowledgement",
    )

    home = json.loads(
        event_body({"type": "app_home_opened", "user": ALICE.id, "channel": "D0ALICE", "tab": "home"})
    )
    opened = socket.events_api(home)
    retried = socket.events_api(home, retry_attempt=1, retry_reason="timeout")
    for envelope in (opened, retried):
        socket.wait_for_ack(envelope)

    # A later command proves the repeats had their chance to run: they did nothing.
    envelope, name = person.command("show INC-1")
    socket.wait_for_ack(envelope)
    person.answer(name)
    slack.wait_for("views.publish")
    assert len(events(bot, 1, "acknowledged")) == 1
    assert len(slack.calls("views.publish")) == 1
    assert [e["retry_attempt"] for e in socket.sent() if e["type"] == "events_api"] == [0, 1]


def test_the_home_tab_event_and_its_modal_work_over_the_socket(
    bot: RunningBot, slack: SlackStandIn, socket: SocketModeStandIn
) -> None:
    open_incident(bot, slack, pod="vllm-0", deployment="vllm-llama")
    home = {"type": "app_home_opened", "user": ALICE.id, "channel": "D0ALICE", "tab": "home"}
    socket.wait_for_ack(socket.events_api(json.loads(event_body(home))))
    slack.wait_for("views.publish")
    view = slack.home_view(ALICE.id)
    assert view is not None
    assert "INC-1" in json.dumps(view["blocks"])

    trigger = slack.trigger_id()
    body = block_actions_body(
        "incident_open", user=ALICE, trigger_id=trigger, action_ts=f"{time.time():.6f}", view=view
    )
    socket.wait_for_ack(socket.interactive(json.loads(unquote(body.removeprefix("payload=")))))
    (opened,) = slack.wait_for("views.open")
    assert opened.params["trigger_id"] == trigger
    assert "INC-1" in json.dumps(opened.params["view"])


# ------------------------------------------------------------------ reconnects


def test_slacks_disconnect_is_followed_by_a_new_connection_counted_in_metrics(
    bot: RunningBot,
    slack: SlackStandIn,
    socket: SocketModeStandIn,
    person: SlackOverSocket,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    socket.disconnect("refresh_requested")
    socket.wait_for_connections(1, opened=2)
    assert len(slack.calls("apps.connections.open")) == 2, "a fresh URL for the new connection"
    wait_until(
        lambda: metric(bot, "incident_bot_slack_socket_reconnects_total", reason="refresh_requested") == 1.0,
        message="the reconnect counted",
    )
    wait_until(lambda: readyz(bot)["slack"]["state"] == "connected", message="readyz: connected")
    assert readyz(bot)["slack"]["reconnects"] == 1

    envelope, _ = person.command("help")
    assert socket.wait_for_ack(envelope).connection == 2, "answered on the new connection"
    reconnected = [r for r in caplog.records if r.getMessage() == "reconnected to Slack in Socket Mode"]
    assert [getattr(r, "reason", None) for r in reconnected] == ["refresh_requested"]
    assert APP_TOKEN not in caplog.text


def test_a_lost_connection_is_noticed_and_reconnected(
    bot: RunningBot, socket: SocketModeStandIn, person: SlackOverSocket
) -> None:
    socket.drop()
    socket.wait_for_connections(1, opened=2, timeout=30)
    wait_until(
        lambda: metric(bot, "incident_bot_slack_socket_reconnects_total", reason="connection_lost") == 1.0,
        message="the reconnect counted as a lost connection",
    )
    wait_until(lambda: readyz(bot)["slack"]["state"] == "connected", message="readyz: connected")
    envelope, _ = person.command("help")
    assert socket.wait_for_ack(envelope).payload is not None
