"""What a responder would look up first, posted in the incident's thread after the root
message: the matching runbook with its steps and buttons, the diagnostics it names (with
baselines and graphs), and what changed in the deployment before the alert began.

The jobs are queued in the intake transaction (bot/flows/opening.py); the handlers run in
outbox workers, each in its own lane so a slow Prometheus never holds up the runbook's steps
or the thread's other news, and none of it can delay the first notification (the root
message goes first, always).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import anyio
from sqlalchemy.engine import Engine

from bot.actions.kubernetes import NoKubernetes, WorkloadsApi
from bot.actions.offers import offer
from bot.db import transaction, utcnow
from bot.diagnostics import (
    DiagnosticResult,
    GraphsUnavailable,
    Metrics,
    NoPrometheus,
    Windows,
    diagnostics_message,
    expr_from_generator_url,
    graph_series,
    render_graph,
    run_diagnostic,
)
from bot.errors import BotError, NotFound, RetryableUpstreamError, UpstreamError
from bot.flows.job_kinds import DIAGNOSTICS, RUNBOOK, WHAT_CHANGED
from bot.flows.thread_posts import post_in_thread, say_in_thread, slug
from bot.incidents import store
from bot.incidents.models import Alert, AlertStatus, Incident
from bot.outbox import ClaimedJob, Handler, OutboxJob, Reschedule
from bot.runbooks import (
    AlertInfo,
    IncidentInfo,
    RunbookContext,
    RunbookRenderError,
    RunbookSet,
    render_runbook,
)
from bot.runbooks.render import RenderedRunbook
from bot.slack.chat import SlackChat
from bot.slack.runbook_blocks import runbook_message
from bot.slack.what_changed import what_changed_message
from bot.text import bold, code, defuse, escape, literal, strip_paths

__all__ = ["DIAGNOSTICS", "RUNBOOK", "WHAT_CHANGED", "Enrichment", "runbook_context"]

logger = logging.getLogger(__name__)


# Prometheus down: try again with growing pauses for a day, then say so and stop.
DIAGNOSTICS_GIVE_UP = timedelta(hours=24)
WHAT_CHANGED_LOOKBACK = timedelta(days=3)


def runbook_context(incident: Incident, alerts: Sequence[Alert]) -> RunbookContext:
    """The runbook sees the incident's first firing alert (or its first alert) as `alert`."""
    assert incident.id is not None
    infos = [
        AlertInfo(
            labels=dict(a.labels),
            annotations=dict(a.annotations),
            status=a.status,
            starts_at=a.starts_at,
            ends_at=a.ends_at,
            fingerprint=a.fingerprint,
            generator_url=a.generator_url or "",
        )
        for a in alerts
    ]
    firing = [info for info, a in zip(infos, alerts, strict=True) if a.status == AlertStatus.FIRING]
    representative = (firing or infos or [AlertInfo(labels=dict(incident.common_labels))])[0]
    return RunbookContext(
        alert=representative,
        incident=IncidentInfo(
            key=incident.key,
            number=incident.id,
            severity=incident.severity,
            title=incident.title,
            status=incident.status,
            started_at=incident.started_at,
        ),
        alerts=tuple(infos),
    )


@dataclass
class Enrichment:
    engine: Engine
    chat: SlackChat
    runbooks: RunbookSet
    metrics: Metrics = field(default_factory=NoPrometheus)
    workloads: WorkloadsApi = field(default_factory=NoKubernetes)

    def handlers(self) -> dict[str, Handler]:
        return {
            RUNBOOK: self.post_runbook,
            DIAGNOSTICS: self.run_diagnostics,
            WHAT_CHANGED: self.what_changed,
        }

    # ------------------------------------------------------------------ shared

    def _render(self, incident: Incident, alerts: Sequence[Alert]) -> RenderedRunbook | None:
        runbook = self.runbooks.get(incident.runbook_name) if incident.runbook_name else None
        if runbook is None:
            return None
        return render_runbook(runbook, runbook_context(incident, alerts))

    # ------------------------------------------------------------------ runbook
    async def post_runbook(self, job: ClaimedJob) -> None:
        incident, alerts = await anyio.to_thread.run_sync(
            store.load_with_alerts, self.engine, job.incident_id
        )
        if not (incident.channel and incident.slack_ts):
            return
        try:
            rendered = self._render(incident, alerts)
        except RunbookRenderError as exc:
            await say_in_thread(
                self.chat,
                job,
                incident,
                f":warning: Runbook `{code(incident.runbook_name or '')}` could not be rendered: "
                f"{literal(strip_paths(exc.message))}",
            )
            return
        if rendered is None:
            return
        offers = await anyio.to_thread.run_sync(self._offer, incident, rendered, job)
        await post_in_thread(
            self.chat, job, incident, runbook_message(incident.key, rendered, offers), {"part": "runbook"}
        )

    def _offer(self, incident: Incident, rendered: RenderedRunbook, job: ClaimedJob) -> list[tuple[int, Any]]:
        """Store one offer per button; on a retry of the same job, reuse the stored ones."""
        assert incident.id is not None
        existing = job.payload.get("offers")
        if existing and len(existing) == len(rendered.actions):
            return list(zip(existing, rendered.actions, strict=True))
        with transaction(self.engine) as session:
            source = f"runbook:{rendered.name}@{rendered.version}"
            ids = []
            for action in rendered.actions:
                record = offer(session, incident_id=incident.id, action=action, source=source)
                assert record.id is not None
                ids.append(record.id)
            row = session.get(OutboxJob, job.id)
            if row is not None:
                row.payload = {**row.payload, "offers": ids}
                session.add(row)
        return list(zip(ids, rendered.actions, strict=True))

    # ------------------------------------------------------------------ diagnostics
    async def run_diagnostics(self, job: ClaimedJob) -> None:
        if not self.metrics.available:
            return
        incident, alerts = await anyio.to_thread.run_sync(
            store.load_with_alerts, self.engine, job.incident_id
        )
        if not (incident.channel and incident.slack_ts):
            return
        try:
            rendered = self._render(incident, alerts)
        except RunbookRenderError:
            rendered = None  # post_runbook tells the thread about it
        queries = _queries(rendered, alerts)
        if not queries:
            return
        windows = Windows.for_incident(incident.started_at, now=utcnow(), resolved_at=incident.resolved_at)
        metrics = self.metrics

        def measure() -> list[DiagnosticResult]:
            return [
                run_diagnostic(metrics, title=q.title, query=q.query, windows=windows, unit=q.unit)
                for q in queries
            ]

        results = await anyio.to_thread.run_sync(measure)
        waiting = [r for r in results if r.retryable]
        if waiting and utcnow() - job.created_at < DIAGNOSTICS_GIVE_UP:
            payload = dict(job.payload)
            if not payload.get("told_waiting"):
                await say_in_thread(
                    self.chat,
                    job,
                    incident,
                    ":hourglass: Diagnostics are waiting for Prometheus: "
                    f"{escape(waiting[0].error or 'unavailable')}. They will be posted here when it answers.",
                )
                payload["told_waiting"] = True
            tries = int(payload.get("tries", 0)) + 1
            payload["tries"] = tries
            raise Reschedule(
                min(600.0, 15.0 * 2 ** min(tries - 1, 6)), payload=payload, note="waiting for Prometheus"
            )
        await post_in_thread(self.chat, job, incident, diagnostics_message(results), {"part": "diagnostics"})
        await self._graphs(job, incident, queries, windows, results)

    async def _graphs(
        self,
        job: ClaimedJob,
        incident: Incident,
        queries: Sequence[_Query],
        windows: Windows,
        results: Sequence[DiagnosticResult],
    ) -> None:
        assert incident.channel
        assert incident.slack_ts
        metrics = self.metrics
        for index, (query, result) in enumerate(zip(queries, results, strict=True)):
            if not query.graph or not result.ok:
                continue
            filename = f"{incident.key}-{slug(query.plain_title, 'graph')}-{job.id}-{index}.png"
            if job.attempts > 1 and await self.chat.has_file(incident.channel, incident.slack_ts, filename):
                continue

            def draw(q: _Query = query) -> bytes:
                series = graph_series(metrics, q.query, windows, range_=q.range)
                return render_graph(
                    series,
                    title=q.plain_title,
                    unit=q.unit,
                    started_at=incident.started_at,
                    resolved_at=incident.resolved_at,
                    before=windows.before,
                    window=windows.graph(q.range),
                )

            try:
                png = await anyio.to_thread.run_sync(draw)
            except GraphsUnavailable as exc:
                await say_in_thread(self.chat, job, incident, f":information_source: {escape(exc.message)}")
                return
            except UpstreamError as exc:
                logger.warning("graph query failed", extra={"incident": incident.key, "error": str(exc)})
                continue
            await self.chat.upload(
                incident.channel,
                incident.slack_ts,
                content=png,
                filename=filename,
                title=defuse(f"{incident.key}: {query.plain_title}"),
                alt_txt=defuse(f"Graph of {query.plain_title} around {incident.key}"),
            )

    # ------------------------------------------------------------------ what changed
    async def what_changed(self, job: ClaimedJob) -> None:
        if not self.workloads.available:
            return
        incident, alerts = await anyio.to_thread.run_sync(
            store.load_with_alerts, self.engine, job.incident_id
        )
        if not (incident.channel and incident.slack_ts):
            return
        labels = runbook_context(incident, alerts).alert.labels
        namespace, name = labels.get("namespace"), labels.get("deployment")
        if not (namespace and name):
            return
        workloads = self.workloads
        try:
            revisions = await anyio.to_thread.run_sync(lambda: workloads.history(namespace, name))
        except NotFound as exc:
            await say_in_thread(self.chat, job, incident, f":mag: What changed: {escape(exc.message)}.")
            return
        except RetryableUpstreamError:
            raise
        except BotError as exc:
            await say_in_thread(
                self.chat, job, incident, f":mag: What changed could not be read: {escape(exc.message)}"
            )
            return
        message = what_changed_message(
            incident.key,
            namespace,
            name,
            revisions,
            started_at=incident.started_at,
            lookback=WHAT_CHANGED_LOOKBACK,
        )
        await post_in_thread(self.chat, job, incident, message, {"part": "what-changed"})


@dataclass(frozen=True)
class _Query:
    title: str  # mrkdwn
    plain_title: str
    query: str
    unit: str
    graph: bool
    range: timedelta | None


def _queries(rendered: RenderedRunbook | None, alerts: Sequence[Alert]) -> list[_Query]:
    """The alert's own expression first (what fired), then the runbook's diagnostics."""
    queries: list[_Query] = []
    seen: set[str] = set()
    firing = [a for a in alerts if a.status == AlertStatus.FIRING] or list(alerts)
    for alert in firing[:1]:
        expr = expr_from_generator_url(alert.generator_url)
        if expr:
            name = alert.alertname or "alert"
            queries.append(_Query(f"{bold(name)} (the alert's expression)", name, expr, "none", True, None))
            seen.add(expr)
    for item in rendered.diagnostics if rendered else ():
        if item.query in seen:
            continue
        seen.add(item.query)
        plain = (
            re.sub(r"[*_`~]", "", item.title).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
        )
        queries.append(_Query(item.title, plain, item.query, item.unit, item.type == "range", item.range))
    return queries
