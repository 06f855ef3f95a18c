"""Carrying out a confirmed model rollback: move the alias (bot/actions/kinds/model_rollback.py),
then restart each Deployment of the plan's `restart` (bot/actions/kinds/restart.py), once.

Exactly once across a crash or a retried job: each step's progress is written to the action
record's `result.steps` in its own transaction (the alias: done with its outcome; a restart:
`started` with the revision it found, before the request, then `done`). A resumed job skips
what is done and, for a restart that was started, first checks whether the Deployment's
revision moved (the restart happened) before restarting it again. Each finished step is an
event on the incident's timeline with the requester as its actor.

A restart that fails after the alias moved is reported as what it is: the alias is on the
new version, this Deployment was not restarted (and which were), and what to run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
from sqlalchemy.engine import Engine
from sqlmodel import Session

from bot.actions import store as action_store
from bot.actions.kinds.base import Outcome
from bot.actions.kinds.model_rollback import MODEL_ROLLBACK
from bot.actions.kinds.restart import RESTART
from bot.actions.kubernetes import KUBERNETES_MISSING, WorkloadsApi
from bot.actions.models import ActionRecord
from bot.actions.registry import ModelRollbackParams, RestartParams
from bot.db import transaction
from bot.errors import BotError, RetryableUpstreamError
from bot.flows.model_restarts import RESTART_KEY, split
from bot.incidents.lifecycle import Actor
from bot.registry.mlflow import ModelRegistry

__all__ = ["STEPS", "run_model_rollback"]

T = TypeVar("T")

#: The action record's `result` key holding each step's progress.
STEPS = "steps"
_ALIAS = "alias"


@dataclass
class _Run:
    engine: Engine
    registry: ModelRegistry
    workloads: WorkloadsApi
    record: ActionRecord
    params: ModelRollbackParams
    within_deadline: Callable[[], bool]

    @property
    def actor(self) -> Actor | None:
        record = self.record
        return Actor(record.requested_by, record.requested_by_name) if record.requested_by else None

    async def db(self, work: Callable[[Session], T]) -> T:
        def run() -> T:
            with transaction(self.engine) as session:
                return work(session)

        return await anyio.to_thread.run_sync(run)

    async def note(self, key: str, progress: Mapping[str, Any], event: str | None = None) -> None:
        """Record one step's progress (and its timeline event) in a transaction of its own."""
        record_id = self.record.id
        assert record_id is not None

        def work(session: Session) -> None:
            record = action_store.get_record(session, record_id, for_update=True)
            result = dict(record.result or {})
            result[STEPS] = {**(result.get(STEPS) or {}), key: dict(progress)}
            record.result = result
            session.add(record)
            if event:
                action_store.event(session, record, event, by=self.actor, data={"step": key})

        await self.db(work)

    async def run(self) -> Outcome:
        plan = self.record.plan or {}
        steps: Mapping[str, Any] = (self.record.result or {}).get(STEPS) or {}
        targets = [str(t) for t in plan.get(RESTART_KEY) or []]
        total = 1 + len(targets)
        done_alias = steps.get(_ALIAS) or {}
        if done_alias.get("ok"):
            moved = Outcome(True, str(done_alias.get("text")), dict(done_alias.get("result") or {}))
        else:
            engine, registry, params, plan_ = self.engine, self.registry, self.params, plan
            actor = self.record.requested_by or ""
            moved = await anyio.to_thread.run_sync(
                lambda: MODEL_ROLLBACK.execute(engine, registry, params, plan_, actor)
            )
            if not moved.ok or not targets:
                return moved
            await self.note(
                _ALIAS,
                {"ok": True, "text": moved.text, "result": moved.result},
                f"Step 1 of {total}: {moved.text}",
            )
        if not targets:
            return moved
        to = str(plan.get("to_version"))
        restarted: list[str] = []
        for number, target in enumerate(targets, start=2):
            progress = steps.get(target) or {}
            if progress.get("status") == "done":
                restarted.append(target)
                continue
            try:
                text = await self._restart(target, progress, number, total, to)
            except RetryableUpstreamError as exc:
                if self.within_deadline():
                    raise
                return self._failed(moved, to, target, exc.message, restarted, targets)
            except BotError as exc:
                return self._failed(moved, to, target, exc.message, restarted, targets)
            restarted.append(target)
            steps = {**steps, target: {"status": "done", "text": text}}
        loads = "it loads" if len(targets) == 1 else "they load"
        return Outcome(
            True,
            f"{moved.text}; then restarted {', '.join(targets)} so {loads} v{to}",
            {**moved.result, "restarted": targets},
        )

    async def _restart(
        self, target: str, progress: Mapping[str, Any], number: int, total: int, to: str
    ) -> str:
        workloads = self.workloads
        if not workloads.available:
            raise BotError(KUBERNETES_MISSING)
        namespace, deployment = split(target)
        params = RestartParams(namespace=namespace, deployment=deployment)
        if progress.get("status") == "started":
            # An earlier attempt may have sent the restart: RESTART checks whether the revision moved.
            resumed, revision = True, progress.get("from_revision")
        else:
            state = await anyio.to_thread.run_sync(lambda: workloads.describe(namespace, deployment))
            if state.paused:
                raise BotError(f"{target} is paused; a restart would not roll out (kubectl rollout resume)")
            resumed, revision = False, state.revision
            await self.note(target, {"status": "started", "from_revision": revision})
        restart_plan = {"from_revision": revision}
        outcome = await anyio.to_thread.run_sync(
            lambda: RESTART.execute(workloads, params, restart_plan, resumed)
        )
        if not outcome.ok:
            raise BotError(outcome.text)
        text = f"restarted {target} so it loads v{to} ({outcome.text})"
        await self.note(
            target,
            {"status": "done", "text": text, "result": outcome.result},
            f"Step {number} of {total}: {text}",
        )
        return text

    def _failed(
        self, moved: Outcome, to: str, target: str, error: str, restarted: list[str], targets: list[str]
    ) -> Outcome:
        namespace, deployment = split(target)
        left = [t for t in targets if t not in restarted]
        parts = [
            f"{moved.text}, but the restart of {target} failed: {error}",
            f"The alias stays on v{to}; not restarted: {', '.join(left)}, whose pods keep serving the "
            "version they loaded until they restart",
        ]
        if restarted:
            parts.append(f"restarted already: {', '.join(restarted)}")
        parts.append(
            f"To load v{to}, restart it yourself: kubectl rollout restart deployment/{deployment} "
            f"-n {namespace} (or the runbook's Restart button)"
        )
        return Outcome(
            False, ". ".join(parts), {**moved.result, "restarted": restarted, "not_restarted": left}
        )


async def run_model_rollback(
    engine: Engine,
    registry: ModelRegistry,
    workloads: WorkloadsApi,
    record: ActionRecord,
    params: ModelRollbackParams,
    within_deadline: Callable[[], bool],
) -> Outcome:
    """Move the alias, then restart the plan's Deployments; see the module docstring."""
    return await _Run(engine, registry, workloads, record, params, within_deadline).run()
