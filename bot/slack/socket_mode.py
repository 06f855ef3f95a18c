"""Slack over Socket Mode: the bot connects out to Slack instead of Slack posting to
`POST /slack/events`, so nothing of the bot needs to be reachable from the Internet.

slack-bolt's aiohttp `AsyncSocketModeHandler` runs on the same `AsyncApp` as HTTP mode, so
every listener, the repeat filter and the error handling are the same code: an envelope
becomes an `AsyncBoltRequest` (mode "socket_mode", where Bolt skips the signature check: the
socket is authenticated by the app-level token), and the ack goes back on the socket with
the envelope_id. A retried Events API envelope carries `retry_attempt`, which Bolt turns into
the X-Slack-Retry-Num header HTTP mode gets; the repeat filter and `store.claim_request` make
it act once, as over HTTP.

slack-sdk's client reconnects by itself: on Slack's `disconnect` message (a new URL from
`apps.connections.open`, then the old socket is closed), on a close frame, and when pings go
unanswered for four intervals (network loss). This module watches those messages to log
each reconnect with its reason, count it for /metrics and tell /readyz the socket's state.

The socket's state is reported by /readyz but does not make the pod unready: alerts must be
accepted and recorded while Slack is unreachable, whatever the mode (DESIGN.md, flow step 4).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from contextlib import suppress
from typing import Any

from aiohttp import WSMessage, WSMsgType
from prometheus_client import CollectorRegistry, Counter, Gauge
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp

__all__ = ["SocketMode"]

logger = logging.getLogger(__name__)
# slack-sdk's own messages about the connection (failed connects, stale sessions).
sdk_logger = logging.getLogger("bot.slack.socket_mode.sdk")

# The reason of a reconnect Slack did not announce with a `disconnect` message: a close frame,
# a lost network or unanswered pings (slack-sdk reconnects on each; it does not say which).
NETWORK_LOSS = "connection_lost"


class SocketMode:
    """One Socket Mode connection of the bot, with its state for /readyz and /metrics."""

    def __init__(
        self, bolt: AsyncApp, app_token: str, *, registry: CollectorRegistry, ping_interval: float = 10.0
    ) -> None:
        self._bolt = bolt
        self._app_token = app_token
        self._ping_interval = ping_interval
        self._handler: AsyncSocketModeHandler | None = None
        self._task: asyncio.Task[None] | None = None
        self._hello_session: object | None = None
        self._hellos = 0
        self._connected_at: float | None = None
        self._pending_reason: str | None = None
        self.reconnect_total = 0
        self._reconnects = Counter(
            "incident_bot_slack_socket_reconnects",
            "Socket Mode reconnections, by reason (Slack's disconnect reason, else connection_lost)",
            ["reason"],
            registry=registry,
        )
        connected = Gauge(
            "incident_bot_slack_socket_connected",
            "1 while the Socket Mode connection to Slack is open and greeted, else 0",
            registry=registry,
        )
        connected.set_function(lambda: 1.0 if self.connected else 0.0)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Connect in the background: Slack being unreachable must not hold up the start
        (slack-sdk retries every ping interval until it gets through)."""
        handler = AsyncSocketModeHandler(
            self._bolt,
            self._app_token,
            logger=sdk_logger,
            web_client=self._bolt.client,
            ping_interval=self._ping_interval,
        )
        handler.client.on_message_listeners.append(self._on_message)
        handler.client.on_close_listeners.append(self._on_close)
        self._handler = handler
        self._task = asyncio.get_running_loop().create_task(self._connect(), name="slack-socket-mode")

    async def _connect(self) -> None:
        assert self._handler is not None
        logger.info("connecting to Slack in Socket Mode")
        await self._handler.connect_async()

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._handler is not None:
            with suppress(Exception):
                await self._handler.close_async()
        logger.info("Socket Mode connection closed")

    # ------------------------------------------------------------------ state
    @property
    def connected(self) -> bool:
        """The current session is open and Slack greeted it (`hello`)."""
        if self._handler is None:
            return False
        client = self._handler.client
        session = client.current_session
        return (
            not client.closed
            and not client.stale
            and session is not None
            and not session.closed
            and session is self._hello_session
        )

    def status(self) -> dict[str, Any]:
        """For /readyz."""
        if self.connected:
            state = "connected"
        elif self._hellos == 0:
            state = "connecting"
        else:
            state = "reconnecting"
        out: dict[str, Any] = {"mode": "socket", "state": state, "reconnects": self.reconnect_total}
        if self.connected and self._connected_at is not None:
            out["connected_seconds"] = round(time.monotonic() - self._connected_at, 1)
        return out

    # ------------------------------------------------------------------ listeners (slack-sdk)
    async def _on_message(self, message: WSMessage) -> None:
        if message.type != WSMsgType.TEXT:
            return
        try:
            data = json.loads(message.data)
        except ValueError:
            return
        if not isinstance(data, dict):
            return
        kind = data.get("type")
        if kind == "hello":
            self._greeted(data)
        elif kind == "disconnect":
            reason = str(data.get("reason") or "unknown")
            self._pending_reason = reason
            logger.info("Slack asked to reconnect the socket", extra={"reason": reason})

    async def _on_close(self, message: WSMessage) -> None:
        # slack-sdk calls this after it has reconnected, so it only logs.
        logger.warning("Slack closed the socket; reconnected", extra={"code": message.data})

    def _greeted(self, hello: dict[str, Any]) -> None:
        assert self._handler is not None
        self._hello_session = self._handler.client.current_session
        self._connected_at = time.monotonic()
        self._hellos += 1
        details = {
            "connections": hello.get("num_connections"),
            "approximate_connection_time": (hello.get("debug_info") or {}).get("approximate_connection_time"),
        }
        if self._hellos == 1:
            logger.info("connected to Slack in Socket Mode", extra=details)
            return
        reason = self._pending_reason or NETWORK_LOSS
        self._pending_reason = None
        self.reconnect_total += 1
        self._reconnects.labels(reason).inc()
        logger.info("reconnected to Slack in Socket Mode", extra={**details, "reason": reason})
