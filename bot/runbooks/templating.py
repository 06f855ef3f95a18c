"""The Jinja2 sandbox runbooks render in, and how alert data enters it.

Threat model: runbook files are trusted (they come from the team's repository, reviewed);
alert labels and annotations are not (anything that can push a metric or an alert chooses
them). So label values are *data*: they are never parsed as templates (a value of
`{{ 7*7 }}` renders as those characters), and every value from outside is escaped for the
language of the field it lands in, before the template sees it:

=========  =====================================  ==============================================
mode       fields                                  escaping of label/annotation/incident values
=========  =====================================  ==============================================
mrkdwn     description, steps, titles              bot.text.literal: `&<>`, and `*_~` and backticks
promql     diagnostics[].query, recovery_query     PromQL double-quoted string: `\\`, `"`, newline
url        links[].url                             percent-encoded (a value can't end the URL)
plain      action labels, silence comment          none (Slack plain_text shows it as typed)
raw        action parameters                       none, but the result is strictly validated
=========  =====================================  ==============================================

Escaping on the way in (rather than on output) keeps it on whatever the template does with
the value: `{{ labels.pod ~ "-x" }}` stays escaped. Each escaped value is an `EscapedStr`
that remembers its raw text, so `regex_escape` can re-escape from the raw value correctly.
The environment is Jinja's `ImmutableSandboxedEnvironment` (no attribute starting with `_`,
no mutation of lists or dicts, bounded `range`) with a `StrictUndefined` whose messages
name the missing label and list the ones the alert has.

The author's own text in mrkdwn fields is prepared once, at load: `&`, `<`, `>` are escaped
except in Slack's own `<https://...|text>`, `<!here>`, `<@U...>`, `<#C...>` forms, and the
common Markdown forms `**bold**`, `[text](https://url)` and `# Heading` become mrkdwn.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal
from urllib.parse import quote

from jinja2 import StrictUndefined, Template
from jinja2.sandbox import ImmutableSandboxedEnvironment

from bot.text import literal

__all__ = [
    "MODES",
    "DataView",
    "EscapedStr",
    "Mode",
    "RunbookEnvironment",
    "author_mrkdwn",
    "make_environments",
    "promql_escape",
    "re2_escape",
]

Mode = Literal["mrkdwn", "promql", "url", "plain", "raw"]
MODES: tuple[Mode, ...] = ("mrkdwn", "promql", "url", "plain", "raw")


def promql_escape(text: str) -> str:
    """Escape for the inside of a PromQL double-quoted string literal."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")


def _url_escape(text: str) -> str:
    return quote(text, safe="")


def _identity(text: str) -> str:
    return text


_ESCAPERS: dict[str, Callable[[str], str]] = {
    "mrkdwn": literal,
    "promql": promql_escape,
    "url": _url_escape,
    "plain": _identity,
    "raw": _identity,
}


def re2_escape(text: str) -> str:
    """Backslash every regex metacharacter (RE2 and Python agree on these)."""
    return re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", text)


class EscapedStr(str):
    """A value from outside, already escaped for `mode`; `_raw` keeps the original."""

    __slots__ = ("_mode", "_raw")
    _raw: str
    _mode: str

    def __new__(cls, raw: str, mode: str) -> EscapedStr:
        obj = super().__new__(cls, _ESCAPERS[mode](raw))
        obj._raw = raw
        obj._mode = mode
        return obj


class DataView(Mapping[str, Any]):
    """Read-only mapping for `labels`, `annotations`, `alert` and `incident`.

    `_what` (e.g. "labels") and `_kind` (e.g. "label") only serve error messages; the
    sandbox refuses attributes starting with `_`, so templates cannot reach them.
    """

    __slots__ = ("_data", "_kind", "_what")

    def __init__(self, data: Mapping[str, Any], *, what: str, kind: str) -> None:
        self._data = dict(data)
        self._what = what
        self._kind = kind

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"<{self._what}: {', '.join(sorted(self._data))}>"


class _Undefined(StrictUndefined):
    """StrictUndefined that says which label is missing and which ones the alert has."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        obj = self._undefined_obj
        if isinstance(obj, DataView) and not self._undefined_hint:
            present = ", ".join(sorted(obj)) or "none"
            return (
                f"{obj._what}.{self._undefined_name} is undefined: the alert has no {obj._kind} "
                f"{self._undefined_name!r} (it has: {present})"
            )
        message: str = super()._undefined_message
        return message


class RunbookEnvironment(ImmutableSandboxedEnvironment):
    """Sandboxed, strict, and with `labels.items` meaning the label named "items" if there is one."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, DataView) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)


def _make_environment(mode: Mode) -> RunbookEnvironment:
    escape = _ESCAPERS[mode]

    def regex_escape(value: object) -> str:
        raw = value._raw if isinstance(value, EscapedStr) else str(value)
        return escape(re2_escape(raw))

    def finalize(value: object) -> object:
        # Strings are already escaped (values from outside) or the author's own; anything else
        # (a list, a mapping, a date) prints via repr/str, which may carry data unescaped.
        return value if isinstance(value, str) else escape(str(value))

    env = RunbookEnvironment(
        undefined=_Undefined,
        finalize=finalize,
        autoescape=False,
        # Jinja's defaults: a `{% endif %}` at the end of a line keeps the line break after
        # it (trim_blocks would join the next line on, a surprise in inline conditionals).
        trim_blocks=False,
        lstrip_blocks=False,
        keep_trailing_newline=False,
    )
    env.filters["regex_escape"] = regex_escape
    return env


def make_environments() -> dict[Mode, RunbookEnvironment]:
    """One environment per mode, so filters know which escaping their output needs."""
    return {mode: _make_environment(mode) for mode in MODES}


def compile_template(env: RunbookEnvironment, source: str) -> Template:
    return env.from_string(source)


# --- the author's text in mrkdwn fields ---------------------------------------------------------

_JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_PLACEHOLDER = "\ue000"  # private-use character standing in for a Jinja block
_SLACK_TOKEN = re.compile(r"<(?:https?://|mailto:|[#@!])[^<>\s]*(?:\|[^<>]*)?>")
_BARE_AMP = re.compile(r"&(?!amp;|lt;|gt;)")
_MD_LINK = re.compile(r"\[([^\]\n]+)\]\((https?://[^)\s]+)\)")
_MD_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
_MD_HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)
_CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)


def author_mrkdwn(source: str) -> str:
    """Turn the author's literal text (not the Jinja inside it) into safe Slack mrkdwn."""
    blocks: list[str] = []

    def stash(match: re.Match[str]) -> str:
        blocks.append(match.group(0))
        return f"{_PLACEHOLDER}{len(blocks) - 1}{_PLACEHOLDER}"

    text = _JINJA.sub(stash, source)
    pieces: list[str] = []
    last = 0
    for token in _SLACK_TOKEN.finditer(text):
        pieces.append(_escape_literal(text[last : token.start()]))
        pieces.append(_BARE_AMP.sub("&amp;", token.group(0)))
        last = token.end()
    pieces.append(_escape_literal(text[last:]))
    text = "".join(pieces)
    return re.sub(f"{_PLACEHOLDER}([0-9]+){_PLACEHOLDER}", lambda m: blocks[int(m.group(1))], text)


def _escape_literal(text: str) -> str:
    escaped = _BARE_AMP.sub("&amp;", text).replace("<", "&lt;").replace(">", "&gt;")
    # Markdown conversions, outside code spans (where ** and [x](y) are meant literally).
    out: list[str] = []
    last = 0
    for code in _CODE.finditer(escaped):
        out.append(_markdown_to_mrkdwn(escaped[last : code.start()]))
        out.append(code.group(0))
        last = code.end()
    out.append(_markdown_to_mrkdwn(escaped[last:]))
    return "".join(out)


def _markdown_to_mrkdwn(text: str) -> str:
    text = _MD_LINK.sub(lambda m: f"<{m.group(2)}|{m.group(1)}>", text)
    text = _MD_BOLD.sub(r"*\1*", text)
    return _MD_HEADING.sub(r"*\1*", text)
