"""Slack user-group membership for the policy: who is in the groups the policy names.

Only groups the policy names are ever looked up (`Policy.usergroups()`), through
`usergroups.users.list`, and each member list is cached for `ttl` seconds: a click must not
wait on Slack for every group every time, and a person removed from the on-call group loses
the grant within minutes. When Slack cannot answer, a cached list that is too old is still
used (for at most `stale_ttl`) rather than refusing everyone during a Slack hiccup; with no
list at all the error says that membership could not be checked.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from bot.errors import PermanentUpstreamError, UpstreamError
from bot.slack.chat import SlackChat

__all__ = ["UserGroups"]

logger = logging.getLogger(__name__)


@dataclass
class _Entry:
    members: frozenset[str]
    fetched_at: float


@dataclass
class UserGroups:
    chat: SlackChat
    groups: frozenset[str]
    ttl: float = 300.0
    stale_ttl: float = 3600.0
    clock: Callable[[], float] = time.monotonic
    _cache: dict[str, _Entry] = field(default_factory=dict)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    async def of(self, user_id: str) -> frozenset[str]:
        """The policy's groups that `user_id` belongs to."""
        if not self.groups:
            return frozenset()
        found = set()
        for group in sorted(self.groups):
            if user_id in await self.members(group):
                found.add(group)
        return frozenset(found)

    async def members(self, group: str) -> frozenset[str]:
        entry = self._cache.get(group)
        now = self.clock()
        if entry is not None and now - entry.fetched_at < self.ttl:
            return entry.members
        lock = self._locks.setdefault(group, asyncio.Lock())
        async with lock:
            entry = self._cache.get(group)
            if entry is not None and self.clock() - entry.fetched_at < self.ttl:
                return entry.members
            try:
                members = await self._fetch(group)
            except PermanentUpstreamError as exc:
                if "no_such_subteam" in exc.message:
                    # A group the policy names but Slack does not know has no members.
                    logger.warning("policy names an unknown Slack user group", extra={"usergroup": group})
                    members = frozenset()
                else:
                    return self._fallback(group, entry, exc)
            except UpstreamError as exc:
                return self._fallback(group, entry, exc)
            self._cache[group] = _Entry(members, self.clock())
            return members

    async def _fetch(self, group: str) -> frozenset[str]:
        response = await self.chat.call(
            "usergroups.users.list", None, self.chat.client.usergroups_users_list, usergroup=group
        )
        users: Iterable[str] = response.get("users") or []
        return frozenset(str(u) for u in users)

    def _fallback(self, group: str, entry: _Entry | None, error: UpstreamError) -> frozenset[str]:
        if entry is not None and self.clock() - entry.fetched_at < self.stale_ttl:
            logger.warning(
                "Slack user group lookup failed; using the cached member list",
                extra={"usergroup": group, "error": error.message},
            )
            return entry.members
        raise type(error)(
            f"could not check membership of Slack user group {group} the policy names: {error.message}"
        ) from error

    def forget(self) -> None:
        self._cache.clear()
