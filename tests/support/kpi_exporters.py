"""Model servers for KPI tests: one exporter per scrape target, each serving what a real vLLM
or Triton server exports for its models, with counters that grow with the wall clock at
fixed rates, so every expected KPI can be worked out by hand:

* request counters grow at `rate` per second (a share of them failed, as the server labels
  failures), so `rate()` over any window inside the data is that rate;
* every request's latency lands in one histogram bucket, so the p99 is that bucket's lower
  bound plus 99% of its width (Prometheus interpolates linearly inside a bucket);
* gauges (GPU requests, drift scores, OpenCost prices) are constants.

`down = True` makes the target answer 503, as a crashed or unready server's metrics port
does, so Prometheus records `up == 0` for it and its series go stale; every scrape is logged
with its time and outcome, which is what the expected uptime is computed from.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from bot.sandbox.serving import serve_in_background, shut_down

__all__ = ["Scrape", "ServingTarget", "triton_metrics", "vllm_metrics"]


@dataclass(frozen=True)
class Scrape:
    at: float
    ok: bool


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def vllm_metrics(
    *,
    model: str,
    namespace: str,
    pod: str,
    ok_rate: float,
    error_rate: float,
    latency_bucket: tuple[float, float],
) -> Callable[[float], str]:
    """vLLM 0.33's names: `vllm:request_success_total{finished_reason}` counts every finished
    request, `vllm:e2e_request_latency_seconds` with the request_latency buckets."""
    buckets = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0)
    base = {"model_name": model, "engine": "0", "namespace": namespace, "pod": pod}

    def render(elapsed: float) -> str:
        ok, errors = ok_rate * elapsed, error_rate * elapsed
        total = ok + errors
        lines = [
            "# TYPE vllm:num_requests_running gauge",
            f"vllm:num_requests_running{_labels(**base)} 3",
            "# TYPE vllm:request_success counter",
            f"vllm:request_success_total{_labels(**base, finished_reason='stop')} {ok}",
            f"vllm:request_success_total{_labels(**base, finished_reason='error')} {errors}",
            "# TYPE vllm:e2e_request_latency_seconds histogram",
        ]
        for le in buckets:
            count = total if le >= latency_bucket[1] else 0.0
            lines.append(f"vllm:e2e_request_latency_seconds_bucket{_labels(**base, le=str(le))} {count}")
        lines.append(f"vllm:e2e_request_latency_seconds_bucket{_labels(**base, le='+Inf')} {total}")
        lines.append(f"vllm:e2e_request_latency_seconds_count{_labels(**base)} {total}")
        lines.append(f"vllm:e2e_request_latency_seconds_sum{_labels(**base)} {total * latency_bucket[1]}")
        return "\n".join(lines) + "\n"

    return render


def triton_metrics(
    *,
    model: str,
    version: str,
    namespace: str,
    pod: str,
    ok_rate: float,
    failure_rate: float,
    first_response_bucket_ms: tuple[float, float],
) -> Callable[[float], str]:
    """Triton's names: counters without `_total`, failures apart with a `reason`, and the
    first-response histogram in milliseconds (histogram_latencies=true)."""
    buckets = (100.0, 500.0, 2000.0, 5000.0)
    base = {"model": model, "version": version, "namespace": namespace, "pod": pod}

    def render(elapsed: float) -> str:
        ok, failed = ok_rate * elapsed, failure_rate * elapsed
        lines = [
            "# TYPE nv_inference_request_success counter",
            f"nv_inference_request_success{_labels(**base)} {ok}",
            "# TYPE nv_inference_request_failure counter",
            f"nv_inference_request_failure{_labels(**base, reason='BACKEND')} {failed}",
            "# TYPE nv_inference_first_response_histogram_ms histogram",
        ]
        for le in buckets:
            count = ok if le >= first_response_bucket_ms[1] else 0.0
            lines.append(
                f"nv_inference_first_response_histogram_ms_bucket{_labels(**base, le=f'{le:g}')} {count}"
            )
        lines.append(f"nv_inference_first_response_histogram_ms_bucket{_labels(**base, le='+Inf')} {ok}")
        lines.append(f"nv_inference_first_response_histogram_ms_count{_labels(**base)} {ok}")
        lines.append(f"nv_inference_first_response_histogram_ms_sum{_labels(**base)} {ok * 300}")
        return "\n".join(lines) + "\n"

    return render


def constant(text: str) -> Callable[[float], str]:
    return lambda _elapsed: text


@dataclass(eq=False)
class ServingTarget:
    """One scrape target serving the concatenation of `parts` on `/metrics`."""

    parts: list[Callable[[float], str]]
    down: bool = False
    scrapes: list[Scrape] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def start(self) -> Self:
        target = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                now = time.time()
                if target.down:
                    target.scrapes.append(Scrape(now, False))
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = "".join(part(now - target.started) for part in target.parts).encode()
                target.scrapes.append(Scrape(now, True))
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = serve_in_background(self._server, name="kpi-exporter")
        return self

    @property
    def target(self) -> str:
        assert self._server is not None
        return f"127.0.0.1:{self._server.server_address[1]}"

    def uptime_share(self, since: float, until: float) -> float:
        """Share of this target's scrapes in [since, until] that succeeded."""
        scrapes = [s for s in self.scrapes if since <= s.at <= until]
        return sum(s.ok for s in scrapes) / len(scrapes)

    def stop(self) -> None:
        if self._server is not None:
            shut_down(self._server, self._thread)
            self._server = None
