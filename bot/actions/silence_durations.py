"""How long a silence lasts: what a responder may type ("90s", "1h30m", "1w") and the longest
silence the bot makes. Apart from bot/actions/silences.py (the Alertmanager client) because
the action parameters, the policy and the slash-command parser need only this, and the
journal applier process loads those without the HTTP client (httpx, tenacity: about 7 MB of
resident memory in a process that never talks to Alertmanager)."""

from __future__ import annotations

import re
from datetime import timedelta

from bot.errors import PayloadError

__all__ = ["MAX_SILENCE_DURATION", "check_duration", "format_duration", "parse_duration"]

MAX_SILENCE_DURATION = timedelta(days=30)

_DURATION = re.compile(r"^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_DURATION_FORMS = "a number with a unit, e.g. 90s, 30m, 2h, 1h30m, 1d or 1w"


def parse_duration(text: str, *, maximum: timedelta = MAX_SILENCE_DURATION) -> timedelta:
    """Parse what a responder types: "90s", "30m", "2h", "1h30m", "1d", "1w" (units in this
    order, each at most once). Raises PayloadError naming the text and the accepted forms."""
    cleaned = text.strip().lower().replace(" ", "")
    match = _DURATION.match(cleaned)
    if not cleaned or match is None:
        raise PayloadError(f"bad silence duration {text!r}: use {_DURATION_FORMS}")
    weeks, days, hours, minutes, seconds = (int(part) if part else 0 for part in match.groups())
    duration = timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds)
    check_duration(duration, text=text, maximum=maximum)
    return duration


def check_duration(duration: timedelta, *, text: str, maximum: timedelta) -> None:
    if duration <= timedelta(0):
        raise PayloadError(f"silence duration {text!r} must be longer than zero; use {_DURATION_FORMS}")
    if duration > maximum:
        longest = format_duration(maximum)
        raise PayloadError(f"silence duration {text!r} is longer than the maximum of {longest}")


def format_duration(duration: timedelta) -> str:
    seconds = int(duration.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"
