"""'What changed' before an alert: the deployment's recent rollouts, so that a bad model
rollout minutes before the alert stands out. Pure rendering of `Workloads.history()`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from bot.actions.kubernetes import Revision
from bot.slack.blocks import MAX_BLOCKS, Message, slack_date
from bot.text import code, literal, truncate

__all__ = ["what_changed_message"]

# A rollout this close before the alert began is the first suspect.
SUSPECT_WINDOW = timedelta(hours=2)
MAX_ROWS = 6


def _age(delta: timedelta) -> str:
    minutes = int(abs(delta.total_seconds()) // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours < 48 else f"{hours // 24} days"


def _describe(revision: Revision) -> str:
    parts = []
    if revision.model:
        version = f" {revision.model_version}" if revision.model_version else ""
        parts.append(f"model *{literal(revision.model)}{literal(version)}*")
    elif revision.model_version:
        parts.append(f"model version *{literal(revision.model_version)}*")
    images = ", ".join(f"`{code(image)}`" for image in revision.images.values())
    if images:
        parts.append(images)
    if revision.change_cause:
        parts.append(f"“{literal(truncate(revision.change_cause, 120))}”")
    return " · ".join(parts) or "no details"


def what_changed_message(
    incident_key: str,
    namespace: str,
    name: str,
    revisions: Sequence[Revision],
    *,
    started_at: datetime,
    lookback: timedelta,
) -> Message:
    target = f"{literal(namespace)}/{literal(name)}"
    recent = [r for r in revisions if r.created_at is not None and r.created_at >= started_at - lookback]
    current = next((r for r in revisions if r.current), None)
    lines: list[str] = []
    suspect: Revision | None = None
    for revision in sorted(recent, key=lambda r: r.revision, reverse=True)[:MAX_ROWS]:
        assert revision.created_at is not None
        delta = revision.created_at - started_at
        when = f"{_age(delta)} {'before' if delta <= timedelta(0) else 'after'} the alert"
        flag = ""
        if timedelta(0) <= -delta <= SUSPECT_WINDOW and suspect is None:
            suspect, flag = revision, "  :warning: *rolled out shortly before the alert*"
        marker = " (current)" if revision.current else ""
        lines.append(
            f"• revision *{revision.revision}*{marker}, {slack_date(revision.created_at)} ({when}): "
            f"{_describe(revision)}{flag}"
        )
    if lines:
        head = f":mag: *What changed* in `{target}` in the {_age(lookback)} before the alert:"
        body = "\n".join(lines)
    else:
        head = f":mag: *What changed* in `{target}`: no rollout in the {_age(lookback)} before the alert."
        body = f"Current: revision *{current.revision}*, {_describe(current)}" if current else ""
    text = truncate(f"{head}\n{body}".strip(), 3000)
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
    if suspect is not None and any(r.revision < suspect.revision for r in revisions):
        blocks.append(
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": f"If revision {suspect.revision} is the cause, `/rollback {target}` "
                        "returns to the revision before it (the policy decides who may).",
                    }
                ],
            }
        )
    fallback = f"{incident_key}: what changed in {namespace}/{name}"
    return {"text": fallback, "blocks": blocks[:MAX_BLOCKS]}
