"""views.open / push / update / publish: modals and the App Home, stored as Slack returns them.

A trigger_id opens or pushes one view only (`exchanged_trigger_id` afterwards); a modal stack
holds at most 3 views (`push_limit_reached`); an update with a stale `hash` gets
`hash_conflict`. View problems answer `invalid_arguments` with the reasons in
`response_metadata.messages`, which is how Slack reports bad view JSON.
"""

from __future__ import annotations

import copy
import secrets
import time
from typing import Any

from bot.sandbox.slack_blockkit import check_view
from bot.sandbox.slack_models import ApiError
from bot.sandbox.slack_wire import Args
from bot.sandbox.slack_workspace import Workspace

__all__ = ["VIEW_METHODS"]

MAX_STACK = 3


def _read_view(args: Args, *, home: bool) -> dict[str, Any]:
    view = args.decoded("view", error="invalid_arguments")
    if view is None:
        raise ApiError("invalid_arguments", messages=["[ERROR] missing required field: view"])
    problems = check_view(view, home=home)
    if problems:
        code = "view_too_large" if any("view_too_large" in p for p in problems) else "invalid_arguments"
        raise ApiError(code, messages=problems)
    assert isinstance(view, dict)
    return view


def _build(
    ws: Workspace, view: dict[str, Any], *, view_id: str, root_view_id: str, previous_view_id: str | None
) -> dict[str, Any]:
    return {
        "id": view_id,
        "team_id": ws.team_id,
        "type": view["type"],
        "blocks": ws.with_ids(view.get("blocks") or []),
        "private_metadata": view.get("private_metadata", ""),
        "callback_id": view.get("callback_id", ""),
        "state": {"values": {}},
        "hash": f"{int(time.time())}.{secrets.token_hex(4)}",
        "title": copy.deepcopy(view.get("title")),
        "clear_on_close": bool(view.get("clear_on_close", False)),
        "notify_on_close": bool(view.get("notify_on_close", False)),
        "close": copy.deepcopy(view.get("close")),
        "submit": copy.deepcopy(view.get("submit")),
        "previous_view_id": previous_view_id,
        "root_view_id": root_view_id,
        "app_id": ws.app_id,
        "external_id": view.get("external_id", ""),
        "app_installed_team_id": ws.team_id,
        "bot_id": ws.bot_id,
    }


def _spend_trigger(ws: Workspace, args: Args) -> None:
    trigger = args.text("trigger_id") or args.text("interactivity_pointer")
    if trigger is None:
        raise ApiError("invalid_arguments", messages=["[ERROR] missing required field: trigger_id"])
    if trigger in ws.used_triggers:
        raise ApiError("exchanged_trigger_id")
    ws.used_triggers.add(trigger)


def _external_id_taken(ws: Workspace, view: dict[str, Any]) -> bool:
    external = view.get("external_id")
    return bool(external) and any(v.get("external_id") == external for v in ws.views.values())


def open_view(ws: Workspace, args: Args) -> dict[str, Any]:
    view = _read_view(args, home=False)
    _spend_trigger(ws, args)
    if _external_id_taken(ws, view):
        raise ApiError("duplicate_external_id")
    view_id = ws.new_id("V")
    built = _build(ws, view, view_id=view_id, root_view_id=view_id, previous_view_id=None)
    ws.views[view_id] = built
    ws.view_stacks.append([view_id])
    return {"ok": True, "view": copy.deepcopy(built)}


def push_view(ws: Workspace, args: Args) -> dict[str, Any]:
    view = _read_view(args, home=False)
    _spend_trigger(ws, args)
    if not ws.view_stacks:
        ws.view_stacks.append([])
    stack = ws.view_stacks[-1]
    if len(stack) >= MAX_STACK:
        raise ApiError("push_limit_reached")
    view_id = ws.new_id("V")
    root = stack[0] if stack else view_id
    built = _build(
        ws, view, view_id=view_id, root_view_id=root, previous_view_id=stack[-1] if stack else None
    )
    ws.views[view_id] = built
    stack.append(view_id)
    return {"ok": True, "view": copy.deepcopy(built)}


def _find_view(
    ws: Workspace, view_id: str | None, external_id: str | None
) -> tuple[dict[str, dict[str, Any]], str] | None:
    """Where a modal or home view lives (its store and key), by id or external_id."""
    for store in (ws.views, ws.home_views):
        for key, candidate in store.items():
            if (view_id and candidate["id"] == view_id) or (
                external_id and candidate.get("external_id") == external_id
            ):
                return store, key
    return None


def update_view(ws: Workspace, args: Args) -> dict[str, Any]:
    view_id = args.text("view_id")
    external_id = args.text("external_id")
    if view_id is None and external_id is None:
        raise ApiError("invalid_arguments", messages=["[ERROR] view_id or external_id is required"])
    found = _find_view(ws, view_id, external_id)
    if found is None:
        raise ApiError("not_found")
    place, slot = found
    current = place[slot]
    view = _read_view(args, home=current["type"] == "home")
    expected = args.text("hash")
    if expected is not None and expected != current["hash"]:
        raise ApiError("hash_conflict")
    built = _build(
        ws,
        view,
        view_id=current["id"],
        root_view_id=current["root_view_id"],
        previous_view_id=current.get("previous_view_id"),
    )
    place[slot] = built
    return {"ok": True, "view": copy.deepcopy(built)}


def publish(ws: Workspace, args: Args) -> dict[str, Any]:
    user_id = args.req("user_id")
    if user_id not in ws.users:
        raise ApiError("user_not_found")
    view = _read_view(args, home=True)
    current = ws.home_views.get(user_id)
    expected = args.text("hash")
    if current is not None and expected is not None and expected != current["hash"]:
        raise ApiError("hash_conflict")
    view_id = current["id"] if current else ws.new_id("V")
    built = _build(ws, view, view_id=view_id, root_view_id=view_id, previous_view_id=None)
    ws.home_views[user_id] = built
    return {"ok": True, "view": copy.deepcopy(built)}


VIEW_METHODS = {
    "views.open": open_view,
    "views.push": push_view,
    "views.update": update_view,
    "views.publish": publish,
}
