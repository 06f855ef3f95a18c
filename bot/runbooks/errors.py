"""Errors of the runbooks package.

A runbook problem is a configuration problem: the server refuses to start on one, and
`incident-bot runbooks check` reports it. So every error here is a `ConfigError`, and the
ones that carry several findings keep them as `file:line: message` strings in `errors`,
in the order they were found, so callers can print them one per line.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.errors import ConfigError

__all__ = ["MatcherSyntaxError", "RunbookError", "RunbookRenderError"]


class MatcherSyntaxError(ConfigError):
    """An Alertmanager matcher that does not parse; the message names the matcher."""


class RunbookError(ConfigError):
    """One or more invalid runbooks; `errors` holds every finding as `file:line: message`."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = list(errors)
        count = len(self.errors)
        head = f"{count} runbook error{'s' if count != 1 else ''}"
        super().__init__(head + ":\n" + "\n".join(self.errors) if self.errors else head)


class RunbookRenderError(RunbookError):
    """A runbook failed to render for one alert (undefined variable, bad parameter...)."""
