"""Two ASGI middlewares around every route: the API token, and a last-resort 500.

`ApiTokenGuard`: with INCIDENT_BOT_API_TOKEN set, everything under `/api` (the incidents, their
postmortems and the OpenAPI document, which FastAPI serves outside any router) answers 401
unless the request carries `Authorization: Bearer <token>`, compared in constant time. Health,
readiness and metrics stay open for probes and Prometheus; `/alertmanager` and `/slack/events`
have their own authentication.

`CloseOnError`: an exception escaping a route makes Starlette send a 500 and re-raise, and
uvicorn then closes the keep-alive connection without `Connection: close`, so a client that
reuses it loses its next request. No route should raise (bad input is a 4xx); if one does, this
answers the 500 itself with `Connection: close`, logs the exception, and does not re-raise.
"""

from __future__ import annotations

import hmac
import json
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["ApiTokenGuard", "CloseOnError"]

logger = logging.getLogger(__name__)


async def _send_json(
    send: Send, status: int, body: dict[str, str], headers: list[tuple[bytes, bytes]]
) -> None:
    content = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(content)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": content})


class ApiTokenGuard:
    def __init__(self, app: ASGIApp, *, token: str | None) -> None:
        self.app = app
        self.token = token.encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.token is None or scope["type"] != "http" or not _under_api(scope["path"]):
            await self.app(scope, receive, send)
            return
        header = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                header = value
                break
        scheme, _, credentials = header.partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(), self.token):
            await self.app(scope, receive, send)
            return
        await _send_json(
            send,
            401,
            {"error": "missing or wrong Authorization: Bearer token (INCIDENT_BOT_API_TOKEN)"},
            [(b"www-authenticate", b'Bearer realm="incident-bot"')],
        )


def _under_api(path: str) -> bool:
    return path == "/api" or path.startswith("/api/")


class CloseOnError:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            if started:
                raise  # too late to answer; the server closes the connection
            logger.exception("unhandled error; answered 500", extra={"path": scope.get("path")})
            await _send_json(
                send, 500, {"error": "internal error; it is logged"}, [(b"connection", b"close")]
            )
