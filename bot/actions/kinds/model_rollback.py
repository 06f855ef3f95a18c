"""Model rollback: move an MLflow registry alias (`churn-xgb@champion`) back to the version it
pointed to before (as the bot saw it move, bot/registry/aliases.py), or to a given version.

Not a workload kind: it acts on the registry, so it is bound to the registry adapter and the
database (for the alias moves), and the flows call it by its own type. The plan stores the
version the alias pointed to when the person confirmed; before moving, the live alias is read
again and the rollback stops if someone moved it in between. MLflow has no dry run, so a dry
run shows the exact request and sends nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine

from bot.actions.changes import Change
from bot.actions.kinds.base import Outcome
from bot.actions.policy import ActionKind
from bot.actions.registry import ModelRollbackParams
from bot.db import transaction
from bot.errors import Conflict
from bot.registry.aliases import observe_alias
from bot.registry.mlflow import ModelRegistry
from bot.registry.models import ModelRef
from bot.registry.snapshot import VersionFacts, read_snapshot, version_facts

__all__ = ["MODEL_ROLLBACK", "ModelRollback", "alias_request"]

MAX_METRIC_LINES = 6


def alias_request(params: ModelRollbackParams, version: str) -> str:
    """The MLflow REST request the rollback sends, as shown in dry runs and the audit."""
    body = {"name": params.model, "alias": params.alias, "version": version}
    return f"POST /api/2.0/mlflow/registered-models/alias\n{json.dumps(body, indent=2)}"


def _metric_lines(now: VersionFacts, then: VersionFacts) -> list[str]:
    keys = sorted(set(now.metrics) | set(then.metrics))[:MAX_METRIC_LINES]

    def fmt(value: float | None) -> str:
        return f"{value:.4g}" if value is not None else "-"

    return [f"{key}: {fmt(now.metrics.get(key))} -> {fmt(then.metrics.get(key))}" for key in keys]


def _version_detail(label: str, facts: VersionFacts) -> str:
    v = facts.version
    parts = [f"{label} v{v.version}"]
    if v.created_at is not None:
        parts.append(f"registered {v.created_at:%Y-%m-%d %H:%M} UTC")
    if v.run_id:
        parts.append(f"run {v.run_id}")
    return ", ".join(parts)


@dataclass(frozen=True)
class ModelRollback:
    name: str = ActionKind.MODEL_ROLLBACK.value

    def plan(
        self, engine: Engine, registry: ModelRegistry, params: ModelRollbackParams
    ) -> tuple[Change, dict[str, Any]]:
        """Blocking. What will change: `churn-xgb@champion: v3 -> v2` with both runs' metrics."""
        snap = read_snapshot(engine, registry, ModelRef(params.model, params.alias))
        if snap.current is None:
            raise Conflict(f"{params.target} is not set in the model registry: there is nothing to roll back")
        current = snap.current.version.version
        if params.version is not None:
            target = version_facts(registry, registry.get_version(params.model, params.version))
        elif snap.before is not None:
            target = snap.before
        else:
            raise Conflict(
                f"{params.target} points to v{current} and no version before it is known: "
                f"name one, /rollback model {params.target} VERSION"
            )
        to = target.version.version
        if to == current:
            raise Conflict(f"{params.target} already points to v{to}")
        details = [
            _version_detail("now", snap.current),
            _version_detail("back to", target),
            *(f"metric {line}" for line in _metric_lines(snap.current, target)),
        ]
        if params.version is None:
            details.append(
                "the version before: where the alias pointed before, as the bot saw it"
                if snap.before_observed
                else "the version before: the next lower version (the bot never saw the alias elsewhere)"
            )
        change = Change(
            kind=self.name,
            verb="roll back",
            target=params.target,
            headline=f"v{current} -> v{to}",
            details=tuple(details),
            request=alias_request(params, to),
        )
        return change, {"from_version": current, "to_version": to}

    def execute(
        self,
        engine: Engine,
        registry: ModelRegistry,
        params: ModelRollbackParams,
        plan: Mapping[str, Any],
        actor: str,
    ) -> Outcome:
        """Blocking. Move the alias if it still points where it did at confirmation; read it
        back from MLflow to report what is true now."""
        before, to = str(plan["from_version"]), str(plan["to_version"])
        live = registry.alias_version(params.model, params.alias).version
        if live == to:
            # An earlier attempt (or someone else) already did it: nothing to send again.
            return Outcome(True, f"{params.target} already points to v{to}", {"before": live, "after": live})
        if live != before:
            return Outcome(
                False,
                f"{params.target} moved to v{live} since the rollback was confirmed (it was v{before}); "
                "nothing was changed: ask again to see the new plan",
            )
        registry.set_alias(params.model, params.alias, to)
        after = registry.alias_version(params.model, params.alias).version
        with transaction(engine) as session:
            observe_alias(session, params.model, params.alias, after, moved_by=actor)
        if after != to:
            return Outcome(False, f"MLflow accepted the move but {params.target} reads v{after}, not v{to}")
        return Outcome(
            True,
            f"rolled back {params.target}: v{before} -> v{to}",
            {"before": before, "after": after, "change": f"{params.target}: v{before} -> v{to}"},
        )


MODEL_ROLLBACK = ModelRollback()
