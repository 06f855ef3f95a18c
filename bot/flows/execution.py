"""Outbox handlers that carry out confirmed actions and check that they worked.

- `action.execute` (dedupe key `action:<id>`, one job per record): moves the record from
  queued to running, runs the Kubernetes or Alertmanager call with the target's lock held,
  records the result with the before and after state, releases the lock, tells the thread and
  the timeline, and queues the recovery check. The plan a person confirmed is re-validated
  against the live Deployment first: a rollback whose current or target template changed
  since is not run (PlanOutdated, with what changed).
- `action.verify`: polls the alert's own expression (and the figure to report) with
  `Reschedule` until the service recovered or the window (INCIDENT_BOT_VERIFY_SECONDS) is
  over, then says which, with the figure before and after.
- `action.post`: a message for an action without an incident, in the channel it was asked in.
- `silences.expire`: an incident resolved; end the silences the bot made for it.

Idempotency where the outbox cannot guarantee it (the effect happened, recording it did not):
a job that finds its record already `running` is a resumed attempt and first checks whether
the change is already there (the target ReplicaSet is current again, the revision moved after
a restart, a silence with the same matchers, author and comment exists) before acting.
Retryable failures (Kubernetes or Alertmanager unreachable) are retried only within
`EXECUTE_DEADLINE` of the confirmation: a rollback must not surprise anyone an hour later.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

import anyio
from sqlalchemy.engine import Engine
from sqlmodel import Session

from bot.actions import store as action_store
from bot.actions.changes import Change
from bot.actions.kinds import Outcome, workload_kind
from bot.actions.kubernetes import (
    KUBERNETES_MISSING,
    NoKubernetes,
    WorkloadsApi,
)
from bot.actions.models import ActionRecord, ActionStatus
from bot.actions.policy import ActionKind
from bot.actions.recovery import RecoveryCheck, figure_of, recovery_check
from bot.actions.registry import (
    ModelRollbackParams,
    SilenceParams,
    parse_params,
    spec_of,
)
from bot.actions.silences import Matcher, NoAlertmanager, Silence, Silences
from bot.db import transaction, utcnow
from bot.diagnostics import Metrics, NoPrometheus, expr_from_generator_url
from bot.diagnostics.prometheus import PROMETHEUS_MISSING
from bot.errors import BotError, NotFound, RetryableUpstreamError, UpstreamError
from bot.flows.enrichment import runbook_context
from bot.flows.model_rollback_run import run_model_rollback
from bot.incidents import jobs, lifecycle, store
from bot.incidents.lifecycle import Actor
from bot.incidents.models import AlertStatus, IncidentStatus
from bot.metrics import BotMetrics
from bot.outbox import ClaimedJob, Handler, Reschedule, enqueue
from bot.registry.mlflow import REGISTRY_MISSING, ModelRegistry, NoRegistry
from bot.runbooks import RunbookRenderError, RunbookSet, render_runbook
from bot.slack import action_blocks as blocks
from bot.slack.chat import SlackChat
from bot.text import escape

__all__ = ["BEFORE_TIMEOUT", "EXECUTE_DEADLINE", "ActionExecutor", "poll_interval"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

EXECUTE_DEADLINE = timedelta(minutes=10)
BEFORE_TIMEOUT = 5.0  # seconds the "before" figure may hold up an action


def poll_interval(window: timedelta) -> float:
    """How often the recovery check looks: 20 looks per window, between 1 s and 30 s apart."""
    return min(30.0, max(1.0, window.total_seconds() / 20))


def _human(delta: timedelta) -> str:
    seconds = round(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    minutes = seconds // 60
    return f"{minutes} min" if minutes < 120 else f"{minutes // 60} h {minutes % 60} min"


@dataclass
class ActionExecutor:
    engine: Engine
    chat: SlackChat
    metrics: BotMetrics
    wake: Callable[[], None]
    runbooks: RunbookSet
    workloads: WorkloadsApi = field(default_factory=NoKubernetes)
    silences: Silences = field(default_factory=NoAlertmanager)
    prometheus: Metrics = field(default_factory=NoPrometheus)
    verify_window: timedelta = timedelta(minutes=10)
    clock: Callable[[], datetime] = utcnow
    registry: ModelRegistry = field(default_factory=NoRegistry)

    def handlers(self) -> dict[str, Handler]:
        return {
            action_store.EXECUTE: self.execute,
            action_store.VERIFY: self.verify,
            action_store.POST: self.post,
            jobs.EXPIRE_SILENCES: self.expire_silences,
        }

    # ================================================================= execute
    async def execute(self, job: ClaimedJob) -> None:
        record_id = int(job.payload["action_id"])
        started = await self._db(lambda s: self._start(s, record_id))
        if started is None:
            return
        record, resumed = started
        check: RecoveryCheck | None = None
        before: float | None = None
        if (
            self.prometheus.available
            and self.verify_window > timedelta(0)
            and record.incident_id is not None
            and (spec_of(record.kind).workload or record.kind == ActionKind.MODEL_ROLLBACK.value)
        ):
            check = await self._db(lambda s: self._recovery_check(s, record))
            if check is not None:
                check = await self._with_hold(check)
                before = await self._measure(check)
        try:
            outcome = await self._carry_out(record, resumed)
        except RetryableUpstreamError as exc:
            if self._within_deadline(record):
                raise
            outcome = Outcome(False, f"{exc.message}; gave up: not done within {_human(EXECUTE_DEADLINE)}")
        except BotError as exc:
            outcome = Outcome(False, exc.message)
        await self._db(lambda s: self._finish(s, record_id, outcome, check, before))
        self.wake()
        self.metrics.action_outcome(record.kind, "succeeded" if outcome.ok else "failed")

    def _start(self, session: Session, record_id: int) -> tuple[ActionRecord, bool] | None:
        record = action_store.get_record(session, record_id, for_update=True)
        if record.status == ActionStatus.RUNNING:
            return record, True
        if record.status != ActionStatus.QUEUED:
            return None  # finished already: a repeated job does nothing
        if not self._within_deadline(record):
            self._close(
                session,
                record,
                Outcome(
                    False, f"did not start within {_human(EXECUTE_DEADLINE)} of being confirmed; ask again"
                ),
                expected=ActionStatus.QUEUED,
            )
            return None
        action_store.advance(session, record, [ActionStatus.QUEUED], ActionStatus.RUNNING)
        return record, False

    def _within_deadline(self, record: ActionRecord) -> bool:
        queued = (record.plan or {}).get("queued_at")
        if not queued:
            return True
        return self.clock() - datetime.fromisoformat(str(queued)) < EXECUTE_DEADLINE

    async def _carry_out(self, record: ActionRecord, resumed: bool) -> Outcome:
        params = parse_params(record.kind, record.params)
        plan = record.plan or {}
        if isinstance(params, SilenceParams):
            return await self._silence(record, params, resumed)
        if isinstance(params, ModelRollbackParams):
            if not self.registry.available:
                return Outcome(False, REGISTRY_MISSING)
            return await run_model_rollback(
                self.engine,
                self.registry,
                self.workloads,
                record,
                params,
                lambda: self._within_deadline(record),
            )
        workloads = self.workloads
        if not workloads.available:
            return Outcome(False, KUBERNETES_MISSING)

        kind = workload_kind(record.kind)
        return await anyio.to_thread.run_sync(lambda: kind.execute(workloads, params, plan, resumed))

    async def _silence(self, record: ActionRecord, params: SilenceParams, resumed: bool) -> Outcome:
        silences = self.silences
        if not silences.available:
            return Outcome(False, "Alertmanager is not configured: set ALERTMANAGER_URL")
        plan = record.plan or {}
        author, comment = str(plan["created_by"]), str(plan["comment"])
        made: list[Silence] = []
        for raw in plan.get("matchers") or []:
            matchers = [
                Matcher(m["name"], m["value"], bool(m.get("isRegex")), bool(m.get("isEqual", True)))
                for m in raw
            ]
            existing = None
            if resumed:
                existing = next(
                    (
                        s
                        for s in await silences.list(matchers)
                        if s.created_by == author
                        and s.comment == comment
                        and set(s.matchers) == set(matchers)
                    ),
                    None,
                )
            made.append(
                existing
                or await silences.create(matchers, duration=params.length, created_by=author, comment=comment)
            )
        ends = max((s.ends_at for s in made), default=self.clock() + params.length)
        ids = [s.id for s in made]
        return Outcome(
            True,
            f"silenced {len(ids)} alert(s) until {ends:%Y-%m-%d %H:%M} UTC ({params.duration}); "
            f"silence id{'s' if len(ids) != 1 else ''}: {', '.join(ids)}",
            {"silences": ids, "ends_at": ends.isoformat(), "created_by": author, "comment": comment},
        )

    def _finish(
        self,
        session: Session,
        record_id: int,
        outcome: Outcome,
        check: RecoveryCheck | None,
        before: float | None,
    ) -> None:
        record = action_store.get_record(session, record_id, for_update=True)
        closed = self._close(session, record, outcome, expected=ActionStatus.RUNNING, check=check)
        if not (closed and outcome.ok and check is not None):
            return
        now = self.clock()
        interval = poll_interval(self.verify_window)
        enqueue(
            session,
            action_store.VERIFY,
            incident_id=record.incident_id,
            payload={
                "action_id": record.id,
                "check": check.to_payload(),
                "before": before,
                "started": now.isoformat(),
                "deadline": (now + self.verify_window).isoformat(),
                "interval": interval,
            },
            lane=f"verify-{record.id}",
            priority=4,
            dedupe_key=f"verify:{record.id}",
            delay=interval,
        )

    def _close(
        self,
        session: Session,
        record: ActionRecord,
        outcome: Outcome,
        *,
        expected: ActionStatus,
        check: RecoveryCheck | None = None,
    ) -> bool:
        """Finish the record, release its lock, and tell the timeline and the thread."""
        status = ActionStatus.SUCCEEDED if outcome.ok else ActionStatus.FAILED
        if not action_store.advance(
            session,
            record,
            [expected],
            status,
            result={**(record.result or {}), **outcome.result, "message": outcome.text},
            error=None if outcome.ok else outcome.text,
        ):
            return False
        action_store.release_lock(session, record)
        change = Change.from_dict((record.plan or {}).get("change") or {})
        before, after = outcome.result.get("before"), outcome.result.get("after")
        states = [f"Before: {before}." if before else "", f"After: {after}." if after else ""]
        states = [line for line in states if line]
        if outcome.ok:
            text = f"{change.sentence()}: done, {outcome.text}. {' '.join(states)}".strip()
        else:
            text = f"{change.sentence()}: failed: {outcome.text}"
        action_store.event(
            session,
            record,
            text,
            by=Actor(record.requested_by, record.requested_by_name) if record.requested_by else None,
            data={"result": outcome.result, "ok": outcome.ok, "approved_by": record.approved_by},
        )
        note = None
        if outcome.ok and check is not None:
            note = (
                f"Watching *{escape(check.title)}* for up to {_human(self.verify_window)} "
                "to see whether the service recovers."
            )
        body = "\n".join([outcome.text + ".", *states])
        action_store.tell(
            session,
            record,
            blocks.result_message(change, ok=outcome.ok, actor=record.requested_by, text=body, note=note),
        )
        return True

    async def _measure(self, check: RecoveryCheck) -> float | None:
        metrics, figure = self.prometheus, check.figure
        if not metrics.available or figure is None:
            return None

        def query() -> float | None:
            return figure_of(metrics.query(figure), lowest=check.lowest)

        with anyio.move_on_after(BEFORE_TIMEOUT):
            try:
                return await anyio.to_thread.run_sync(query, abandon_on_cancel=True)
            except UpstreamError as exc:
                logger.warning("could not measure before an action", extra={"error": exc.message})
        return None

    async def _with_hold(self, check: RecoveryCheck) -> RecoveryCheck:
        """The check, holding for its alert rule's `for:` when Prometheus has the rule. Best
        effort: without an answer the check holds for nothing, as an alert with `for: 0s`."""
        metrics, condition = self.prometheus, check.condition
        if not metrics.available or condition is None:
            return check
        try:
            hold = await anyio.to_thread.run_sync(lambda: metrics.alert_hold(condition))
        except UpstreamError as exc:
            logger.warning("could not read the alert rule's for:", extra={"error": exc.message})
            return check
        return replace(check, hold=hold.total_seconds()) if hold else check

    def _recovery_check(self, session: Session, record: ActionRecord) -> RecoveryCheck | None:
        incident = action_store.incident_of(session, record)
        if incident is None or incident.id is None:
            return None
        alerts = list(store.alerts_of(session, incident.id))
        firing = [a for a in alerts if a.status == AlertStatus.FIRING] or alerts
        alert = firing[0] if firing else None
        expr = expr_from_generator_url(alert.generator_url) if alert else None
        rendered = None
        runbook = self.runbooks.get(incident.runbook_name) if incident.runbook_name else None
        if runbook is not None:
            try:
                rendered = render_runbook(runbook, runbook_context(incident, alerts))
            except RunbookRenderError:
                rendered = None
        return recovery_check(expr, alert.alertname if alert else None, rendered)

    # ================================================================= verify
    async def verify(self, job: ClaimedJob) -> None:
        payload = dict(job.payload)
        record_id = int(payload["action_id"])
        check = RecoveryCheck.from_payload(payload["check"])
        before = payload.get("before")
        started = datetime.fromisoformat(str(payload["started"]))
        deadline = datetime.fromisoformat(str(payload["deadline"]))
        interval = float(payload.get("interval") or poll_interval(self.verify_window))
        metrics = self.prometheus
        now = self.clock()
        recovered: bool | None
        after: float | None = None
        try:
            if not metrics.available:
                raise UpstreamError(PROMETHEUS_MISSING)
            if check.condition:
                condition = check.condition
                clear = not await anyio.to_thread.run_sync(lambda: metrics.query(condition))
                quiet_since = _held(payload, clear, now)
                recovered = quiet_since is not None and (now - quiet_since).total_seconds() >= check.hold
            else:
                recovered = await self._db(lambda s: _alerts_resolved(s, record_id))
            if check.figure:
                figure = check.figure
                after = await anyio.to_thread.run_sync(
                    lambda: figure_of(metrics.query(figure), lowest=check.lowest)
                )
        except UpstreamError as exc:
            if now < deadline:
                raise Reschedule(interval, note=f"recovery check waiting: {exc.message}") from None
            recovered, text = None, f"could not check: {exc.message}"
        else:
            if recovered:
                text = f"recovered: {check.change(before, after)}, {_human(now - started)} after the action"
            elif now < deadline:
                clear_since = payload.get("clear_since")
                note = (
                    "not recovered yet" if not clear_since else "condition clear, holding for the rule's for:"
                )
                raise Reschedule(interval, payload=payload, note=note)
            elif payload.get("clear_since"):
                text = (
                    f"not recovered after {_human(deadline - started)}: {check.change(before, after)}; "
                    f"the alert's condition has not stayed clear for its rule's for: "
                    f"({_human(timedelta(seconds=check.hold))})"
                )
            else:
                text = (
                    f"not recovered after {_human(deadline - started)}: {check.change(before, after)}; "
                    "the alert's condition still holds"
                )
        await self._db(lambda s: self._report(s, record_id, recovered, text, before, after))
        self.wake()

    def _report(
        self,
        session: Session,
        record_id: int,
        recovered: bool | None,
        text: str,
        before: float | None,
        after: float | None,
    ) -> None:
        record = action_store.get_record(session, record_id)
        change = Change.from_dict((record.plan or {}).get("change") or {})
        record.result = {
            **(record.result or {}),
            "verification": {"recovered": recovered, "text": text, "before": before, "after": after},
        }
        session.add(record)
        action_store.event(
            session,
            record,
            f"Recovery check after {change.sentence()}: {text}",
            by=None,
            data={"recovered": recovered, "before": before, "after": after},
        )
        action_store.tell(
            session, record, blocks.verification_message(change, recovered=recovered, text=text)
        )
        if recovered and record.incident_id is not None:
            incident = store.get_incident(session, record.incident_id)
            if incident.status in (IncidentStatus.TRIGGERED, IncidentStatus.ACKNOWLEDGED):
                lifecycle.mitigate(
                    session, record.incident_id, None, note=f"{change.sentence()} recovered the service"
                )

    # ================================================================= channel posts
    async def post(self, job: ClaimedJob) -> None:
        channel = str(job.payload["channel"])
        marker = {"action": job.payload.get("action_id"), "job": job.id}
        await self.chat.post_once(channel, job.payload["message"], marker=marker, retried=job.attempts > 1)

    # ================================================================= silences on resolution
    async def expire_silences(self, job: ClaimedJob) -> None:
        if not self.silences.available or job.incident_id is None:
            return
        incident_id = job.incident_id
        ids = await self._db(lambda s: action_store.active_silence_ids(s, incident_id))
        if not ids:
            return
        for silence_id in ids:
            try:
                await self.silences.expire(silence_id)
            except NotFound:
                logger.info("silence already gone from Alertmanager", extra={"silence_id": silence_id})

        def record(session: Session) -> None:
            incident = store.get_incident(session, incident_id)
            action_store.mark_expired(session, incident, ids, by=None)
            store.add_event(
                session,
                incident,
                "action",
                f"Silences expired on resolution: {', '.join(ids)}",
                data={"action": "unsilence", "silences": ids},
            )
            jobs.reply(
                session,
                incident,
                blocks.notice_message(
                    f":bell: {incident.key} resolved: its {len(ids)} silence(s) were expired, so its alerts "
                    "notify again if they come back."
                ),
            )

        await self._db(record)
        self.wake()

    # ================================================================= plumbing
    async def _db(self, work: Callable[[Session], T]) -> T:
        def run() -> T:
            with transaction(self.engine) as session:
                return work(session)

        return await anyio.to_thread.run_sync(run)


def _alerts_resolved(session: Session, record_id: int) -> bool:
    record = action_store.get_record(session, record_id)
    if record.incident_id is None:
        return False
    alerts = store.alerts_of(session, record.incident_id)
    return bool(alerts) and all(a.status == AlertStatus.RESOLVED for a in alerts)


def _held(payload: dict[str, Any], clear: bool, now: datetime) -> datetime | None:
    """Since when the alert's condition has been clear without a break (kept in the job's
    payload across polls), or None while it holds; updates `payload`."""
    if not clear:
        payload.pop("clear_since", None)
        return None
    since = payload.get("clear_since")
    if since is None:
        payload["clear_since"] = now.isoformat()
        return now
    return datetime.fromisoformat(str(since))
