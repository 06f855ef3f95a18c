"""Render a runbook for one incident: text for Slack, PromQL to run, validated action buttons.

Callers build a `RunbookContext` explicitly (the representative alert, all alerts of the
incident, and the incident), so what a template can see is a typed, reviewed list:

* `labels`, `annotations`: of the representative alert;
* `alert`: `labels`, `annotations`, `status`, `starts_at`, `ends_at`, `fingerprint`,
  `generator_url`;
* `alerts`: every alert of the incident, each shaped like `alert`;
* `incident`: `key` ("INC-42"), `number`, `severity`, `title`, `status`, `started_at`.

Strings among them are escaped for the field being rendered (see `templating`). Every
template is rendered even after one fails, so one `RunbookRenderError` lists every
problem, each as `file:line: field: message`.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from jinja2 import TemplateError
from jinja2.exceptions import SecurityError, UndefinedError

from bot.configfile import format_loc
from bot.durations import parse_duration
from bot.runbooks.errors import RunbookRenderError
from bot.runbooks.loader import Runbook
from bot.runbooks.matchers import parse_matchers
from bot.runbooks.schema import (
    ExampleAlert,
    ModelRollbackActionSpec,
    ModelRollbackParams,
    RestartActionSpec,
    RestartParams,
    RollbackActionSpec,
    RollbackParams,
    ScaleActionSpec,
    ScaleParams,
    SilenceActionSpec,
    SilenceParams,
    check_alias,
    check_deployment,
    check_model,
    check_model_version,
    check_namespace,
    check_replicas,
    check_revision,
    check_silence_duration,
    check_url,
)
from bot.runbooks.templating import DataView, EscapedStr, Mode
from bot.text import truncate

__all__ = [
    "AlertInfo",
    "IncidentInfo",
    "RenderedAction",
    "RenderedDiagnostic",
    "RenderedLink",
    "RenderedRunbook",
    "RunbookContext",
    "render_runbook",
]

# Slack's limits (PROTOCOLS.md 2.9): section text 3000, header 150, button text 75.
TEXT_LIMIT = 3000
TITLE_LIMIT = 150
BUTTON_LIMIT = 75
COMMENT_LIMIT = 500
DEFAULT_RANGE = "1h"


@dataclass(frozen=True)
class AlertInfo:
    """One alert as the template sees it."""

    labels: Mapping[str, str]
    annotations: Mapping[str, str] = field(default_factory=dict)
    status: str = "firing"
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    fingerprint: str = ""
    generator_url: str = ""


@dataclass(frozen=True)
class IncidentInfo:
    key: str
    number: int
    severity: str
    title: str
    status: str
    started_at: datetime


@dataclass(frozen=True)
class RunbookContext:
    """Everything a runbook may refer to. `alerts` defaults to just `alert`."""

    alert: AlertInfo
    incident: IncidentInfo
    alerts: Sequence[AlertInfo] = ()

    @classmethod
    def for_example(cls, example: ExampleAlert, *, now: datetime | None = None) -> RunbookContext:
        """The context `runbooks test` renders an example alert in (incident INC-1)."""
        started = now or datetime.now(UTC)
        alert = AlertInfo(
            labels=dict(example.labels),
            annotations=dict(example.annotations),
            status=example.status,
            starts_at=started,
            fingerprint="0000000000000000",
            generator_url="http://prometheus.example/graph",
        )
        incident = IncidentInfo(
            key="INC-1",
            number=1,
            severity=example.labels.get("severity", "warning"),
            title=example.annotations.get("summary", example.labels.get("alertname", "example")),
            status="triggered",
            started_at=started,
        )
        return cls(alert=alert, incident=incident, alerts=(alert,))


@dataclass(frozen=True)
class RenderedDiagnostic:
    title: str  # mrkdwn
    query: str  # PromQL
    type: Literal["instant", "range"]
    unit: str
    range: timedelta | None  # how far back to graph (range queries); None for instant
    step: timedelta | None  # None: the caller chooses


@dataclass(frozen=True)
class RenderedLink:
    title: str  # mrkdwn
    url: str


ActionParams = RollbackParams | ScaleParams | RestartParams | SilenceParams | ModelRollbackParams


@dataclass(frozen=True)
class RenderedAction:
    action: Literal["rollback", "scale", "restart", "silence", "model_rollback"]
    label: str  # plain text, at most 75 characters (Slack button)
    params: ActionParams


@dataclass(frozen=True)
class RenderedRunbook:
    name: str
    version: str
    source: str  # file path, for "edit this runbook" links and logs
    description: str  # mrkdwn
    steps: tuple[str, ...]  # mrkdwn, in order
    diagnostics: tuple[RenderedDiagnostic, ...]
    links: tuple[RenderedLink, ...]
    actions: tuple[RenderedAction, ...]
    recovery_query: str | None


def render_runbook(runbook: Runbook, ctx: RunbookContext, *, note: str = "") -> RenderedRunbook:
    """Render every field; raise `RunbookRenderError` listing every failure.

    `note` is appended to each error message (e.g. " (example 2)") so a caller rendering
    several contexts can tell them apart.
    """
    return _Renderer(runbook, ctx, note).render()


class _Renderer:
    def __init__(self, runbook: Runbook, ctx: RunbookContext, note: str) -> None:
        self.runbook = runbook
        self.ctx = ctx
        self.note = note
        self.errors: list[str] = []
        self._contexts: dict[Mode, dict[str, Any]] = {}

    # -- helpers

    def _fail(self, loc: tuple[str | int, ...], message: str, *, line: int | None = None) -> None:
        where = line if line is not None else self.runbook.source.line(loc)
        self.errors.append(f"{self.runbook.source.display}:{where}: {format_loc(loc)}: {message}{self.note}")

    def _vars(self, mode: Mode) -> dict[str, Any]:
        if mode not in self._contexts:
            self._contexts[mode] = _template_vars(self.ctx, mode)
        return self._contexts[mode]

    def text(self, loc: tuple[str | int, ...]) -> str | None:
        compiled = self.runbook.templates[loc]
        try:
            return compiled.template.render(self._vars(compiled.mode)).strip()
        except SecurityError as exc:
            self._fail(
                loc,
                f"template error: unsafe operation blocked by the sandbox: {exc}",
                line=self._line(loc, exc),
            )
        except UndefinedError as exc:
            self._fail(loc, f"template error: {exc}", line=self._line(loc, exc))
        except TemplateError as exc:
            self._fail(loc, f"template error: {exc}", line=self._line(loc, exc))
        except Exception as exc:  # a template can raise anything: 1/0, int("x"), ...
            self._fail(loc, f"template error: {type(exc).__name__}: {exc}", line=self._line(loc, exc))
        return None

    def _line(self, loc: tuple[str | int, ...], exc: BaseException) -> int:
        lineno = None
        for frame, frame_line in traceback.walk_tb(exc.__traceback__):
            if frame.f_code.co_filename == "<template>":
                lineno = frame_line
        return self.runbook.source.template_line(loc, lineno)

    def checked(self, loc: tuple[str | int, ...], value: str | None, check: Any) -> Any:
        if value is None:
            return None
        try:
            return check(value)
        except ValueError as exc:
            compiled = self.runbook.templates.get(loc)
            origin = f" (rendered from {compiled.source!r})" if compiled and compiled.source != value else ""
            self._fail(loc, f"{exc}{origin}")
            return None

    # -- the runbook

    def render(self) -> RenderedRunbook:
        spec = self.runbook.spec
        description = self.text(("description",))
        steps = [self.text(("steps", i)) for i in range(len(spec.steps))]
        diagnostics = [self._diagnostic(i) for i in range(len(spec.diagnostics))]
        links = [self._link(i) for i in range(len(spec.links))]
        actions = [self._action(i) for i in range(len(spec.actions))]
        recovery = self.text(("recovery_query",)) if spec.recovery_query is not None else None
        if self.errors:
            raise RunbookRenderError(self.errors)
        return RenderedRunbook(
            name=spec.name,
            version=self.runbook.version,
            source=str(self.runbook.path),
            description=truncate(description or "", TEXT_LIMIT),
            steps=tuple(truncate(s or "", TEXT_LIMIT) for s in steps),
            diagnostics=tuple(d for d in diagnostics if d is not None),
            links=tuple(x for x in links if x is not None),
            actions=tuple(a for a in actions if a is not None),
            recovery_query=recovery,
        )

    def _applies(self, when: list[str]) -> bool:
        """`when` matchers see the labels, and the annotations as `annotations.<name>`."""
        if not when:
            return True
        alert = self.ctx.alert
        values = {**{f"annotations.{k}": v for k, v in alert.annotations.items()}, **alert.labels}
        return all(m.matches(values) for text in when for m in parse_matchers(text))

    def _diagnostic(self, i: int) -> RenderedDiagnostic | None:
        spec = self.runbook.spec.diagnostics[i]
        if not self._applies(spec.when):
            return None
        title = self.text(("diagnostics", i, "title"))
        query = self.text(("diagnostics", i, "query"))
        if title is None or query is None:
            return None
        if not query:
            self._fail(("diagnostics", i, "query"), "query renders to an empty string")
            return None
        is_range = spec.type == "range"
        return RenderedDiagnostic(
            title=truncate(title, TITLE_LIMIT),
            query=query,
            type=spec.type,
            unit=spec.unit,
            range=parse_duration(spec.range or DEFAULT_RANGE) if is_range else None,
            step=parse_duration(spec.step) if is_range and spec.step else None,
        )

    def _link(self, i: int) -> RenderedLink | None:
        title = self.text(("links", i, "title"))
        url = self.checked(("links", i, "url"), self.text(("links", i, "url")), check_url)
        if title is None or url is None:
            return None
        return RenderedLink(title=truncate(title, TITLE_LIMIT), url=url)

    def _param(self, i: int, name: str, value: Any, check: Any) -> Any:
        """A literal was validated at load; a template is rendered and validated now."""
        loc: tuple[str | int, ...] = ("actions", i, name)
        if loc in self.runbook.templates:
            return self.checked(loc, self.text(loc), check)
        return check(value) if value is not None else None

    def _action(self, i: int) -> RenderedAction | None:
        spec = self.runbook.spec.actions[i]
        if not self._applies(spec.when):
            return None
        errors_before = len(self.errors)
        label = self.text(("actions", i, "label")) if spec.label is not None else None
        params: ActionParams | None = None
        if isinstance(spec, RollbackActionSpec | ScaleActionSpec | RestartActionSpec):
            namespace = self._param(i, "namespace", spec.namespace, check_namespace)
            deployment = self._param(i, "deployment", spec.deployment, check_deployment)
            if isinstance(spec, RollbackActionSpec):
                revision = self._param(i, "revision", spec.revision, check_revision)
                if len(self.errors) == errors_before:
                    params = RollbackParams(namespace=namespace, deployment=deployment, revision=revision)
                    label = label or f"Roll back {deployment}"
            elif isinstance(spec, ScaleActionSpec):
                replicas = self._param(i, "replicas", spec.replicas, check_replicas)
                if len(self.errors) == errors_before:
                    params = ScaleParams(namespace=namespace, deployment=deployment, replicas=replicas)
                    label = label or f"Scale {deployment} to {replicas}"
            elif len(self.errors) == errors_before:
                params = RestartParams(namespace=namespace, deployment=deployment)
                label = label or f"Restart {deployment}"
        elif isinstance(spec, ModelRollbackActionSpec):
            model = self._param(i, "model", spec.model, check_model)
            alias = self._param(i, "alias", spec.alias, check_alias)
            version = self._param(i, "version", spec.version, check_model_version)
            if len(self.errors) == errors_before:
                params = ModelRollbackParams(model=model, alias=alias, version=version, restart=spec.restart)
                label = label or (f"Roll back {model}@{alias}" if alias else f"Roll back {model}")
        elif isinstance(spec, SilenceActionSpec):
            loc: tuple[str | int, ...] = ("actions", i, "duration")
            duration_text = self.text(loc) if loc in self.runbook.templates else spec.duration
            duration = self.checked(loc, duration_text, check_silence_duration)
            comment = self.text(("actions", i, "comment")) if spec.comment is not None else None
            if len(self.errors) == errors_before and duration_text is not None:
                params = SilenceParams(
                    duration=duration,
                    duration_text=duration_text,
                    comment=truncate(comment, COMMENT_LIMIT) if comment else None,
                )
                label = label or f"Silence for {duration_text}"
        if params is None or label is None:
            return None
        return RenderedAction(action=spec.action, label=truncate(label, BUTTON_LIMIT), params=params)


# --- template variables ------------------------------------------------------------------------


def _escaped(values: Mapping[str, str], mode: Mode) -> dict[str, EscapedStr]:
    return {str(k): EscapedStr(str(v), mode) for k, v in values.items()}


def _alert_view(alert: AlertInfo, mode: Mode, what: str) -> DataView:
    return DataView(
        {
            "labels": DataView(_escaped(alert.labels, mode), what=f"{what}.labels", kind="label"),
            "annotations": DataView(
                _escaped(alert.annotations, mode), what=f"{what}.annotations", kind="annotation"
            ),
            "status": EscapedStr(alert.status, mode),
            "starts_at": alert.starts_at,
            "ends_at": alert.ends_at,
            "fingerprint": EscapedStr(alert.fingerprint, mode),
            "generator_url": EscapedStr(alert.generator_url, mode),
        },
        what=what,
        kind="field",
    )


def _template_vars(ctx: RunbookContext, mode: Mode) -> dict[str, Any]:
    alert = _alert_view(ctx.alert, mode, "alert")
    alerts = tuple(_alert_view(a, mode, f"alerts[{i}]") for i, a in enumerate(ctx.alerts or (ctx.alert,)))
    incident = ctx.incident
    return {
        "labels": DataView(_escaped(ctx.alert.labels, mode), what="labels", kind="label"),
        "annotations": DataView(_escaped(ctx.alert.annotations, mode), what="annotations", kind="annotation"),
        "alert": alert,
        "alerts": alerts,
        "incident": DataView(
            {
                "key": EscapedStr(incident.key, mode),
                "number": incident.number,
                "severity": EscapedStr(incident.severity, mode),
                "title": EscapedStr(incident.title, mode),
                "status": EscapedStr(incident.status, mode),
                "started_at": incident.started_at,
            },
            what="incident",
            kind="field",
        ),
    }
