"""Alertmanager label matchers: parsing, matching and specificity.

Runbooks select alerts with the same matcher syntax operators already write in
Alertmanager routes and silences, so a matcher means here exactly what it means there.
The grammar follows Alertmanager's current ("UTF-8") parser, `matcher/parse` (the default
since 0.27), which is stricter than the classic `pkg/labels` one:

* a matcher is `name op value` with `op` one of `=`, `!=`, `=~`, `!~`;
* the name and the value are either double-quoted (Go string escapes: `\\"`, `\\\\`, `\\n`,
  `\\t`, `\\xHH`, `\\uHHHH`...) or unquoted, in which case they may not contain whitespace
  or any of ``{}!=~,\\"'` ``;
* several matchers may be written in one string, separated by commas, optionally inside
  `{...}`;
* regular expressions are fully anchored as Alertmanager does (`^(?:re)$`), and a label
  the alert does not carry has the value `""` (so `namespace!=""` means "has a namespace").

Alertmanager compiles regexes with Go's RE2, so the RE2-incompatible features Python's
`re` would accept (look-around, back-references, atomic groups, possessive quantifiers)
are rejected here too: a runbook that matches in our tests must match in Alertmanager.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from bot.runbooks.errors import MatcherSyntaxError

__all__ = [
    "MatchType",
    "Matcher",
    "Specificity",
    "matches_all",
    "parse_matcher",
    "parse_matchers",
    "specificity",
]

_RESERVED = frozenset("{}!=~,\\\"'`")


class MatchType(StrEnum):
    EQUAL = "="
    NOT_EQUAL = "!="
    REGEX = "=~"
    NOT_REGEX = "!~"


@dataclass(frozen=True)
class Matcher:
    """One parsed matcher; `str()` gives back a canonical, re-parseable form."""

    name: str
    type: MatchType
    value: str
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Alertmanager semantics: a missing label is the empty string."""
        actual = labels.get(self.name, "")
        if self.type is MatchType.EQUAL:
            return actual == self.value
        if self.type is MatchType.NOT_EQUAL:
            return actual != self.value
        assert self._regex is not None
        found = self._regex.fullmatch(actual) is not None
        return found if self.type is MatchType.REGEX else not found

    @property
    def is_positive_equality(self) -> bool:
        return self.type is MatchType.EQUAL and self.value != ""

    @property
    def is_positive_regex(self) -> bool:
        return self.type is MatchType.REGEX and self._regex is not None and not self._regex.fullmatch("")

    def __str__(self) -> str:
        return f"{_quote_if_needed(self.name)}{self.type.value}{_quote(self.value)}"


def _show(text: str) -> str:
    """The matcher as the author typed it, in quotes (repr() would double its backslashes)."""
    return f"'{text}'"


def _show_char(ch: str) -> str:
    return f'"{ch}"' if ch == "'" else f"'{ch}'"


def _quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _quote_if_needed(name: str) -> str:
    if name and not any(ch.isspace() or ch in _RESERVED for ch in name):
        return name
    return _quote(name)


def make_matcher(name: str, type_: MatchType, value: str, *, source: str | None = None) -> Matcher:
    """Build a matcher, compiling (and vetting) its regex; `source` names it in errors."""
    shown = source if source is not None else f"{name}{type_.value}{_quote(value)}"
    regex: re.Pattern[str] | None = None
    if type_ in (MatchType.REGEX, MatchType.NOT_REGEX):
        unsupported = _re2_unsupported(value)
        if unsupported:
            raise MatcherSyntaxError(
                f"bad matcher {_show(shown)}: {unsupported} "
                "is not supported by Alertmanager's RE2 regex engine"
            )
        try:
            re.compile(value)  # first alone, so error positions refer to the author's text
            regex = re.compile(f"(?:{value})")
        except re.error as exc:
            raise MatcherSyntaxError(
                f"bad matcher {_show(shown)}: invalid regular expression: {exc}"
            ) from None
    return Matcher(name=name, type=type_, value=value, _regex=regex)


def _re2_unsupported(pattern: str) -> str | None:
    """Name the first construct RE2 rejects, scanning outside escapes and character classes."""
    i, in_class = 0, False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            nxt = pattern[i + 1 : i + 2]
            if not in_class and nxt.isdigit() and nxt != "0":
                return f"back-reference '\\{nxt}'"
            i += 2
            continue
        if in_class:
            if ch == "]":
                in_class = False
        elif ch == "[":
            in_class = True
            if pattern[i + 1 : i + 2] == "^":
                i += 1
            if pattern[i + 1 : i + 2] == "]":
                i += 1
        elif ch == "(" and pattern[i + 1 : i + 2] == "?":
            rest = pattern[i + 2 : i + 5]
            for prefix, what in (
                ("<=", "look-behind '(?<='"),
                ("<!", "look-behind '(?<!'"),
                ("=", "look-ahead '(?='"),
                ("!", "look-ahead '(?!'"),
                (">", "atomic group '(?>'"),
                ("P=", "named back-reference '(?P='"),
            ):
                if rest.startswith(prefix):
                    return what
        elif ch == "+" and i > 0 and pattern[i - 1] in "*+?}" and pattern[i - 2 : i] != "\\" + pattern[i - 1]:
            return f"possessive quantifier '{pattern[i - 1]}+'"
        i += 1
    return None


# --- lexer -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    kind: str  # "{", "}", ",", "op", "quoted", "unquoted"
    value: str
    column: int  # 1-based column in the input


def _lex(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    while i < len(text):
        ch = text[i]
        col = i + 1
        if ch.isspace():
            i += 1
        elif ch in "{},":
            tokens.append(_Token(ch, ch, col))
            i += 1
        elif ch == "=":
            op = "=~" if text[i + 1 : i + 2] == "~" else "="
            tokens.append(_Token("op", op, col))
            i += len(op)
        elif ch == "!":
            nxt = text[i + 1 : i + 2]
            if nxt not in ("=", "~"):
                raise MatcherSyntaxError(
                    f"bad matcher {_show(text)}: unexpected '!' at column {col}: expected '!=' or '!~'"
                )
            tokens.append(_Token("op", "!" + nxt, col))
            i += 2
        elif ch == '"':
            j, escaped = i + 1, False
            while j < len(text):
                if escaped:
                    escaped = False
                elif text[j] == "\\":
                    escaped = True
                elif text[j] == '"':
                    break
                j += 1
            if j >= len(text):
                raise MatcherSyntaxError(
                    f"bad matcher {_show(text)}: unterminated quoted string starting at column {col}"
                )
            tokens.append(_Token("quoted", text[i : j + 1], col))
            i = j + 1
        elif ch in _RESERVED:
            raise MatcherSyntaxError(
                f"bad matcher {_show(text)}: unexpected {ch!r} at column {col}"
                + ("; quote values that contain it" if ch in "\\'`~" else "")
            )
        else:
            j = i
            while j < len(text) and not (text[j].isspace() or text[j] in _RESERVED):
                j += 1
            tokens.append(_Token("unquoted", text[i:j], col))
            i = j
    return tokens


_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    '"': '"',
}


def _go_unquote(quoted: str, *, source: str, column: int) -> str:
    """Go's `strconv.Unquote` for a double-quoted string, which Alertmanager uses."""
    body = quoted[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\n":
            raise MatcherSyntaxError(
                f"bad matcher {_show(source)}: line break inside the quoted string "
                f"at column {column}; write \\n"
            )
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        esc = body[i + 1 : i + 2]
        if esc in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[esc])
            i += 2
            continue
        width = {"x": 2, "u": 4, "U": 8}.get(esc)
        if width is not None:
            digits = body[i + 2 : i + 2 + width]
            if len(digits) == width and all(c in "0123456789abcdefABCDEF" for c in digits):
                out.append(chr(int(digits, 16)))
                i += 2 + width
                continue
        elif esc and esc in "01234567":
            digits = body[i + 1 : i + 4]
            if len(digits) == 3 and all(c in "01234567" for c in digits) and int(digits, 8) < 256:
                out.append(chr(int(digits, 8)))
                i += 4
                continue
        raise MatcherSyntaxError(
            f"bad matcher {_show(source)}: invalid escape sequence '\\{esc}' "
            f"in the quoted string at column {column}"
        )
    return "".join(out)


# --- parser ------------------------------------------------------------------------------------


def parse_matchers(text: str) -> list[Matcher]:
    """Parse `a="b", c=~"d.*"` (braces optional, trailing comma allowed) into matchers."""
    tokens = _lex(text)
    pos = 0

    def peek() -> _Token | None:
        return tokens[pos] if pos < len(tokens) else None

    def fail(reason: str) -> MatcherSyntaxError:
        return MatcherSyntaxError(f"bad matcher {_show(text)}: {reason}")

    braced = bool(tokens) and tokens[0].kind == "{"
    if braced:
        pos += 1
    result: list[Matcher] = []
    while True:
        tok = peek()
        if tok is None:
            if braced:
                raise fail("expected a closing '}'")
            break
        if tok.kind == "}":
            if not braced:
                raise fail(f"unexpected '}}' at column {tok.column} without an opening '{{'")
            pos += 1
            if peek() is not None:
                extra = peek()
                assert extra is not None
                raise fail(f"unexpected {extra.value!r} at column {extra.column} after the closing '}}'")
            break
        if tok.kind not in ("quoted", "unquoted"):
            raise fail(f"expected a label name at column {tok.column}, found {tok.value!r}")
        name = _go_unquote(tok.value, source=text, column=tok.column) if tok.kind == "quoted" else tok.value
        if not name:
            raise fail(f"empty label name at column {tok.column}")
        pos += 1
        op = peek()
        if op is None or op.kind != "op":
            where = f"at column {op.column}, found {op.value!r}" if op else "at the end"
            raise fail(f"expected an operator such as '=', '!=', '=~' or '!~' after {name!r} {where}")
        pos += 1
        val = peek()
        if val is None or val.kind not in ("quoted", "unquoted"):
            where = f"at column {val.column}, found {val.value!r}" if val else "at the end"
            raise fail(f"expected a label value after '{name}{op.value}' {where}; write \"\" for empty")
        pos += 1
        value = _go_unquote(val.value, source=text, column=val.column) if val.kind == "quoted" else val.value
        result.append(make_matcher(name, MatchType(op.value), value, source=text))
        sep = peek()
        if sep is None or sep.kind == "}":
            continue
        if sep.kind != ",":
            raise fail(f"expected ',' between matchers at column {sep.column}, found {sep.value!r}")
        pos += 1
    if not result:
        raise fail("no matcher found")
    return result


def parse_matcher(text: str) -> Matcher:
    """Parse exactly one matcher."""
    found = parse_matchers(text)
    if len(found) != 1:
        raise MatcherSyntaxError(f"bad matcher {_show(text)}: expected one matcher, found {len(found)}")
    return found[0]


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


@dataclass(frozen=True, order=True)
class Specificity:
    """How narrowly a set of matchers selects alerts; a larger value is more specific.

    Compared field by field: equality matchers on a non-empty value pin a label down and
    count most, then regexes that cannot match the empty string, then everything else
    (negative matchers and `=""`, which only exclude). So `alertname="X"` beats
    `alertname=~"X|Y"`, and adding `namespace="prod"` beats both.
    """

    equalities: int
    regexes: int
    others: int

    def __str__(self) -> str:
        return f"{self.equalities} equality, {self.regexes} regex, {self.others} other matcher(s)"


def specificity(matchers: Sequence[Matcher]) -> Specificity:
    eq = sum(1 for m in matchers if m.is_positive_equality)
    rx = sum(1 for m in matchers if m.is_positive_regex)
    return Specificity(equalities=eq, regexes=rx, others=len(matchers) - eq - rx)
