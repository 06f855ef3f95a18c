"""Remediation from Slack, from the request to the queued execution.

    request -> policy -> plan -> [confirm] -> [approve] -> queued -> executor -> verified
      |          |        |         |            |
      +- refused +- failed +- cancelled/expired  +- rejected/expired        (each audited)

Every request, allowed or not, becomes an `ActionRecord` (the audit trail, with who asked,
the plan, the result or the reason), and when it belongs to an incident an `action` event on
its timeline and a line in its thread. A runbook button's offer is never itself advanced: a
click copies it into a new record, so one refusal does not use up the button for others.

States of a record and who moves it (each move is a conditional UPDATE on the expected
state, committed with its timeline event and its messages; `bot/actions/store.py`):

    awaiting_confirmation --Confirm (requester)--> awaiting_approval | queued
    awaiting_confirmation --Cancel (requester) / timeout--> cancelled | expired
    awaiting_approval --Approve (another permitted user, N times)--> queued
    awaiting_approval --Reject (an approver, or the requester withdrawing) / timeout--> cancelled | expired
    queued --executor--> running --> succeeded | failed          (bot/flows/execution.py)
    new request --> refused | failed | dry_run                   (finished at once)

Only the requester confirms: the confirmation is "I saw exactly this change", and it is shown
to them alone (ephemeral). Another responder who wants the same change asks for it
themselves, and the target lock and the cooldown keep the two from both running. Approvals
must come from a different permitted user (`can_approve`), counted until the rule's
`approvers.required` is met.

At each click the policy is decided again for the requester (the cooldown clock has moved, a
lock may be held), the record's state and expiry are checked, and the click's Slack request
identity is claimed in the same transaction, so a retried delivery or a double click advances
a record at most once. The plan itself is re-validated by the executor against the live
Deployment (a rollback whose template changed since it was confirmed is not run).

Kubernetes and Alertmanager calls block or wait on the network: they run here after the
Slack ack, never before it, and database work runs in worker threads.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar

import anyio
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from bot.actions import store as action_store
from bot.actions.changes import (
    Change,
    created_by,
    matchers_text,
    render_request,
    silence_change,
    silence_matches,
)
from bot.actions.kinds import workload_kind
from bot.actions.kinds.model_rollback import MODEL_ROLLBACK
from bot.actions.kubernetes import (
    KUBERNETES_MISSING,
    NoKubernetes,
    WorkloadsApi,
)
from bot.actions.models import ActionRecord, ActionStatus
from bot.actions.policy import ActionKind, ActionRequest, Decision, Policy, can_approve
from bot.actions.registry import (
    ActionParams,
    ModelRollbackParams,
    ScaleParams,
    SilenceParams,
    WorkloadParams,
    parse_params,
    spec_of,
)
from bot.actions.silences import SILENCES_MISSING, NoAlertmanager, Silences, matchers_for_alert
from bot.db import transaction, utcnow
from bot.errors import BotError, ConfigError, Conflict, PayloadError
from bot.flows import model_restarts
from bot.flows.model_restarts import RestartPlan
from bot.flows.requests import Answer, Invocation
from bot.incidents import jobs, store
from bot.incidents.lifecycle import Actor
from bot.incidents.models import Alert, AlertStatus, Incident, IncidentStatus
from bot.kpis.models_file import ModelsFile
from bot.metrics import BotMetrics
from bot.registry.mlflow import REGISTRY_MISSING, ModelRegistry, NoRegistry
from bot.registry.models import model_of_labels, rollback_values, spec_for_registered
from bot.slack import action_blocks as blocks
from bot.slack.blocks import Message
from bot.slack.usergroups import UserGroups
from bot.text import code, escape, literal

__all__ = [
    "APPROVAL_TTL",
    "CONFIRM_TTL",
    "KUBERNETES_MISSING",
    "SILENCES_MISSING",
    "ActionFlows",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

CONFIRM_TTL = timedelta(minutes=10)
APPROVAL_TTL = timedelta(hours=1)
MAX_SILENCED_ALERTS = 20
LOCK_ATTEMPT = "incident_bot.lock_attempt"  # Session.info key: whose lock a transaction takes
POD_TEMPLATE_HASH = "pod-template-hash"


# ---------------------------------------------------------------------------------------------
# Pure helpers


def _policy_request(record: ActionRecord, actor: str) -> ActionRequest:
    kind = ActionKind(record.kind)
    params, plan = record.params or {}, record.plan or {}
    if kind is ActionKind.SILENCE:
        return ActionRequest.for_silence(
            actor, plan.get("scope") or {}, duration=timedelta(seconds=int(params.get("duration_seconds", 0)))
        )
    if kind is ActionKind.MODEL_ROLLBACK:
        return ActionRequest(kind, actor, None, None, model=params.get("model"), alias=params.get("alias"))
    return ActionRequest(
        kind,
        actor,
        params.get("namespace"),
        params.get("deployment"),
        replicas=params.get("replicas"),
        current_replicas=plan.get("current_replicas"),
    )


def _state_text(record: ActionRecord) -> str:
    what = f"{record.kind} of {record.target or 'the alerts'}"
    return {
        ActionStatus.OFFERED: f"The {what} has not been asked for yet.",
        ActionStatus.AWAITING_CONFIRMATION: f"The {what} is waiting for its requester to confirm it.",
        ActionStatus.AWAITING_APPROVAL: f"The {what} is waiting for approval.",
        ActionStatus.QUEUED: f"The {what} was already confirmed and is about to run.",
        ActionStatus.RUNNING: f"The {what} is already running.",
        ActionStatus.SUCCEEDED: f"The {what} already ran.",
        ActionStatus.FAILED: f"The {what} already ran and failed: {record.error or 'see the thread'}.",
        ActionStatus.REFUSED: f"The {what} was refused: {record.error or ''}",
        ActionStatus.CANCELLED: f"The {what} was cancelled.",
        ActionStatus.EXPIRED: f"The {what} expired; ask for it again.",
        ActionStatus.DRY_RUN: f"The {what} was a dry run; nothing to do.",
    }.get(ActionStatus(record.status), f"The {what} is {record.status}.")


def _labels_scope(incident: Incident, alerts: Sequence[Alert]) -> dict[str, str]:
    """The labels the policy scopes a silence by: what every alert of the incident shares."""
    if incident.common_labels:
        return dict(incident.common_labels)
    return dict(alerts[0].labels) if alerts else {}


# ---------------------------------------------------------------------------------------------
# Results of the database steps


@dataclass
class _Step:
    """What a transaction decided, for the answer after it committed."""

    message: Message | None = None
    replace: bool = False
    jobs: int = 0
    outcome: str | None = None  # for /metrics: refused, dry_run, failed, cancelled, expired
    kind: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Context:
    incident: Incident | None
    alerts: list[Alert]


def _start(
    session: Session,
    rec: ActionRecord,
    expected: ActionStatus,
    now: datetime,
    who: Invocation,
    busy_note: str,
    **values: Any,
) -> _Step | None:
    """Take the target's lock and queue the execution; None when it is queued, else the answer
    for the person who clicked (the target is busy, or the record has already moved on)."""
    # Two replicas can both find the target free; the loser's insert of the lock fails when
    # it flushes, rolling back this transaction. `_read_write` then audits the attempt from this.
    session.info[LOCK_ATTEMPT] = (rec.id, who.user, busy_note)
    try:
        queued = action_store.queue_execution(session, rec, [expected], now, **values)
    except Conflict as busy:
        action_store.event(session, rec, f"{busy_note}: {busy.message}", by=who.user)
        return _Step(blocks.notice_message(f":hourglass: {busy.message}"))
    if not queued:
        return _Step(blocks.notice_message(f":information_source: {_state_text(rec)}"))
    return None


@dataclass
class ActionFlows:
    engine: Engine
    policy: Policy
    groups: UserGroups
    metrics: BotMetrics
    wake: Callable[[], None]
    #: INCIDENT_BOT_MODELS_FILE: served model names -> registered models and serving aliases.
    models: ModelsFile
    workloads: WorkloadsApi = field(default_factory=NoKubernetes)
    silences: Silences = field(default_factory=NoAlertmanager)
    clock: Callable[[], datetime] = utcnow
    registry: ModelRegistry = field(default_factory=NoRegistry)

    # ================================================================= entry points
    async def offer_clicked(self, offer_id: str, who: Invocation, answer: Answer | None) -> None:
        """A runbook button: its stored offer says what; the click starts a new request."""
        offer = await self._read(lambda s: action_store.get_record(s, offer_id))
        if offer.status != ActionStatus.OFFERED:
            raise Conflict(f"button #{offer.id} is not an action offer")
        if offer.expires_at is not None and offer.expires_at <= self.clock():
            raise Conflict(
                f"this button expired {offer.expires_at:%Y-%m-%d %H:%M} UTC; use /rollback, /scale or "
                "/incident silence instead"
            )
        await self.request(
            offer.kind,
            offer.params,
            who,
            answer,
            incident_id=offer.incident_id,
            source=f"offer:{offer.id} {offer.source}",
            label=offer.label,
        )

    async def request(
        self,
        kind: str,
        raw: Mapping[str, Any],
        who: Invocation,
        answer: Answer | None,
        *,
        incident_id: int | None = None,
        find_incident: bool = False,
        source: str,
        label: str = "",
        dry_run: bool = False,
    ) -> None:
        """One request for an action, from a button or a command, up to its first stop."""
        if kind == ActionKind.MODEL_ROLLBACK.value:
            given = raw
            raw = await self._read(lambda s: self._model_values(s, given, incident_id, find_incident))
        params = parse_params(kind, raw)
        spec = spec_of(kind)
        context = await self._read(lambda s: self._context(s, params, incident_id, find_incident))
        incident = context.incident
        actor = who.user
        base = ActionRecord(
            incident_id=incident.id if incident else None,
            kind=spec.kind.value,
            source=source,
            label=label or f"{spec.verb} {getattr(params, 'target', '')}".strip(),
            params=params.model_dump(mode="json"),
            target=params.target if not isinstance(params, SilenceParams) else None,
            requested_by=actor.id,
            requested_by_name=actor.name,
            plan={"channel": who.channel_id},
        )
        if isinstance(params, SilenceParams):
            if incident is None:
                raise PayloadError(
                    "a silence belongs to an incident: use /incident silence INC-<n> <duration> <reason>"
                )
            if incident.status == IncidentStatus.RESOLVED:
                raise Conflict(
                    f"{incident.key} is resolved; its alerts no longer fire, so there is nothing to silence"
                )
            if not context.alerts:
                raise Conflict(f"{incident.key} has no alerts to silence")
            base.plan = {**base.plan, "scope": _labels_scope(incident, context.alerts)}

        # Configuration first: nothing else matters if the action cannot be carried out here.
        missing = None
        if spec.workload and not self.workloads.available:
            missing = KUBERNETES_MISSING
        elif isinstance(params, SilenceParams) and not self.silences.available:
            missing = SILENCES_MISSING
        elif isinstance(params, ModelRollbackParams) and not self.registry.available:
            missing = REGISTRY_MISSING
        restarts = RestartPlan()
        if missing is None and isinstance(params, ModelRollbackParams):
            try:
                restarts = self._restart_targets(params, context)
            except BotError as exc:
                missing = exc.message
        if missing is not None:
            await self._finish_new(who, answer, base, ActionStatus.FAILED, missing, None)
            return

        now = self.clock()
        groups = await self.groups.of(actor.id) if self.policy.configured else frozenset()
        policy_request = self._policy_request_of(base, actor.id, params, dry_run)
        last = await self._read(lambda s: action_store.last_action_at(s, base.kind, base.target))
        decision = self.policy.decide(policy_request, user_groups=groups, now=now, last_action_at=last)
        if not decision.allowed:
            await self._refuse_new(who, answer, base, decision, None)
            return
        if isinstance(params, ModelRollbackParams) and restarts.targets:
            decided = await self._decide_restarts(params, restarts, actor.id, groups, now, dry_run)
            if isinstance(decided, Decision):
                await self._refuse_new(who, answer, base, decided, None)
                return
            restarts, restart_decisions = decided
            decision = model_restarts.combine(decision, restart_decisions)
        if not decision.dry_run:
            for target in [base.target, *restarts.targets]:
                if not target:
                    continue
                busy = await self._read(partial(self._busy, target=target, now=now))
                if busy is not None:
                    await self._finish_new(who, answer, base, ActionStatus.REFUSED, busy, None, refusal=True)
                    return

        try:
            if isinstance(params, ModelRollbackParams):
                change, plan_data = await self._plan_model(params, restarts, now)
            else:
                change, plan_data = await self._plan(params, base, context, actor.id, actor.name, now)
        except BotError as exc:
            await self._finish_new(who, answer, base, ActionStatus.FAILED, exc.message, None)
            return
        base.plan = {**base.plan, **plan_data, "change": change.to_dict()}
        if plan_data.get("restart_skipped") and not decision.confirm and not decision.dry_run:
            # Serving Deployments will not reload the version: the requester sees that before
            # the alias moves, whatever the policy says about confirming.
            decision = replace(decision, confirm=True)
        if isinstance(params, ScaleParams):
            # The scale's direction is known now: a scale-down asks for confirmation.
            policy_request = self._policy_request_of(base, actor.id, params, dry_run)
            decision = self.policy.decide(policy_request, user_groups=groups, now=now, last_action_at=last)
            if not decision.allowed:
                await self._refuse_new(who, answer, base, decision, change)
                return
            if change.warning and not decision.confirm and not decision.dry_run:
                # A scale-up the cluster may not have the GPUs for is confirmed, whatever the
                # policy says about scale-ups: the responder should see that before it runs.
                decision = replace(decision, confirm=True)
        base.plan = {**base.plan, **self._decision_data(decision)}

        if decision.dry_run:
            await self._dry_run(who, answer, base, params, change, decision)
            return
        if decision.confirm:
            await self._ask_confirmation(who, answer, base, change, decision, now)
        elif decision.approvals is not None:
            await self._ask_approval_new(who, answer, base, change, decision, now)
        else:
            await self._queue_new(who, answer, base, change, now)

    async def confirm(self, record_id: str, who: Invocation, answer: Answer | None) -> None:
        record = await self._read(lambda s: action_store.get_record(s, record_id))
        groups = await self._groups_of(record.requested_by)

        def work(session: Session) -> _Step | None:
            if not store.claim_request(session, who.request_key, incident_id=record.incident_id):
                return None
            rec = action_store.get_record(session, record_id, for_update=True)
            change = Change.from_dict(rec.plan.get("change") or {})
            if rec.status != ActionStatus.AWAITING_CONFIRMATION:
                return _Step(blocks.notice_message(f":information_source: {_state_text(rec)}"))
            if who.user.id != rec.requested_by:
                return _Step(
                    blocks.notice_message(
                        f":information_source: Only <@{rec.requested_by}> can confirm their request; "
                        "ask for it yourself if you want it."
                    )
                )
            expired = self._expire_if_due(session, rec, change)
            if expired is not None:
                return expired
            now = self.clock()
            decision = self._redecide(session, rec, groups, now)
            if not decision.allowed or decision.dry_run:
                return self._refuse_existing(session, rec, change, decision, who)
            if decision.approvals is not None:
                return self._to_approval(session, rec, change, decision, now, who, confirmed=True)
            not_started = _start(
                session,
                rec,
                ActionStatus.AWAITING_CONFIRMATION,
                now,
                who,
                f"{rec.kind} {rec.target} not started",
            )
            if not_started is not None:
                return not_started
            action_store.event(
                session,
                rec,
                f"{who.user.label} confirmed: {change.sentence()}; running",
                by=who.user,
            )
            return _Step(
                blocks.notice_message(
                    f":arrow_forward: Confirmed: {_what(change)} is running; "
                    "the result will be posted "
                    + ("in the incident's thread." if rec.incident_id else "in this channel.")
                ),
                replace=True,
                jobs=1,
            )

        await self._run(work, answer)

    async def cancel(self, record_id: str, who: Invocation, answer: Answer | None) -> None:
        def work(session: Session) -> _Step | None:
            if not store.claim_request(session, who.request_key):
                return None
            rec = action_store.get_record(session, record_id, for_update=True)
            change = Change.from_dict(rec.plan.get("change") or {})
            if rec.status != ActionStatus.AWAITING_CONFIRMATION:
                return _Step(blocks.notice_message(f":information_source: {_state_text(rec)}"))
            if who.user.id != rec.requested_by:
                return _Step(
                    blocks.notice_message(
                        f":information_source: Only <@{rec.requested_by}> can cancel their request."
                    )
                )
            if not action_store.advance(
                session,
                rec,
                [ActionStatus.AWAITING_CONFIRMATION],
                ActionStatus.CANCELLED,
                error="cancelled by the requester",
            ):
                return _Step(blocks.notice_message(f":information_source: {_state_text(rec)}"))
            action_store.event(
                session,
                rec,
                f"{who.user.label} cancelled: {change.sentence()}",
                by=who.user,
            )
            return _Step(
                blocks.notice_message(f":no_entry_sign: Cancelled: {_what(change)}. Nothing was changed."),
                replace=True,
                outcome="cancelled",
                kind=rec.kind,
            )

        await self._run(work, answer)

    async def approve(self, record_id: str, who: Invocation, answer: Answer | None) -> None:
        await self._decide_approval(record_id, who, answer, approve=True)

    async def reject(self, record_id: str, who: Invocation, answer: Answer | None) -> None:
        await self._decide_approval(record_id, who, answer, approve=False)

    # ------------------------------------------------------------------ silences
    async def silence(
        self,
        incident_id: int,
        duration_seconds: int,
        duration: str,
        reason: str,
        who: Invocation,
        answer: Answer | None,
        *,
        dry_run: bool = False,
    ) -> None:
        await self.request(
            ActionKind.SILENCE,
            {"duration_seconds": duration_seconds, "duration": duration, "comment": reason},
            who,
            answer,
            incident_id=incident_id,
            source="command:/incident silence",
            label=f"Silence for {duration}",
            dry_run=dry_run,
        )

    async def list_silences(self, incident_id: int, answer: Answer | None) -> None:
        incident, alerts, ours = await self._read(lambda s: self._incident_silences(s, incident_id))
        if not self.silences.available:
            raise Conflict(SILENCES_MISSING)
        active = await self.silences.list(active_only=True)
        lines = [
            blocks.SilenceLine(
                id=s.id,
                matchers=matchers_text(s.matchers),
                ends_at=s.ends_at,
                created_by=s.created_by,
                comment=s.comment,
                by_bot=s.id in ours,
            )
            for s in active
            if s.id in ours or any(silence_matches(s, a.labels) for a in alerts)
        ]
        if answer is not None:
            await answer(blocks.silences_message(incident.key, lines))

    async def unsilence(
        self, incident_id: int, silence_id: str, who: Invocation, answer: Answer | None
    ) -> None:
        if not self.silences.available:
            raise Conflict(SILENCES_MISSING)
        incident, alerts, ours = await self._read(lambda s: self._incident_silences(s, incident_id))
        groups = await self.groups.of(who.user.id) if self.policy.configured else frozenset()
        request = ActionRequest.for_silence(who.user.id, _labels_scope(incident, alerts))
        decision = self.policy.decide(request, user_groups=groups, now=self.clock(), last_action_at=None)
        if not decision.allowed:
            reasons = decision.message
            await self._read_write(
                lambda s: self._note(
                    s, incident.id, f"{who.user.label} may not expire silence {silence_id}: {reasons}", who
                )
            )
            if answer is not None:
                await answer(
                    blocks.refusal_message(
                        None, action="expire a silence of", target=incident.key, reasons=reasons
                    )
                )
            return
        silence = await self.silences.get(silence_id)
        if silence.id not in ours and not any(silence_matches(silence, a.labels) for a in alerts):
            raise Conflict(f"silence {silence.id} does not silence any alert of {incident.key}")
        if silence.state == "expired":
            if answer is not None:
                await answer(
                    blocks.notice_message(f":information_source: Silence `{silence.id}` has already expired.")
                )
            return
        await self.silences.expire(silence.id)

        def record(session: Session) -> None:
            inc = store.get_incident(session, incident_id)
            store.add_event(
                session,
                inc,
                "action",
                f"{who.user.label} expired silence {silence.id} ({matchers_text(silence.matchers)})",
                actor=who.user.id,
                actor_name=who.user.name,
                data={"action": "unsilence", "silence_id": silence.id},
            )
            action_store.mark_expired(session, inc, [silence.id], by=who.user.id)
            jobs.reply(
                session,
                inc,
                blocks.notice_message(
                    f":bell: <@{who.user.id}> ended silence `{silence.id}` of {inc.key}: "
                    "its alerts notify again."
                ),
            )

        await self._read_write(record)
        self.wake()
        if answer is not None:
            await answer(
                blocks.notice_message(
                    f":bell: Silence `{silence.id}` expired; {incident.key}'s alerts notify again."
                )
            )

    # ================================================================= request steps
    def _context(
        self, session: Session, params: ActionParams, incident_id: int | None, find_incident: bool
    ) -> _Context:
        incident: Incident | None = None
        if incident_id is not None:
            incident = store.get_incident(session, incident_id)
        elif find_incident and isinstance(params, ModelRollbackParams):
            incident = _incident_for_model(session, params.model, self.models)
        elif find_incident and isinstance(params, WorkloadParams):
            incident = _incident_for_target(session, params.namespace, params.deployment)
        alerts = list(store.alerts_of(session, incident.id)) if incident and incident.id is not None else []
        return _Context(incident, alerts)

    def _policy_request_of(
        self, record: ActionRecord, actor: str, params: ActionParams, dry_run: bool
    ) -> ActionRequest:
        if isinstance(params, SilenceParams):
            return ActionRequest.for_silence(
                actor, record.plan.get("scope") or {}, duration=params.length, dry_run=dry_run
            )
        request = _policy_request(record, actor)
        return replace(request, dry_run=dry_run)

    @staticmethod
    def _decision_data(decision: Decision) -> dict[str, Any]:
        return {
            "rule": decision.rule.label if decision.rule else None,
            "confirm": decision.confirm,
            "dry_run_reason": decision.dry_run_reason,
            "approvals_required": decision.approvals_required,
            "needs": decision.approvals.describe() if decision.approvals else None,
            "approvals": [],
        }

    def _model_values(
        self, session: Session, raw: Mapping[str, Any], incident_id: int | None, find_incident: bool
    ) -> dict[str, Any]:
        """A model rollback's parameters with the alias resolved as `/rollback model NAME`
        resolves it: the incident's `model_alias` label or the models file (bot/registry/models.py,
        through the incident's labels when there is one), else `champion`."""
        values = dict(raw)
        name = values.get("model")
        if not values.get("alias") and isinstance(name, str):
            spec = spec_for_registered(self.models, name)
            registered = spec.registered_name if spec is not None else name
            incident: Incident | None = None
            if incident_id is not None:
                incident = store.get_incident(session, incident_id)
            elif find_incident:
                incident = _incident_for_model(session, registered, self.models)
            if incident is not None and incident.id is not None:
                label_sets = [
                    incident.common_labels,
                    *(a.labels for a in store.alerts_of(session, incident.id)),
                ]
                refs = [model_of_labels(labels, self.models) for labels in label_sets]
                alias = next((r.alias for r in refs if r is not None and r.name == registered), None)
                if alias:
                    values["alias"] = alias
        return rollback_values(values, self.models)

    def _restart_targets(self, params: ModelRollbackParams, context: _Context) -> RestartPlan:
        """The Deployments to restart after the alias moves (bot/flows/model_restarts.py), before
        the policy has its say; raises when a restart asked for cannot happen."""
        if params.restart is False:
            return RestartPlan()
        if params.deployments:
            targets = list(params.deployments)
        elif context.incident is not None:
            label_sets = [context.incident.common_labels, *(a.labels for a in context.alerts)]
            targets = model_restarts.serving_deployments(label_sets, params.model, self.models)
        else:
            targets = []
        if not targets:
            if params.restart:
                raise PayloadError(
                    f"a restart was asked for, but no Deployment serving {params.model} is known: the "
                    "incident's alerts carry no namespace with a deployment or pod label; name it with "
                    f"`/rollback model {params.target} --restart <namespace>/<deployment>`"
                )
            return RestartPlan()
        if not self.workloads.available:
            if params.restart_asked:
                raise ConfigError(
                    f"the restart after the model rollback cannot be done: {KUBERNETES_MISSING}"
                )
            return RestartPlan(skipped=model_restarts.skipped_text(targets, KUBERNETES_MISSING))
        return RestartPlan(tuple(targets))

    async def _decide_restarts(
        self,
        params: ModelRollbackParams,
        restarts: RestartPlan,
        actor: str,
        groups: frozenset[str],
        now: datetime,
        dry_run: bool,
    ) -> tuple[RestartPlan, list[Decision]] | Decision:
        """Each restart as policy action `restart` on its Deployment: the allowed ones with their
        decisions, the refused ones told in the plan; or the refusal of the whole request when
        the restart was asked for explicitly."""
        kept: list[str] = []
        decisions: list[Decision] = []
        refused: list[str] = []
        for target in restarts.targets:
            last = await self._read(
                partial(action_store.last_action_at, kind=ActionKind.RESTART, target=target)
            )
            decision = self.policy.decide(
                model_restarts.restart_request_of(actor, target, dry_run=dry_run),
                user_groups=groups,
                now=now,
                last_action_at=last,
            )
            if decision.allowed:
                kept.append(target)
                decisions.append(decision)
                continue
            if params.restart_asked:
                return model_restarts.restart_refusal(target, decision)
            refused.append(
                model_restarts.skipped_text([target], f"the policy refuses it: {decision.message}")
            )
        skipped = " ".join(x for x in (restarts.skipped, *refused) if x) or None
        return RestartPlan(tuple(kept), skipped=skipped), decisions

    async def _plan_model(
        self, params: ModelRollbackParams, restarts: RestartPlan, now: datetime
    ) -> tuple[Change, dict[str, Any]]:
        """Blocking calls in a thread: the alias move (MLflow), then each Deployment to restart
        (it exists and is not paused; one found only in the labels that cannot be is left out,
        and the plan says so)."""
        engine, registry, workloads = self.engine, self.registry, self.workloads

        def plan() -> tuple[Change, dict[str, Any]]:
            change, data = MODEL_ROLLBACK.plan(engine, registry, params)
            planned, revisions, problems = model_restarts.plan_restarts(
                workloads, restarts.targets, now, asked=params.restart_asked
            )
            skipped = " ".join(x for x in (restarts.skipped, *problems) if x) or None
            final = RestartPlan(tuple(planned), revisions, skipped)
            change = model_restarts.describe(change, str(data["to_version"]), final, now)
            return change, {
                **data,
                model_restarts.RESTART_KEY: list(final.targets),
                "restart_revisions": revisions,
                "restart_skipped": skipped,
            }

        return await anyio.to_thread.run_sync(plan)

    def _busy(self, session: Session, target: str, now: datetime) -> str | None:
        found = action_store.lock_holder(session, target, now)
        return action_store.busy_text(*found) if found else None

    async def _plan(
        self,
        params: ActionParams,
        record: ActionRecord,
        context: _Context,
        actor_id: str,
        actor_name: str | None,
        now: datetime,
    ) -> tuple[Change, dict[str, Any]]:
        """What will change, read from the live system; blocking calls in a thread."""
        if isinstance(params, SilenceParams):
            assert context.incident is not None
            firing = [a for a in context.alerts if a.status == AlertStatus.FIRING] or context.alerts
            chosen = firing[:MAX_SILENCED_ALERTS]
            alert_matchers = [matchers_for_alert(a.labels) for a in chosen]
            reason = (params.comment or record.label or "silenced from Slack").strip()
            comment = f"{reason} [{context.incident.key}, incident-bot]"
            author = created_by(actor_id, actor_name)
            change = silence_change(
                context.incident, alert_matchers, params, author=author, comment=comment, now=now
            )
            return change, {
                "matchers": [[m.to_api() for m in ms] for ms in alert_matchers],
                "created_by": author,
                "comment": comment,
            }
        workloads, kind = self.workloads, workload_kind(record.kind)
        return await anyio.to_thread.run_sync(lambda: kind.plan(workloads, params, now))

    async def _dry_run(
        self,
        who: Invocation,
        answer: Answer | None,
        record: ActionRecord,
        params: ActionParams,
        change: Change,
        decision: Decision,
    ) -> None:
        """Show the exact change; for Kubernetes, the API server validates it (dryRun=All)."""
        reason = decision.dry_run_reason or "dry run"
        outcome = "The bot would send this request; nothing was sent."
        result: dict[str, Any] = {}
        if isinstance(params, ModelRollbackParams):
            outcome = "MLflow has no dry run: the bot would send the alias request; nothing was sent."
            targets = [str(t) for t in record.plan.get(model_restarts.RESTART_KEY) or []]
            if targets:
                workloads = self.workloads
                try:
                    done_all = await anyio.to_thread.run_sync(
                        lambda: [
                            workloads.restart(*model_restarts.split(t), dry_run=True).message for t in targets
                        ]
                    )
                except BotError as exc:
                    await self._finish_new(
                        who, answer, record, ActionStatus.FAILED, f"dry run failed: {exc.message}", change
                    )
                    return
                outcome += (
                    " Then the API server accepted the restart(s) as a dry run: " + "; ".join(done_all) + "."
                )
                result = {"restarts": done_all}
        elif not isinstance(params, SilenceParams):
            workloads = self.workloads
            try:
                kind, plan = workload_kind(record.kind), record.plan
                done = await anyio.to_thread.run_sync(lambda: kind.dry_run(workloads, params, plan))
            except BotError as exc:
                await self._finish_new(
                    who, answer, record, ActionStatus.FAILED, f"dry run failed: {exc.message}", change
                )
                return
            change = replace(change, request=render_request(done.request))
            outcome = f"The API server accepted it as a dry run: {done.message}."
            result = {"message": done.message, "before": done.before.summary(), "after": done.after.summary()}
        record.plan = {**record.plan, "change": change.to_dict()}
        record.dry_run = True
        record.result = result
        message = blocks.dry_run_message(change, reason=reason, outcome=outcome)
        event_text = f"Dry run by {who.user.label} ({reason}): {change.sentence()}; nothing was changed"
        thread = blocks.notice_message(
            f":test_tube: <@{who.user.id}> dry-ran {_what(change)}; nothing was changed."
        )
        await self._insert(
            who, answer, record, ActionStatus.DRY_RUN, None, event_text, thread, message, outcome="dry_run"
        )

    async def _ask_confirmation(
        self,
        who: Invocation,
        answer: Answer | None,
        record: ActionRecord,
        change: Change,
        decision: Decision,
        now: datetime,
    ) -> None:
        record.expires_at = now + CONFIRM_TTL
        notes = [f"Allowed by {decision.rule.label}." if decision.rule else ""]
        if decision.approvals is not None:
            notes.append(f"After you confirm it needs {decision.approvals.describe()}.")

        def message(rec: ActionRecord) -> Message:
            assert rec.id is not None
            return blocks.confirmation_message(
                rec.id, change, notes=[n for n in notes if n], expires_at=rec.expires_at
            )

        await self._insert(who, answer, record, ActionStatus.AWAITING_CONFIRMATION, None, None, None, message)

    async def _ask_approval_new(
        self,
        who: Invocation,
        answer: Answer | None,
        record: ActionRecord,
        change: Change,
        decision: Decision,
        now: datetime,
    ) -> None:
        def work(session: Session) -> _Step | None:
            if not store.claim_request(session, who.request_key, incident_id=record.incident_id):
                return None
            record.status = ActionStatus.AWAITING_CONFIRMATION  # a new record, moved on at once
            session.add(record)
            session.flush()
            return self._to_approval(session, record, change, decision, now, who, confirmed=False)

        await self._run(work, answer)

    async def _queue_new(
        self, who: Invocation, answer: Answer | None, record: ActionRecord, change: Change, now: datetime
    ) -> None:
        def work(session: Session) -> _Step | None:
            if not store.claim_request(session, who.request_key, incident_id=record.incident_id):
                return None
            record.status = ActionStatus.AWAITING_CONFIRMATION
            session.add(record)
            session.flush()
            action_store.queue_execution(session, record, [ActionStatus.AWAITING_CONFIRMATION], now)
            action_store.event(
                session,
                record,
                f"{who.user.label} started: {change.sentence()}",
                by=who.user,
            )
            where = "in the incident's thread" if record.incident_id else "in this channel"
            return _Step(
                blocks.notice_message(
                    f":arrow_forward: Running: {_what(change)}; the result will be posted {where}."
                ),
                jobs=1,
            )

        await self._run(work, answer)

    # ------------------------------------------------------------------ shared transitions
    def _to_approval(
        self,
        session: Session,
        rec: ActionRecord,
        change: Change,
        decision: Decision,
        now: datetime,
        who: Invocation,
        *,
        confirmed: bool,
    ) -> _Step:
        assert decision.approvals is not None
        assert rec.id is not None
        needs = decision.approvals.describe()
        plan = {
            **rec.plan,
            "needs": needs,
            "approvals_required": decision.approvals.required,
            "approvals": [],
        }
        moved = action_store.advance(
            session,
            rec,
            [ActionStatus.AWAITING_CONFIRMATION],
            ActionStatus.AWAITING_APPROVAL,
            plan=plan,
            expires_at=now + APPROVAL_TTL,
        )
        if not moved:
            return _Step(blocks.notice_message(f":information_source: {_state_text(rec)}"))
        verb = "confirmed" if confirmed else "asked for"
        action_store.event(
            session,
            rec,
            f"{who.user.label} {verb}: {change.sentence()}; waiting for {needs}",
            by=who.user,
        )
        jobs = action_store.tell(
            session,
            rec,
            blocks.approval_request_message(
                rec.id, change, requester=who.user.id, needs=needs, expires_at=rec.expires_at
            ),
        )
        where = "in the incident's thread" if rec.incident_id else "in this channel"
        return _Step(
            blocks.notice_message(
                f":raised_hand: {_what(change)} needs {escape(needs)}: the request is posted {where}."
            ),
            replace=confirmed,
            jobs=jobs,
        )

    def _redecide(
        self, session: Session, rec: ActionRecord, groups: frozenset[str], now: datetime
    ) -> Decision:
        assert rec.requested_by is not None
        last = action_store.last_action_at(session, rec.kind, rec.target, exclude=rec.id)
        decision = self.policy.decide(
            _policy_request(rec, rec.requested_by), user_groups=groups, now=now, last_action_at=last
        )
        targets = [str(t) for t in (rec.plan or {}).get(model_restarts.RESTART_KEY) or []]
        if not decision.allowed or rec.kind != ActionKind.MODEL_ROLLBACK or not targets:
            return decision
        restart_decisions = []
        for target in targets:
            last_restart = action_store.last_action_at(session, ActionKind.RESTART, target, exclude=rec.id)
            restart = self.policy.decide(
                model_restarts.restart_request_of(rec.requested_by, target),
                user_groups=groups,
                now=now,
                last_action_at=last_restart,
            )
            if not restart.allowed:
                # The person confirmed both steps: half of it is not what they confirmed.
                return model_restarts.restart_refusal(target, restart)
            restart_decisions.append(restart)
        return model_restarts.combine(decision, restart_decisions)

    def _refuse_existing(
        self, session: Session, rec: ActionRecord, change: Change, decision: Decision, who: Invocation
    ) -> _Step:
        reasons = (
            decision.message
            if not decision.allowed
            else f"the policy now only dry-runs this ({decision.dry_run_reason}); ask again for the dry run"
        )
        action_store.advance(
            session,
            rec,
            [ActionStatus.AWAITING_CONFIRMATION, ActionStatus.AWAITING_APPROVAL],
            ActionStatus.REFUSED,
            error=reasons,
        )
        action_store.event(
            session,
            rec,
            f"{change.sentence()} refused: {reasons}",
            by=who.user,
        )
        jobs = action_store.tell(
            session,
            rec,
            blocks.refusal_message(change, action=change.verb, target=change.target, reasons=reasons),
        )
        return _Step(
            blocks.refusal_message(change, action=change.verb, target=change.target, reasons=reasons),
            replace=True,
            jobs=jobs,
            outcome="refused",
            kind=rec.kind,
        )

    def _expire_if_due(self, session: Session, rec: ActionRecord, change: Change) -> _Step | None:
        if rec.expires_at is None or rec.expires_at > self.clock():
            return None
        waiting = ActionStatus(rec.status)
        action_store.advance(
            session, rec, [waiting], ActionStatus.EXPIRED, error=f"expired while {waiting.value}"
        )
        action_store.event(session, rec, f"{change.sentence()} expired ({waiting.value})", by=None)
        return _Step(
            blocks.notice_message(
                f":hourglass: This request expired: {change.sentence()}. Ask for it again."
            ),
            replace=True,
            outcome="expired",
            kind=rec.kind,
        )

    async def _decide_approval(
        self, record_id: str, who: Invocation, answer: Answer | None, *, approve: bool
    ) -> None:
        record = await self._read(lambda s: action_store.get_record(s, record_id))
        requester_groups = await self._groups_of(record.requested_by)
        approver_groups = await self._groups_of(who.user.id)

        def work(session: Session) -> _Step | None:
            if not store.claim_request(session, who.request_key, incident_id=record.incident_id):
                return None
            rec = action_store.get_record(session, record_id, for_update=True)
            change = Change.from_dict(rec.plan.get("change") or {})
            if rec.status != ActionStatus.AWAITING_APPROVAL:
                return _Step(blocks.notice_message(f":information_source: {_state_text(rec)}"))
            expired = self._expire_if_due(session, rec, change)
            if expired is not None:
                return expired
            now = self.clock()
            decision = self._redecide(session, rec, requester_groups, now)
            if not decision.allowed or decision.dry_run:
                return self._refuse_existing(session, rec, change, decision, who)
            approvals = list(rec.plan.get("approvals") or [])
            # The policy may no longer ask for approval: then the requester's confirmation stands.
            approvals_needed = decision.approvals.required if decision.approvals is not None else 0
            if not approve:
                return self._reject(session, rec, change, decision, who, approver_groups)
            if approvals_needed:
                may, why = can_approve(
                    decision, who.user.id, approver_groups, rec.requested_by, already_approved=approvals
                )
                if not may:
                    action_store.event(session, rec, f"Approval refused: {why}", by=who.user)
                    return _Step(blocks.notice_message(f":no_entry: {_slack_ids(why)}"))
                approvals.append(who.user.id)
            if len(approvals) < approvals_needed:
                plan = {**rec.plan, "approvals": approvals}
                if not action_store.advance(
                    session, rec, [ActionStatus.AWAITING_APPROVAL], ActionStatus.AWAITING_APPROVAL, plan=plan
                ):
                    return _Step(blocks.notice_message(f":information_source: {_state_text(rec)}"))
                action_store.event(
                    session,
                    rec,
                    f"{who.user.label} approved ({len(approvals)} of {approvals_needed}): "
                    f"{change.sentence()}",
                    by=who.user,
                )
                assert rec.id is not None
                return _Step(
                    blocks.approval_request_message(
                        rec.id,
                        change,
                        requester=rec.requested_by or "",
                        needs=str(rec.plan.get("needs") or ""),
                        approvals=approvals,
                        expires_at=rec.expires_at,
                    ),
                    replace=True,
                )
            not_started = _start(
                session,
                rec,
                ActionStatus.AWAITING_APPROVAL,
                now,
                who,
                "approved, but not started",
                approved_by=",".join(approvals) or None,
            )
            if not_started is not None:
                return not_started
            who_approved = ", ".join(f"<@{a}>" for a in approvals)
            action_store.event(
                session,
                rec,
                f"{who.user.label} approved: {change.sentence()}; running",
                by=who.user,
                data={"approved_by": approvals},
            )
            return _Step(
                blocks.approval_closed_message(
                    change,
                    text=f"asked by <@{rec.requested_by}>, approved by {who_approved}; running.",
                ),
                replace=True,
                jobs=1,
            )

        await self._run(work, answer)

    def _reject(
        self,
        session: Session,
        rec: ActionRecord,
        change: Change,
        decision: Decision,
        who: Invocation,
        approver_groups: frozenset[str],
    ) -> _Step:
        withdrawing = who.user.id == rec.requested_by
        if not withdrawing:
            may, why = can_approve(decision, who.user.id, approver_groups, rec.requested_by)
            if not may:
                return _Step(
                    blocks.notice_message(f":no_entry: {_slack_ids(why).replace('approve', 'reject', 1)}")
                )
        verb = "withdrew" if withdrawing else "rejected"
        if not action_store.advance(
            session,
            rec,
            [ActionStatus.AWAITING_APPROVAL],
            ActionStatus.CANCELLED,
            error=f"{verb} by {who.user.label}",
        ):
            return _Step(blocks.notice_message(f":information_source: {_state_text(rec)}"))
        action_store.event(
            session,
            rec,
            f"{who.user.label} {verb}: {change.sentence()}",
            by=who.user,
        )
        return _Step(
            blocks.approval_closed_message(change, text=f"{verb} by <@{who.user.id}>; nothing was changed."),
            replace=True,
            outcome="cancelled",
            kind=rec.kind,
        )

    # ------------------------------------------------------------------ new finished records
    async def _refuse_new(
        self,
        who: Invocation,
        answer: Answer | None,
        record: ActionRecord,
        decision: Decision,
        change: Change | None,
    ) -> None:
        await self._finish_new(
            who, answer, record, ActionStatus.REFUSED, decision.message, change, refusal=True
        )

    async def _finish_new(
        self,
        who: Invocation,
        answer: Answer | None,
        record: ActionRecord,
        status: ActionStatus,
        reason: str,
        change: Change | None,
        *,
        refusal: bool = False,
    ) -> None:
        spec = spec_of(record.kind)
        target = change.target if change else (record.target or "the incident's alerts")
        if refusal or status == ActionStatus.REFUSED:
            message = blocks.refusal_message(change, action=spec.verb, target=target, reasons=reason)
            event_text = f"{spec.noun} of {target} requested by {who.user.label} refused: {reason}"
            thread = blocks.notice_message(
                f":no_entry: <@{who.user.id}> asked to {spec.verb} `{code(target)}`: "
                f"refused. {escape(reason)}"
            )
            outcome = "refused"
        else:
            message = blocks.notice_message(f":x: Could not {spec.verb} `{code(target)}`: {escape(reason)}")
            event_text = f"{spec.noun} of {target} requested by {who.user.label} could not start: {reason}"
            thread = blocks.notice_message(
                f":x: <@{who.user.id}> asked to {spec.verb} `{code(target)}`: {escape(reason)}"
            )
            outcome = "failed"
        if change is not None:
            record.plan = {**record.plan, "change": change.to_dict()}
        await self._insert(who, answer, record, status, reason, event_text, thread, message, outcome=outcome)

    async def _insert(
        self,
        who: Invocation,
        answer: Answer | None,
        record: ActionRecord,
        status: ActionStatus,
        error: str | None,
        event_text: str | None,
        thread: Message | None,
        message: Message | Callable[[ActionRecord], Message],
        *,
        outcome: str | None = None,
    ) -> None:
        """Write a new record in `status` with its event and thread line, once per request."""

        def work(session: Session) -> _Step | None:
            if not store.claim_request(session, who.request_key, incident_id=record.incident_id):
                return None
            record.status = status.value
            record.error = error
            if status in action_store.FINISHED:
                record.finished_at = self.clock()
            session.add(record)
            session.flush()
            jobs = 0
            if event_text:
                action_store.event(session, record, event_text, by=who.user)
            if thread is not None:
                jobs += action_store.tell(session, record, thread)
            return _Step(
                message(record) if callable(message) else message,
                jobs=jobs,
                outcome=outcome,
                kind=record.kind,
            )

        await self._run(work, answer)

    # ------------------------------------------------------------------ plumbing
    async def _run(self, work: Callable[[Session], _Step | None], answer: Answer | None) -> None:
        step = await self._read_write(work)
        if step is None:
            logger.info("repeated Slack request for an action ignored")
            return
        if step.jobs:
            self.wake()
        if step.outcome and step.kind:
            self.metrics.action_outcome(step.kind, step.outcome)
        if answer is not None and step.message is not None:
            await answer(step.message, replace=step.replace)

    async def _groups_of(self, user: str | None) -> frozenset[str]:
        if not user or not self.policy.configured:
            return frozenset()
        return await self.groups.of(user)

    async def _read(self, work: Callable[[Session], T]) -> T:
        def run() -> T:
            with transaction(self.engine) as session:
                return work(session)

        return await anyio.to_thread.run_sync(run)

    async def _read_write(self, work: Callable[[Session], T]) -> T | None:
        def run() -> T | None:
            info: dict[str, Any] = {}
            try:
                with transaction(self.engine) as session:
                    info = session.info
                    return work(session)
            except IntegrityError as exc:
                text = str(exc)
                if "slack_requests" in text:
                    logger.info("concurrent repeat of a Slack request ignored")
                    return None
                if "target_locks" in text:
                    busy = "the target is busy with another action that started a moment ago"
                    if LOCK_ATTEMPT in info:
                        record_id, actor, note = info[LOCK_ATTEMPT]
                        self._audit_lost_race(record_id, actor, note, busy)
                    raise Conflict(busy) from None
                raise

        return await anyio.to_thread.run_sync(run)

    def _audit_lost_race(self, record_id: int | None, actor: Actor, note: str, busy: str) -> None:
        """The attempt that lost the race for a target's lock is kept like any refusal: its
        transaction was rolled back, so it is written again in one of its own."""
        if record_id is None:
            return
        with transaction(self.engine) as session:
            record = action_store.get_record(session, record_id)
            action_store.event(session, record, f"{note}: {busy}", by=actor, data={"lost_lock_race": True})

    def _incident_silences(
        self, session: Session, incident_id: int
    ) -> tuple[Incident, list[Alert], set[str]]:
        incident = store.get_incident(session, incident_id)
        assert incident.id is not None
        alerts = list(store.alerts_of(session, incident.id))
        ours: set[str] = set()
        for rec in session.exec(
            select(ActionRecord).where(
                ActionRecord.incident_id == incident.id,
                ActionRecord.kind == ActionKind.SILENCE.value,
                ActionRecord.status == ActionStatus.SUCCEEDED.value,
            )
        ).all():
            ours.update(str(i) for i in (rec.result or {}).get("silences") or [])
        return incident, alerts, ours

    @staticmethod
    def _note(session: Session, incident_id: int | None, text: str, who: Invocation) -> None:
        if incident_id is None:
            return
        incident = store.get_incident(session, incident_id)
        store.add_event(session, incident, "action", text, actor=who.user.id, actor_name=who.user.name)


# ---------------------------------------------------------------------------------------------
# Module helpers


def _incident_for_target(session: Session, namespace: str, deployment: str) -> Incident | None:
    """The one open incident whose alerts name this namespace and deployment; None when there
    is none or more than one (the action is then recorded without an incident)."""
    rows = session.exec(
        select(Incident)
        .where(Incident.status != IncidentStatus.RESOLVED)
        .order_by(col(Incident.id).desc())
        .limit(200)
    ).all()
    found = []
    for incident in rows:
        assert incident.id is not None
        labels = [incident.common_labels, *(a.labels for a in store.alerts_of(session, incident.id))]
        if any(s.get("namespace") == namespace and s.get("deployment") == deployment for s in labels):
            found.append(incident)
    return found[0] if len(found) == 1 else None


def _incident_for_model(session: Session, model: str, models: ModelsFile) -> Incident | None:
    """The one open incident whose alerts name this registered model (bot/registry/models.py);
    None when there is none or more than one."""
    rows = session.exec(
        select(Incident)
        .where(Incident.status != IncidentStatus.RESOLVED)
        .order_by(col(Incident.id).desc())
        .limit(200)
    ).all()
    found = []
    for incident in rows:
        assert incident.id is not None
        labels = [incident.common_labels, *(a.labels for a in store.alerts_of(session, incident.id))]
        refs = [model_of_labels(s, models) for s in labels]
        if any(ref is not None and ref.name == model for ref in refs):
            found.append(incident)
    return found[0] if len(found) == 1 else None


def _what(change: Change) -> str:
    """'*roll back `llm-prod/vllm`* (llama-3-8b v14 -> v13)' in mrkdwn."""
    head = f"*{literal(change.verb)} `{code(change.target)}`*"
    return f"{head} ({literal(change.headline)})" if change.headline else head


_USER_ID = re.compile(r"\b([UW][A-Z0-9]{2,})\b")


def _slack_ids(text: str) -> str:
    """Policy messages name people by ID; Slack shows `<@ID>` as their name."""
    return _USER_ID.sub(lambda m: f"<@{m.group(1)}>", escape(text))
