"""`runbooks check` and `runbooks test`: everything that can be known about runbooks before an alert.

`test_dir` is what teams run in CI on every change: load the directory (schema, matchers,
template syntax), then for each runbook's example alerts check that the example matches
the runbook's matchers, that the runbook is the one the alert would get (not shadowed by a
more specific runbook, not tied with another), and that every template renders with
`StrictUndefined`. `check_dir` does all of that and also parses every rendered PromQL
query with Prometheus's own parser: `promtool` 2.42 has no "check query", so the queries
become recording rules in a temporary rules file and `promtool check rules` parses them;
each promtool message is mapped back to the runbook's `file:line`.
"""

from __future__ import annotations

import logging
import re
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bot.configfile import format_loc
from bot.runbooks.errors import RunbookError, RunbookRenderError
from bot.runbooks.loader import Runbook, RunbookSet, load_directory
from bot.runbooks.render import RenderedRunbook, RunbookContext, render_runbook
from bot.runbooks.selection import best_matches

__all__ = [
    "CheckReport",
    "RenderedQuery",
    "check_dir",
    "check_report",
    "load_verified_runbooks",
    "test_dir",
    "test_report",
]

logger = logging.getLogger(__name__)

PROMTOOL_TIMEOUT = 60.0


@dataclass(frozen=True)
class RenderedQuery:
    """A query rendered from one example, remembered for the PromQL check."""

    runbook: Runbook
    loc: tuple[str | int, ...]
    example: int
    query: str


@dataclass
class CheckReport:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    runbooks: list[Runbook] = field(default_factory=list)
    rendered: dict[str, list[RenderedRunbook]] = field(default_factory=dict)  # name -> per example
    queries: list[RenderedQuery] = field(default_factory=list)
    promql_checked: bool = False


def check_dir(path: str | Path, *, promtool: str | None) -> list[str]:
    """Every problem as `file:line: message`; PromQL is checked only when `promtool` is given."""
    return check_report(path, promtool=promtool).errors


def test_dir(path: str | Path) -> list[str]:
    """The `runbooks test` problems: load errors plus example matching and rendering."""
    return test_report(path).errors


def load_verified_runbooks(path: str | Path) -> RunbookSet:
    """What the server loads at start: the runbooks, if `runbooks test` passes on them.

    Raises `RunbookError` with the same `file:line: message` lines `runbooks test` prints,
    so an invalid runbook (or an example it no longer renders) stops the server at start
    instead of failing at 3 a.m. PromQL is not parsed here: promtool is a CI tool.
    """
    report = test_report(path)
    if report.errors:
        raise RunbookError(report.errors)
    for warning in report.warnings:
        logger.warning("runbook has no examples", extra={"detail": warning})
    return RunbookSet(report.runbooks)


def test_report(path: str | Path) -> CheckReport:
    result = load_directory(path)
    report = CheckReport(errors=list(result.errors), runbooks=list(result.runbooks))
    _examine_examples(report)
    return report


def check_report(path: str | Path, *, promtool: str | None) -> CheckReport:
    report = test_report(path)
    if promtool is not None:
        report.errors.extend(_check_promql(report.queries, promtool))
        report.promql_checked = True
    return report


def _examine_examples(report: CheckReport) -> None:
    runbooks = report.runbooks
    reported_ties: set[frozenset[str]] = set()
    for runbook in runbooks:
        if not runbook.examples:
            report.warnings.append(
                f"{runbook.where()}: runbook {runbook.name!r} has no examples: its templates were "
                "parsed but never rendered, and its PromQL is not checked"
            )
            continue
        rendered: list[RenderedRunbook] = []
        for index, example in enumerate(runbook.examples):
            loc: tuple[str | int, ...] = ("examples", index)
            labels = example.labels
            failing = [m for m in runbook.matchers if not m.matches(labels)]
            if failing:
                shown = ", ".join(f"{m} (the alert has {m.name}={labels.get(m.name, '')!r})" for m in failing)
                report.errors.append(
                    f"{runbook.where(loc)}: {format_loc(loc)}: example alert does not match the runbook: "
                    f"matcher {shown} does not hold"
                )
            else:
                _check_selection(report, runbook, index, reported_ties)
            try:
                result = render_runbook(
                    runbook, RunbookContext.for_example(example), note=f" (example {index})"
                )
            except RunbookRenderError as exc:
                report.errors.extend(exc.errors)
                continue
            rendered.append(result)
            for i, diag in enumerate(result.diagnostics):
                report.queries.append(RenderedQuery(runbook, ("diagnostics", i, "query"), index, diag.query))
            if result.recovery_query is not None:
                report.queries.append(
                    RenderedQuery(runbook, ("recovery_query",), index, result.recovery_query)
                )
        report.rendered[runbook.name] = rendered


def _check_selection(
    report: CheckReport, runbook: Runbook, index: int, reported_ties: set[frozenset[str]]
) -> None:
    loc: tuple[str | int, ...] = ("examples", index)
    labels = runbook.examples[index].labels
    best = best_matches(report.runbooks, labels)
    if runbook not in best:
        winner = best[0]
        report.errors.append(
            f"{runbook.where(loc)}: {format_loc(loc)}: this alert would get the more specific runbook "
            f"{winner.name!r} ({winner.where()}: {winner.specificity}) instead of {runbook.name!r} "
            f"({runbook.specificity})"
        )
    elif len(best) > 1:
        names = frozenset(rb.name for rb in best)
        if names in reported_ties:
            return
        reported_ties.add(names)
        others = ", ".join(f"{rb.name!r} ({rb.where()})" for rb in best if rb is not runbook)
        report.errors.append(
            f"{runbook.where(loc)}: {format_loc(loc)}: tie: runbook {runbook.name!r} and {others} match this "
            f"alert equally specifically ({runbook.specificity}); add a matcher to the one that should win"
        )


# --- PromQL through promtool -------------------------------------------------------------------

_PROMTOOL_LINE = re.compile(r'group "q(?P<index>[0-9]+)", rule [0-9]+, "[^"]*": (?P<message>.*)$')


def _check_promql(queries: Sequence[RenderedQuery], promtool: str) -> list[str]:
    if not queries:
        return []
    # One group per query, so every parse error names its query by the group name.
    rules = {
        "groups": [
            {"name": f"q{i}", "rules": [{"record": f"incident_bot:runbook_check_{i}", "expr": q.query}]}
            for i, q in enumerate(queries)
        ]
    }
    with tempfile.TemporaryDirectory(prefix="runbook-promql-") as tmp:
        rules_path = Path(tmp) / "queries.rules.yaml"
        rules_path.write_text(yaml.safe_dump(rules, sort_keys=False), encoding="utf-8")
        try:
            proc = subprocess.run(
                [promtool, "check", "rules", str(rules_path)],
                capture_output=True,
                text=True,
                timeout=PROMTOOL_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return [f"{promtool}: could not run promtool to check PromQL: {exc}"]
    if proc.returncode == 0:
        return []
    errors: list[str] = []
    seen: set[tuple[str, tuple[str | int, ...], str]] = set()
    output = proc.stdout + proc.stderr
    for line in output.splitlines():
        found = _PROMTOOL_LINE.search(line)
        if not found:
            continue
        query = queries[int(found.group("index"))]
        message = found.group("message").removeprefix("could not parse expression: ")
        key = (query.runbook.name, query.loc, message)
        if key in seen:  # the same mistake rendered from several examples
            continue
        seen.add(key)
        errors.append(
            f"{query.runbook.where(query.loc)}: {format_loc(query.loc)}: invalid PromQL (promtool): "
            f"{message} (example {query.example}; rendered query: {query.query})"
        )
    if not errors:
        errors.append(f"{promtool}: promtool check rules failed: {output.strip()}")
    return errors


# Not pytest tests, despite the names `runbooks test` gives them.
test_dir.__test__ = False  # type: ignore[attr-defined]
test_report.__test__ = False  # type: ignore[attr-defined]
