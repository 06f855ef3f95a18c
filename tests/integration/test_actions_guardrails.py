"""The guardrails, through Slack: every kind of policy refusal, confirmation and cancel, dry runs
(global and per rule), a second approver, one action at a time per target, and exactly one
execution however often a confirmation is clicked or delivered."""

from __future__ import annotations

import html
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings
from bot.sandbox.kube_api import KubeStandIn
from bot.sandbox.slack_api import SlackStandIn
from tests.support.actions import NAME, NS, TARGET, Harness, model_version, seed_llama, write_policy
from tests.support.botserver import run_bot, wait_until
from tests.support.slack_requests import ALICE, BOB, CAROL, SlackSender

Factory = Callable[..., Harness]


@pytest.fixture
def kube() -> Iterator[KubeStandIn]:
    with KubeStandIn() as standin:
        seed_llama(standin)
        yield standin


@pytest.fixture
def start(
    tmp_path: Path, settings_for: Callable[..., Settings], slack: SlackStandIn, kube: KubeStandIn
) -> Iterator[Factory]:
    """`start(policy_text, **settings)`: the bot with that policy (None: no policy file)."""
    stack: list[Any] = []

    def factory(policy: str | None, **overrides: Any) -> Harness:
        settings = settings_for(
            kubeconfig=str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
            policy_file=write_policy(tmp_path, policy) if policy is not None else None,
            **overrides,
        )
        context = run_bot(settings)
        bot = context.__enter__()
        stack.append(context)
        return Harness(bot, slack, kube, SlackSender(bot.url, slack))

    yield factory
    for context in reversed(stack):
        context.__exit__(None, None, None)


def refusal(harness: Harness, command: str, text: str, *, user: Any = ALICE) -> str:
    answer = harness.text(harness.answer(harness.command(command, text, user=user)))
    assert "Not allowed" in answer, answer
    return answer


POLICY = """
defaults: {cooldown: 0s}
rules:
  - name: oncall
    actions: [rollback, scale, restart]
    usergroups: [S0SRE]
    namespaces: ["llm-prod"]
    deployments: ["vllm-*"]
    replicas: {min: 1, max: 8}
  - name: analysts
    actions: [scale]
    usergroups: [S0ML]
    namespaces: ["llm-*"]
    replicas: {min: 1, max: 3}
"""


# ------------------------------------------------------------------ refusals


def test_without_a_policy_file_every_action_is_refused_with_how_to_allow_it(start: Factory) -> None:
    harness = start(None)
    incident = harness.open_incident()
    text = refusal(harness, "/rollback", TARGET)
    assert (
        "No policy allows actions: set INCIDENT_BOT_POLICY_FILE to a policy file (see README, 'Guardrails')"
        in text
    )

    record = harness.wait_record(lambda r: r.status == "refused")
    assert (record.kind, record.target, record.requested_by) == ("rollback", TARGET, ALICE.id)
    event = harness.wait_event(incident, "refused")
    assert event["actor"] == ALICE.id
    assert "INCIDENT_BOT_POLICY_FILE" in event["text"]
    harness.wait_thread(incident, "refused")
    assert harness.writes() == []


def test_refusals_name_the_user_the_action_the_namespace_the_deployment_and_the_bounds(
    start: Factory, slack: SlackStandIn
) -> None:
    slack.add_usergroup("S0ML", "ml-analysts", [CAROL.id])
    harness = start(POLICY)

    # carol is only in S0ML: scale (within 1..3) is hers, rollback is not.
    assert (
        "U0ANALYST may not run rollback: the policy lets U0ANALYST run only scale (rule 'analysts')"
        in refusal(harness, "/rollback", TARGET, user=CAROL)
    )
    assert "above the maximum of 3" in refusal(harness, "/scale", f"{TARGET} 4", user=CAROL)
    # Membership is read from Slack's user groups: once out of S0ML, carol is nobody.
    slack.add_usergroup("S0ML", "ml-analysts", [])
    harness.bot.services.actions.groups.forget()
    assert "no policy rule names U0ANALYST or a user group of theirs" in refusal(
        harness, "/scale", f"{TARGET} 3", user=CAROL
    )

    assert "allows rollback only in namespaces llm-prod; llm-staging is not one of them" in refusal(
        harness, "/rollback", f"llm-staging/{NAME}"
    )
    assert "allows rollback only on deployments vllm-*; triton-resnet is not one of them" in refusal(
        harness, "/rollback", f"{NS}/triton-resnet"
    )
    assert "scale to 9 is above the maximum of 8 for llm-prod/vllm-llama" in refusal(
        harness, "/scale", f"{TARGET} 9"
    )
    assert "scale to 0 is below the minimum of 1" in refusal(harness, "/scale", f"{TARGET} 0")
    kinds = [r.status for r in harness.records()]
    assert kinds == ["refused"] * 7
    assert harness.writes() == []


def test_a_cooldown_keeps_two_scales_of_one_deployment_apart(start: Factory) -> None:
    harness = start(POLICY.replace("cooldown: 0s", "cooldown: 10m"))
    first = harness.answer(harness.command("/scale", f"{TARGET} 3"))
    assert "Running" in harness.text(first)
    wait_until(lambda: harness.kube.deployment(NS, NAME)["spec"]["replicas"] == 3, message="first scale")
    text = refusal(harness, "/scale", f"{TARGET} 4", user=BOB)
    assert "cooldown: last scale on llm-prod/vllm-llama was" in text
    assert "rule 'oncall' asks for 10m between scales of the same deployment" in text
    # A rollback is another kind of action: not held back by the scale's cooldown.
    assert "Confirm: roll back" in harness.text(harness.answer(harness.command("/rollback", TARGET)))


# ------------------------------------------------------------------ confirmation


def test_a_rollback_waits_for_confirmation_and_cancel_changes_nothing(start: Factory) -> None:
    harness = start(POLICY)
    incident = harness.open_incident()
    confirmation = harness.answer(harness.command("/rollback", TARGET))
    assert harness.records()[0].status == "awaiting_confirmation"

    # Someone else cannot confirm alice's request.
    other = harness.answer(harness.click_answer("action_confirm", confirmation, user=BOB))
    assert f"Only <@{ALICE.id}> can confirm their request" in harness.text(other)
    assert harness.records()[0].status == "awaiting_confirmation"

    cancelled = harness.answer(harness.click_answer("action_cancel", confirmation))
    assert "Cancelled" in harness.text(cancelled)
    assert cancelled.body["replace_original"] is True
    late = harness.answer(harness.click_answer("action_confirm", confirmation))
    assert "was cancelled" in harness.text(late)

    assert harness.records()[0].status == "cancelled"
    assert harness.writes() == []
    assert model_version(harness.kube) == "v14"
    harness.wait_event(incident, "alice cancelled")


# ------------------------------------------------------------------ dry runs


def test_global_dry_run_shows_the_exact_request_and_changes_nothing(start: Factory) -> None:
    harness = start(POLICY, dry_run=True)
    incident = harness.open_incident()
    answer = harness.text(harness.answer(harness.command("/rollback", TARGET)))
    assert "Dry run: roll back `llm-prod/vllm-llama`* (INCIDENT_BOT_DRY_RUN is set)" in answer
    assert "PATCH /apis/apps/v1/namespaces/llm-prod/deployments/vllm-llama" in answer
    assert "Content-Type: application/json-patch+json" in answer
    assert '"path": "/spec/template"' in answer
    assert "Nothing was changed." in answer

    writes = harness.writes()
    assert writes, "the API server validates the dry run"
    assert all(w.query.get("dryRun") == "All" for w in writes)
    assert model_version(harness.kube) == "v14"
    assert harness.records()[0].status == "dry_run"
    harness.wait_thread(incident, "dry-ran")
    harness.wait_event(incident, "Dry run by alice")


def test_a_rule_can_dry_run_one_action_and_run_the_others(start: Factory) -> None:
    harness = start(
        POLICY.replace("replicas: {min: 1, max: 8}", "replicas: {min: 1, max: 8}\n    dry_run: [scale]")
    )
    answer = harness.text(harness.answer(harness.command("/scale", f"{TARGET} 5")))
    assert "Dry run: scale" in answer
    assert "rule 'oncall' only dry-runs scale" in answer
    assert '"replicas": 5' in answer
    assert harness.kube.deployment(NS, NAME)["spec"]["replicas"] == 2
    assert [w.query.get("dryRun") for w in harness.writes()] == ["All"]

    assert "Confirm: roll back" in harness.text(harness.answer(harness.command("/rollback", TARGET)))


# ------------------------------------------------------------------ approvals and locks


def test_a_second_approver_is_needed_and_the_requester_cannot_be_it(start: Factory) -> None:
    harness = start(
        POLICY.replace('deployments: ["vllm-*"]', 'deployments: ["vllm-*"]\n    approvers: {required: 1}')
    )
    incident = harness.open_incident()
    confirmation = harness.answer(harness.command("/rollback", TARGET))
    assert "needs 1 approval from a member of S0SRE, other than the requester" in harness.text(confirmation)
    waiting = harness.answer(harness.click_answer("action_confirm", confirmation))
    assert "needs 1 approval" in harness.text(waiting)

    request = harness.wait_thread(incident, "asks to *roll back `llm-prod/vllm-llama`*")
    own = harness.answer(harness.click("action_approve", request, user=ALICE))
    assert "asked for rollback on llm-prod/vllm-llama and cannot approve it" in harness.text(own)
    outsider = harness.answer(harness.click("action_approve", request, user=CAROL))
    assert "may not approve" in harness.text(outsider)
    assert harness.real_writes() == []
    assert harness.records()[0].status == "awaiting_approval"

    approved = harness.answer(harness.click("action_approve", request, user=BOB))
    assert approved.body["replace_original"] is True
    assert f"approved by <@{BOB.id}>" in harness.text(approved)
    wait_until(lambda: model_version(harness.kube) == "v13", message="rolled back after the approval")
    record = harness.wait_record(lambda r: r.status == "succeeded")
    assert record.approved_by == BOB.id
    harness.wait_event(incident, "bob approved")
    assert [e for e in harness.events(incident) if "Approval refused" in e["text"]]


def test_one_action_at_a_time_per_target(start: Factory) -> None:
    harness = start(POLICY)
    incident = harness.open_incident()
    alice = harness.answer(harness.command("/rollback", TARGET))
    bob = harness.answer(harness.command("/rollback", TARGET, user=BOB))

    harness.kube.outage()  # alice's rollback cannot finish: it holds the target
    harness.click_answer("action_confirm", alice)
    harness.wait_record(lambda r: r.requested_by == ALICE.id and r.status == "running")

    busy = harness.text(harness.answer(harness.click_answer("action_confirm", bob, user=BOB)))
    assert f"{TARGET} is busy: rollback by <@{ALICE.id}> since" in busy
    assert "is busy" in refusal(harness, "/scale", f"{TARGET} 3", user=BOB)

    harness.kube.restore()
    wait_until(
        lambda: model_version(harness.kube) == "v13", timeout=30, message="alice's rollback after the outage"
    )
    harness.wait_thread(incident, f"<@{ALICE.id}> *roll back `{TARGET}`*: done", timeout=30)
    # Once the target is free again, bob's confirmation is checked afresh: the Deployment
    # already runs what his rollback would restore, so nothing is done twice.
    harness.click_answer("action_confirm", bob, user=BOB)
    failed = harness.wait_thread(incident, "failed")
    assert f"skipped: {TARGET} already runs the template this rollback would restore" in html.unescape(
        failed.text
    )
    assert len([r for r in harness.real_writes() if r.method == "PATCH"]) == 1


# ------------------------------------------------------------------ idempotency


def test_double_clicks_and_slack_retries_run_the_action_once(start: Factory) -> None:
    harness = start(POLICY)
    incident = harness.open_incident()
    command = harness.command("/rollback", TARGET)
    assert harness.sender.resend(command).status_code == 200  # Slack retries the command
    confirmation = harness.answer(command)

    # Two clicks at once (a double click: two deliveries with their own action_ts), then a
    # retry of the first delivery.
    clicks: list[Any] = []
    threads = [
        threading.Thread(target=lambda: clicks.append(harness.click_answer("action_confirm", confirmation)))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert harness.sender.resend(clicks[0]).status_code == 200

    wait_until(lambda: model_version(harness.kube) == "v13", message="rolled back")
    harness.wait_thread(incident, "*: done")
    answers = [harness.text(harness.answer(c)) for c in clicks]
    assert sorted("Confirmed" in a for a in answers) == [False, True], answers
    # The other click is told where the record is: confirmed, running or done, by then.
    assert any(f"The rollback of {TARGET}" in a and "already" in a for a in answers), answers

    patches = [r for r in harness.real_writes() if r.method == "PATCH"]
    assert len(patches) == 1
    assert len(harness.records()) == 1
    assert len(harness.answers(command)) == 1


def test_a_confirmation_expires(start: Factory) -> None:
    harness = start(POLICY)
    confirmation = harness.answer(harness.command("/rollback", TARGET))
    actions = harness.bot.services.actions
    assert actions is not None
    later = datetime.now(UTC) + timedelta(minutes=11)
    actions.clock = lambda: later  # the confirmation was shown 11 minutes ago
    expired = harness.text(harness.answer(harness.click_answer("action_confirm", confirmation)))
    assert "This request expired" in expired
    assert harness.records()[0].status == "expired"
    assert harness.real_writes() == []


def test_an_approver_can_reject_and_nothing_runs(start: Factory) -> None:
    harness = start(
        POLICY.replace('deployments: ["vllm-*"]', 'deployments: ["vllm-*"]\n    approvers: {required: 1}')
    )
    incident = harness.open_incident()
    harness.click_answer("action_confirm", harness.answer(harness.command("/rollback", TARGET)))
    request = harness.wait_thread(incident, "asks to *roll back")
    rejected = harness.answer(harness.click("action_reject", request, user=BOB))
    assert f"rejected by <@{BOB.id}>; nothing was changed" in harness.text(rejected)
    assert harness.records()[0].status == "cancelled"
    late = harness.answer(harness.click("action_approve", request, user=BOB))
    assert "was cancelled" in harness.text(late)
    assert harness.real_writes() == []


def test_without_an_incident_the_result_goes_to_the_channel_it_was_asked_in(
    start: Factory, slack: SlackStandIn
) -> None:
    harness = start(POLICY)
    harness.command("/scale", f"{TARGET} 3")
    posted = wait_until(
        lambda: [
            m
            for m in slack.messages("C0INCIDENTS")
            if "scale `llm-prod/vllm-llama`*: done" in m.blocks[0]["text"]["text"]
        ],
        message="the result in the channel",
    )
    assert f"<@{ALICE.id}>" in posted[0].blocks[0]["text"]["text"]
    record = harness.records()[0]
    assert (record.status, record.incident_id) == ("succeeded", None)
