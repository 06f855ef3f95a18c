"""A drift or quality incident of a model with owners goes to the owners' channel and
mentions them there, without an incident channel (no paging), unless a route says otherwise."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bot.config import Settings
from bot.sandbox.slack_api import SlackStandIn
from tests.support.botserver import run_bot, wait_until
from tests.support.payloads import alert, notification

LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
MODELS = f"""
models:
  - model: {LLAMA}
    display_name: Llama chat
    owners: [U0LLAMA1, S0LLMTEAM]
    owners_channel: C0LLMOWNERS
"""
# Critical incidents of llm-prod get a channel of their own: a page.
PAGING = """
routes:
  - name: critical-pages
    match: ['severity="critical"', 'alertname!~"Model.*Drift.*"']
    channel: C0LLMPAGES
    incident_channel: {severities: [critical], responders: [U0ONCALL1]}
"""


def drift_alert(**labels: str) -> dict[str, object]:
    return notification(
        alert(
            "ModelFeatureDriftHigh", model_name=LLAMA, feature="prompt_length", severity="critical", **labels
        ),
        group_key='{}:{alertname="ModelFeatureDriftHigh"}',
    )


def test_drift_incident_goes_to_the_owners_and_mentions_them(
    tmp_path: Path, slack: SlackStandIn, settings_for: Callable[..., Settings]
) -> None:
    slack.add_channel("llm-owners", channel_id="C0LLMOWNERS")
    slack.add_channel("llm-pages", channel_id="C0LLMPAGES")
    (tmp_path / "models.yaml").write_text(MODELS)
    (tmp_path / "routing.yaml").write_text(PAGING)
    settings = settings_for(models_file=tmp_path / "models.yaml", routing_file=tmp_path / "routing.yaml")
    with run_bot(settings) as bot:
        assert bot.post_alert(drift_alert()).status_code == 200
        root = wait_until(lambda: slack.messages("C0LLMOWNERS"), message="the root in the owners' channel")[0]
        thread = wait_until(
            lambda: [m for m in slack.thread("C0LLMOWNERS", root.ts) if "<@U0LLAMA1>" in m.text],
            message="the owners' mention in the thread",
        )
        assert "<!subteam^S0LLMTEAM>" in thread[0].text
        assert "Llama chat" in thread[0].text
        assert bot.incidents()[0]["channel"] == "C0LLMOWNERS"
        # Critical, yet no channel of its own and nothing in the paging channel.
        assert slack.calls("conversations.create") == []
        assert slack.messages("C0LLMPAGES") == []
        assert not any("<!here>" in m.text or "<!channel>" in m.text for m in slack.messages("C0LLMOWNERS"))


def test_a_route_that_matches_wins_over_the_owners(
    tmp_path: Path, slack: SlackStandIn, settings_for: Callable[..., Settings]
) -> None:
    slack.add_channel("llm-owners", channel_id="C0LLMOWNERS")
    slack.add_channel("ml-quality", channel_id="C0QUALITY")
    (tmp_path / "models.yaml").write_text(MODELS)
    (tmp_path / "routing.yaml").write_text(
        "routes:\n  - name: quality-desk\n    match: ['alertname=~\"Model.*\"']\n    channel: C0QUALITY\n"
    )
    settings = settings_for(models_file=tmp_path / "models.yaml", routing_file=tmp_path / "routing.yaml")
    with run_bot(settings) as bot:
        assert bot.post_alert(drift_alert()).status_code == 200
        wait_until(lambda: slack.messages("C0QUALITY"), message="the root in the routed channel")
        assert bot.incidents()[0]["channel"] == "C0QUALITY"
        assert slack.messages("C0LLMOWNERS") == []


def test_other_incidents_of_the_model_are_not_routed_to_its_owners(
    tmp_path: Path, slack: SlackStandIn, settings_for: Callable[..., Settings]
) -> None:
    slack.add_channel("llm-owners", channel_id="C0LLMOWNERS")
    (tmp_path / "models.yaml").write_text(MODELS)
    with run_bot(settings_for(models_file=tmp_path / "models.yaml")) as bot:
        latency = notification(alert("VLLMHighE2ELatency", model_name=LLAMA))
        assert bot.post_alert(latency).status_code == 200
        wait_until(lambda: slack.messages("C0INCIDENTS"), message="the root in the default channel")
        assert slack.messages("C0LLMOWNERS") == []
