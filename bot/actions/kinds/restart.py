"""Restart: a new rollout of the same template (`kubectl rollout restart`); refused for a
paused Deployment, which would not roll out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.actions.changes import Change, restart_change
from bot.actions.kinds.base import Outcome, outcome_of
from bot.actions.kubernetes import ActionResult, WorkloadsApi
from bot.actions.registry import ActionParams, RestartParams
from bot.errors import Conflict

__all__ = ["RESTART"]


def _params(params: ActionParams) -> RestartParams:
    assert isinstance(params, RestartParams), params
    return params


@dataclass(frozen=True)
class Restart:
    name: str = "restart"

    def plan(
        self, workloads: WorkloadsApi, params: ActionParams, now: datetime
    ) -> tuple[Change, dict[str, Any]]:
        p = _params(params)
        state = workloads.describe(p.namespace, p.deployment)
        if state.paused:
            raise Conflict("can't restart a paused deployment; resume it first (kubectl rollout resume)")
        return restart_change(state, now), {
            "from_revision": state.revision,
            "current_replicas": state.replicas,
        }

    def dry_run(self, workloads: WorkloadsApi, params: ActionParams, plan: Mapping[str, Any]) -> ActionResult:
        p = _params(params)
        return workloads.restart(p.namespace, p.deployment, dry_run=True)

    def execute(
        self, workloads: WorkloadsApi, params: ActionParams, plan: Mapping[str, Any], resumed: bool
    ) -> Outcome:
        p = _params(params)
        if resumed:
            state = workloads.describe(p.namespace, p.deployment)
            if state.revision != plan.get("from_revision"):
                return Outcome(
                    True,
                    f"restarted {p.target}: now revision {state.revision} (an earlier attempt)",
                    {"after": state.summary()},
                )
        return outcome_of(workloads.restart(p.namespace, p.deployment))


RESTART = Restart()
