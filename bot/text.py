"""Slack mrkdwn escaping and truncation, applied to every value that came from outside.

Slack parses `<...>` in mrkdwn as links, user/channel mentions and `<!channel>` broadcasts,
so an alert label such as `<!channel>` would page a whole channel. Slack's documented rule is
to escape exactly three characters: `&`, `<` and `>`; everything else renders as typed.
"""

from __future__ import annotations

__all__ = ["defuse", "escape", "truncate"]

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
