"""A model rollback's second step: restarting the Deployments that serve the model, so pods
that load `models:/NAME@ALIAS` when they start pick up the version the alias moves to.

Which Deployments: those named with `--restart ns/deploy` (or a runbook action's own
parameters), else the ones the incident's alerts name, read as the deployment rollback reads
them (`namespace` with `deployment`, or the Deployment that owns the `pod`), from the label
sets that are about this registered model (or name no model at all). `restart: false`
(`--no-restart`) asks for none.

Each restart is decided by the policy as action `restart` on its namespace/deployment, next to
the `model_rollback` decision, at request, confirmation and approval time. What a careful
on-call tool does when the policy (or the cluster) will not allow a restart:

* **Asked for explicitly** (`--restart`, `restart: true`): the whole request is refused or
  fails, naming the restart and why. Moving the alias alone is not what was asked for.
* **Found in the incident's labels** (the default): the rollback goes ahead without that
  restart only with the requester told, in the plan's warning ("ml/churn-svc will NOT be
  restarted: ...; its pods keep serving the version they loaded"), and always asks for
  confirmation, whatever the policy says about confirming, so nobody moves an alias believing
  the servers reload it. A dry run shows the same.
* **Later** (at confirmation or approval), a planned restart the policy now refuses refuses
  the whole request: the person confirmed both steps; they ask again to see the new plan.

The combined decision: confirm when either asks; a dry run when either is one (nothing is
half done); the strictest approval requirement of the two (most approvers) applies.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from bot.actions.changes import Change, render_request, restart_request
from bot.actions.kinds.restart import RESTART
from bot.actions.kubernetes import WorkloadsApi
from bot.actions.policy import ActionKind, ActionRequest, Decision, Refusal, RefusalKind
from bot.actions.registry import RestartParams
from bot.errors import BotError
from bot.kpis.discovery import deployment_of_pod
from bot.kpis.models_file import ModelsFile
from bot.registry.models import model_of_labels

__all__ = [
    "RESTART_KEY",
    "RestartPlan",
    "combine",
    "describe",
    "plan_restarts",
    "restart_refusal",
    "restart_request_of",
    "serving_deployments",
    "skipped_text",
    "split",
]

#: The plan's key for the Deployments to restart after the alias moves ("ns/deploy", ...).
RESTART_KEY = "restart"
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DEPLOYMENT = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def split(target: str) -> tuple[str, str]:
    namespace, _, deployment = target.partition("/")
    return namespace, deployment


def serving_deployments(label_sets: Iterable[Mapping[str, str]], model: str, models: ModelsFile) -> list[str]:
    """`ns/deploy` of each Deployment the label sets name, for those about `model` (or about
    no model): `deployment`, else the owner of `pod`; names Kubernetes would refuse are skipped."""
    found: list[str] = []
    for labels in label_sets:
        ref = model_of_labels(labels, models)
        if ref is not None and ref.name != model:
            continue
        namespace = (labels.get("namespace") or "").strip()
        pod = (labels.get("pod") or "").strip()
        deployment = (labels.get("deployment") or "").strip() or (deployment_of_pod(pod) if pod else "")
        if not (_NAMESPACE.match(namespace) and _DEPLOYMENT.match(deployment)):
            continue
        target = f"{namespace}/{deployment}"
        if target not in found:
            found.append(target)
    return found


@dataclass(frozen=True)
class RestartPlan:
    """The Deployments to restart, with their revisions when planned (kept with the plan for
    the audit; execution records the revision it finds when it starts each restart, which is
    what a resumed job compares against), and why serving Deployments found in the labels will
    not be restarted (None: all will)."""

    targets: tuple[str, ...] = ()
    revisions: Mapping[str, int | None] | None = None
    skipped: str | None = None


def skipped_text(targets: Sequence[str], why: str) -> str:
    """The warning of a plan that leaves serving Deployments as they are."""
    return (
        f"{', '.join(targets)} will NOT be restarted: {why}. Only the alias moves: pods that loaded "
        "the model keep serving that version until they restart."
    )


def restart_request_of(actor: str, target: str, *, dry_run: bool = False) -> ActionRequest:
    namespace, deployment = split(target)
    return ActionRequest(ActionKind.RESTART, actor, namespace, deployment, dry_run=dry_run)


def restart_refusal(target: str, decision: Decision) -> Decision:
    """A restart's refusal, as the refusal of the whole model rollback it belongs to."""
    text = "; ".join(r.message for r in decision.refusals) or "refused"
    return replace(
        decision,
        refusals=(
            Refusal(
                decision.refusals[0].kind if decision.refusals else RefusalKind.ACTION,
                f"the restart of {target} after the model rollback is refused: {text}",
            ),
        ),
    )


def combine(model: Decision, restarts: Sequence[Decision]) -> Decision:
    """The model rollback's decision with its (allowed) restarts' folded in: confirm when one
    asks, a dry run when one is, the most demanding approvals."""
    decision = model
    for other in restarts:
        if other.dry_run and not decision.dry_run:
            decision = replace(
                decision, dry_run=True, dry_run_reason=f"{other.dry_run_reason} (the restart)", confirm=False
            )
        if not decision.dry_run and other.confirm and not decision.confirm:
            decision = replace(decision, confirm=True)
        if (
            not decision.dry_run
            and other.approvals is not None
            and other.approvals.required > decision.approvals_required
        ):
            decision = replace(decision, approvals=other.approvals)
    if decision.dry_run:
        decision = replace(decision, confirm=False, approvals=None)
    return decision


def plan_restarts(
    workloads: WorkloadsApi, targets: Sequence[str], now: datetime, *, asked: bool
) -> tuple[list[str], dict[str, int | None], list[str]]:
    """Blocking. Describe each Deployment (it exists, it is not paused): the ones to restart
    with their revisions, and for the ones that cannot be (only when not `asked`: then the
    error is raised) why not."""
    planned: list[str] = []
    revisions: dict[str, int | None] = {}
    problems: list[str] = []
    for target in targets:
        namespace, deployment = split(target)
        try:
            _, data = RESTART.plan(workloads, RestartParams(namespace=namespace, deployment=deployment), now)
        except BotError as exc:
            if asked:
                raise
            problems.append(f"{target} will NOT be restarted: {exc.message}")
            continue
        planned.append(target)
        revisions[target] = data.get("from_revision")
    return planned, revisions, problems


def describe(change: Change, to_version: str, restarts: RestartPlan, now: datetime) -> Change:
    """The model rollback's change with its restarts: a line per Deployment ("then restart
    ml/churn-xgb-predictor (rolling) so it loads v2"), their requests, and the warning when
    serving Deployments are left as they are."""
    lines = [f"then restart {t} (rolling) so it loads v{to_version}" for t in restarts.targets]
    requests = [render_request(restart_request(*split(t), now)) for t in restarts.targets]
    warning = change.warning
    if restarts.skipped:
        warning = f"{warning} {restarts.skipped}".strip() if warning else restarts.skipped
    return replace(
        change,
        details=(*change.details, *lines),
        request="\n\n".join([r for r in (change.request, *requests) if r]) or None,
        warning=warning,
    )
