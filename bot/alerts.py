"""Alertmanager's webhook payload (version 4), as real senders send it.

The wire model is lenient where real senders differ (old Alertmanagers without fingerprints
or per-alert status, hand-made payloads, unknown new fields such as `notification_reason`)
and strict where a payload could never be processed (no alerts, no labels, bad timestamps).
`normalize()` turns it into `ReceivedAlert`s with every quirk resolved in one place.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bot.errors import PayloadError
from bot.safe_json import load_json

__all__ = [
    "AlertmanagerAlert",
    "AlertmanagerWebhook",
    "ReceivedAlert",
    "describe_validation_error",
    "fingerprint_of",
    "normalize",
    "parse_webhook",
    "payload_digest",
    "unquote_receiver",
]

ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)
_EARLIEST = ZERO_TIME
_LATEST = datetime(9998, 12, 31, 23, 59, 59, tzinfo=UTC)
Status = Literal["firing", "resolved"]


class AlertmanagerAlert(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: Status | None = None
    labels: dict[str, str] = Field(min_length=1)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime
    endsAt: datetime | None = None
    generatorURL: str | None = None
    fingerprint: str | None = None

    @field_validator("startsAt", "endsAt")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("timestamp must carry a time zone (RFC 3339)")
        if value is not None and not (_EARLIEST <= value <= _LATEST):
            # At the edges of datetime's range, converting to UTC or adding a duration overflows.
            raise ValueError("timestamp out of range (years 0001 to 9998 in UTC)")
        return value


class AlertmanagerWebhook(BaseModel):
    model_config = ConfigDict(extra="allow")

    version: str = "4"
    groupKey: str = Field(min_length=1)
    # Stored in a 32-bit column; no Alertmanager truncates two billion alerts.
    truncatedAlerts: int = Field(0, ge=0, le=2**31 - 1)
    status: Status
    receiver: str
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""
    alerts: list[AlertmanagerAlert] = Field(min_length=1)

    @field_validator("version")
    @classmethod
    def _version_4(cls, value: str) -> str:
        if value != "4":
            raise ValueError(f"unsupported webhook payload version {value!r}; incident-bot reads version 4")
        return value


@dataclass(frozen=True)
class ReceivedAlert:
    fingerprint: str
    status: Status
    alertname: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    ends_at: datetime | None
    generator_url: str | None


def fingerprint_of(labels: dict[str, str]) -> str:
    """Alertmanager's own fingerprint (FNV-1a 64 over sorted names and values, each followed by
    0xff), so alerts from senders that omit it key the same way as those that send it."""
    digest = 0xCBF29CE484222325
    for name in sorted(labels):
        for part in (name, labels[name]):
            for byte in part.encode() + b"\xff":
                digest ^= byte
                digest = (digest * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{digest:016x}"


_QUOTED = re.compile(r"\\(.)")


def unquote_receiver(name: str) -> str:
    """Undo Go's regexp.QuoteMeta, which Alertmanager applies to the receiver name."""
    return _QUOTED.sub(r"\1", name)


def parse_webhook(body: bytes) -> AlertmanagerWebhook:
    """Raise PayloadError for JSON that is not JSON; ValidationError for a bad shape."""
    data = load_json(body)
    if not isinstance(data, dict):
        raise PayloadError("the body must be a JSON object (Alertmanager webhook payload)")
    return AlertmanagerWebhook.model_validate(data)


def payload_digest(webhook: AlertmanagerWebhook) -> str:
    """Identity of a notification: the same content gives the same digest, however it is
    spaced or ordered on the wire, so HA peers and resends are recognised."""
    canonical = json.dumps(webhook.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def normalize(webhook: AlertmanagerWebhook) -> list[ReceivedAlert]:
    result: list[ReceivedAlert] = []
    for alert in webhook.alerts:
        status: Status = alert.status or webhook.status
        ends_at = alert.endsAt if alert.endsAt and alert.endsAt > ZERO_TIME else None
        result.append(
            ReceivedAlert(
                fingerprint=(alert.fingerprint or fingerprint_of(alert.labels)).lower(),
                status=status,
                alertname=alert.labels.get("alertname", ""),
                labels=dict(alert.labels),
                annotations=dict(alert.annotations),
                starts_at=alert.startsAt.astimezone(UTC),
                ends_at=ends_at.astimezone(UTC) if ends_at and status == "resolved" else None,
                generator_url=alert.generatorURL or None,
            )
        )
    return result


def describe_validation_error(exc: ValidationError) -> list[dict[str, str]]:
    """Each failing field as a dotted path and a message, for a 422 body a human can act on."""
    return [
        {"field": ".".join(str(p) for p in err["loc"]) or "(body)", "message": err["msg"]}
        for err in exc.errors(include_url=False, include_input=False)
    ]
