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

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, OperationalError

from bot.alerts import AlertmanagerWebhook, describe_validation_error, parse_webhook
from bot.errors import PayloadError
from bot.intake_writer import Unstorable
from bot.storable import clamped, problems

if TYPE_CHECKING:
    from bot.services import Services

__all__ = ["router"]

logger = logging.getLogger(__name__)
router = APIRouter()


class _TooLarge(Exception):
    pass


async def _read_bounded(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise _TooLarge
    return bytes(body)


def _authorized(request: Request, token: str) -> bool:
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(credentials.strip().encode(), token.encode())


def _error(status: int, message: str, **extra: object) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Bearer realm="incident-bot"'} if status == 401 else None
    if status == 503:
        headers = {"Retry-After": "5"}
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


@router.post("/alertmanager")
async def alertmanager_webhook(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    settings = services.settings
    metrics = services.metrics
    if settings.webhook_token is not None and not _authorized(
        request, settings.webhook_token.get_secret_value()
    ):
        metrics.notifications.labels("unauthorized").inc()
        return _error(401, "missing or wrong Authorization: Bearer token")
    try:
        body = await _read_bounded(request, settings.max_body_bytes)
    except _TooLarge:
        metrics.notifications.labels("too_large").inc()
        return _error(413, f"body larger than INCIDENT_BOT_MAX_BODY_BYTES ({settings.max_body_bytes} bytes)")
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
        return JSONResponse({"status": "ok", "incident": None, "duplicate": None, "queued": True})
    logger.info(
        "notification accepted",
        extra={"group_key": webhook.groupKey, "incident": result.incident_key, "duplicate": result.duplicate},
    )
    return JSONResponse(
        {"status": "ok", "incident": result.incident_key, "duplicate": result.duplicate},
        status_code=200,
    )


def _journal_text(body: bytes, webhook: AlertmanagerWebhook, *, reencode: bool) -> str:
    """The body as received (already validated); re-encoded when a value was clamped or the
    JSON came in UTF-16/32."""
    if not reencode:
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return json.dumps(webhook.model_dump(mode="json"))
