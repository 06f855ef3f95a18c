"""What the Slack stand-in hands to tests and the demo: immutable snapshots of its state.

The stand-in keeps mutable state behind one lock; callers only ever get these frozen copies,
so a test can hold a `Message` while the bot keeps editing the real one without a data race.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ApiError",
    "Channel",
    "Message",
    "RecordedCall",
    "ResponsePost",
    "Revision",
    "Upload",
    "User",
    "Usergroup",
]


class ApiError(Exception):
    """A Web API method refusing a call: becomes `{"ok": false, "error": code, ...}` with HTTP 200.

    `messages` go to `response_metadata.messages`, the way Slack explains `invalid_blocks`
    and `invalid_arguments` (e.g. "[ERROR] must be less than 3001 characters [json-pointer:...]").
    """

    def __init__(self, code: str, *, messages: list[str] | None = None, extra: dict[str, Any] | None = None):
        super().__init__(code if not messages else f"{code}: {'; '.join(messages)}")
        self.code = code
        self.messages = messages or []
        self.extra = extra or {}


@dataclass(frozen=True)
class Channel:
    id: str
    name: str
    is_private: bool
    members: tuple[str, ...]
    created: int
    creator: str
    is_archived: bool = False
    is_im: bool = False
    topic: str = ""
    purpose: str = ""


@dataclass(frozen=True)
class User:
    id: str
    name: str
    real_name: str
    is_bot: bool = False
    email: str = ""
    tz: str = "Europe/London"
    deleted: bool = False


@dataclass(frozen=True)
class Usergroup:
    id: str
    handle: str
    name: str
    users: tuple[str, ...]


@dataclass(frozen=True)
class Revision:
    """One earlier version of a message, replaced by `chat.update` (or a response_url) at `replaced_at`."""

    text: str
    blocks: list[dict[str, Any]]
    attachments: list[dict[str, Any]]
    metadata: dict[str, Any] | None
    replaced_at: str


@dataclass(frozen=True)
class Message:
    """A channel message as it stands now; `edits` holds its earlier versions, oldest first."""

    channel: str
    ts: str
    text: str
    user: str
    blocks: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, Any] | None = None
    thread_ts: str | None = None
    bot_id: str | None = None
    subtype: str | None = None
    files: list[dict[str, Any]] = field(default_factory=list)
    reactions: dict[str, tuple[str, ...]] = field(default_factory=dict)
    edits: tuple[Revision, ...] = ()
    replies: tuple[Message, ...] = ()
    reply_broadcast: bool = False

    @property
    def edited(self) -> bool:
        return bool(self.edits)

    @property
    def is_reply(self) -> bool:
        return self.thread_ts is not None and self.thread_ts != self.ts

    def as_clicked(self, *, app_id: str, team_id: str) -> dict[str, Any]:
        """The message as Slack embeds it in a block_actions payload (`message`): how the
        clicks of the demo console and of the tests carry the message they were made on."""
        out: dict[str, Any] = {
            "bot_id": self.bot_id,
            "type": "message",
            "text": self.text,
            "user": self.user,
            "ts": self.ts,
            "app_id": app_id,
            "blocks": self.blocks,
            "team": team_id,
        }
        if self.replies:
            out.update({"thread_ts": self.ts, "reply_count": len(self.replies)})
        if self.is_reply:
            out["thread_ts"] = self.thread_ts
        return out


@dataclass(frozen=True)
class Upload:
    """A file sent through files.getUploadURLExternal -> upload URL -> files.completeUploadExternal."""

    file_id: str
    filename: str
    length: int
    data: bytes
    title: str
    mimetype: str
    uploaded: bool
    completed: bool
    channel: str | None = None
    thread_ts: str | None = None
    initial_comment: str | None = None
    message_ts: str | None = None
    alt_txt: str | None = None


@dataclass(frozen=True)
class ResponsePost:
    """One JSON body POSTed to a response_url minted by `SlackStandIn.response_url()`."""

    name: str
    body: dict[str, Any]
    at: float


@dataclass(frozen=True)
class RecordedCall:
    """One request as the stand-in received it, with the answer it gave.

    `params` merges query string and body; JSON-encoded fields (`blocks`, `attachments`,
    `metadata`, `view`, `files`) are decoded; any `token` is redacted, and so is the
    `Authorization` header. `status` 0 means the connection was dropped unanswered
    (`outage(mode="reset")`).
    """

    method: str
    params: dict[str, Any]
    headers: dict[str, str]
    at: float
    status: int = 200
    response: dict[str, Any] | None = None
    body_kind: str = "none"
    http_method: str = "POST"

    @property
    def ok(self) -> bool:
        """HTTP 200 and, for JSON answers, `ok: true` (upload and response_url answers are text)."""
        return self.status == 200 and (self.response is None or bool(self.response.get("ok")))

    @property
    def error(self) -> str | None:
        if self.response is None:
            return None
        error = self.response.get("error")
        return str(error) if error is not None else None
