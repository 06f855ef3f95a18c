"""The command line as a newcomer and an operator meet it: real processes, real exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from bot.sandbox.slack_api import SlackStandIn
from tests.support.botserver import SLACK_TOKEN, WEBHOOK_TOKEN, BotProcess, make_settings
from tests.support.payloads import alert, notification

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "INCIDENT_BOT_"))}
    clean.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=clean,
        check=False,
    )


def test_serve_without_a_required_setting_says_which_in_one_line(tmp_path: Path) -> None:
    result = run_cli("serve", "--port", "0", env={"INCIDENT_BOT_CHANNEL": "C0INCIDENTS"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == ["incident-bot: missing required setting SLACK_BOT_TOKEN: the bot token (xoxb-...)"]


def test_serve_refuses_to_start_on_an_invalid_runbook(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("name: broken\ndescription: x\nmatch: ['alertname=~\"(\"']\n")
    env = {
        "SLACK_BOT_TOKEN": SLACK_TOKEN,
        "SLACK_SIGNING_SECRET": "s",
        "INCIDENT_BOT_CHANNEL": "C0INCIDENTS",
        "INCIDENT_BOT_RUNBOOKS_DIR": str(tmp_path),
        "INCIDENT_BOT_DATABASE_URL": f"sqlite:///{tmp_path / 'bot.db'}",
    }
    result = run_cli("serve", "--port", "0", env=env)
    assert result.returncode == 2
    assert f"{tmp_path / 'broken.yaml'}:3:" in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_setting_value_is_named(tmp_path: Path) -> None:
    result = run_cli("serve", env={"INCIDENT_BOT_MAX_BODY_BYTES": "lots"})
    assert result.returncode == 2
    assert "INCIDENT_BOT_MAX_BODY_BYTES" in result.stderr


def test_runbooks_check_and_test_on_the_shipped_runbooks() -> None:
    assert run_cli("runbooks", "check", str(REPO / "runbooks")).returncode == 0
    assert run_cli("runbooks", "test", str(REPO / "runbooks")).returncode == 0


def test_runbooks_check_prints_file_line_errors_and_exits_1(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        "name: bad\ndescription: x\nmatch: ['alertname=\"X\"']\nsteps: ['{{ labels.x ']\n"
    )
    result = run_cli("runbooks", "check", str(tmp_path))
    assert result.returncode == 1
    assert f"{tmp_path / 'bad.yaml'}:4:" in result.stdout + result.stderr


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("incident-bot ")


def test_no_secret_ever_reaches_the_logs(tmp_path: Path) -> None:
    """Tokens in every place they could leak from: Slack refusing the token, a wrong webhook
    token, request logging at DEBUG."""
    with SlackStandIn(bot_token="xoxb-a-different-token") as slack:  # so every call is invalid_auth
        settings = make_settings(tmp_path, slack.url, log_level="DEBUG", log_format="json")
        log = tmp_path / "bot.log"
        process = BotProcess(settings, log).start()
        try:
            assert process.post_alert(notification(alert())).status_code == 200
            httpx.post(
                f"{process.url}/alertmanager", json={}, headers={"Authorization": "Bearer wrong-token-123"}
            )
            slack.wait_for("chat.postMessage", timeout=30)
        finally:
            process.stop()
    text = log.read_text()
    assert "invalid_auth" in text  # the failure itself is logged...
    for secret in (SLACK_TOKEN, WEBHOOK_TOKEN, "wrong-token-123", settings.signing_secret()):
        assert secret not in text  # ...but never a credential
