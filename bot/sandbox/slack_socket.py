"""A local stand-in for Slack's Socket Mode endpoint: the WebSocket behind the URL that
`apps.connections.open` returns (the Web API stand-in hands out `issue_url()`).

It speaks Slack's protocol as documented (docs.slack.dev, "Using Socket Mode") and as
slack-sdk's own tests record it:
- a URL is good for one connection (`wss://wss-primary.slack.com/link/?ticket=...`); after
  the upgrade Slack sends `{"type": "hello", "num_connections": N, "connection_info":
  {"app_id": ...}, "debug_info": {... "approximate_connection_time": 18060}}`;
- every delivery is an envelope `{"envelope_id": <uuid>, "type": "slash_commands" |
  "interactive" | "events_api", "payload": {...}, "accepts_response_payload": bool}`, Events
  API envelopes also with `retry_attempt` and `retry_reason` ("" for a first attempt);
- the app acknowledges with `{"envelope_id": ..., "payload": {...}?}` on the same socket;
- Slack asks the app to reconnect with `{"type": "disconnect", "reason": "warning" |
  "refresh_requested" | "link_disabled", "debug_info": {"host": ...}}`;
- pings are answered with pongs carrying the same data (slack-sdk's liveness check).

Tests drive it from their own thread: `slash_command`, `interactive`, `events_api` send an
envelope on the newest open connection and return its envelope_id; `wait_for_ack` returns
what the app answered; `disconnect` asks for a reconnect; `drop` cuts the TCP connections
without a close frame, as a lost network does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import WSMsgType, web

__all__ = ["Ack", "SocketModeStandIn"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
HOST_NAME = "applink-sandbox-1"
CONNECTION_SECONDS = 18060  # what Slack announces today in `approximate_connection_time`


@dataclass(frozen=True)
class Ack:
    """One acknowledgement the app sent: the envelope it answers and the optional payload."""

    envelope_id: str
    payload: dict[str, Any] | None
    at: float
    connection: int


@dataclass
class _Connection:
    number: int
    ws: web.WebSocketResponse
    transport: asyncio.Transport | None
    opened_at: float = field(default_factory=time.time)


class SocketModeStandIn:
    """The Socket Mode side of one Slack app, on a free loopback port in its own thread."""

    def __init__(self, *, app_id: str = "A0SANDBOX", host: str = "127.0.0.1", port: int = 0) -> None:
        self.app_id = app_id
        self._host = host
        self._requested_port = port
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._tickets: set[str] = set()
        self._connections: dict[int, _Connection] = {}
        self._connects = 0
        self._acks: list[Ack] = []
        self._sent: list[dict[str, Any]] = []
        self._refused = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    # ================================================================= lifecycle
    def start(self) -> SocketModeStandIn:
        if self._thread is not None:
            return self
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        async def serve() -> None:
            app = web.Application()
            app.router.add_get("/link/", self._link)
            runner = web.AppRunner(app, handle_signals=False)
            await runner.setup()
            site = web.TCPSite(runner, self._host, self._requested_port)
            await site.start()
            self._runner = runner
            server = site._server
            assert server is not None
            self._port = int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(serve())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="slack-socket-standin", daemon=True)
        self._thread.start()
        ready.wait(30)
        if failure:
            raise RuntimeError(f"the Socket Mode stand-in did not start: {failure[0]}")
        logger.info("slack socket mode stand-in listening", extra={"port": self._port})
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def shutdown() -> None:
            for connection in list(self._connections.values()):
                await connection.ws.close()
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        self._loop = self._thread = None

    def __enter__(self) -> SocketModeStandIn:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ================================================================= apps.connections.open
    def issue_url(self) -> str:
        """A fresh single-use WebSocket URL, as `apps.connections.open` answers it."""
        ticket = str(uuid.uuid4())
        with self._lock:
            self._tickets.add(ticket)
        return f"ws://{self._host}:{self._port}/link/?ticket={ticket}&app_id={self.app_id}"

    # ================================================================= what the app did
    @property
    def connects(self) -> int:
        """WebSocket connections opened so far (each one got a `hello`)."""
        with self._lock:
            return self._connects

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._connections)

    @property
    def refused(self) -> int:
        """Connection attempts with an unknown or already used ticket."""
        with self._lock:
            return self._refused

    def acks(self) -> list[Ack]:
        with self._lock:
            return list(self._acks)

    def sent(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._sent)

    def wait_for_connections(self, count: int, *, timeout: float = 15.0, opened: int | None = None) -> None:
        """Until `count` connections are open (and, with `opened`, that many were ever opened)."""
        self._wait(
            lambda: len(self._connections) == count and (opened is None or self._connects >= opened),
            timeout,
            f"{count} open Socket Mode connection(s)" + (f" after {opened} connects" if opened else ""),
        )

    def wait_for_ack(self, envelope_id: str, *, timeout: float = 15.0) -> Ack:
        found: list[Ack] = []

        def acked() -> bool:
            found[:] = [a for a in self._acks if a.envelope_id == envelope_id]
            return bool(found)

        self._wait(acked, timeout, f"the ack of envelope {envelope_id}")
        return found[0]

    def _wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
                self._changed.wait(left)

    # ================================================================= what Slack does
    def slash_command(self, payload: dict[str, Any]) -> str:
        return self.send("slash_commands", payload, accepts_response_payload=True)

    def interactive(self, payload: dict[str, Any]) -> str:
        # Slack accepts a response payload for the interactions that can answer in the ack.
        accepts = payload.get("type") in ("block_suggestion", "view_submission")
        return self.send("interactive", payload, accepts_response_payload=accepts)

    def events_api(self, payload: dict[str, Any], *, retry_attempt: int = 0, retry_reason: str = "") -> str:
        return self.send(
            "events_api",
            payload,
            accepts_response_payload=False,
            retry_attempt=retry_attempt,
            retry_reason=retry_reason,
        )

    def send(
        self,
        kind: str,
        payload: dict[str, Any],
        *,
        accepts_response_payload: bool,
        retry_attempt: int | None = None,
        retry_reason: str | None = None,
    ) -> str:
        """One envelope on the newest open connection; returns its envelope_id."""
        envelope: dict[str, Any] = {
            "envelope_id": str(uuid.uuid4()),
            "payload": payload,
            "type": kind,
            "accepts_response_payload": accepts_response_payload,
        }
        if retry_attempt is not None:
            envelope["retry_attempt"] = retry_attempt
            envelope["retry_reason"] = retry_reason or ""
        self._call(self._send_on_newest(envelope))
        return str(envelope["envelope_id"])

    def disconnect(self, reason: str = "refresh_requested") -> None:
        """Slack's request to reconnect, on every open connection."""
        message = {"type": "disconnect", "reason": reason, "debug_info": {"host": HOST_NAME}}

        async def send_all() -> None:
            for connection in list(self._connections.values()):
                await connection.ws.send_str(json.dumps(message))

        self._call(send_all())

    def drop(self) -> None:
        """Cut every connection without a close frame: what the app sees when the network goes."""

        async def abort_all() -> None:
            for connection in list(self._connections.values()):
                if connection.transport is not None:
                    connection.transport.abort()

        self._call(abort_all())

    # ================================================================= the server side
    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        assert self._loop is not None, "the Socket Mode stand-in is not started"
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(30)

    async def _send_on_newest(self, envelope: dict[str, Any]) -> None:
        with self._lock:
            if not self._connections:
                raise AssertionError("no open Socket Mode connection to send an envelope on")
            connection = self._connections[max(self._connections)]
            self._sent.append(envelope)
        await connection.ws.send_str(json.dumps(envelope))

    async def _link(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        with self._lock:
            valid = ticket in self._tickets
            self._tickets.discard(ticket)
            if not valid:
                self._refused += 1
        if not valid:
            return web.json_response({"ok": False, "error": "invalid_ticket"}, status=401)
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        transport = request.transport
        with self._changed:
            self._connects += 1
            number = self._connects
            self._connections[number] = _Connection(
                number, ws, transport if isinstance(transport, asyncio.Transport) else None
            )
            count = len(self._connections)
            self._changed.notify_all()
        hello = {
            "type": "hello",
            "num_connections": count,
            "debug_info": {
                "host": HOST_NAME,
                "build_number": 1,
                "approximate_connection_time": CONNECTION_SECONDS,
            },
            "connection_info": {"app_id": self.app_id},
        }
        await ws.send_str(json.dumps(hello))
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    self._received(number, message.data)
        finally:
            with self._changed:
                self._connections.pop(number, None)
                self._changed.notify_all()
        return ws

    def _received(self, connection: int, data: str) -> None:
        try:
            answer = json.loads(data)
        except ValueError:
            logger.warning("socket mode stand-in got a message that is not JSON", extra={"data": data[:200]})
            return
        if not isinstance(answer, dict) or "envelope_id" not in answer:
            logger.warning(
                "socket mode stand-in got a message without envelope_id", extra={"data": data[:200]}
            )
            return
        payload = answer.get("payload")
        with self._changed:
            self._acks.append(
                Ack(
                    envelope_id=str(answer["envelope_id"]),
                    payload=payload if isinstance(payload, dict) else None,
                    at=time.time(),
                    connection=connection,
                )
            )
            self._changed.notify_all()
