"""What every kind of action on a workload provides (`WorkloadKind`), and the outcome of
carrying one out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from bot.actions.changes import Change
from bot.actions.kubernetes import ActionResult, WorkloadsApi
from bot.actions.registry import ActionParams

__all__ = ["Outcome", "WorkloadKind", "outcome_of"]


@dataclass
class Outcome:
    ok: bool
    text: str
    result: dict[str, Any] = field(default_factory=dict)


def outcome_of(result: ActionResult) -> Outcome:
    return Outcome(
        True,
        result.message,
        {
            "before": result.before.summary(),
            "after": result.after.summary(),
            "change": result.describe_change(),
            "attempts": result.attempts,
        },
    )


class WorkloadKind(Protocol):
    """One kind of action on a Deployment. Blocking calls (the Kubernetes client); the flows
    run them in a worker thread. `plan` is what the record stores and every later step
    re-checks; `params` is the kind's parameter model from bot/actions/registry.py."""

    @property
    def name(self) -> str: ...

    def plan(
        self, workloads: WorkloadsApi, params: ActionParams, now: datetime
    ) -> tuple[Change, dict[str, Any]]:
        """What it will change (for the confirmation) and the plan to store."""
        ...

    def dry_run(self, workloads: WorkloadsApi, params: ActionParams, plan: Mapping[str, Any]) -> ActionResult:
        """The exact request, sent with dryRun=All."""
        ...

    def execute(
        self, workloads: WorkloadsApi, params: ActionParams, plan: Mapping[str, Any], resumed: bool
    ) -> Outcome:
        """Carry it out; `resumed` when an earlier attempt may have done it already."""
        ...
