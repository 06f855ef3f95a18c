"""Pure rules that turn alert labels into incident fields: severity, title, service.

Kept free of I/O so that the grouping and rendering code, and their tests, can rely on them
without a database.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from bot.incidents.models import Severity

__all__ = [
    "DEFAULT_SEVERITY",
    "KEY_LABELS",
    "highest_severity",
    "key_labels",
    "service_of",
    "severity_of",
    "title_of",
]

DEFAULT_SEVERITY = Severity.WARNING

# Values seen in the wild (kube-prometheus, Grafana, PagerDuty-style and numbered levels),
# folded onto our three levels. Anything else maps to DEFAULT_SEVERITY and the raw value
# stays on the incident so nothing is silently lost.
_SEVERITY_ALIASES: dict[str, Severity] = {
    "critical": Severity.CRITICAL,
    "crit": Severity.CRITICAL,
    "page": Severity.CRITICAL,
    "emergency": Severity.CRITICAL,
    "fatal": Severity.CRITICAL,
    "high": Severity.CRITICAL,
    "error": Severity.CRITICAL,
    "p1": Severity.CRITICAL,
    "sev1": Severity.CRITICAL,
    "warning": Severity.WARNING,
    "warn": Severity.WARNING,
    "medium": Severity.WARNING,
    "major": Severity.WARNING,
    "p2": Severity.WARNING,
    "p3": Severity.WARNING,
    "sev2": Severity.WARNING,
    "info": Severity.INFO,
    "informational": Severity.INFO,
    "notice": Severity.INFO,
    "low": Severity.INFO,
    "minor": Severity.INFO,
    "none": Severity.INFO,
    "p4": Severity.INFO,
    "p5": Severity.INFO,
}

# The labels a responder needs first when a model server misbehaves, in display order.
KEY_LABELS: tuple[str, ...] = (
    "namespace",
    "deployment",
    "inferenceservice",
    "model_name",
    "model",
    "version",
    "pod",
    "container",
    "service",
    "job",
    "instance",
    "node",
    "gpu",
    "cluster",
)


def severity_of(labels: Mapping[str, str]) -> tuple[Severity, str | None]:
    """(our severity, the raw label value or None when the label is absent)."""
    raw = labels.get("severity")
    if raw is None or not raw.strip():
        return DEFAULT_SEVERITY, None
    return _SEVERITY_ALIASES.get(raw.strip().lower(), DEFAULT_SEVERITY), raw


def highest_severity(values: Iterable[Severity]) -> Severity:
    return max(values, key=lambda s: s.rank, default=DEFAULT_SEVERITY)


def title_of(alertnames: Iterable[str], annotations: Mapping[str, str]) -> str:
    """`<alertname>: <summary>`; several alertnames in one group are listed, a missing summary
    falls back to the description's first line."""
    names = sorted({n for n in alertnames if n}) or ["Alert"]
    name = names[0] if len(names) == 1 else f"{names[0]} (+{len(names) - 1} more)"
    summary = (annotations.get("summary") or annotations.get("message") or "").strip()
    if not summary:
        lines = (annotations.get("description") or "").strip().splitlines()
        summary = lines[0].strip() if lines else ""
    text = f"{name}: {summary}" if summary else name
    return text if len(text) <= 200 else text[:199] + "…"


def service_of(labels: Mapping[str, str]) -> str | None:
    """The thing that is broken, the way responders name it: namespace/deployment, or the model."""
    namespace = labels.get("namespace") or labels.get("exported_namespace")
    workload = (
        labels.get("deployment")
        or labels.get("inferenceservice")
        or labels.get("model_name")
        or labels.get("model")
        or labels.get("service")
        or labels.get("job")
    )
    if namespace and workload:
        return f"{namespace}/{workload}"
    return workload or namespace


def key_labels(labels: Mapping[str, str]) -> list[tuple[str, str]]:
    return [(name, labels[name]) for name in KEY_LABELS if labels.get(name)]
