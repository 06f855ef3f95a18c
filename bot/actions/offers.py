"""Turn a runbook's rendered action buttons into stored action offers.

The offer is what a button points at (its `value` is the record's id); clicking it starts
the action flow, which checks the policy for the person who clicked, plans the change,
asks for confirmation and approval, and runs it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlmodel import Session

from bot.actions.models import ActionRecord, ActionStatus
from bot.db import utcnow
from bot.runbooks.render import RenderedAction
from bot.runbooks.schema import SilenceParams

__all__ = ["OFFER_LIFETIME", "offer", "params_of"]

# A button on an incident stays usable while someone might still be working the incident.
OFFER_LIFETIME = timedelta(days=7)


def params_of(action: RenderedAction) -> dict[str, Any]:
    """JSON-safe parameters (durations as seconds plus the text the runbook used)."""
    if isinstance(action.params, SilenceParams):
        return {
            "duration_seconds": int(action.params.duration.total_seconds()),
            "duration": action.params.duration_text,
            "comment": action.params.comment,
        }
    return action.params.model_dump(mode="json")


def offer(session: Session, *, incident_id: int, action: RenderedAction, source: str) -> ActionRecord:
    params = params_of(action)
    target: str | None = None
    if "namespace" in params and "deployment" in params:
        target = f"{params['namespace']}/{params['deployment']}"
    elif "model" in params:
        # Without an alias the click resolves it (the models file, the model_alias label).
        target = f"{params['model']}@{params['alias']}" if params.get("alias") else str(params["model"])
    record = ActionRecord(
        incident_id=incident_id,
        kind=action.action,
        source=source,
        label=action.label,
        params=params,
        target=target,
        status=ActionStatus.OFFERED,
        expires_at=utcnow() + OFFER_LIFETIME,
    )
    session.add(record)
    session.flush()
    return record
