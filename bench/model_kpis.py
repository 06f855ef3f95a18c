"""How long the KPIs of every served model take, from a cold cache, against real Prometheus.

`--models` vLLM models (one scrape target each, the test exporters of
tests/support/kpi_exporters.py) are scraped every second for `--warmup` seconds; then
`GET /api/models?window=W` is asked `--rounds` times with a different window each time (so the
30-second cache never answers), and once more with a window already asked (the cache). The
figure is the HTTP round trip of the real bot, which is what `/model` waits for before its
2.5-second budget cuts it short.

    .venv/bin/python -m bench.model_kpis --models 40 --rounds 20
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from bench.stats import describe
from bot.sandbox.slack_api import SlackStandIn
from tests.support.botserver import make_settings, run_bot
from tests.support.kpi_exporters import ServingTarget, vllm_metrics
from tests.support.promstack import start_prometheus


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--warmup", type=float, default=20.0)
    args = parser.parse_args(argv)

    targets = [
        ServingTarget(
            [
                vllm_metrics(
                    model=f"org/model-{n}",
                    namespace="llm-prod",
                    pod=f"vllm-model-{n}-7c9d5b6f48-2xkqp",
                    ok_rate=5 + n,
                    error_rate=1,
                    latency_bucket=(0.5, 0.8),
                )
            ]
        ).start()
        for n in range(args.models)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        prometheus = start_prometheus(Path(tmp) / "prom", scrape_targets=[t.target for t in targets])
        try:
            prometheus.wait_for_targets_up(timeout=60)
            time.sleep(args.warmup)
            with (
                SlackStandIn() as slack,
                run_bot(make_settings(Path(tmp), slack.url, prometheus_url=prometheus.url)) as bot,
                httpx.Client(base_url=bot.url, timeout=60) as client,
            ):
                cold: list[float] = []
                for round_ in range(args.rounds):
                    started = time.perf_counter()
                    body = client.get("/api/models", params={"window": f"{10 + round_}s"}).json()
                    cold.append(time.perf_counter() - started)
                    assert len(body["models"]) == args.models, body.get("problems")
                started = time.perf_counter()
                client.get("/api/models", params={"window": f"{10 + args.rounds - 1}s"})
                cached = time.perf_counter() - started
        finally:
            prometheus.stop()
            for target in targets:
                target.stop()
    print(
        f"{args.models} vLLM models, {args.rounds} cold reports (every KPI, this window and the previous one)"
    )
    print(describe("cold GET /api/models", cold))
    print(describe("cached GET /api/models", [cached]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
