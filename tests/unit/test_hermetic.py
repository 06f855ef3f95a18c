"""The tests run without the shell's bot, Slack, Prometheus, Alertmanager and Kubernetes
settings (tests/conftest.py), and only Settings reads the environment."""

from __future__ import annotations

import re
from pathlib import Path

from bot.config import Settings
from tests.conftest import leaky_environment

BOT = Path(__file__).resolve().parents[2] / "bot"


def test_no_setting_leaks_in_from_the_shell() -> None:
    assert leaky_environment() == []
    settings = Settings()
    assert (settings.kubeconfig, settings.prometheus_url, settings.alertmanager_url) == (None, None, None)
    assert not settings.in_cluster
    assert settings.policy_file is None
    assert settings.routing_file is None


def test_only_settings_reads_the_environment() -> None:
    readers = re.compile(r"os\.environ|os\.getenv|getenv\(")
    found = [
        str(path.relative_to(BOT.parent))
        for path in sorted(BOT.rglob("*.py"))
        if "sandbox" not in path.parts and path.name != "config.py" and readers.search(path.read_text())
    ]
    assert found == []
