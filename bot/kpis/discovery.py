"""Which models are being served: found in the metrics the model servers export.

One query per server (bot/kpis/queries.py `Server.discovery`) lists the (namespace, model,
pod) triples seen in the window; the Deployment is the pod's owner, read from the pod name
(`vllm-llama-7c9d5b6f48-2xkqp` -> `vllm-llama`, the ReplicaSet hash and pod suffix removed)
or, for Knative, the revision's Deployment (`<revision>-deployment`). KServe
InferenceServices appear as their predictor's Knative service (`sklearn-iris-predictor`),
named after the InferenceService (`sklearn-iris`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from bot.diagnostics.prometheus import Series
from bot.kpis.queries import Server

__all__ = ["ModelRef", "deployment_of_pod", "models_from_series"]

# Kubernetes' generated-name alphabet (no vowels, no 0/1/3): the ReplicaSet hash and the pod suffix.
_POD = re.compile(r"^(.+)-[bcdfghjklmnpqrstvwxz2456789]{5,10}-[bcdfghjklmnpqrstvwxz2456789]{5}$")
_STATEFUL = re.compile(r"^(.+)-\d+$")
_PREDICTOR = re.compile(r"-predictor(-default)?(-[0-9a-z]+)?$")


@dataclass
class ModelRef:
    """A served model: its name as the server exports it, where it runs, and on what."""

    model: str
    namespace: str
    server: str
    deployments: set[str] = field(default_factory=set)
    versions: set[str] = field(default_factory=set)
    key_value: str = ""  # the model label's value in the server's own series

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.model)

    @property
    def deployment(self) -> str | None:
        return ", ".join(sorted(self.deployments)) or None

    @property
    def version(self) -> str | None:
        """The newest version label seen (numeric versions compared as numbers)."""
        if not self.versions:
            return None
        return max(self.versions, key=lambda v: (v.isdigit(), int(v) if v.isdigit() else 0, v))


def deployment_of_pod(pod: str) -> str:
    found = _POD.match(pod)
    if found:
        return found.group(1)
    stateful = _STATEFUL.match(pod)
    return stateful.group(1) if stateful else pod


def model_name(server: Server, value: str) -> str:
    """The model's name for people: KServe's predictor service named after its InferenceService."""
    return _PREDICTOR.sub("", value) if server.name == "kserve" else value


def models_from_series(server: Server, series: Iterable[Series]) -> list[ModelRef]:
    found: dict[tuple[str, str], ModelRef] = {}
    for one in series:
        raw = one.labels.get(server.model_label)
        if not raw:
            continue
        namespace = one.labels.get(server.namespace_label, "")
        name = model_name(server, raw)
        ref = found.setdefault((namespace, name), ModelRef(name, namespace, server.name, key_value=raw))
        pod = one.labels.get(server.pod_label)
        if one.labels.get("deployment"):
            ref.deployments.add(one.labels["deployment"])
        elif pod:
            ref.deployments.add(f"{pod}-deployment" if server.name == "kserve" else deployment_of_pod(pod))
        if server.version_label and one.labels.get(server.version_label):
            ref.versions.add(one.labels[server.version_label])
    return list(found.values())
