"""A bot without Prometheus, Kubernetes or Alertmanager gets null objects with the same
protocol as the real adapters (never None): they say they are not available, and every call
names the setting that is missing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.config import Settings
from bot.errors import BotError, ConfigError, UpstreamError
from bot.server import BotConfig, build_services
from bot.services import Services


def test_absent_integrations_are_null_objects_that_name_the_missing_setting(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'bot.db'}", runbooks_dir=tmp_path)

    async def build() -> Services:
        services, slack = await build_services(settings, BotConfig.load(settings))
        await slack.aclose()
        await services.chat.aclose()
        return services

    services = asyncio.run(build())
    try:
        assert not services.prometheus.available
        assert not services.workloads.available
        assert not services.silences.available
        assert not services.registry.available
        with pytest.raises(ConfigError, match="model registry is not configured: set MLFLOW_TRACKING_URI"):
            services.registry.model("churn-xgb")
        with pytest.raises(UpstreamError, match="PROMETHEUS_URL is not set"):
            services.prometheus.query("up")
        with pytest.raises(
            ConfigError, match="Kubernetes is not configured: set KUBECONFIG or run in-cluster"
        ):
            services.workloads.describe("llm-prod", "vllm-llama")
        with pytest.raises(ConfigError, match="Alertmanager is not configured: set ALERTMANAGER_URL"):
            asyncio.run(services.silences.list())
        with pytest.raises(BotError):
            services.workloads.rollback("llm-prod", "vllm-llama")
        assert services.enrichment.metrics is services.prometheus
        assert services.actions.workloads is services.workloads
    finally:
        services.engine.dispose()
