"""The guard in front of Bolt on `POST /slack/events`: bound, verify, then parse.

Nothing reaches Bolt (and so no listener, no error handler, no Slack call, no `response_url`)
unless Slack's signature over the exact bytes was verified first. Bolt parses the body and
builds its context *before* its own signature middleware runs, and hands any failure there to
the app's error handler with the unverified body; so the order here is:

1. Content-Length over the limit: 413 before a byte is read; otherwise the body is read in
   chunks and refused with 413 as soon as it passes the limit (a 100 MB upload is never held).
2. Missing or malformed `X-Slack-Request-Timestamp` / `X-Slack-Signature`: 401.
3. Not UTF-8: 400 (cannot be a Slack request, and cannot be verified).
4. `SignatureVerifier.is_valid` (HMAC-SHA256, 5-minute window), its exceptions guarded: 401.
5. Only now parsed; a signed body that is not a Slack request (not a JSON object, `payload=`
   that is not JSON, `user` that is not an object, ...): 400 naming the field. A signed slash
   command without `user_id` is answered with a refusal and nothing is done.

Refusals log only the reason, never the body or headers (they are the caller's, not Slack's).

The limit: Slack documents no maximum request size; its largest requests are interactivity
payloads that carry the whole message (at most 50 blocks of at most 3,000 characters) or a
modal's state (at most 100 blocks), a few hundred KB even URL-encoded. 1 MiB leaves room for
that and refuses anything else early.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from slack_sdk.signature import SignatureVerifier

__all__ = ["SLACK_MAX_BODY_BYTES", "Refusal", "VerifiedBody", "read_verified_body"]

logger = logging.getLogger(__name__)

SLACK_MAX_BODY_BYTES = 1024 * 1024
VERIFIED = "incident_bot_signature_verified"  # set in the Bolt context of every verified request

_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"v0=[0-9a-fA-F]{64}")
# Fields the bot and Bolt read as objects; anything else in them is not a Slack request. Slack
# sends `team`, `enterprise` and `channel` as null in some payloads (org-wide installs, views);
# Bolt reads the others with `.get(name, {})`, so a null there must be refused too.
_OBJECT_FIELDS = ("user", "team", "channel", "container", "enterprise", "view", "event", "message")
_NULLABLE = ("team", "enterprise", "channel")


@dataclass(frozen=True)
class VerifiedBody:
    text: str
    data: dict[str, Any]


class Refusal(Exception):
    """A request refused before Bolt: `response` is what the caller gets."""

    def __init__(self, status: int, message: str, *, slack_text: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.slack_text = slack_text

    @property
    def response(self) -> Response:
        if self.slack_text:
            # A signed command: answered as Slack shows an ack (ephemeral text), with 200.
            return JSONResponse({"response_type": "ephemeral", "text": self.message}, status_code=200)
        return JSONResponse({"error": self.message}, status_code=self.status)


async def read_verified_body(
    request: Request, verifier: SignatureVerifier, *, limit: int = SLACK_MAX_BODY_BYTES
) -> VerifiedBody:
    """The body of a request Slack signed, parsed; raises Refusal otherwise."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isascii() or not declared.isdigit()):
        raise _refused(400, "Content-Length is not a number")
    if declared is not None and int(declared) > limit:
        raise _refused(413, f"body larger than {limit} bytes; Slack's requests are smaller")
    timestamp = request.headers.get("x-slack-request-timestamp", "")
    signature = request.headers.get("x-slack-signature", "")
    if not _TIMESTAMP.fullmatch(timestamp) or not _SIGNATURE.fullmatch(signature):
        raise _refused(401, "missing or malformed X-Slack-Request-Timestamp / X-Slack-Signature")
    raw = bytearray()
    async for chunk in request.stream():
        raw.extend(chunk)
        if len(raw) > limit:
            raise _refused(413, f"body larger than {limit} bytes; Slack's requests are smaller")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _refused(400, "body is not UTF-8; not a Slack request") from None
    try:
        valid = verifier.is_valid(body=text, timestamp=timestamp, signature=signature)
    except (ValueError, TypeError, OverflowError):
        valid = False
    if not valid:
        raise _refused(401, "invalid or expired Slack signature")
    return VerifiedBody(text, _parse(text, request.headers.get("content-type", "")))


def _refused(status: int, message: str) -> Refusal:
    logger.info("Slack request refused", extra={"status": status, "reason": message})
    return Refusal(status, message)


def _parse(text: str, content_type: str) -> dict[str, Any]:
    """Parse a verified body the way Bolt will (slack_bolt.request.internals.parse_body), and
    check the few fields Bolt and the bot read as objects, so an odd but signed body is a 400
    here instead of an exception inside Bolt."""
    try:
        if content_type.split(";")[0].strip() == "application/json" or text.startswith("{"):
            data: object = json.loads(text)
        else:
            fields = dict(parse_qsl(text, keep_blank_values=True))
            data = json.loads(fields["payload"]) if "payload" in fields else fields
    except (ValueError, RecursionError):
        raise _refused(400, "body is neither a Slack form body nor a JSON object") from None
    if not isinstance(data, dict) or not (data.get("type") or data.get("command") or data.get("ssl_check")):
        # Slack's requests: events and interactivity carry a `type`, slash commands a `command`.
        raise _refused(400, "body is not a Slack request (no type or command)")
    for name in _OBJECT_FIELDS:
        value = data.get(name)
        if name not in data or isinstance(value, dict) or (value is None and name in _NULLABLE):
            continue
        if not (name == "enterprise" and isinstance(value, str)):
            raise _refused(400, f"field {name!r} must be an object")
    actions = data.get("actions")
    if "actions" in data and (
        not isinstance(actions, list) or not actions or not all(isinstance(a, dict) for a in actions)
    ):
        raise _refused(400, "field 'actions' must be a non-empty list of objects")
    for path in _TEXT_FIELDS:
        value = _at(data, path)
        if value is not None and not isinstance(value, str):
            raise _refused(400, f"field {'.'.join(path)!r} must be a string")
    for action in actions or ():
        for name in ("action_id", "block_id"):
            if action.get(name) is not None and not isinstance(action[name], str):
                raise _refused(400, f"field 'actions.{name}' must be a string")
    _require_user(data)
    return data


# Fields Bolt matches listeners on, or the bot uses as identities: strings or absent.
_TEXT_FIELDS: tuple[tuple[str, ...], ...] = (
    ("type",),
    ("command",),
    ("callback_id",),
    ("trigger_id",),
    ("response_url",),
    ("event_id",),
    ("user_id",),
    ("user", "id"),
    ("team", "id"),
    ("channel", "id"),
    ("view", "callback_id"),
    ("view", "id"),
    ("event", "type"),
    ("event", "subtype"),
)


def _at(data: dict[str, Any], path: tuple[str, ...]) -> object:
    value: object = data
    for name in path:
        if not isinstance(value, dict):
            return None
        value = value.get(name)
    return value


def _require_user(data: dict[str, Any]) -> None:
    """Nothing is done, or recorded, for nobody: a command or click must say who sent it."""
    if "command" in data:
        if not str(data.get("user_id") or "").strip():
            raise Refusal(
                200,
                "This command arrived without a user_id, so incident-bot cannot tell who sent it; "
                "nothing was done.",
                slack_text=True,
            )
    elif data.get("type") in ("block_actions", "view_submission", "shortcut", "message_action"):
        user = data.get("user")
        if not isinstance(user, dict) or not isinstance(user.get("id"), str) or not user["id"].strip():
            raise _refused(400, "interaction without a user id; nothing was done")
