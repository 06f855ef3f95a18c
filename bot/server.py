"""create_app(settings): the ASGI app, with every long-lived part built in its lifespan.

Nothing is built at import time and nothing here may fail because Slack, Prometheus or the
cluster is unreachable: the bot must start, accept and record alerts, and catch up when they
return. Only our own configuration (an invalid routing file, runbook or policy) and our own
database stop the start, with a message naming the problem.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import timedelta

import anyio
from fastapi import FastAPI
from sqlalchemy.engine import Engine

from bot import __version__, api, webhook
from bot.actions.executor import ActionExecutor
from bot.actions.flows import ActionFlows
from bot.actions.groups import UserGroups
from bot.actions.kubernetes import Workloads
from bot.actions.policy import Policy
from bot.actions.silences import AlertmanagerSilences
from bot.config import Settings
from bot.db import create_db_engine
from bot.diagnostics import PrometheusMetrics
from bot.incidents.enrich import Enrichment
from bot.incidents.models import Incident
from bot.intake_hooks import build_intake
from bot.intake_writer import IntakeWriter
from bot.maintenance import prune_periodically
from bot.metrics import BotMetrics
from bot.outbox import Outbox
from bot.routing import Router
from bot.runbooks import RunbookSet, load_verified_runbooks
from bot.schema import prepare_schema
from bot.slack import app as slack_app
from bot.slack.action_listeners import register_action_listeners
from bot.slack.app import SlackApp, build_slack_app
from bot.slack.channels import IncidentChannels
from bot.slack.chat import SlackChat
from bot.slack.delivery import SlackDelivery
from bot.slack.digest import StormDigestPoster
from bot.slack.documents import PostmortemPoster

__all__ = ["Services", "create_app"]

logger = logging.getLogger(__name__)


@dataclass
class Services:
    """Everything a request or a worker needs, built once per app."""

    settings: Settings
    engine: Engine
    router: Router
    metrics: BotMetrics
    chat: SlackChat
    outbox: Outbox
    runbooks: RunbookSet = field(default_factory=lambda: RunbookSet([]))
    policy: Policy = field(default_factory=lambda: Policy.load(None))
    prometheus: PrometheusMetrics | None = None
    workloads: Workloads | None = None
    silences: AlertmanagerSilences | None = None
    enrichment: Enrichment = field(init=False)
    actions: ActionFlows | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    slack: SlackApp | None = None
    intake: IntakeWriter = field(init=False)

    def observe_acknowledgement(self, incident: Incident) -> None:
        if incident.acknowledged_at is None:
            return
        seconds = max(0.0, (incident.acknowledged_at - incident.created_at).total_seconds())
        self.metrics.time_to_ack.labels(incident.severity, incident.service or "unknown").observe(seconds)

    def observe_resolution(self, incident: Incident) -> None:
        if incident.resolved_at is None:
            return
        seconds = max(0.0, (incident.resolved_at - incident.created_at).total_seconds())
        self.metrics.time_to_resolve.labels(incident.severity, incident.service or "unknown").observe(seconds)


def load_runbooks(settings: Settings) -> RunbookSet:
    """Invalid runbooks stop the start with their file:line errors; a missing folder is an
    error only when it was configured (the default `runbooks` may simply not exist)."""
    if not settings.runbooks_dir.is_dir() and "runbooks_dir" not in settings.model_fields_set:
        logger.warning(
            "no runbooks folder; incidents get no runbook", extra={"path": str(settings.runbooks_dir)}
        )
        return RunbookSet([])
    return load_verified_runbooks(settings.runbooks_dir)


def connect_workloads(settings: Settings) -> Workloads | None:
    """Kubernetes from the kubeconfig named by KUBECONFIG, or in-cluster config; None (actions
    off, said so when asked) when neither is there. No API call is made here."""
    if settings.kubeconfig:
        return Workloads.from_environment(settings.kubeconfig)
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return Workloads.from_environment()
    return None


@dataclass(frozen=True)
class BotConfig:
    """The files the bot is configured with, loaded and validated before anything starts,
    so an invalid routing file, runbook or policy stops `serve` with its file:line errors
    instead of a failed startup halfway through."""

    router: Router
    runbooks: RunbookSet
    policy: Policy

    @classmethod
    def load(cls, settings: Settings) -> BotConfig:
        return cls(
            router=Router.load(settings.routing_file, default_channel=settings.channel),
            runbooks=load_runbooks(settings),
            policy=Policy.load(settings.policy_file, dry_run=settings.dry_run),
        )


async def build_services(settings: Settings, config: BotConfig) -> Services:
    router, runbooks, policy = config.router, config.runbooks, config.policy
    engine = create_db_engine(settings.database_url)
    await anyio.to_thread.run_sync(lambda: prepare_schema(engine, migrate_on_start=settings.migrate_on_start))
    metrics = BotMetrics()
    chat = SlackChat.create(
        token=settings.token(),
        base_url=settings.slack_api_url,
        timeout=settings.slack_timeout,
        post_interval=settings.slack_post_interval,
        on_call=metrics.slack_call,
    )
    delivery = SlackDelivery(engine, chat, public_url=settings.public_url)
    outbox = Outbox(engine, delivery.handlers(), concurrency=settings.workers, on_result=metrics.job_result)
    metrics.watch_outbox(outbox.depth)
    services = Services(
        settings=settings,
        engine=engine,
        router=router,
        metrics=metrics,
        chat=chat,
        outbox=outbox,
        runbooks=runbooks,
        policy=policy,
        prometheus=PrometheusMetrics(settings.prometheus_url) if settings.prometheus_url else None,
        workloads=await anyio.to_thread.run_sync(connect_workloads, settings),
        silences=AlertmanagerSilences(settings.alertmanager_url) if settings.alertmanager_url else None,
    )
    services.enrichment = Enrichment(engine, chat, runbooks, services.prometheus, services.workloads)
    outbox.handlers.update(services.enrichment.handlers())
    services.intake = build_intake(
        engine,
        router=router,
        on_open=services.enrichment.on_open,
        metrics=metrics,
        wake=outbox.wake,
        observe_resolution=services.observe_resolution,
        post_interval=settings.slack_post_interval,
        owner=outbox.worker_id,
    )
    services.actions = ActionFlows(
        engine=engine,
        policy=policy,
        groups=UserGroups(chat, policy.usergroups()),
        metrics=metrics,
        wake=outbox.wake,
        workloads=services.workloads,
        silences=services.silences,
    )
    executor = ActionExecutor(
        engine=engine,
        chat=chat,
        metrics=metrics,
        wake=outbox.wake,
        runbooks=runbooks,
        workloads=services.workloads,
        silences=services.silences,
        prometheus=services.prometheus,
        verify_window=timedelta(seconds=settings.verify_seconds),
    )
    outbox.handlers.update(executor.handlers())
    services.slack = build_slack_app(services)
    register_action_listeners(services.slack, services.actions)
    channels = IncidentChannels(engine, chat, router, services.slack.identity.get, wake=outbox.wake)
    outbox.handlers.update(channels.handlers())
    outbox.handlers.update(PostmortemPoster(engine, chat).handlers())
    outbox.handlers.update(StormDigestPoster(engine, chat).handlers())
    return services


def create_app(settings: Settings, *, run_workers: bool = True) -> FastAPI:
    """Raises ConfigError (with every file:line problem) for invalid configuration files;
    everything with a connection or a thread is built in the lifespan."""
    config = BotConfig.load(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await build_services(settings, config)
        app.state.services = services
        services.intake.start()
        if run_workers:
            services.tasks.append(asyncio.create_task(services.outbox.run(), name="outbox"))
            services.tasks.append(
                asyncio.create_task(
                    prune_periodically(services.engine, retention=timedelta(days=settings.retention_days)),
                    name="prune",
                )
            )
        logger.info("incident-bot started", extra={"version": __version__})
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(services.intake.stop)
            for task in services.tasks:
                task.cancel()
            for task in services.tasks:
                with suppress(asyncio.CancelledError, Exception):
                    await task
            if services.slack is not None:
                await services.slack.aclose()
            await services.chat.aclose()
            if services.silences is not None:
                await services.silences.aclose()
            if services.prometheus is not None:
                services.prometheus.close()
            if services.workloads is not None:
                services.workloads.close()
            services.engine.dispose()
            logger.info("incident-bot stopped")

    app = FastAPI(
        title="incident-bot",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.include_router(webhook.router)
    app.include_router(api.router)
    app.include_router(slack_app.router)
    return app
