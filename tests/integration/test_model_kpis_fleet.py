"""Discovery and KPIs across every model server the shipped exporter imitates: vLLM, Triton,
TorchServe, KServe Serverless (Knative queue-proxy) and the KServe model server, each found
with its namespace and deployment and given the KPIs its metrics allow (and, for the rest,
the reason why not)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.sandbox.exporter import ModelServingExporter
from bot.sandbox.slack_api import SlackStandIn
from tests.support.botserver import make_settings, run_bot
from tests.support.promstack import poll_until, start_prometheus


@pytest.fixture
def models(tmp_path: Path) -> Iterator[dict[tuple[str, str], dict[str, Any]]]:
    with ModelServingExporter(scenario="healthy") as exporter:
        prometheus = start_prometheus(tmp_path / "prom", scrape_targets=[exporter.target])
        try:
            prometheus.wait_for_targets_up()
            with (
                SlackStandIn() as slack,
                run_bot(make_settings(tmp_path, slack.url, prometheus_url=prometheus.url)) as bot,
            ):

                def served() -> dict[tuple[str, str], dict[str, Any]] | None:
                    body = httpx.get(f"{bot.url}/api/models", params={"window": "1m"}, timeout=30).json()
                    found = {(m["namespace"], m["model"]): m for m in body["models"]}
                    ready = found and all(m["requests_per_second"] for m in found.values())
                    return found if ready else None

                # Two scrapes make a rate; a loaded machine may need several KPI rounds to answer in full.
                yield poll_until(served, timeout=90, what="every model with a request rate", interval=1.0)
        finally:
            prometheus.stop()


def test_every_server_kind_is_discovered_with_its_kpis(models: dict[tuple[str, str], dict[str, Any]]) -> None:
    llama = models[("llm-prod", "meta-llama/Llama-3.1-8B-Instruct")]
    assert (llama["server"], llama["deployment"]) == ("vllm", "vllm-llama")
    assert llama["latency_p99_seconds"] > 0
    assert 0 <= llama["error_ratio"] < 1
    assert models[("llm-staging", "meta-llama/Llama-3.1-8B-Instruct")]["deployment"] == "vllm-llama"

    resnet = models[("vision-prod", "resnet50")]
    assert (resnet["server"], resnet["deployment"], resnet["version"]) == ("triton", "triton-vision", "1")
    assert resnet["error_ratio"] is not None

    bert = models[("ts-prod", "bert_seq_cls")]
    assert (bert["server"], bert["deployment"], bert["version"]) == ("torchserve", "torchserve-bert", "1.0")
    assert bert["latency_p99_seconds"] is None
    assert "no histogram" in bert["unavailable"]["latency_p99_seconds"]
    assert "per host" in bert["unavailable"]["error_ratio"]

    iris = models[("kserve-prod", "sklearn-iris")]
    assert (iris["server"], iris["deployment"]) == ("kserve", "sklearn-iris-predictor-00002-deployment")
    assert iris["latency_p99_seconds"] > 0  # queue-proxy milliseconds, in seconds

    churn = models[("kserve-prod", "churn-model")]
    assert (churn["server"], churn["deployment"]) == ("kserve-model-server", "churn-model-predictor")
    assert churn["latency_p99_seconds"] > 0
