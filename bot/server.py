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
from sqlmodel import Session

from bot import __version__, api, models_api, webhook
from bot.actions.executor import ActionExecutor
from bot.actions.flows import ActionFlows
from bot.actions.groups import UserGroups
from bot.actions.kubernetes import Workloads
from bot.actions.policy import Policy
from bot.actions.silences import AlertmanagerSilences
from bot.config import Settings
from bot.db import create_db_engine, init_schema
from bot.diagnostics import PrometheusMetrics
from bot.errors import ConfigError
from bot.http_guards import ApiTokenGuard, CloseOnError
from bot.incidents.enrich import Enrichment
from bot.incidents.models import Incident
from bot.kpis.digest import DigestSchedule, run_digest_schedule
from bot.kpis.models_file import ModelsFile
from bot.kpis.owner_routing import OwnerRouter
from bot.kpis.service import KpiService
from bot.maintenance import prune_periodically
from bot.metrics import BotMetrics
from bot.outbox import Outbox
from bot.routing import Router
from bot.runbooks import RunbookSet, load_verified_runbooks
from bot.slack import app as slack_app
from bot.slack.action_listeners import register_action_listeners
from bot.slack.app import SlackApp, build_slack_app
from bot.slack.channels import IncidentChannels
from bot.slack.chat import SlackChat
from bot.slack.delivery import SlackDelivery
from bot.slack.documents import PostmortemPoster
from bot.slack.kpi_digest import KpiDigestPoster
from bot.slack.kpi_listeners import register_kpi_listeners
from bot.slack.kpi_owner_notices import OwnerNotices
from bot.slack.socket_mode import SocketMode

__all__ = ["Services", "create_app"]

logger = logging.getLogger(__name__)

#: Seconds Prometheus may spend on one KPI query (server-side timeout too).
KPI_QUERY_TIMEOUT = 10.0
#: The same for `/model`, which answers within Slack's 3 seconds anyway.
KPI_QUICK_TIMEOUT = 2.5


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
    socket: SocketMode | None = None  # Slack over Socket Mode (SLACK_APP_TOKEN), else HTTP
    kpis: KpiService | None = None
    owner_notices: OwnerNotices | None = None

    def on_open(self, session: Session, incident: Incident, labels: dict[str, str]) -> int:
        """Jobs for a newly opened incident, in the intake transaction: enrichment, and the
        owners' mention on a model's drift or quality incident."""
        count = self.enrichment.on_open(session, incident, labels)
        if self.owner_notices is not None:
            count += self.owner_notices.on_open(session, incident, labels)
        return count

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


def load_digest_schedule(settings: Settings) -> DigestSchedule | None:
    """The KPI digest's schedule, checked at start (a typo stops `serve` naming the variable)."""
    if not settings.kpi_digest:
        return None
    schedule = DigestSchedule.parse(settings.kpi_digest)
    if not (settings.kpi_channel or settings.channel):
        raise ConfigError("INCIDENT_BOT_KPI_DIGEST is set but no channel: set INCIDENT_BOT_KPI_CHANNEL")
    return schedule


@dataclass(frozen=True)
class BotConfig:
    """The files the bot is configured with, loaded and validated before anything starts,
    so an invalid routing file, runbook or policy stops `serve` with its file:line errors
    instead of a failed startup halfway through."""

    router: Router
    runbooks: RunbookSet
    policy: Policy
    models: ModelsFile = field(default_factory=ModelsFile)
    digest: DigestSchedule | None = None

    @classmethod
    def load(cls, settings: Settings) -> BotConfig:
        models = ModelsFile.load(settings.models_file)
        return cls(
            router=OwnerRouter.wrap(
                Router.load(settings.routing_file, default_channel=settings.channel), models
            ),
            runbooks=load_runbooks(settings),
            policy=Policy.load(settings.policy_file, dry_run=settings.dry_run),
            models=models,
            digest=load_digest_schedule(settings),
        )


async def build_services(settings: Settings, config: BotConfig) -> Services:
    router, runbooks, policy = config.router, config.runbooks, config.policy
    engine = create_db_engine(settings.database_url)
    init_schema(engine)
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
    kpis = KpiService(
        PrometheusMetrics(settings.prometheus_url, timeout=KPI_QUERY_TIMEOUT, attempts=1)
        if settings.prometheus_url
        else None,
        engine,
        config.models,
        quick_metrics=PrometheusMetrics(settings.prometheus_url, timeout=KPI_QUICK_TIMEOUT, attempts=1)
        if settings.prometheus_url
        else None,
    )
    services.kpis = kpis
    services.owner_notices = OwnerNotices(config.models)
    services.enrichment = Enrichment(engine, chat, runbooks, services.prometheus, services.workloads)
    outbox.handlers.update(services.enrichment.handlers())
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
    register_kpi_listeners(services.slack, kpis, chat, services.workloads)
    digest_channel = settings.kpi_channel or settings.channel
    if digest_channel:
        outbox.handlers.update(KpiDigestPoster(kpis, chat, digest_channel).handlers())
    channels = IncidentChannels(engine, chat, router, services.slack.identity.get, wake=outbox.wake)
    outbox.handlers.update(channels.handlers())
    outbox.handlers.update(PostmortemPoster(engine, chat).handlers())
    return services


def create_app(settings: Settings, *, run_workers: bool = True) -> FastAPI:
    """Raises ConfigError (with every file:line problem) for invalid configuration files;
    everything with a connection or a thread is built in the lifespan."""
    config = BotConfig.load(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await build_services(settings, config)
        app.state.services = services
        if settings.socket_mode and services.slack is not None:
            services.socket = SocketMode(
                services.slack.bolt,
                settings.app_token(),
                registry=services.metrics.registry,
                ping_interval=settings.slack_ping_interval,
            )
            await services.socket.start()
        if run_workers:
            services.tasks.append(asyncio.create_task(services.outbox.run(), name="outbox"))
            services.tasks.append(
                asyncio.create_task(
                    prune_periodically(services.engine, retention=timedelta(days=settings.retention_days)),
                    name="prune",
                )
            )
            if config.digest is not None:
                services.tasks.append(
                    asyncio.create_task(
                        run_digest_schedule(
                            services.engine,
                            config.digest,
                            worker=services.outbox.worker_id,
                            wake=services.outbox.wake,
                        ),
                        name="kpi-digest",
                    )
                )
        logger.info("incident-bot started", extra={"version": __version__})
        try:
            yield
        finally:
            for task in services.tasks:
                task.cancel()
            for task in services.tasks:
                with suppress(asyncio.CancelledError, Exception):
                    await task
            if services.socket is not None:
                await services.socket.aclose()
            if services.slack is not None:
                await services.slack.aclose()
            await services.chat.aclose()
            if services.silences is not None:
                await services.silences.aclose()
            if services.prometheus is not None:
                services.prometheus.close()
            if services.kpis is not None:
                services.kpis.close()
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
    app.add_middleware(ApiTokenGuard, token=settings.api_bearer_token())
    app.add_middleware(CloseOnError)
    app.include_router(webhook.router)
    app.include_router(api.router)
    app.include_router(models_api.router)
    app.include_router(slack_app.router)
    return app
