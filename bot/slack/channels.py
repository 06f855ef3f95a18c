"""A channel of its own for an incident whose route asks for one (`incident_channel:` in the
routing file, for some severities): `#inc-<number>-<slug>`, with the commander and the
route's responders invited, a summary posted, and a link from the root message.

An outbox job (`jobs.INCIDENT_CHANNEL`), so it happens after the root message, survives Slack
outages, and is safe to run again after a lost answer:
- the channel ID is saved on the incident as soon as it exists; a later run only invites and
  makes sure the summary is there (found again by its metadata marker);
- `name_taken` for our own name means an earlier attempt created it (the creator is this bot):
  it is reused; a channel someone else owns gets a `-2`, `-3`... suffix instead.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
from slack_sdk.errors import SlackApiError
from sqlalchemy.engine import Engine

from bot.db import transaction
from bot.errors import PermanentUpstreamError
from bot.incidents import jobs, store
from bot.incidents.models import Alert, Incident, IncidentStatus
from bot.outbox import ClaimedJob, Handler
from bot.routing import Router
from bot.slack import blocks, notices
from bot.slack.chat import SlackChat

__all__ = ["IncidentChannels", "channel_name", "slugify"]

logger = logging.getLogger(__name__)

MAX_NAME = 80  # Slack's limit for channel names
SLUG_MAX = 40  # long enough to recognise, short enough to read in a sidebar
MAX_SUFFIX = 9
# Invite errors that will not go away by retrying; the rest of the job still runs.
INVITE_PROBLEMS = frozenset(
    {
        "already_in_channel",
        "user_not_found",
        "cant_invite_self",
        "cant_invite",
        "user_is_restricted",
        "ura_max_channels",
        "user_is_ultra_restricted",
        "invalid_user_id",
        "not_in_channel",
    }
)


def slugify(text: str, limit: int = SLUG_MAX) -> str:
    """Lowercase ASCII letters, digits and single hyphens, cut at a word boundary."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    if len(slug) > limit:
        cut = slug[:limit]
        slug = cut[: cut.rfind("-")] if "-" in cut[limit // 2 :] else cut
    return slug.strip("-")


def channel_name(incident: Incident, suffix: int = 1) -> str:
    """`inc-42-vllmhighe2elatency-p99-latency-above-2s`; `-2`... when the name is taken."""
    prefix = f"inc-{incident.id}"
    tail = f"-{suffix}" if suffix > 1 else ""
    slug = slugify(incident.title, min(SLUG_MAX, MAX_NAME - len(prefix) - len(tail) - 1))
    return f"{prefix}-{slug}{tail}" if slug else f"{prefix}{tail}"


@dataclass
class IncidentChannels:
    engine: Engine
    chat: SlackChat
    router: Router
    bot_user_id: Callable[[], Awaitable[str | None]]
    wake: Callable[[], None] = lambda: None

    def handlers(self) -> dict[str, Handler]:
        return {jobs.INCIDENT_CHANNEL: self.run}

    async def run(self, job: ClaimedJob) -> None:
        incident, alerts = await anyio.to_thread.run_sync(
            store.load_with_alerts, self.engine, job.incident_id
        )
        route = self.router.route(incident.common_labels)
        existed = incident.incident_channel is not None
        if not existed:
            if incident.status == IncidentStatus.RESOLVED or not route.wants_incident_channel(
                incident.severity
            ):
                return
            channel_id, name = await self._create(incident)
            assert incident.id is not None
            await anyio.to_thread.run_sync(self._save, incident.id, channel_id, name)
            self.wake()
            incident.incident_channel = channel_id
        assert incident.incident_channel is not None
        responders = route.incident_channel.responders if route.incident_channel else ()
        await self._invite(incident, [incident.commander_id or "", *responders])
        await self._post_summary(incident, alerts, look_first=existed or job.attempts > 1)

    async def _create(self, incident: Incident) -> tuple[str, str]:
        tried: list[str] = []
        for suffix in range(1, MAX_SUFFIX + 1):
            name = channel_name(incident, suffix)
            tried.append(name)
            response = await self._call(
                "conversations.create", self.chat.client.conversations_create, name=name
            )
            if response.get("ok"):
                return str(response["channel"]["id"]), name
            existing = await self._find(name)
            if existing is not None and existing.get("creator") == await self.bot_user_id():
                logger.info(
                    "incident channel already created by an earlier attempt", extra={"incident": incident.key}
                )
                return str(existing["id"]), name
        raise PermanentUpstreamError(f"no free channel name for {incident.key}; tried {', '.join(tried)}")

    async def _find(self, name: str) -> dict[str, Any] | None:
        cursor: str | None = None
        for _page in range(50):
            kwargs: dict[str, Any] = {"types": "public_channel,private_channel", "limit": 1000}
            if cursor:
                kwargs["cursor"] = cursor
            response = await self._call("conversations.list", self.chat.client.conversations_list, **kwargs)
            for channel in response.get("channels") or []:
                if channel.get("name") == name:
                    return dict(channel)
            cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                break
        return None

    def _save(self, incident_id: int, channel_id: str, name: str) -> None:
        with transaction(self.engine) as session:
            incident = store.get_incident(session, incident_id, for_update=True)
            if incident.incident_channel:
                return
            incident.incident_channel = channel_id
            store.add_event(
                session,
                incident,
                "incident_channel",
                f"Incident channel #{name} created",
                data={"channel": channel_id, "name": name},
            )
            jobs.changed(session, incident, notices.channel_created(incident, channel_id))

    async def _invite(self, incident: Incident, users: Sequence[str]) -> None:
        me = await self.bot_user_id()
        wanted = [u for u in dict.fromkeys(users) if u and u != me]
        if not wanted:
            return
        assert incident.incident_channel is not None
        response = await self._call(
            "conversations.invite",
            self.chat.client.conversations_invite,
            channel=incident.incident_channel,
            users=",".join(wanted),
            force=True,
        )
        problems = [e for e in response.get("errors") or [] if e.get("error") != "already_in_channel"]
        if not response.get("ok") and response.get("error") != "already_in_channel":
            problems = problems or [{"user": ",".join(wanted), "error": response.get("error")}]
        if problems:
            logger.warning(
                "some people could not be invited to the incident channel",
                extra={"incident": incident.key, "problems": problems},
            )

    async def _post_summary(self, incident: Incident, alerts: Sequence[Alert], *, look_first: bool) -> None:
        assert incident.incident_channel is not None
        marker = {"incident": incident.key, "kind": "channel_summary"}
        if look_first and await self.chat.find_posted(incident.incident_channel, marker):
            return
        permalink = (
            await self.chat.permalink(incident.channel, incident.slack_ts)
            if incident.channel and incident.slack_ts
            else None
        )
        await self.chat.post(
            incident.incident_channel, summary_message(incident, alerts, permalink), marker=marker
        )

    async def _call(self, method: str, func: Callable[..., Any], **kwargs: Any) -> Any:
        """Slack's answers we act on (`name_taken`, invite problems) come back as data; every
        other failure is classified by SlackChat (retryable or permanent) like any call."""

        async def call(**args: Any) -> Any:
            try:
                return await func(**args)
            except SlackApiError as exc:
                data = getattr(exc.response, "data", None)
                error = data.get("error") if isinstance(data, dict) else None
                if method == "conversations.create" and error == "name_taken":
                    return {"ok": False, "error": error}
                if method == "conversations.invite" and error in INVITE_PROBLEMS:
                    return dict(data) if isinstance(data, dict) else {"ok": False, "error": error}
                raise

        return await self.chat.call(method, None, call, **kwargs)


def summary_message(incident: Incident, alerts: Sequence[Alert], permalink: str | None) -> blocks.Message:
    """The incident as it stands, for the people just invited: the root message's content
    (without buttons: that message is the one kept current) and where to find it."""
    message = blocks.root_message(incident, alerts, interactive=False)
    where = (
        f"<{permalink}|the incident's message>"
        if permalink
        else f"the incident's message in <#{incident.channel}>"
    )
    note = {
        "type": "section",
        "text": {
            "type": "mrkdwn",
            "text": f":speech_balloon: This channel is for *{incident.key}*. Status, buttons and "
            f"updates stay on {where}; `/incident help` works here too.",
        },
    }
    return {
        "text": f"{incident.key}: incident channel",
        "blocks": [*message["blocks"], note][: blocks.MAX_BLOCKS],
    }
