"""Block Kit for actions, the typed action registry, the recovery check's reading of alert
expressions, and the `/rollback`, `/scale` and `/incident silence` parsing: pure, no server."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from slack_sdk.models.blocks import Block

from bot.actions.changes import Change, created_by, redact_env, silence_matches
from bot.actions.kubernetes import template_digest
from bot.actions.policy import ActionKind
from bot.actions.recovery import RecoveryCheck, figure_of, recovery_check, split_comparison
from bot.actions.registry import REGISTRY, RollbackParams, ScaleParams, SilenceParams, parse_params
from bot.actions.silences import Matcher, Silence
from bot.diagnostics import Series
from bot.errors import PayloadError
from bot.runbooks.render import RenderedDiagnostic, RenderedRunbook
from bot.sandbox.slack_blockkit import check_blocks
from bot.slack import action_blocks as ab
from bot.slack import commands
from bot.slack.action_blocks import ActionButton
from bot.slack.commands import ListSilences, Rollback, Scale, Unsilence
from bot.slack.commands import Silence as SilenceCommand

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ROLLBACK = Change(
    kind="rollback",
    verb="roll back",
    target="llm-prod/vllm-llama",
    headline="llama-3-8b v14 -> v13",
    details=("revision 3 -> 2 (`kubectl rollout undo`)", "now: 2/2 pods ready"),
    request="PATCH /apis/apps/v1/namespaces/llm-prod/deployments/vllm-llama\n\n"
    + json.dumps(
        [{"op": "replace", "path": "/spec/template", "value": {"spec": {"containers": ["x" * 900]}}}]
    ),
)


def valid(message: dict[str, Any]) -> None:
    """slack-sdk's validators and the Slack stand-in's checks both accept the message."""
    assert len(message["blocks"]) <= 50
    for raw in message["blocks"]:
        block = Block.parse(raw)
        assert block is not None
        block.validate_json()
    assert check_blocks(message["blocks"]) == []


def buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]]


# ------------------------------------------------------------------ Block Kit


def test_confirmation_shows_the_change_and_asks_in_a_danger_dialog() -> None:
    message = ab.confirmation_message(7, ROLLBACK, notes=["Allowed by rule 'oncall'."], expires_at=NOW)
    valid(message)
    flat = json.dumps(message)
    assert "*llama-3-8b v14 -&gt; v13*" in flat
    assert "revision 3 -&gt; 2" in flat
    confirm, cancel = buttons(message)
    assert (confirm["action_id"], confirm["value"], confirm["style"]) == (ActionButton.CONFIRM, "7", "danger")
    assert (cancel["action_id"], cancel["value"]) == (ActionButton.CANCEL, "7")
    dialog = confirm["confirm"]
    assert dialog["text"]["text"] == "Roll back llm-prod/vllm-llama: llama-3-8b v14 -> v13"
    assert dialog["style"] == "danger"
    # A rollback's JSON Patch holds a whole pod template: shown in the dry run, not here.
    assert "PATCH" not in flat


def test_confirm_dialog_stays_within_slacks_limits_whatever_the_names() -> None:
    long = Change(
        kind="scale",
        verb="scale",
        target="llm-prod/" + "x" * 250,
        headline="replicas 2 -> 4 " + "<!channel> " * 40,
        warning="not enough allocatable nvidia.com/gpu " * 20,
    )
    message = ab.confirmation_message(1, long)
    valid(message)
    dialog = buttons(message)[0]["confirm"]
    assert len(dialog["text"]["text"]) <= 300
    assert len(dialog["title"]["text"]) <= 100
    assert "<!channel>" not in json.dumps(message)  # defused in plain text, escaped in mrkdwn


def test_dry_run_shows_the_exact_request_in_a_code_block_that_cannot_be_broken_out_of() -> None:
    change = Change(
        kind="scale", verb="scale", target="a/b", headline="replicas 1 -> 2", request='{"x": "```<!here>"}'
    )
    message = ab.dry_run_message(change, reason="INCIDENT_BOT_DRY_RUN is set", outcome="accepted")
    valid(message)
    flat = json.dumps(message)
    assert '```{\\"x\\": \\"\'\'\'&lt;!here&gt;\\"}```' in flat
    assert "Nothing was changed." in flat


def test_approval_request_buttons_carry_only_the_record_id() -> None:
    message = ab.approval_request_message(
        9, ROLLBACK, requester="U0ONCALL1", needs="1 approval from a member of S0SRE", approvals=["U0ONCALL2"]
    )
    valid(message)
    approve, reject = buttons(message)
    assert (approve["action_id"], approve["value"]) == (ActionButton.APPROVE, "9")
    assert (reject["action_id"], reject["value"]) == (ActionButton.REJECT, "9")
    assert "Approved so far by <@U0ONCALL2>" in json.dumps(message)


def test_refusal_result_verification_and_silences_messages_escape_what_they_show() -> None:
    evil = Change(kind="rollback", verb="roll back", target="ns/<!channel>", headline="<@U1> v1 -> v2")
    for message in (
        ab.refusal_message(evil, action="roll back", target="ns/<!channel>", reasons="nope <!here>"),
        ab.result_message(evil, ok=False, actor="U0ONCALL1", text="failed <!everyone>"),
        ab.verification_message(evil, recovered=True, text="recovered: p99 4.2 s -> 0.6 s"),
        ab.approval_closed_message(evil, text="approved"),
    ):
        valid(message)
        section = message["blocks"][0]["text"]["text"]
        assert "<!" not in section
        assert "<@U1>" not in section
    listed = ab.silences_message(
        "INC-3",
        [ab.SilenceLine("abc", '{pod="<!here>"}', NOW, "alice (U0ONCALL1)", "noisy", by_bot=True)],
    )
    valid(listed)
    assert "&lt;!here&gt;" in json.dumps(listed)


def test_change_round_trips_through_the_record() -> None:
    assert Change.from_dict(json.loads(json.dumps(ROLLBACK.to_dict()))) == ROLLBACK


# ------------------------------------------------------------------ registry and helpers


def test_every_action_kind_has_a_parameter_model() -> None:
    assert set(REGISTRY) == set(ActionKind)
    assert isinstance(
        parse_params("rollback", {"namespace": "llm-prod", "deployment": "vllm"}), RollbackParams
    )
    assert isinstance(
        parse_params("scale", {"namespace": "a", "deployment": "b", "replicas": 0}), ScaleParams
    )
    silence = parse_params("silence", {"duration_seconds": 3600, "duration": "1h", "comment": None})
    assert isinstance(silence, SilenceParams)
    assert silence.length == timedelta(hours=1)


@pytest.mark.parametrize(
    ("kind", "raw", "problem"),
    [
        ("rollback", {"namespace": "llm-prod"}, "deployment: field required"),
        ("rollback", {"namespace": "llm-prod", "deployment": "Vllm"}, "'Vllm' is not a Kubernetes name"),
        (
            "rollback",
            {"namespace": "a", "deployment": "b", "revision": 0},
            "revision: input should be greater",
        ),
        ("scale", {"namespace": "a", "deployment": "b", "replicas": -1}, "replicas: input should be greater"),
        ("scale", {"namespace": "a", "deployment": "b", "replicas": 2, "x": 1}, "x: extra inputs"),
        ("silence", {"duration_seconds": 0, "duration": "0s"}, "duration_seconds"),
        ("drain", {}, "unknown action 'drain'"),
    ],
)
def test_bad_parameters_are_named(kind: str, raw: dict[str, Any], problem: str) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_params(kind, raw)
    assert problem in caught.value.message


def test_secrets_in_env_values_never_reach_slack_and_digests_ignore_the_hash_label() -> None:
    template = {
        "metadata": {"labels": {"app": "x", "pod-template-hash": "abc"}},
        "spec": {"containers": [{"name": "c", "env": [{"name": "TOKEN", "value": "s3cret"}]}]},
    }
    assert "s3cret" not in json.dumps(redact_env([{"op": "replace", "value": template}]))
    other_hash = json.loads(json.dumps(template).replace("abc", "def"))
    assert template_digest(template) == template_digest(other_hash)
    changed = json.loads(json.dumps(template).replace("s3cret", "other"))
    assert template_digest(template) != template_digest(changed)


def test_silence_matching_and_author() -> None:
    silence = Silence(
        "id",
        (Matcher("pod", "vllm-.*", is_regex=True), Matcher("severity", "info", is_equal=False)),
        NOW,
        NOW,
        "x",
        "y",
        "active",
    )
    assert silence_matches(silence, {"pod": "vllm-0", "severity": "critical"})
    assert not silence_matches(silence, {"pod": "vllm-0", "severity": "info"})
    assert not silence_matches(silence, {"pod": "xvllm-0", "severity": "critical"})  # anchored
    assert created_by("U0ONCALL1", "alice") == "alice (U0ONCALL1)"
    assert created_by("U0ONCALL1", None) == "U0ONCALL1"


# ------------------------------------------------------------------ recovery


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("up == 0", ("up", "==", 0.0)),
        ('histogram_quantile(0.99, sum by (le) (rate(x_bucket{a="b>c"}[5m]))) > 5', None),
        ("sum(rate(errors[5m])) / sum(rate(requests[5m])) > bool 0.05", None),
        ('avg(x{job=~"a|b"}) < 1e-3', ('avg(x{job=~"a|b"})', "<", 0.001)),
        ("x > 1 and y < 2", None),
        ("x > y", None),
        ("rate(x[5m])", None),
    ],
)
def test_split_comparison(expr: str, expected: tuple[str, str, float] | None) -> None:
    found = split_comparison(expr)
    if expected is None and ">" in expr and "bucket" in expr:
        assert found is not None
        assert found.lhs.startswith("histogram_quantile(")
        assert (found.op, found.threshold) == (">", 5)
        return
    if expected is None and "bool" in expr:
        assert found is not None
        assert (found.op, found.threshold) == (">", 0.05)
        return
    assert (None if found is None else (found.lhs, found.op, found.threshold)) == expected


def test_recovery_check_prefers_the_runbook_figure_and_names_it() -> None:
    query = 'histogram_quantile(0.99, sum by (le) (rate(vllm:e2e_request_latency_seconds_bucket{a="b"}[5m])))'
    runbook = RenderedRunbook(
        name="vllm-latency",
        version="1",
        source="x.yaml",
        description="",
        steps=(),
        diagnostics=(
            RenderedDiagnostic("*p99 end-to-end latency*", query, "instant", "seconds", None, None),
        ),
        links=(),
        actions=(),
        recovery_query=query + "\n",
    )
    check = recovery_check(f"{query} > 5", "VLLMHighE2ELatency", runbook)
    assert check == RecoveryCheck(f"{query} > 5", query, "p99 end-to-end latency", "seconds", False)
    assert check.change(4.2, 0.6) == "p99 end-to-end latency 4.2 s -> 0.6 s"
    alone = recovery_check("sum(rate(tokens[1m])) < 10", "VLLMEngineStalled", None)
    assert alone is not None
    assert (alone.figure, alone.lowest, alone.title) == ("sum(rate(tokens[1m]))", True, "VLLMEngineStalled")
    assert recovery_check(None, None, None) is None
    series = [Series({"pod": "a"}, [(NOW, 3.0)]), Series({"pod": "b"}, [(NOW, 9.0)]), Series({}, [])]
    assert figure_of(series) == 9.0
    assert figure_of(series, lowest=True) == 3.0
    assert figure_of([]) is None


# ------------------------------------------------------------------ commands


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("silence INC-4 2h rollout in progress", SilenceCommand(4, 7200, "2h", "rollout in progress")),
        ("mute 4 1h30m noisy &amp; known", SilenceCommand(4, 5400, "1h30m", "noisy & known")),
        ("silences INC-4", ListSilences(4)),
        (
            "unsilence INC-4 2F5C7A4E-1B3D-4E8F-9A6B-0C1D2E3F4A5B",
            Unsilence(4, "2f5c7a4e-1b3d-4e8f-9a6b-0c1d2e3f4a5b"),
        ),
    ],
)
def test_silence_subcommands(text: str, expected: object) -> None:
    assert commands.parse(text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("silence INC-4", "`silence` needs a duration and a reason"),
        ("silence INC-4 2h", "`silence` needs a reason after the duration"),
        ("silence INC-4 forever because", "bad silence duration `forever`"),
        ("silence INC-4 60d too long", "longer than the maximum of 30d"),
        ("silences INC-4 extra", "`silences` takes only an incident ID"),
        ("unsilence INC-4", "`unsilence` needs the ID of one silence"),
        ("unsilence INC-4 abc", "`abc` is not a silence ID"),
    ],
)
def test_silence_usage_errors(text: str, problem: str) -> None:
    with pytest.raises(commands.UsageError) as caught:
        commands.parse(text)
    assert problem in caught.value.message


def test_rollback_and_scale_arguments() -> None:
    assert commands.parse_rollback("llm-prod/vllm-llama") == Rollback("llm-prod", "vllm-llama")
    assert commands.parse_rollback(" llm-prod/vllm-llama 12 --dry-run") == Rollback(
        "llm-prod", "vllm-llama", 12, True
    )
    assert commands.parse_scale("llm-prod/vllm-llama 4") == Scale("llm-prod", "vllm-llama", 4)
    for parse, text, problem in (
        (commands.parse_rollback, "", "needs a deployment"),
        (commands.parse_rollback, "a/b 1 2", "takes at most a revision"),
        (commands.parse_rollback, "a/B", "'B' is not a Kubernetes name"),
        (commands.parse_scale, "a/b", "needs a deployment and a replica count"),
        (commands.parse_scale, "a/b 2.5", "`2.5` is not a replica count"),
        (commands.parse_scale, "a/b 20000", "less than or equal to 10000"),
    ):
        with pytest.raises(commands.UsageError) as caught:
            parse(text)
        assert problem in caught.value.message
