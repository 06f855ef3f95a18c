"""The console's HTTP server: static page, a JSON snapshot of everything the page shows, and
the three things a person does (type a command, click a button, flip a fault switch).

The page polls `GET /api/state` (about once a second); that is enough to look live and needs
no streaming machinery. Clicks and commands are not handled here: they become signed Slack
requests to the bot (`SlackSide`), exactly as Slack would send them, and the bot answers
through the Slack stand-in like it answers Slack.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bot.sandbox.console.fleet import FAULTS, Fleet
from bot.sandbox.console.slack_side import ClickTarget, SlackSide
from bot.sandbox.serving import serve_in_background, shut_down
from bot.sandbox.slack_api import SlackStandIn
from bot.sandbox.slack_models import Message

__all__ = ["ConsoleServer"]

logger = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
STATIC_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/console.js": ("console.js", "text/javascript; charset=utf-8"),
    "/console.css": ("console.css", "text/css; charset=utf-8"),
}
COMMANDS = ("/incident", "/rollback", "/scale")
# Defence in depth behind textContent: the page runs only its own script, loads nothing from elsewhere.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


class BadRequest(Exception):
    pass


def _message_json(message: Message, names: dict[str, str]) -> dict[str, Any]:
    return {
        "ts": message.ts,
        "user": message.user,
        "user_name": names.get(message.user, message.user),
        "bot": message.bot_id is not None,
        "text": message.text,
        "blocks": message.blocks,
        "attachments": message.attachments,
        "files": [
            {"id": f["id"], "name": f["name"], "title": f.get("title", ""), "mimetype": f["mimetype"]}
            for f in message.files
        ],
        "edits": len(message.edits),
        "thread_ts": message.thread_ts,
        "replies": [_message_json(r, names) for r in message.replies],
    }


def _ephemerals(shown: list[dict[str, Any]], names: dict[str, str]) -> list[dict[str, Any]]:
    """The ephemeral messages a person still sees: an answer with `replace_original` takes the
    place of that person's previous one there (the message whose button they clicked).
    `index` addresses the message in the stand-in, for clicks on its buttons."""
    out: list[dict[str, Any]] = []
    for index, e in enumerate(shown):
        entry = {
            "index": index,
            "user": e.get("user"),
            "user_name": names.get(str(e.get("user")), e.get("user")),
            "ts": e.get("ts"),
            "text": e.get("text", ""),
            "blocks": e.get("blocks") or [],
            "thread_ts": e.get("thread_ts"),
        }
        if e.get("replace_original"):
            earlier = [
                i
                for i, o in enumerate(out)
                if o["user"] == entry["user"] and o["thread_ts"] == entry["thread_ts"]
            ]
            if earlier:
                out.pop(earlier[-1])
        out.append(entry)
    return out


class ConsoleServer:
    """Serves the console on 127.0.0.1; `status` is a callable giving extra status lines."""

    def __init__(
        self,
        slack: SlackStandIn,
        fleet: Fleet,
        side: SlackSide,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        status: Callable[[], dict[str, Any]] = dict,
    ) -> None:
        self.slack = slack
        self.fleet = fleet
        self.side = side
        self.status = status
        self._host = host
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> ConsoleServer:
        server = ThreadingHTTPServer((self._host, self._port), _handler_for(self))
        server.daemon_threads = True
        self._server = server
        self._thread = serve_in_background(server, name="demo-console")
        return self

    def stop(self) -> None:
        if self._server is not None:
            shut_down(self._server, self._thread)
            self._server = None

    @property
    def url(self) -> str:
        assert self._server is not None, "the console is not started"
        return f"http://{self._host}:{self._server.server_address[1]}/"

    # ------------------------------------------------------------------ state
    def state(self) -> dict[str, Any]:
        users = [u for u in (self.slack.user(uid) for uid in self._user_ids())]
        names = {u.id: u.name for u in users}
        channels = [c for c in self.slack.channels() if not c.is_im]
        return {
            "users": [{"id": u.id, "name": u.name, "real_name": u.real_name, "bot": u.is_bot} for u in users],
            "channels": [
                {
                    "id": c.id,
                    "name": c.name,
                    "private": c.is_private,
                    "messages": [_message_json(m, names) for m in self.slack.messages(c.id)],
                    "ephemerals": _ephemerals(self.slack.ephemerals(c.id), names),
                }
                for c in channels
            ],
            "views": [
                {"id": v.get("id"), "title": v.get("title"), "blocks": v.get("blocks") or []}
                for v in self.slack.views()
            ],
            "deployments": self.fleet.deployments(),
            "faults": [{**asdict(FAULTS[key]), "on": on} for key, on in self.fleet.active().items()],
            "commands": list(COMMANDS),
            **self.status(),
        }

    def _user_ids(self) -> list[str]:
        return ["U0BOT", "U0ONCALL1", "U0ONCALL2", "U0ANALYST"]

    # ------------------------------------------------------------------ actions
    def command(self, body: dict[str, Any]) -> dict[str, Any]:
        command = _field(body, "command")
        if command not in COMMANDS:
            raise BadRequest(f"unknown command {command!r}; the bot answers {', '.join(COMMANDS)}")
        response = self.side.command(
            _field(body, "user"), _field(body, "channel"), command, str(body.get("text", ""))
        )
        return {"status": response.status_code, "body": response.text[:2000]}

    def click(self, body: dict[str, Any]) -> dict[str, Any]:
        ephemeral = body.get("ephemeral")
        target = ClickTarget(
            channel=_field(body, "channel"),
            message_ts=str(body["ts"]) if body.get("ts") else None,
            ephemeral=int(ephemeral) if ephemeral is not None else None,
        )
        block_id = body.get("block_id")
        response = self.side.click(
            _field(body, "user"), target, _field(body, "action_id"), str(block_id) if block_id else None
        )
        return {"status": response.status_code, "body": response.text[:2000]}

    def fault(self, body: dict[str, Any]) -> dict[str, Any]:
        key = _field(body, "key")
        if key not in FAULTS:
            raise BadRequest(f"unknown fault {key!r}; known: {', '.join(FAULTS)}")
        self.fleet.set_fault(key, bool(body.get("on", True)))
        return {"faults": self.fleet.active()}

    def file(self, file_id: str) -> tuple[bytes, str] | None:
        for upload in self.slack.uploads():
            if upload.file_id == file_id and upload.data:
                return upload.data, upload.mimetype
        return None


def _field(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"missing field {name!r}")
    return value


def _handler_for(console: ConsoleServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "incident-bot-console/1"

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("console request", extra={"line": format % args})

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for key, value in SECURITY_HEADERS.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                logger.debug("console client went away")

        def _json(self, status: int, payload: Any) -> None:
            self._send(status, json.dumps(payload).encode(), "application/json")

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            if path in STATIC_FILES:
                name, content_type = STATIC_FILES[path]
                self._send(200, (STATIC / name).read_bytes(), content_type)
            elif path == "/favicon.ico":
                self._send(204, b"", "image/x-icon")
            elif path == "/api/state":
                self._json(200, console.state())
            elif path.startswith("/files/"):
                found = console.file(path.split("/")[2])
                if found is None:
                    self._json(404, {"error": "no such file"})
                else:
                    self._send(200, *found)
            else:
                self._json(404, {"error": f"no such page {path}"})

        def do_POST(self) -> None:
            path = urlsplit(self.path).path
            actions = {
                "/api/command": console.command,
                "/api/click": console.click,
                "/api/fault": console.fault,
            }
            if path not in actions:
                self._json(404, {"error": f"no such endpoint {path}"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
                if not isinstance(body, dict):
                    raise BadRequest("the body must be a JSON object")
                self._json(200, actions[path](body))
            except (BadRequest, LookupError, ValueError) as exc:
                self._json(400, {"error": str(exc)})
            except Exception as exc:  # the page shows it; the demo keeps running
                logger.exception("console action failed")
                self._json(500, {"error": f"{type(exc).__name__}: {exc}"})

    return Handler
