"""Per-model KPIs against a real Prometheus scraping model servers whose counters grow like
real ones: vLLM and Triton names, one model down for part of the window, one with a drift
gauge, one costed by the shipped recording rule, one by GPU-hours times a price. Every
expected figure is worked out from what the exporters serve (their rates, the bucket every
latency falls in, the scrapes they answered), and read back through `GET /api/models`."""

from __future__ import annotations

import math
import re
import socketserver
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bot.sandbox.kube_api import KubeStandIn
from bot.sandbox.slack_api import SlackStandIn
from tests.support.botserver import RunningBot, make_settings, run_bot, wait_until
from tests.support.kpi_exporters import ServingTarget, constant, triton_metrics, vllm_metrics
from tests.support.payloads import alert, notification
from tests.support.promstack import PrometheusServer, free_port, poll_until, start_prometheus
from tests.support.slack_requests import SlackSender

RULES = Path(__file__).resolve().parents[2] / "manifests" / "prometheus-rules.yaml"

LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
MISTRAL = "mistralai/Mistral-7B-Instruct-v0.3"
RESNET = "resnet50"
LLAMA_POD = "vllm-llama-7c9d5b6f48-2xkqp"
MISTRAL_POD = "vllm-mistral-5f6b8d9c7d-hn4vx"
TRITON_POD = "triton-vision-6b7d8c9f5d-p4x2z"
GPU_PRICE = 3.0
WINDOW = 15  # seconds: the KPI window of these tests
ROLLED_OUT = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)

MODELS_FILE = f"""
models:
  - model: {LLAMA}
    namespace: llm-prod
    display_name: Llama chat
    owners: [U0LLAMA1, S0LLMTEAM]
    owners_channel: C0LLMOWNERS
    slo: {{uptime_pct: 99.5, latency_p99_seconds: 0.5}}
    gpu_hour_usd: {GPU_PRICE}
  - model: {RESNET}
    slo: {{uptime_pct: 99}}
  - model: {MISTRAL}
    queries:   # the mean instead of the p99: the histogram's _sum over its _count
      latency_p99_seconds: >-
        sum(rate(vllm:e2e_request_latency_seconds_sum{{model_name="{MISTRAL}"}}[{{window}}]{{offset}}))
        / sum(rate(vllm:e2e_request_latency_seconds_count{{model_name="{MISTRAL}"}}[{{window}}]{{offset}}))
"""


def cost_rules() -> str:
    """The shipped cost recording rules, as a plain rules file, with their 5-minute rate
    shortened to 4 seconds so the test need not wait 5 minutes for a full rate window."""
    document = next(
        d for d in yaml.safe_load_all(RULES.read_text()) if d and d.get("kind") == "PrometheusRule"
    )
    group = next(g for g in document["spec"]["groups"] if g["name"] == "inference-cost")
    rules = [{**r, "expr": r["expr"].replace("[5m]", "[4s]")} for r in group["rules"] if "record" in r]
    assert all("[4s]" in r["expr"] for r in rules if r["record"] == "model:inference_cost_usd_per_1k:rate5m")
    return yaml.safe_dump({"groups": [{"name": "inference-cost", "interval": "1s", "rules": rules}]})


@dataclass
class Fleet:
    prometheus: PrometheusServer
    llama: ServingTarget
    mistral: ServingTarget
    triton: ServingTarget
    drift: ServingTarget
    down_from: float
    down_until: float
    measured_at: float


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    gpu = (
        'kube_pod_container_resource_requests{{namespace="llm-prod",pod="{pod}",container="vllm",'
        'resource="nvidia_com_gpu",unit="integer"}} {n}\n'
    )
    llama = ServingTarget(
        [
            vllm_metrics(
                model=LLAMA,
                namespace="llm-prod",
                pod=LLAMA_POD,
                ok_rate=9,
                error_rate=1,
                latency_bucket=(0.5, 0.8),
            ),
            constant(gpu.format(pod=LLAMA_POD, n=2)),
        ]
    ).start()
    mistral = ServingTarget(
        [
            vllm_metrics(
                model=MISTRAL,
                namespace="llm-prod",
                pod=MISTRAL_POD,
                ok_rate=6,
                error_rate=0,
                latency_bucket=(1.0, 1.5),
            ),
            # OpenCost: one GPU of a node priced at 4 USD per GPU-hour.
            constant(
                f'container_gpu_allocation{{namespace="llm-prod",pod="{MISTRAL_POD}",container="vllm",'
                'node="gpu-node-a"} 1\n'
                'node_gpu_hourly_cost{node="gpu-node-a",instance="gpu-node-a"} 4\n'
            ),
        ]
    ).start()
    triton = ServingTarget(
        [
            triton_metrics(
                model=RESNET,
                version="2",
                namespace="vision-prod",
                pod=TRITON_POD,
                ok_rate=20,
                failure_rate=5,
                first_response_bucket_ms=(100, 500),
            )
        ]
    ).start()
    drift = ServingTarget(
        [
            constant(
                f'ml_feature_drift_score{{model_name="{LLAMA}",model_version="v14",'
                'feature="prompt_length",method="psi",reference="train"} 0.12\n'
                f'ml_feature_drift_score{{model_name="{LLAMA}",model_version="v14",'
                'feature="language",method="jsd",reference="train"} 0.31\n'
            )
        ]
    ).start()
    workdir = tmp_path_factory.mktemp("kpi-prometheus")
    prometheus = start_prometheus(
        workdir, scrape_targets=[t.target for t in (llama, mistral, triton, drift)], rules=cost_rules()
    )
    try:
        prometheus.wait_for_targets_up()
        time.sleep(5 + WINDOW / 3)  # 5s more: the cost rule's 4s rate is full before the window
        triton.down = True
        down_from = time.time()
        time.sleep(WINDOW / 3)
        triton.down = False
        down_until = time.time()
        poll_until(
            lambda: triton.scrapes[-1].ok and len(prometheus.query("up == 1")) == 4,
            timeout=20,
            what="triton back",
        )
        time.sleep(WINDOW / 3 - 1)
        yield Fleet(prometheus, llama, mistral, triton, drift, down_from, down_until, time.time())
    finally:
        prometheus.stop()
        for target in (llama, mistral, triton, drift):
            target.stop()


@dataclass
class Bot:
    running: RunningBot
    slack: SlackStandIn

    @property
    def url(self) -> str:
        return self.running.url


@pytest.fixture
def kpi_bot(fleet: Fleet, tmp_path: Path) -> Iterator[Bot]:
    models = tmp_path / "models.yaml"
    models.write_text(MODELS_FILE)
    with SlackStandIn() as slack, KubeStandIn() as kube:
        kube.add_deployment(
            "llm-prod",
            "vllm-llama",
            image="vllm/vllm-openai:v0.6.3",
            replicas=1,
            model=LLAMA,
            model_version="v14",
            created_at=ROLLED_OUT,
            history=[{"model_version": "v13", "created_at": ROLLED_OUT - timedelta(days=2)}],
        )
        settings = make_settings(
            tmp_path,
            slack.url,
            prometheus_url=fleet.prometheus.url,
            models_file=models,
            kubeconfig=str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
        )
        with run_bot(settings) as bot:
            yield Bot(bot, slack)


@pytest.fixture
def bot_url(kpi_bot: Bot) -> str:
    return kpi_bot.url


def by_model(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["model"]: m for m in body["models"]}


def test_every_served_model_is_found_with_its_namespace_and_deployment(fleet: Fleet, bot_url: str) -> None:
    body = httpx.get(f"{bot_url}/api/models", params={"window": f"{WINDOW}s"}, timeout=30).json()
    models = by_model(body)
    assert set(models) == {LLAMA, MISTRAL, RESNET}
    assert (models[LLAMA]["namespace"], models[LLAMA]["deployment"], models[LLAMA]["server"]) == (
        "llm-prod",
        "vllm-llama",
        "vllm",
    )
    assert (models[RESNET]["namespace"], models[RESNET]["deployment"], models[RESNET]["version"]) == (
        "vision-prod",
        "triton-vision",
        "2",
    )
    assert models[LLAMA]["display_name"] == "Llama chat"
    assert models[LLAMA]["owners"] == ["U0LLAMA1", "S0LLMTEAM"]


def test_kpis_match_what_the_exporters_served(fleet: Fleet, bot_url: str) -> None:
    end = time.time()
    body = httpx.get(f"{bot_url}/api/models", params={"window": f"{WINDOW}s"}, timeout=30).json()
    models = by_model(body)
    llama, mistral, resnet = models[LLAMA], models[MISTRAL], models[RESNET]

    # Up the whole time: 100%. Triton answered 503 for a while: its share of good scrapes.
    assert llama["uptime_pct"] == 100
    expected = fleet.triton.uptime_share(end - WINDOW, end) * 100
    assert expected < 90  # the outage is inside the window
    assert resnet["uptime_pct"] == pytest.approx(expected, abs=100 * 2 / WINDOW)

    # Every latency in the (0.5, 0.8] bucket: p99 = 0.5 + 0.99 * 0.3. Triton's (100, 500] ms.
    assert llama["latency_p99_seconds"] == pytest.approx(0.5 + 0.99 * 0.3)
    # Mistral's latency comes from the models file's own query: the exporter's _sum says 1.5 s each.
    assert mistral["latency_p99_seconds"] == pytest.approx(1.5)
    assert resnet["latency_p99_seconds"] == pytest.approx((100 + 0.99 * 400) / 1000)

    # 9 stopped + 1 errored per second; Triton 20 ok + 5 failed (counted apart).
    assert llama["requests_per_second"] == pytest.approx(10, rel=0.03)
    assert llama["error_ratio"] == pytest.approx(0.1, rel=0.03)
    assert mistral["error_ratio"] == 0
    assert resnet["error_ratio"] == pytest.approx(0.2, rel=0.03)

    # Mistral: the shipped recording rule, 4 USD/GPU-h over 6 req/s = 4 / (6 * 3.6) USD per 1k.
    assert mistral["cost_per_1k_usd"] == pytest.approx(4 / (6 * 3.6), rel=0.03)
    # Llama: no cost metric; 2 GPUs x 3 USD/h over 10 req/s, per 1k requests.
    assert llama["cost_per_1k_usd"] == pytest.approx(2 * GPU_PRICE / 3600 / 10 * 1000, rel=0.1)
    # Triton: neither a cost metric nor a price.
    assert resnet["cost_per_1k_usd"] is None
    assert "gpu_hour_usd" in resnet["unavailable"]["cost_per_1k_usd"]

    # The highest drift score of the model's features; none exported for the others.
    assert llama["drift_score"] == pytest.approx(0.31)
    assert mistral["drift_score"] is None
    assert "drift" in mistral["unavailable"]["drift_score"]

    # SLOs from the models file: llama's p99 0.797 s breaks its 0.5 s target.
    assert llama["slo_breaches"] == ["p99 latency 0.797s > 0.5s"]
    assert resnet["slo_breaches"]
    assert resnet["slo_breaches"][0].startswith("uptime ")
    assert resnet["incidents"] == 0
    assert resnet["mtta_seconds"] is None


def test_one_model_by_name_and_errors(fleet: Fleet, bot_url: str) -> None:
    one = httpx.get(f"{bot_url}/api/models/{LLAMA}", params={"window": f"{WINDOW}s"}, timeout=30)
    assert one.status_code == 200
    assert one.json()["model"] == LLAMA
    assert one.json()["window"] == f"{WINDOW}s"
    missing = httpx.get(f"{bot_url}/api/models/no-such-model", timeout=30)
    assert missing.status_code == 404
    assert "no-such-model" in missing.json()["error"]
    bad = httpx.get(f"{bot_url}/api/models", params={"window": "7 days"}, timeout=30)
    assert bad.status_code == 422
    assert "'7 days'" in bad.json()["error"]


def test_model_lists_every_model_in_slack(kpi_bot: Bot) -> None:
    sender = SlackSender(kpi_bot.url, kpi_bot.slack)
    sent = sender.command(f"{WINDOW}s", command="/model")
    assert sent.response.status_code == 200
    text = sender.answer(sent)
    assert f"3 models* over the last {WINDOW}s" in text
    for name in (LLAMA, MISTRAL, RESNET):
        assert name in text
    assert "p99 797 ms" in text  # llama, every latency in the (0.5, 0.8] bucket


def test_model_scorecard_with_trend_slo_incident_and_chart(kpi_bot: Bot) -> None:
    # An open critical incident about the model, as Alertmanager would post it.
    posted = kpi_bot.running.post_alert(
        notification(
            alert("VLLMHighE2ELatency", model_name=LLAMA, namespace="llm-prod"),
            group_key='{}:{alertname="VLLMHighE2ELatency", model_name="llama"}',
        )
    )
    assert posted.status_code == 200
    sender = SlackSender(kpi_bot.url, kpi_bot.slack)
    sent = sender.command(f"Llama-3.1-8B-Instruct {WINDOW}s", command="/model")
    text = sender.answer(sent)
    assert "*Llama chat* (llm-prod/meta-llama/Llama-3.1-8B-Instruct)" in text
    assert "p99 latency *797 ms*" in text
    assert "SLO ≤ 500 ms :x:" in text  # the models file's 0.5 s target, missed
    assert "uptime *100.00%*" in text
    assert "SLO ≥ 99.5% :white_check_mark:" in text
    assert "drift score *0.31*" in text
    cost = re.search(r"cost per 1k requests \*\$([0-9.]+)\*", text)
    assert cost is not None, text
    # math.isclose, not pytest.approx: the bot (in this process) may be importing numpy for the
    # chart right now, and approx looks numpy up in sys.modules half-initialised.
    assert math.isclose(float(cost.group(1)), 2 * GPU_PRICE / 3600 / 10 * 1000, rel_tol=0.1)
    assert "deployment: llm-prod/vllm-llama" in text
    # From the Kubernetes API: the current revision, when it rolled out, its model version.
    assert "model version: v14" in text
    assert f"last rollout: revision 2, <!date^{int(ROLLED_OUT.timestamp())}^" in text
    assert "incidents *1*" in text
    assert "INC-1 critical · triggered" in text
    # The window before lay (mostly) before the exporters started: said, not made up.
    assert "from" in text or "no previous window" in text
    upload = wait_until(
        lambda: [u for u in kpi_bot.slack.uploads() if u.completed], timeout=30, message="the KPI chart"
    )[0]
    assert upload.filename.endswith(".png")
    assert upload.data[:8] == b"\x89PNG\r\n\x1a\n"


def test_model_command_errors_are_said_plainly(kpi_bot: Bot) -> None:
    sender = SlackSender(kpi_bot.url, kpi_bot.slack)
    unknown = sender.command("no-such-model", command="/model")
    assert "No model named no-such-model" in sender.answer(unknown)
    typo = sender.command("llama 7 days", command="/model")
    assert "'days' is not a Prometheus duration" in typo.response.text


def test_digest_goes_out_once_per_schedule_point_across_replicas_and_a_restart(
    fleet: Fleet, tmp_path: Path
) -> None:
    models = tmp_path / "models.yaml"
    models.write_text(MODELS_FILE)
    with SlackStandIn() as slack:
        slack.add_channel("model-kpis", channel_id="C0KPIS")
        settings = make_settings(
            tmp_path,
            slack.url,
            prometheus_url=fleet.prometheus.url,
            models_file=models,
            kpi_digest="every 10s",
            kpi_channel="C0KPIS",
        )

        def digests() -> list[str]:
            return [
                (m.metadata or {}).get("event_payload", {}).get("kpi_digest", "")
                for m in slack.messages("C0KPIS")
                if "Model KPIs" in m.text
            ]

        # Two replicas on one database: the schedule point that has just passed, then the next.
        with run_bot(settings) as first, run_bot(settings) as second:
            assert first.url != second.url
            wait_until(lambda: len(digests()) >= 1, timeout=20, message="the first digest")
            wait_until(lambda: len(digests()) >= 2, timeout=30, message="the second digest")
        # A restart within the same schedule point posts nothing more for it; the next one once.
        with run_bot(settings):
            time.sleep(3)
            assert len(digests()) == 2
            wait_until(lambda: len(digests()) >= 3, timeout=30, message="the digest after the restart")
            time.sleep(2)  # room for a duplicate to show up, if there were one
        points = digests()
        assert len(points) == 3
        assert len(set(points)) == 3
        assert all(p.startswith("every 10s@") for p in points)
        # SLO breaches first: llama's p99 of 797 ms misses its 500 ms target.
        text = "\n".join(b["text"]["text"] for b in slack.messages("C0KPIS")[-1].blocks if b.get("text"))
        assert "breaching an SLO" in text
        sections = [b["text"]["text"] for b in slack.messages("C0KPIS")[-1].blocks if b["type"] == "section"]
        assert "Llama chat" in sections[1]
        assert "p99 latency 0.797s &gt; 0.5s" in sections[1]  # ">" escaped for mrkdwn


class _Silent(socketserver.BaseRequestHandler):
    """Accepts a connection and never answers: a Prometheus stuck on a heavy query."""

    def handle(self) -> None:
        time.sleep(15)


def test_model_answers_with_what_it_has_when_prometheus_is_slow_or_down(tmp_path: Path) -> None:
    models = tmp_path / "models.yaml"
    models.write_text(MODELS_FILE)
    silent = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Silent)
    silent.daemon_threads = True
    threading.Thread(target=silent.serve_forever, daemon=True).start()
    try:
        with SlackStandIn() as slack:
            slow = f"http://127.0.0.1:{silent.server_address[1]}"
            with run_bot(make_settings(tmp_path, slack.url, prometheus_url=slow, models_file=models)) as bot:
                sender = SlackSender(bot.url, slack)
                sent = sender.command("Llama-3.1-8B-Instruct 1h", command="/model")
                assert sent.response.status_code == 200
                text = sender.answer(sent)
                assert "*Llama chat*" in text
                assert "p99 latency: not computed" in text
                assert "Prometheus did not answer within 2.5s" in text
                # The incident records answered: they are counted all the same.
                assert "incidents *0*" in text
            down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
            with run_bot(make_settings(tmp_path, slack.url, prometheus_url=down, models_file=models)) as bot:
                sender = SlackSender(bot.url, slack)
                text = sender.answer(sender.command("", command="/model"))
                assert "Prometheus query failed" in text
                assert "Llama chat" in text  # described in the models file, listed anyway
    finally:
        silent.shutdown()
        silent.server_close()
