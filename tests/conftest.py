"""Fixtures shared by every test: the Slack stand-in and the real bot running against it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings
from bot.sandbox.slack_api import SlackStandIn
from tests.support.botserver import RunningBot, make_settings, run_bot

pytest_plugins = ["tests.support.promstack"]


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
