"""The one rule every adapter (Slack, Alertmanager, Kubernetes, Prometheus) applies to an HTTP
failure: which statuses are worth retrying, and how long the server asked us to wait.

Each adapter turns a retryable failure into `RetryableUpstreamError(retry_after=...)`; the
outbox (or the adapter's own short retries) waits at least that long.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

__all__ = ["is_retryable_status", "retry_after_seconds"]


def is_retryable_status(status: int) -> bool:
    """429 (rate limited) and every 5xx: the same request may succeed later. Any other 4xx
    will fail the same way again."""
    return status == 429 or status >= 500


def retry_after_seconds(value: object, *, now: datetime | None = None) -> float | None:
    """A `Retry-After` value in seconds (never negative): delta-seconds, or an HTTP-date
    (RFC 9110 10.2.3); None when absent or unreadable."""
    if value is None:
        return None
    text = str(value).strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
