"""Fixtures shared by every test: the Slack stand-in and the real bot running against it."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings
from bot.sandbox.slack_api import SlackStandIn
from tests.support.botserver import RunningBot, make_settings, run_bot

pytest_plugins = ["tests.support.promstack", "tests.support.postgres", "tests.support.mlflow"]

# What the shell running the tests may have set that the bot (through Settings) or the
# libraries it uses (the Kubernetes client, MLflow) would read: each test starts without it.
_LEAKY_NAMES = {
    "KUBECONFIG",
    "PROMETHEUS_URL",
    "ALERTMANAGER_URL",
    "KUBERNETES_SERVICE_HOST",
    "KUBERNETES_SERVICE_PORT",
}
_LEAKY_PREFIXES = ("INCIDENT_BOT_", "SLACK_", "MLFLOW_")


def leaky_environment() -> list[str]:
    return sorted(
        name
        for name in os.environ
        if name.upper() in _LEAKY_NAMES or name.upper().startswith(_LEAKY_PREFIXES)
    )


@pytest.fixture(autouse=True)
def hermetic_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see only the settings they pass: nothing from the developer's shell."""
    for name in leaky_environment():
        monkeypatch.delenv(name)


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    with SlackStandIn() as standin:
        yield standin


@pytest.fixture
def settings_for(tmp_path: Path, slack: SlackStandIn) -> Callable[..., Settings]:
    def build(**overrides: Any) -> Settings:
        return make_settings(tmp_path, slack.url, **overrides)

    return build


@pytest.fixture
def bot(settings_for: Callable[..., Settings]) -> Iterator[RunningBot]:
    with run_bot(settings_for()) as running:
        yield running
