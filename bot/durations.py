"""Prometheus-style durations (`30s`, `5m`, `1h30m`, `2d`, `1w`).

Runbooks use the same duration syntax as Prometheus and Alertmanager so a responder never
has to translate: `range: 1h` for a graph, `duration: 2h` for a silence.
"""

from __future__ import annotations

import re
from datetime import timedelta

__all__ = ["DURATION_PATTERN", "format_duration", "parse_duration"]

DURATION_PATTERN = (
    r"^(?:0|(?:[0-9]+y)?(?:[0-9]+w)?(?:[0-9]+d)?(?:[0-9]+h)?(?:[0-9]+m)?(?:[0-9]+s)?(?:[0-9]+ms)?)$"
)
_DURATION = re.compile(DURATION_PATTERN)
_PART = re.compile(r"([0-9]+)(ms|y|w|d|h|m|s)")
_SECONDS = {"y": 365 * 86400, "w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}


def parse_duration(text: str) -> timedelta:
    """Parse a Prometheus duration; `ValueError` names the text and shows valid examples."""
    if not isinstance(text, str) or not text or not _DURATION.match(text):
        raise ValueError(f"invalid duration {text!r}: write it like 30s, 5m, 2h, 1h30m or 1d")
    seconds = sum(int(n) * _SECONDS[unit] for n, unit in _PART.findall(text))
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """Shortest Prometheus form of a duration (`5400s` -> `1h30m`)."""
    total_ms = round(value.total_seconds() * 1000)
    if total_ms == 0:
        return "0s"
    parts: list[str] = []
    for unit, size in (("d", 86400_000), ("h", 3600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        count, total_ms = divmod(total_ms, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
