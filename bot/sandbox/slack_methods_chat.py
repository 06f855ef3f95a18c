"""chat.*, reactions.add and the files_upload_v2 trio, as slack.com answers them.

Response shapes and error codes follow the docs.slack.dev method pages: chat.postMessage
returns `channel`, `ts` and the stored `message`; chat.update keeps the message `ts` and marks
it `edited`; files.completeUploadExternal shares the uploaded bytes as a message (in a thread
when `thread_ts` is given) and returns the `files`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from bot.sandbox.slack_blockkit import check_blocks, check_metadata
from bot.sandbox.slack_models import ApiError, Revision
from bot.sandbox.slack_wire import Args, ts_key
from bot.sandbox.slack_workspace import StoredChannel, StoredMessage, Workspace

__all__ = ["CHAT_METHODS", "MAX_TEXT", "Content", "read_content"]

MAX_TEXT = 40_000
MAX_MARKDOWN_TEXT = 12_000
MAX_ATTACHMENTS = 100
REACTION_NAME = re.compile(r"^[a-z0-9_+'\-]+(::skin-tone-[2-6])?$")


@dataclass
class Content:
    """What a message carries; None means "not sent" (chat.update keeps the old value)."""

    text: str | None
    blocks: list[dict[str, Any]] | None
    attachments: list[dict[str, Any]] | None
    metadata: dict[str, Any] | None

    @property
    def empty(self) -> bool:
        return not self.text and not self.blocks and not self.attachments


def read_content(args: Args) -> Content:
    """The checked text/blocks/attachments/metadata of a message-carrying call."""
    text = args.text("text")
    markdown = args.text("markdown_text")
    if markdown is not None:
        if text is not None or args.has("blocks"):
            raise ApiError("markdown_text_conflict")
        if len(markdown) > MAX_MARKDOWN_TEXT:
            raise ApiError("msg_too_long")
        text = markdown
    if text is not None and len(text) > MAX_TEXT:
        raise ApiError("msg_too_long")
    blocks = args.decoded("blocks", error="invalid_blocks_format")
    if blocks is not None:
        problems = check_blocks(blocks)
        if problems:
            raise ApiError(
                "invalid_blocks",
                messages=problems,
                extra={"errors": [p.removeprefix("[ERROR] ") for p in problems]},
            )
    attachments = args.decoded("attachments", error="invalid_attachments")
    if attachments is not None:
        if not isinstance(attachments, list) or not all(isinstance(a, dict) for a in attachments):
            raise ApiError("invalid_attachments")
        if len(attachments) > MAX_ATTACHMENTS:
            raise ApiError("too_many_attachments")
    metadata = args.decoded("metadata", error="invalid_metadata_format")
    if metadata is not None:
        problem = check_metadata(metadata)
        if problem:
            raise ApiError(problem)
        metadata = {"event_type": metadata["event_type"], "event_payload": metadata["event_payload"]}
    return Content(text=text, blocks=blocks, attachments=attachments, metadata=metadata)


def _thread(ws: Workspace, channel: StoredChannel, args: Args) -> str | None:
    thread_ts = args.text("thread_ts")
    if thread_ts is None:
        return None
    try:
        ts_key(thread_ts)
    except ValueError as exc:
        raise ApiError("invalid_thread_ts") from exc
    return ws.thread_root(channel, thread_ts)


def post_message(ws: Workspace, args: Args) -> dict[str, Any]:
    channel = ws.channel(args.req("channel"), by_name=True)
    ws.require_member(channel, to_post=True)
    content = read_content(args)
    if content.empty:
        raise ApiError("no_text")
    thread_ts = _thread(ws, channel, args)
    broadcast = thread_ts is not None and args.flag("reply_broadcast")
    message = ws.add_message(
        channel,
        StoredMessage(
            channel=channel.id,
            ts=ws.clock.next(),
            user=ws.bot_user_id,
            text=content.text or "",
            blocks=ws.with_ids(content.blocks or []),
            attachments=content.attachments or [],
            metadata=content.metadata,
            thread_ts=thread_ts,
            bot_id=ws.bot_id,
            subtype="thread_broadcast" if broadcast else None,
            reply_broadcast=broadcast,
        ),
    )
    return {
        "ok": True,
        "channel": channel.id,
        "ts": message.ts,
        "message": ws.message_json(channel, message),
    }


def _own_message(ws: Workspace, channel: StoredChannel, ts: str, refusal: str) -> StoredMessage:
    message = ws.find_message(channel, ts)
    if message is None:
        raise ApiError("message_not_found")
    if message.user != ws.bot_user_id:
        raise ApiError(refusal)
    return message


def replace_content(ws: Workspace, message: StoredMessage, content: Content) -> None:
    """Apply an edit: what was sent replaces, what was left out stays (docs of chat.update)."""
    message.revisions.append(
        Revision(
            text=message.text,
            blocks=message.blocks,
            attachments=message.attachments,
            metadata=message.metadata,
            replaced_at=ws.clock.next(),
        )
    )
    if content.text is not None:
        message.text = content.text
    if content.blocks is not None:
        message.blocks = ws.with_ids(content.blocks)
    if content.attachments is not None:
        message.attachments = content.attachments
    if content.metadata is not None:
        message.metadata = content.metadata
    message.edited_ts = message.revisions[-1].replaced_at


def update(ws: Workspace, args: Args) -> dict[str, Any]:
    channel = ws.channel(args.req("channel"))
    message = _own_message(ws, channel, args.req("ts"), "cant_update_message")
    content = read_content(args)
    if content.empty:
        raise ApiError("no_text")
    replace_content(ws, message, content)
    body = ws.message_json(channel, message)
    return {"ok": True, "channel": channel.id, "ts": message.ts, "text": message.text, "message": body}


def delete(ws: Workspace, args: Args) -> dict[str, Any]:
    channel = ws.channel(args.req("channel"))
    message = _own_message(ws, channel, args.req("ts"), "cant_delete_message")
    if not message.is_reply and ws.replies(channel, message.ts):
        # A parent with replies stays as a tombstone so the thread survives, as in Slack.
        replace_content(ws, message, Content("This message was deleted.", [], [], None))
        message.subtype = "tombstone"
    else:
        channel.messages.remove(message)
        ws.deleted.append(message)
    return {"ok": True, "channel": channel.id, "ts": message.ts}


def post_ephemeral(ws: Workspace, args: Args) -> dict[str, Any]:
    channel = ws.channel(args.req("channel"), by_name=True)
    user = args.req("user")
    if user not in ws.users:
        raise ApiError("user_not_found")
    ws.require_member(channel, to_post=True)
    if user not in channel.members:
        raise ApiError("user_not_in_channel")
    content = read_content(args)
    if content.empty:
        raise ApiError("no_text")
    ts = ws.clock.next()
    ws.ephemerals.append(
        {
            "channel": channel.id,
            "user": user,
            "ts": ts,
            "text": content.text or "",
            "blocks": ws.with_ids(content.blocks or []),
            "attachments": content.attachments or [],
            "thread_ts": _thread(ws, channel, args),
        }
    )
    return {"ok": True, "message_ts": ts}


def get_permalink(ws: Workspace, args: Args) -> dict[str, Any]:
    channel = ws.channel(args.req("channel"))
    message = ws.find_message(channel, args.req("message_ts"))
    if message is None:
        raise ApiError("message_not_found")
    return {"ok": True, "channel": channel.id, "permalink": ws.permalink(channel, message)}


def reactions_add(ws: Workspace, args: Args) -> dict[str, Any]:
    channel = ws.channel(args.req("channel"))
    ws.require_member(channel)
    message = ws.find_message(channel, args.req("timestamp"))
    name = args.req("name").strip(":")
    if message is None:
        raise ApiError("message_not_found")
    if not REACTION_NAME.match(name):
        raise ApiError("invalid_name")
    if ws.bot_user_id in message.reactions.get(name, []):
        raise ApiError("already_reacted")
    if name not in message.reactions and len(message.reactions) >= 50:
        raise ApiError("too_many_reactions")
    message.reactions.setdefault(name, []).append(ws.bot_user_id)
    return {"ok": True}


def get_upload_url(ws: Workspace, args: Args) -> dict[str, Any]:
    filename = args.req("filename")
    length = args.number("length", default=-1)
    if length < 0:
        raise ApiError("invalid_arguments", messages=["[ERROR] missing required field: length"])
    upload = ws.new_upload(filename, length, args.text("alt_txt"), args.text("snippet_type"))
    return {"ok": True, "upload_url": ws.upload_url(upload), "file_id": upload.file_id}


def complete_upload(ws: Workspace, args: Args) -> dict[str, Any]:
    files = args.decoded("files", error="invalid_arguments")
    if (
        not isinstance(files, list)
        or not files
        or not all(isinstance(f, dict) and f.get("id") for f in files)
    ):
        raise ApiError("invalid_arguments", messages=["[ERROR] files must be an array of {id, title}"])
    uploads = []
    for item in files:
        upload = ws.uploads.get(str(item["id"]))
        if upload is None or upload.completed:
            raise ApiError("file_not_found")
        if upload.data is None:
            raise ApiError(
                "file_not_found", messages=[f"[ERROR] no bytes were uploaded for {upload.file_id}"]
            )
        uploads.append((upload, item))
    targets = args.ids("channels")
    target = args.text("channel_id") or (targets[0] if targets else None)
    channel = None
    if target is not None:
        channel = ws.channel(target)
        ws.require_member(channel, to_post=True)
    comment = args.text("initial_comment")
    blocks = args.decoded("blocks", error="invalid_blocks_format") if comment is None else None
    if blocks is not None and check_blocks(blocks):
        raise ApiError("invalid_blocks", messages=check_blocks(blocks))
    for upload, item in uploads:
        upload.title = str(item.get("title") or upload.filename)
        upload.completed = True
    if channel is not None:
        thread_ts = _thread(ws, channel, args)
        message = ws.add_message(
            channel,
            StoredMessage(
                channel=channel.id,
                ts=ws.clock.next(),
                user=ws.bot_user_id,
                text=comment or "",
                blocks=ws.with_ids(blocks or []),
                thread_ts=thread_ts,
                bot_id=ws.bot_id,
                files=[u.file_id for u, _ in uploads],
            ),
        )
        for upload, _ in uploads:
            upload.channel, upload.thread_ts, upload.message_ts = channel.id, thread_ts, message.ts
            upload.initial_comment = comment
    return {"ok": True, "files": [ws.file_json(u) for u, _ in uploads]}


CHAT_METHODS = {
    "chat.postMessage": post_message,
    "chat.update": update,
    "chat.delete": delete,
    "chat.postEphemeral": post_ephemeral,
    "chat.getPermalink": get_permalink,
    "reactions.add": reactions_add,
    "files.getUploadURLExternal": get_upload_url,
    "files.completeUploadExternal": complete_upload,
}
