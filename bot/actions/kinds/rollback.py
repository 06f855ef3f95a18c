"""Rollback: the previous (or a named) revision's pod template, like `kubectl rollout undo`.
The plan stores digests of both templates (never the templates: they may hold secrets), and
execution refuses when either changed since it was confirmed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.actions.changes import Change, rollback_change
from bot.actions.kinds.base import Outcome, outcome_of
from bot.actions.kubernetes import ActionResult, AlreadyMatches, PlanOutdated, WorkloadsApi, template_digest
from bot.actions.registry import ActionParams, RollbackParams

__all__ = ["ROLLBACK"]


def _params(params: ActionParams) -> RollbackParams:
    assert isinstance(params, RollbackParams), params
    return params


@dataclass(frozen=True)
class Rollback:
    name: str = "rollback"

    def plan(
        self, workloads: WorkloadsApi, params: ActionParams, now: datetime
    ) -> tuple[Change, dict[str, Any]]:
        p = _params(params)
        plan = workloads.plan_rollback(p.namespace, p.deployment, p.revision)
        return rollback_change(plan), {
            "from_revision": plan.from_revision,
            "to_revision": plan.to_revision,
            "target_replicaset": plan.target.replicaset,
            "current_digest": template_digest(plan.current_template),
            "target_digest": template_digest(plan.template),
            "current_replicas": plan.current.replicas,
        }

    def dry_run(self, workloads: WorkloadsApi, params: ActionParams, plan: Mapping[str, Any]) -> ActionResult:
        p = _params(params)
        to_revision = plan.get("to_revision") or p.revision
        return workloads.rollback(p.namespace, p.deployment, to_revision, dry_run=True)

    def execute(
        self, workloads: WorkloadsApi, params: ActionParams, plan: Mapping[str, Any], resumed: bool
    ) -> Outcome:
        """Re-validate the confirmed plan against the live Deployment, then roll back."""
        p = _params(params)
        target = str(plan.get("target_replicaset") or "")
        if target:
            current = next((r for r in workloads.history(p.namespace, p.deployment) if r.current), None)
            if current is not None and current.replicaset == target:
                state = workloads.describe(p.namespace, p.deployment)
                if resumed:
                    return Outcome(
                        True,
                        f"rolled back {p.target} to ReplicaSet {target} (an earlier attempt)",
                        {"after": state.summary()},
                    )
                running = state.model_label() or ", ".join(state.images.values())
                raise AlreadyMatches(
                    f"skipped: {p.target} already runs the template this rollback would restore "
                    f"(now revision {state.revision}, {running}); "
                    "someone rolled it back already, nothing was changed",
                    revision=current.revision,
                )
        fresh = workloads.plan_rollback(p.namespace, p.deployment, plan.get("to_revision"))
        if template_digest(fresh.current_template) != plan.get("current_digest"):
            now = fresh.current.model_label() or ", ".join(fresh.current.images.values())
            raise PlanOutdated(
                f"{p.target} changed since the rollback was confirmed (it is now revision "
                f"{fresh.from_revision}, {now}); "
                "nothing was changed: review it and ask again"
            )
        if template_digest(fresh.template) != plan.get("target_digest") or (
            target and fresh.target.replicaset != target
        ):
            raise PlanOutdated(
                f"revision {plan.get('to_revision')} of {p.target} changed since the rollback was "
                "confirmed; nothing was changed: review it and ask again"
            )
        return outcome_of(workloads.rollback(fresh))


ROLLBACK = Rollback()
