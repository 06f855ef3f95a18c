"""JSON from outside, refused early for what could never be stored or processed.

Python's `json` accepts things the rest of the bot cannot carry: nesting deep enough to exhaust
the recursion limit (here or later in pydantic's serialiser), integers beyond the int-parsing
limit, `NaN`/`Infinity` (not JSON; PostgreSQL refuses them), and lone UTF-16 surrogates
(`"\\ud800"`), which decode to a `str` that cannot be encoded as UTF-8 for a hash or the
database. Each is a PayloadError naming where it is, so the webhook answers 400 (Alertmanager
does not retry a 4xx) instead of a 500 it would resend forever.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from bot.errors import PayloadError

__all__ = ["MAX_DEPTH", "JsonRejected", "load_json"]

# Alertmanager's payload is 3 levels deep (body > alerts > alert > labels); room for extras.
MAX_DEPTH = 32


class JsonRejected(PayloadError):
    """`field` is the dotted path of the offending value ("(body)" for the whole document)."""

    def __init__(self, message: str, field: str = "(body)") -> None:
        super().__init__(message)
        self.field = field


def _no_constant(name: str) -> Any:
    raise JsonRejected(f"malformed JSON: {name} is not a JSON number")


# The fast paths below run at C speed on every webhook; the byte-by-byte walks only when they
# cannot rule a problem out (webhook intake is the bot's hot path in a storm).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_PAIR = re.compile(rb"\[\]|\{\}")
_BRACKETS = bytes(range(256)).translate(None, b"[]{}")
_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")


class _Infinite(Exception):
    pass


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999: valid JSON, infinite as a float
        raise _Infinite
    return value


def load_json(body: bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """Raise PayloadError for anything but plain, finite, UTF-8-encodable JSON of bounded depth."""
    if body.count(b"[") + body.count(b"{") > max_depth and not _shallow(body, max_depth):
        depth = _nesting(body)
        if depth > max_depth:
            raise JsonRejected(f"JSON nested {depth} levels deep; at most {max_depth} are accepted")
    suspect = False
    try:
        try:
            data = json.loads(body, parse_constant=_no_constant, parse_float=_finite)
        except _Infinite:
            data, suspect = json.loads(body, parse_constant=_no_constant), True
    except UnicodeDecodeError as exc:
        raise JsonRejected(f"malformed JSON: the body is not UTF-8 ({exc.reason})") from exc
    except json.JSONDecodeError as exc:
        raise JsonRejected(f"malformed JSON: {exc}") from exc
    except (ValueError, RecursionError) as exc:  # int digits limit; depth is bounded above
        raise JsonRejected(f"JSON value not accepted: {exc}") from exc
    if suspect or (b"\\u" in body and _SURROGATE.search(body)):
        _check(data, "(body)")  # finds where, and raises
    return data


def _shallow(body: bytes, max_depth: int) -> bool:
    """True when the brackets outside strings certainly nest at most `max_depth` deep: strip
    the strings, keep the brackets, and remove innermost pairs once per level. False when
    unsure (deeper, or brackets that do not pair up): the exact walk decides."""
    brackets = _STRING.sub(b"", body).translate(None, _BRACKETS)
    for _ in range(max_depth):
        if not brackets:
            return True
        reduced = _PAIR.sub(b"", brackets)
        if reduced == brackets:
            return False
        brackets = reduced
    return not brackets


def _nesting(body: bytes) -> int:
    """The deepest bracket nesting, outside strings, without parsing (so without recursion)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def _check(value: Any, path: str) -> None:
    """Walk the parsed value (depth already bounded) for lone surrogates and infinite floats."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            _encodable(item, where)
        elif isinstance(item, float) and not math.isfinite(item):
            raise JsonRejected(f"number out of range at {where}", where)
        elif isinstance(item, dict):
            for key, child in item.items():
                _encodable(key, where)
                stack.append((child, f"{key}" if where == "(body)" else f"{where}.{key}"))
        elif isinstance(item, list):
            stack.extend((child, f"{where}.{i}") for i, child in enumerate(item))


def _encodable(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise JsonRejected(
            f"invalid Unicode (a lone surrogate escape such as \\ud800) at {where}", where
        ) from None
