"""`incident-bot runbooks check [DIR]` and `incident-bot runbooks test [DIR]`.

Both print one `file:line: message` per problem on stdout (so editors and CI annotate the
lines), notes on stderr, and return 0 when the directory is clean, 1 otherwise. DIR
defaults to `INCIDENT_BOT_RUNBOOKS_DIR`, then `./runbooks`, like the server.
"""

# ruff: noqa: PT028 - `test_command` is the `runbooks test` command, not a pytest test
from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import TextIO

from bot.runbooks.check import CheckReport, check_report, test_report

__all__ = ["check_command", "default_directory", "test_command"]

_AUTO = "auto"


def default_directory() -> Path:
    """INCIDENT_BOT_RUNBOOKS_DIR (through Settings, the one reader of the environment), else
    ./runbooks."""
    from bot.config import Settings

    return Settings().runbooks_dir


def check_command(
    directory: str | Path | None = None,
    *,
    promtool: str | None = _AUTO,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Validate everything; PromQL through `promtool` (found on PATH unless given or None)."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    path = Path(directory) if directory is not None else default_directory()
    tool = shutil.which("promtool") if promtool == _AUTO else promtool
    report = check_report(path, promtool=tool)
    if tool is None:
        print(
            "note: promtool not found on PATH: PromQL was not parsed (apt-get install prometheus)", file=err
        )
    return _finish(report, path, "checked", out, err)


def test_command(
    directory: str | Path | None = None,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Render every runbook against its example alerts."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    path = Path(directory) if directory is not None else default_directory()
    report = test_report(path)
    failed = {line.split(":", 1)[0] for line in report.errors}
    for runbook in report.runbooks:
        if str(runbook.path) not in failed and runbook.examples:
            count = len(runbook.examples)
            print(
                f"ok   {runbook.name} ({runbook.path.name}, version {runbook.version}): "
                f"{count} example{'s' if count != 1 else ''}",
                file=out,
            )
    return _finish(report, path, "tested", out, err)


def _finish(report: CheckReport, path: Path, verb: str, out: TextIO, err: TextIO) -> int:
    for line in report.errors:
        print(line, file=out)
    for line in report.warnings:
        print(f"warning: {line}", file=err)
    count = len(report.runbooks)
    problems = len(report.errors)
    summary = f"{count} runbook{'s' if count != 1 else ''} {verb} in {path}: "
    summary += f"{problems} error{'s' if problems != 1 else ''}" if problems else "no errors"
    print(summary, file=out)
    return 1 if problems else 0


test_command.__test__ = False  # type: ignore[attr-defined]
