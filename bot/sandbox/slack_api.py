"""A local stand-in for the Slack Web API that the real slack-sdk clients can talk to.

Point `slack_sdk.WebClient(base_url=standin.url)` (or `AsyncWebClient`, or the bot through
`SLACK_API_URL`) at it: it speaks Slack's wire format (form, JSON and query arguments,
`Authorization: Bearer`, `ok: false` with HTTP 200, 429 with `Retry-After`), keeps a stateful
workspace (channels, threads, edits, files, views), records every call for tests, and can fail
on demand (HTTP errors, `ok: false`, slow answers, outages, per-channel rate limits) so outage
handling is tested against the same client code that runs in production.

Routes under `base`:
    /api/<method>          Web API methods (see `slack_methods.METHODS`); `apps.connections.open`
                           (app-level token) once `attach_socket_mode()` gave it a Socket Mode
                           stand-in (bot/sandbox/slack_socket.py)
    /upload/v1/<key>       upload URLs handed out by files.getUploadURLExternal
    /response/<name>       response_url stand-ins minted by `response_url()`
    /files/<id>/...        GET the bytes of an uploaded file (the file's `url_private`)
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

from bot.sandbox import transcript as transcript_module
from bot.sandbox.serving import serve_in_background, shut_down
from bot.sandbox.slack_hooks import ResponseTarget, apply_response
from bot.sandbox.slack_methods import METHODS
from bot.sandbox.slack_models import (
    ApiError,
    Channel,
    Message,
    RecordedCall,
    ResponsePost,
    Upload,
    User,
    Usergroup,
)
from bot.sandbox.slack_socket import SocketModeStandIn
from bot.sandbox.slack_wire import Args, decode_json_fields, parse_body, parse_multipart, parse_query
from bot.sandbox.slack_workspace import StoredChannel, StoredMessage, Workspace

__all__ = [
    "DEFAULT_BOT_TOKEN",
    "RESPONSE_URL_METHOD",
    "UPLOAD_METHOD",
    "SlackStandIn",
]

logger = logging.getLogger(__name__)

DEFAULT_BOT_TOKEN = "xoxb-sandbox-token"  # noqa: S105 - the sandbox's own fake token, not a secret
# Pseudo method names under which the non-API routes are recorded and can be failed.
UPLOAD_METHOD = "upload"
RESPONSE_URL_METHOD = "response_url"
REDACTED = "[REDACTED]"
CONNECTIONS_OPEN = "apps.connections.open"  # the one method that takes the app-level token
JSON_TYPE = "application/json; charset=utf-8"

CallListener = Callable[[RecordedCall], None]


@dataclass
class _Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)
    reset: bool = False  # drop the connection without answering

    @classmethod
    def json(
        cls, payload: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
    ) -> _Reply:
        return cls(status=status, body=json.dumps(payload).encode(), headers=headers or {})

    @classmethod
    def text(cls, text: str, status: int = 200) -> _Reply:
        return cls(status=status, body=text.encode(), content_type="text/plain; charset=utf-8")

    def payload(self) -> dict[str, Any] | None:
        if self.reset or not self.content_type.startswith("application/json"):
            return None
        try:
            decoded = json.loads(self.body)
        except ValueError:
            return None
        return decoded if isinstance(decoded, dict) else None


@dataclass
class _Fault:
    method: str
    times: int
    status: int = 500
    error: str | None = None
    ok_false_error: str | None = None
    retry_after: int | None = None

    def reply(self) -> _Reply:
        if self.ok_false_error is not None:
            return _Reply.json({"ok": False, "error": self.ok_false_error})
        headers: dict[str, str] = {}
        if self.status == 429 or self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after if self.retry_after is not None else 1)
        default = "ratelimited" if self.status == 429 else "internal_error"
        return _Reply.json({"ok": False, "error": self.error or default}, self.status, headers)


@dataclass
class _Delay:
    method: str
    times: int
    seconds: float


@dataclass
class _Request:
    http_method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None


def _matches(rule_method: str, method: str) -> bool:
    return rule_method in ("*", method)


def _redact_headers(headers: dict[str, str]) -> dict[str, str]:
    out = {}
    for key, value in headers.items():
        if key.lower() == "authorization":
            scheme = value.split(" ", 1)[0] if " " in value else ""
            value = f"{scheme} {REDACTED}".strip()
        out[key] = value
    return out


class SlackStandIn:
    """A threaded local HTTP server playing one Slack workspace for one bot token.

    Use as a context manager, or `start()` / `stop()`. All state sits behind one lock, so
    the bot's threads, its async client and the test can use it at the same time.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        bot_token: str = DEFAULT_BOT_TOKEN,
        team_id: str = "T0SANDBOX",
        team_name: str = "Sandbox",
        domain: str = "sandbox",
        bot_user_id: str = "U0BOT",
        bot_id: str = "B0BOT",
        app_id: str = "A0SANDBOX",
        bot_name: str = "incident-bot",
        chat_write_public: bool = True,
        on_call: CallListener | None = None,
    ) -> None:
        self._host = host
        self._requested_port = port
        self.bot_token = bot_token
        self._workspace_args: dict[str, Any] = {
            "team_id": team_id,
            "team_name": team_name,
            "domain": domain,
            "bot_user_id": bot_user_id,
            "bot_id": bot_id,
            "app_id": app_id,
            "bot_name": bot_name,
            "chat_write_public": chat_write_public,
        }
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._ws = Workspace(**self._workspace_args)
        self._calls: list[RecordedCall] = []
        self._faults: list[_Fault] = []
        self._delays: list[_Delay] = []
        self._outage: str | None = None
        self._rate: tuple[float, int] | None = None
        self._buckets: dict[str, tuple[float, float]] = {}
        self._responses: list[ResponsePost] = []
        self._response_targets: dict[str, ResponseTarget] = {}
        self._listeners: list[CallListener] = [on_call] if on_call else []
        self._socket: SocketModeStandIn | None = None
        self._app_token: str | None = None
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ================================================================= lifecycle
    def start(self) -> SlackStandIn:
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server((self._host, self._requested_port), _handler_for(self))
        self._server = server
        with self._lock:
            self._ws.base_url = self.base
        self._thread = serve_in_background(server, name="slack-standin")
        logger.info("slack stand-in listening", extra={"url": self.url})
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()  # wakes delayed requests
        shut_down(server, thread)
        self._server = None
        self._thread = None

    def __enter__(self) -> SlackStandIn:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(
                "the Slack stand-in is not started; call start() or use it as a context manager"
            )
        return int(self._server.server_address[1])

    @property
    def base(self) -> str:
        """`http://127.0.0.1:PORT`, the root of every route."""
        return f"http://{self._host}:{self.port}"

    @property
    def url(self) -> str:
        """The Web API base URL ending in `/api/`: the bot's `SLACK_API_URL`, slack-sdk's `base_url`."""
        return f"{self.base}/api/"

    def attach_socket_mode(self, socket: SocketModeStandIn, app_token: str) -> None:
        """Serve `apps.connections.open` for this app-level token with URLs of `socket`."""
        with self._lock:
            self._socket, self._app_token = socket, app_token

    # ================================================================= workspace setup
    def add_channel(
        self,
        name: str,
        *,
        channel_id: str | None = None,
        is_private: bool = False,
        members: list[str] | tuple[str, ...] = (),
        bot_member: bool = True,
    ) -> Channel:
        with self._lock:
            stored = self._ws.add_channel(
                name, channel_id=channel_id, is_private=is_private, members=members, bot_member=bot_member
            )
            return self._ws.snapshot_channel(stored)

    def add_user(
        self, user_id: str, name: str, real_name: str | None = None, *, is_bot: bool = False, email: str = ""
    ) -> User:
        with self._lock:
            return self._ws.add_user(user_id, name, real_name, is_bot=is_bot, email=email)

    def add_usergroup(
        self, group_id: str, handle: str, users: list[str] | tuple[str, ...], *, name: str | None = None
    ) -> Usergroup:
        with self._lock:
            return self._ws.add_usergroup(group_id, handle, users, name=name)

    def post_as_user(self, channel: str, user: str, text: str, *, thread_ts: str | None = None) -> Message:
        """A message from a person (not the bot), e.g. a responder's reply in an incident thread."""
        with self._lock:
            stored_channel = self._resolve(channel)
            if user not in self._ws.users:
                raise LookupError(f"no user {user!r} in the sandbox workspace; add it with add_user")
            root = self._ws.thread_root(stored_channel, thread_ts) if thread_ts else None
            message = self._ws.add_message(
                stored_channel,
                StoredMessage(
                    channel=stored_channel.id, ts=self._ws.clock.next(), user=user, text=text, thread_ts=root
                ),
            )
            return self._ws.snapshot_message(stored_channel, message, with_replies=True)

    def trigger_id(self) -> str:
        """A fresh trigger_id shaped like Slack's, for interaction payloads that lead to views.open."""
        return f"{int(time.time())}.{secrets.randbelow(10**12)}.{secrets.token_hex(16)}"

    def response_url(
        self,
        name: str | None = None,
        *,
        channel: str | None = None,
        message_ts: str | None = None,
        user: str | None = None,
        thread_ts: str | None = None,
    ) -> str:
        """Mint a response_url; bound to a message, `replace_original`/`delete_original` act on it;
        with `thread_ts`, answers land in that thread (as for a click on a message in a thread)."""
        key = name or secrets.token_hex(8)
        with self._lock:
            channel_id = self._resolve(channel).id if channel else None
            self._response_targets[key] = ResponseTarget(key, channel_id, message_ts, user, thread_ts)
        return f"{self.base}/response/{key}"

    # ================================================================= inspection
    def calls(self, method: str | None = None) -> list[RecordedCall]:
        with self._lock:
            return [c for c in self._calls if method is None or c.method == method]

    def wait_for(
        self, method: str, count: int = 1, timeout: float = 10.0, *, ok_only: bool = False
    ) -> list[RecordedCall]:
        """Block until `count` calls of `method` arrived (answered); AssertionError with a summary if not."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [c for c in self._calls if c.method == method and (c.ok or not ok_only)]
                if len(found) >= count:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(self._summary(method, count, len(found), timeout))
                self._changed.wait(min(remaining, 0.2))

    def _summary(self, method: str, wanted: int, got: int, timeout: float) -> str:
        counts: dict[str, int] = {}
        for call in self._calls:
            counts[call.method] = counts.get(call.method, 0) + 1
        seen = ", ".join(f"{m} x{n}" for m, n in counts.items()) or "no calls at all"
        recent = "\n".join(
            f"  {c.method} -> {c.status} {c.error or ('ok' if c.ok else '')}".rstrip()
            for c in self._calls[-8:]
        )
        return (
            f"Slack stand-in: expected {wanted} call(s) of {method} within {timeout}s, got {got}. "
            f"Received: {seen}.\nLast calls:\n{recent or '  (none)'}"
        )

    def channel(self, ref: str) -> Channel:
        with self._lock:
            return self._ws.snapshot_channel(self._resolve(ref))

    def channels(self) -> list[Channel]:
        with self._lock:
            return [self._ws.snapshot_channel(c) for c in self._ws.channels.values()]

    def user(self, user_id: str) -> User:
        with self._lock:
            if user_id not in self._ws.users:
                raise LookupError(f"no user {user_id!r} in the sandbox workspace")
            return self._ws.users[user_id]

    def messages(self, channel: str) -> list[Message]:
        """Top-level messages, oldest first, each with its current content, replies and edit history."""
        with self._lock:
            stored = self._resolve(channel)
            return [
                self._ws.snapshot_message(stored, m, with_replies=True) for m in self._ws.top_level(stored)
            ]

    def message(self, channel: str, ts: str) -> Message:
        with self._lock:
            stored = self._resolve(channel)
            found = self._ws.find_message(stored, ts)
            if found is None:
                raise LookupError(f"no message {ts} in {stored.id} (#{stored.name})")
            return self._ws.snapshot_message(stored, found, with_replies=True)

    def thread(self, channel: str, ts: str) -> list[Message]:
        """The replies in the thread under `ts`, oldest first (the parent is `message(channel, ts)`)."""
        with self._lock:
            stored = self._resolve(channel)
            return [
                self._ws.snapshot_message(stored, m, with_replies=False) for m in self._ws.replies(stored, ts)
            ]

    def uploads(self) -> list[Upload]:
        with self._lock:
            return [self._ws.snapshot_upload(u) for u in self._ws.uploads.values()]

    def home_view(self, user: str) -> dict[str, Any] | None:
        with self._lock:
            view = self._ws.home_views.get(user)
            return json.loads(json.dumps(view)) if view is not None else None

    def views(self) -> list[dict[str, Any]]:
        """Modal views opened, pushed or updated, in the state Slack would show them."""
        with self._lock:
            return [json.loads(json.dumps(v)) for v in self._ws.views.values()]

    def ephemerals(self, channel: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            wanted = self._resolve(channel).id if channel else None
            return [dict(e) for e in self._ws.ephemerals if wanted is None or e["channel"] == wanted]

    def responses(self) -> list[ResponsePost]:
        with self._lock:
            return list(self._responses)

    def transcript(self, channel: str | None = None) -> str:
        """The workspace as terminal text: messages, edits, threads, files, home tabs (for the demo)."""
        with self._lock:
            chosen = [self._resolve(channel)] if channel else list(self._ws.channels.values())
            conversations = [
                (
                    self._ws.snapshot_channel(c),
                    [self._ws.snapshot_message(c, m, with_replies=True) for m in self._ws.top_level(c)],
                )
                for c in chosen
            ]
            names = {u.id: u.name for u in self._ws.users.values()}
            homes = {} if channel else {k: dict(v) for k, v in self._ws.home_views.items()}
            ephemerals = [
                dict(e) for e in self._ws.ephemerals if channel is None or e["channel"] == chosen[0].id
            ]
        return transcript_module.render(conversations, names=names, home_views=homes, ephemerals=ephemerals)

    def subscribe(self, listener: CallListener) -> Callable[[], None]:
        """Call `listener(call)` for each request just before answering it; returns an unsubscribe function.

        Listeners run on the server's request thread: keep them quick (printing is fine).
        """
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def reset(self) -> None:
        """Back to the freshly started state: default workspace, no calls, no faults, no limits."""
        with self._lock:
            base = self._ws.base_url
            self._ws = Workspace(**self._workspace_args)
            self._ws.base_url = base
            self._calls.clear()
            self._faults.clear()
            self._delays.clear()
            self._outage = None
            self._rate = None
            self._buckets.clear()
            self._responses.clear()
            self._response_targets.clear()

    # ================================================================= failure injection
    def fail_next(
        self,
        method: str,
        *,
        status: int = 500,
        error: str | None = None,
        ok_false_error: str | None = None,
        retry_after: int | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next `times` calls of `method` ("*" for any) with a failure, doing no work.

        `ok_false_error="channel_not_found"` gives HTTP 200 `{"ok": false, "error": ...}`;
        otherwise HTTP `status`, with `Retry-After` (default 1) and `ratelimited` for 429.
        """
        if times < 1:
            raise ValueError(f"times must be at least 1, got {times}")
        with self._lock:
            self._faults.append(_Fault(method, times, status, error, ok_false_error, retry_after))

    def delay_next(self, method: str, seconds: float, *, times: int = 1) -> None:
        """Sleep before handling the next `times` calls of `method`, then do the work normally.

        A client that times out meanwhile sees an error although the call succeeded: the
        "ambiguous timeout" the bot must survive without posting twice.
        """
        if times < 1 or seconds < 0:
            raise ValueError(f"need times >= 1 and seconds >= 0, got times={times} seconds={seconds}")
        with self._lock:
            self._delays.append(_Delay(method, times, seconds))

    def outage(self, *, mode: str = "503") -> None:
        """Every route fails until `restore()`: HTTP 503 (mode "503") or a dropped connection ("reset")."""
        if mode not in ("503", "reset"):
            raise ValueError(f"outage mode must be '503' or 'reset', got {mode!r}")
        with self._lock:
            self._outage = mode

    def restore(self) -> None:
        with self._lock:
            self._outage = None

    def set_rate_limit(self, per_channel_per_second: float | None = 1.0, *, burst: int = 1) -> None:
        """Slack's posting limit: chat.postMessage beyond this rate per channel gets 429 + Retry-After.

        `None` turns it off (the default state).
        """
        with self._lock:
            if per_channel_per_second is None:
                self._rate = None
            elif per_channel_per_second <= 0 or burst < 1:
                raise ValueError("the rate must be positive and burst at least 1")
            else:
                self._rate = (per_channel_per_second, burst)
            self._buckets.clear()

    # ================================================================= request handling
    def _resolve(self, ref: str | None) -> StoredChannel:
        found = self._ws.find_channel(ref or "")
        if found is None:
            raise LookupError(f"no channel {ref!r} in the sandbox workspace")
        return found

    def _take(self, rules: list[Any], method: str) -> Any:
        with self._lock:
            for rule in rules:
                if _matches(rule.method, method):
                    rule.times -= 1
                    if rule.times <= 0:
                        rules.remove(rule)
                    return rule
        return None

    def handle(self, request: _Request) -> tuple[_Reply, RecordedCall | None]:
        """Route one HTTP request; the call is recorded before the reply is written."""
        parts = urlsplit(request.path)
        path = unquote(parts.path)
        if path.startswith("/api/"):
            method = path[len("/api/") :]
            return self._record(
                request, method, parts.query, lambda p, e: self._web_api(method, request, p, e)
            )
        if path.startswith("/upload/v1/") and request.http_method == "POST":
            key = path[len("/upload/v1/") :]
            return self._record(request, UPLOAD_METHOD, parts.query, lambda p, e: self._upload(key, request))
        if path.startswith("/response/") and request.http_method == "POST":
            name = path[len("/response/") :]
            return self._record(
                request, RESPONSE_URL_METHOD, parts.query, lambda p, e: self._respond(name, request)
            )
        if path.startswith("/files/") and request.http_method == "GET":
            return self._file(path), None
        return _Reply.text("not found", 404), None

    def _record(
        self, request: _Request, method: str, query: str, work: Callable[[dict[str, Any], str | None], _Reply]
    ) -> tuple[_Reply, RecordedCall]:
        arrived = time.time()
        parse_error: str | None = None
        if method == UPLOAD_METHOD:
            params: dict[str, Any] = {"bytes": len(request.body)}
            kind = "raw"
        else:
            parsed = parse_body(request.body, request.header("content-type"))
            params = {**parse_query(query), **parsed.params}
            kind, parse_error = parsed.kind, parsed.error
            if kind == "none" and query:
                kind = "query"
        reply = self._gate(method)
        if reply is None:
            delay = self._take(self._delays, method)
            if delay is not None and delay.seconds > 0:
                self._stopping.wait(delay.seconds)
            fault = self._take(self._faults, method)
            reply = fault.reply() if fault is not None else self._safely(work, params, parse_error)
        recorded = {k: (REDACTED if k == "token" else v) for k, v in decode_json_fields(params).items()}
        call = RecordedCall(
            method=method,
            params=recorded,
            headers=_redact_headers(request.headers),
            at=arrived,
            status=0 if reply.reset else reply.status,
            response=reply.payload(),
            body_kind=kind,
            http_method=request.http_method,
        )
        with self._changed:
            self._calls.append(call)
            self._changed.notify_all()
        return reply, call

    def _gate(self, method: str) -> _Reply | None:
        with self._lock:
            mode = self._outage
        if mode == "reset":
            return _Reply(reset=True)
        if mode == "503":
            return _Reply.json({"ok": False, "error": "service_unavailable"}, 503)
        return None

    def _safely(
        self, work: Callable[[dict[str, Any], str | None], _Reply], params: dict[str, Any], error: str | None
    ) -> _Reply:
        try:
            return work(params, error)
        except Exception:
            logger.exception("slack stand-in failed on a request")
            return _Reply.json({"ok": False, "error": "internal_error"}, 500)

    def _web_api(
        self, method: str, request: _Request, params: dict[str, Any], parse_error: str | None
    ) -> _Reply:
        if parse_error:
            return _Reply.json({"ok": False, "error": parse_error})
        handler = METHODS.get(method)
        if handler is None and method != CONNECTIONS_OPEN:
            return _Reply.json({"ok": False, "error": "unknown_method", "req_method": method}, 404)
        auth = request.header("authorization") or ""
        token = auth[len("Bearer ") :].strip() if auth.startswith("Bearer ") else params.get("token")
        if not token:
            return _Reply.json({"ok": False, "error": "not_authed"})
        if method == CONNECTIONS_OPEN:
            return self._connections_open(str(token))
        assert handler is not None
        if token != self.bot_token:
            return _Reply.json({"ok": False, "error": "invalid_auth"})
        with self._lock:
            limited = self._rate_limited(method, params)
            if limited is not None:
                return limited
            try:
                return _Reply.json(handler(self._ws, Args(params)))
            except ApiError as exc:
                body: dict[str, Any] = {"ok": False, "error": exc.code, **exc.extra}
                if exc.messages:
                    body["response_metadata"] = {"messages": exc.messages}
                return _Reply.json(body)

    def _connections_open(self, token: str) -> _Reply:
        """Slack answers a bot or user token with not_allowed_token_type: only an app-level
        token (xapp-, scope connections:write) opens a socket."""
        with self._lock:
            socket, app_token = self._socket, self._app_token
        if not token.startswith("xapp-"):
            return _Reply.json({"ok": False, "error": "not_allowed_token_type"})
        if socket is None or token != app_token:
            return _Reply.json({"ok": False, "error": "invalid_auth"})
        return _Reply.json({"ok": True, "url": socket.issue_url()})

    def _rate_limited(self, method: str, params: dict[str, Any]) -> _Reply | None:
        if self._rate is None or method != "chat.postMessage":
            return None
        rate, burst = self._rate
        ref = str(params.get("channel", ""))
        found = self._ws.find_channel(ref)
        key = found.id if found is not None else ref
        now = time.monotonic()
        tokens, last = self._buckets.get(key, (float(burst), now))
        tokens = min(float(burst), tokens + (now - last) * rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            wait = max(1, math.ceil((1.0 - tokens) / rate))
            return _Reply.json({"ok": False, "error": "ratelimited"}, 429, {"Retry-After": str(wait)})
        self._buckets[key] = (tokens - 1.0, now)
        return None

    def _upload(self, key: str, request: _Request) -> _Reply:
        data = request.body
        content_type = request.header("content-type") or ""
        if content_type.lower().startswith("multipart/form-data"):
            fields, file_bytes = parse_multipart(data, content_type)
            data = file_bytes if file_bytes is not None else fields.get("file", "").encode()
        with self._lock:
            upload = next((u for u in self._ws.uploads.values() if u.key == key), None)
            if upload is None or upload.completed:
                return _Reply.text("not found", 404)
            upload.data = data
        return _Reply.text(f"OK - {len(data)}")

    def _respond(self, name: str, request: _Request) -> _Reply:
        content_type = request.header("content-type") or "application/json"
        parsed = parse_body(request.body, content_type)
        body = parsed.params
        if parsed.kind == "form" and isinstance(body.get("payload"), str):
            body = json.loads(body["payload"])
        if parsed.error or not body:
            return _Reply.text("invalid_payload", 400)
        with self._lock:
            target = self._response_targets.get(name, ResponseTarget(name))
            self._responses.append(ResponsePost(name=name, body=body, at=time.time()))
            status, text = apply_response(self._ws, target, body)
        return _Reply.text(text, status)

    def _file(self, path: str) -> _Reply:
        parts = path.split("/")
        file_id = parts[2] if len(parts) > 2 else ""
        with self._lock:
            upload = self._ws.uploads.get(file_id)
            if upload is None or upload.data is None:
                return _Reply.text("not found", 404)
            snapshot = self._ws.snapshot_upload(upload)
        return _Reply(body=snapshot.data, content_type=snapshot.mimetype)

    def _notify(self, call: RecordedCall) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(replace(call))
            except Exception:
                logger.exception("slack stand-in listener failed")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hung up (timeouts in outage tests) is expected; keep stderr quiet.
        logger.debug("slack stand-in connection error", exc_info=True)


def _handler_for(standin: SlackStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "SlackStandIn/1.0"

        def _serve(self) -> None:
            body = self._read_body()
            request = _Request(
                http_method=self.command,
                path=self.path,
                headers={k: v for k, v in self.headers.items()},
                body=body,
            )
            reply, call = standin.handle(request)
            if call is not None:
                standin._notify(call)  # before answering, so listeners see calls in the client's order
            if reply.reset:
                self.close_connection = True
            else:
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", reply.content_type)
                    self.send_header("Content-Length", str(len(reply.body)))
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    logger.debug("slack stand-in client went away before the answer")

        def _read_body(self) -> bytes:
            if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
                chunks: list[bytes] = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        self.rfile.readline()
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length > 0 else b""

        def do_POST(self) -> None:
            self._serve()

        def do_GET(self) -> None:
            self._serve()

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("slack stand-in request", extra={"line": format % args})

    return Handler
