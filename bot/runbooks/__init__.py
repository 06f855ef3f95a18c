"""Runbooks: YAML files that say what an alert means, what to look at and which buttons to offer.

`load_verified_runbooks(dir)` at server start (raises `RunbookError` listing the
`file:line: message` problems `runbooks test` would print; `load_runbooks` skips the
example renders), `RunbookSet.match(labels)` per alert (the most specific runbook wins), then
`render_runbook(runbook, RunbookContext(...))` for Slack text, PromQL and validated actions.
The file format is `schema.RunbookSpec`; `runbooks/README.md` documents it.
"""

from __future__ import annotations

from bot.runbooks.check import load_verified_runbooks
from bot.runbooks.errors import MatcherSyntaxError, RunbookError, RunbookRenderError
from bot.runbooks.loader import LoadResult, Runbook, RunbookSet, load_directory, load_runbooks
from bot.runbooks.matchers import Matcher, MatchType, parse_matcher, parse_matchers
from bot.runbooks.render import (
    AlertInfo,
    IncidentInfo,
    RenderedAction,
    RenderedDiagnostic,
    RenderedLink,
    RenderedRunbook,
    RunbookContext,
    render_runbook,
)
from bot.runbooks.schema import RunbookSpec
from bot.runbooks.selection import best_matches, match

__all__ = [
    "AlertInfo",
    "IncidentInfo",
    "LoadResult",
    "MatchType",
    "Matcher",
    "MatcherSyntaxError",
    "RenderedAction",
    "RenderedDiagnostic",
    "RenderedLink",
    "RenderedRunbook",
    "Runbook",
    "RunbookContext",
    "RunbookError",
    "RunbookRenderError",
    "RunbookSet",
    "RunbookSpec",
    "best_matches",
    "load_directory",
    "load_runbooks",
    "load_verified_runbooks",
    "match",
    "parse_matcher",
    "parse_matchers",
    "render_runbook",
]
