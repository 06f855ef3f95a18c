"""Who asked for a flow and how to answer them, without the chat framework that carried the
request: the Slack listeners build an `Invocation` and an `Answer` from Bolt's request, and
the flows (bot/flows/actions.py, bot/slack/flows.py) take only these."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from bot.incidents.lifecycle import Actor

__all__ = ["Answer", "Invocation"]


@dataclass(frozen=True)
class Invocation:
    """Who asked, from where, and the request's identity (for exactly-once changes)."""

    user: Actor
    channel_id: str | None
    request_key: str


class Answer(Protocol):
    """Tell the person who clicked or typed (ephemeral); `replace` replaces the message they
    clicked on (a confirmation, an approval request) instead of adding one."""

    async def __call__(self, message: Mapping[str, Any], *, replace: bool = False) -> None: ...
