"""The pretend Slack workspace: people, channels, messages, files and views, and their wire JSON.

Mutable and not thread-safe on its own: `SlackStandIn` serialises every access with one lock.
Objects leave through `snapshot_*` (frozen copies) or `*_json` (Slack's response shapes, as
documented on docs.slack.dev method pages), never by reference.
"""

from __future__ import annotations

import copy
import mimetypes
import random
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from bot.sandbox.slack_models import ApiError, Channel, Message, Revision, Upload, User, Usergroup
from bot.sandbox.slack_wire import TsClock, ts_key

__all__ = ["DEFAULT_CHANNEL", "StoredChannel", "StoredMessage", "StoredUpload", "Workspace"]

DEFAULT_CHANNEL = "C0INCIDENTS"


@dataclass
class StoredMessage:
    channel: str
    ts: str
    user: str
    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, Any] | None = None
    thread_ts: str | None = None
    bot_id: str | None = None
    subtype: str | None = None
    files: list[str] = field(default_factory=list)  # file ids
    reactions: dict[str, list[str]] = field(default_factory=dict)
    revisions: list[Revision] = field(default_factory=list)
    edited_ts: str | None = None
    reply_broadcast: bool = False

    @property
    def is_reply(self) -> bool:
        return self.thread_ts is not None and self.thread_ts != self.ts


@dataclass
class StoredChannel:
    id: str
    name: str
    is_private: bool
    members: list[str]
    created: int
    creator: str
    is_archived: bool = False
    is_im: bool = False
    peer: str | None = None  # the human in an app DM
    topic: str = ""
    purpose: str = ""
    messages: list[StoredMessage] = field(default_factory=list)  # every message, replies too, ts order


@dataclass
class StoredUpload:
    file_id: str
    key: str
    filename: str
    length: int
    created: int
    alt_txt: str | None = None
    snippet_type: str | None = None
    data: bytes | None = None
    title: str = ""
    completed: bool = False
    channel: str | None = None
    thread_ts: str | None = None
    message_ts: str | None = None
    initial_comment: str | None = None


class Workspace:
    """One team with a bot user, preloaded with an incidents channel and three people."""

    def __init__(
        self,
        *,
        team_id: str = "T0SANDBOX",
        team_name: str = "Sandbox",
        domain: str = "sandbox",
        bot_user_id: str = "U0BOT",
        bot_id: str = "B0BOT",
        app_id: str = "A0SANDBOX",
        bot_name: str = "incident-bot",
        chat_write_public: bool = True,
    ) -> None:
        self.team_id = team_id
        self.team_name = team_name
        self.domain = domain
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.app_id = app_id
        self.bot_name = bot_name
        self.chat_write_public = chat_write_public
        self.base_url = "http://127.0.0.1"
        self.clock = TsClock()
        self._rng = random.Random(20240516)
        self._counter = 0
        self.users: dict[str, User] = {}
        self.channels: dict[str, StoredChannel] = {}
        self.usergroups: dict[str, Usergroup] = {}
        self.uploads: dict[str, StoredUpload] = {}
        self.home_views: dict[str, dict[str, Any]] = {}
        self.views: dict[str, dict[str, Any]] = {}
        self.view_stacks: list[list[str]] = []
        self.used_triggers: set[str] = set()
        self.ephemerals: list[dict[str, Any]] = []
        self.deleted: list[StoredMessage] = []
        self.add_user(bot_user_id, bot_name, "Incident Bot", is_bot=True)
        self._populate()

    # ----------------------------------------------------------------- population
    def _populate(self) -> None:
        self.add_user("U0ONCALL1", "alice", "Alice Chen", email="alice@example.com")
        self.add_user("U0ONCALL2", "bob", "Bob Okafor", email="bob@example.com")
        self.add_user("U0ANALYST", "carol", "Carol Diaz", email="carol@example.com")
        humans = ["U0ONCALL1", "U0ONCALL2", "U0ANALYST"]
        self.add_channel("incidents", channel_id=DEFAULT_CHANNEL, members=humans)
        self.add_channel("general", channel_id="C0GENERAL", members=humans, bot_member=False)
        self.add_channel(
            "sre-leads", channel_id="C0SRELEADS", is_private=True, members=["U0ONCALL1"], bot_member=False
        )
        self.add_usergroup("S0SRE", "sre-oncall", ["U0ONCALL1", "U0ONCALL2"], name="SRE on-call")

    def new_id(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}0{self._counter:08X}"

    def short_id(self) -> str:
        """Like the 3-5 character block_id / action_id Slack invents for blocks sent without one."""
        alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
        return "".join(self._rng.choice(alphabet) for _ in range(4))

    def add_user(
        self,
        user_id: str,
        name: str,
        real_name: str | None = None,
        *,
        is_bot: bool = False,
        email: str = "",
        tz: str = "Europe/London",
    ) -> User:
        user = User(id=user_id, name=name, real_name=real_name or name, is_bot=is_bot, email=email, tz=tz)
        self.users[user_id] = user
        return user

    def add_channel(
        self,
        name: str,
        *,
        channel_id: str | None = None,
        is_private: bool = False,
        members: list[str] | tuple[str, ...] = (),
        bot_member: bool = True,
        creator: str | None = None,
    ) -> StoredChannel:
        if any(c.name == name and not c.is_im for c in self.channels.values()):
            raise ValueError(f"a channel named {name!r} already exists in the sandbox workspace")
        unknown = [m for m in members if m not in self.users]
        if unknown:
            raise ValueError(f"unknown users for channel {name!r}: {unknown}; add them with add_user first")
        cid = channel_id or self.new_id("C")
        everyone = list(dict.fromkeys([*([self.bot_user_id] if bot_member else []), *members]))
        channel = StoredChannel(
            id=cid,
            name=name,
            is_private=is_private,
            members=everyone,
            created=int(time.time()),
            creator=creator or (self.bot_user_id if bot_member else (members[0] if members else "")),
        )
        self.channels[cid] = channel
        return channel

    def add_usergroup(
        self, group_id: str, handle: str, users: list[str] | tuple[str, ...], *, name: str | None = None
    ) -> Usergroup:
        unknown = [u for u in users if u not in self.users]
        if unknown:
            raise ValueError(
                f"unknown users for usergroup {handle!r}: {unknown}; add them with add_user first"
            )
        group = Usergroup(id=group_id, handle=handle, name=name or handle, users=tuple(users))
        self.usergroups[group_id] = group
        return group

    # ----------------------------------------------------------------- lookups
    def find_channel(self, ref: str) -> StoredChannel | None:
        """By id, or by name with or without '#'; None when there is no such channel."""
        if ref in self.channels:
            return self.channels[ref]
        name = ref[1:] if ref.startswith("#") else ref
        for channel in self.channels.values():
            if channel.name == name and not channel.is_im:
                return channel
        return None

    def channel(self, ref: str, *, by_name: bool = False) -> StoredChannel:
        """The channel a method argument names; Slack's `channel_not_found` when there is none.

        Only chat.postMessage-style methods accept names (and user ids, meaning the app DM);
        the others need an id.
        """
        if ref in self.channels:
            return self.channels[ref]
        if by_name and ref in self.users and not self.users[ref].is_bot:
            return self.dm_with(ref)
        if by_name:
            found = self.find_channel(ref)
            if found is not None:
                return found
        raise ApiError("channel_not_found")

    def dm_with(self, user_id: str) -> StoredChannel:
        for channel in self.channels.values():
            if channel.is_im and channel.peer == user_id:
                return channel
        cid = self.new_id("D")
        channel = StoredChannel(
            id=cid,
            name=user_id,
            is_private=True,
            members=[self.bot_user_id, user_id],
            created=int(time.time()),
            creator=self.bot_user_id,
            is_im=True,
            peer=user_id,
        )
        self.channels[cid] = channel
        return channel

    def require_member(self, channel: StoredChannel, *, to_post: bool = False) -> None:
        """Slack's rule: the bot must be in private channels; public ones need chat:write.public to post."""
        if channel.is_archived:
            raise ApiError("is_archived")
        if self.bot_user_id in channel.members:
            return
        if to_post and not channel.is_private and self.chat_write_public:
            return
        raise ApiError("not_in_channel")

    def find_message(self, channel: StoredChannel, ts: str) -> StoredMessage | None:
        for message in channel.messages:
            if message.ts == ts:
                return message
        return None

    def top_level(self, channel: StoredChannel) -> list[StoredMessage]:
        return [m for m in channel.messages if not m.is_reply]

    def replies(self, channel: StoredChannel, thread_ts: str) -> list[StoredMessage]:
        return [m for m in channel.messages if m.is_reply and m.thread_ts == thread_ts]

    def thread_root(self, channel: StoredChannel, thread_ts: str) -> str:
        """Replying to a reply lands in its parent's thread, as in the Slack client."""
        target = self.find_message(channel, thread_ts)
        if target is not None and target.is_reply and target.thread_ts is not None:
            return target.thread_ts
        return thread_ts

    # ----------------------------------------------------------------- mutation helpers
    def with_ids(self, blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """A copy of `blocks` with the block_id/action_id Slack fills in when the sender left them out."""
        stored = copy.deepcopy(blocks)
        for block in stored:
            block.setdefault("block_id", self.short_id())
            elements: list[Any] = list(block.get("elements") or []) if block.get("type") == "actions" else []
            for key in ("accessory", "element"):
                if isinstance(block.get(key), dict):
                    elements.append(block[key])
            for element in elements:
                if isinstance(element, dict) and element.get("type") not in (None, "image"):
                    element.setdefault("action_id", self.short_id())
        return stored

    def add_message(self, channel: StoredChannel, message: StoredMessage) -> StoredMessage:
        channel.messages.append(message)
        channel.messages.sort(key=lambda m: ts_key(m.ts))
        return message

    # ----------------------------------------------------------------- wire JSON
    def bot_profile(self) -> dict[str, Any]:
        return {
            "id": self.bot_id,
            "app_id": self.app_id,
            "name": self.bot_name,
            "deleted": False,
            "team_id": self.team_id,
            "icons": {"image_36": "", "image_48": "", "image_72": ""},
            "updated": 0,
        }

    def message_json(
        self, channel: StoredChannel, message: StoredMessage, *, include_metadata: bool = True
    ) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "message"}
        if message.subtype:
            out["subtype"] = message.subtype
        out.update({"text": message.text, "user": message.user, "ts": message.ts, "team": self.team_id})
        if message.bot_id:
            out.update({"bot_id": message.bot_id, "app_id": self.app_id, "bot_profile": self.bot_profile()})
        if message.blocks:
            out["blocks"] = copy.deepcopy(message.blocks)
        if message.attachments:
            out["attachments"] = copy.deepcopy(message.attachments)
        if message.files:
            out["files"] = [self.file_json(self.uploads[f]) for f in message.files if f in self.uploads]
            out["upload"] = True
            out["display_as_bot"] = False
        if message.edited_ts:
            out["edited"] = {"user": message.user, "ts": message.edited_ts}
        if message.is_reply and message.thread_ts is not None:
            out["thread_ts"] = message.thread_ts
            parent = self.find_message(channel, message.thread_ts)
            if parent is not None:
                out["parent_user_id"] = parent.user
        else:
            replies = self.replies(channel, message.ts)
            if replies:
                users = list(dict.fromkeys(r.user for r in replies))
                out.update(
                    {
                        "thread_ts": message.ts,
                        "reply_count": len(replies),
                        "reply_users_count": len(users),
                        "latest_reply": replies[-1].ts,
                        "reply_users": users,
                        "is_locked": False,
                        "subscribed": False,
                    }
                )
        if message.reactions:
            out["reactions"] = [
                {"name": name, "users": list(users), "count": len(users)}
                for name, users in message.reactions.items()
            ]
        if include_metadata and message.metadata is not None:
            out["metadata"] = copy.deepcopy(message.metadata)
        return out

    def channel_json(self, channel: StoredChannel, *, num_members: bool = False) -> dict[str, Any]:
        if channel.is_im:
            return {
                "id": channel.id,
                "created": channel.created,
                "is_im": True,
                "is_org_shared": False,
                "user": channel.peer,
                "is_user_deleted": False,
                "priority": 0,
            }
        out: dict[str, Any] = {
            "id": channel.id,
            "name": channel.name,
            "is_channel": True,
            "is_group": False,
            "is_im": False,
            "is_mpim": False,
            "is_private": channel.is_private,
            "created": channel.created,
            "is_archived": channel.is_archived,
            "is_general": channel.name == "general",
            "unlinked": 0,
            "name_normalized": channel.name,
            "is_shared": False,
            "is_org_shared": False,
            "is_pending_ext_shared": False,
            "pending_shared": [],
            "context_team_id": self.team_id,
            "creator": channel.creator,
            "is_ext_shared": False,
            "shared_team_ids": [self.team_id],
            "is_member": self.bot_user_id in channel.members,
            "topic": {"value": channel.topic, "creator": "", "last_set": 0},
            "purpose": {"value": channel.purpose, "creator": "", "last_set": 0},
            "previous_names": [],
        }
        if num_members:
            out["num_members"] = len(channel.members)
        return out

    def user_json(self, user: User) -> dict[str, Any]:
        profile: dict[str, Any] = {
            "real_name": user.real_name,
            "display_name": user.name,
            "real_name_normalized": user.real_name,
            "display_name_normalized": user.name,
            "team": self.team_id,
        }
        if user.email:
            profile["email"] = user.email
        if user.is_bot:
            profile["bot_id"] = self.bot_id
            profile["api_app_id"] = self.app_id
        return {
            "id": user.id,
            "team_id": self.team_id,
            "name": user.name,
            "deleted": user.deleted,
            "real_name": user.real_name,
            "tz": user.tz,
            "tz_label": user.tz,
            "tz_offset": 0,
            "profile": profile,
            "is_admin": False,
            "is_owner": False,
            "is_primary_owner": False,
            "is_restricted": False,
            "is_ultra_restricted": False,
            "is_bot": user.is_bot,
            "is_app_user": False,
            "updated": 0,
        }

    def file_json(self, upload: StoredUpload) -> dict[str, Any]:
        mimetype = mimetypes.guess_type(upload.filename)[0] or "application/octet-stream"
        ext = upload.filename.rsplit(".", 1)[-1].lower() if "." in upload.filename else "binary"
        channel = self.channels.get(upload.channel or "")
        shared_in = [upload.channel] if channel is not None else []
        out: dict[str, Any] = {
            "id": upload.file_id,
            "created": upload.created,
            "timestamp": upload.created,
            "name": upload.filename,
            "title": upload.title or upload.filename,
            "mimetype": mimetype,
            "filetype": ext,
            "pretty_type": ext.upper(),
            "user": self.bot_user_id,
            "user_team": self.team_id,
            "editable": False,
            "size": len(upload.data or b""),
            "mode": "hosted",
            "is_external": False,
            "external_type": "",
            "is_public": channel is not None and not channel.is_private,
            "public_url_shared": False,
            "display_as_bot": False,
            "username": "",
            "url_private": f"{self.base_url}/files/{upload.file_id}/{upload.filename}",
            "url_private_download": f"{self.base_url}/files/{upload.file_id}/download/{upload.filename}",
            "permalink": f"https://{self.domain}.slack.com/files/{self.bot_user_id}/{upload.file_id}/{upload.filename}",
            "channels": shared_in if channel is not None and not channel.is_private else [],
            "groups": shared_in if channel is not None and channel.is_private and not channel.is_im else [],
            "ims": shared_in if channel is not None and channel.is_im else [],
            "comments_count": 0,
            "has_rich_preview": False,
            "file_access": "visible",
        }
        if upload.alt_txt:
            out["alt_txt"] = upload.alt_txt
        return out

    def permalink(self, channel: StoredChannel, message: StoredMessage) -> str:
        link = f"https://{self.domain}.slack.com/archives/{channel.id}/p{message.ts.replace('.', '')}"
        if message.is_reply:
            link += f"?thread_ts={message.thread_ts}&cid={channel.id}"
        return link

    def upload_url(self, upload: StoredUpload) -> str:
        return f"{self.base_url}/upload/v1/{upload.key}"

    def new_upload(
        self, filename: str, length: int, alt_txt: str | None, snippet_type: str | None
    ) -> StoredUpload:
        upload = StoredUpload(
            file_id=self.new_id("F"),
            key=secrets.token_urlsafe(24),
            filename=filename,
            length=length,
            created=int(time.time()),
            alt_txt=alt_txt,
            snippet_type=snippet_type,
        )
        self.uploads[upload.file_id] = upload
        return upload

    # ----------------------------------------------------------------- snapshots
    def snapshot_message(
        self, channel: StoredChannel, message: StoredMessage, *, with_replies: bool
    ) -> Message:
        replies: tuple[Message, ...] = ()
        if with_replies and not message.is_reply:
            replies = tuple(
                self.snapshot_message(channel, r, with_replies=False)
                for r in self.replies(channel, message.ts)
            )
        return Message(
            channel=channel.id,
            ts=message.ts,
            text=message.text,
            user=message.user,
            blocks=copy.deepcopy(message.blocks),
            attachments=copy.deepcopy(message.attachments),
            metadata=copy.deepcopy(message.metadata),
            thread_ts=message.thread_ts,
            bot_id=message.bot_id,
            subtype=message.subtype,
            files=[self.file_json(self.uploads[f]) for f in message.files if f in self.uploads],
            reactions={name: tuple(users) for name, users in message.reactions.items()},
            edits=tuple(message.revisions),
            replies=replies,
            reply_broadcast=message.reply_broadcast,
        )

    def snapshot_channel(self, channel: StoredChannel) -> Channel:
        return Channel(
            id=channel.id,
            name=channel.name,
            is_private=channel.is_private,
            members=tuple(channel.members),
            created=channel.created,
            creator=channel.creator,
            is_archived=channel.is_archived,
            is_im=channel.is_im,
            topic=channel.topic,
            purpose=channel.purpose,
        )

    def snapshot_upload(self, upload: StoredUpload) -> Upload:
        return Upload(
            file_id=upload.file_id,
            filename=upload.filename,
            length=upload.length,
            data=upload.data or b"",
            title=upload.title or upload.filename,
            mimetype=mimetypes.guess_type(upload.filename)[0] or "application/octet-stream",
            uploaded=upload.data is not None,
            completed=upload.completed,
            channel=upload.channel,
            thread_ts=upload.thread_ts,
            initial_comment=upload.initial_comment,
            message_ts=upload.message_ts,
            alt_txt=upload.alt_txt,
        )
