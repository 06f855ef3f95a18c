"""Silences in Alertmanager, through its v2 API, with domain verbs: create, list, get, expire.

The adapter owns what talking to Alertmanager involves: timeouts, retries and the translation
of every failure into bot/errors.py, so flows and Slack handlers only see

* `PayloadError`: we refuse before sending (no reason given, bad duration, bad label name);
* `NotFound`: no such silence;
* `PermanentUpstreamError`: Alertmanager refused (400/422 and other 4xx), with its message;
* `RetryableUpstreamError`: Alertmanager unreachable, timing out or answering 5xx, raised only
  after this adapter's own retries are used up.

Wire behaviour of Alertmanager 0.25 (Debian), checked against the real binary, that shapes
this module:

* `DELETE /api/v2/silence/{id}` of an unknown id answers **500 "silence not found"** (newer
  releases answer 404); both mean NotFound. Expiring an expired silence answers 200 here;
  releases that answer an "already expired" error are treated as success too, so `expire` is
  idempotent (a second click is a no-op).
* A malformed id answers 422; we check the UUID shape first and raise PayloadError.
* `GET /api/v2/silences` ignores `active`/`expired` query parameters in 0.25, so states are
  filtered here. `filter` matchers select silences that have a matcher with the same name,
  operator and value.
* An empty `comment` is accepted by Alertmanager; we require a reason.
* Times come back with millisecond precision, and a `startsAt` in the past is replaced by the
  server's "now".

Retrying `create`: `POST /api/v2/silences` without an id always makes a new silence, and a
client cannot choose the id (an unknown id answers 404), so a blind retry after a lost
response (timeout, 502/504 from a proxy, connection reset) could leave two silences. Before
every re-post we therefore look for the silence the earlier attempt may have created: same
matchers, same `createdBy`, same `comment` and the same `endsAt`, which we fix once per call
and truncate to milliseconds so it survives the round trip and works as an idempotency token.
If one exists it is returned instead of posting again. The one gap left is an Alertmanager
that stores the first post *after* our lookup (a response lost while the server is still
working on it); that needs a stalled server and a duplicate then only means two identical
silences, which expire together.
"""

from __future__ import annotations

import builtins
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_random_exponential

from bot.actions.silence_durations import (
    MAX_SILENCE_DURATION,
    check_duration,
    format_duration,
    parse_duration,
)
from bot.errors import (
    ConfigError,
    NotFound,
    PayloadError,
    PermanentUpstreamError,
    RetryableUpstreamError,
)
from bot.retry import is_retryable_status, retry_after_seconds

__all__ = [
    "MAX_SILENCE_DURATION",
    "SILENCES_MISSING",
    "AlertmanagerSilences",
    "Matcher",
    "NoAlertmanager",
    "Silence",
    "Silences",
    "matchers_for_alert",
    "parse_duration",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")


_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_STATES = frozenset({"active", "pending", "expired"})
_BODY_EXCERPT = 300
# Failures that happen before a request is sent: retrying them cannot duplicate anything.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout)


# --------------------------------------------------------------------------- domain values


@dataclass(frozen=True)
class Matcher:
    """One silence matcher. `is_regex=False` compares the value literally, so label values
    full of regex metacharacters (`vllm-llama.*(3)`) still silence exactly that value."""

    name: str
    value: str
    is_regex: bool = False
    is_equal: bool = True

    def __post_init__(self) -> None:
        if not _LABEL_NAME.match(self.name):
            raise PayloadError(
                f"bad label name {self.name!r} in a silence matcher: "
                "use letters, digits and underscores, not starting with a digit"
            )

    @property
    def operator(self) -> str:
        return ("=" if self.is_equal else "!=") if not self.is_regex else ("=~" if self.is_equal else "!~")

    def to_api(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "isRegex": self.is_regex, "isEqual": self.is_equal}

    def to_filter(self) -> str:
        """Alertmanager's matcher syntax for `?filter=`, value quoted and escaped."""
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.name}{self.operator}"{escaped}"'

    def __str__(self) -> str:
        return self.to_filter()


@dataclass(frozen=True)
class Silence:
    id: str
    matchers: tuple[Matcher, ...]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str
    state: str  # active | pending | expired


SILENCES_MISSING = "Alertmanager is not configured: set ALERTMANAGER_URL to silence alerts"


class Silences(Protocol):
    """What flows need from a silences backend: the Alertmanager adapter, or `NoAlertmanager`
    when ALERTMANAGER_URL is not set (`available` tells them apart without a call)."""

    available: bool

    async def create(
        self, matchers: Sequence[Matcher], *, duration: timedelta, created_by: str, comment: str
    ) -> Silence: ...

    async def list(
        self, matchers: Sequence[Matcher] | None = None, *, active_only: bool = True
    ) -> builtins.list[Silence]: ...

    async def get(self, silence_id: str) -> Silence: ...

    async def expire(self, silence_id: str) -> None: ...

    async def aclose(self) -> None: ...


class NoAlertmanager:
    """The silences backend of a bot without Alertmanager: every call says so (ConfigError)."""

    available = False

    async def create(
        self, matchers: Sequence[Matcher], *, duration: timedelta, created_by: str, comment: str
    ) -> Silence:
        raise ConfigError(SILENCES_MISSING)

    async def list(
        self, matchers: Sequence[Matcher] | None = None, *, active_only: bool = True
    ) -> builtins.list[Silence]:
        raise ConfigError(SILENCES_MISSING)

    async def get(self, silence_id: str) -> Silence:
        raise ConfigError(SILENCES_MISSING)

    async def expire(self, silence_id: str) -> None:
        raise ConfigError(SILENCES_MISSING)

    async def aclose(self) -> None:
        return None


def matchers_for_alert(labels: Mapping[str, str]) -> list[Matcher]:
    """Equality matchers for an alert's full label set: the silence covers exactly that alert
    (and any later alert with the very same labels), never a sibling. Sorted by name so the
    same alert always gives the same matchers."""
    if not labels:
        raise PayloadError("cannot silence an alert without labels")
    return [Matcher(name=name, value=labels[name]) for name in sorted(labels)]


# --------------------------------------------------------------------------- wire parsing


def _parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _api_time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _truncate_to_ms(value: datetime) -> datetime:
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def _silence_from_api(doc: Any) -> Silence:
    try:
        state = doc["status"]["state"]
        if state not in _STATES:
            raise ValueError(f"unknown silence state {state!r}")
        return Silence(
            id=str(doc["id"]),
            matchers=tuple(
                Matcher(
                    name=m["name"],
                    value=m["value"],
                    is_regex=bool(m["isRegex"]),
                    is_equal=bool(m.get("isEqual", True)),
                )
                for m in doc["matchers"]
            ),
            starts_at=_parse_time(doc["startsAt"]),
            ends_at=_parse_time(doc["endsAt"]),
            created_by=str(doc["createdBy"]),
            comment=str(doc["comment"]),
            state=state,
        )
    except (KeyError, TypeError, ValueError, PayloadError) as exc:
        raise PermanentUpstreamError(f"unexpected silence from Alertmanager ({exc!r}): {doc!r:.300}") from exc


def _error_text(response: httpx.Response) -> str:
    """Alertmanager's own words: a JSON string (400/500), {"message": ...} (422), or text."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:_BODY_EXCERPT] or "<empty body>"
    if isinstance(body, str):
        return body.strip()[:_BODY_EXCERPT]
    if isinstance(body, dict) and "message" in body:
        return str(body["message"])[:_BODY_EXCERPT]
    return response.text.strip()[:_BODY_EXCERPT]


def _check_id(silence_id: str) -> str:
    try:
        return str(uuid.UUID(silence_id.strip()))
    except (ValueError, AttributeError):
        raise PayloadError(f"{silence_id!r} is not a silence id (Alertmanager ids are UUIDs)") from None


# --------------------------------------------------------------------------- adapter


class AlertmanagerSilences:
    """The Alertmanager v2 silences API behind domain verbs.

    `base_url` is ALERTMANAGER_URL (a path prefix such as `/alertmanager` is kept). Credentials
    are optional: `bearer_token` or `basic_auth`, not both. `attempts` and `backoff_max` bound
    the retries of retryable failures; `transport` lets tests put a different transport in.
    """

    available = True

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 10.0,
        bearer_token: str | None = None,
        basic_auth: tuple[str, str] | None = None,
        attempts: int = 3,
        backoff_max: float = 2.0,
        max_duration: timedelta = MAX_SILENCE_DURATION,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not base_url.strip():
            raise ConfigError("Alertmanager URL for silences is empty")
        if bearer_token and basic_auth:
            raise ConfigError("give Alertmanager either a bearer token or basic auth, not both")
        if attempts < 1:
            raise ConfigError(f"silences: attempts must be at least 1, got {attempts}")
        url = httpx.URL(base_url)
        # Shown in error messages: never with credentials in it.
        self._display_url = str(url.copy_with(username=None, password=None)).rstrip("/")
        headers = {"Authorization": f"Bearer {bearer_token}"} if bearer_token else {}
        self._client = httpx.AsyncClient(
            base_url=url,
            timeout=timeout,
            headers=headers,
            auth=httpx.BasicAuth(*basic_auth) if basic_auth else None,
            transport=transport,
        )
        self._timeout = timeout
        self._attempts = attempts
        self._backoff_max = backoff_max
        self._max_duration = max_duration

    async def __aenter__(self) -> AlertmanagerSilences:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    # ---------------------------------------------------------------- verbs

    async def create(
        self,
        matchers: Sequence[Matcher],
        *,
        duration: timedelta,
        created_by: str,
        comment: str,
    ) -> Silence:
        """Silence what `matchers` match for `duration`, starting now. `comment` is the reason
        and is required. Retried safely (see the module docstring)."""
        wanted = tuple(matchers)
        if not wanted:
            raise PayloadError("a silence needs at least one matcher")
        if not comment or not comment.strip():
            raise PayloadError("a silence needs a reason: the comment is empty")
        if not created_by or not created_by.strip():
            raise PayloadError("a silence needs an author: created_by is empty")
        check_duration(duration, text=format_duration(duration), maximum=self._max_duration)

        starts_at = _truncate_to_ms(datetime.now(UTC))
        ends_at = starts_at + duration
        body = {
            "matchers": [m.to_api() for m in wanted],
            "startsAt": _api_time(starts_at),
            "endsAt": _api_time(ends_at),
            "createdBy": created_by,
            "comment": comment,
        }
        maybe_landed = False

        async def attempt() -> Silence:
            nonlocal maybe_landed
            if maybe_landed:
                earlier = await self._find_created(wanted, created_by, comment, ends_at)
                if earlier is not None:
                    logger.info("silence from an earlier attempt found, not posting again")
                    return earlier
            try:
                response = await self._send("POST", "api/v2/silences", "creating a silence", json=body)
            except RetryableUpstreamError as exc:
                # Only a failure to connect proves the post never reached Alertmanager.
                maybe_landed = maybe_landed or not isinstance(exc.__cause__, _NOT_SENT)
                raise
            try:
                silence_id = str(response.json()["silenceID"])
            except (ValueError, KeyError, TypeError) as exc:
                raise PermanentUpstreamError(
                    "unexpected answer from Alertmanager to creating a silence: "
                    f"{response.text[:_BODY_EXCERPT]!r}"
                ) from exc
            return Silence(
                id=silence_id,
                matchers=wanted,
                starts_at=starts_at,
                ends_at=ends_at,
                created_by=created_by,
                comment=comment,
                state="active",
            )

        silence = await self._with_retries(attempt)
        logger.info("silence created", extra={"silence_id": silence.id})
        return silence

    async def list(
        self, matchers: Sequence[Matcher] | None = None, *, active_only: bool = True
    ) -> builtins.list[Silence]:
        """Silences having all of `matchers` (same name, operator and value); with
        `active_only`, only those in force now (not pending, not expired)."""

        async def attempt() -> builtins.list[Silence]:
            return await self._fetch_silences(matchers or (), "listing silences")

        silences = await self._with_retries(attempt)
        if active_only:
            silences = [s for s in silences if s.state == "active"]
        return silences

    async def get(self, silence_id: str) -> Silence:
        silence_id = _check_id(silence_id)

        async def attempt() -> Silence:
            response = await self._send(
                "GET", f"api/v2/silence/{silence_id}", f"reading silence {silence_id}", silence_id=silence_id
            )
            try:
                doc = response.json()
            except ValueError as exc:
                raise PermanentUpstreamError(
                    f"unexpected answer from Alertmanager to reading silence {silence_id}: "
                    f"{response.text[:_BODY_EXCERPT]!r}"
                ) from exc
            return _silence_from_api(doc)

        return await self._with_retries(attempt)

    async def expire(self, silence_id: str) -> None:
        """End a silence now. Expiring an already expired silence is a no-op."""
        silence_id = _check_id(silence_id)

        async def attempt() -> None:
            await self._send(
                "DELETE",
                f"api/v2/silence/{silence_id}",
                f"expiring silence {silence_id}",
                silence_id=silence_id,
                already_expired_ok=True,
            )

        await self._with_retries(attempt)
        logger.info("silence expired", extra={"silence_id": silence_id})

    # ---------------------------------------------------------------- plumbing

    async def _find_created(
        self, matchers: tuple[Matcher, ...], created_by: str, comment: str, ends_at: datetime
    ) -> Silence | None:
        wanted = set(matchers)
        what = "creating a silence (looking for one from an earlier attempt)"
        for silence in await self._fetch_silences(matchers, what):
            if (
                silence.state != "expired"
                and set(silence.matchers) == wanted
                and silence.created_by == created_by
                and silence.comment == comment
                and silence.ends_at == ends_at
            ):
                return silence
        return None

    async def _fetch_silences(self, matchers: Iterable[Matcher], what: str) -> builtins.list[Silence]:
        params = [("filter", m.to_filter()) for m in matchers]
        response = await self._send("GET", "api/v2/silences", what, params=params)
        try:
            docs = response.json()
        except ValueError:
            docs = None
        if not isinstance(docs, list):
            raise PermanentUpstreamError(
                f"unexpected answer from Alertmanager while {what}: {response.text[:_BODY_EXCERPT]!r}"
            )
        return [_silence_from_api(doc) for doc in docs]

    async def _with_retries(self, attempt: Callable[[], Awaitable[T]]) -> T:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._attempts),
            wait=wait_random_exponential(multiplier=0.2, max=self._backoff_max),
            retry=retry_if_exception_type(RetryableUpstreamError),
            before_sleep=_log_retry,
            reraise=True,
        )
        try:
            return await retrying(attempt)
        except RetryableUpstreamError as exc:
            if self._attempts == 1:
                raise
            raise RetryableUpstreamError(
                f"{exc.message} (gave up after {self._attempts} attempts)", retry_after=exc.retry_after
            ) from exc

    async def _send(
        self,
        method: str,
        path: str,
        what: str,
        *,
        silence_id: str | None = None,
        already_expired_ok: bool = False,
        **kwargs: Any,
    ) -> httpx.Response:
        """One HTTP exchange, every outcome other than 2xx translated into bot/errors.py."""
        try:
            response = await self._client.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise RetryableUpstreamError(
                f"Alertmanager at {self._display_url} timed out after {self._timeout:g}s while {what}"
            ) from exc
        except httpx.TransportError as exc:
            raise RetryableUpstreamError(
                f"cannot reach Alertmanager at {self._display_url} while {what}: {type(exc).__name__}: {exc}"
            ) from exc

        status = response.status_code
        if response.is_success:
            return response
        text = _error_text(response)
        if silence_id and (status == 404 or (status == 500 and "silence not found" in text)):
            raise NotFound(f"no silence {silence_id} in Alertmanager at {self._display_url}")
        if already_expired_ok and "already expired" in text:
            logger.info("silence was already expired")
            return response
        if is_retryable_status(status):
            raise RetryableUpstreamError(
                f"Alertmanager at {self._display_url} answered {status} while {what}: {text}",
                retry_after=retry_after_seconds(response.headers.get("Retry-After")),
            )
        if status in (401, 403):
            raise PermanentUpstreamError(
                f"Alertmanager at {self._display_url} refused our credentials ({status}) while {what}"
            )
        raise PermanentUpstreamError(f"Alertmanager at {self._display_url} refused {what} ({status}): {text}")


def _log_retry(state: RetryCallState) -> None:
    logger.warning(
        "alertmanager call failed, retrying",
        extra={
            "attempt": state.attempt_number,
            "error": repr(state.outcome.exception()) if state.outcome else None,
        },
    )
