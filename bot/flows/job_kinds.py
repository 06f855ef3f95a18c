"""The enrichment job kinds queued when an incident opens, apart from the flows that run them:
the intake applier process queues them (bot/flows/opening.py) without loading the Slack,
Prometheus, Kubernetes and MLflow clients those flows need (about 30 MB of its memory)."""

from __future__ import annotations

from bot.outbox import job_kind

__all__ = ["DIAGNOSTICS", "REGISTRY_CHANGED", "RUNBOOK", "WHAT_CHANGED"]

RUNBOOK = job_kind("runbook.post")
DIAGNOSTICS = job_kind("diagnostics.run")
WHAT_CHANGED = job_kind("k8s.what_changed")
REGISTRY_CHANGED = job_kind("registry.what_changed")
