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
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
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


async def fixed_rate(url: str, rate: int, duration: float, prefix: str) -> tuple[list[float], int]:
    """Open loop: a request every 1/rate s whatever the answers do; latency per request."""
    body = template()
    latencies: list[float] = []
    refused = 0
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=10) as client:

        async def one(n: int) -> None:
            nonlocal refused
            content = body.replace(MARK, f"{prefix}-{n}")
            started = time.perf_counter()
            try:
                response = await client.post(
                    "/alertmanager",
                    content=content,
                    headers={"Content-Type": "application/json", "Authorization": f"Bearer {WEBHOOK_TOKEN}"},
                )
                ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - started)
            refused += 0 if ok else 1

        tasks = []
        start = time.perf_counter()
        for n in range(int(rate * duration)):
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(n)))
        await asyncio.gather(*tasks)
    return latencies, refused


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
        settings = make_settings(workdir, slack.url, slack_post_interval=1.0)
        bot = BotProcess(settings, workdir / "bot.log").start()
        bare, bare_url = start_bare(workdir)
        try:
            for connections in (int(c) for c in args.connections.split(",")):
                base = run_wrk(bare_url, connections, args.duration, f"bare{connections}", workdir)
                ours = run_wrk(bot.url, connections, args.duration, f"bot{connections}", workdir)
                for name, result in (("bare FastAPI", base), ("incident-bot", ours)):
                    print(
                        f"{connections:>3} connections  {name:<13} {result.requests_per_second:8.0f} req/s  "
                        f"p99 {result.p99_ms:8.1f} ms  refused {result.refused} of {result.total}"
                    )
                ratio = ours.requests_per_second / base.requests_per_second
                print(f"{connections:>3} connections  ratio bot/bare {ratio:.2f}x")
            # A fresh bot (empty journal, empty database) for the fixed-rate run, so it does not
            # start behind the backlog the saturating runs above left.
            bot.stop()
            settings = make_settings(workdir / "fresh", slack.url, slack_post_interval=1.0)
            bot = BotProcess(settings, workdir / "bot-fresh.log").start()
            latencies, refused = asyncio.run(fixed_rate(bot.url, args.rate, args.rate_seconds, "rate"))
            ms = [v * 1000 for v in latencies]
            print(
                f"fixed {args.rate} req/s for {args.rate_seconds:.0f} s  incident-bot  n={len(ms)}  "
                f"median {percentile(ms, 0.5):.1f} ms  p99 {percentile(ms, 0.99):.1f} ms  refused {refused}"
            )
        finally:
            bare.terminate()
            bare.wait(timeout=10)
            bot.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
