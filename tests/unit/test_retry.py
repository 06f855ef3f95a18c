"""The retry rule every adapter shares (bot/retry.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.retry import is_retryable_status, retry_after_seconds

NOW = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "retryable"), [(429, True), (500, True), (503, True), (400, False), (404, False)]
)
def test_rate_limits_and_server_errors_are_retried_other_refusals_are_not(
    status: int, retryable: bool
) -> None:
    assert is_retryable_status(status) is retryable


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30", 30.0),
        (" 1.5 ", 1.5),
        (7, 7.0),
        ("-3", 0.0),
        ("Sun, 06 Dec 2026 12:00:45 GMT", 45.0),
        ("Sun, 06 Dec 2026 11:59:00 GMT", 0.0),
        ("soon", None),
        (None, None),
    ],
)
def test_retry_after_reads_seconds_and_http_dates(value: object, seconds: float | None) -> None:
    assert retry_after_seconds(value, now=NOW) == seconds
