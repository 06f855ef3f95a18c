"""The Slack Web API behind domain verbs: post, update, reply, find what we posted.

This adapter owns everything about talking to Slack: the client (slack-sdk's AsyncWebClient
pointed at `SLACK_API_URL`), Slack's posting rate (about one message per second per channel),
and the translation of every failure into our error tree:

- HTTP 429: RetryableUpstreamError carrying Retry-After; the channel is paused that long for
  every worker, not just the one that was told.
- HTTP 5xx, timeouts, connection errors, and `ok: false` errors Slack documents as transient
  (`ratelimited`, `internal_error`, `fatal_error`, `service_unavailable`, `request_timeout`):
  RetryableUpstreamError.
- Any other `ok: false` (`channel_not_found`, `invalid_blocks`, `not_in_channel`, ...):
  PermanentUpstreamError, never retried.

slack-sdk's own retry handlers are switched off: a retry of chat.postMessage after a timeout
can post twice, so the caller (the outbox) decides, and looks for the earlier post first
(`find_posted`) using the metadata every message carries.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from bot.errors import PermanentUpstreamError, RetryableUpstreamError, UpstreamError
from bot.retry import is_retryable_status, retry_after_seconds
from bot.slack.priority_lock import PriorityLock

__all__ = ["METADATA_EVENT", "ChannelPacer", "PostedMessage", "SlackChat"]

logger = logging.getLogger(__name__)

METADATA_EVENT = "incident_bot_message"
TRANSIENT_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)


@dataclass(frozen=True)
class PostedMessage:
    channel: str
    ts: str


@dataclass
class ChannelPacer:
    """At most one post per `interval` seconds per channel, shared by all workers of this
    process; a 429 pauses the channel for its Retry-After.

    The interval is counted from when the previous post *finished*, and posts to one channel
    go one at a time: two posts started a second apart can still arrive closer together when
    the first one was slow on the wire, and Slack counts arrivals."""

    interval: float = 1.0
    clock: Callable[[], float] = time.monotonic
    _next: dict[str, float] = field(default_factory=dict)
    _locks: dict[str, PriorityLock] = field(default_factory=dict)

    @asynccontextmanager
    async def slot(self, channel: str, priority: int = 5) -> AsyncIterator[None]:
        """Lower `priority` goes first among posts waiting for the channel (a storm digest,
        critical incidents)."""
        lock = self._locks.setdefault(channel, PriorityLock())
        async with lock.hold(priority) as holding:
            # A more urgent post arriving meanwhile goes first (the storm's digest, queued
            # after a warning's root message had taken the channel to wait for its turn).
            while (delay := self._next.get(channel, 0.0) - self.clock()) > 0:
                if await holding.wait(delay):
                    break
            try:
                yield
            finally:
                self._next[channel] = max(self._next.get(channel, 0.0), self.clock() + self.interval)

    def queued(self, channel: str) -> int:
        """Posts to the channel under way or waiting in this process."""
        lock = self._locks.get(channel)
        return lock.queued if lock is not None else 0

    def busy(self) -> list[str]:
        """Channels with a post under way or queued (none without a pace). A post waiting for
        the channel's turn holds an outbox worker for up to the interval, so a worker claims a
        channel's next post only when none is under way; the others stay free for the channels
        that have room and for the storm digest."""
        if self.interval <= 0:
            return []
        return [channel for channel, lock in list(self._locks.items()) if lock.queued]

    def pause(self, channel: str, seconds: float) -> None:
        self._next[channel] = max(self._next.get(channel, 0.0), self.clock() + seconds)


class SlackChat:
    def __init__(
        self,
        client: AsyncWebClient,
        *,
        pacer: ChannelPacer | None = None,
        on_call: Callable[[str, str | None], None] | None = None,
        timeout: float = 0.0,
    ) -> None:
        self.client = client
        # A call that timed out may still be carried out by Slack after we gave up; its retry
        # waits this long, so the marker lookup of a retried post sees what Slack did finish.
        self._settle = 2.0 * timeout
        self.client.retry_handlers = []  # see module docstring
        self.pacer = pacer or ChannelPacer()
        self._on_call = on_call

    @classmethod
    def create(
        cls,
        *,
        token: str,
        base_url: str,
        timeout: float,
        post_interval: float = 1.0,
        on_call: Callable[[str, str | None], None] | None = None,
    ) -> SlackChat:
        # One pooled session for the process; created here because it needs the running loop.
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout))
        client = AsyncWebClient(
            token=token, base_url=base_url, timeout=int(max(1, timeout)), session=session, retry_handlers=[]
        )
        return cls(client, pacer=ChannelPacer(interval=post_interval), on_call=on_call, timeout=timeout)

    async def post(
        self,
        channel: str,
        message: dict[str, Any],
        *,
        thread_ts: str | None = None,
        marker: dict[str, Any] | None = None,
        priority: int = 5,
    ) -> PostedMessage:
        kwargs: dict[str, Any] = {"channel": channel, "text": message.get("text", ""), "unfurl_links": False}
        if message.get("blocks"):
            kwargs["blocks"] = message["blocks"]
        if thread_ts:
            kwargs["thread_ts"] = thread_ts
        if marker:
            kwargs["metadata"] = {"event_type": METADATA_EVENT, "event_payload": marker}
        async with self.pacer.slot(channel, priority):
            response = await self.call("chat.postMessage", channel, self.client.chat_postMessage, **kwargs)
        return PostedMessage(channel=str(response["channel"]), ts=str(response["ts"]))

    async def update(self, channel: str, ts: str, message: dict[str, Any]) -> None:
        async for attempt in self._quick_retries():
            with attempt:
                await self.call(
                    "chat.update",
                    channel,
                    self.client.chat_update,
                    channel=channel,
                    ts=ts,
                    text=message.get("text", ""),
                    blocks=message.get("blocks") or [],
                )

    async def post_once(
        self,
        channel: str,
        message: dict[str, Any],
        *,
        marker: dict[str, Any],
        retried: bool,
        thread_ts: str | None = None,
    ) -> None:
        """Post `message` unless a retried job's earlier attempt already did: that attempt's
        answer may have been lost after Slack had posted it, so a retry looks for its marker
        first and never posts twice."""
        if retried and await self.find_posted(channel, marker, thread_ts=thread_ts):
            return
        await self.post(channel, message, thread_ts=thread_ts, marker=marker)

    async def find_posted(
        self,
        channel: str,
        marker: dict[str, Any],
        *,
        thread_ts: str | None = None,
        oldest: float | None = None,
    ) -> str | None:
        """The ts of a message we posted with this marker, if an earlier attempt got through
        before its answer was lost."""
        kwargs: dict[str, Any] = {"channel": channel, "include_all_metadata": True, "limit": 200}
        if oldest is not None:
            kwargs["oldest"] = f"{oldest:.6f}"
        method, call = (
            ("conversations.replies", self.client.conversations_replies)
            if thread_ts
            else ("conversations.history", self.client.conversations_history)
        )
        if thread_ts:
            kwargs["ts"] = thread_ts
        cursor: str | None = None
        for _page in range(20):
            if cursor:
                kwargs["cursor"] = cursor
            response = await self.call(method, channel, call, **kwargs)
            for item in response.get("messages") or []:
                meta = item.get("metadata") or {}
                if meta.get("event_type") == METADATA_EVENT and _contains(
                    meta.get("event_payload") or {}, marker
                ):
                    return str(item["ts"])
            cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                break
        return None

    async def upload(
        self,
        channel: str,
        thread_ts: str | None,
        *,
        content: bytes | str,
        filename: str,
        title: str,
        initial_comment: str | None = None,
        snippet_type: str | None = None,
        alt_txt: str | None = None,
    ) -> None:
        """Share a file into a channel or thread (files_upload_v2: get an upload URL, send the
        bytes, complete). Not idempotent: callers name files uniquely and check `has_file`
        before retrying."""
        kwargs: dict[str, Any] = {
            "channel": channel,
            "content": content,
            "filename": filename,
            "title": title,
        }
        for key, value in (
            ("thread_ts", thread_ts),
            ("initial_comment", initial_comment),
            ("snippet_type", snippet_type),
            ("alt_txt", alt_txt),
        ):
            if value:
                kwargs[key] = value
        async with self.pacer.slot(channel):
            await self.call("files.upload_v2", channel, self.client.files_upload_v2, **kwargs)

    async def has_file(self, channel: str, thread_ts: str, filename: str) -> bool:
        """Whether a file of this name was already shared in the thread (an earlier attempt
        that succeeded although its answer was lost)."""
        response = await self.call(
            "conversations.replies",
            channel,
            self.client.conversations_replies,
            channel=channel,
            ts=thread_ts,
            limit=1000,
        )
        return any(
            f.get("name") == filename for m in response.get("messages") or [] for f in m.get("files") or []
        )

    async def permalink(self, channel: str, ts: str) -> str | None:
        try:
            response = await self.call(
                "chat.getPermalink", channel, self.client.chat_getPermalink, channel=channel, message_ts=ts
            )
        except UpstreamError:
            return None
        return str(response.get("permalink") or "") or None

    async def open_view(self, trigger_id: str, view: dict[str, Any]) -> None:
        """views.open. Not retried: the trigger_id is good for 3 seconds, so a refusal (a 429,
        an outage) reaches the person as our error, naming what Slack said."""
        await self.call("views.open", None, self.client.views_open, trigger_id=trigger_id, view=view)

    async def publish_view(self, user_id: str, view: dict[str, Any]) -> None:
        """views.publish (the App Home tab), with the quick retries of an idempotent call."""
        async for attempt in self._quick_retries():
            with attempt:
                await self.call("views.publish", None, self.client.views_publish, user_id=user_id, view=view)

    async def user_name(self, user_id: str) -> str | None:
        """A person's handle (users.info), or None when Slack does not say."""
        response = await self.call("users.info", None, self.client.users_info, user=user_id)
        user = response.get("user") or {}
        return str(user.get("name") or "") or None

    def _quick_retries(self) -> AsyncRetrying:
        """For idempotent calls only: a few fast retries before the outbox's slower backoff."""
        return AsyncRetrying(
            retry=retry_if_exception_type(RetryableUpstreamError),
            stop=stop_after_attempt(3),
            wait=wait_random_exponential(multiplier=0.2, max=2.0),
            reraise=True,
        )

    async def call(
        self, method: str, paced_channel: str | None, func: Callable[..., Any], /, **kwargs: Any
    ) -> Any:
        """Call one slack-sdk client method, recording it and translating every failure into
        our error tree; `paced_channel` is the channel a 429 should pause."""
        try:
            response = await func(**kwargs)
        except SlackApiError as exc:
            error = _error_name(exc)
            self._record(method, error)
            status = getattr(exc.response, "status_code", None)
            if status == 429:
                retry_after = _retry_after(exc)
                if paced_channel:
                    self.pacer.pause(paced_channel, retry_after)
                raise RetryableUpstreamError(
                    f"Slack rate-limited {method}; retry after {retry_after:.0f}s", retry_after=retry_after
                ) from None
            if (status is not None and is_retryable_status(status)) or error in TRANSIENT_ERRORS:
                raise RetryableUpstreamError(f"Slack {method} failed: {error or f'HTTP {status}'}") from None
            raise PermanentUpstreamError(f"Slack refused {method}: {error or f'HTTP {status}'}") from None
        except (TimeoutError, aiohttp.ClientError, SlackClientError) as exc:
            self._record(method, type(exc).__name__)
            settle = self._settle if isinstance(exc, TimeoutError) and self._settle else None
            raise RetryableUpstreamError(
                f"Slack {method} did not answer: {_describe(exc)}", retry_after=settle
            ) from None
        self._record(method, None)
        return response

    def _record(self, method: str, error: str | None) -> None:
        if self._on_call is not None:
            self._on_call(method, error)

    async def aclose(self) -> None:
        session = getattr(self.client, "session", None)
        if session is not None and not session.closed:
            await session.close()


def _contains(payload: dict[str, Any], marker: dict[str, Any]) -> bool:
    return all(str(payload.get(k)) == str(v) for k, v in marker.items())


def _error_name(exc: SlackApiError) -> str | None:
    data = getattr(exc.response, "data", None)
    if isinstance(data, dict):
        return str(data.get("error") or "") or None
    return None


def _retry_after(exc: SlackApiError) -> float:
    headers = getattr(exc.response, "headers", None) or {}
    seconds = retry_after_seconds(headers.get("Retry-After") or headers.get("retry-after"))
    return max(1.0, seconds) if seconds is not None else 30.0


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
