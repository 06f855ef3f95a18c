"""A KPI window: a Prometheus duration (`5m`, `24h`, `7d`) as typed and in seconds."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from bot.durations import format_duration, parse_duration
from bot.errors import PayloadError

__all__ = ["DEFAULT_WINDOW", "MAX_WINDOW", "MIN_WINDOW", "Window", "WindowError"]

DEFAULT_WINDOW = "7d"
#: Shorter than a few scrapes gives no rate at all; longer than a year is beyond any retention.
MIN_WINDOW = timedelta(seconds=10)
MAX_WINDOW = timedelta(days=400)


class WindowError(PayloadError):
    """A window that is not a Prometheus duration or is out of range; the message names it."""


@dataclass(frozen=True)
class Window:
    text: str
    seconds: int

    @classmethod
    def parse(cls, text: str | None) -> Window:
        raw = (text or DEFAULT_WINDOW).strip()
        try:
            length = parse_duration(raw)
        except ValueError:
            raise WindowError(
                f"window {raw!r} is not a Prometheus duration: write it like 5m, 24h, 7d or 30d"
            ) from None
        if not MIN_WINDOW <= length <= MAX_WINDOW:
            raise WindowError(
                f"window {raw!r} is out of range: between {format_duration(MIN_WINDOW)} "
                f"and {format_duration(MAX_WINDOW)}"
            )
        return cls(raw, int(length.total_seconds()))

    @property
    def promql(self) -> str:
        """The window in PromQL, in whole seconds so `1h30m` and `90m` mean one thing."""
        return f"{self.seconds}s"

    @property
    def step(self) -> int:
        """Resolution of subqueries over the window: about 500 points, never under 1s."""
        return max(1, self.seconds // 500)

    @property
    def timedelta(self) -> timedelta:
        return timedelta(seconds=self.seconds)
