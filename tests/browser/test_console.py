"""The demo console in a real browser (Debian's chromium through playwright), against the real
demo process: the bot, the stand-ins, the simulated fleet, real Prometheus and Alertmanager.

What a newcomer does: open the URL, find the incident the demo opened by itself, break the
model server, acknowledge, read the diagnostics, graph and runbook, roll back through the
confirmation, type a slash command, and see the deployment change and the incident resolve.
"""

from __future__ import annotations

import shutil
import signal
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests.support.democonsole import URL, RunningDemo, chromium, leftover_processes, running_demo

pytestmark = pytest.mark.prometheus

FIRING = 90_000  # ms: scrape + rule `for` + Alertmanager group_wait on a loaded 2-core machine
SCREENSHOTS = Path("test-output")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDemo]:
    with running_demo(tmp_path_factory.mktemp("demo")) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as running:  # one playwright per module: the sync API does not nest
        yield running


@pytest.fixture(scope="module")
def page(demo: RunningDemo, browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1500, "height": 1000})
    opened = context.new_page()
    opened.goto(demo.console_url)
    yield opened
    context.close()


def root_message(page: Page, text: str) -> Locator:
    return page.locator("#messages .message").filter(has_text=text).first


def screenshot(page: Page, name: str, tmp_path: Path) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path))
    SCREENSHOTS.mkdir(exist_ok=True)
    shutil.copy(path, SCREENSHOTS / name)
    return path


def test_the_demo_prints_the_console_url_last_and_runs_real_alerting(demo: RunningDemo) -> None:
    output = demo.wait_for_output("Ctrl-C stops everything")
    console = demo.url_after("Open the console:")
    assert console.startswith("http://127.0.0.1:")
    assert URL.findall(output)[-1].rstrip("/") == console  # the last URL it prints
    assert "Prometheus:" in demo.output
    assert httpx.get(demo.url_after("Prometheus:") + "/-/ready", timeout=5).status_code == 200


def test_break_acknowledge_and_roll_back_in_the_browser(
    demo: RunningDemo, page: Page, tmp_path: Path
) -> None:
    # The demo opened an incident by itself: a bad rollout of vllm-llama, alerts from Prometheus.
    llama = root_message(page, "llm-prod/vllm-llama")
    expect(llama).to_contain_text("INC-1", timeout=FIRING)
    expect(page.locator("[data-deployment='llm-prod/vllm-llama']")).to_contain_text("model v15")

    # Break something else: the console's switch reaches the exporter, Prometheus fires.
    page.locator("button[data-fault=errors]").click()
    expect(page.locator("button[data-fault=errors]")).to_have_attribute("aria-pressed", "true")
    qwen = root_message(page, "llm-prod/vllm-qwen")
    expect(qwen).to_contain_text("INC-2", timeout=FIRING)

    # Acknowledge INC-1: the root message is edited in place.
    llama.locator("button[data-action-id=incident_ack]").click()
    expect(llama).to_contain_text("Acknowledged", timeout=20_000)
    expect(llama).to_contain_text("(edited)")
    expect(llama.locator("button[data-action-id=incident_ack]")).to_have_count(0)

    # Its thread: runbook steps, diagnostics with a graph, what changed.
    llama.locator("button[data-thread]").click()
    thread = page.locator("[data-testid=thread]")
    expect(thread).to_contain_text("runbook vllm-latency", timeout=30_000)
    expect(thread).to_contain_text("(the alert's expression)", timeout=30_000)
    expect(thread).to_contain_text("rolled out shortly before the alert")
    graph = thread.locator(".file img").first
    expect(graph).to_be_visible(timeout=30_000)
    assert graph.evaluate("img => img.complete && img.naturalWidth > 100")
    screenshot(page, "console-incident.png", tmp_path)

    # A runbook action through its confirmation: the ephemeral Confirm/Cancel, then the dialog.
    thread.locator("button[data-action-id^=runbook_action]", has_text="Roll back").click()
    confirmation = page.locator("[data-testid=ephemeral]").filter(has_text="Confirm: roll back")
    expect(confirmation).to_contain_text("Only visible to you (alice)", timeout=20_000)
    expect(confirmation).to_contain_text("v15 -> v14")
    confirmation.locator("button[data-action-id=action_confirm]").click()
    dialog = page.locator("[data-testid=confirm-dialog]")
    expect(dialog).to_contain_text("Roll back llm-prod/vllm-llama?")
    page.locator("[data-testid=confirm-yes]").click()

    # Kubernetes changed for real; the bot says so in the thread; the metrics recover.
    deployment = page.locator("[data-deployment='llm-prod/vllm-llama']")
    expect(deployment).to_contain_text("revision 5 · model v14", timeout=30_000)
    expect(thread).to_contain_text("roll back llm-prod/vllm-llama: done", timeout=30_000)
    expect(page.locator("button[data-fault=bad_rollout]")).to_have_attribute("aria-pressed", "false")

    # A slash command as another person: bob scales Qwen up (no confirmation for a scale-up).
    page.locator("[data-testid=user-select]").select_option("U0ONCALL2")
    page.locator("[data-testid=command-select]").select_option("/scale")
    page.locator("[data-testid=command-text]").fill("llm-prod/vllm-qwen 3")
    page.locator("#command-send").click()
    expect(page.locator("[data-deployment='llm-prod/vllm-qwen']")).to_contain_text(
        "replicas 3", timeout=30_000
    )
    expect(page.locator("[data-testid=ephemeral]").filter(has_text="bob")).to_contain_text("scale")

    expect(llama).to_contain_text("Resolved", timeout=120_000)
    expect(llama).to_contain_text("0 firing")
    screenshot(page, "console.png", tmp_path)


def test_alert_text_holding_html_is_shown_as_text(demo: RunningDemo, page: Page, tmp_path: Path) -> None:
    hostile = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"> & <b>bold?</b>'
    alertmanager = demo.url_after("Alertmanager:")
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    alert = {
        "labels": {
            "alertname": "GatewayErrors",
            "namespace": "web-prod",
            "deployment": "gateway",
            "severity": "critical",
        },
        "annotations": {"summary": hostile, "description": hostile},
        "startsAt": now,
        "generatorURL": "http://127.0.0.1/graph",
    }
    response = httpx.post(f"{alertmanager}/api/v2/alerts", json=[alert], timeout=10)
    assert response.status_code == 200, response.text
    message = root_message(page, "GatewayErrors")
    expect(message).to_contain_text("<script>window.__pwned = 1</script>", timeout=FIRING)
    expect(message).to_contain_text('<img src=x onerror="window.__pwned = 2"> & <b>bold?</b>')
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#messages script, #thread script").count() == 0
    assert page.locator("#messages img[src=x], #thread img[src=x]").count() == 0
    screenshot(page, "console-html-as-text.png", tmp_path)


def test_without_prometheus_the_demo_replays_notifications(browser: Browser, tmp_path: Path) -> None:
    with running_demo(tmp_path / "demo", "--replay") as demo:
        assert "replaying recorded Alertmanager notifications" in demo.output
        assert "Prometheus:" not in demo.output
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        page.goto(demo.console_url)
        incident = root_message(page, "llm-prod/vllm-llama")
        expect(incident).to_contain_text("INC-1", timeout=30_000)
        expect(page.locator("#alerting-status")).to_have_text("alerts: replayed")
        expect(incident).to_contain_text("VLLMHighE2ELatency")

        # carol (an analyst) asks for a scale-up; the demo policy wants an on-call approval.
        page.locator("[data-testid=user-select]").select_option("U0ANALYST")
        page.locator("[data-testid=command-select]").select_option("/scale")
        page.locator("[data-testid=command-text]").fill("llm-prod/vllm-mistral 2")
        page.locator("#command-send").click()
        expect(page.locator("[data-testid=ephemeral]")).to_contain_text("needs 1 approval", timeout=20_000)
        approve = page.locator("button[data-action-id=action_approve]")
        approval = page.locator("#messages .message").filter(has=approve).last
        expect(approval).to_contain_text("vllm-mistral", timeout=20_000)

        # bob approves it, takes command of INC-1 and resolves it.
        page.locator("[data-testid=user-select]").select_option("U0ONCALL2")
        approval.locator("button[data-action-id=action_approve]").click()
        mistral = page.locator("[data-deployment='llm-prod/vllm-mistral']")
        expect(mistral).to_contain_text("replicas 2", timeout=30_000)
        incident.locator("button[data-action-id=incident_take_command]").click()
        expect(incident).to_contain_text("@bob", timeout=20_000)
        incident.locator("button[data-action-id=incident_resolve]").click()
        expect(incident).to_contain_text("Resolved", timeout=20_000)
        screenshot(page, "console-replay.png", tmp_path)
        page.close()


def test_ctrl_c_stops_everything(demo: RunningDemo) -> None:
    """Last in this module: it stops the shared demo."""
    servers = [p for p in leftover_processes(demo.workdir) if "prometheus" in p]
    assert len(servers) == 2, servers  # Prometheus and Alertmanager, children of the demo
    demo.process.send_signal(signal.SIGINT)
    assert demo.process.wait(timeout=30) == 0
    assert leftover_processes(demo.workdir) == []
    assert demo.wait_for_output("stopped.")
