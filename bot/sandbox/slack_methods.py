"""Every Web API method the stand-in serves, by its Slack name.

A method is `(workspace, args) -> response dict`; it raises `ApiError` for an `ok: false`
answer. Methods not listed here get `unknown_method`, as on slack.com.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.sandbox.slack_methods_chat import CHAT_METHODS
from bot.sandbox.slack_methods_conversations import CONVERSATION_METHODS
from bot.sandbox.slack_methods_views import VIEW_METHODS
from bot.sandbox.slack_wire import Args
from bot.sandbox.slack_workspace import Workspace

__all__ = ["METHODS", "Method"]

Method = Callable[[Workspace, Args], dict[str, Any]]


def auth_test(ws: Workspace, args: Args) -> dict[str, Any]:
    return {
        "ok": True,
        "url": f"https://{ws.domain}.slack.com/",
        "team": ws.team_name,
        "user": ws.bot_name,
        "team_id": ws.team_id,
        "user_id": ws.bot_user_id,
        "bot_id": ws.bot_id,
        "is_enterprise_install": False,
    }


def api_test(ws: Workspace, args: Args) -> dict[str, Any]:
    out: dict[str, Any] = {"ok": True}
    echoed = {k: v for k, v in args.params.items() if k != "token"}
    if echoed:
        out["args"] = echoed
    return out


METHODS: dict[str, Method] = {
    "api.test": api_test,
    "auth.test": auth_test,
    **CHAT_METHODS,
    **CONVERSATION_METHODS,
    **VIEW_METHODS,
}
