"""create_app(settings): the ASGI app, with every long-lived part built in its lifespan.

Nothing is built at import time and nothing here may fail because Slack, Prometheus or the
cluster is unreachable: the bot must start, accept and record alerts, and catch up when they
return. Only our own configuration (an invalid routing file, runbook or policy) and our own
database stop the start, with a message naming the problem.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import timedelta
from typing import Any

import anyio
from fastapi import FastAPI

from bot import __version__, api, models_api, webhook
from bot.actions.kubernetes import NoKubernetes, Workloads, WorkloadsApi
from bot.actions.silences import AlertmanagerSilences, NoAlertmanager, Silences
from bot.config import Settings
from bot.config_files import BotConfig
from bot.db import create_db_engine
from bot.diagnostics import Metrics, NoPrometheus, PrometheusMetrics
from bot.flows.actions import ActionFlows
from bot.flows.enrichment import Enrichment
from bot.flows.execution import ActionExecutor
from bot.flows.opening import Connected
from bot.flows.registry_changes import RegistryChanges
from bot.http_guards import ApiTokenGuard, CloseOnError
from bot.intake_hooks import build_intake
from bot.kpis.digest import run_digest_schedule
from bot.kpis.service import KpiService
from bot.maintenance import prune_periodically
from bot.metrics import BotMetrics
from bot.outbox import Outbox
from bot.registry.mlflow import MlflowRegistry, ModelRegistry, NoRegistry
from bot.schema import prepare_schema
from bot.services import Services
from bot.slack import app as slack_app
from bot.slack.action_listeners import register_action_listeners
from bot.slack.app import SlackApp, build_slack_app
from bot.slack.channels import IncidentChannels
from bot.slack.chat import SlackChat
from bot.slack.delivery import SlackDelivery
from bot.slack.digest import StormDigestPoster
from bot.slack.documents import PostmortemPoster
from bot.slack.home_viewers import HomeRefresh
from bot.slack.kpi_digest import KpiDigestPoster
from bot.slack.kpi_listeners import register_kpi_listeners
from bot.slack.socket_mode import SocketMode
from bot.slack.usergroups import UserGroups

__all__ = ["create_app"]

logger = logging.getLogger(__name__)

#: Seconds Prometheus may spend on one KPI query (server-side timeout too).
KPI_QUERY_TIMEOUT = 10.0
#: The same for `/model`, which answers within Slack's 3 seconds anyway.
KPI_QUICK_TIMEOUT = 2.5


def connect_workloads(settings: Settings) -> WorkloadsApi:
    """Kubernetes from the kubeconfig named by KUBECONFIG, or in-cluster config; NoKubernetes
    (actions off, said so when asked) when neither is there. No API call is made here."""
    if settings.kubeconfig:
        return Workloads.from_environment(settings.kubeconfig)
    if settings.in_cluster:
        return Workloads.from_environment(in_cluster=True)
    return NoKubernetes()


def connect_registry(settings: Settings) -> ModelRegistry:
    """MLflow's model registry when MLFLOW_TRACKING_URI is set (no call is made here)."""
    if not settings.mlflow_tracking_uri:
        return NoRegistry()
    token, password = settings.mlflow_tracking_token, settings.mlflow_tracking_password
    return MlflowRegistry(
        settings.mlflow_tracking_uri,
        token=token.get_secret_value() if token else None,
        username=settings.mlflow_tracking_username,
        password=password.get_secret_value() if password else None,
    )


async def build_services(
    settings: Settings, config: BotConfig, *, schema_checked: bool = False
) -> tuple[Services, SlackApp]:
    """`schema_checked`: `serve` has migrated or checked the schema in a process of its own
    (bot/schema.py: so this one never loads Alembic)."""
    router, runbooks, policy = config.router, config.runbooks, config.policy
    engine = create_db_engine(settings.database_url)
    if not schema_checked:
        await anyio.to_thread.run_sync(
            lambda: prepare_schema(engine, migrate_on_start=settings.migrate_on_start)
        )
    metrics = BotMetrics()
    chat = SlackChat.create(
        token=settings.token(),
        base_url=settings.slack_api_url,
        timeout=settings.slack_timeout,
        post_interval=settings.slack_post_interval,
        on_call=metrics.slack_call,
    )
    delivery = SlackDelivery(
        engine, chat, public_url=settings.public_url, refresh_home=HomeRefresh(engine, chat)
    )
    outbox = Outbox(
        engine,
        concurrency=settings.workers,
        on_result=metrics.job_result,
        busy_channels=chat.pacer.busy,
    )
    outbox.register(delivery.handlers())
    metrics.watch_outbox(outbox.depth)
    prometheus: Metrics = (
        PrometheusMetrics(settings.prometheus_url) if settings.prometheus_url else NoPrometheus()
    )
    workloads = await anyio.to_thread.run_sync(connect_workloads, settings)
    silences: Silences = (
        AlertmanagerSilences(settings.alertmanager_url) if settings.alertmanager_url else NoAlertmanager()
    )
    registry = connect_registry(settings)
    registry_changes = RegistryChanges(engine, chat, config.models, registry)
    outbox.register(registry_changes.handlers())
    enrichment = Enrichment(engine, chat, runbooks, prometheus, workloads)
    outbox.register(enrichment.handlers())
    actions = ActionFlows(
        engine=engine,
        policy=policy,
        groups=UserGroups(chat, policy.usergroups()),
        metrics=metrics,
        wake=outbox.wake,
        models=config.models,
        workloads=workloads,
        silences=silences,
        registry=registry,
    )
    executor = ActionExecutor(
        engine=engine,
        chat=chat,
        metrics=metrics,
        wake=outbox.wake,
        runbooks=runbooks,
        workloads=workloads,
        silences=silences,
        prometheus=prometheus,
        verify_window=timedelta(seconds=settings.verify_seconds),
        registry=registry,
    )
    outbox.register(executor.handlers())
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
    intake = build_intake(
        engine,
        settings,
        config,
        connected=Connected(
            prometheus=prometheus.available, cluster=workloads.available, registry=registry.available
        ),
        metrics=metrics,
        wake=outbox.wake,
        owner=outbox.worker_id,
    )
    services = Services(
        settings=settings,
        engine=engine,
        router=router,
        metrics=metrics,
        chat=chat,
        outbox=outbox,
        runbooks=runbooks,
        policy=policy,
        prometheus=prometheus,
        workloads=workloads,
        silences=silences,
        registry=registry,
        enrichment=enrichment,
        actions=actions,
        kpis=kpis,
        intake=intake,
    )
    slack = build_slack_app(services)
    register_action_listeners(slack, actions)
    register_kpi_listeners(slack, kpis, chat, workloads)
    digest_channel = settings.kpi_channel or settings.channel
    if digest_channel:
        outbox.register(KpiDigestPoster(kpis, chat, digest_channel).handlers())
    channels = IncidentChannels(engine, chat, router, slack.identity.get, wake=outbox.wake)
    outbox.register(channels.handlers())
    outbox.register(PostmortemPoster(engine, chat).handlers())
    outbox.register(StormDigestPoster(engine, chat).handlers())
    outbox.check_handlers()
    return services, slack


def create_app(
    settings: Settings, *, run_workers: bool = True, freeze_gc: bool = False, schema_checked: bool = False
) -> FastAPI:
    """Raises ConfigError (with every file:line problem) for invalid configuration files;
    everything with a connection or a thread is built in the lifespan.

    `freeze_gc` (for `serve`, one app per process): once started, move every object made so
    far out of the cyclic garbage collector's reach; they live as long as the process, and
    leaving them in makes each full collection walk them all, a pause in the webhook's answers
    that grows with the size of the app rather than with the work."""
    config = BotConfig.load(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services, slack = await build_services(settings, config, schema_checked=schema_checked)
        app.state.services = services
        app.state.slack = slack
        # Slack over Socket Mode (SLACK_APP_TOKEN): connected once every listener is registered.
        socket = (
            SocketMode(
                slack.bolt,
                settings.app_token(),
                registry=services.metrics.registry,
                ping_interval=settings.slack_ping_interval,
            )
            if settings.socket_mode
            else None
        )
        app.state.socket = socket
        if socket is not None:
            await socket.start()
        tasks: list[asyncio.Task[None]] = []
        if run_workers:
            tasks.append(asyncio.create_task(services.outbox.run(), name="outbox"))
            tasks.append(
                asyncio.create_task(
                    prune_periodically(services.engine, retention=timedelta(days=settings.retention_days)),
                    name="prune",
                )
            )
            if config.digest is not None:
                tasks.append(
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
        # Last, so nothing between it and the `finally` that stops it can fail: webhooks only
        # arrive once the lifespan has started, and a failed Socket Mode start leaks no threads.
        services.intake.start()
        if freeze_gc:
            gc.freeze()
        logger.info("incident-bot started", extra={"version": __version__})
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(services.intake.stop)
            for task in tasks:
                task.cancel()
            for task in tasks:
                with suppress(asyncio.CancelledError, Exception):
                    await task
            if socket is not None:
                await socket.aclose()
            await slack.aclose()
            await services.chat.aclose()
            await services.silences.aclose()
            services.prometheus.close()
            services.kpis.close()
            services.workloads.close()
            services.registry.close()
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
    app.router.routes.append(webhook.route)
    app.include_router(api.router)
    app.include_router(models_api.router)
    app.include_router(slack_app.router)
    _document_webhook(app)
    return app


def _document_webhook(app: FastAPI) -> None:
    """Keep /alertmanager in the OpenAPI document: it is a plain ASGI route (bot/webhook.py),
    which FastAPI does not list itself."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            schema.setdefault("paths", {})["/alertmanager"] = webhook.OPENAPI_PATH
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
