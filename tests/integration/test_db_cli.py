"""`incident-bot db upgrade | current` and `serve`'s schema checks, as an operator runs them:
real processes, on SQLite and on a real PostgreSQL with a plain `postgresql://` URL."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from bot.schema import head_revision
from tests.integration.test_cli import run_cli
from tests.support.botserver import SLACK_TOKEN
from tests.support.postgres import PostgresServer, fresh_database


def plain_postgres_url(postgres: PostgresServer) -> str:
    """A fresh database, named the way an operator writes it: no `+psycopg` driver suffix."""
    return fresh_database(postgres)


def serve_env(database_url: str, **extra: str) -> dict[str, str]:
    return {
        "SLACK_BOT_TOKEN": SLACK_TOKEN,
        "SLACK_SIGNING_SECRET": "s",
        "INCIDENT_BOT_CHANNEL": "C0INCIDENTS",
        "INCIDENT_BOT_DATABASE_URL": database_url,
        **extra,
    }


def stamp(database_url: str, revision: str) -> None:
    from bot.db import create_db_engine

    engine = create_db_engine(database_url)
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
    engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_db_upgrade_then_current(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'bot.db'}"
    else:
        url = plain_postgres_url(request.getfixturevalue("postgres"))
    env = {"INCIDENT_BOT_DATABASE_URL": url}
    head = head_revision()

    before = run_cli("db", "current", env=env)
    assert before.returncode == 0, before.stderr
    assert before.stdout.startswith("none (empty database)")

    first = run_cli("db", "upgrade", env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == f"database upgraded from empty to {head}"
    again = run_cli("db", "upgrade", env=env)
    assert again.stdout.strip() == f"database already at revision {head} (newest)"

    current = run_cli("db", "current", env=env)
    assert current.stdout.strip() == f"{head} (newest)"


def test_db_upgrade_on_an_unreachable_database_says_so_in_one_line(postgres: PostgresServer) -> None:
    from tests.support.promstack import free_port

    env = {"INCIDENT_BOT_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"}
    result = run_cli("db", "upgrade", env=env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("incident-bot: database unreachable:")


def test_serve_refuses_a_schema_newer_than_it_knows(postgres: PostgresServer) -> None:
    url = plain_postgres_url(postgres)
    assert run_cli("db", "upgrade", env={"INCIDENT_BOT_DATABASE_URL": url}).returncode == 0
    stamp(url, "9999_from_the_future")
    result = run_cli("serve", "--port", "0", env=serve_env(url))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1:] == [
        "incident-bot: database schema is at revision 9999_from_the_future, newer than this "
        f"incident-bot knows (newest {head_revision()}): run a newer incident-bot"
    ]
    upgrade = run_cli("db", "upgrade", env={"INCIDENT_BOT_DATABASE_URL": url})
    assert upgrade.returncode == 2
    assert "newer than this incident-bot knows" in upgrade.stderr


@pytest.mark.parametrize("how", ["flag", "setting"])
def test_serve_without_migrating_needs_an_upgraded_database(how: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    args = ["serve", "--port", "0"] + (["--no-migrate"] if how == "flag" else [])
    extra = {"INCIDENT_BOT_MIGRATE_ON_START": "false"} if how == "setting" else {}
    result = run_cli(*args, env=serve_env(url, **extra))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1:] == [
        f"incident-bot: database schema is at revision none (empty database), this incident-bot needs "
        f"{head_revision()}: run `incident-bot db upgrade` or set INCIDENT_BOT_MIGRATE_ON_START=true"
    ]
    # Nothing was created behind the operator's back.
    engine = sa.create_engine(url)
    assert sa.inspect(engine).get_table_names() == []
    engine.dispose()
