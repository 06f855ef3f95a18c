"""How long a newcomer waits in the live demo (`incident-bot demo`, real process, real
Prometheus and Alertmanager where installed):

- start: from launching the process to the console URL being printed;
- first incident: from launching to the self-started "bad rollout" incident being in Slack;
- fault to incident: from flipping "error burst" in the console to its incident in Slack;
- rollback to resolved: from confirming the rollback (as the console does: signed Slack
  requests) to the bad-rollout incident's resolution (the metrics recover, Prometheus stops
  firing, Alertmanager sends "resolved").
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from bench.stats import describe
from tests.support.democonsole import running_demo


def _poll(what: str, check: Callable[[], Any], timeout: float = 180.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout}s for {what}")
        time.sleep(0.1)


def _roots(url: str) -> list[dict[str, Any]]:
    state = httpx.get(url + "api/state", timeout=10).json()
    return [m for c in state["channels"] if c["id"] == "C0INCIDENTS" for m in c["messages"]]


def _click(url: str, body: dict[str, Any]) -> None:
    httpx.post(url + "api/click", json=body, timeout=30).raise_for_status()


def one_run(workdir: Path) -> dict[str, float]:
    launched = time.monotonic()
    with running_demo(workdir) as demo:
        started = time.monotonic() - launched
        url = demo.console_url
        llama = _poll("the first incident", lambda: [m for m in _roots(url) if "vllm-llama" in m["text"]])[0]
        first = time.monotonic() - launched

        flipped = time.monotonic()
        httpx.post(url + "api/fault", json={"key": "errors", "on": True}, timeout=10).raise_for_status()
        _poll("the error-burst incident", lambda: [m for m in _roots(url) if "vllm-qwen" in m["text"]])
        fault = time.monotonic() - flipped

        def offer() -> Any:
            root = next(m for m in _roots(url) if m["ts"] == llama["ts"])
            for reply in root["replies"]:
                for block in reply["blocks"]:
                    for element in block.get("elements") or []:
                        if element.get("type") == "button" and "Roll back" in element["text"]["text"]:
                            return reply["ts"], block["block_id"], element["action_id"]
            return None

        ts, block_id, action_id = _poll("the runbook's rollback button", offer)
        user = {"user": "U0ONCALL1", "channel": "C0INCIDENTS"}
        _click(url, {**user, "ts": ts, "block_id": block_id, "action_id": action_id})

        def confirmation() -> Any:
            state = httpx.get(url + "api/state", timeout=10).json()
            shown = [e for c in state["channels"] for e in c["ephemerals"] if "Confirm" in e["text"]]
            return shown[-1] if shown else None

        eph = _poll("the confirmation", confirmation)
        confirmed = time.monotonic()
        _click(url, {**user, "ephemeral": eph["index"], "action_id": "action_confirm", "block_id": None})
        _poll(
            "the resolution",
            lambda: any(m["ts"] == llama["ts"] and "RESOLVED" in m["text"] for m in _roots(url)),
        )
        resolved = time.monotonic() - confirmed
    return {
        "start": started,
        "first incident": first,
        "fault to incident": fault,
        "rollback to resolved": resolved,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    figures: dict[str, list[float]] = {}
    for index in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            for name, seconds in one_run(Path(tmp) / f"demo-{index}").items():
                figures.setdefault(name, []).append(seconds)
    for name, seconds in figures.items():
        print(describe(name, seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
