"""Webhook intake throughput and latency, against a bare FastAPI endpoint in the same run.

Starts the bot (`python -m bot serve`, SQLite on local disk, the Slack stand-in) and a bare
FastAPI app that only parses the same JSON and answers 200, each in its own process, then
loads each with wrk: a real Alertmanager v4 payload (tests/payloads, 3 alerts), every request
with a groupKey of its own, so every request opens a new incident (a storm: the worst case
for the bot). Prints req/s, p99 and refused requests (non-2xx, socket errors, timeouts) for
16 and 64 connections and the ratio bot/bare; then an open-loop run at a fixed rate
(500 req/s) from an asyncio httpx client, for the webhook's p99 at that load.

Needs Debian's `wrk` (apt-get install wrk).

    python -m bench.ingest [--duration 10] [--connections 16,64] [--rate 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.stats import percentile
from bot.sandbox.slack_api import SlackStandIn
from tests.support.botserver import WEBHOOK_TOKEN, BotProcess, make_settings, wait_until
from tests.support.promstack import free_port

PAYLOAD = (
    Path(__file__).resolve().parent.parent
    / "tests/payloads/alertmanager_v4_firing_3alerts_blackbox_alertmonitor.json"
)
MARK = "@@GROUP@@"

LUA = r"""
local template = [==[%(template)s]==]
local counter = 0
tag = "x"
local prefix = "%(prefix)s"
local threads_seen = 0
function setup(thread)
  threads_seen = threads_seen + 1
  thread:set("tag", tostring(threads_seen))
end
function init(args)
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer %(token)s"
end
function request()
  counter = counter + 1
  local key = prefix .. "-" .. tag .. "-" .. counter
  local body = string.gsub(template, "%(mark)s", key)
  return wrk.format("POST", "%(path)s", nil, body)
end
"""

BARE_APP = """
import json
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

app = FastAPI()

@app.post("/alertmanager")
async def alertmanager(request: Request) -> JSONResponse:
    body = json.loads(await request.body())
    return JSONResponse({"status": "ok", "alerts": len(body["alerts"])})

@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
"""


@dataclass
class WrkResult:
    requests_per_second: float
    p99_ms: float
    refused: int
    total: int


def template() -> str:
    data = json.loads(PAYLOAD.read_text())
    data["groupKey"] = MARK
    return json.dumps(data)


def run_wrk(url: str, connections: int, duration: int, prefix: str, workdir: Path) -> WrkResult:
    script = workdir / f"{prefix}.lua"
    script.write_text(
        LUA
        % {
            "template": template(),
            "prefix": prefix,
            "token": WEBHOOK_TOKEN,
            "mark": MARK,
            "path": "/alertmanager",
        }
    )
    out = subprocess.run(
        [
            "wrk",
            "-t",
            "2",
            "-c",
            str(connections),
            "-d",
            f"{duration}s",
            "--timeout",
            "10s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    assert p99 is not None, out
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    refused = 0
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        refused += int(non2xx.group(1))
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if errors:
        refused += sum(int(x) for x in errors.groups())
    return WrkResult(rps, float(p99.group(1)) * scale, refused, total)


async def fixed_rate(url: str, rate: int, duration: float, prefix: str) -> tuple[list[float], dict[str, int]]:
    """Open loop: a request every 1/rate s whatever the answers do. Latency is counted from
    when the request was due, not when it was sent (no coordinated omission), over plain
    keep-alive HTTP/1.1 connections (an HTTP client library costs more CPU per request
    than the server under test, and would measure itself)."""
    parsed = httpx.URL(url)
    host, port = parsed.host, parsed.port or 80
    body = template()
    latencies: list[float] = []
    refused: dict[str, int] = {}
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    for _ in range(32):
        idle.append(await asyncio.open_connection(host, port))

    async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, content: bytes) -> str:
        writer.write(
            b"POST /alertmanager HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {WEBHOOK_TOKEN}\r\nContent-Length: {len(content)}\r\n\r\n".encode()
            + content
        )
        status = await reader.readline()
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await reader.readexactly(length)
        return (status.split(b" ", 2)[1:2] or [b"?"])[0].decode()

    async def one(n: int, due: float) -> None:
        content = body.replace(MARK, f"{prefix}-{n}").encode()
        outcome = "?"
        for attempt in range(2):
            # A kept-alive connection idle past the server's keep-alive timeout is closed by the
            # server; like any HTTP client, send again once on a new connection.
            reused = bool(idle) and attempt == 0
            connection = None
            try:
                connection = idle.pop() if reused else await asyncio.open_connection(host, port)
                outcome = await asyncio.wait_for(exchange(*connection, content), 10)
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
                outcome = type(exc).__name__
                if connection is not None:
                    connection[1].close()
                if reused and not isinstance(exc, TimeoutError):
                    continue
                break
            if outcome == "?" and reused:  # closed before any answer
                connection[1].close()
                continue
            idle.append(connection)
            break
        latencies.append(time.perf_counter() - due)
        if outcome != "200":
            refused[outcome] = refused.get(outcome, 0) + 1

    tasks = []
    start = time.perf_counter()
    for n in range(int(rate * duration)):
        due = start + n / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(n, due)))
    await asyncio.gather(*tasks)
    for _, writer in idle:
        writer.close()
    return latencies, refused


def run_fixed_rate(url: str, rate: int, duration: float, prefix: str) -> tuple[list[float], dict[str, int]]:
    """In a process of its own: the Slack stand-in's threads in this one would delay it."""
    return asyncio.run(fixed_rate(url, rate, duration, prefix))


def start_bare(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    (workdir / "bare_app.py").write_text(BARE_APP)
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bare_app:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=workdir,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(up, timeout=30, message="bare FastAPI app")
    return process, url


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", default="16,64")
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--rate-seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk not found: apt-get install wrk", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory() as tmp, SlackStandIn() as slack:
        workdir = Path(tmp)
        bare, bare_url = start_bare(workdir)

        def fresh_bot(name: str) -> BotProcess:
            # Its own empty database each time, and no earlier run's backlog still being
            # applied in the background while the bare app is measured.
            settings = make_settings(workdir / name, slack.url, slack_post_interval=1.0)
            return BotProcess(settings, workdir / f"{name}.log").start()

        try:
            for connections in (int(c) for c in args.connections.split(",")):
                bot = fresh_bot(f"bot{connections}")
                try:
                    base = run_wrk(bare_url, connections, args.duration, f"bare{connections}", workdir)
                    ours = run_wrk(bot.url, connections, args.duration, f"bot{connections}", workdir)
                finally:
                    bot.stop()
                for name, result in (("bare FastAPI", base), ("incident-bot", ours)):
                    print(
                        f"{connections:>3} connections  {name:<13} {result.requests_per_second:8.0f} req/s  "
                        f"p99 {result.p99_ms:8.1f} ms  refused {result.refused} of {result.total}"
                    )
                ratio = ours.requests_per_second / base.requests_per_second
                print(f"{connections:>3} connections  ratio bot/bare {ratio:.2f}x", flush=True)
            bot = fresh_bot("rate")
            try:
                with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as client:
                    for name, url in (("bare FastAPI", bare_url), ("incident-bot", bot.url)):
                        latencies, refused = client.submit(
                            run_fixed_rate, url, args.rate, args.rate_seconds, f"rate-{name[0]}"
                        ).result()
                        ms = [v * 1000 for v in latencies]
                        why = ", ".join(f"{n} {reason}" for reason, n in sorted(refused.items()))
                        print(
                            f"fixed {args.rate} req/s for {args.rate_seconds:.0f} s  {name:<13} n={len(ms)}  "
                            f"median {percentile(ms, 0.5):.1f} ms  p99 {percentile(ms, 0.99):.1f} ms  "
                            f"refused {sum(refused.values())}{f' ({why})' if why else ''}"
                        )
            finally:
                bot.stop()
        finally:
            bare.terminate()
            bare.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
