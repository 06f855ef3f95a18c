"""The live demo's parts without a browser: the demo copy of the shipped alert rules, the fault
switches against the real exporter and Kubernetes stand-in, and the console's HTTP answers."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from bot.sandbox.console.alerting import MANIFESTS, RULE_FOR, demo_rules
from bot.sandbox.console.fleet import FAULTS, Fleet, seed_cluster
from bot.sandbox.console.server import ConsoleServer
from bot.sandbox.console.slack_side import SlackSide
from bot.sandbox.exporter import SCENARIOS, ModelServingExporter
from bot.sandbox.kube_api import KubeStandIn
from bot.sandbox.slack_api import SlackStandIn
from tests.support.promstack import find_binary


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    with KubeStandIn() as kube, ModelServingExporter() as exporter:
        seed_cluster(kube)
        yield Fleet(exporter, kube)


@pytest.fixture
def console(fleet: Fleet) -> Iterator[ConsoleServer]:
    with SlackStandIn() as slack:
        server = ConsoleServer(slack, fleet, SlackSide("http://127.0.0.1:9", slack, "secret")).start()
        yield server
        server.stop()


def test_demo_rules_are_the_shipped_rules_made_fast_and_promtool_accepts_them(tmp_path: Path) -> None:
    shipped = yaml.safe_load((MANIFESTS / "prometheus-rules.yaml").read_text())["spec"]["groups"]
    text = demo_rules()
    groups = yaml.safe_load(text)["groups"]
    shipped_names = [r["alert"] for g in shipped for r in g["rules"] if "alert" in r]
    assert [r["alert"] for g in groups for r in g["rules"] if "alert" in r] == shipped_names
    assert {r["for"] for g in groups for r in g["rules"] if "for" in r} == {RULE_FOR}
    assert re.findall(r"\[\d+[mhdw]\]", text) == []  # no window longer than seconds
    path = tmp_path / "rules.yml"
    path.write_text(text)
    done = subprocess.run(
        [find_binary("promtool"), "check", "rules", str(path)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_fault_switches_an_exporter_scenario_whose_alerts_it_names(fleet: Fleet) -> None:
    for fault in FAULTS.values():
        assert set(fault.alerts) <= set(SCENARIOS[fault.scenario].alerts), fault.key
    fleet.set_fault("gpu_memory", True)
    fleet.set_fault("drift", True)
    assert fleet.exporter.active_scenarios == ["gpu_memory", "model_drift"]
    assert "DCGM_FI_DEV_FB_USED{" in fleet.exporter.metrics_text()
    fleet.set_fault("gpu_memory", False)
    assert fleet.exporter.active_scenarios == ["model_drift"]


def test_a_bad_rollout_lasts_until_the_deployment_is_rolled_back(fleet: Fleet) -> None:
    fleet.set_fault("bad_rollout", True)
    llama = next(d for d in fleet.deployments() if d["name"] == "vllm-llama")
    assert (llama["revision"], llama["version"]) == ("4", "v15")
    assert fleet.exporter.active_scenarios == ["vllm_latency"]

    # What the bot's rollback amounts to: the previous template goes out again.
    fleet.kube.rollout("llm-prod", "vllm-llama", model_version="v14")
    fleet.sync()
    assert fleet.exporter.active_scenarios == []
    assert fleet.active()["bad_rollout"] is False
    llama = next(d for d in fleet.deployments() if d["name"] == "vllm-llama")
    assert llama["version"] == "v14"
    assert [h["version"] for h in llama["history"]][:2] == ["v14", "v15"]


def test_the_console_names_what_is_wrong_with_a_request(console: ConsoleServer) -> None:
    base = console.url
    unknown = httpx.post(f"{base}api/fault", json={"key": "meteor"})
    assert unknown.status_code == 400
    assert "unknown fault 'meteor'" in unknown.json()["error"]
    command = httpx.post(
        f"{base}api/command", json={"user": "U0ONCALL1", "channel": "C0INCIDENTS", "command": "/rm"}
    )
    assert command.status_code == 400
    assert "unknown command '/rm'" in command.json()["error"]
    missing = httpx.post(f"{base}api/click", json={"channel": "C0INCIDENTS", "ts": "1.2"})
    assert (missing.status_code, missing.json()["error"]) == (400, "missing field 'user'")
    assert httpx.post(f"{base}api/click", content=b"[1]").json()["error"] == "the body must be a JSON object"


def test_the_page_is_served_with_a_policy_that_runs_only_its_own_script(console: ConsoleServer) -> None:
    page = httpx.get(console.url)
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert httpx.get(console.url + "console.js").headers["content-type"].startswith("text/javascript")
    state = httpx.get(console.url + "api/state").json()
    assert [f["key"] for f in state["faults"]] == list(FAULTS)
    assert {d["name"] for d in state["deployments"]} >= {"vllm-llama", "vllm-qwen", "triton-vision"}
