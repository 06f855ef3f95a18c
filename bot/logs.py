"""Structured logging: JSON lines in production, readable text for humans, secrets never.

Messages are constant strings; the variable parts travel as `extra={...}` fields with fixed
names (`incident`, `group_key`, `job`, `action`, `slack_user`), so logs can be searched.
Every record passes through `redact()`, which blanks Slack tokens and bearer credentials
wherever they appear, including in exception text from libraries.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

__all__ = ["configure_logging", "redact"]

_SECRET = re.compile(
    r"(xox[abposr]-[A-Za-z0-9-]+|xapp-[A-Za-z0-9-]+|(?i:bearer)\s+[A-Za-z0-9._~+/=-]+|(?i:basic)\s+[A-Za-z0-9+/=]+)"
)
_STANDARD = set(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {"message", "asctime", "taskName"}


def redact(text: str) -> str:
    return _SECRET.sub(
        lambda m: m.group(0).split()[0] + " [redacted]" if " " in m.group(0) else "[redacted]", text
    )


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_fields(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(entry, default=str))


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extra = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        when = self.formatTime(record, "%H:%M:%S")
        line = f"{when} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if extra:
            line += f"  [{extra}]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redact(line)


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Library chatter that would otherwise print request bodies at DEBUG.
    for noisy in ("slack_sdk", "slack_bolt", "urllib3", "kubernetes", "httpx", "httpcore", "aiohttp"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, root.level))
