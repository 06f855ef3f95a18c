"""POST /alertmanager: authenticate, bound, parse, validate, commit, then answer.

Status codes follow Alertmanager's retry rules (notify/util.go): it retries only after a 5xx
or a network error, and gives up on every 4xx. So a 4xx is returned only for a payload that
can never succeed (401 bad credentials, 400 not JSON, 413 too large, 422 wrong shape), and
anything transient on our side (the database unavailable) is a 503, asking for a resend.
Nothing is answered 200 before the notification is committed: to the intake journal, with
every other notification arriving at that moment (bot/intake_writer.py), and applied to its
incident before the answer unless a storm has made the journal long.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import TYPE_CHECKING

from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.requests import ClientDisconnect
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from bot.alerts import AlertmanagerWebhook as Notification
from bot.alerts import describe_validation_error, parse_webhook
from bot.errors import PayloadError
from bot.intake_writer import Unstorable
from bot.storable import clamped, problems

if TYPE_CHECKING:
    from bot.services import Services

__all__ = ["AlertmanagerWebhook", "route"]

logger = logging.getLogger(__name__)


class _TooLarge(Exception):
    pass


async def _read_bounded(scope: Scope, receive: Receive, limit: int) -> bytes:
    declared = _header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        body.extend(message.get("body", b""))
        if len(body) > limit:
            raise _TooLarge
        if not message.get("more_body", False):
            return bytes(body)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def _authorized(scope: Scope, token: str) -> bool:
    header = _header(scope, b"authorization") or ""
    scheme, _, credentials = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(credentials.strip().encode(), token.encode())


class _Answer:
    """A JSON answer, sent without a Response object per request."""

    def __init__(
        self, status: int, content: dict[str, object], headers: dict[str, str] | None = None
    ) -> None:
        self.status = status
        self.body = json.dumps(content, separators=(",", ":")).encode()
        self.headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(self.body)).encode()),
        ]
        self.headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]

    async def __call__(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body})


def _error(status: int, message: str, **extra: object) -> _Answer:
    headers = {"WWW-Authenticate": 'Bearer realm="incident-bot"'} if status == 401 else None
    if status == 503:
        headers = {"Retry-After": "5"}
    return _Answer(status, {"error": message, **extra}, headers)


_QUEUED = _Answer(200, {"status": "ok", "incident": None, "duplicate": None, "queued": True})


class AlertmanagerWebhook:
    """POST /alertmanager as a plain ASGI app rather than a FastAPI route: it is the one
    endpoint a storm hits thousands of times a second, and FastAPI's per-request machinery
    (a Request object, dependency solving, a Response object) cost about as much as the
    endpoint's own work (bench/ingest.py). Its answers and errors are the same JSON."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer = await self.answer(scope, receive)
        await answer(send)

    async def answer(self, scope: Scope, receive: Receive) -> _Answer:
        services: Services = scope["app"].state.services
        settings = services.settings
        metrics = services.metrics
        if settings.webhook_token is not None and not _authorized(
            scope, settings.webhook_token.get_secret_value()
        ):
            metrics.notifications.labels("unauthorized").inc()
            return _error(401, "missing or wrong Authorization: Bearer token")
        try:
            body = await _read_bounded(scope, receive, settings.max_body_bytes)
        except _TooLarge:
            metrics.notifications.labels("too_large").inc()
            return _error(
                413, f"body larger than INCIDENT_BOT_MAX_BODY_BYTES ({settings.max_body_bytes} bytes)"
            )
        try:
            webhook = parse_webhook(body)
        except PayloadError as exc:
            metrics.notifications.labels("malformed").inc()
            return _error(400, exc.message, field=getattr(exc, "field", "(body)"))
        except ValidationError as exc:
            metrics.notifications.labels("invalid").inc()
            return _error(
                422,
                "not a valid Alertmanager webhook payload (version 4)",
                details=describe_validation_error(exc),
            )

        unstorable = problems(webhook, body)
        if unstorable:
            metrics.notifications.labels("invalid").inc()
            return _error(422, "a value of this notification cannot be stored", details=unstorable)
        try:
            safe = clamped(webhook)
            result = await services.intake.accept(_journal_text(body, safe, reencode=safe is not webhook))
        except Unstorable as exc:
            metrics.notifications.labels("invalid").inc()
            return _error(422, f"the database cannot store a value of this notification: {exc}")
        except (OperationalError, DBAPIError) as exc:
            metrics.notifications.labels("unavailable").inc()
            logger.error(
                "database unavailable during intake",
                extra={"group_key": webhook.groupKey, "error": str(exc.orig)},
            )
            return _error(503, "database unavailable; Alertmanager will retry")

        if result is None:
            # A storm: one line per notification would cost more than the rest of the answer
            # (the intake writer logs how many every few seconds instead).
            logger.debug("notification journaled", extra={"group_key": webhook.groupKey})
            return _QUEUED
        logger.info(
            "notification accepted",
            extra={
                "group_key": webhook.groupKey,
                "incident": result.incident_key,
                "duplicate": result.duplicate,
            },
        )
        return _Answer(200, {"status": "ok", "incident": result.incident_key, "duplicate": result.duplicate})


route = Route("/alertmanager", AlertmanagerWebhook(), methods=["POST"])


def _error_schema(description: str) -> dict[str, object]:
    return {"description": description, "content": {"application/json": {"schema": {"type": "object"}}}}


#: Its entry in the OpenAPI document (FastAPI lists only its own routes).
OPENAPI_PATH: dict[str, object] = {
    "post": {
        "summary": "Alertmanager webhook (payload version 4)",
        "description": "Answers 200 once the notification is durably journaled; 4xx for a payload "
        "that can never be accepted (Alertmanager does not resend those), 503 when the database "
        "is unavailable (it does).",
        "security": [{"bearer": []}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
        "responses": {
            "200": _error_schema("journaled: the incident's key, or `queued` during a storm"),
            "400": _error_schema("not JSON, or JSON the bot refuses (the field is named)"),
            "401": _error_schema("missing or wrong bearer token"),
            "413": _error_schema("body over INCIDENT_BOT_MAX_BODY_BYTES"),
            "422": _error_schema("not an Alertmanager v4 payload, or a value no database can store"),
            "503": _error_schema("database unavailable; Alertmanager retries"),
        },
    }
}


def _journal_text(body: bytes, webhook: Notification, *, reencode: bool) -> str:
    """The body as received (already validated); re-encoded when a value was clamped or the
    JSON came in UTF-16/32."""
    if not reencode:
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return json.dumps(webhook.model_dump(mode="json"))
