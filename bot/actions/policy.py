"""Guardrails for remediation from Slack: who may run which action, where, within which limits.

The policy is a YAML file (`INCIDENT_BOT_POLICY_FILE`), validated when the bot starts so a
mistake stops `serve` with `file:line: path: message` instead of surfacing at 3 a.m.:

    defaults: {cooldown: 5m, confirm: true, dry_run: false}
    rules:
      - name: prod-rollback                  # optional, shown in refusals and the audit trail
        actions: [rollback]                  # rollback, scale, restart, silence
        usergroups: [S0456EFGH]              # Slack user group IDs ...
        users: [U0123ABCD]                   # ... and/or Slack user IDs (U... or W...)
        namespaces: ["llm-prod-*"]           # glob patterns (case-sensitive fnmatch)
        deployments: ["*"]                   # glob patterns; default ["*"]
        cooldown: 15m                        # between two actions of one kind on one deployment
        approvers: {required: 1, usergroups: [S0456EFGH]}
      - name: llm-oncall
        actions: [rollback, scale, restart, silence]
        usergroups: [S0456EFGH]
        namespaces: ["llm-*"]
        replicas: {min: 1, max: 8}           # required when the rule allows scale
        max_silence_duration: 1d             # optional bound for silence
        confirm: true                        # true | false | always
        dry_run: false                       # true, false or a list of actions

How a request is decided (`Policy.decide`):

* **Grants.** A rule *matches* a request when it names the requester (user ID, or one of
  their user groups), the action, the namespace and the deployment. It *allows* the request
  when, in addition, the request is within its limits (`replicas`, `max_silence_duration`).
  As DESIGN.md says, a request is allowed when some rule allows it: grants add up, like
  Kubernetes RBAC, so a narrower rule cannot take away what a broader rule grants.
* **The first allowing rule decides how it runs.** Rules are read top to bottom, and the
  first rule that allows the request supplies `confirm`, `dry_run` and `approvers`
  (`Decision.rule`). Put stricter rules first: a `prod-rollback` rule with approvers above
  a broad on-call rule makes every production rollback by on-call wait for an approval.
* **The cooldown protects the target**, not a grant: it is the longest `cooldown` of all
  rules that match the request (the first of them names it), so falling through to a later
  rule never shortens it. It counts per target *and action kind*: the caller passes when
  the last real (not dry-run) action of the same kind on the same namespace/deployment ran.
  A rollback straight after a scale-up is a normal incident response; two rollbacks or two
  restarts within minutes are the churn a cooldown is for. `cooldown: 0s` turns it off.
* **Dry runs** (global `INCIDENT_BOT_DRY_RUN`, the requester's own wish, or the allowing
  rule's `dry_run`, which defaults to `defaults.dry_run`) change nothing, so they skip the
  cooldown, confirmation and approvals; the grant and limit checks still apply.
* **Confirmation** (`confirm: true`, the default) is asked for destructive actions: rollback,
  restart and a scale-down (or a scale whose current replica count is unknown). `always`
  also asks for scale-ups and silences; `false` never asks.
* **Approvals**: `approvers.required` distinct users other than the requester must approve.
  Without `users`/`usergroups`, the rule's own users and user groups may approve.
  `approvers.actions` limits approval to some of the rule's actions (default: all of them).
* **Silences** have no deployment: the namespace and deployment are the alert's `namespace`
  and `deployment` labels (`ActionRequest.for_silence`). A missing label is the empty
  string, which only the pattern `*` matches, so a rule scoped to `llm-*` never lets anyone
  silence an alert that carries no namespace. Silences have no cooldown.
* **Model rollbacks** (`model_rollback`) are scoped by `models` instead of namespaces and
  deployments; the restarts of the serving Deployments that follow one are each decided as
  `restart` on their namespace/deployment (bot/flows/model_restarts.py combines the decisions).
* **No policy file**: every action is refused with a message that says how to allow it.

Everything here is pure: the caller resolves the requester's user groups (Slack
`usergroups.users.list` for the IDs in `Policy.usergroups()`), reads the time of the last
action, and acts on the `Decision`. Only `Policy.load` touches the file system.
"""

from __future__ import annotations

import difflib
import fnmatch
import logging
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from bot.actions.silence_durations import MAX_SILENCE_DURATION
from bot.configfile import Loc, compose_yaml, describe_kind, format_loc, validation_errors
from bot.durations import format_duration, parse_duration
from bot.errors import ConfigError, PayloadError, PolicyDenied

__all__ = [
    "NO_POLICY_MESSAGE",
    "WORKLOAD_ACTIONS",
    "ActionKind",
    "ActionRequest",
    "Approvals",
    "ApproversSpec",
    "Decision",
    "DefaultsSpec",
    "Policy",
    "PolicyFile",
    "PolicyFileError",
    "Refusal",
    "RefusalKind",
    "ReplicaBounds",
    "Rule",
    "RuleSpec",
    "can_approve",
]

logger = logging.getLogger(__name__)

NO_POLICY_MESSAGE = (
    "No policy allows actions: set INCIDENT_BOT_POLICY_FILE to a policy file (see README, 'Guardrails')"
)
_MAX_LISTED_REFUSALS = 3


class ActionKind(StrEnum):
    """The actions responders can run from Slack; the one list the whole bot uses."""

    ROLLBACK = "rollback"
    SCALE = "scale"
    RESTART = "restart"
    SILENCE = "silence"
    MODEL_ROLLBACK = "model_rollback"  # moves an MLflow registry alias back; scoped by `models`


WORKLOAD_ACTIONS = frozenset({ActionKind.ROLLBACK, ActionKind.SCALE, ActionKind.RESTART})
_ACTION_ORDER = {kind: i for i, kind in enumerate(ActionKind)}
_PLURAL = {
    ActionKind.ROLLBACK: "rollbacks",
    ActionKind.SCALE: "scales",
    ActionKind.RESTART: "restarts",
    ActionKind.SILENCE: "silences",
    ActionKind.MODEL_ROLLBACK: "model rollbacks",
}
# Actions with a cooldown and a target lock: those that change a running system.
_COOLED_ACTIONS = WORKLOAD_ACTIONS | {ActionKind.MODEL_ROLLBACK}

Confirm = bool | Literal["always"]


# ---------------------------------------------------------------------------------------------
# Field types: each check names the bad value and says what a good one looks like.

_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
_USERGROUP_ID = re.compile(r"^S[A-Z0-9]{2,}$")
_NAMESPACE_GLOB = re.compile(r"^[a-z0-9\-*?\[\]!]+$")
_DEPLOYMENT_GLOB = re.compile(r"^[a-z0-9.\-*?\[\]!]+$")
_REGEX_HINTS = (".*", ".+", "^", "$", "(", ")", "|", "\\", "+", "{")


def _user_id(value: str) -> str:
    if _USER_ID.match(value):
        return value
    if _USERGROUP_ID.match(value):
        raise ValueError(f"{value!r} is a Slack user group ID: list it under usergroups")
    raise ValueError(
        f"{value!r} is not a Slack user ID (like U0123ABCD or W0123ABCD); names can change, IDs "
        "cannot: copy it from the user's profile ('Copy member ID')"
    )


def _usergroup_id(value: str) -> str:
    if _USERGROUP_ID.match(value):
        return value
    if _USER_ID.match(value):
        raise ValueError(f"{value!r} is a Slack user ID: list it under users")
    raise ValueError(
        f"{value!r} is not a Slack user group ID (like S0456EFGH); handles like @oncall can change, "
        "IDs cannot: find it with usergroups.list or in the group's page"
    )


def _glob(kind: str, allowed: re.Pattern[str], chars: str) -> Any:
    def check(value: str) -> str:
        if not value:
            raise ValueError("empty pattern: use '*' for any")
        if value != value.strip() or any(ch.isspace() for ch in value):
            raise ValueError(f"pattern {value!r} contains whitespace")
        if any(ch.isupper() for ch in value):
            raise ValueError(
                f"pattern {value!r} has capital letters: Kubernetes {kind} names are lowercase and "
                "patterns are case-sensitive, so it would never match"
            )
        if any(hint in value for hint in _REGEX_HINTS):
            raise ValueError(
                f"pattern {value!r} looks like a regular expression; patterns are globs: '*' matches "
                "any run of characters and '?' one character, e.g. 'llm-*'"
            )
        if not allowed.match(value):
            raise ValueError(
                f"pattern {value!r} has characters no Kubernetes {kind} name contains "
                f"(names use {chars}; patterns add * ? [ ])"
            )
        if not _brackets_balanced(value):
            raise ValueError(f"pattern {value!r} has an unclosed or empty '[...]' character class")
        if len(value) > 253:
            raise ValueError(f"pattern {value[:40]!r}... is longer than any Kubernetes name")
        return value

    return check


def _brackets_balanced(value: str) -> bool:
    i = 0
    while i < len(value):
        if value[i] == "]":
            return False
        if value[i] == "[":
            end = value.find("]", i + 1)
            inner = value[i + 1 : end] if end != -1 else ""
            if end == -1 or not inner.lstrip("!") or "[" in inner:
                return False
            i = end
        i += 1
    return True


def _action_name(value: Any) -> ActionKind:
    if isinstance(value, ActionKind):
        return value
    names = [kind.value for kind in ActionKind]
    if not isinstance(value, str):
        raise ValueError(f"expected an action name ({', '.join(names)}), found {value!r}")
    try:
        return ActionKind(value)
    except ValueError:
        close = difflib.get_close_matches(value, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown action {value!r}{hint} (actions: {', '.join(names)})") from None


def _duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if value == 0 and not isinstance(value, bool):
        return timedelta(0)
    if not isinstance(value, str):
        raise ValueError(f"expected a duration with a unit, like 30s, 10m, 2h or 1d, found {value!r}")
    return parse_duration(value.strip())


def _confirm(value: Any) -> Confirm:
    if isinstance(value, bool) or value == "always":
        return value
    raise ValueError(
        f"confirm must be true (ask before destructive actions), always or false, found {value!r}"
    )


def _dry_run(value: Any) -> bool | tuple[ActionKind, ...]:
    if isinstance(value, bool):
        return value
    if isinstance(value, list | tuple):
        return tuple(_action_name(item) for item in value)
    raise ValueError(f"dry_run must be true, false or a list of actions, found {value!r}")


UserId = Annotated[str, AfterValidator(_user_id)]
UserGroupId = Annotated[str, AfterValidator(_usergroup_id)]
NamespaceGlob = Annotated[
    str, AfterValidator(_glob("namespace", _NAMESPACE_GLOB, "lowercase letters, digits and '-'"))
]
DeploymentGlob = Annotated[
    str, AfterValidator(_glob("deployment", _DEPLOYMENT_GLOB, "lowercase letters, digits, '-' and '.'"))
]
ActionName = Annotated[ActionKind, BeforeValidator(_action_name)]
# Registered model names (MLflow allows most characters); globs, case-sensitive.
ModelGlob = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9_.\-/*?\[\]!]+$")]
Duration = Annotated[timedelta, BeforeValidator(_duration)]
ConfirmSetting = Annotated[Confirm, BeforeValidator(_confirm)]
DryRunSetting = Annotated[bool | tuple[ActionKind, ...], BeforeValidator(_dry_run)]


# ---------------------------------------------------------------------------------------------
# The file, as pydantic models (shape and per-value checks; cross-field checks follow)


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReplicaBounds(_Spec):
    """Bounds for `scale`: the target replica count must lie within [min, max]."""

    min: int = Field(1, ge=0)
    max: int = Field(ge=0)

    def contains(self, replicas: int) -> bool:
        return self.min <= replicas <= self.max


class ApproversSpec(_Spec):
    """A second pair of eyes: `required` distinct approvers other than the requester."""

    required: int = Field(1, ge=1, le=5)
    users: tuple[UserId, ...] = ()
    usergroups: tuple[UserGroupId, ...] = ()
    actions: tuple[ActionName, ...] | None = None


class DefaultsSpec(_Spec):
    cooldown: Duration = timedelta(minutes=5)
    confirm: ConfirmSetting = True
    dry_run: bool = False
    max_silence_duration: Duration | None = None


class RuleSpec(_Spec):
    name: str | None = Field(None, min_length=1, max_length=80)
    actions: tuple[ActionName, ...] = Field(min_length=1)
    users: tuple[UserId, ...] = ()
    usergroups: tuple[UserGroupId, ...] = ()
    # Required by every action but model_rollback (checked below); model_rollback needs `models`.
    namespaces: tuple[NamespaceGlob, ...] | None = Field(None, min_length=1)
    deployments: tuple[DeploymentGlob, ...] = Field(("*",), min_length=1)
    models: tuple[ModelGlob, ...] | None = Field(None, min_length=1)
    replicas: ReplicaBounds | None = None
    max_silence_duration: Duration | None = None
    cooldown: Duration | None = None
    confirm: ConfirmSetting | None = None
    dry_run: DryRunSetting | None = None
    approvers: ApproversSpec | None = None


class PolicyFile(_Spec):
    rules: tuple[RuleSpec, ...]
    defaults: DefaultsSpec = DefaultsSpec()


# ---------------------------------------------------------------------------------------------
# The loaded policy


@dataclass(frozen=True)
class Approvals:
    """Who must approve before an action runs; `users`/`usergroups` may approve."""

    required: int
    users: frozenset[str]
    usergroups: frozenset[str]
    actions: frozenset[ActionKind]
    rule: str  # label of the rule that asks for it

    def describe(self) -> str:
        """'1 approval from U1, U2 or a member of S1, other than the requester'."""
        who = sorted(self.users) + [f"a member of {group}" for group in sorted(self.usergroups)]
        listed = ", ".join(who[:-1]) + f" or {who[-1]}" if len(who) > 1 else (who[0] if who else "nobody")
        count = "1 approval" if self.required == 1 else f"{self.required} approvals"
        return f"{count} from {listed}, other than the requester"


@dataclass(frozen=True)
class Rule:
    """One rule with the file's defaults filled in."""

    index: int
    name: str | None
    actions: frozenset[ActionKind]
    users: frozenset[str]
    usergroups: frozenset[str]
    namespaces: tuple[str, ...]
    deployments: tuple[str, ...]
    replicas: ReplicaBounds | None
    max_silence_duration: timedelta | None
    cooldown: timedelta
    confirm: Confirm
    dry_run: frozenset[ActionKind]  # the actions this rule only dry-runs
    approvals: Approvals | None
    line: int | None = None
    models: tuple[str, ...] = ()  # registered model globs, for model_rollback

    @property
    def label(self) -> str:
        """How messages name the rule: `rule 'llm-oncall'`, or `rules[2]` when unnamed."""
        return f"rule {self.name!r}" if self.name else f"rules[{self.index}]"

    def names(self, actor: str, groups: frozenset[str]) -> bool:
        return actor in self.users or bool(self.usergroups & groups)


@dataclass(frozen=True)
class ActionRequest:
    """What a responder asks for. Workload actions need a namespace and a deployment; scale
    needs `replicas` (and `current_replicas` to tell a scale-down, which asks for confirmation);
    silence takes its namespace/deployment from the alert's labels and may carry a `duration`."""

    action: ActionKind
    actor: str
    namespace: str | None
    deployment: str | None
    replicas: int | None = None
    current_replicas: int | None = None
    duration: timedelta | None = None
    dry_run: bool = False  # the requester asked only to see the change
    model: str | None = None  # model_rollback: "churn-xgb@champion" is model "churn-xgb"
    alias: str | None = None

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "action", ActionKind(self.action))
        except ValueError:
            names = ", ".join(kind.value for kind in ActionKind)
            raise PayloadError(f"unknown action {self.action!r} (actions: {names})") from None
        if not self.actor:
            raise PayloadError(f"a {self.action} request needs the Slack user ID of who asks")
        if self.action in WORKLOAD_ACTIONS and not (self.namespace and self.deployment):
            raise PayloadError(f"{self.action} needs a namespace and a deployment (<namespace>/<deployment>)")
        if self.action is ActionKind.MODEL_ROLLBACK and not self.model:
            raise PayloadError("model_rollback needs a registered model name (NAME[@ALIAS])")
        if self.action is ActionKind.SCALE and (
            not isinstance(self.replicas, int) or isinstance(self.replicas, bool) or self.replicas < 0
        ):
            raise PayloadError(f"scale needs a replica count, a whole number >= 0, got {self.replicas!r}")

    @classmethod
    def for_silence(
        cls,
        actor: str,
        labels: Mapping[str, str],
        *,
        duration: timedelta | None = None,
        dry_run: bool = False,
    ) -> ActionRequest:
        """A silence request scoped by the alert's `namespace` and `deployment` labels."""
        return cls(
            ActionKind.SILENCE,
            actor,
            labels.get("namespace") or None,
            labels.get("deployment") or None,
            duration=duration,
            dry_run=dry_run,
        )

    @property
    def target(self) -> str:
        """'llm-prod/vllm-llama', or for a silence whatever of the two labels the alert has."""
        if self.action is ActionKind.MODEL_ROLLBACK:
            return f"{self.model}@{self.alias}" if self.alias else str(self.model)
        if self.namespace and self.deployment:
            return f"{self.namespace}/{self.deployment}"
        return self.namespace or self.deployment or "(no namespace)"

    @property
    def destructive(self) -> bool:
        """Takes capacity away or replaces pods: asks for confirmation under `confirm: true`."""
        if self.action is ActionKind.SCALE:
            assert self.replicas is not None
            return self.current_replicas is None or self.replicas < self.current_replicas
        return self.action in (ActionKind.ROLLBACK, ActionKind.RESTART, ActionKind.MODEL_ROLLBACK)


class RefusalKind(StrEnum):
    NO_POLICY = "no_policy"
    NO_RULES = "no_rules"
    USER = "user"
    ACTION = "action"
    NAMESPACE = "namespace"
    DEPLOYMENT = "deployment"
    REPLICAS_BELOW_MIN = "replicas_below_min"
    REPLICAS_ABOVE_MAX = "replicas_above_max"
    SILENCE_TOO_LONG = "silence_too_long"
    COOLDOWN = "cooldown"


@dataclass(frozen=True)
class Refusal:
    kind: RefusalKind
    message: str
    rule: str | None = None  # label of the rule the reason comes from, if one


@dataclass(frozen=True)
class Decision:
    """The policy's answer. When allowed: the first allowing `rule`, and what the caller must
    do before running it (`confirm`, `approvals`) and how (`dry_run`). When refused: the
    closest `refusals`, every one a sentence a responder can act on."""

    request: ActionRequest
    allowed: bool
    rule: Rule | None = None
    refusals: tuple[Refusal, ...] = ()
    confirm: bool = False
    dry_run: bool = False
    dry_run_reason: str | None = None
    approvals: Approvals | None = None
    cooldown: timedelta = timedelta(0)  # the cooldown that was applied (0: none)
    matched_rules: tuple[str, ...] = ()  # labels of every rule that matched the request

    @property
    def approvals_required(self) -> int:
        return self.approvals.required if self.approvals else 0

    @property
    def message(self) -> str:
        if not self.allowed:
            return "\n".join(refusal.message for refusal in self.refusals)
        assert self.rule is not None
        parts = [f"{self.request.action} on {self.request.target} allowed by {self.rule.label}"]
        if self.dry_run:
            parts.append(f"dry run ({self.dry_run_reason})")
        if self.confirm:
            parts.append("asks for confirmation")
        if self.approvals:
            parts.append(f"needs {self.approvals.describe()}")
        return "; ".join(parts)

    def raise_if_refused(self) -> None:
        if not self.allowed:
            raise PolicyDenied(self.message)


class PolicyFileError(ConfigError):
    """The policy file is unreadable or invalid; `errors` lists every `file:line: message`."""

    def __init__(self, errors: Sequence[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = tuple(errors)


@dataclass(frozen=True)
class Policy:
    """The loaded policy. `source` is the file it came from, None when there is none (then
    everything is refused); `dry_run` is the global INCIDENT_BOT_DRY_RUN."""

    rules: tuple[Rule, ...] = ()
    source: str | None = None
    dry_run: bool = False
    defaults: DefaultsSpec = field(default_factory=DefaultsSpec)

    # -- loading ------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: Path | None, *, dry_run: bool = False) -> Policy:
        """The policy in `path`, or with no path a policy that refuses every action."""
        if path is None:
            return cls(dry_run=dry_run)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise PolicyFileError(
                [f"{path}: cannot read the policy file (INCIDENT_BOT_POLICY_FILE): {exc.strerror}"]
            ) from exc
        except UnicodeDecodeError as exc:
            raise PolicyFileError([f"{path}: the policy file is not UTF-8 text"]) from exc
        return cls.from_text(text, display=str(path), dry_run=dry_run)

    @classmethod
    def from_text(cls, text: str, *, display: str = "policy.yaml", dry_run: bool = False) -> Policy:
        data, source, problems = compose_yaml(text, display)
        errors = [f"{display}:{p.line}: {_yaml_hint(p.message)}" for p in problems]
        if errors:
            raise PolicyFileError(errors)
        if data is None:
            raise PolicyFileError([f"{display}:1: the policy file is empty; it needs a 'rules:' list"])
        if not isinstance(data, dict):
            raise PolicyFileError(
                [
                    f"{display}:1: expected a mapping with 'rules:' (and optionally 'defaults:'), "
                    f"found {describe_kind(data)}"
                ]
            )
        try:
            spec = PolicyFile.model_validate(data)
        except ValidationError as exc:
            raise PolicyFileError(validation_errors(exc, source, data, model=PolicyFile)) from None
        problems_found = [
            f"{source.where(loc)}: {format_loc(loc)}: {msg}" for loc, msg in _cross_checks(spec)
        ]
        if problems_found:
            raise PolicyFileError(problems_found)
        rules = tuple(
            _resolve(i, rule, spec.defaults, source.line(("rules", i))) for i, rule in enumerate(spec.rules)
        )
        logger.info("policy loaded", extra={"rules": len(rules)})
        return cls(rules=rules, source=display, dry_run=dry_run, defaults=spec.defaults)

    # -- questions ----------------------------------------------------------------------------

    @property
    def configured(self) -> bool:
        return self.source is not None

    def usergroups(self) -> frozenset[str]:
        """Every user group ID the policy names (rules and approvers): the caller resolves
        the requester's membership of these, and only these, before `decide`."""
        out: set[str] = set()
        for rule in self.rules:
            out |= rule.usergroups
            if rule.approvals:
                out |= rule.approvals.usergroups
        return frozenset(out)

    def decide(
        self,
        request: ActionRequest,
        *,
        user_groups: frozenset[str],
        now: datetime,
        last_action_at: datetime | None,
    ) -> Decision:
        """Decide `request` (see the module docstring for the rules of the game).

        `user_groups`: the requester's groups among `usergroups()`. `last_action_at`: when the
        last real action of the same kind on the same target ran (None: never). Naive
        datetimes are taken as UTC (SQLite hands them back naive).
        """
        if self.source is None:
            return Decision(request, False, refusals=(Refusal(RefusalKind.NO_POLICY, NO_POLICY_MESSAGE),))
        if not self.rules:
            return Decision(
                request,
                False,
                refusals=(
                    Refusal(
                        RefusalKind.NO_RULES,
                        f"No policy rule allows actions: the policy file {self.source} has no rules "
                        "(see README, 'Guardrails')",
                    ),
                ),
            )
        groups = frozenset(user_groups)
        reached: list[tuple[int, Rule]] = [
            (self._scope_depth(rule, request, groups), rule) for rule in self.rules
        ]
        matching = [rule for depth, rule in reached if depth == _MATCHED]
        matched = tuple(rule.label for rule in matching)
        allowing = next((rule for rule in matching if _limit_refusal(rule, request) is None), None)
        if allowing is None:
            return Decision(
                request, False, refusals=self._closest(request, groups, reached), matched_rules=matched
            )
        dry_run, dry_run_reason = self._dry_run(request, allowing)
        cooldown = timedelta(0)
        if request.action in _COOLED_ACTIONS and not dry_run:
            strictest = max(matching, key=lambda rule: rule.cooldown)  # the first of the longest
            cooldown = strictest.cooldown
            refusal = _cooldown_refusal(strictest, request, now, last_action_at)
            if refusal is not None:
                return Decision(request, False, refusals=(refusal,), cooldown=cooldown, matched_rules=matched)
        approvals = allowing.approvals
        if dry_run or approvals is None or request.action not in approvals.actions:
            approvals = None
        confirm = not dry_run and (
            allowing.confirm == "always" or (allowing.confirm is True and request.destructive)
        )
        return Decision(
            request,
            True,
            rule=allowing,
            confirm=confirm,
            dry_run=dry_run,
            dry_run_reason=dry_run_reason,
            approvals=approvals,
            cooldown=cooldown,
            matched_rules=matched,
        )

    # -- internals ----------------------------------------------------------------------------

    @staticmethod
    def _scope_depth(rule: Rule, request: ActionRequest, groups: frozenset[str]) -> int:
        """How far the request gets into the rule's scope: 0 actor, 1 action, 2 namespace,
        3 deployment, 4 (`_MATCHED`) all of them. The deepest failures are the closest."""
        if not rule.names(request.actor, groups):
            return _ACTOR
        if request.action not in rule.actions:
            return _ACTION
        if request.action is ActionKind.MODEL_ROLLBACK:
            # Models stand where namespace and deployment stand for workloads.
            return _MATCHED if _matches_any(request.model or "", rule.models) else _NAMESPACE
        if not _matches_any(request.namespace or "", rule.namespaces):
            return _NAMESPACE
        if not _matches_any(request.deployment or "", rule.deployments):
            return _DEPLOYMENT
        return _MATCHED

    def _dry_run(self, request: ActionRequest, rule: Rule) -> tuple[bool, str | None]:
        if self.dry_run:
            return True, "INCIDENT_BOT_DRY_RUN is set"
        if request.dry_run:
            return True, "asked for by the requester"
        if request.action in rule.dry_run:
            return True, f"{rule.label} only dry-runs {request.action}"
        return False, None

    def _closest(
        self, request: ActionRequest, groups: frozenset[str], reached: Sequence[tuple[int, Rule]]
    ) -> tuple[Refusal, ...]:
        deepest = max(depth for depth, _ in reached)
        rules = [rule for depth, rule in reached if depth == deepest]
        actor, action = request.actor, request.action
        if deepest == _ACTOR:
            groups_note = ""
            if any(rule.usergroups for rule in self.rules) and not groups:
                groups_note = " (they are in none of the user groups the policy names)"
            message = (
                f"{actor} may not run {action}: no policy rule names {actor} "
                f"or a user group of theirs{groups_note}"
            )
            return (Refusal(RefusalKind.USER, message),)
        if deepest == _ACTION:
            allowed = sorted({a for rule in rules for a in rule.actions}, key=_action_rank)
            labels = ", ".join(rule.label for rule in rules)
            message = (
                f"{actor} may not run {action}: the policy lets {actor} run only "
                f"{', '.join(allowed)} ({labels})"
            )
            return (Refusal(RefusalKind.ACTION, message),)
        refusals: list[Refusal] = []
        for rule in rules:
            if deepest == _NAMESPACE and action is ActionKind.MODEL_ROLLBACK:
                refusal = Refusal(
                    RefusalKind.NAMESPACE,
                    f"not allowed: {rule.label} allows {action} only on models "
                    f"{', '.join(rule.models)}; {request.model} is not one of them",
                    rule.label,
                )
            elif deepest == _NAMESPACE:
                refusal = Refusal(
                    RefusalKind.NAMESPACE,
                    f"not allowed: {rule.label} allows {action} only in namespaces "
                    f"{', '.join(rule.namespaces)}; {_what(request.namespace, 'namespace', request)}",
                    rule.label,
                )
            elif deepest == _DEPLOYMENT:
                refusal = Refusal(
                    RefusalKind.DEPLOYMENT,
                    f"not allowed: {rule.label} allows {action} only on deployments "
                    f"{', '.join(rule.deployments)}; {_what(request.deployment, 'deployment', request)}",
                    rule.label,
                )
            else:
                limit = _limit_refusal(rule, request)
                assert limit is not None
                refusal = limit
            if refusal.message not in {r.message for r in refusals}:
                refusals.append(refusal)
        if len(refusals) > _MAX_LISTED_REFUSALS:
            more = len(refusals) - _MAX_LISTED_REFUSALS
            last = refusals[_MAX_LISTED_REFUSALS - 1]
            refusals = refusals[: _MAX_LISTED_REFUSALS - 1]
            refusals.append(
                Refusal(last.kind, f"{last.message} (and {more} more rule(s) like it)", last.rule)
            )
        return tuple(refusals)


_ACTOR, _ACTION, _NAMESPACE, _DEPLOYMENT, _MATCHED = range(5)


def can_approve(
    decision: Decision,
    approver: str,
    approver_groups: frozenset[str],
    requester: str | None = None,
    *,
    already_approved: Iterable[str] = (),
) -> tuple[bool, str]:
    """May `approver` approve the action `decision` allowed? The reason says why or why not.

    `requester` defaults to the decision's requester. The caller re-decides the request at
    approval time (the policy or the target may have changed) and counts distinct approvals
    until `decision.approvals_required` is reached.
    """
    request = decision.request
    requester = requester or request.actor
    what = f"{request.action} on {request.target}"
    if not decision.allowed:
        return False, f"nothing to approve: {what} was not allowed"
    approvals = decision.approvals
    if approvals is None:
        return False, f"{what} needs no approval"
    if approver == requester:
        return False, f"{approver} asked for {what} and cannot approve it; another permitted user must"
    if approver in set(already_approved):
        return False, f"{approver} already approved {what}; it needs {approvals.describe()}"
    if approver in approvals.users:
        return True, f"{approver} may approve {what} (named by {approvals.rule})"
    shared = approvals.usergroups & frozenset(approver_groups)
    if shared:
        return True, f"{approver} may approve {what} (member of {min(shared)}, named by {approvals.rule})"
    return False, f"{approver} may not approve {what}: {approvals.rule} needs {approvals.describe()}"


# ---------------------------------------------------------------------------------------------
# Checks used by `decide`


def _matches_any(value: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(value, pattern) for pattern in patterns)


def _what(value: str | None, label: str, request: ActionRequest) -> str:
    if value:
        return f"{value} is not one of them"
    return f"the alert has no {label} label, which only the pattern '*' matches"


def _limit_refusal(rule: Rule, request: ActionRequest) -> Refusal | None:
    if request.action is ActionKind.SCALE and rule.replicas is not None:
        assert request.replicas is not None
        bounds, wanted = rule.replicas, request.replicas
        span = f"{rule.label} allows {bounds.min} to {bounds.max} replicas"
        if wanted > bounds.max:
            return Refusal(
                RefusalKind.REPLICAS_ABOVE_MAX,
                f"scale to {wanted} is above the maximum of {bounds.max} for {request.target} ({span})",
                rule.label,
            )
        if wanted < bounds.min:
            return Refusal(
                RefusalKind.REPLICAS_BELOW_MIN,
                f"scale to {wanted} is below the minimum of {bounds.min} for {request.target} ({span})",
                rule.label,
            )
    if (
        request.action is ActionKind.SILENCE
        and rule.max_silence_duration is not None
        and request.duration is not None
        and request.duration > rule.max_silence_duration
    ):
        return Refusal(
            RefusalKind.SILENCE_TOO_LONG,
            f"silence for {format_duration(request.duration)} is longer than the maximum of "
            f"{format_duration(rule.max_silence_duration)} for {request.target} ({rule.label})",
            rule.label,
        )
    return None


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _cooldown_refusal(
    rule: Rule, request: ActionRequest, now: datetime, last_action_at: datetime | None
) -> Refusal | None:
    if last_action_at is None or rule.cooldown <= timedelta(0):
        return None
    elapsed = max(_aware(now) - _aware(last_action_at), timedelta(0))
    if elapsed >= rule.cooldown:
        return None
    ago = timedelta(seconds=math.floor(elapsed.total_seconds()))
    wait = timedelta(seconds=math.ceil((rule.cooldown - elapsed).total_seconds()))
    return Refusal(
        RefusalKind.COOLDOWN,
        f"cooldown: last {request.action} on {request.target} was {format_duration(ago)} ago, "
        f"wait {format_duration(wait)} ({rule.label} asks for {format_duration(rule.cooldown)} "
        f"between {_PLURAL[request.action]} of the same "
        f"{'model' if request.action is ActionKind.MODEL_ROLLBACK else 'deployment'})",
        rule.label,
    )


# ---------------------------------------------------------------------------------------------
# Loading: cross-field checks, defaults, error messages with lines


def _cross_checks(spec: PolicyFile) -> Iterator[tuple[Loc, str]]:
    """What pydantic's per-field checks cannot see, each with the path of the value to fix."""
    seen_names: dict[str, int] = {}
    for i, rule in enumerate(spec.rules):
        base: tuple[str | int, ...] = ("rules", i)
        actions = set(rule.actions)
        if rule.name is not None:
            if rule.name in seen_names:
                yield (
                    (*base, "name"),
                    f"duplicate rule name {rule.name!r} (also rules[{seen_names[rule.name]}])",
                )
            seen_names.setdefault(rule.name, i)
        if not rule.users and not rule.usergroups:
            yield base, "a rule needs users or usergroups: otherwise nobody may use it"
        if rule.namespaces is None and actions - {ActionKind.MODEL_ROLLBACK}:
            yield (
                (*base, "namespaces"),
                f'required for {_list(actions - {ActionKind.MODEL_ROLLBACK})}: add namespaces: ["..."]',
            )
        if ActionKind.MODEL_ROLLBACK in actions and rule.models is None:
            yield (
                (*base, "actions"),
                'allows model_rollback but names no models: add models: ["churn-*"] (registered model globs)',
            )
        if rule.models is not None and ActionKind.MODEL_ROLLBACK not in actions:
            yield (*base, "models"), "models only apply to model_rollback, which this rule does not allow"
        if ActionKind.SCALE in actions and rule.replicas is None:
            yield (
                (*base, "actions"),
                "allows scale but has no replica bounds: add replicas: {min: 1, max: N}",
            )
        if rule.replicas is not None:
            if ActionKind.SCALE not in actions:
                yield (
                    (*base, "replicas"),
                    "replica bounds only apply to scale, which this rule does not allow",
                )
            if rule.replicas.max < rule.replicas.min:
                yield (*base, "replicas", "max"), f"must be >= min ({rule.replicas.min})"
        if rule.max_silence_duration is not None:
            if ActionKind.SILENCE not in actions:
                yield (
                    (*base, "max_silence_duration"),
                    "only applies to silence, which this rule does not allow",
                )
            yield from _check_silence_bound((*base, "max_silence_duration"), rule.max_silence_duration)
        if isinstance(rule.dry_run, tuple):
            for j, action in enumerate(rule.dry_run):
                if action not in actions:
                    yield (
                        (*base, "dry_run", j),
                        f"{action.value!r} is not among this rule's actions ({_list(actions)})",
                    )
        if rule.approvers is not None:
            yield from _check_approvers(base, rule, actions)
    if spec.defaults.max_silence_duration is not None:
        yield from _check_silence_bound(
            ("defaults", "max_silence_duration"), spec.defaults.max_silence_duration
        )


def _check_silence_bound(loc: Loc, value: timedelta) -> Iterator[tuple[Loc, str]]:
    if value <= timedelta(0):
        yield loc, "must be longer than zero"
    elif value > MAX_SILENCE_DURATION:
        yield (
            loc,
            f"is longer than the longest silence the bot creates ({format_duration(MAX_SILENCE_DURATION)})",
        )


def _check_approvers(base: Loc, rule: RuleSpec, actions: set[ActionKind]) -> Iterator[tuple[Loc, str]]:
    approvers = rule.approvers
    assert approvers is not None
    for j, action in enumerate(approvers.actions or ()):
        if action not in actions:
            yield (
                (*base, "approvers", "actions", j),
                f"{action.value!r} is not among this rule's actions ({_list(actions)})",
            )
    if approvers.users or approvers.usergroups:
        if not approvers.usergroups and len(set(approvers.users)) < approvers.required:
            yield (
                (*base, "approvers", "required"),
                f"asks for {approvers.required} approvals but names only "
                f"{len(set(approvers.users))} approver(s)",
            )
    elif not rule.usergroups and len(set(rule.users)) <= approvers.required:
        yield (
            (*base, "approvers"),
            f"asks for {approvers.required} approval(s) by a user other than the requester, but without "
            f"approvers.users/usergroups only the rule's {len(set(rule.users))} user(s) may approve: "
            "name approvers or add users",
        )


def _list(actions: Iterable[ActionKind]) -> str:
    return ", ".join(sorted(actions, key=_action_rank))


def _action_rank(action: str) -> int:
    return _ACTION_ORDER[ActionKind(action)]


def _resolve(index: int, spec: RuleSpec, defaults: DefaultsSpec, line: int) -> Rule:
    actions = frozenset(spec.actions)
    if spec.dry_run is None:
        dry_run = actions if defaults.dry_run else frozenset()
    elif isinstance(spec.dry_run, bool):
        dry_run = actions if spec.dry_run else frozenset()
    else:
        dry_run = frozenset(spec.dry_run)
    label = f"rule {spec.name!r}" if spec.name else f"rules[{index}]"
    approvals = None
    if spec.approvers is not None:
        own = not (spec.approvers.users or spec.approvers.usergroups)
        approvals = Approvals(
            required=spec.approvers.required,
            users=frozenset(spec.users if own else spec.approvers.users),
            usergroups=frozenset(spec.usergroups if own else spec.approvers.usergroups),
            actions=frozenset(spec.approvers.actions) if spec.approvers.actions is not None else actions,
            rule=label,
        )
    return Rule(
        index=index,
        name=spec.name,
        actions=actions,
        users=frozenset(spec.users),
        usergroups=frozenset(spec.usergroups),
        namespaces=spec.namespaces or (),
        deployments=spec.deployments,
        models=spec.models or (),
        replicas=spec.replicas,
        max_silence_duration=(
            spec.max_silence_duration
            if spec.max_silence_duration is not None
            else defaults.max_silence_duration
        ),
        cooldown=spec.cooldown if spec.cooldown is not None else defaults.cooldown,
        confirm=spec.confirm if spec.confirm is not None else defaults.confirm,
        dry_run=dry_run,
        approvals=approvals,
        line=line,
    )


def _yaml_hint(message: str) -> str:
    if "expected alphabetic or numeric character" in message:
        return f"{message}; a value starting with '*' is a YAML alias: quote glob patterns, e.g. \"*\""
    return message
