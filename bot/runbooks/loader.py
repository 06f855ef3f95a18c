"""Load a directory of runbook files, reporting every problem as `file:line: message`.

Loading does everything that needs no alert: YAML syntax, duplicate keys, the schema
(unknown or missing keys, wrong types, bad literals), matcher syntax, Jinja syntax of every
template, and unique names. It never stops at the first problem: an author fixing a file
wants the whole list. The server calls `load_runbooks` at start and refuses to start on any
error, with the same messages `incident-bot runbooks check` prints.

A runbook's version is the first 12 hex digits of the SHA-256 of its file's bytes: it
changes with any edit, and the incident timeline records it so a postmortem can tell which
text the responders saw.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from jinja2 import Template, TemplateSyntaxError
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from bot.configfile import Loc, SourceMap, compose_yaml, format_loc, validation_errors
from bot.runbooks.errors import RunbookError
from bot.runbooks.matchers import Matcher, Specificity, matches_all, parse_matchers, specificity
from bot.runbooks.schema import (
    ActionSpec,
    ExampleAlert,
    ModelRollbackActionSpec,
    RestartActionSpec,
    RollbackActionSpec,
    RunbookSpec,
    ScaleActionSpec,
    SilenceActionSpec,
    is_template,
)
from bot.runbooks.selection import match
from bot.runbooks.templating import Mode, RunbookEnvironment, author_mrkdwn, make_environments

__all__ = [
    "CompiledTemplate",
    "LoadResult",
    "Runbook",
    "RunbookSet",
    "load_directory",
    "load_file",
    "load_runbooks",
    "runbook_files",
    "template_fields",
]

logger = logging.getLogger(__name__)

VERSION_LENGTH = 12
_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class CompiledTemplate:
    loc: tuple[str | int, ...]
    mode: Mode
    source: str
    template: Template = field(repr=False)


@dataclass(frozen=True, eq=False)
class Runbook:
    """A validated runbook, ready to match and render."""

    spec: RunbookSpec
    path: Path
    version: str
    matchers: tuple[Matcher, ...]
    source: SourceMap = field(repr=False)
    templates: Mapping[tuple[str | int, ...], CompiledTemplate] = field(repr=False)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def specificity(self) -> Specificity:
        return specificity(self.matchers)

    @property
    def examples(self) -> list[ExampleAlert]:
        return self.spec.examples

    def matches(self, labels: Mapping[str, str]) -> bool:
        return matches_all(self.matchers, labels)

    def where(self, loc: Loc = (), *, prefer_key: bool = False) -> str:
        """`file:line` of a field, for messages."""
        return self.source.where(loc, prefer_key=prefer_key)


@dataclass
class LoadResult:
    runbooks: list[Runbook]
    errors: list[str]


class RunbookSet:
    """The loaded runbooks of a directory: what the server keeps and matches alerts against."""

    def __init__(self, runbooks: Sequence[Runbook]) -> None:
        self._runbooks = tuple(runbooks)
        self._by_name = {rb.name: rb for rb in self._runbooks}

    def __iter__(self) -> Iterator[Runbook]:
        return iter(self._runbooks)

    def __len__(self) -> int:
        return len(self._runbooks)

    def get(self, name: str) -> Runbook | None:
        return self._by_name.get(name)

    def match(self, labels: Mapping[str, str]) -> Runbook | None:
        return match(self._runbooks, labels)


def runbook_files(directory: Path) -> list[Path]:
    """The runbook files of a directory, sorted: `*.yaml` and `*.yml`, not hidden ones."""
    return sorted(
        p for p in directory.iterdir() if p.is_file() and p.suffix in _SUFFIXES and not p.name.startswith(".")
    )


def load_runbooks(directory: str | Path) -> RunbookSet:
    """Load a directory or raise `RunbookError` listing every problem (used at server start)."""
    result = load_directory(directory)
    if result.errors:
        raise RunbookError(result.errors)
    logger.info("runbooks loaded", extra={"count": len(result.runbooks), "directory": str(directory)})
    return RunbookSet(result.runbooks)


def load_directory(directory: str | Path) -> LoadResult:
    """Load every runbook file; never raises for a bad file, returns its errors instead."""
    path = Path(directory)
    if not path.is_dir():
        return LoadResult([], [f"{path}: runbooks directory not found"])
    envs = make_environments()
    runbooks: list[Runbook] = []
    errors: list[str] = []
    for file in runbook_files(path):
        runbook, file_errors = load_file(file, envs=envs)
        errors.extend(file_errors)
        if runbook is not None:
            runbooks.append(runbook)
    first_by_name: dict[str, Runbook] = {}
    for runbook in runbooks:
        earlier = first_by_name.setdefault(runbook.name, runbook)
        if earlier is not runbook:
            errors.append(
                f"{runbook.where(('name',))}: duplicate runbook name {runbook.name!r} "
                f"(also in {earlier.where(('name',))})"
            )
    return LoadResult(runbooks, errors)


def load_file(
    file: Path, *, envs: Mapping[Mode, RunbookEnvironment] | None = None
) -> tuple[Runbook | None, list[str]]:
    """Load one file; the runbook is None when it is unusable, errors list every problem."""
    display = str(file)
    try:
        raw = file.read_bytes()
    except OSError as exc:
        return None, [f"{display}:1: cannot read file: {exc.strerror}"]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, [f"{display}:1: file is not UTF-8 ({exc.reason} at byte {exc.start})"]
    data, source, problems = compose_yaml(text, display)
    errors = [f"{display}:{p.line}: {p.message}" for p in problems]
    if data is None and not errors:
        return None, [f"{display}:1: empty file: a runbook needs at least name, description and match"]
    if data is None:
        return None, errors
    if not isinstance(data, dict):
        return None, [*errors, f"{display}:1: a runbook must be a mapping of keys, not {type(data).__name__}"]
    try:
        spec = RunbookSpec.model_validate(data)
    except ValidationError as exc:
        errors.extend(validation_errors(exc, source, data, model=RunbookSpec, special=_action_tags))
        return None, errors
    envs = envs if envs is not None else make_environments()
    templates: dict[tuple[str | int, ...], CompiledTemplate] = {}
    for loc, text_value, mode in template_fields(spec):
        template_source = author_mrkdwn(text_value) if mode == "mrkdwn" else text_value
        try:
            compiled = envs[mode].from_string(template_source)
        except TemplateSyntaxError as exc:
            line = source.template_line(loc, exc.lineno)
            errors.append(f"{display}:{line}: {format_loc(loc)}: template syntax error: {exc.message}")
            continue
        templates[loc] = CompiledTemplate(loc=loc, mode=mode, source=text_value, template=compiled)
    if errors:
        return None, errors
    matchers = tuple(m for text_value in spec.match for m in parse_matchers(text_value))
    version = hashlib.sha256(raw).hexdigest()[:VERSION_LENGTH]
    return (
        Runbook(spec=spec, path=file, version=version, matchers=matchers, source=source, templates=templates),
        [],
    )


def template_fields(spec: RunbookSpec) -> Iterator[tuple[tuple[str | int, ...], str, Mode]]:
    """Every templated field of a runbook: where it is, its text, and its escaping mode."""
    yield ("description",), spec.description, "mrkdwn"
    for i, step in enumerate(spec.steps):
        yield ("steps", i), step, "mrkdwn"
    for i, diag in enumerate(spec.diagnostics):
        yield ("diagnostics", i, "title"), diag.title, "mrkdwn"
        yield ("diagnostics", i, "query"), diag.query, "promql"
    for i, link in enumerate(spec.links):
        yield ("links", i, "title"), link.title, "mrkdwn"
        yield ("links", i, "url"), link.url, "url"
    for i, action in enumerate(spec.actions):
        yield from _action_fields(i, action)
    if spec.recovery_query is not None:
        yield ("recovery_query",), spec.recovery_query, "promql"


def _action_fields(index: int, action: ActionSpec) -> Iterator[tuple[tuple[str | int, ...], str, Mode]]:
    base: tuple[str | int, ...] = ("actions", index)
    if action.label is not None:
        yield (*base, "label"), action.label, "plain"
    if isinstance(action, RollbackActionSpec | ScaleActionSpec | RestartActionSpec):
        yield (*base, "namespace"), action.namespace, "raw"
        yield (*base, "deployment"), action.deployment, "raw"
    if isinstance(action, RollbackActionSpec) and isinstance(action.revision, str):
        yield (*base, "revision"), action.revision, "raw"
    if isinstance(action, ScaleActionSpec) and isinstance(action.replicas, str):
        yield (*base, "replicas"), action.replicas, "raw"
    if isinstance(action, ModelRollbackActionSpec):
        yield (*base, "model"), action.model, "raw"
        if action.alias is not None:
            yield (*base, "alias"), action.alias, "raw"
        if isinstance(action.version, str):
            yield (*base, "version"), action.version, "raw"
    if isinstance(action, SilenceActionSpec):
        if is_template(action.duration):
            yield (*base, "duration"), action.duration, "raw"
        if action.comment is not None:
            yield (*base, "comment"), action.comment, "plain"


# --- pydantic errors -> file:line: message -----------------------------------------------------

_ACTION_MODELS: dict[str, type[BaseModel]] = {
    "rollback": RollbackActionSpec,
    "scale": ScaleActionSpec,
    "restart": RestartActionSpec,
    "silence": SilenceActionSpec,
    "model_rollback": ModelRollbackActionSpec,
}


def _action_tags(err: ErrorDetails, loc: tuple[str | int, ...], source: SourceMap) -> tuple[int, str] | None:
    """The runbook's own wording for an unknown or missing `action:` tag."""
    if err["type"] == "union_tag_invalid":
        tag = err.get("ctx", {}).get("tag", "?")
        message = (
            f"{format_loc(loc)}.action: unknown action {tag!r}; expected one of: {', '.join(_ACTION_MODELS)}"
        )
        return source.line((*loc, "action")), message
    if err["type"] == "union_tag_not_found":
        return source.line(
            loc
        ), f"{format_loc(loc)}: missing required key 'action' ({', '.join(_ACTION_MODELS)})"
    return None
