"""Reading Slack Web API requests the way slack.com reads them, whatever the client sent.

slack-sdk sends three shapes for the same API: a JSON body for methods carrying blocks
(`chat.postMessage`, `views.*`), a form body for the rest (`params=`; with the sync client),
and the query string for the async client's `params=` and GET methods. Form bodies carry
`blocks`, `attachments`, `metadata` and `view` as JSON-encoded strings. Everything is merged
into one dict here and typed per argument by `Args`, so the method code never cares how the
argument travelled.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import threading
import time
from dataclasses import dataclass
from email.message import Message as EmailMessage
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qs

from bot.sandbox.slack_models import ApiError

__all__ = [
    "JSON_FIELDS",
    "Args",
    "ParsedBody",
    "TsClock",
    "decode_cursor",
    "decode_json_fields",
    "encode_cursor",
    "parse_body",
    "parse_multipart",
    "parse_query",
    "parse_ts",
    "ts_key",
]

# Arguments Slack documents as "a JSON-based array/object, presented as a URL-encoded string".
JSON_FIELDS = frozenset({"blocks", "attachments", "metadata", "view", "files", "user_auth_blocks"})


@dataclass
class ParsedBody:
    params: dict[str, Any]
    kind: str  # "json", "form", "multipart", "raw" or "none"
    error: str | None = None
    file_bytes: bytes | None = None


def parse_query(query: str) -> dict[str, Any]:
    """Last value wins, like Slack; blank values are kept (an empty `text=` is a real argument)."""
    return {key: values[-1] for key, values in parse_qs(query, keep_blank_values=True).items()}


def _content_type(header: str) -> tuple[str, dict[str, str]]:
    message = EmailMessage()
    message["content-type"] = header
    params = {str(k).lower(): str(v) for k, v in message.get_params(failobj=[])[1:]}
    return message.get_content_type(), params


def parse_body(body: bytes, content_type: str | None) -> ParsedBody:
    """Decode a Web API request body; a body Slack could not read yields `error` set."""
    if not body:
        return ParsedBody({}, "none")
    mime, options = _content_type(content_type or "application/x-www-form-urlencoded")
    charset = options.get("charset", "utf-8")
    if mime == "application/json":
        try:
            decoded = json.loads(body.decode(charset))
        except (UnicodeDecodeError, LookupError, json.JSONDecodeError):
            return ParsedBody({}, "json", error="invalid_json")
        if not isinstance(decoded, dict):
            return ParsedBody({}, "json", error="invalid_json")
        return ParsedBody(decoded, "json")
    if mime == "multipart/form-data":
        fields, file_bytes = parse_multipart(body, content_type or "")
        return ParsedBody(fields, "multipart", file_bytes=file_bytes)
    if mime in ("application/x-www-form-urlencoded", "text/plain"):
        try:
            return ParsedBody(parse_query(body.decode(charset)), "form")
        except (UnicodeDecodeError, LookupError):
            return ParsedBody({}, "form", error="invalid_form_data")
    return ParsedBody({}, "raw", error="invalid_post_type")


def parse_multipart(body: bytes, content_type: str) -> tuple[dict[str, str], bytes | None]:
    """Split a multipart/form-data body into its text fields and the first file part's bytes."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    parsed = BytesParser(policy=HTTP).parsebytes(head + body)
    fields: dict[str, str] = {}
    file_bytes: bytes | None = None
    if not parsed.is_multipart():
        return fields, None
    for part in parsed.walk():
        if part.is_multipart():
            continue
        name = part.get_param("name", header="content-disposition")
        raw = part.get_payload(decode=True)
        payload = raw if isinstance(raw, bytes) else b""
        if part.get_filename() is not None:
            if file_bytes is None:
                file_bytes = payload
            if name:
                fields.setdefault("filename", str(part.get_filename()))
        elif name:
            fields[str(name)] = payload.decode(part.get_content_charset() or "utf-8", errors="replace")
    return fields, file_bytes


def decode_json_fields(params: dict[str, Any]) -> dict[str, Any]:
    """The arguments with JSON-encoded strings decoded, for recording; undecodable ones stay strings."""
    decoded = dict(params)
    for key in JSON_FIELDS & decoded.keys():
        value = decoded[key]
        if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
            with contextlib.suppress(json.JSONDecodeError):
                decoded[key] = json.loads(value)
    return decoded


def encode_cursor(kind: str, value: str) -> str:
    """Opaque cursors shaped like Slack's (base64 of e.g. `next_ts:1512085861000543`)."""
    return base64.b64encode(f"{kind}:{value}".encode()).decode()


def decode_cursor(cursor: str, kind: str) -> str:
    try:
        text = base64.b64decode(cursor.encode(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ApiError("invalid_cursor") from exc
    prefix, _, value = text.partition(":")
    if prefix != kind or not value:
        raise ApiError("invalid_cursor")
    return value


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class Args:
    """Typed access to one call's arguments; a missing or malformed one raises the API error Slack gives."""

    def __init__(self, params: dict[str, Any]):
        self.params = params

    def has(self, name: str) -> bool:
        return self.params.get(name) not in (None, "")

    def text(self, name: str, *, required: bool = False, default: str | None = None) -> str | None:
        value = self.params.get(name)
        if value is None or value == "":
            if required:
                raise ApiError("invalid_arguments", messages=[f"[ERROR] missing required field: {name}"])
            return default
        if isinstance(value, (dict, list)):
            raise ApiError("invalid_arguments", messages=[f"[ERROR] expected a string for {name}"])
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    def req(self, name: str) -> str:
        value = self.text(name, required=True)
        assert value is not None
        return value

    def flag(self, name: str, *, default: bool = False) -> bool:
        value = self.params.get(name)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)):
            return value != 0
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ApiError("invalid_arguments", messages=[f"[ERROR] expected a boolean for {name}"])

    def number(self, name: str, *, default: int) -> int:
        value = self.params.get(name)
        if value is None or value == "":
            return default
        try:
            return int(value)
        except (TypeError, ValueError) as exc:
            raise ApiError("invalid_arguments", messages=[f"[ERROR] expected an integer for {name}"]) from exc

    def decoded(self, name: str, *, error: str) -> Any:
        """A JSON argument given either as JSON (json= bodies) or as a JSON-encoded string (forms)."""
        value = self.params.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError as exc:
                raise ApiError(error, messages=[f"[ERROR] {name} is not valid JSON"]) from exc
        return value

    def ids(self, name: str, *, required: bool = False) -> list[str]:
        """A comma-separated list (`users=U1,U2`), also accepted as a JSON array."""
        value = self.params.get(name)
        if isinstance(value, list):
            items = [str(v).strip() for v in value]
        else:
            joined = self.text(name, required=required) or ""
            items = [part.strip() for part in joined.split(",")]
        return [item for item in items if item]


class TsClock:
    """Message timestamps: wall-clock seconds with a 6-digit suffix, unique and strictly increasing.

    Slack's `ts` is both a message id and a time ("1735000000.000100"); the bot compares them
    and filters history by them, so they follow real time but never repeat under a burst.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0

    def next(self) -> str:
        with self._lock:
            micros = max(int(time.time() * 1_000_000), self._last + 1)
            self._last = micros
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"


def ts_key(ts: str) -> tuple[int, int]:
    """Sort and compare key of a ts; `ValueError` for text that is no ts."""
    seconds, _, fraction = ts.partition(".")
    return int(seconds), int((fraction or "0").ljust(6, "0")[:6])


def parse_ts(value: str | None, name: str) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        return ts_key(value)
    except ValueError as exc:
        raise ApiError("invalid_ts_" + name if name in ("latest", "oldest") else "invalid_arguments") from exc
