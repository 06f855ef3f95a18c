"""What happens after a Slack request was acknowledged: one flow per command, click or event.

Listeners in bot/slack/app.py `ack()` first and then call exactly one method here, so the
3-second limit never depends on the database or on Slack's API. Database work runs in a
worker thread (`anyio.to_thread`), a change commits together with its timeline event, its
outbox jobs and the Slack request's identity (so a retry or a replayed click does nothing),
and the answer goes back where the person is: `respond()` (the request's response_url,
ephemeral) for commands and message buttons, a modal or the Home tab otherwise.

Errors are not handled here: NotFound, Conflict and PayloadError propagate to the listener's
`after_ack` (app.py), which turns them into an ephemeral message naming the problem.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio
from slack_bolt.context.respond.async_respond import AsyncRespond
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from bot.db import reading, transaction
from bot.errors import PayloadError, UpstreamError
from bot.flows.requests import Answer, Invocation
from bot.incidents import jobs, lifecycle, store
from bot.incidents.lifecycle import Actor, Outcome
from bot.incidents.models import Alert, Incident, TimelineEvent
from bot.slack import commands, replies
from bot.slack.blocks import ActionId, Message
from bot.slack.home import HOME_LIMIT, home_view, incident_modal
from bot.slack.home_viewers import open_incidents, remember_viewer

if TYPE_CHECKING:
    from bot.flows.actions import ActionFlows
    from bot.services import Services

__all__ = ["Answer", "Invocation", "Respond", "SlackFlows", "answer_via"]

logger = logging.getLogger(__name__)

# Best-effort Slack look-ups on the way to an answer (a permalink, a display name) give up
# quickly: the answer matters more than the garnish.
LOOKUP_TIMEOUT = 2.0


Respond = AsyncRespond  # Bolt's `respond`: a POST to the request's response_url


class SlackFlows:
    def __init__(self, services: Services) -> None:
        self.services = services

    # ------------------------------------------------------------------ commands
    async def run_command(self, command: commands.Command, who: Invocation, respond: Respond) -> None:
        match command:
            case commands.Help():
                await self._answer(respond, replies.help_message())
            case commands.ListOpen():
                incidents, total = await self._db(lambda s: open_incidents(s, replies.LIST_LIMIT))
                await self._answer(respond, replies.incident_list(incidents, total=total))
            case commands.Show(incident_id):
                incident, alerts = await self._db(lambda s: _incident_and_alerts(s, incident_id))
                permalink = await self._permalink(incident)
                await self._answer(respond, replies.incident_summary(incident, alerts, permalink=permalink))
            case commands.Timeline(incident_id):
                incident, events = await self._db(lambda s: _incident_and_timeline(s, incident_id))
                await self._answer(respond, replies.timeline_message(incident, events))
            case commands.Postmortem(incident_id):
                await self._postmortem(incident_id, who, respond)
            case commands.Ack(incident_id):
                await self._change(who, respond, lambda s: lifecycle.acknowledge(s, incident_id, who.user))
            case commands.Mitigate(incident_id, note):
                await self._change(
                    who, respond, lambda s: lifecycle.mitigate(s, incident_id, who.user, note=note)
                )
            case commands.Resolve(incident_id, reason):
                await self._change(
                    who, respond, lambda s: lifecycle.resolve(s, incident_id, who.user, reason=reason)
                )
            case commands.Assign(incident_id, user_id, user_name):
                name = user_name or await self._user_name(user_id)
                commander = Actor(user_id, name)
                await self._change(
                    who, respond, lambda s: lifecycle.assign(s, incident_id, who.user, commander)
                )
            case commands.SetSeverity(incident_id, severity):
                await self._change(
                    who, respond, lambda s: lifecycle.set_severity(s, incident_id, who.user, severity)
                )
            case commands.Note(incident_id, text):
                await self._change(who, respond, lambda s: lifecycle.add_note(s, incident_id, who.user, text))
            case commands.Silence(incident_id, seconds, duration, reason):
                await self._actions().silence(incident_id, seconds, duration, reason, who, _answer(respond))
            case commands.ListSilences(incident_id):
                await self._actions().list_silences(incident_id, _answer(respond))
            case commands.Unsilence(incident_id, silence_id):
                await self._actions().unsilence(incident_id, silence_id, who, _answer(respond))

    def _actions(self) -> ActionFlows:
        return self.services.actions

    async def _postmortem(self, incident_id: int, who: Invocation, respond: Respond) -> None:
        def enqueue(session: Session) -> Incident | None:
            incident = store.get_incident(session, incident_id)
            if not store.claim_request(session, who.request_key, incident_id=incident.id):
                return None
            jobs.postmortem(session, incident, requested_by=who.user.id)
            return incident

        incident = await self._db_write(enqueue)
        if incident is None:
            return
        self.services.outbox.wake()
        where = "in its thread" if incident.slack_ts else "in its thread as soon as its message is in Slack"
        api = f"/api/incidents/{incident.id}/postmortem"
        if self.services.settings.public_url:
            api = self.services.settings.public_url.rstrip("/") + api
        await self._answer(
            respond,
            replies.notice(
                f":memo: The postmortem draft for *{incident.key}* will be posted {where} as a Markdown "
                f"file. It is also at `{api}`."
            ),
        )

    # ------------------------------------------------------------------ buttons
    async def click(self, action_id: str, value: str, who: Invocation, respond: Respond | None) -> None:
        """Acknowledge, Resolve or Take command on an incident's message. A click that
        changes something answers through the message itself (the root is re-rendered and the
        thread told, via the outbox); one that changes nothing says why, to the clicker only."""
        incident_id = _button_incident(value)
        change: Callable[[Session], Outcome]
        if action_id == ActionId.ACKNOWLEDGE:
            change = lambda s: lifecycle.acknowledge(s, incident_id, who.user)  # noqa: E731
        elif action_id == ActionId.RESOLVE:
            change = lambda s: lifecycle.resolve(s, incident_id, who.user)  # noqa: E731
        elif action_id == ActionId.TAKE_COMMAND:
            change = lambda s: lifecycle.take_command(s, incident_id, who.user)  # noqa: E731
        else:
            raise PayloadError(f"unknown incident button {action_id!r}")
        outcome = await self._transition(who, change)
        if outcome is not None and not outcome.changed and respond is not None:
            await self._answer(respond, replies.notice(f":information_source: {outcome.message}"))

    # ------------------------------------------------------------------ App Home
    async def publish_home(self, user_id: str) -> None:
        await anyio.to_thread.run_sync(remember_viewer, self.services.engine, user_id)
        incidents, total = await self._db(lambda s: open_incidents(s, HOME_LIMIT))
        try:
            await self.services.chat.publish_view(user_id, home_view(incidents, total=total))
        except UpstreamError as exc:
            # The next app_home_opened publishes again; nothing to keep.
            logger.warning("could not publish the App Home", extra={"slack_user": user_id, "error": str(exc)})

    async def open_incident(self, trigger_id: str, value: str) -> None:
        incident_id = _button_incident(value)
        incident, alerts = await self._db(lambda s: _incident_and_alerts(s, incident_id))
        permalink = await self._permalink(incident)
        await self.services.chat.open_view(trigger_id, incident_modal(incident, alerts, permalink=permalink))

    # ------------------------------------------------------------------ helpers
    async def _change(self, who: Invocation, respond: Respond, change: Callable[[Session], Outcome]) -> None:
        outcome = await self._transition(who, change)
        if outcome is not None:
            emoji = ":white_check_mark:" if outcome.changed else ":information_source:"
            await self._answer(respond, replies.notice(f"{emoji} {outcome.message}"))

    async def _transition(self, who: Invocation, change: Callable[[Session], Outcome]) -> Outcome | None:
        """Run `change` once per Slack request; None when this request already ran it."""

        def apply(session: Session) -> Outcome | None:
            if not store.claim_request(session, who.request_key):
                logger.info("repeated Slack request ignored", extra={"request": who.request_key})
                return None
            return change(session)

        outcome = await self._db_write(apply)
        if outcome is None:
            return None
        if outcome.changed:
            self._observe(outcome)
            if outcome.jobs:
                self.services.outbox.wake()
            logger.info(
                "incident changed from Slack",
                extra={"incident": outcome.incident.key, "slack_user": who.user.id},
            )
        return outcome

    def _observe(self, outcome: Outcome) -> None:
        incident = outcome.incident
        if outcome.first_ack:
            self.services.observe_acknowledgement(incident)
        if outcome.resolved:
            self.services.metrics.incidents_resolved.labels(incident.severity).inc()
            self.services.observe_resolution(incident)

    async def _db_write(self, work: Callable[[Session], Any]) -> Any:
        def run() -> Any:
            try:
                with transaction(self.services.engine) as session:
                    return work(session)
            except IntegrityError as exc:
                if "slack_requests" not in str(exc):
                    raise
                # A concurrent twin of this request (same identity) committed first.
                logger.info("concurrent repeat of a Slack request ignored")
                return None

        return await anyio.to_thread.run_sync(run)

    async def _db(self, work: Callable[[Session], Any]) -> Any:
        """Read only (a snapshot beside the writers)."""

        def run() -> Any:
            with reading(self.services.engine) as session:
                return work(session)

        return await anyio.to_thread.run_sync(run)

    async def _answer(self, respond: Respond, message: Message) -> None:
        """Ephemeral, never replacing the message a button was on (the outbox owns that)."""
        try:
            await respond(
                text=message["text"],
                blocks=message.get("blocks"),
                response_type="ephemeral",
                replace_original=False,
            )
        except Exception as exc:  # a lost answer must not undo or repeat the change
            logger.warning("could not answer through response_url", extra={"error": repr(exc)})

    async def _permalink(self, incident: Incident) -> str | None:
        if not (incident.channel and incident.slack_ts):
            return None
        with anyio.move_on_after(LOOKUP_TIMEOUT):
            return await self.services.chat.permalink(incident.channel, incident.slack_ts)
        return None

    async def _user_name(self, user_id: str) -> str | None:
        """A person's handle for the record, when Slack did not send it with the mention."""
        with anyio.move_on_after(LOOKUP_TIMEOUT):
            try:
                return await self.services.chat.user_name(user_id)
            except UpstreamError:
                return None
        return None


def _answer(respond: Respond) -> Answer | None:
    return answer_via(respond, response_url=respond.response_url)


def answer_via(
    respond: Callable[..., Awaitable[Any]] | None, *, response_url: str | None = None
) -> Answer | None:
    """An `Answer` that posts to a request's response_url through `respond` (Bolt's, or any
    function taking Slack's response_url fields). A lost answer is logged, never raised: the
    change it reports is already committed."""
    if respond is None or not response_url:
        return None

    async def answer(message: Mapping[str, Any], *, replace: bool = False) -> None:
        try:
            await respond(
                text=message["text"],
                blocks=message.get("blocks"),
                response_type="ephemeral",
                replace_original=replace,
            )
        except Exception as exc:
            logger.warning("could not answer through response_url", extra={"error": repr(exc)})

    return answer


def _button_incident(value: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise PayloadError(f"button value {value!r} is not an incident number") from None


def _incident_and_alerts(session: Session, incident_id: int) -> tuple[Incident, list[Alert]]:
    incident = store.get_incident(session, incident_id)
    assert incident.id is not None
    return incident, list(store.alerts_of(session, incident.id))


def _incident_and_timeline(session: Session, incident_id: int) -> tuple[Incident, list[TimelineEvent]]:
    incident = store.get_incident(session, incident_id)
    assert incident.id is not None
    return incident, list(store.timeline_of(session, incident.id))
