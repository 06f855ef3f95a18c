"""Slack mrkdwn text: escaping and truncation (applied to every value that came from outside),
mentions and dates. Neutral: runbooks, diagnostics and the domain's answers use it without
importing the Slack package.

Slack parses `<...>` in mrkdwn as links, user/channel mentions and `<!channel>` broadcasts,
so an alert label such as `<!channel>` would page a whole channel. Slack's documented rule is
to escape exactly three characters: `&`, `<` and `>`; everything else renders as typed.
"""

from __future__ import annotations

from datetime import datetime

__all__ = ["defuse", "escape", "mention", "slack_date", "truncate"]

_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def escape(text: object) -> str:
    return str(text).translate(_ESCAPES)


def defuse(text: object) -> str:
    """For plain_text fields, which Slack does not parse and where entities would show as
    typed: a zero-width space after each `<` keeps `<!channel>` looking the same but makes
    sure nothing downstream (notifications, unfurls, other clients) can read it as a mention."""
    return str(text).replace("<", "<\u200b")


def truncate(text: str, limit: int, *, marker: str = "…") -> str:
    """Cut to at most `limit` characters, never in the middle of an escape sequence such as
    `&amp;` (which Slack would then show as a broken entity)."""
    if len(text) <= limit:
        return text
    cut = text[: max(0, limit - len(marker))]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:] and len(cut) - amp < 6:
        cut = cut[:amp]
    return cut + marker


def mention(user_id: str | None, name: str | None = None) -> str:
    """`<@U123>` (Slack shows the current display name); the stored name only as a fallback."""
    if user_id:
        return f"<@{user_id}>"
    return escape(name) if name else "someone"


def slack_date(when: datetime, fmt: str = "{date_short_pretty} {time}") -> str:
    """Slack renders this in each reader's own time zone; the fallback is UTC."""
    fallback = when.strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(when.timestamp())}^{fmt}|{fallback}>"
