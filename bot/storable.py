"""Values a valid Alertmanager payload may carry but a database column cannot hold.

PostgreSQL refuses NUL characters in text columns, B-tree index rows over about 2,700 bytes
and integers beyond the column's range. Left to the database, each fails the intake
transaction like an outage, and a 503 makes Alertmanager resend the same notification
forever. So they are dealt with before anything is written, the same way on every database:
a count past the column's range is clamped (it only says "many"); a NUL character or an
indexed value too long for an index row is refused with a 422 naming the field, which
Alertmanager does not retry.
"""

from __future__ import annotations

from bot.alerts import AlertmanagerWebhook

__all__ = ["INDEXED_BYTES", "MAX_INT", "clamped", "problems"]

MAX_INT = 2**31 - 1  # INTEGER columns
# receiver and groupKey are indexed together (the open-incident key); PostgreSQL's limit for a
# B-tree entry is a third of an 8 kB page, less overhead.
INDEXED_BYTES = 2000


def problems(webhook: AlertmanagerWebhook, body: bytes | None = None) -> list[dict[str, str]]:
    """Each field that cannot be stored, as a dotted path and a message (like a 422 for a bad shape).

    `body`, the JSON it was parsed from, lets the walk for NUL characters be skipped when there
    can be none (the webhook's hot path): in JSON text a NUL inside a string can only be the
    escape `\\u0000`, and a body without NUL bytes is not UTF-16 or UTF-32."""
    found: list[dict[str, str]] = []
    if body is None or b"\x00" in body or b"\\u0000" in body:
        found.extend(_nul_characters(webhook))
    for index, alert in enumerate(webhook.alerts):
        if alert.fingerprint is not None and len(alert.fingerprint.encode()) > INDEXED_BYTES:
            found.append(
                {"field": f"alerts.{index}.fingerprint", "message": f"longer than {INDEXED_BYTES} bytes"}
            )
    if len(webhook.receiver.encode()) + len(webhook.groupKey.encode()) > INDEXED_BYTES:
        found.append(
            {
                "field": "groupKey",
                "message": f"receiver and groupKey together longer than {INDEXED_BYTES} bytes "
                "(a group_by label value too long to index)",
            }
        )
    return found


def _nul_characters(webhook: AlertmanagerWebhook) -> list[dict[str, str]]:
    found: list[dict[str, str]] = []

    def nul(path: str, value: str | None) -> None:
        if value is not None and "\x00" in value:
            found.append({"field": path, "message": "contains a NUL character, which cannot be stored"})

    for name in ("receiver", "groupKey", "externalURL", "status"):
        nul(name, getattr(webhook, name))
    for section in ("groupLabels", "commonLabels", "commonAnnotations"):
        for key, value in getattr(webhook, section).items():
            nul(f"{section}.{key}", key)
            nul(f"{section}.{key}", value)
    for index, alert in enumerate(webhook.alerts):
        for section in ("labels", "annotations"):
            for key, value in getattr(alert, section).items():
                nul(f"alerts.{index}.{section}.{key}", key)
                nul(f"alerts.{index}.{section}.{key}", value)
        nul(f"alerts.{index}.generatorURL", alert.generatorURL)
        nul(f"alerts.{index}.fingerprint", alert.fingerprint)
    return found


def clamped(webhook: AlertmanagerWebhook) -> AlertmanagerWebhook:
    if webhook.truncatedAlerts > MAX_INT:
        return webhook.model_copy(update={"truncatedAlerts": MAX_INT})
    return webhook
