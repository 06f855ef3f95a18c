"""What each Kustomize overlay promises, checked on what `kubectl kustomize` renders (the
objects a cluster gets), not on the files: a patch that does not apply, or a component left
out, shows here.

* every overlay: a hardened pod (non-root, read-only root filesystem with a writable emptyDir,
  no privilege escalation, no capabilities, RuntimeDefault seccomp: the `restricted` Pod
  Security profile the namespace enforces), probes on /readyz and /healthz, requests and a
  memory limit, generated ConfigMaps that roll the pods when they change, and a NetworkPolicy
  that admits only Alertmanager and Prometheus (plus the ingress controller in HTTP mode) and
  lets the bot out to DNS, Prometheus, Alertmanager, the Kubernetes API and Slack;
* single: SQLite on a PersistentVolumeClaim, one replica, Recreate;
* ha: PostgreSQL URL from a Secret, two or more replicas, PodDisruptionBudget, topology spread,
  migrations as an optional Job running `incident-bot db upgrade`;
* socket-mode: SLACK_APP_TOKEN from a Secret, and nothing that lets Slack in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from tests.support.manifests import (
    EVERYTHING,
    OVERLAYS,
    Doc,
    OnlyTheseSettings,
    Rendering,
    load_single,
    rendering,
)

HTTP_OVERLAYS = ("single", "ha")
SQLITE_OVERLAYS = ("single", "socket-mode")
MONITORING = {"kubernetes.io/metadata.name": "monitoring"}
BOT_LABELS = {"app.kubernetes.io/name": "incident-bot"}


def pod_specs(r: Rendering) -> list[tuple[Doc, dict[str, Any]]]:
    workloads = [doc for doc in r.docs if doc.kind in ("Deployment", "Job")]
    return [(doc, doc.body["spec"]["template"]["spec"]) for doc in workloads]


@pytest.mark.parametrize("name", [*OVERLAYS, EVERYTHING])
def test_every_pod_meets_the_restricted_pod_security_profile(name: str) -> None:
    r = rendering(name)
    namespace = r.one("Namespace", "incident-bot").body["metadata"]["labels"]
    assert namespace["pod-security.kubernetes.io/enforce"] == "restricted"
    specs = pod_specs(r)
    assert specs
    for doc, spec in specs:
        assert doc.namespace == "incident-bot", doc
        assert spec["securityContext"]["runAsNonRoot"] is True, doc
        assert spec["securityContext"]["runAsUser"] != 0, doc
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, doc
        assert not spec.get("hostNetwork"), doc
        assert not spec.get("hostPID"), doc
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, doc
            assert context["readOnlyRootFilesystem"] is True, doc
            assert context["capabilities"] == {"drop": ["ALL"]}, doc
            assert container["resources"]["requests"]["cpu"], doc
            assert container["resources"]["requests"]["memory"], doc
            assert container["resources"]["limits"]["memory"], doc
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            assert "emptyDir" in volumes[mounts["/tmp"]], f"{doc}: /tmp must be a writable emptyDir"
            for mount in container.get("volumeMounts", []):
                volume = volumes[mount["name"]]
                writable = "emptyDir" in volume or "persistentVolumeClaim" in volume
                assert writable or mount.get("readOnly") is True, f"{doc}: {mount['mountPath']} read-only"


@pytest.mark.parametrize("name", OVERLAYS)
def test_probes_hit_the_health_endpoints_on_the_served_port(name: str) -> None:
    main = rendering(name).container()
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    args = main["args"]
    assert args[0] == "serve"
    assert int(args[args.index("--port") + 1]) == ports["http"]
    assert args[args.index("--host") + 1] == "0.0.0.0"
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert main["startupProbe"]["httpGet"]["path"] == "/healthz"


@pytest.mark.parametrize("name", OVERLAYS)
def test_the_service_reaches_the_pods(name: str) -> None:
    r = rendering(name)
    service = r.one("Service", "incident-bot")
    labels = r.deployment()["spec"]["template"]["metadata"]["labels"]
    assert service.body["spec"]["selector"].items() <= labels.items()
    port_names = {p["name"] for p in r.container()["ports"]}
    for port in service.body["spec"]["ports"]:
        assert port["targetPort"] in port_names


@pytest.mark.parametrize("name", OVERLAYS)
def test_configmaps_are_generated_so_a_change_rolls_the_pods(name: str) -> None:
    """The names carry a hash of the content: an edited policy is a new ConfigMap name in the pod
    template, hence a rollout; a plain ConfigMap would change under running pods unnoticed."""
    r = rendering(name)
    names = {doc.name for doc in r.of_kind("ConfigMap")}
    referenced = {v["configMap"]["name"] for v in r.pod_spec()["volumes"] if "configMap" in v}
    referenced |= {s["configMapRef"]["name"] for s in r.container()["envFrom"] if "configMapRef" in s}
    assert referenced == names
    for base in ("incident-bot-settings", "incident-bot-config", "incident-bot-runbooks"):
        (generated,) = [n for n in names if n.startswith(base + "-")]
        assert len(generated) == len(base) + 11, generated  # "-" and kustomize's 10-character hash


# ---------------------------------------------------------------------------------------------
# The database per overlay


@pytest.mark.parametrize("name", SQLITE_OVERLAYS)
def test_sqlite_lives_on_the_persistent_volume_with_one_replica(name: str) -> None:
    r = rendering(name)
    url = r.environment()["INCIDENT_BOT_DATABASE_URL"]
    assert url.startswith("sqlite:////")
    directory = str(Path(url.removeprefix("sqlite:///")).parent)
    volumes = {v["name"]: v for v in r.pod_spec()["volumes"]}
    mount = next(m for m in r.container()["volumeMounts"] if m["mountPath"] == directory)
    assert not mount.get("readOnly")
    claim = volumes[mount["name"]]["persistentVolumeClaim"]["claimName"]
    assert r.one("PersistentVolumeClaim", claim).body["spec"]["accessModes"] == ["ReadWriteOnce"]
    spec = r.deployment()["spec"]
    assert spec["replicas"] == 1, "SQLite: one writer"
    assert spec["strategy"]["type"] == "Recreate", "SQLite on a ReadWriteOnce volume: no overlap"
    assert not r.of_kind("PodDisruptionBudget")


def test_ha_takes_postgresql_from_a_secret_and_runs_two_replicas() -> None:
    r = rendering("ha")
    (url_var,) = [e for e in r.container()["env"] if e["name"] == "INCIDENT_BOT_DATABASE_URL"]
    assert "value" not in url_var, "the URL holds a password: from a Secret"
    assert url_var["valueFrom"]["secretKeyRef"]["name"] == "incident-bot-database"
    assert r.environment()["INCIDENT_BOT_DATABASE_URL"].startswith("postgresql")
    assert not r.of_kind("PersistentVolumeClaim")
    assert all("persistentVolumeClaim" not in v for v in r.pod_spec()["volumes"])
    spec = r.deployment()["spec"]
    assert spec["replicas"] >= 2
    assert spec["strategy"]["type"] == "RollingUpdate"
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0, "never below the replica count"


def test_ha_keeps_a_replica_through_disruptions_and_spreads_them() -> None:
    r = rendering("ha")
    replicas = r.deployment()["spec"]["replicas"]
    pod_labels = r.deployment()["spec"]["template"]["metadata"]["labels"]
    pdb = r.one("PodDisruptionBudget", "incident-bot").body["spec"]
    assert pdb["selector"]["matchLabels"].items() <= pod_labels.items()
    assert 1 <= pdb["minAvailable"] < replicas, "a drain must be possible and leave one running"
    spread = {c["topologyKey"]: c for c in r.pod_spec()["topologySpreadConstraints"]}
    assert spread["kubernetes.io/hostname"]["whenUnsatisfiable"] == "DoNotSchedule"
    assert "topology.kubernetes.io/zone" in spread
    for constraint in spread.values():
        assert constraint["labelSelector"]["matchLabels"].items() <= pod_labels.items()
        assert constraint["maxSkew"] == 1


def test_the_migration_job_runs_db_upgrade_with_the_deployments_image_and_database() -> None:
    r = rendering(EVERYTHING)
    job = r.one("Job", "incident-bot-migrate").body
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["db", "upgrade"]  # DESIGN.md: `incident-bot db upgrade`
    assert container["image"] == r.container()["image"]
    bot_url = next(e for e in r.container()["env"] if e["name"] == "INCIDENT_BOT_DATABASE_URL")
    job_url = next(e for e in container["env"] if e["name"] == "INCIDENT_BOT_DATABASE_URL")
    assert job_url == bot_url
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert job["metadata"]["annotations"]["argocd.argoproj.io/hook"] == "PreSync"
    assert not rendering("ha").of_kind("Job"), "optional: the pods migrate at start under the advisory lock"


# ---------------------------------------------------------------------------------------------
# Who reaches the bot, and whom it reaches


def policies(r: Rendering) -> list[dict[str, Any]]:
    pod_labels = r.deployment()["spec"]["template"]["metadata"]["labels"]
    found = []
    for doc in r.of_kind("NetworkPolicy"):
        spec = doc.body["spec"]
        assert spec["podSelector"]["matchLabels"].items() <= pod_labels.items(), doc
        found.append(spec)
    return found


def ingress_peers(r: Rendering) -> list[dict[str, Any]]:
    peers = []
    for spec in policies(r):
        for rule in spec.get("ingress", []):
            assert rule.get("from"), "a rule without `from` admits everyone"
            assert [p["port"] for p in rule["ports"]] == ["http"]
            peers.extend(rule["from"])
    return peers


def egress_ports(r: Rendering) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {}
    for spec in policies(r):
        for rule in spec.get("egress", []):
            for port in rule["ports"]:
                out.setdefault(port["port"], []).extend(rule["to"])
    return out


def app(peer: dict[str, Any]) -> str:
    return str(peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"])


@pytest.mark.parametrize("name", OVERLAYS)
def test_only_alertmanager_and_prometheus_are_admitted_besides_slacks_ingress(name: str) -> None:
    r = rendering(name)
    assert all(set(spec["policyTypes"]) >= {"Ingress"} for spec in policies(r) if spec.get("ingress"))
    assert any(spec["policyTypes"] == ["Ingress", "Egress"] for spec in policies(r)), "default deny"
    monitoring = [p for p in ingress_peers(r) if p["namespaceSelector"]["matchLabels"] == MONITORING]
    assert sorted(app(p) for p in monitoring) == ["alertmanager", "prometheus"]
    others = [p for p in ingress_peers(r) if p not in monitoring]
    if name in HTTP_OVERLAYS:
        assert [app(p) for p in others] == ["ingress-nginx"], "the ingress controller, for /slack/events"
    else:
        assert others == [], "Socket Mode: nothing but monitoring comes in"


@pytest.mark.parametrize("name", OVERLAYS)
def test_the_bot_reaches_dns_monitoring_the_api_server_and_slack(name: str) -> None:
    ports = egress_ports(rendering(name))
    assert {p["podSelector"]["matchLabels"]["k8s-app"] for p in ports[53]} == {"kube-dns"}
    assert [app(p) for p in ports[9090]] == ["prometheus"]
    assert [app(p) for p in ports[9093]] == ["alertmanager"]
    for port in (443, 6443):  # Slack (HTTPS and the WebSocket) and the Kubernetes API
        assert {p["ipBlock"]["cidr"] for p in ports[port]} == {"0.0.0.0/0", "::/0"}
    assert (5432 in ports) is (name == "ha"), "PostgreSQL only where there is one"
    assert set(ports) <= {53, 443, 6443, 9090, 9093, 5432}


# ---------------------------------------------------------------------------------------------
# How Slack reaches the bot


@pytest.mark.parametrize("name", HTTP_OVERLAYS)
def test_http_mode_publishes_only_slack_events_at_the_manifests_host(name: str) -> None:
    r = rendering(name)
    ingress = r.one("Ingress").body["spec"]
    (rule,) = ingress["rules"]
    (path,) = rule["http"]["paths"]
    assert (path["path"], path["pathType"]) == ("/slack/events", "Exact"), "nothing else is public"
    backend = path["backend"]["service"]
    assert backend["name"] == r.one("Service", "incident-bot").name
    assert backend["port"]["name"] in {p["name"] for p in r.one("Service").body["spec"]["ports"]}
    assert rule["host"] in ingress["tls"][0]["hosts"], "Slack sends to HTTPS only"
    manifest = load_single("slack-app-manifest.yaml")
    assert urlparse(manifest["settings"]["interactivity"]["request_url"]).hostname == rule["host"]
    assert "SLACK_APP_TOKEN" not in r.environment(), "HTTP mode"


def test_socket_mode_takes_the_app_token_from_a_secret_and_lets_no_slack_in() -> None:
    r = rendering("socket-mode")
    assert not r.of_kind("Ingress")
    (token,) = [e for e in r.container()["env"] if e["name"] == "SLACK_APP_TOKEN"]
    reference = token["valueFrom"]["secretKeyRef"]
    assert reference.get("optional") is not True, "without the token the pod must not start"
    secrets = {s["secretRef"]["name"] for s in r.container()["envFrom"] if "secretRef" in s}
    assert reference["name"] not in secrets, "the HTTP overlays' Secret must not carry it"
    environment = r.environment()
    assert environment["SLACK_APP_TOKEN"].startswith("xapp-")
    del environment["SLACK_SIGNING_SECRET"]  # not needed in Socket Mode
    settings = OnlyTheseSettings.model_validate(environment)
    settings.require_for_serve()
    assert settings.socket_mode
