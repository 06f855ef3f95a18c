"""Scale: set a Deployment's replicas, with the accelerator check of a scale-up in the plan."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.actions.changes import Change, scale_change
from bot.actions.kinds.base import Outcome, outcome_of
from bot.actions.kubernetes import ActionResult, WorkloadsApi
from bot.actions.registry import ActionParams, ScaleParams

__all__ = ["SCALE"]


def _params(params: ActionParams) -> ScaleParams:
    assert isinstance(params, ScaleParams), params
    return params


@dataclass(frozen=True)
class Scale:
    name: str = "scale"

    def plan(
        self, workloads: WorkloadsApi, params: ActionParams, now: datetime
    ) -> tuple[Change, dict[str, Any]]:
        p = _params(params)
        scale = workloads.plan_scale(p.namespace, p.deployment, p.replicas)
        return scale_change(scale), {"current_replicas": scale.from_replicas, "gpu_fits": scale.fits}

    def dry_run(self, workloads: WorkloadsApi, params: ActionParams, plan: Mapping[str, Any]) -> ActionResult:
        p = _params(params)
        return workloads.scale(p.namespace, p.deployment, p.replicas, dry_run=True)

    def execute(
        self, workloads: WorkloadsApi, params: ActionParams, plan: Mapping[str, Any], resumed: bool
    ) -> Outcome:
        p = _params(params)
        return outcome_of(workloads.scale(p.namespace, p.deployment, p.replicas))


SCALE = Scale()
