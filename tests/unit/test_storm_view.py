"""What a storm digest reads: every covered incident counted, only as many as one Slack
message can show read, critical first, however long the storm lasts."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from bot import storm
from bot.db import create_db_engine, transaction, utcnow
from bot.incidents.models import Incident
from bot.schema import init_schema
from bot.slack.digest import digest_message

CHANNEL = "C0STORM"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'storm.db'}")
    init_schema(engine)
    yield engine
    engine.dispose()


def open_storm(engine: Engine, incidents: int) -> int:
    """`incidents` in the channel, every 7th critical, the first 10 already announced."""
    started = utcnow() - timedelta(minutes=5)
    with transaction(engine) as session:
        for n in range(incidents):
            session.add(
                Incident(
                    receiver="incident-bot",
                    group_key=f"storm-{n}",
                    title=f"GPU pool {n} down",
                    severity="critical" if n % 7 == 0 else "warning",
                    channel=CHANNEL,
                    slack_ts=f"1700000000.{n:06d}" if n < 10 else None,
                    created_at=started + timedelta(seconds=n),
                )
            )
        session.flush()
        first = session.exec(select(Incident).order_by(col(Incident.id))).first()
        assert first is not None
        assert first.id is not None
        digest = storm.StormDigest(channel=CHANNEL, anchor_incident_id=first.id, started_at=started)
        session.add(digest)
        session.flush()
        assert digest.id is not None
        return digest.id


def test_a_long_storm_is_counted_whole_and_read_only_as_far_as_it_can_be_shown(engine: Engine) -> None:
    digest_id = open_storm(engine, 3 * storm.LISTED)
    with transaction(engine) as session:
        found = storm.take_refresh(session, digest_id)
        assert found is not None
        view = found[1]
    assert view.total == 3 * storm.LISTED
    assert view.critical == len(range(0, 3 * storm.LISTED, 7))
    assert view.announced == 10
    assert len(view.lines) == storm.LISTED
    severities = [line.severity for line in view.lines]
    assert severities[: view.critical] == ["critical"] * view.critical  # critical first
    assert "critical" not in severities[view.critical :]
    message = digest_message(view)
    assert message["text"].startswith(f"Alert storm: {3 * storm.LISTED} incidents in this channel")
    assert f"10 of {3 * storm.LISTED} announced" in message["text"]
    more = message["blocks"][-1]["elements"][0]["text"]
    assert more.startswith("and ")
    assert more.endswith(" more")
    shown = sum(
        section["text"]["text"].count("\n") + 1
        for section in message["blocks"]
        if section["type"] == "section"
    )
    assert int(more.split()[1]) == 3 * storm.LISTED - shown
