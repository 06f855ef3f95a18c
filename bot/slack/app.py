"""The Slack side of the bot: a slack-bolt `AsyncApp` behind `POST /slack/events`.

A request goes: Starlette adapter -> Bolt middleware (signature and timestamp check first: a
bad signature or a timestamp more than 5 minutes off is a 401 and nothing else happens) ->
our `authorize` -> repeat filter -> listener, which `ack()`s and then calls one flow
(bot/slack/flows.py). With `process_before_response=False` Bolt answers Slack as soon as
`ack()` is called, so the 3-second limit never waits for the database or Slack's API.

Nothing on the way to the ack talks to Slack or to the database:
- `authorize` is ours, built from settings. Bolt's default for a single-workspace app
  calls `auth.test` on the first request (and the sync App at startup), which would make an
  ack wait on Slack and fail while Slack is down. The bot user ID, which Bolt only needs to
  ignore the bot's own events, is fetched by `BotIdentity` in the background and cached.
- Repeats (Events API retries with X-Slack-Retry-Num, replayed clicks or commands) are
  recognised by the request's identity in a small in-memory window here, and for anything
  that changes an incident, by the same identity committed in the change's transaction
  (`store.claim_request`), which also covers other replicas and restarts.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from slack_bolt.adapter.fastapi.async_handler import AsyncSlackRequestHandler
from slack_bolt.adapter.starlette.async_handler import to_async_bolt_request, to_starlette_response
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext, AsyncRespond
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import BotError
from bot.flows.requests import Invocation
from bot.incidents.lifecycle import Actor
from bot.slack import commands, replies
from bot.slack.blocks import ActionId, Message
from bot.slack.flows import SlackFlows
from bot.slack.request_guard import VERIFIED, Refusal, read_verified_body

if TYPE_CHECKING:
    from bot.services import Services

__all__ = ["BotIdentity", "RecentRequests", "SlackApp", "build_slack_app", "request_key", "router"]

logger = logging.getLogger(__name__)
bolt_logger = logging.getLogger("bot.slack.bolt")

INCIDENT_COMMAND = "/incident"
INCIDENT_BUTTONS = re.compile(
    f"^({ActionId.ACKNOWLEDGE.value}|{ActionId.RESOLVE.value}|{ActionId.TAKE_COMMAND.value})$"
)
# URL buttons (Alert source, Runbook, ...) still send block_actions; Slack shows a warning
# on the button unless they are acknowledged.
LINK_BUTTONS = re.compile(f"^{ActionId.LINK.value}(_\\d+)?$")

router = APIRouter()


@router.post("/slack/events")
async def slack_events(request: Request) -> Response:
    """Only a request whose signature was verified reaches Bolt (bot/slack/request_guard.py)."""
    slack: SlackApp = request.app.state.slack
    try:
        verified = await read_verified_body(request, slack.verifier)
    except Refusal as refusal:
        return refusal.response
    try:
        bolt_request = to_async_bolt_request(request, verified.text.encode(), {VERIFIED: True})
    except Exception as exc:  # Bolt's context extraction on a signed body of an odd shape
        logger.warning("signed Slack request Bolt cannot read", extra={"error": type(exc).__name__})
        return Refusal(400, "not a Slack request incident-bot can read").response
    return to_starlette_response(await slack.bolt.async_dispatch(bolt_request))


class BotIdentity:
    """The bot's own user ID (auth.test), fetched in the background, cached, and never
    awaited on the way to an ack. A failed fetch is retried on a later request after a pause."""

    RETRY_AFTER = 30.0

    def __init__(self, client: AsyncWebClient) -> None:
        self._client = client
        self.user_id: str | None = None
        self.bot_id: str | None = None
        self.team_id: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._failed_at = 0.0

    def peek(self) -> str | None:
        """The cached bot user ID, or None while unknown (then a fetch starts in the background)."""
        if (
            self.user_id is None
            and self._task is None
            and time.monotonic() - self._failed_at > self.RETRY_AFTER
        ):
            self._task = asyncio.get_running_loop().create_task(self._fetch(), name="slack-auth-test")
        return self.user_id

    async def get(self) -> str | None:
        """For work that may wait on Slack (outbox jobs): the bot user ID, fetching it if needed."""
        if self.user_id is None:
            self.peek()
            if self._task is not None:
                await asyncio.shield(self._task)
        return self.user_id

    async def _fetch(self) -> None:
        try:
            response = await self._client.auth_test()
            self.user_id = response.get("user_id")
            self.bot_id = response.get("bot_id")
            self.team_id = response.get("team_id")
        except (SlackApiError, SlackClientError, OSError, TimeoutError) as exc:
            self._failed_at = time.monotonic()
            logger.warning(
                "auth.test failed; the bot user ID stays unknown for now", extra={"error": str(exc)}
            )
        finally:
            self._task = None

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()


@dataclass
class RecentRequests:
    """Identities of Slack requests seen in the last `ttl` seconds, at most `size` of them.

    Catches a repeat arriving at the same process before it reaches a listener (Slack's
    immediate Events API retry, a replayed body); durable exactly-once for changes is the
    database's job (`store.claim_request`)."""

    ttl: float = 600.0
    size: int = 20_000
    clock: Callable[[], float] = time.monotonic
    _seen: OrderedDict[str, float] = field(default_factory=OrderedDict)

    def seen(self, key: str) -> bool:
        """True if `key` was seen recently; records it otherwise."""
        now = self.clock()
        while self._seen and (len(self._seen) >= self.size or next(iter(self._seen.values())) < now):
            self._seen.popitem(last=False)
        if key in self._seen:
            return True
        self._seen[key] = now + self.ttl
        return False


def request_key(body: dict[str, Any]) -> str | None:
    """The identity of one Slack request, the same across its retried deliveries:
    `event_id` for events, `trigger_id` (unique per invocation) for commands, and the clicked
    action's `action_ts` with the user for interactions."""
    kind = body.get("type")
    if kind == "event_callback" and body.get("event_id"):
        return f"event:{body['event_id']}"
    if kind == "block_actions":
        actions = body.get("actions") or [{}]
        action = actions[0] if isinstance(actions[0], dict) else {}
        user = (body.get("user") or {}).get("id", "")
        stamp = action.get("action_ts") or body.get("trigger_id")
        return f"action:{user}:{action.get('action_id', '')}:{stamp}" if stamp else None
    if body.get("command") and body.get("trigger_id"):
        return f"command:{body['trigger_id']}"
    if kind in ("view_submission", "view_closed", "shortcut", "message_action") and body.get("trigger_id"):
        return f"{kind}:{body['trigger_id']}"
    return None


@dataclass
class SlackApp:
    bolt: AsyncApp
    handler: AsyncSlackRequestHandler
    identity: BotIdentity
    flows: SlackFlows
    recent: RecentRequests
    verifier: SignatureVerifier

    async def aclose(self) -> None:
        await self.identity.aclose()


def _actor_of_command(command: dict[str, Any]) -> Actor:
    return Actor(str(command.get("user_id") or ""), command.get("user_name") or None)


def _actor_of_action(body: dict[str, Any]) -> Actor:
    user = body.get("user") or {}
    return Actor(str(user.get("id") or ""), user.get("username") or user.get("name") or None)


def _ack_message(message: Message) -> dict[str, Any]:
    return {"text": message["text"], "blocks": message.get("blocks")}


def build_slack_app(services: Services) -> SlackApp:
    """The Bolt app for these services. Other parts of the bot add their own listeners
    (`/rollback`, `/scale`, action approvals) to `SlackApp.bolt` the same way."""
    settings = services.settings
    client = AsyncWebClient(
        base_url=settings.slack_api_url,
        timeout=int(max(1, settings.slack_timeout)),
        session=getattr(services.chat.client, "session", None),
        retry_handlers=[],
    )
    identity = BotIdentity(services.chat.client)
    recent = RecentRequests()
    flows = SlackFlows(services)
    token = settings.token()

    async def authorize(
        enterprise_id: str | None, team_id: str | None, user_id: str | None
    ) -> AuthorizeResult:
        return AuthorizeResult(
            enterprise_id=enterprise_id,
            team_id=team_id,
            bot_token=token,
            bot_user_id=identity.peek(),
            bot_id=identity.bot_id,
            user_id=user_id,
        )

    signing_secret = settings.signing_secret()
    if not signing_secret:
        # An empty key would make every HMAC forgeable; with a random one nothing verifies.
        if not settings.socket_mode:
            logger.warning("SLACK_SIGNING_SECRET is not set: POST /slack/events refuses every request")
        signing_secret = secrets.token_hex(32)
    bolt = AsyncApp(
        name="incident-bot",
        logger=bolt_logger,
        signing_secret=signing_secret,
        client=client,
        authorize=authorize,
        request_verification_enabled=True,
        process_before_response=False,
        raise_error_for_unhandled_request=False,
    )

    async def skip_repeats(
        req: AsyncBoltRequest, resp: BoltResponse, next: Callable[[], Awaitable[BoltResponse]]
    ) -> BoltResponse | None:
        key = request_key(req.body)
        if key is not None and recent.seen(key):
            logger.info(
                "repeated Slack delivery acknowledged and ignored",
                extra={"request": key, "retry": ",".join(req.headers.get("x-slack-retry-num") or [])},
            )
            return BoltResponse(status=200, body="")
        return await next()

    bolt.middleware(skip_repeats)

    async def trust_the_socket(
        req: AsyncBoltRequest, context: AsyncBoltContext, next: Callable[[], Awaitable[BoltResponse]]
    ) -> BoltResponse:
        # Over Socket Mode the request came down the connection the app-level token opened
        # (Bolt checks no signature there): it is Slack's, so failures may be told to its user.
        if req.mode == "socket_mode":
            context[VERIFIED] = True
        return await next()

    bolt.middleware(trust_the_socket)

    @bolt.command(INCIDENT_COMMAND)
    async def incident_command(
        ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond, context: AsyncBoltContext
    ) -> None:
        # Parsing is pure and takes microseconds, so a typo is answered in the ack itself.
        try:
            parsed = commands.parse(str(command.get("text") or ""))
        except commands.UsageError as exc:
            await ack(**_ack_message(replies.usage_message(exc.message, exc.usage)))
            return
        if isinstance(parsed, commands.Help):
            await ack(**_ack_message(replies.help_message()))
            return
        await ack()
        who = Invocation(
            _actor_of_command(command), command.get("channel_id"), request_key(command) or "command:?"
        )
        await after_ack(flows.run_command(parsed, who, respond), command, context, respond)

    @bolt.action(INCIDENT_BUTTONS)
    async def incident_button(
        ack: AsyncAck,
        body: dict[str, Any],
        action: dict[str, Any],
        respond: AsyncRespond | None,
        context: AsyncBoltContext,
    ) -> None:
        await ack()
        who = Invocation(
            _actor_of_action(body), (body.get("channel") or {}).get("id"), request_key(body) or "action:?"
        )
        answer = respond if respond is not None and respond.response_url else None
        await after_ack(
            flows.click(str(action.get("action_id")), str(action.get("value")), who, answer),
            body,
            context,
            answer,
        )

    @bolt.action(ActionId.OPEN_INCIDENT.value)
    async def open_incident(
        ack: AsyncAck,
        body: dict[str, Any],
        action: dict[str, Any],
        client: AsyncWebClient,
        context: AsyncBoltContext,
    ) -> None:
        await ack()
        await after_ack(
            flows.open_incident(str(body.get("trigger_id")), str(action.get("value"))),
            body,
            context,
            None,
        )

    @bolt.action(LINK_BUTTONS)
    async def link_button(ack: AsyncAck) -> None:
        await ack()

    @bolt.event("app_home_opened")
    async def home_opened(
        event: dict[str, Any], body: dict[str, Any], client: AsyncWebClient, context: AsyncBoltContext
    ) -> None:
        if event.get("tab", "home") == "home" and event.get("user"):
            await after_ack(flows.publish_home(str(event["user"])), body, context, None)

    @bolt.error
    async def on_error(
        error: Exception, body: dict[str, Any], context: AsyncBoltContext, respond: AsyncRespond | None
    ) -> None:
        await tell_user(error, body, context, respond)

    return SlackApp(
        bolt=bolt,
        handler=AsyncSlackRequestHandler(bolt),
        identity=identity,
        flows=flows,
        recent=recent,
        verifier=SignatureVerifier(signing_secret),
    )


async def after_ack(
    work: Awaitable[None], body: dict[str, Any], context: AsyncBoltContext, respond: AsyncRespond | None
) -> None:
    """Run a listener's flow after its ack, telling the person about any failure.

    Failures are handled here rather than left to Bolt's error handler: when a listener
    raises after `ack()`, Bolt (1.x, process_before_response=False) resets the acknowledgement
    it has not yet sent, and Slack then gets a 404 after 3 s instead of the 200."""
    try:
        await work
    except Exception as error:
        await tell_user(error, body, context, respond)


async def tell_user(
    error: Exception, body: dict[str, Any], context: AsyncBoltContext, respond: AsyncRespond | None
) -> None:
    """The one place a failure reaches a person: our errors by their message, anything else as
    a short apology (details in the log, never a stack trace in Slack). Nobody is answered for a
    request whose signature was not verified: its response_url and user are the caller's."""
    if context.get(VERIFIED) is not True:
        logger.error(
            "failure on an unverified Slack request; nobody is told", extra={"error": type(error).__name__}
        )
        return
    if isinstance(error, commands.UsageError):
        message = replies.usage_message(error.message, error.usage)
    elif isinstance(error, BotError):
        message = replies.error_message(error.message)
    else:
        logger.error(
            "Slack request failed",
            exc_info=(type(error), error, error.__traceback__),
            extra={"request": request_key(body), "slack_user": context.user_id},
        )
        message = replies.error_message(
            "Something went wrong on the bot's side; it is logged. Try again, or use the incident's message."
        )
    try:
        if respond is not None and respond.response_url:
            await respond(
                text=message["text"],
                blocks=message.get("blocks"),
                response_type="ephemeral",
                replace_original=False,
            )
        elif context.user_id and context.client is not None:
            await context.client.chat_postMessage(
                channel=context.user_id, text=message["text"], blocks=message.get("blocks")
            )
    except Exception as exc:
        logger.warning("could not tell the user about an error", extra={"error": repr(exc)})
