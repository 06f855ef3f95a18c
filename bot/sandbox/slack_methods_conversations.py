"""conversations.*, users.* and usergroups.* as slack.com answers them.

Paging follows Slack's cursor protocol (`limit`, `cursor`, `response_metadata.next_cursor`,
empty when done); `oldest`/`latest` are exclusive unless `inclusive` is true; history is newest
first and replies are in thread order with the parent first on every page.
"""

from __future__ import annotations

import time
from typing import Any

from bot.sandbox.slack_models import ApiError
from bot.sandbox.slack_wire import Args, decode_cursor, encode_cursor, parse_ts, ts_key
from bot.sandbox.slack_workspace import StoredChannel, StoredMessage, Workspace

__all__ = ["CONVERSATION_METHODS", "check_channel_name"]

MAX_NAME = 80


def check_channel_name(name: str) -> str | None:
    """The conversations.create error for `name`, or None when Slack would accept it."""
    if not name:
        return "invalid_name_required"
    if len(name) > MAX_NAME:
        return "invalid_name_maxlength"
    if any(not (ch in "-_" or (ch.isalnum() and not ch.isupper())) for ch in name):
        return "invalid_name_specials"
    if all(ch in "-_" for ch in name):
        return "invalid_name_punctuation"
    return None


def _visible(ws: Workspace, channel_ref: str) -> StoredChannel:
    """A channel the bot may read: reading history needs membership, public or private."""
    channel = ws.channel(channel_ref)
    if ws.bot_user_id not in channel.members:
        raise ApiError("not_in_channel")
    return channel


def _window(args: Args) -> tuple[tuple[int, int] | None, tuple[int, int] | None, bool]:
    return (
        parse_ts(args.text("oldest"), "oldest"),
        parse_ts(args.text("latest"), "latest"),
        args.flag("inclusive"),
    )


def _inside(ts: str, oldest: tuple[int, int] | None, latest: tuple[int, int] | None, inclusive: bool) -> bool:
    key = ts_key(ts)
    if oldest is not None and (key < oldest or (key == oldest and not inclusive)):
        return False
    return not (latest is not None and (key > latest or (key == latest and not inclusive)))


def _limit(args: Args, *, default: int, maximum: int) -> int:
    limit = args.number("limit", default=default)
    return default if limit <= 0 else min(limit, maximum)


def history(ws: Workspace, args: Args) -> dict[str, Any]:
    channel = _visible(ws, args.req("channel"))
    oldest, latest, inclusive = _window(args)
    limit = _limit(args, default=100, maximum=999)
    with_meta = args.flag("include_all_metadata")
    cursor = args.text("cursor")
    before = ts_key(decode_cursor(cursor, "next_ts")) if cursor else None
    items = [
        m
        for m in reversed(channel.messages)
        if (not m.is_reply or m.reply_broadcast)
        and _inside(m.ts, oldest, latest, inclusive)
        and (before is None or ts_key(m.ts) < before)
    ]
    page, more = items[:limit], len(items) > limit
    return {
        "ok": True,
        "messages": [ws.message_json(channel, m, include_metadata=with_meta) for m in page],
        "has_more": more,
        "pin_count": 0,
        "channel_actions_ts": None,
        "channel_actions_count": 0,
        "response_metadata": {"next_cursor": encode_cursor("next_ts", page[-1].ts) if more else ""},
    }


def replies(ws: Workspace, args: Args) -> dict[str, Any]:
    channel = _visible(ws, args.req("channel"))
    root = ws.find_message(channel, args.req("ts"))
    if root is None:
        raise ApiError("thread_not_found")
    oldest, latest, inclusive = _window(args)
    limit = _limit(args, default=1000, maximum=1000)
    with_meta = args.flag("include_all_metadata")
    cursor = args.text("cursor")
    after = ts_key(decode_cursor(cursor, "next_ts")) if cursor else None
    thread: list[StoredMessage] = [] if root.is_reply else ws.replies(channel, root.ts)
    items = [
        m
        for m in thread
        if _inside(m.ts, oldest, latest, inclusive) and (after is None or ts_key(m.ts) > after)
    ]
    page, more = items[:limit], len(items) > limit
    return {
        "ok": True,
        "messages": [ws.message_json(channel, m, include_metadata=with_meta) for m in [root, *page]],
        "has_more": more,
        "response_metadata": {"next_cursor": encode_cursor("next_ts", page[-1].ts) if more else ""},
    }


def create(ws: Workspace, args: Args) -> dict[str, Any]:
    name = args.text("name") or ""
    problem = check_channel_name(name)
    if problem:
        raise ApiError(problem)
    if ws.find_channel(name) is not None:
        raise ApiError("name_taken")
    channel = ws.add_channel(name, is_private=args.flag("is_private"))
    return {"ok": True, "channel": ws.channel_json(channel)}


def invite(ws: Workspace, args: Args) -> dict[str, Any]:
    channel = ws.channel(args.req("channel"))
    if channel.is_im:
        raise ApiError("method_not_supported_for_channel_type")
    ws.require_member(channel)
    users = args.ids("users", required=True)
    if len(users) > 1000:
        raise ApiError("too_many_users")
    force = args.flag("force")
    errors: list[dict[str, Any]] = []
    valid: list[str] = []
    for user in dict.fromkeys(users):
        if user == ws.bot_user_id:
            code = "cant_invite_self"
        elif user not in ws.users:
            code = "user_not_found"
        elif user in channel.members:
            code = "already_in_channel"
        else:
            valid.append(user)
            continue
        errors.append({"user": user, "ok": False, "error": code})
    if errors and (not force or not valid):
        raise ApiError(str(errors[0]["error"]), extra={"errors": errors})
    channel.members.extend(valid)
    out: dict[str, Any] = {"ok": True, "channel": ws.channel_json(channel)}
    if errors:
        out["errors"] = errors
    return out


def join(ws: Workspace, args: Args) -> dict[str, Any]:
    channel = ws.channel(args.req("channel"))
    if channel.is_private or channel.is_im:
        raise ApiError("method_not_supported_for_channel_type")
    if channel.is_archived:
        raise ApiError("is_archived")
    out: dict[str, Any] = {"ok": True}
    if ws.bot_user_id in channel.members:
        out.update(
            {"warning": "already_in_channel", "response_metadata": {"warnings": ["already_in_channel"]}}
        )
    else:
        channel.members.append(ws.bot_user_id)
    out["channel"] = ws.channel_json(channel)
    return out


def info(ws: Workspace, args: Args) -> dict[str, Any]:
    channel = ws.channel(args.req("channel"))
    if channel.is_private and ws.bot_user_id not in channel.members:
        raise ApiError("channel_not_found")
    return {"ok": True, "channel": ws.channel_json(channel, num_members=args.flag("include_num_members"))}


def members(ws: Workspace, args: Args) -> dict[str, Any]:
    channel = ws.channel(args.req("channel"))
    if channel.is_private and ws.bot_user_id not in channel.members:
        raise ApiError("channel_not_found")
    return _paged(args, list(channel.members), "members", default=100)


def _paged(args: Args, items: list[Any], key: str, *, default: int) -> dict[str, Any]:
    limit = _limit(args, default=default, maximum=1000)
    cursor = args.text("cursor")
    start = 0
    if cursor:
        try:
            start = int(decode_cursor(cursor, "next_idx"))
        except ValueError as exc:
            raise ApiError("invalid_cursor") from exc
    page = items[start : start + limit]
    more = start + limit < len(items)
    next_cursor = encode_cursor("next_idx", str(start + limit)) if more else ""
    return {"ok": True, key: page, "response_metadata": {"next_cursor": next_cursor}}


def conversations_list(ws: Workspace, args: Args) -> dict[str, Any]:
    types = set(args.ids("types") or ["public_channel"])
    exclude_archived = args.flag("exclude_archived")
    found = []
    for channel in ws.channels.values():
        kind = "im" if channel.is_im else ("private_channel" if channel.is_private else "public_channel")
        if kind not in types or (exclude_archived and channel.is_archived):
            continue
        if kind != "public_channel" and ws.bot_user_id not in channel.members:
            continue
        found.append(ws.channel_json(channel))
    return _paged(args, found, "channels", default=100)


def users_info(ws: Workspace, args: Args) -> dict[str, Any]:
    user = ws.users.get(args.req("user"))
    if user is None:
        raise ApiError("user_not_found")
    return {"ok": True, "user": ws.user_json(user)}


def users_list(ws: Workspace, args: Args) -> dict[str, Any]:
    out = _paged(args, [ws.user_json(u) for u in ws.users.values()], "members", default=100)
    out["cache_ts"] = int(time.time())
    return out


def usergroup_users(ws: Workspace, args: Args) -> dict[str, Any]:
    group = ws.usergroups.get(args.req("usergroup"))
    if group is None:
        raise ApiError("no_such_subteam")
    return {"ok": True, "users": list(group.users)}


def usergroups_list(ws: Workspace, args: Args) -> dict[str, Any]:
    with_users = args.flag("include_users")
    groups = []
    for group in ws.usergroups.values():
        entry: dict[str, Any] = {
            "id": group.id,
            "team_id": ws.team_id,
            "is_usergroup": True,
            "name": group.name,
            "description": "",
            "handle": group.handle,
            "is_external": False,
            "date_create": 0,
            "date_update": 0,
            "date_delete": 0,
            "auto_type": None,
            "created_by": "",
            "updated_by": "",
            "deleted_by": None,
            "prefs": {"channels": [], "groups": []},
            "user_count": len(group.users),
        }
        if with_users:
            entry["users"] = list(group.users)
        groups.append(entry)
    return {"ok": True, "usergroups": groups}


CONVERSATION_METHODS = {
    "conversations.history": history,
    "conversations.replies": replies,
    "conversations.create": create,
    "conversations.invite": invite,
    "conversations.join": join,
    "conversations.info": info,
    "conversations.members": members,
    "conversations.list": conversations_list,
    "users.info": users_info,
    "users.list": users_list,
    "usergroups.users.list": usergroup_users,
    "usergroups.list": usergroups_list,
}
