"""What a POST to a response_url does (slash commands and button clicks answer through it).

The body is JSON with `text`/`blocks` and optional `response_type` ("ephemeral", the default,
or "in_channel"), `replace_original`, `delete_original` and `thread_ts`. When the URL was
minted for a message, replace/delete act on that message, which is how the bot updates the
message whose button was clicked. Answers are plain text like hooks.slack.com: "ok" or an
error such as "no_text" / "invalid_blocks" with HTTP 400.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.sandbox.slack_methods_chat import read_content, replace_content
from bot.sandbox.slack_models import ApiError
from bot.sandbox.slack_wire import Args
from bot.sandbox.slack_workspace import StoredMessage, Workspace

__all__ = ["ResponseTarget", "apply_response"]


@dataclass(frozen=True)
class ResponseTarget:
    """Where a minted response_url points: the channel, message and user of the interaction."""

    name: str
    channel: str | None = None
    message_ts: str | None = None
    user: str | None = None
    thread_ts: str | None = None  # a click in a thread: Slack shows the answer in that thread


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() in ("true", "1"))


def apply_response(ws: Workspace, target: ResponseTarget, body: dict[str, Any]) -> tuple[int, str]:
    """Carry out one response_url POST; returns (HTTP status, plain-text answer)."""
    channel = ws.channels.get(target.channel or "")
    original = ws.find_message(channel, target.message_ts) if channel and target.message_ts else None
    if _truthy(body.get("delete_original")):
        if channel is not None and original is not None:
            channel.messages.remove(original)
            ws.deleted.append(original)
        return 200, "ok"
    try:
        content = read_content(Args(body))
    except ApiError as exc:
        return 400, exc.code
    if content.empty:
        return 400, "no_text"
    if _truthy(body.get("replace_original")) and original is not None:
        replace_content(ws, original, content)
        return 200, "ok"
    thread_ts = body.get("thread_ts") or target.thread_ts
    if body.get("response_type") == "in_channel" and channel is not None:
        ws.add_message(
            channel,
            StoredMessage(
                channel=channel.id,
                ts=ws.clock.next(),
                user=ws.bot_user_id,
                text=content.text or "",
                blocks=ws.with_ids(content.blocks or []),
                attachments=content.attachments or [],
                thread_ts=ws.thread_root(channel, str(thread_ts)) if thread_ts else None,
                bot_id=ws.bot_id,
            ),
        )
        return 200, "ok"
    ws.ephemerals.append(
        {
            "channel": target.channel,
            "user": target.user,
            "ts": ws.clock.next(),
            "text": content.text or "",
            "blocks": ws.with_ids(content.blocks or []),
            "attachments": content.attachments or [],
            "thread_ts": thread_ts,
            "replace_original": _truthy(body.get("replace_original")),
        }
    )
    return 200, "ok"
