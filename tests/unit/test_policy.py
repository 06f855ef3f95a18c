"""The guardrails policy: loading with file:line errors, and every kind of decision.

Most decisions are asked of the shipped example (manifests/base/config/policy.yaml), so the
example stays a policy that does what its comments say. The people in it:
on-call (S04LLMONCALL), platform leads (S04MLPLATLEADS), ML engineers (S04MLENG), AI
operations analysts (S04AIOPS) and the head of on-call U04PLATLEAD.
"""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.actions.policy import (
    NO_POLICY_MESSAGE,
    ActionKind,
    ActionRequest,
    Decision,
    Policy,
    PolicyFileError,
    RefusalKind,
    can_approve,
)
from bot.errors import ConfigError, PayloadError, PolicyDenied

EXAMPLE = Path(__file__).resolve().parents[2] / "manifests" / "base" / "config" / "policy.yaml"
NOW = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)

ONCALL = "S04LLMONCALL"
LEADS = "S04MLPLATLEADS"
MLENG = "S04MLENG"
AIOPS = "S04AIOPS"
HEAD = "U04PLATLEAD"
ALICE = "U0ALICE01"  # on-call engineer
BOB = "U0BOB0002"  # on-call engineer
CAROL = "U0CAROL03"  # platform lead
DANA = "U0DANA004"  # analyst
ERIN = "U0ERIN005"  # ML engineer
NOBODY = "U0NOBODY9"

GROUPS = {
    ALICE: frozenset({ONCALL}),
    BOB: frozenset({ONCALL}),
    CAROL: frozenset({LEADS}),
    DANA: frozenset({AIOPS}),
    ERIN: frozenset({MLENG}),
    HEAD: frozenset(),
    NOBODY: frozenset(),
}


@pytest.fixture(scope="module")
def example() -> Policy:
    return Policy.load(EXAMPLE)


def decide(
    policy: Policy,
    request: ActionRequest,
    *,
    last: datetime | None = None,
    groups: frozenset[str] | None = None,
    now: datetime = NOW,
) -> Decision:
    user_groups = GROUPS.get(request.actor, frozenset()) if groups is None else groups
    return policy.decide(request, user_groups=user_groups, now=now, last_action_at=last)


def scale(actor: str, target: str, replicas: int, current: int | None = 3) -> ActionRequest:
    namespace, deployment = target.split("/")
    return ActionRequest(
        ActionKind.SCALE, actor, namespace, deployment, replicas=replicas, current_replicas=current
    )


def act(action: ActionKind, actor: str, target: str, *, dry_run: bool = False) -> ActionRequest:
    namespace, deployment = target.split("/")
    return ActionRequest(action, actor, namespace, deployment, dry_run=dry_run)


def policy_of(text: str, **kwargs: bool) -> Policy:
    return Policy.from_text(textwrap.dedent(text), display="policy.yaml", **kwargs)


def load_errors(text: str) -> list[str]:
    with pytest.raises(PolicyFileError) as info:
        policy_of(text)
    assert isinstance(info.value, ConfigError)
    assert str(info.value) == "\n".join(info.value.errors)
    return list(info.value.errors)


# ---------------------------------------------------------------------------------------------
# Loading


def test_the_example_policy_loads(example: Policy) -> None:
    assert example.configured
    assert [rule.name for rule in example.rules] == [
        "prod-rollback",
        "prod-oncall",
        "oncall-silence",
        "non-prod",
        "analysts-silence",
        "analysts-preview",
        "registry-models",
    ]
    assert example.usergroups() == {ONCALL, LEADS, MLENG, AIOPS}
    assert example.rules[0].line == 33  # where `- name: prod-rollback` is, for messages
    assert example.rules[1].cooldown == timedelta(minutes=10)
    assert example.rules[2].cooldown == timedelta(minutes=5)  # from defaults


def test_action_names_are_one_enum_for_the_whole_bot() -> None:
    assert [kind.value for kind in ActionKind] == [
        "rollback",
        "scale",
        "restart",
        "silence",
        "model_rollback",
    ]
    assert ActionKind("scale") is ActionKind.SCALE


def test_without_a_policy_file_every_action_is_refused_saying_how_to_allow_it() -> None:
    policy = Policy.load(None)
    assert not policy.configured
    for action in ActionKind:
        decision = decide(
            policy, ActionRequest(action, ALICE, "llm-prod", "vllm", replicas=2, model="churn-xgb")
        )
        assert not decision.allowed
        assert [r.kind for r in decision.refusals] == [RefusalKind.NO_POLICY]
        assert decision.message == NO_POLICY_MESSAGE
    assert "INCIDENT_BOT_POLICY_FILE" in NO_POLICY_MESSAGE
    assert "Guardrails" in NO_POLICY_MESSAGE


def test_a_policy_with_no_rules_refuses_everything_and_says_so() -> None:
    policy = policy_of("rules: []\n")
    decision = decide(policy, act(ActionKind.RESTART, ALICE, "llm-prod/vllm"))
    assert not decision.allowed
    assert decision.refusals[0].kind is RefusalKind.NO_RULES
    assert "policy.yaml has no rules" in decision.message


def test_load_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            # guardrails
            rules:
              - name: oncall
                actions: [scale]
                users: [U0123ABCD]
                namespaces: ["llm-*"]
                replicas:
                  min: 3
                  max: 2
            """
        )
    )
    with pytest.raises(PolicyFileError) as info:
        Policy.load(path)
    assert info.value.errors == (f"{path}:9: rules[0].replicas.max: must be >= min (3)",)


def test_an_unreadable_policy_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=rf"^{missing}: cannot read the policy file .*No such file"):
        Policy.load(missing)


RULE = """\
rules:
  - name: oncall
    actions: [rollback, scale]
    users: [U0123ABCD]
    namespaces: ["llm-*"]
    replicas: {min: 1, max: 8}
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            RULE.replace("namespaces:", "namespace:"),
            "policy.yaml:5: rules[0]: unknown key 'namespace'; did you mean 'namespaces'?",
            id="unknown-key-with-suggestion",
        ),
        pytest.param(
            RULE + "    approve: {required: 1}\n",
            "policy.yaml:7: rules[0]: unknown key 'approve'; did you mean 'approvers'?",
            id="unknown-key-approvers",
        ),
        pytest.param(
            RULE.replace("[rollback, scale]", "[rolback, scale]"),
            "policy.yaml:3: rules[0].actions[0]: unknown action 'rolback'; did you mean 'rollback'? "
            "(actions: rollback, scale, restart, silence, model_rollback)",
            id="unknown-action",
        ),
        pytest.param(
            RULE.replace("U0123ABCD", "alice"),
            "policy.yaml:4: rules[0].users[0]: 'alice' is not a Slack user ID (like U0123ABCD or W0123ABCD)",
            id="user-name-instead-of-id",
        ),
        pytest.param(
            RULE.replace("users: [U0123ABCD]", "users: [S0456EFGH]"),
            "policy.yaml:4: rules[0].users[0]: 'S0456EFGH' is a Slack user group ID: "
            "list it under usergroups",
            id="group-id-in-users",
        ),
        pytest.param(
            RULE.replace("users: [U0123ABCD]", "usergroups: ['@oncall']"),
            "policy.yaml:4: rules[0].usergroups[0]: '@oncall' is not a Slack user group ID (like S0456EFGH)",
            id="group-handle-instead-of-id",
        ),
        pytest.param(
            RULE.replace('["llm-*"]', '["LLM-*"]'),
            "policy.yaml:5: rules[0].namespaces[0]: pattern 'LLM-*' has capital letters",
            id="glob-uppercase",
        ),
        pytest.param(
            RULE.replace('["llm-*"]', '["llm-.*"]'),
            "policy.yaml:5: rules[0].namespaces[0]: pattern 'llm-.*' looks like a regular expression",
            id="glob-regex",
        ),
        pytest.param(
            RULE.replace('["llm-*"]', '["llm-[ab"]'),
            "policy.yaml:5: rules[0].namespaces[0]: pattern 'llm-[ab' has an unclosed or empty '[...]'",
            id="glob-bracket",
        ),
        pytest.param(
            RULE.replace('["llm-*"]', '["llm_prod"]'),
            "policy.yaml:5: rules[0].namespaces[0]: pattern 'llm_prod' has characters no Kubernetes "
            "namespace name contains",
            id="glob-bad-character",
        ),
        pytest.param(
            RULE + '    deployments: ["vllm *"]\n',
            "policy.yaml:7: rules[0].deployments[0]: pattern 'vllm *' contains whitespace",
            id="glob-whitespace",
        ),
        pytest.param(
            RULE.replace('["llm-*"]', "llm-*"),
            "policy.yaml:5: rules[0].namespaces: expected a list, e.g. [a, b], found str 'llm-*'",
            id="glob-not-a-list",
        ),
        pytest.param(
            RULE.replace('["llm-*"]', "[*]"),
            "policy.yaml:5: invalid YAML: while scanning an alias: expected alphabetic or numeric "
            "character, but found ']' (noticed at line 5, column 19); a value starting with '*' is a "
            "YAML alias: quote glob patterns",
            id="unquoted-star",
        ),
        pytest.param(
            RULE + "    users: [U0999ZZZZ]\n",
            "policy.yaml:7: duplicate key 'users' (first at line 4)",
            id="duplicate-key",
        ),
        pytest.param(
            RULE.replace("    replicas: {min: 1, max: 8}\n", ""),
            "policy.yaml:3: rules[0].actions: allows scale but has no replica bounds",
            id="scale-without-bounds",
        ),
        pytest.param(
            RULE.replace("[rollback, scale]", "[rollback]"),
            "policy.yaml:6: rules[0].replicas: replica bounds only apply to scale",
            id="bounds-without-scale",
        ),
        pytest.param(
            RULE.replace("{min: 1, max: 8}", "{min: -1, max: 8}"),
            "policy.yaml:6: rules[0].replicas.min: Input should be greater than or equal to 0",
            id="negative-min",
        ),
        pytest.param(
            RULE.replace("{min: 1, max: 8}", "{min: 1}"),
            "policy.yaml:6: rules[0].replicas: missing required key 'max'",
            id="bounds-without-max",
        ),
        pytest.param(
            RULE + "    max_silence_duration: 1h\n",
            "policy.yaml:7: rules[0].max_silence_duration: only applies to silence",
            id="silence-bound-without-silence",
        ),
        pytest.param(
            RULE.replace("[rollback, scale]", "[scale, silence]") + "    max_silence_duration: 60d\n",
            "policy.yaml:7: rules[0].max_silence_duration: is longer than the longest silence the bot "
            "creates (30d)",
            id="silence-bound-too-long",
        ),
        pytest.param(
            RULE + "    cooldown: 10 minutes\n",
            "policy.yaml:7: rules[0].cooldown: invalid duration '10 minutes': write it like 30s, 5m",
            id="cooldown-bad-duration",
        ),
        pytest.param(
            RULE + "    cooldown: 10\n",
            "policy.yaml:7: rules[0].cooldown: expected a duration with a unit, like 30s, 10m, 2h "
            "or 1d, found 10",
            id="cooldown-without-unit",
        ),
        pytest.param(
            RULE + "    confirm: maybe\n",
            "policy.yaml:7: rules[0].confirm: confirm must be true (ask before destructive actions), "
            "always or false, found 'maybe'",
            id="confirm-bad",
        ),
        pytest.param(
            RULE + "    dry_run: [restart]\n",
            "policy.yaml:7: rules[0].dry_run[0]: 'restart' is not among this rule's actions "
            "(rollback, scale)",
            id="dry-run-action-not-in-rule",
        ),
        pytest.param(
            RULE + "    approvers: {actions: [silence], users: [U0999ZZZZ]}\n",
            "policy.yaml:7: rules[0].approvers.actions[0]: 'silence' is not among this rule's actions",
            id="approval-action-not-in-rule",
        ),
        pytest.param(
            RULE + "    approvers: {required: 1}\n",
            "policy.yaml:7: rules[0].approvers: asks for 1 approval(s) by a user other than the requester, "
            "but without approvers.users/usergroups only the rule's 1 user(s) may approve",
            id="approval-impossible",
        ),
        pytest.param(
            RULE + "    approvers: {required: 2, users: [U0999ZZZZ]}\n",
            "policy.yaml:7: rules[0].approvers.required: asks for 2 approvals but names only 1 approver(s)",
            id="approvals-more-than-approvers",
        ),
        pytest.param(
            RULE + "    approvers: {required: 0, users: [U0999ZZZZ]}\n",
            "policy.yaml:7: rules[0].approvers.required: Input should be greater than or equal to 1",
            id="approvals-zero",
        ),
        pytest.param(
            RULE.replace("    users: [U0123ABCD]\n", ""),
            "policy.yaml:2: rules[0]: a rule needs users or usergroups: otherwise nobody may use it",
            id="rule-without-people",
        ),
        pytest.param(
            RULE + RULE.removeprefix("rules:\n"),
            "policy.yaml:7: rules[1].name: duplicate rule name 'oncall' (also rules[0])",
            id="duplicate-rule-name",
        ),
        pytest.param(
            RULE.replace('    namespaces: ["llm-*"]\n', ""),
            'policy.yaml:2: rules[0].namespaces: required for rollback, scale: add namespaces: ["..."]',
            id="missing-namespaces",
        ),
        pytest.param(
            RULE.replace("[rollback, scale]", "[]"),
            "policy.yaml:3: rules[0].actions: needs at least one entry",
            id="no-actions",
        ),
        pytest.param(
            "rules:\n  - rollback\n",
            "policy.yaml:2: rules[0]: expected a mapping (key: value), found str 'rollback'",
            id="rule-not-a-mapping",
        ),
        pytest.param(
            "defaults: {cooldown: 5m}\n",
            "policy.yaml:1: missing required key 'rules'",
            id="missing-rules",
        ),
        pytest.param(
            "rules: []\ndefaults: {cooldwn: 5m}\n",
            "policy.yaml:2: defaults: unknown key 'cooldwn'; did you mean 'cooldown'?",
            id="defaults-unknown-key",
        ),
        pytest.param("", "policy.yaml:1: the policy file is empty; it needs a 'rules:' list", id="empty"),
        pytest.param(
            "- actions: [rollback]\n",
            "policy.yaml:1: expected a mapping with 'rules:' (and optionally 'defaults:'), found a list",
            id="top-level-list",
        ),
    ],
)
def test_load_errors_name_the_line_and_the_path(text: str, expected: str) -> None:
    errors = load_errors(text)
    assert len(errors) == 1, errors
    assert errors[0].startswith(expected), errors[0]


def test_every_error_of_a_file_is_reported_at_once_in_line_order() -> None:
    errors = load_errors(
        """\
        rules:
          - actions: [rollback, reboot]
            users: [alice]
            namespaces: ["llm-*"]
            cooldown: soon
        """
    )
    assert [e.split(":")[1] for e in errors] == ["2", "3", "5"]
    assert "unknown action 'reboot'" in errors[0]


def test_enterprise_user_ids_and_unnamed_rules_are_fine() -> None:
    policy = policy_of(
        """\
        rules:
          - actions: [restart]
            users: [W0123ABCD]
            namespaces: ["*"]
        """
    )
    decision = decide(policy, act(ActionKind.RESTART, "W0123ABCD", "anything/at-all"))
    assert decision.allowed
    assert decision.rule is not None
    assert decision.rule.label == "rules[0]"


# ---------------------------------------------------------------------------------------------
# Requests


def test_requests_are_checked_before_the_policy_sees_them() -> None:
    with pytest.raises(PayloadError, match="scale needs a replica count"):
        ActionRequest(ActionKind.SCALE, ALICE, "llm-prod-eu", "vllm")
    with pytest.raises(PayloadError, match="rollback needs a namespace and a deployment"):
        ActionRequest(ActionKind.ROLLBACK, ALICE, "llm-prod-eu", None)
    with pytest.raises(PayloadError, match="unknown action 'reboot'"):
        ActionRequest("reboot", ALICE, "llm-prod-eu", "vllm")  # type: ignore[arg-type]
    assert ActionRequest("restart", ALICE, "a", "b").action is ActionKind.RESTART  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Allowed, and how it runs


def test_oncall_scales_production_within_bounds(example: Policy) -> None:
    up = decide(example, scale(ALICE, "llm-prod-eu/vllm-llama-3-70b", 6, current=4))
    assert up.allowed
    assert up.rule is not None
    assert up.rule.name == "prod-oncall"
    assert not up.confirm  # a scale-up takes nothing away
    assert not up.dry_run
    assert up.approvals is None
    assert up.approvals_required == 0
    assert up.cooldown == timedelta(minutes=10)
    assert up.message == "scale on llm-prod-eu/vllm-llama-3-70b allowed by rule 'prod-oncall'"
    up.raise_if_refused()

    down = decide(example, scale(ALICE, "llm-prod-eu/vllm-llama-3-70b", 2, current=4))
    assert down.allowed
    assert down.confirm
    unknown = decide(example, scale(ALICE, "llm-prod-eu/vllm-llama-3-70b", 5, current=None))
    assert unknown.allowed
    assert unknown.confirm


def test_restart_and_rollback_ask_for_confirmation(example: Policy) -> None:
    restart = decide(example, act(ActionKind.RESTART, BOB, "llm-prod-us/triton-embeddings"))
    assert restart.allowed
    assert restart.confirm
    assert restart.message.endswith("asks for confirmation")


def test_confirm_false_and_always() -> None:
    policy = policy_of(
        """\
        rules:
          - name: careful
            actions: [scale, silence]
            users: [U0ALICE01]
            namespaces: ["llm-*"]
            replicas: {min: 1, max: 8}
            confirm: always
          - name: relaxed
            actions: [restart]
            users: [U0ALICE01]
            namespaces: ["llm-*"]
            confirm: false
        """
    )
    assert decide(policy, scale(ALICE, "llm-prod/vllm", 5, current=2)).confirm
    silence = ActionRequest.for_silence(ALICE, {"namespace": "llm-prod", "alertname": "X"})
    assert decide(policy, silence).confirm
    assert not decide(policy, act(ActionKind.RESTART, ALICE, "llm-prod/vllm")).confirm


def test_production_rollback_needs_a_second_approver(example: Policy) -> None:
    decision = decide(example, act(ActionKind.ROLLBACK, ALICE, "llm-prod-eu/vllm-llama-3-70b"))
    assert decision.allowed
    assert decision.rule is not None
    assert decision.rule.name == "prod-rollback"
    assert decision.confirm
    assert decision.approvals_required == 1
    assert decision.approvals is not None
    assert decision.approvals.usergroups == {ONCALL, LEADS}
    assert decision.cooldown == timedelta(minutes=15)
    assert decision.message.endswith(
        "needs 1 approval from a member of S04LLMONCALL or a member of S04MLPLATLEADS, "
        "other than the requester"
    )

    assert can_approve(decision, BOB, GROUPS[BOB], ALICE) == (
        True,
        f"{BOB} may approve rollback on llm-prod-eu/vllm-llama-3-70b (member of S04LLMONCALL, "
        "named by rule 'prod-rollback')",
    )
    assert can_approve(decision, CAROL, GROUPS[CAROL])[0]  # a lead; requester from the decision
    ok, why = can_approve(decision, ALICE, GROUPS[ALICE], ALICE)
    assert not ok
    assert why == (
        f"{ALICE} asked for rollback on llm-prod-eu/vllm-llama-3-70b and cannot approve it; "
        "another permitted user must"
    )
    ok, why = can_approve(decision, DANA, GROUPS[DANA], ALICE)
    assert not ok
    assert why.startswith(
        f"{DANA} may not approve rollback on llm-prod-eu/vllm-llama-3-70b: rule 'prod-rollback' needs"
    )
    ok, why = can_approve(decision, BOB, GROUPS[BOB], ALICE, already_approved={BOB})
    assert not ok
    assert "already approved" in why


def test_approvers_default_to_the_rules_own_people() -> None:
    policy = policy_of(
        """\
        rules:
          - name: pair
            actions: [restart]
            users: [U0ALICE01, U0BOB0002]
            namespaces: ["llm-*"]
            approvers: {}
        """
    )
    decision = decide(policy, act(ActionKind.RESTART, ALICE, "llm-prod/vllm"))
    assert decision.approvals is not None
    assert decision.approvals.users == {ALICE, BOB}
    assert can_approve(decision, BOB, frozenset())[0]
    assert not can_approve(decision, ALICE, frozenset())[0]
    assert not can_approve(decision, CAROL, frozenset())[0]


def test_approvals_can_be_limited_to_some_actions() -> None:
    policy = policy_of(
        """\
        rules:
          - actions: [rollback, restart]
            usergroups: [S04LLMONCALL]
            namespaces: ["llm-*"]
            approvers: {actions: [rollback]}
        """
    )
    assert decide(policy, act(ActionKind.ROLLBACK, ALICE, "llm-prod/vllm")).approvals_required == 1
    restart = decide(policy, act(ActionKind.RESTART, ALICE, "llm-prod/vllm"))
    assert restart.allowed
    assert restart.approvals is None
    assert can_approve(restart, BOB, GROUPS[BOB]) == (False, "restart on llm-prod/vllm needs no approval")


def test_nothing_to_approve_when_refused(example: Policy) -> None:
    refused = decide(example, act(ActionKind.ROLLBACK, NOBODY, "llm-prod-eu/vllm"))
    assert can_approve(refused, BOB, GROUPS[BOB]) == (
        False,
        "nothing to approve: rollback on llm-prod-eu/vllm was not allowed",
    )


def test_analysts_only_preview_rollbacks_as_dry_runs(example: Policy) -> None:
    decision = decide(example, act(ActionKind.ROLLBACK, DANA, "llm-prod-eu/vllm-llama-3-70b"))
    assert decision.allowed
    assert decision.rule is not None
    assert decision.rule.name == "analysts-preview"
    assert decision.dry_run
    assert decision.dry_run_reason == "rule 'analysts-preview' only dry-runs rollback"
    assert not decision.confirm  # a dry run changes nothing: nothing to confirm or approve
    assert decision.approvals is None
    assert "dry run (rule 'analysts-preview' only dry-runs rollback)" in decision.message


def test_dry_runs_skip_the_cooldown_and_approvals(example: Policy) -> None:
    just_now = NOW - timedelta(minutes=1)
    asked = decide(example, act(ActionKind.ROLLBACK, ALICE, "llm-prod-eu/vllm", dry_run=True), last=just_now)
    assert asked.allowed
    assert asked.dry_run
    assert asked.dry_run_reason == "asked for by the requester"
    assert asked.approvals is None
    assert not asked.confirm
    assert asked.cooldown == timedelta(0)

    globally = Policy.load(EXAMPLE, dry_run=True)
    forced = decide(globally, act(ActionKind.ROLLBACK, ALICE, "llm-prod-eu/vllm"), last=just_now)
    assert forced.allowed
    assert forced.dry_run
    assert forced.dry_run_reason == "INCIDENT_BOT_DRY_RUN is set"


def test_dry_run_does_not_widen_what_is_allowed(example: Policy) -> None:
    decision = decide(example, act(ActionKind.RESTART, NOBODY, "llm-prod-eu/vllm", dry_run=True))
    assert not decision.allowed
    too_many = ActionRequest(ActionKind.SCALE, ALICE, "llm-prod-eu", "vllm", replicas=20, dry_run=True)
    assert not decide(example, too_many).allowed


def test_the_first_allowing_rule_decides_how_it_runs(example: Policy) -> None:
    # Someone who is both on-call and analyst: prod-rollback comes first, so a real rollback
    # with an approval, not analysts-preview's dry run.
    both = frozenset({ONCALL, AIOPS})
    decision = decide(example, act(ActionKind.ROLLBACK, ALICE, "llm-prod-eu/vllm"), groups=both)
    assert decision.rule is not None
    assert decision.rule.name == "prod-rollback"
    assert not decision.dry_run
    assert decision.approvals_required == 1
    assert decision.matched_rules == ("rule 'prod-rollback'", "rule 'analysts-preview'")


def test_grants_add_up_so_a_wider_rule_allows_what_a_narrower_one_does_not() -> None:
    policy = policy_of(
        """\
        rules:
          - name: small
            actions: [scale]
            users: [U0ALICE01]
            namespaces: ["llm-*"]
            replicas: {min: 1, max: 4}
          - name: big
            actions: [scale]
            usergroups: [S04LLMONCALL]
            namespaces: ["llm-prod"]
            replicas: {min: 1, max: 8}
        """
    )
    assert decide(policy, scale(ALICE, "llm-prod/vllm", 3)).rule.name == "small"  # type: ignore[union-attr]
    assert decide(policy, scale(ALICE, "llm-prod/vllm", 6)).rule.name == "big"  # type: ignore[union-attr]
    refused = decide(policy, scale(ALICE, "llm-prod/vllm", 9))
    assert [r.kind for r in refused.refusals] == [RefusalKind.REPLICAS_ABOVE_MAX] * 2


def test_oncall_silences_alerts_without_a_deployment(example: Policy) -> None:
    labels = {"alertname": "GPUXidErrors", "namespace": "llm-prod-eu", "hostname": "gpu-node-7"}
    decision = decide(example, ActionRequest.for_silence(ALICE, labels, duration=timedelta(hours=2)))
    assert decision.allowed
    assert decision.rule is not None
    assert decision.rule.name == "oncall-silence"
    assert decision.cooldown == timedelta(0)  # silences have none
    assert decision.request.target == "llm-prod-eu"


def test_silences_ignore_the_cooldown(example: Policy) -> None:
    labels = {"namespace": "llm-prod-eu", "deployment": "vllm"}
    request = ActionRequest.for_silence(ALICE, labels, duration=timedelta(hours=1))
    assert decide(example, request, last=NOW - timedelta(seconds=5)).allowed


# ---------------------------------------------------------------------------------------------
# Every kind of refusal


def test_refused_user_who_is_in_no_rule(example: Policy) -> None:
    decision = decide(example, act(ActionKind.RESTART, NOBODY, "llm-prod-eu/vllm"))
    assert not decision.allowed
    assert [r.kind for r in decision.refusals] == [RefusalKind.USER]
    assert decision.message == (
        f"{NOBODY} may not run restart: no policy rule names {NOBODY} or a user group of theirs "
        "(they are in none of the user groups the policy names)"
    )
    with pytest.raises(PolicyDenied) as info:
        decision.raise_if_refused()
    assert info.value.code == "E400"
    assert str(info.value) == decision.message


def test_refused_action_the_user_may_not_run(example: Policy) -> None:
    decision = decide(example, scale(DANA, "llm-prod-eu/vllm", 4))
    assert [r.kind for r in decision.refusals] == [RefusalKind.ACTION]
    assert decision.message == (
        f"{DANA} may not run scale: the policy lets {DANA} run only rollback, restart, silence "
        "(rule 'analysts-silence', rule 'analysts-preview')"
    )


def test_refused_namespace_names_the_rules_that_came_closest(example: Policy) -> None:
    decision = decide(example, act(ActionKind.RESTART, ALICE, "ml-batch/vllm-llama"))
    assert [r.kind for r in decision.refusals] == [RefusalKind.NAMESPACE] * 2
    assert decision.refusals[0].message == (
        "not allowed: rule 'prod-oncall' allows restart only in namespaces llm-prod-*; "
        "ml-batch is not one of them"
    )
    assert decision.refusals[1].rule == "rule 'non-prod'"
    assert decision.message.count("\n") == 1


def test_refused_deployment(example: Policy) -> None:
    decision = decide(example, act(ActionKind.RESTART, ALICE, "llm-prod-eu/redis-cache"))
    assert [r.kind for r in decision.refusals] == [RefusalKind.DEPLOYMENT]
    assert decision.message == (
        "not allowed: rule 'prod-oncall' allows restart only on deployments vllm-*, triton-*, "
        "*-predictor; redis-cache is not one of them"
    )


def test_refused_silence_of_an_alert_without_a_namespace(example: Policy) -> None:
    request = ActionRequest.for_silence(DANA, {"alertname": "NodeDown"}, duration=timedelta(hours=1))
    decision = decide(example, request)
    assert [r.kind for r in decision.refusals] == [RefusalKind.NAMESPACE]
    assert decision.message == (
        "not allowed: rule 'analysts-silence' allows silence only in namespaces llm-*; "
        "the alert has no namespace label, which only the pattern '*' matches"
    )


def test_refused_scale_above_the_maximum(example: Policy) -> None:
    decision = decide(example, scale(ALICE, "llm-prod-eu/vllm-llama", 20))
    assert [r.kind for r in decision.refusals] == [RefusalKind.REPLICAS_ABOVE_MAX]
    assert decision.message == (
        "scale to 20 is above the maximum of 8 for llm-prod-eu/vllm-llama "
        "(rule 'prod-oncall' allows 2 to 8 replicas)"
    )


def test_refused_scale_below_the_minimum(example: Policy) -> None:
    decision = decide(example, scale(ALICE, "llm-prod-us/vllm-llama", 1))
    assert [r.kind for r in decision.refusals] == [RefusalKind.REPLICAS_BELOW_MIN]
    assert decision.message == (
        "scale to 1 is below the minimum of 2 for llm-prod-us/vllm-llama "
        "(rule 'prod-oncall' allows 2 to 8 replicas)"
    )
    # Scale to zero is fine where the policy allows it: staging frees GPUs at night.
    assert decide(example, scale(ERIN, "llm-staging/vllm-llama", 0)).allowed


def test_refused_silence_longer_than_allowed(example: Policy) -> None:
    labels = {"namespace": "llm-prod-eu", "deployment": "vllm", "alertname": "ModelDrift"}
    decision = decide(example, ActionRequest.for_silence(DANA, labels, duration=timedelta(hours=6)))
    assert [r.kind for r in decision.refusals] == [RefusalKind.SILENCE_TOO_LONG]
    assert decision.message == (
        "silence for 6h is longer than the maximum of 4h for llm-prod-eu/vllm (rule 'analysts-silence')"
    )
    assert decide(example, ActionRequest.for_silence(DANA, labels, duration=timedelta(hours=4))).allowed


def test_refused_during_the_cooldown(example: Policy) -> None:
    request = act(ActionKind.RESTART, ALICE, "llm-prod-eu/vllm-llama")
    decision = decide(example, request, last=NOW - timedelta(minutes=3))
    assert [r.kind for r in decision.refusals] == [RefusalKind.COOLDOWN]
    assert decision.message == (
        "cooldown: last restart on llm-prod-eu/vllm-llama was 3m ago, wait 7m "
        "(rule 'prod-oncall' asks for 10m between restarts of the same deployment)"
    )
    assert decision.cooldown == timedelta(minutes=10)
    assert decide(example, request, last=NOW - timedelta(minutes=10)).allowed
    assert decide(example, request, last=None).allowed


def test_cooldown_rounds_for_humans_and_reads_naive_times_as_utc(example: Policy) -> None:
    request = act(ActionKind.RESTART, ALICE, "llm-prod-eu/vllm-llama")
    naive = (NOW - timedelta(minutes=2, seconds=30, milliseconds=400)).replace(tzinfo=None)
    decision = decide(example, request, last=naive)
    assert "was 2m30s ago, wait 7m30s" in decision.message
    future = decide(example, request, last=NOW + timedelta(minutes=1))  # clock skew
    assert "was 0s ago, wait 10m" in future.message


def test_the_longest_cooldown_of_all_matching_rules_applies() -> None:
    policy = policy_of(
        """\
        rules:
          - name: quick
            actions: [restart]
            users: [U0ALICE01]
            namespaces: ["llm-*"]
            cooldown: 1m
          - name: careful
            actions: [restart]
            usergroups: [S04LLMONCALL]
            namespaces: ["llm-prod"]
            cooldown: 30m
          - name: no-cooldown
            actions: [restart]
            users: [U0BOB0002]
            namespaces: ["llm-*"]
            cooldown: 0s
        """
    )
    request = act(ActionKind.RESTART, ALICE, "llm-prod/vllm")
    decision = decide(policy, request, last=NOW - timedelta(minutes=10))
    assert not decision.allowed
    assert decision.refusals[0].rule == "rule 'careful'"
    assert "wait 20m" in decision.message
    # Not on-call: only 'quick' matches.
    assert decide(policy, request, last=NOW - timedelta(minutes=10), groups=frozenset()).allowed
    assert decide(policy, act(ActionKind.RESTART, BOB, "llm-dev/vllm"), last=NOW, groups=frozenset()).allowed


def test_long_lists_of_close_rules_are_cut() -> None:
    rules = "".join(
        f"  - name: team-{i}\n    actions: [restart]\n    users: [U0ALICE01]\n    namespaces: [team-{i}-*]\n"
        for i in range(5)
    )
    policy = policy_of("rules:\n" + rules)
    decision = decide(policy, act(ActionKind.RESTART, ALICE, "llm-prod/vllm"), groups=frozenset())
    assert len(decision.refusals) == 3
    assert decision.refusals[-1].message.endswith("(and 2 more rule(s) like it)")
