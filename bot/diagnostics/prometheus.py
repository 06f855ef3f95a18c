"""Prometheus behind one small interface: `Metrics.query` and `Metrics.query_range`.

`PrometheusMetrics` wraps prometheus-api-client's `PrometheusConnect`, which is blocking: its
methods are synchronous and the caller runs them in a worker thread
(`anyio.to_thread.run_sync`). The adapter owns timeouts, retries and error translation:

* **One retry mechanism: tenacity, here.** prometheus-api-client 0.7.2 mounts a urllib3
  `Retry(total=3, backoff_factor=1, status_forcelist=[408, 429, 500, 502, 503, 504])` on its
  session unless given one; that would retry behind our back, also on statuses we classify
  ourselves, and multiply our timeout by four. We pass `Retry(total=0)`, so urllib3 makes
  exactly one attempt (a connection error surfaces as `requests.ConnectionError` wrapping
  `MaxRetryError(reason=...)`, a status code comes back untouched), and tenacity retries only
  what `_classify` calls retryable, with exponential backoff and jitter. (`Retry(total=False)`
  was tried and rejected: it lets raw urllib3 exceptions escape requests unwrapped.)
* **Every HTTP answer is classified in a requests response hook**, before the library turns
  it into a bare `PrometheusApiClientException("HTTP Status Code 400 (b'...')")`: the hook
  sees the status, the headers (`Retry-After`) and Prometheus's JSON error body.
  400 `bad_data` (parse errors) and 422 `execution` errors are the query's fault and never
  worth retrying: `PermanentUpstreamError` carrying Prometheus's own text
  (`invalid parameter "query": 1:5: parse error: unclosed left parenthesis`). 5xx (including
  Prometheus's 503 `timeout` "query timed out in query queue"), 429, connection errors and
  timeouts are `RetryableUpstreamError` naming the URL (without credentials) and the cause.
  Other 4xx (401, 403, 404: wrong URL or credentials) are permanent until someone fixes the
  configuration.
* **Timeouts on both sides.** Each call sends Prometheus's own `timeout` parameter, so a heavy
  query is cancelled on the server instead of running on after we gave up, and waits a little
  longer than that on the socket so the server's explicit "query timed out" answer wins the
  race; the connect timeout is separate and short.
* **Result types.** `query` returns a vector as one `Series` per label set with one sample; a
  `scalar` result becomes one `Series` without labels. prometheus-api-client returns only
  `data.result`, not `resultType`, so a `string` result is recognised by its shape (a
  `[time, value]` pair) whose value is not a number, and rejected: diagnostics need numbers.
  Samples keep Prometheus's special values as floats (`NaN`, `+Inf`, `-Inf`); native histogram
  samples are skipped (no single number to show).

The session is shared by the threads that call the adapter; the hook keeps no state, and
requests' connection pool is thread-safe for this use.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

from bot.errors import ConfigError, PermanentUpstreamError, RetryableUpstreamError, UpstreamError
from bot.retry import is_retryable_status, retry_after_seconds

# The HTTP client (requests, urllib3, prometheus-api-client) is imported by the functions of
# `PrometheusMetrics`, not with this module: a bot without Prometheus (NoPrometheus) imports
# this module for its types and would keep about 4 MB of resident memory for nothing
# (BENCHMARKS.md, memory).
if TYPE_CHECKING:
    import requests
    from tenacity import RetryCallState

__all__ = [
    "PROMETHEUS_MISSING",
    "Metrics",
    "NoPrometheus",
    "PrometheusMetrics",
    "Series",
    "auto_step",
    "safe_url",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Prometheus refuses range queries with more than 11,000 points per series.
MAX_POINTS = 11_000
#: Extra seconds the socket waits beyond the server-side timeout (see the module docstring).
_SOCKET_GRACE = 2.0
_BODY_SNIPPET = 300
_NICE_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


@dataclass
class Series:
    """One time series of a query result: its labels and its samples, oldest first.

    An instant query gives one sample per series; a range query one per step where the series
    had a value. Values are floats, NaN and +/-Inf included (Prometheus's own results).
    """

    labels: dict[str, str]
    values: list[tuple[datetime, float]] = field(default_factory=list)

    @property
    def name(self) -> str | None:
        return self.labels.get("__name__")

    @property
    def last(self) -> float | None:
        """The newest sample's value, None for a series without samples."""
        return self.values[-1][1] if self.values else None

    def key(self) -> tuple[tuple[str, str], ...]:
        """A hashable identity for matching the same series across queries."""
        return tuple(sorted(self.labels.items()))


PROMETHEUS_MISSING = "PROMETHEUS_URL is not set"


class Metrics(Protocol):
    """What diagnostics need from a metrics backend; blocking, run in a worker thread. The
    Prometheus adapter, or `NoPrometheus` when PROMETHEUS_URL is not set (`available`)."""

    available: bool

    def query(self, expr: str, at: datetime | None = None) -> list[Series]: ...

    def query_range(self, expr: str, start: datetime, end: datetime, step: timedelta) -> list[Series]: ...

    def alert_hold(self, expr: str) -> timedelta | None: ...

    def close(self) -> None: ...


class NoPrometheus:
    """The metrics backend of a bot without Prometheus: every query says so (UpstreamError,
    like an unreachable Prometheus: diagnostics and recovery checks report it, not crash)."""

    available = False

    def query(self, expr: str, at: datetime | None = None) -> list[Series]:
        raise PermanentUpstreamError(PROMETHEUS_MISSING)

    def query_range(self, expr: str, start: datetime, end: datetime, step: timedelta) -> list[Series]:
        raise PermanentUpstreamError(PROMETHEUS_MISSING)

    def alert_hold(self, expr: str) -> timedelta | None:
        raise PermanentUpstreamError(PROMETHEUS_MISSING)

    def close(self) -> None:
        return None


def safe_url(url: str) -> str:
    """`url` without user:password, for messages and logs."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def auto_step(start: datetime, end: datetime, points: int = 240) -> timedelta:
    """A round step (15s, 1m, 5m, ...) giving about `points` samples between `start` and `end`,
    never so small that Prometheus would refuse the range (11,000 points per series)."""
    span = max((end - start).total_seconds(), 1.0)
    wanted = span / max(points, 1)
    floor = span / (MAX_POINTS - 1)
    for step in _NICE_STEPS:
        if step >= wanted and step >= floor:
            return timedelta(seconds=step)
    return timedelta(seconds=max(wanted, floor))


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def _sample(pair: Any) -> tuple[datetime, float]:
    ts, raw = pair
    # float() reads Prometheus's "NaN", "+Inf" and "-Inf" as they are.
    return datetime.fromtimestamp(float(ts), UTC), float(raw)


def _series_list(result: Any, expr: str) -> list[Series]:
    """`data.result` of an instant or range query as `Series`, for every result type."""
    if not isinstance(result, list):
        raise PermanentUpstreamError(
            f"Prometheus returned an unexpected result for {expr!r}: {result!r:.200}"
        )
    if len(result) == 2 and not isinstance(result[0], dict):
        # scalar or string: [<unix time>, "<value>"]
        try:
            return [Series(labels={}, values=[_sample(result)])]
        except ValueError:
            raise PermanentUpstreamError(
                f"query {expr!r} returned the string {result[1]!r:.100}, not a number"
            ) from None
    series: list[Series] = []
    skipped = 0
    for item in result:
        labels = {str(k): str(v) for k, v in (item.get("metric") or {}).items()}
        if "value" in item:
            series.append(Series(labels=labels, values=[_sample(item["value"])]))
        elif "values" in item:
            series.append(Series(labels=labels, values=[_sample(p) for p in item["values"]]))
        else:  # "histogram"/"histograms": native histograms have no single value
            skipped += 1
    if skipped:
        logger.info("skipped native histogram series in a query result", extra={"skipped": skipped})
    return series


def _error_text(response: requests.Response) -> tuple[str | None, str]:
    """(errorType, error) from a Prometheus error body; else (None, a snippet of the body)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("error"):
        return body.get("errorType"), str(body["error"])
    text = " ".join(response.text.split())
    return None, text[:_BODY_SNIPPET] or "(empty body)"


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, the urllib3 error inside it (requests wraps MaxRetryError(reason=...)) and its
    chain, so the real cause can be named."""
    from urllib3.exceptions import MaxRetryError

    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo.extend(arg for arg in current.args if isinstance(arg, BaseException))
        if isinstance(current, MaxRetryError) and current.reason is not None:
            todo.append(current.reason)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                todo.append(linked)


_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")


def _describe(exc: requests.RequestException, connect_timeout: float, read_timeout: float) -> str:
    import requests
    from urllib3.exceptions import (
        ConnectTimeoutError,
        NameResolutionError,
        NewConnectionError,
        ReadTimeoutError,
    )

    causes = list(_causes(exc))
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS handshake failed (certificate not trusted? see disable_ssl)"
    if any(isinstance(c, ReadTimeoutError | requests.ReadTimeout) for c in causes):
        return f"no answer within {read_timeout:g}s"
    for cause in causes:
        if isinstance(cause, NameResolutionError):
            return "cannot resolve its host name"
        if isinstance(cause, NewConnectionError):
            match = _ERRNO.search(str(cause))
            return f"cannot connect ({match.group(1).strip().lower() if match else 'connection failed'})"
        if isinstance(cause, ConnectTimeoutError | requests.ConnectTimeout):
            return f"cannot connect within {connect_timeout:g}s"
    match = _ERRNO.search(str(exc))
    if match:
        return match.group(1).strip().lower()
    return type(exc).__name__


class PrometheusMetrics:
    """`Metrics` for a Prometheus-compatible HTTP API (Prometheus, Thanos Query, VictoriaMetrics).

    `url` is the base URL (what `PROMETHEUS_URL` holds), optionally with `user:password@`
    for basic auth; `headers` can carry e.g. `Authorization: Bearer ...`. `timeout` bounds one
    attempt of one query (server-side too); `attempts` and `backoff` shape tenacity's retries
    of retryable failures within one call. The worst case of one call is about
    `attempts * (timeout + 2s + connect_timeout) + backoff`; longer outages are the caller's
    to retry (the outbox job retries until Prometheus is back).
    """

    available = True

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        connect_timeout: float = 5.0,
        attempts: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 5.0,
        disable_ssl: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        import requests
        from prometheus_api_client import PrometheusConnect
        from urllib3.util.retry import Retry

        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"PROMETHEUS_URL must be an absolute http(s) URL, got {safe_url(url)!r}")
        auth = None
        if parts.username is not None or parts.password is not None:
            auth = (unquote(parts.username or ""), unquote(parts.password or ""))
        self._url = safe_url(url.strip()).rstrip("/")
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._read_timeout = timeout + _SOCKET_GRACE
        self._attempts = attempts
        self._backoff = backoff
        self._max_backoff = max_backoff
        session = requests.Session()
        # PrometheusConnect applies disable_ssl only to a session it builds itself.
        session.verify = not disable_ssl
        session.hooks["response"].append(self._check_response)
        self._session, self._auth = session, auth
        self._headers = dict(headers) if headers else None
        self._client = PrometheusConnect(
            url=self._url,
            headers=dict(headers) if headers else None,
            disable_ssl=disable_ssl,
            retry=Retry(total=0),
            auth=auth,
            session=session,
        )

    @property
    def url(self) -> str:
        """The base URL without credentials."""
        return self._url

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ queries

    def query(self, expr: str, at: datetime | None = None) -> list[Series]:
        """Instant query at `at` (default: Prometheus's now)."""
        params: dict[str, Any] = {"timeout": f"{self._timeout:g}"}
        if at is not None:
            params["time"] = f"{_utc(at).timestamp():.3f}"
        result = self._call(
            lambda: self._client.custom_query(
                expr,
                params=params,
                timeout=(self._connect_timeout, self._read_timeout),
            ),
            expr,
        )
        return _series_list(result, expr)

    def query_range(self, expr: str, start: datetime, end: datetime, step: timedelta) -> list[Series]:
        """Range query over [start, end] every `step` (the client rounds start/end to seconds)."""
        if end < start:
            raise ValueError("end must not be before start")
        seconds = step.total_seconds()
        if seconds <= 0:
            raise ValueError("step must be longer than zero")
        result = self._call(
            lambda: self._client.custom_query_range(
                expr,
                start_time=_utc(start),
                end_time=_utc(end),
                step=f"{seconds:g}",
                params={"timeout": f"{self._timeout:g}"},
                timeout=(self._connect_timeout, self._read_timeout),
            ),
            expr,
        )
        return _series_list(result, expr)

    def alert_hold(self, expr: str) -> timedelta | None:
        """The `for:` of the alerting rule whose expression is `expr`, from Prometheus's rules
        API (`GET /api/v1/rules?type=alert`; `duration` is in seconds), or None when no loaded
        rule has that expression. An alert's generatorURL carries the expression exactly as
        this API prints it, so they compare as text."""

        def fetch() -> Any:
            response = self._session.get(
                f"{self._url}/api/v1/rules",
                params={"type": "alert"},
                headers=self._headers,
                auth=self._auth,
                timeout=(self._connect_timeout, self._read_timeout),
            )
            return response.json()["data"]["groups"]

        groups = self._call(fetch, "alerting rules")
        wanted = " ".join(expr.split())
        for group in groups or []:
            for rule in group.get("rules") or []:
                if rule.get("type") == "alerting" and " ".join(str(rule.get("query", "")).split()) == wanted:
                    return timedelta(seconds=float(rule.get("duration") or 0))
        return None

    # ------------------------------------------------------------------ internals

    def _call(self, fn: Callable[[], T], expr: str) -> T:
        from tenacity import Retrying, retry_if_exception_type, stop_after_attempt

        retrying = Retrying(
            stop=stop_after_attempt(self._attempts),
            wait=self._wait,
            retry=retry_if_exception_type(RetryableUpstreamError),
            reraise=True,
            before_sleep=self._log_retry,
        )
        return retrying(self._attempt, fn, expr)

    def _attempt(self, fn: Callable[[], T], expr: str) -> T:
        import requests
        from prometheus_api_client.exceptions import PrometheusApiClientException

        try:
            return fn()
        except UpstreamError:
            raise
        except requests.exceptions.JSONDecodeError as exc:
            # A 200 that is not JSON slips past the hook only if the body is empty/odd.
            raise PermanentUpstreamError(
                f"Prometheus at {self._url} did not answer with JSON: {exc}"
            ) from None
        except requests.RequestException as exc:
            cause = _describe(exc, self._connect_timeout, self._read_timeout)
            raise RetryableUpstreamError(f"Prometheus at {self._url} is unreachable: {cause}") from None
        except PrometheusApiClientException as exc:
            # A non-200 status the hook let through (it handles >= 400): e.g. 204 or 3xx.
            raise PermanentUpstreamError(f"Prometheus at {self._url} answered {exc}") from None
        except (KeyError, TypeError) as exc:
            raise PermanentUpstreamError(
                f"Prometheus at {self._url} answered without data.result ({exc!r}) for {expr!r}: "
                "is PROMETHEUS_URL the base URL of a Prometheus API?"
            ) from None

    def _wait(self, state: RetryCallState) -> float:
        """Exponential backoff with jitter (computed here: tenacity's `wait_exponential_jitter`
        renamed its arguments between 8.x and 9.x), at least a server's Retry-After."""
        exponent = min(state.attempt_number - 1, 30)
        delay = min(self._max_backoff, self._backoff * 2**exponent) + random.uniform(0, self._backoff)
        exc = state.outcome.exception() if state.outcome is not None else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            delay = max(delay, min(float(retry_after), self._max_backoff))
        return delay

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        logger.warning(
            "prometheus query failed, retrying",
            extra={"attempt": state.attempt_number, "error": str(exc), "prometheus": self._url},
        )

    def _check_response(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        """requests response hook: raise our error for every answer that is not a result."""
        status = response.status_code
        if status < 400:
            if status == 200 and "/api/v1/query" in response.url:
                self._check_body(response)
            return
        error_type, text = _error_text(response)
        response.close()
        where = f"Prometheus at {self._url}"
        if status in (400, 422):
            raise PermanentUpstreamError(f"{where} rejected the query: {text}")
        if is_retryable_status(status):
            kind = f" ({error_type})" if error_type else ""
            raise RetryableUpstreamError(
                f"{where} answered {status}{kind}: {text}",
                retry_after=retry_after_seconds(response.headers.get("Retry-After")),
            )
        hint = {
            401: "check the credentials in PROMETHEUS_URL",
            403: "check the credentials in PROMETHEUS_URL",
            404: "is PROMETHEUS_URL the base URL of the Prometheus API (without /api/v1)?",
        }.get(status, "")
        raise PermanentUpstreamError(f"{where} answered {status}: {text}" + (f" ({hint})" if hint else ""))

    def _check_body(self, response: requests.Response) -> None:
        try:
            body = response.json()
        except ValueError:
            raise PermanentUpstreamError(
                f"Prometheus at {self._url} answered 200 with something that is not JSON: "
                f"{' '.join(response.text.split())[:_BODY_SNIPPET]!r} "
                "(is PROMETHEUS_URL the base URL of a Prometheus API?)"
            ) from None
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict) or "result" not in data:
            raise PermanentUpstreamError(
                f"Prometheus at {self._url} answered 200 without data.result "
                "(is PROMETHEUS_URL the base URL of a Prometheus API?)"
            )
