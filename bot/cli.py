"""Command line: `incident-bot serve | demo | runbooks check | runbooks test | db upgrade | db current`.

Errors a user can fix (a missing setting, an invalid runbook) end the command with one line
naming the problem and exit status 2 (usage/configuration) or 1 (validation failed), never a
traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from bot import __version__
from bot.errors import ConfigError

__all__ = ["main"]


def _settings(**overrides: object) -> object:
    from bot.config import Settings

    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        name = str(first["loc"][0]) if first["loc"] else "setting"
        raise ConfigError(f"invalid setting {name.upper()}: {first['msg']}") from exc


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from bot import heap
    from bot.config import Settings
    from bot.logs import configure_logging
    from bot.schema import start_schema_check

    settings = _settings()
    assert isinstance(settings, Settings)
    settings.require_for_serve()
    configure_logging(settings.log_level, settings.log_format)
    if args.no_migrate:
        settings = settings.model_copy(update={"migrate_on_start": False})
    # Migrated (or checked) by a process of its own while this one imports the server, so
    # Alembic never takes up this process's memory (bot/schema.py).
    check = start_schema_check(settings)
    from bot.server import create_app

    code = check.wait()
    if code != 0:
        return code
    # Before any thread starts: RSS that follows use, not every burst's high-water mark.
    heap.limit_arenas()
    heap.start_trimming()
    app = create_app(settings, freeze_gc=True, schema_checked=True)
    uvicorn.run(app, host=args.host, port=args.port, log_config=None, access_log=False, lifespan="on")
    return 0


def _demo(args: argparse.Namespace) -> int:
    try:
        from bot.sandbox.demo import run_demo
    except ModuleNotFoundError as exc:
        if exc.name is None or not exc.name.startswith("bot.sandbox"):
            raise
        raise ConfigError(
            "the demo's local stand-ins (bot/sandbox) are not part of this installation "
            "(the production image leaves them out); run `make demo` from a clone"
        ) from None

    return run_demo(host=args.host, port=args.port, once=args.once, workdir=args.workdir, replay=args.replay)


def _runbooks(args: argparse.Namespace) -> int:
    from bot.runbooks import cli as runbooks_cli

    directory = Path(args.dir) if args.dir else None
    if args.runbooks_command == "check":
        return runbooks_cli.check_command(directory)
    return runbooks_cli.test_command(directory)


def _db(args: argparse.Namespace) -> int:
    from bot.config import Settings
    from bot.db_cli import db_command

    settings = _settings()
    assert isinstance(settings, Settings)
    return db_command(args.db_command, settings.database_url)


def _journal(args: argparse.Namespace) -> int:
    from bot.config import Settings
    from bot.journal_cli import journal_command

    settings = _settings()
    assert isinstance(settings, Settings)
    return journal_command(args.journal_command or "status", getattr(args, "id", None), settings.database_url)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="incident-bot",
        description="Alertmanager in, Slack incidents out: incident response for teams running models.",
    )
    parser.add_argument("--version", action="version", version=f"incident-bot {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the bot's HTTP server (settings from the environment)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    serve.add_argument(
        "--no-migrate",
        action="store_true",
        help="do not migrate at start (run `incident-bot db upgrade` instead);"
        " same as INCIDENT_BOT_MIGRATE_ON_START=false",
    )
    serve.set_defaults(func=_serve)

    demo = commands.add_parser("demo", help="run everything locally: no Slack workspace, no cluster needed")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8080)
    demo.add_argument("--once", action="store_true", help="play the sample incident, print it and exit")
    demo.add_argument("--workdir", type=Path, default=None, help="where the demo keeps its database")
    demo.add_argument(
        "--replay",
        action="store_true",
        help="replay recorded Alertmanager notifications even where Prometheus is installed",
    )
    demo.set_defaults(func=_demo)

    runbooks = commands.add_parser("runbooks", help="validate and test runbooks")
    sub = runbooks.add_subparsers(dest="runbooks_command", required=True, metavar="SUBCOMMAND")
    check = sub.add_parser("check", help="validate every runbook file; file:line errors, exit 1 on any")
    check.add_argument(
        "dir", nargs="?", help="runbooks folder (default INCIDENT_BOT_RUNBOOKS_DIR or ./runbooks)"
    )
    test = sub.add_parser("test", help="render every runbook against its example alerts")
    test.add_argument(
        "dir", nargs="?", help="runbooks folder (default INCIDENT_BOT_RUNBOOKS_DIR or ./runbooks)"
    )
    runbooks.set_defaults(func=_runbooks)

    db = commands.add_parser("db", help="database schema (INCIDENT_BOT_DATABASE_URL)")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="SUBCOMMAND")
    db_sub.add_parser("upgrade", help="migrate the database to this version's schema")
    db_sub.add_parser("current", help="print the database's schema revision")
    db.set_defaults(func=_db)

    journal = commands.add_parser(
        "journal", help="notifications acknowledged but not yet applied, and those the database refused"
    )
    journal_sub = journal.add_subparsers(dest="journal_command", metavar="SUBCOMMAND")
    for name, text in (
        ("show", "print a refused notification and why"),
        ("retry", "journal a refused notification again (after fixing the cause)"),
        ("drop", "forget a refused notification"),
    ):
        journal_sub.add_parser(name, help=text).add_argument("id", type=int, help="the failure's id")
    journal.set_defaults(func=_journal)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"incident-bot: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
