"""What is queued in the intake transaction when an incident opens: the runbook it matches,
the enrichment jobs (diagnostics, what changed in the cluster and in the model registry) and
the model owners' notice. No I/O: only rows in the same transaction as the incident.

One picklable object rather than methods on the flows that later run the jobs, because the
intake applier may run in a process of its own (bot/intake_process.py), which has no Slack
client, Prometheus client or cluster connection: it needs to know only which of them are
configured.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session

from bot.flows.job_kinds import DIAGNOSTICS, REGISTRY_CHANGED, RUNBOOK, WHAT_CHANGED
from bot.incidents import store
from bot.incidents.models import Incident
from bot.kpis.models_file import ModelsFile
from bot.outbox import enqueue
from bot.registry.models import model_of_labels
from bot.runbooks import RunbookSet
from bot.slack.kpi_owner_notices import OwnerNotices

__all__ = ["Connected", "OpeningJobs"]


@dataclass(frozen=True)
class Connected:
    """Which outside systems are configured (not whether they answer: a configured Prometheus
    that is down still gets its diagnostics job, which retries)."""

    prometheus: bool = False
    cluster: bool = False
    registry: bool = False


@dataclass(frozen=True)
class OpeningJobs:
    runbooks: RunbookSet
    models: ModelsFile
    connected: Connected

    def __call__(self, session: Session, incident: Incident, labels: dict[str, str]) -> int:
        """Jobs queued for a newly opened incident (counted, so the outbox is woken only when
        there is work)."""
        assert incident.id is not None
        jobs = 0
        runbook = self.runbooks.match(labels)
        if runbook is not None:
            incident.runbook_name, incident.runbook_version = runbook.name, runbook.version
            session.add(incident)
            store.add_event(
                session,
                incident,
                "runbook",
                f"Runbook {runbook.name} (version {runbook.version}) matched",
                data={"runbook": runbook.name, "version": runbook.version, "path": str(runbook.path)},
            )
            jobs += _enqueue(session, RUNBOOK, incident, lane="slack", priority=3)
        if self.connected.prometheus:
            jobs += _enqueue(session, DIAGNOSTICS, incident, lane="diagnostics", priority=4)
        if self.connected.cluster and labels.get("namespace") and labels.get("deployment"):
            jobs += _enqueue(session, WHAT_CHANGED, incident, lane="k8s", priority=4)
        if self.connected.registry and model_of_labels(labels, self.models) is not None:
            jobs += _enqueue(session, REGISTRY_CHANGED, incident, lane="registry", priority=4)
        return jobs + OwnerNotices(self.models).on_open(session, incident, labels)


def _enqueue(session: Session, kind: str, incident: Incident, *, lane: str, priority: int) -> int:
    job = enqueue(
        session,
        kind,
        incident_id=incident.id,
        lane=lane,
        priority=priority,
        needs_root=True,
        dedupe_key=f"{kind}:{incident.id}",
    )
    return 1 if job is not None else 0
