"""Two replicas racing for one target's lock, on a real PostgreSQL: both find the target free,
one insert of the lock wins, and the loser's attempt is refused and kept in the audit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from bot.sandbox.kube_api import KubeStandIn
from bot.sandbox.slack_api import SlackStandIn
from tests.support.actions import TARGET, Harness, model_version, seed_llama, write_policy
from tests.support.botserver import make_settings, run_bot, wait_until
from tests.support.postgres import PostgresServer, fresh_database
from tests.support.slack_requests import BOB, SlackSender

pytestmark = pytest.mark.postgres

POLICY = """
defaults: {cooldown: 0s}
rules:
  - name: oncall
    actions: [rollback]
    usergroups: [S0SRE]
    namespaces: ["llm-prod"]
"""


@pytest.fixture
def database_url(postgres: PostgresServer) -> str:
    return fresh_database(postgres)


def test_the_replica_that_loses_the_lock_race_refuses_and_audits_the_attempt(
    tmp_path: Path, slack: SlackStandIn, database_url: str
) -> None:
    with KubeStandIn() as kube:
        seed_llama(kube)
        settings = make_settings(
            tmp_path,
            slack.url,
            database_url=database_url,
            kubeconfig=str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
            policy_file=write_policy(tmp_path, POLICY),
        )
        with run_bot(settings) as bot:
            harness = Harness(bot, slack, kube, SlackSender(bot.url, slack))
            incident = harness.open_incident()
            confirmation = harness.answer(harness.command("/rollback", TARGET))
            harness.answer(harness.command("/rollback", TARGET, user=BOB))
            mine, other = harness.records()
            assert (mine.status, other.status) == ("awaiting_confirmation", "awaiting_confirmation")

            # Another replica takes the lock for bob's rollback and has not committed yet: this
            # replica sees the target free and its own insert waits on the unique key.
            engine = sa.create_engine(database_url)
            try:
                with engine.connect() as blocker:
                    now = datetime.now(UTC).replace(tzinfo=None)
                    blocker.execute(
                        sa.text(
                            "INSERT INTO target_locks (target, action_id, locked_at, expires_at) "
                            "VALUES (:target, :action, :now, :until)"
                        ),
                        {
                            "target": TARGET,
                            "action": other.id,
                            "now": now,
                            "until": now + timedelta(minutes=5),
                        },
                    )
                    sent = harness.click_answer("action_confirm", confirmation)
                    with engine.connect() as watcher:
                        wait_until(
                            lambda: watcher.execute(
                                sa.text("SELECT count(*) FROM pg_locks WHERE NOT granted")
                            ).scalar(),
                            message="this replica's lock insert to wait on the other's",
                        )
                    blocker.commit()
            finally:
                engine.dispose()

            answer = harness.text(harness.answer(sent))
            assert "the target is busy with another action that started a moment ago" in answer
            refused = wait_until(
                lambda: [
                    e
                    for e in harness.events(incident)
                    if "busy with another action that started a moment ago" in e["text"]
                ],
                message="the lost race on the timeline",
            )
            assert refused[0]["text"].startswith(f"rollback {TARGET} not started")
            assert refused[0]["actor"] == mine.requested_by
            assert harness.records()[0].status == "awaiting_confirmation"
            assert harness.writes() == []
            assert model_version(kube) == "v14"
