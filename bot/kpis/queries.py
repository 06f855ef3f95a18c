"""The PromQL behind every KPI, per model server, with the metric names the servers really
export (see METRICS.md and the README's "Model KPIs" section, which lists these queries).

Each query is written once per server and answers for *all* its models at once, grouped by
the server's own namespace and model labels, so a scorecard of ten models costs a handful of
queries, not ten times a handful. Placeholders, filled by `render`:

* `{by}`: the server's namespace and model labels (vLLM `namespace, model_name`; Triton
  `namespace, model`; TorchServe `namespace, model_name`; KServe/Knative `namespace_name,
  service_name`);
* `{w}`: the window in seconds (`604800s`); `{w2}`: twice that; `{step}`: a subquery step;
* `{off}`: empty for the window, ` offset {w}` for the previous window of the same length.

Uptime is the share of the window in which at least one of the model's scrape targets was up:
the targets are the (job, instance) pairs that exported the model's series (found once, at the
end of the query: `@ end()`), their `up` is taken at every step of a subquery, and the average
runs over the steps Prometheus has samples for, so a model first seen an hour ago and up
since is at 100%, and a model without data has no value (null), not 0.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.kpis.window import Window

__all__ = ["COST_METRIC", "DRIFT_QUERY", "SERVERS", "Server", "render"]

#: The shipped recording rule (manifests/prometheus-rules.yaml), by namespace, deployment, model_name.
COST_METRIC = "model:inference_cost_usd_per_1k:rate5m"

#: Highest drift score of a model's latest evaluation: the proposed `ml_*` convention, else
#: Seldon Core v1's alibi-detect server. Keyed by `model_name` only: monitors run apart from
#: the serving pods, often in another namespace.
DRIFT_QUERY = (
    "max by (model_name) (last_over_time(ml_feature_drift_score[{w}]{off}))"
    " or max by (model_name) (last_over_time(seldon_metric_drift_distance[{w}]{off}))"
)


@dataclass(frozen=True)
class Server:
    """One model server's metrics. A KPI the server cannot give is None with `why_not`."""

    name: str
    namespace_label: str
    model_label: str
    presence: str  # a series every serving target exports for each model it serves
    latency_p99: str | None
    requests: str  # requests per second
    errors: str | None  # failed requests per second
    errors_counted_apart: bool  # True when `requests` counts only the successful ones
    version_label: str | None = None
    pod_label: str = "pod"
    cost_metric: bool = False  # the cost recording rule carries this server's labels
    why_not: tuple[tuple[str, str], ...] = ()

    @property
    def by(self) -> str:
        return f"{self.namespace_label}, {self.model_label}"

    def reason(self, kpi: str) -> str | None:
        return dict(self.why_not).get(kpi)

    def uptime(self) -> str:
        return (
            "avg_over_time((max by ({by}) (up * on (job, instance) group_right ()"
            " group by (job, instance, {by}) (last_over_time(" + self.presence + "[{w2}] @ end()))))"
            "[{w}:{step}s]{off})"
        )

    def discovery(self) -> str:
        extra = f", {self.version_label}" if self.version_label else ""
        return f"group by ({{by}}, {self.pod_label}{extra}) (last_over_time({self.presence}[{{w}}]))"

    def gpu_hours(self) -> str | None:
        """GPU-hours requested by the model's pods over the window (kube-state-metrics)."""
        if self.namespace_label != "namespace":
            return None
        joined = (
            'sum by ({by}) (kube_pod_container_resource_requests{resource="nvidia_com_gpu"}'
            " * on (namespace, pod) group_left (" + self.model_label + ")"
            " group by (namespace, pod, " + self.model_label + ") (" + self.presence + "))"
        )
        return "sum_over_time((" + joined + ")[{w}:{step}s]{off}) * {step} / 3600"

    def cost(self) -> str | None:
        if not self.cost_metric:
            return None
        return "avg by ({by}) (avg_over_time(" + COST_METRIC + "[{w}]{off}))"


VLLM = Server(
    name="vllm",
    namespace_label="namespace",
    model_label="model_name",
    presence="vllm:num_requests_running",
    latency_p99=(
        "histogram_quantile(0.99, sum by ({by}, le)"
        " (rate(vllm:e2e_request_latency_seconds_bucket[{w}]{off})))"
    ),
    # Every finished request, whatever its finished_reason (the counter's name notwithstanding).
    requests="sum by ({by}) (rate(vllm:request_success_total[{w}]{off}))",
    errors='sum by ({by}) (rate(vllm:request_success_total{finished_reason=~"abort|error"}[{w}]{off}))',
    errors_counted_apart=False,
    cost_metric=True,
)
TRITON = Server(
    name="triton",
    namespace_label="namespace",
    model_label="model",
    presence="nv_inference_request_success",
    # Only with --metrics-config histogram_latencies=true; milliseconds.
    latency_p99=(
        "histogram_quantile(0.99, sum by ({by}, le)"
        " (rate(nv_inference_first_response_histogram_ms_bucket[{w}]{off}))) / 1000"
    ),
    requests="sum by ({by}) (rate(nv_inference_request_success[{w}]{off}))",
    errors="sum by ({by}) (rate(nv_inference_request_failure[{w}]{off}))",
    errors_counted_apart=True,
    version_label="version",
    why_not=(
        (
            "latency_p99_seconds",
            "Triton exports no latency histogram for it (start Triton with"
            " --metrics-config histogram_latencies=true)",
        ),
    ),
)
TORCHSERVE = Server(
    name="torchserve",
    namespace_label="namespace",
    model_label="model_name",
    presence="ts_inference_requests_total",
    latency_p99=None,
    requests="sum by ({by}) (rate(ts_inference_requests_total[{w}]{off}))",
    errors=None,
    errors_counted_apart=False,
    version_label="model_version",
    cost_metric=True,
    why_not=(
        ("latency_p99_seconds", "TorchServe exports only cumulative latency counters, no histogram"),
        ("error_ratio", "TorchServe counts HTTP errors per host, not per model"),
    ),
)
KSERVE = Server(
    name="kserve",
    namespace_label="namespace_name",
    model_label="service_name",
    presence="revision_app_request_count",
    latency_p99=(
        "histogram_quantile(0.99, sum by ({by}, le)"
        " (rate(revision_app_request_latencies_bucket[{w}]{off}))) / 1000"
    ),
    requests="sum by ({by}) (rate(revision_app_request_count[{w}]{off}))",
    errors='sum by ({by}) (rate(revision_app_request_count{response_code_class="5xx"}[{w}]{off}))',
    errors_counted_apart=False,
    pod_label="revision_name",
)
KSERVE_MODEL_SERVER = Server(
    name="kserve-model-server",
    namespace_label="namespace",
    model_label="model_name",
    presence="request_predict_seconds_count",
    # prometheus_client's default buckets: 10 s at most, so a slower p99 reads 10 s.
    latency_p99=(
        "histogram_quantile(0.99, sum by ({by}, le) (rate(request_predict_seconds_bucket[{w}]{off})))"
    ),
    requests="sum by ({by}) (rate(request_predict_seconds_count[{w}]{off}))",
    errors=None,
    errors_counted_apart=False,
    why_not=(
        (
            "error_ratio",
            "the KServe model server counts no failed requests"
            " (Knative's queue-proxy does, in Serverless mode)",
        ),
    ),
)
#: In this order: a model exported by two servers (a KServe runtime embedding vLLM) is the first one's.
SERVERS: tuple[Server, ...] = (VLLM, TRITON, TORCHSERVE, KSERVE, KSERVE_MODEL_SERVER)


def render(template: str, server: Server | None, window: Window, *, previous: bool = False) -> str:
    """Fill a template's placeholders (plain `str.replace`: PromQL is full of braces)."""
    values = {
        "{by}": server.by if server is not None else "",
        "{w2}": f"{2 * window.seconds}s",
        "{w}": window.promql,
        "{step}": str(window.step),
        "{off}": f" offset {window.promql}" if previous else "",
    }
    out = template
    for key, value in values.items():
        out = out.replace(key, value)
    return out


def render_override(query: str, window: Window, *, previous: bool = False) -> str:
    """A models file's own query: `{window}` is the window (previous window: with an offset
    after every range, which the author writes as `{offset}` where it belongs)."""
    return query.replace("{window}", window.promql).replace(
        "{offset}", f" offset {window.promql}" if previous else ""
    )
