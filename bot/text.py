"""Text from outside (alert labels, annotations, names) made safe for where it lands in Slack.

A neutral module (no Slack client, no domain import) so `incidents`, `runbooks`,
`diagnostics` and `actions` can escape without importing `bot.slack`.

Slack mrkdwn has no backslash escapes. Its documented rule is to escape `&`, `<` and `>` as
entities (`escape`), which stops `<!channel>` and fake links; but `*`, `_`, `~` and a backtick
still open or close bold, italic, strike and code around them, so a label value with a `*`
breaks the bold it sits in, and a backtick ends the inline code span it is shown in. Those are
replaced with look-alike characters that Slack does not treat as markup:

where it lands          helper       what changes
free mrkdwn text        `literal`    &<> entities; `*` -> U+2217, `~` -> U+223C, backtick -> U+02CB,
                                     `_` -> U+FF3F unless inside a word (Slack ignores `a_b`)
inside `*...*` (bold)   `bold`       the same, wrapped in `*`
inside backticks        `code`       &<> entities; backtick -> U+02CB; line breaks -> space
inside ```...```        `preformatted` &<> entities; backtick -> U+02CB
plain_text, file title  `defuse`     a zero-width space after `<` (entities would show as typed)
anything shown to users `strip_paths` absolute file paths -> their file name
"""

from __future__ import annotations

import re
from datetime import datetime

__all__ = [
    "bold",
    "code",
    "defuse",
    "escape",
    "literal",
    "mention",
    "preformatted",
    "slack_date",
    "strip_paths",
    "truncate",
]

_ENTITIES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
_MARKUP = str.maketrans({"*": "\u2217", "~": "\u223c", "`": "\u02cb"})
# `_` opens or closes italics only at a word's edge; inside `vllm_high_latency` it is literal.
_EDGE_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~/:-])/(?:[^\s/:'\"`]+/)+([^\s/:'\"`]+)")


def escape(value: object) -> str:
    """Entities only (`&`, `<`, `>`): for text whose own `*` or backtick is meant as markup."""
    return str(value).translate(_ENTITIES)


def literal(value: object) -> str:
    """Outside text as literal mrkdwn: no mention, no link, no formatting of its own."""
    return _EDGE_UNDERSCORE.sub("\uff3f", escape(value).translate(_MARKUP))


def bold(value: object) -> str:
    return f"*{literal(value)}*"


def code(value: object) -> str:
    """The inside of an inline code span (`` `...` ``); the caller adds the backticks."""
    return " ".join(escape(value).replace("`", "\u02cb").splitlines())


def preformatted(value: object) -> str:
    """The inside of a ```code block```: line breaks kept, no backtick to end it early."""
    return escape(value).replace("`", "\u02cb")


def defuse(value: object) -> str:
    """For plain_text fields and file titles, which Slack does not parse and where entities
    would show as typed: a zero-width space after each `<` keeps `<!channel>` looking the same
    but makes sure nothing downstream (notifications, unfurls, other clients) reads a mention."""
    return str(value).replace("<", "<\u200b")


def strip_paths(value: str) -> str:
    """`/srv/bot/runbooks/vllm.yaml:12: ...` -> `vllm.yaml:12: ...`: the server's layout is
    nobody's business in a Slack channel."""
    return _ABSOLUTE_PATH.sub(r"\1", value)


def truncate(value: str, limit: int, *, marker: str = "…") -> str:
    """Cut to at most `limit` characters, never in the middle of an escape sequence such as
    `&amp;` (which Slack would then show as a broken entity)."""
    if len(value) <= limit:
        return value
    cut = value[: max(0, limit - len(marker))]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:] and len(cut) - amp < 6:
        cut = cut[:amp]
    return cut + marker


def mention(user_id: str | None, name: str | None = None) -> str:
    """`<@U123>` (Slack shows the current display name); the stored name only as a fallback."""
    if user_id:
        return f"<@{user_id}>"
    return literal(name) if name else "someone"


def slack_date(when: datetime, fmt: str = "{date_short_pretty} {time}") -> str:
    """Slack renders this in each reader's own time zone; the fallback is UTC."""
    fallback = when.strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(when.timestamp())}^{fmt}|{fallback}>"
