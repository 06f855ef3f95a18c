"""Alertmanager's side of a benchmark: notifications posted the way it posts them.

Alertmanager keeps its HTTP connections open and spends next to nothing per request; a
benchmark client that opens a client per request, or encodes JSON on the bot's two cores, takes
CPU from the bot it measures and times itself. So the bodies are encoded once, each sending
thread keeps one connection, and (`in_process=False`) the threads run in a process of their
own, away from the Slack stand-in, which answers from the benchmark's process.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

import httpx

from tests.support.botserver import WEBHOOK_TOKEN

__all__ = ["encode", "post_notifications"]


def encode(bodies: Sequence[dict[str, Any]]) -> list[bytes]:
    return [json.dumps(body).encode() for body in bodies]


def _post_all(url: str, bodies: Sequence[bytes], threads: int) -> list[float]:
    local = threading.local()
    acked: list[float] = []
    headers = {"Authorization": f"Bearer {WEBHOOK_TOKEN}", "Content-Type": "application/json"}

    def send(body: bytes) -> None:
        if not hasattr(local, "client"):
            local.client = httpx.Client(timeout=60, headers=headers)
        while True:
            response = local.client.post(f"{url}/alertmanager", content=body)
            if response.status_code == 200:
                acked.append(time.monotonic())
                return
            if response.status_code < 500:
                raise RuntimeError(f"refused: {response.status_code} {response.text}")
            time.sleep(0.5)  # Alertmanager retries a 5xx

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(send, bodies))
    return acked


def post_notifications(
    url: str, bodies: Sequence[bytes], *, threads: int = 16, in_process: bool = False
) -> list[float]:
    """Post every body until it is answered 200 (a 5xx is retried, a 4xx raises); returns the
    time.monotonic() of each 200 (the clock is the machine's, the same in every process)."""
    if in_process:
        return _post_all(url, bodies, threads)
    with ProcessPoolExecutor(max_workers=1) as sender:
        return sender.submit(_post_all, url, list(bodies), threads).result()
