"""Slack's side of `POST /slack/events`: the requests Slack sends when a person types a slash
command or clicks a button, built and signed the way Slack builds and signs them.

Shapes follow the recorded payloads in /work/shared/payloads (tests/payloads/SOURCES.md):
slash commands are `application/x-www-form-urlencoded` with the fields of a real command
body; clicks are one form field `payload=<url-encoded JSON>` of type `block_actions`, with the
clicked message embedded (or, for an ephemeral message, only a container marked
`is_ephemeral`). Signatures are Slack's v0 scheme, made with slack-sdk's own
`SignatureVerifier.generate_signature` so the bot verifies exactly what Slack would send.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import httpx
from slack_sdk.signature import SignatureVerifier

from bot.sandbox.slack_api import SlackStandIn
from bot.sandbox.slack_models import Message

__all__ = ["ClickTarget", "SlackSide"]

FORM = "application/x-www-form-urlencoded"
TEAM_ID = "T0SANDBOX"
TEAM_DOMAIN = "sandbox"
APP_ID = "A0SANDBOX"
# Slack still sends the deprecated verification token in every request; the bot ignores it.
VERIFICATION_TOKEN = "gIkuvaNzQIHg97ATvDxqgjtO"  # noqa: S105 - a public example value, not a secret


@dataclass(frozen=True)
class ClickTarget:
    """Where the clicked button sits: a channel message, or an ephemeral message (by index)."""

    channel: str
    message_ts: str | None = None
    ephemeral: int | None = None


def find_button(
    blocks: list[dict[str, Any]], action_id: str, block_id: str | None
) -> tuple[str, dict[str, Any]]:
    for block in blocks:
        if block_id is not None and block.get("block_id") != block_id:
            continue
        elements = block.get("elements") or ([block["accessory"]] if block.get("accessory") else [])
        for element in elements:
            if isinstance(element, dict) and element.get("action_id") == action_id:
                return str(block.get("block_id")), element
    raise LookupError(f"no button {action_id!r} in that message")


class SlackSide:
    """Sends signed slash commands and button clicks to the bot, as person `user_id`."""

    def __init__(self, bot_url: str, slack: SlackStandIn, signing_secret: str) -> None:
        self.url = f"{bot_url}/slack/events"
        self.slack = slack
        self._verifier = SignatureVerifier(signing_secret)
        self._counter = 0

    def _post(self, body: str) -> httpx.Response:
        stamp = str(int(time.time()))
        signature = self._verifier.generate_signature(timestamp=stamp, body=body)
        if signature is None:  # only for a missing timestamp or body, which cannot happen here
            raise RuntimeError("could not sign the request")
        headers = {"Content-Type": FORM, "X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": signature}
        return httpx.post(self.url, content=body.encode(), headers=headers, timeout=30)

    def _user(self, user_id: str) -> dict[str, str]:
        user = self.slack.user(user_id)
        return {"id": user.id, "username": user.name, "name": user.name, "team_id": TEAM_ID}

    def _action_ts(self) -> str:
        self._counter += 1
        return f"{time.time():.6f}"[:-3] + f"{self._counter % 1000:03d}"

    def command(self, user_id: str, channel: str, command: str, text: str) -> httpx.Response:
        user = self._user(user_id)
        stored = self.slack.channel(channel)
        response_url = self.slack.response_url(f"cmd-{secrets.token_hex(6)}", channel=stored.id, user=user_id)
        body = urlencode(
            [
                ("token", VERIFICATION_TOKEN),
                ("team_id", TEAM_ID),
                ("team_domain", TEAM_DOMAIN),
                ("channel_id", stored.id),
                ("channel_name", stored.name),
                ("user_id", user["id"]),
                ("user_name", user["name"]),
                ("command", command),
                ("text", text),
                ("api_app_id", APP_ID),
                ("is_enterprise_install", "false"),
                ("response_url", response_url),
                ("trigger_id", self.slack.trigger_id()),
            ]
        )
        response = self._post(body)
        self._show_ack(response, response_url)
        return response

    def _show_ack(self, response: httpx.Response, response_url: str) -> None:
        """Slack shows a slash command's acknowledgement body (text/blocks) to the person who
        typed it, as an ephemeral message; the stand-in shows it the same way."""
        if response.status_code != 200 or not response.headers.get("content-type", "").startswith(
            "application/json"
        ):
            return
        try:
            ack = response.json()
        except ValueError:
            return
        if isinstance(ack, dict) and (ack.get("text") or ack.get("blocks")):
            httpx.post(response_url, json={"response_type": "ephemeral", **ack}, timeout=10)

    def click(
        self, user_id: str, target: ClickTarget, action_id: str, block_id: str | None
    ) -> httpx.Response:
        stored = self.slack.channel(target.channel)
        payload: dict[str, Any] = {
            "type": "block_actions",
            "user": self._user(user_id),
            "api_app_id": APP_ID,
            "token": VERIFICATION_TOKEN,
            "trigger_id": self.slack.trigger_id(),
            "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": stored.id, "name": stored.name},
            "state": {"values": {}},
        }
        name = f"click-{secrets.token_hex(6)}"
        if target.ephemeral is not None:
            ephemerals = self.slack.ephemerals(stored.id)
            if not 0 <= target.ephemeral < len(ephemerals):
                raise LookupError(f"no ephemeral message {target.ephemeral} in #{stored.name}")
            shown = ephemerals[target.ephemeral]
            blocks = list(shown.get("blocks") or [])
            payload["container"] = {
                "type": "message",
                "message_ts": str(shown["ts"]),
                "channel_id": stored.id,
                "is_ephemeral": True,
            }
            thread = shown.get("thread_ts")
            payload["response_url"] = self.slack.response_url(
                name, channel=stored.id, user=user_id, thread_ts=str(thread) if thread else None
            )
        else:
            if target.message_ts is None:
                raise LookupError("a click needs a message_ts or an ephemeral index")
            message = self.slack.message(stored.id, target.message_ts)
            blocks = message.blocks
            payload["container"] = {
                "type": "message",
                "message_ts": message.ts,
                "channel_id": stored.id,
                "is_ephemeral": False,
            }
            payload["message"] = _message_json(message)
            payload["response_url"] = self.slack.response_url(
                name, channel=stored.id, message_ts=message.ts, user=user_id, thread_ts=message.thread_ts
            )
        found_block, element = find_button(blocks, action_id, block_id)
        action = {
            "action_id": element["action_id"],
            "block_id": found_block,
            "text": element.get("text"),
            "value": element.get("value"),
            "type": "button",
            "action_ts": self._action_ts(),
        }
        if element.get("style"):
            action["style"] = element["style"]
        payload["actions"] = [action]
        return self._post("payload=" + quote(json.dumps(payload)))


def _message_json(message: Message) -> dict[str, Any]:
    return message.as_clicked(app_id=APP_ID, team_id=TEAM_ID)
