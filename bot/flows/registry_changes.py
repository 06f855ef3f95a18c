"""'What changed in the model registry', posted in an incident's thread when the alert names
a model and MLFLOW_TRACKING_URI is set: the serving alias, its version and the version before,
with their runs' metrics side by side.

Queued at intake (bot/flows/opening.py), run by an outbox worker in a lane of its own. MLflow down:
the thread says so once and the job tries again with growing pauses for a day, as diagnostics
do for Prometheus; a model MLflow does not know is said in the thread and not retried.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

import anyio
from sqlalchemy.engine import Engine

from bot.db import utcnow
from bot.errors import NotFound, RetryableUpstreamError, UpstreamError
from bot.flows.enrichment import runbook_context
from bot.flows.job_kinds import REGISTRY_CHANGED
from bot.flows.thread_posts import post_in_thread, say_in_thread
from bot.incidents import store
from bot.kpis.models_file import ModelsFile
from bot.outbox import ClaimedJob, Handler, Reschedule
from bot.registry.mlflow import ModelRegistry, NoRegistry
from bot.registry.models import model_of_labels
from bot.registry.snapshot import read_snapshot
from bot.slack.chat import SlackChat
from bot.slack.registry_blocks import registry_message
from bot.text import escape

__all__ = ["REGISTRY_CHANGED", "REGISTRY_GIVE_UP", "RegistryChanges"]

logger = logging.getLogger(__name__)

REGISTRY_GIVE_UP = timedelta(hours=24)


@dataclass
class RegistryChanges:
    engine: Engine
    chat: SlackChat
    #: INCIDENT_BOT_MODELS_FILE: served model names -> registered models and serving aliases.
    models: ModelsFile
    registry: ModelRegistry = field(default_factory=NoRegistry)

    def handlers(self) -> dict[str, Handler]:
        return {REGISTRY_CHANGED: self.what_changed}

    async def what_changed(self, job: ClaimedJob) -> None:
        if not self.registry.available:
            return
        incident, alerts = await anyio.to_thread.run_sync(
            store.load_with_alerts, self.engine, job.incident_id
        )
        if not (incident.channel and incident.slack_ts):
            return
        ref = model_of_labels(runbook_context(incident, alerts).alert.labels, self.models)
        if ref is None:
            return
        engine, registry = self.engine, self.registry
        try:
            snap = await anyio.to_thread.run_sync(lambda: read_snapshot(engine, registry, ref))
        except NotFound as exc:
            await say_in_thread(
                self.chat, job, incident, f":card_index_box: Model registry: {escape(exc.message)}."
            )
            return
        except RetryableUpstreamError as exc:
            if utcnow() - job.created_at >= REGISTRY_GIVE_UP:
                await say_in_thread(
                    self.chat,
                    job,
                    incident,
                    f":card_index_box: The model registry could not be read for a day, giving up: "
                    f"{escape(exc.message)}",
                )
                return
            payload = dict(job.payload)
            if not payload.get("told_waiting"):
                await say_in_thread(
                    self.chat,
                    job,
                    incident,
                    f":hourglass: What changed in the model registry is waiting for MLflow: "
                    f"{escape(exc.message)}. It will be posted here when MLflow answers.",
                )
                payload["told_waiting"] = True
            tries = int(payload.get("tries", 0)) + 1
            payload["tries"] = tries
            raise Reschedule(
                min(600.0, 15.0 * 2 ** min(tries - 1, 6)), payload=payload, note="waiting for MLflow"
            ) from None
        except UpstreamError as exc:
            await say_in_thread(
                self.chat,
                job,
                incident,
                f":card_index_box: The model registry could not be read: {escape(exc.message)}",
            )
            return
        message = registry_message(incident.key, snap, started_at=incident.started_at)
        await post_in_thread(self.chat, job, incident, message, {"part": "registry"})
