"""`incident-bot demo --once`, as a newcomer runs it (the console script, a real process)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.promstack import free_port


def test_demo_plays_an_incident_and_prints_what_slack_would_show(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bot",
            "demo",
            "--once",
            "--port",
            str(free_port()),
            "--workdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "bot answered 200" in out
    assert "slack <- chat.postMessage C0INCIDENTS" in out
    assert "=== #incidents (C0INCIDENTS) ===" in out
    assert "INC-1 · VLLMHighE2ELatency: p99 end-to-end latency above 2s" in out
    assert "INC-1 resolved" in out
    assert "Runbook: vllm-latency" in out
    assert "rolled out shortly before the alert" in out  # from the Kubernetes stand-in
    assert (tmp_path / "incident-bot-demo.db").exists()


def test_demo_moves_to_a_free_port_when_asked_for_a_busy_one(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "bot", "demo", "--once", "--port", str(port), "--workdir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"port {port} is busy" in result.stdout
