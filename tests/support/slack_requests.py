"""Requests as Slack sends them to `POST /slack/events`, signed like Slack signs them.

The shapes follow the recorded real payloads in tests/payloads/ (see SOURCES.md):
- slash commands: an `application/x-www-form-urlencoded` body with the fields and field order
  of `slack_slash_command_form_body_*.txt` (plus `api_app_id` and `is_enterprise_install`,
  which Slack sends today), `/` in the command percent-encoded as in the bolt fixture;
- interactivity: one form field `payload=<url-encoded JSON>` with the shape of
  `slack_block_actions_button_on_bot_message_with_blocks_and_state_bolt_python.json` (and the
  `user` object of the ephemeral-message fixture: id, username, name, team_id); the clicked
  action is copied from the button in the real message the stand-in holds;
- events: the Events API JSON envelope (`type: event_callback`, `event_id`, `event`).
Signatures use slack-sdk's own `SignatureVerifier.generate_signature` (v0, HMAC-SHA256 over
`v0:{timestamp}:{body}`).
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import httpx
from slack_sdk.signature import SignatureVerifier

from bot.sandbox.slack_api import SlackStandIn
from bot.sandbox.slack_models import Message, ResponsePost
from tests.support.botserver import SIGNING_SECRET, wait_until
from tests.support.payloads import PAYLOADS

__all__ = [
    "ALICE",
    "BOB",
    "CAROL",
    "Person",
    "Sent",
    "SlackSender",
    "block_actions_body",
    "ephemeral_block_actions_body",
    "event_body",
    "sign",
    "slash_command_body",
]

TEAM_ID = "T0SANDBOX"
TEAM_DOMAIN = "sandbox"
APP_ID = "A0SANDBOX"
FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class Person:
    id: str
    name: str


# The people the stand-in's workspace starts with.
ALICE = Person("U0ONCALL1", "alice")
BOB = Person("U0ONCALL2", "bob")
CAROL = Person("U0ANALYST", "carol")


def sign(body: str, *, secret: str = SIGNING_SECRET, timestamp: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(secret).generate_signature(timestamp=stamp, body=body)
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": signature}


def _recorded_form_fields() -> list[str]:
    """Field order of the recorded Slack docs example body."""
    raw = (PAYLOADS / "slack_slash_command_form_body_unencoded_slashes_java_sdk.txt").read_text()
    return [k for k, _ in parse_qsl(raw, keep_blank_values=True)]


def slash_command_body(
    text: str,
    *,
    user: Person,
    channel_id: str,
    channel_name: str,
    response_url: str,
    trigger_id: str,
    command: str = "/incident",
) -> str:
    values = {
        "token": "gIkuvaNzQIHg97ATvDxqgjtO",  # the deprecated verification token: Slack still sends one
        "team_id": TEAM_ID,
        "team_domain": TEAM_DOMAIN,
        "channel_id": channel_id,
        "channel_name": channel_name,
        "user_id": user.id,
        "user_name": user.name,
        "command": command,
        "text": text,
        "api_app_id": APP_ID,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id,
    }
    order = [k for k in _recorded_form_fields() if k in values]
    order += [k for k in values if k not in order]
    return urlencode([(k, values[k]) for k in order])


def _message_json(message: Message) -> dict[str, Any]:
    return message.as_clicked(app_id=APP_ID, team_id=TEAM_ID)


def find_button(blocks: list[dict[str, Any]], action_id: str) -> tuple[str, dict[str, Any]]:
    """(block_id, element) of the button with `action_id` in a message's blocks."""
    for block in blocks:
        for element in block.get("elements") or ([block["accessory"]] if block.get("accessory") else []):
            if element.get("action_id") == action_id:
                return str(block.get("block_id")), element
    raise AssertionError(f"no button {action_id!r} in the message; buttons there: {_buttons(blocks)}")


def _buttons(blocks: list[dict[str, Any]]) -> list[str]:
    found = []
    for block in blocks:
        for element in block.get("elements") or ([block["accessory"]] if block.get("accessory") else []):
            if element.get("type") == "button":
                found.append(str(element.get("action_id")))
    return found


def _action(block_id: str, element: dict[str, Any], action_ts: str) -> dict[str, Any]:
    action = {
        "action_id": element["action_id"],
        "block_id": block_id,
        "text": element["text"],
        "value": element.get("value"),
        "type": "button",
        "action_ts": action_ts,
    }
    if element.get("style"):
        action["style"] = element["style"]
    return action


def block_actions_body(
    action_id: str,
    *,
    user: Person,
    trigger_id: str,
    action_ts: str,
    message: Message | None = None,
    channel: tuple[str, str] | None = None,
    response_url: str | None = None,
    view: dict[str, Any] | None = None,
) -> str:
    """A button click on a message (`message`, `channel`, `response_url`) or on a view such as
    the Home tab (`view`; Slack sends no response_url then)."""
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": user.id, "username": user.name, "name": user.name, "team_id": TEAM_ID},
        "api_app_id": APP_ID,
        "token": "verification_token",
        "trigger_id": trigger_id,
        "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
        "enterprise": None,
        "is_enterprise_install": False,
    }
    if message is not None:
        assert channel is not None
        assert response_url is not None
        block_id, element = find_button(message.blocks, action_id)
        payload["container"] = {
            "type": "message",
            "message_ts": message.ts,
            "channel_id": channel[0],
            "is_ephemeral": False,
        }
        payload["channel"] = {"id": channel[0], "name": channel[1]}
        payload["message"] = _message_json(message)
        payload["state"] = {"values": {}}
        payload["response_url"] = response_url
    else:
        assert view is not None
        block_id, element = find_button(view["blocks"], action_id)
        payload["container"] = {"type": "view", "view_id": view["id"]}
        payload["view"] = view
    payload["actions"] = [_action(block_id, element, action_ts)]
    return "payload=" + quote(json.dumps(payload))


def ephemeral_block_actions_body(
    action_id: str,
    blocks: list[dict[str, Any]],
    *,
    user: Person,
    trigger_id: str,
    action_ts: str,
    channel: tuple[str, str],
    response_url: str,
    message_ts: str,
) -> str:
    """A click on a button of an ephemeral message (a bot's answer only the clicker sees): the
    shape of `slack_block_actions_button_ephemeral_message_bolt_python.json`, which has no
    `message`, only a container marked `is_ephemeral`."""
    block_id, element = find_button(blocks, action_id)
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": user.id, "username": user.name, "name": user.name, "team_id": TEAM_ID},
        "api_app_id": APP_ID,
        "token": "verification_token",
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel[0],
            "is_ephemeral": True,
        },
        "trigger_id": trigger_id,
        "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel[0], "name": channel[1]},
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [_action(block_id, element, action_ts)],
    }
    return "payload=" + quote(json.dumps(payload))


def event_body(event: dict[str, Any], *, event_id: str | None = None) -> str:
    now = int(time.time())
    return json.dumps(
        {
            "token": "verification_token",
            "team_id": TEAM_ID,
            "api_app_id": APP_ID,
            "event": event,
            "type": "event_callback",
            "event_id": event_id or f"Ev{secrets.token_hex(5).upper()}",
            "event_time": now,
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": TEAM_ID,
                    "user_id": "U0BOT",
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
        }
    )


@dataclass
class Sent:
    """One request sent to the bot, and how to find what the bot answered through Slack."""

    body: str
    content_type: str
    response: httpx.Response
    response_name: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class SlackSender:
    """Plays Slack's side of `POST /slack/events` against a running bot and the stand-in."""

    def __init__(self, bot_url: str, slack: SlackStandIn, *, secret: str = SIGNING_SECRET) -> None:
        self.url = f"{bot_url}/slack/events"
        self.slack = slack
        self.secret = secret
        self._ts = 0

    def post(
        self,
        body: str,
        *,
        content_type: str = FORM,
        timestamp: int | None = None,
        secret: str | None = None,
        retry_num: int | None = None,
    ) -> httpx.Response:
        headers = {
            "Content-Type": content_type,
            **sign(body, secret=secret or self.secret, timestamp=timestamp),
        }
        if retry_num is not None:
            headers["X-Slack-Retry-Num"] = str(retry_num)
            headers["X-Slack-Retry-Reason"] = "http_timeout"
        return httpx.post(self.url, content=body.encode(), headers=headers, timeout=30)

    def resend(self, sent: Sent, *, retry_num: int = 1) -> httpx.Response:
        """The same delivery again, as Slack retries it (fresh signature, retry headers)."""
        return self.post(sent.body, content_type=sent.content_type, retry_num=retry_num)

    def _action_ts(self) -> str:
        self._ts += 1
        return f"{time.time():.6f}"[:-3] + f"{self._ts % 1000:03d}"

    def command(
        self,
        text: str,
        *,
        user: Person = ALICE,
        channel: tuple[str, str] = ("C0INCIDENTS", "incidents"),
        command: str = "/incident",
        **post: Any,
    ) -> Sent:
        name = f"cmd-{secrets.token_hex(6)}"
        response_url = self.slack.response_url(name, channel=channel[0], user=user.id)
        body = slash_command_body(
            text,
            user=user,
            channel_id=channel[0],
            channel_name=channel[1],
            response_url=response_url,
            trigger_id=self.slack.trigger_id(),
            command=command,
        )
        return Sent(body, FORM, self.post(body, **post), name)

    def click(
        self,
        action_id: str,
        message: Message,
        *,
        user: Person = ALICE,
        channel: tuple[str, str] = ("C0INCIDENTS", "incidents"),
        **post: Any,
    ) -> Sent:
        name = f"click-{secrets.token_hex(6)}"
        response_url = self.slack.response_url(name, channel=channel[0], message_ts=message.ts, user=user.id)
        body = block_actions_body(
            action_id,
            user=user,
            trigger_id=self.slack.trigger_id(),
            action_ts=self._action_ts(),
            message=message,
            channel=channel,
            response_url=response_url,
        )
        return Sent(body, FORM, self.post(body, **post), name)

    def click_in_answer(
        self,
        action_id: str,
        answer: ResponsePost,
        *,
        user: Person = ALICE,
        channel: tuple[str, str] = ("C0INCIDENTS", "incidents"),
        **post: Any,
    ) -> Sent:
        """Click a button in an ephemeral answer the bot posted to a response_url."""
        name = f"click-{secrets.token_hex(6)}"
        response_url = self.slack.response_url(name, channel=channel[0], user=user.id)
        body = ephemeral_block_actions_body(
            action_id,
            list(answer.body.get("blocks") or []),
            user=user,
            trigger_id=self.slack.trigger_id(),
            action_ts=self._action_ts(),
            channel=channel,
            response_url=response_url,
            message_ts=f"{answer.at:.6f}",
        )
        return Sent(body, FORM, self.post(body, **post), name)

    def click_in_view(self, action_id: str, view: dict[str, Any], *, user: Person = ALICE) -> Sent:
        trigger = self.slack.trigger_id()
        body = block_actions_body(
            action_id, user=user, trigger_id=trigger, action_ts=self._action_ts(), view=view
        )
        return Sent(body, FORM, self.post(body), None, {"trigger_id": trigger})

    def event(self, event: dict[str, Any], *, event_id: str | None = None, **post: Any) -> Sent:
        body = event_body(event, event_id=event_id)
        return Sent(body, "application/json", self.post(body, content_type="application/json", **post))

    # ------------------------------------------------------------------ answers
    def responses(self, sent: Sent) -> list[ResponsePost]:
        return [r for r in self.slack.responses() if r.name == sent.response_name]

    def answer(self, sent: Sent, *, timeout: float = 15.0) -> str:
        """The text of the (first) answer the bot posted to this request's response_url."""
        found = wait_until(lambda: self.responses(sent), timeout=timeout, message="an answer on response_url")
        return answer_text(found[0].body)


def answer_text(body: dict[str, Any]) -> str:
    """Everything a person reads in an answer: fallback text and every block's text."""
    parts = [str(body.get("text") or "")]
    for block in body.get("blocks") or []:
        text = block.get("text")
        if isinstance(text, dict):
            parts.append(str(text.get("text") or ""))
        for element in block.get("elements") or []:
            if isinstance(element, dict) and element.get("text") and isinstance(element["text"], str):
                parts.append(element["text"])
    return "\n".join(parts)
