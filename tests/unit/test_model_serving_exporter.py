"""The fake model-serving fleet: real HTTP, real exposition format, series that move like the real ones."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from bot.runbooks import RunbookContext, load_runbooks, render_runbook
from bot.sandbox.exporter import SCENARIOS, ModelServingExporter

ROOT = Path(__file__).resolve().parents[2]


class Clock:
    """A clock the test moves by hand, so "ten seconds later" takes no time."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def exporter(clock: Clock) -> Iterator[ModelServingExporter]:
    with ModelServingExporter(port=0, clock=clock) as running:
        yield running


def scrape(exporter: ModelServingExporter) -> str:
    response = httpx.get(f"{exporter.url}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return response.text


_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:\\.|[^"\\])*)"')


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Samples exactly as exposed (prometheus_client's parser would rename counters to `_total`)."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        found = _SAMPLE.match(line)
        assert found, line
        labels = frozenset(_LABEL.findall(found.group("labels") or ""))
        out[(found.group("name"), labels)] = float(found.group("value"))
    return out


def value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    found = [v for (n, ls), v in samples(text).items() if n == name and set(labels.items()) <= set(ls)]
    assert found, f"no sample {name}{labels}"
    return sum(found)


def test_serves_on_a_free_port_and_stops(clock: Clock) -> None:
    exporter = ModelServingExporter(port=0, clock=clock).start()
    assert exporter.port > 0
    assert exporter.url == f"http://127.0.0.1:{exporter.port}"
    assert exporter.target == f"127.0.0.1:{exporter.port}"
    assert "vllm:num_requests_waiting" in scrape(exporter)
    url = exporter.url
    exporter.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/metrics", timeout=2)


def test_exposition_names_counters_like_the_real_exporters(exporter: ModelServingExporter) -> None:
    text = scrape(exporter)
    # Triton (prometheus-cpp), TorchServe and Knative: no `_total`; vLLM (prometheus_client): `_total`.
    assert "# TYPE nv_inference_request_success counter" in text
    assert re.search(r'^nv_inference_request_success\{.*model="resnet50".*\} ', text, re.M)
    assert "# TYPE Requests2XX counter" in text
    assert "# TYPE revision_app_request_count counter" in text
    assert "# TYPE vllm:generation_tokens_total counter" in text
    assert "# TYPE vllm:e2e_request_latency_seconds histogram" in text
    assert "_created" not in text
    families = {f.name: f.type for f in text_string_to_metric_families(text)}
    assert families["DCGM_FI_DEV_XID_ERRORS"] == "gauge"
    assert families["vllm:time_to_first_token_seconds"] == "histogram"


def test_labels_carry_the_real_traps(exporter: ModelServingExporter) -> None:
    text = scrape(exporter)
    assert value(text, "nv_inference_pending_request_count", model="resnet50", version="1") >= 0
    kv = value(text, "vllm:kv_cache_usage_perc", pod="vllm-llama-7c9d5b6f48-2xkqp", engine="0")
    assert 0 < kv < 1  # a fraction, despite the _perc name
    assert value(text, "DCGM_FI_DEV_GPU_UTIL", Hostname="gpu-node-a", gpu="0", namespace="llm-prod") >= 0
    assert value(text, "DCGM_FI_DEV_FB_USED", modelName="NVIDIA A10G") > 1000  # MiB, not bytes
    assert (
        value(text, "revision_app_request_count", namespace_name="kserve-prod", response_code_class="2xx")
        >= 0
    )
    assert value(text, "kube_pod_container_resource_requests", resource="nvidia_com_gpu") > 0


def test_counters_increase_and_histograms_stay_consistent_as_time_passes(
    exporter: ModelServingExporter, clock: Clock
) -> None:
    before = scrape(exporter)
    clock.now += 30
    after = scrape(exporter)
    for name in (
        "vllm:generation_tokens_total",
        "nv_inference_request_success",
        "ts_inference_requests_total",
    ):
        assert value(after, name) > value(before, name), name
    histogram = "vllm:e2e_request_latency_seconds"
    labels = {"pod": "vllm-llama-7c9d5b6f48-2xkqp"}
    assert value(after, f"{histogram}_count", **labels) > value(before, f"{histogram}_count", **labels)
    buckets = sorted(
        (
            (float(dict(ls)["le"]), v)
            for (n, ls), v in samples(after).items()
            if n == f"{histogram}_bucket" and ("pod", labels["pod"]) in ls
        ),
    )
    counts = [v for _, v in buckets]
    assert counts == sorted(counts)  # cumulative
    assert buckets[-1] == (float("inf"), value(after, f"{histogram}_count", **labels))
    assert value(after, f"{histogram}_sum", **labels) > 0


def test_scenarios_switch_over_http_and_from_python(exporter: ModelServingExporter) -> None:
    xid = {"Hostname": "gpu-node-b", "gpu": "0"}
    assert value(scrape(exporter), "DCGM_FI_DEV_XID_ERRORS", **xid) == 0
    answer = httpx.post(f"{exporter.url}/scenario/gpu_xid", timeout=10)
    assert answer.status_code == 200
    assert answer.json()["active"] == ["gpu_xid"]
    text = scrape(exporter)
    assert value(text, "DCGM_FI_DEV_XID_ERRORS", **xid, err_code="79") == 79
    assert value(text, "DCGM_FI_DEV_XID_ERRORS", **xid) == 79  # the "No Error" series is gone

    unknown = httpx.post(f"{exporter.url}/scenario/meteor_strike", timeout=10)
    assert unknown.status_code == 404
    assert "unknown scenario meteor_strike" in unknown.json()["error"]
    assert httpx.get(f"{exporter.url}/scenario", timeout=10).json()["active"] == ["gpu_xid"]

    exporter.set_scenario("vllm_queue,k8s_crashloop")
    assert exporter.active_scenarios == ["k8s_crashloop", "vllm_queue"]
    text = scrape(exporter)
    assert value(text, "kube_pod_container_status_waiting_reason", reason="CrashLoopBackOff") == 1
    assert (
        value(
            text,
            "vllm:num_requests_waiting",
            namespace="llm-prod",
            model_name="meta-llama/Llama-3.1-8B-Instruct",
        )
        > 10
    )

    exporter.set_scenario("all")
    assert exporter.active_scenarios == sorted(n for n in SCENARIOS if n != "healthy")
    exporter.set_scenario("healthy")
    assert exporter.active_scenarios == []
    with pytest.raises(ValueError, match="unknown scenario"):
        exporter.set_scenario("nope")


def test_growing_faults_keep_growing(exporter: ModelServingExporter, clock: Clock) -> None:
    exporter.set_scenario("vllm_queue")
    labels = {"pod": "vllm-llama-7c9d5b6f48-2xkqp"}
    first = value(scrape(exporter), "vllm:num_requests_waiting", **labels)
    clock.now += 60
    assert value(scrape(exporter), "vllm:num_requests_waiting", **labels) > first


# --- every metric the shipped runbooks and rules query is served ------------------------------

_FUNCTIONS_AND_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "and", "or", "unless", "bool",
    "inf", "nan", "le",
}  # fmt: skip
# Deliberate cross-version fallbacks (`A or B`): the old vLLM names are gone from current vLLM.
_FALLBACKS = {"vllm:gpu_cache_usage_perc", "vllm:time_per_output_token_seconds_bucket"}


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (string literals, label lists and functions removed)."""
    expr = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "{}", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", "[]", expr)
    names = set()
    for match in re.finditer(r"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(?!\s*\()", expr):
        name = match.group(1)
        if name.lower() not in _FUNCTIONS_AND_KEYWORDS and not re.fullmatch(r"[0-9]+[smhdwy]", name):
            names.add(name)
    return names


def test_every_metric_name_in_runbooks_and_rules_is_served(clock: Clock) -> None:
    with ModelServingExporter(port=0, scenario="all", clock=clock) as faulty:
        served = {name for name, _labels in samples(scrape(faulty))}
    manifest = yaml.safe_load((ROOT / "manifests" / "prometheus-rules.yaml").read_text())
    rules = [rule for group in manifest["spec"]["groups"] for rule in group["rules"]]
    recorded = {rule["record"] for rule in rules if "record" in rule}
    queries = [rule["expr"] for rule in rules]
    for runbook in load_runbooks(ROOT / "runbooks"):
        for example in runbook.examples:
            rendered = render_runbook(runbook, RunbookContext.for_example(example))
            queries += [d.query for d in rendered.diagnostics]
            queries += [rendered.recovery_query] if rendered.recovery_query else []
    used = set().union(*(metric_names(q) for q in queries))
    assert {"vllm:e2e_request_latency_seconds_bucket", "DCGM_FI_DEV_XID_ERRORS", "Requests5XX"} <= used
    missing = used - served - recorded - _FALLBACKS - {"up"}
    assert not missing, f"used in queries but not served: {sorted(missing)}"
