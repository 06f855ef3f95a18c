"""Drift and quality incidents go to the model's owners, not to the on-call pager.

An incident is about model quality when its alert says so (a `category` label of `drift` or
`quality`, or one of the shipped model-quality alerts: `Model...Drift...`, `ModelMonitorStale`,
`ModelErrorRateHigh`, `ModelFeature...`, `ModelPredictionMixShift`). When the models file
gives that model owners and an owners' channel, `OwnerRouter` sends the incident there, with
no incident channel of its own; `owners_to_mention` names the owners for the thread. A route
in the routing file that matches the incident wins: "unless a route says otherwise".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from bot.kpis.models_file import ModelsFile, ModelSpec
from bot.routing import Route, Router

__all__ = ["OwnerRouter", "is_quality_alert", "owners_spec"]

_QUALITY_ALERT = re.compile(
    r"^Model(\w*Drift\w*|MonitorStale|ErrorRateHigh|Feature\w+|PredictionMixShift|Quality\w*)$"
)
_QUALITY_CATEGORIES = frozenset({"drift", "quality", "model-quality", "data-quality"})


def is_quality_alert(labels: Mapping[str, str]) -> bool:
    category = (labels.get("category") or labels.get("kind") or "").lower()
    return category in _QUALITY_CATEGORIES or bool(_QUALITY_ALERT.match(labels.get("alertname", "")))


def owners_spec(models: ModelsFile, labels: Mapping[str, str]) -> ModelSpec | None:
    """The models-file entry of the model a drift/quality alert is about, if it has owners."""
    if not is_quality_alert(labels):
        return None
    model = labels.get("model_name") or labels.get("model")
    if not model:
        return None
    namespace = labels.get("namespace") or labels.get("exported_namespace")
    for spec in models.specs:
        if spec.model != model or not spec.owners_channel:
            continue
        if spec.namespace is None or namespace is None or spec.namespace == namespace:
            return spec
    return None


@dataclass
class OwnerRouter(Router):
    models: ModelsFile = field(default_factory=ModelsFile)

    @classmethod
    def wrap(cls, router: Router, models: ModelsFile) -> OwnerRouter:
        return cls(default_channel=router.default_channel, routes=router.routes, models=models)

    def route(self, labels: Mapping[str, str]) -> Route:
        explicit = super().route(labels)
        if explicit.name is not None:
            return explicit
        spec = owners_spec(self.models, labels)
        if spec is None:
            return explicit
        return Route(name=f"owners of {spec.model}", channel=spec.owners_channel, incident_channel=None)
