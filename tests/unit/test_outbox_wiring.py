"""The outbox's wiring is checked when the bot starts: one handler per job kind, and every kind
the bot's modules enqueue has one."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.config import Settings
from bot.db import create_db_engine
from bot.errors import ConfigError
from bot.outbox import ClaimedJob, Outbox, declared_kinds
from bot.server import BotConfig, build_services


async def _noop(job: ClaimedJob) -> None:
    return None


def test_a_second_handler_for_one_kind_is_refused(tmp_path: Path) -> None:
    outbox = Outbox(create_db_engine(f"sqlite:///{tmp_path / 'bot.db'}"))
    outbox.register({"slack.reply": _noop})
    with pytest.raises(ConfigError, match=r"two handlers for the outbox job kind 'slack\.reply'"):
        outbox.register({"slack.reply": _noop})


def test_a_kind_without_handler_fails_the_check(tmp_path: Path) -> None:
    outbox = Outbox(create_db_engine(f"sqlite:///{tmp_path / 'bot.db'}"))
    outbox.register({"slack.reply": _noop})
    with pytest.raises(ConfigError, match=r"no outbox handler for the job kind\(s\): slack.post_root"):
        outbox.check_handlers(["slack.reply", "slack.post_root"])


def test_the_composition_root_handles_every_declared_kind(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'bot.db'}", runbooks_dir=tmp_path)

    async def build() -> set[str]:
        services, slack = await build_services(settings, BotConfig.load(settings))
        try:
            return set(services.outbox.handlers)
        finally:
            await slack.aclose()
            await services.chat.aclose()
            services.engine.dispose()

    assert asyncio.run(build()) == set(declared_kinds())
    assert {"slack.post_root", "slack.reply", "action.execute", "silences.expire"} <= declared_kinds()
