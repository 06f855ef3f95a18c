"""Time from an Alertmanager webhook POST to the bot's first Slack call for that incident.

The real bot (uvicorn, SQLite on local disk, the durable outbox) against the local Slack
stand-in. Two runs:
- sequential: one new incident at a time, so each figure is the pipeline's own latency
  (HTTP intake, commit, outbox wake-up, claim, render, chat.postMessage);
- burst: N notifications at once from several client threads, as after an outage; the
  figure includes queueing behind the other incidents.
Slack's per-channel pacing is switched off here (it would add up to 1 s per message by
design); routing spreads real incidents over channels.

    python -m bench.webhook_to_slack [--incidents 200] [--burst 100]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bench.stats import describe
from bot.sandbox.slack_api import SlackStandIn
from tests.support.botserver import make_settings, run_bot, wait_until
from tests.support.payloads import alert, notification


def first_post_times(slack: SlackStandIn) -> dict[str, float]:
    """incident key -> when the stand-in received the root message for it."""
    found: dict[str, float] = {}
    for call in slack.calls("chat.postMessage"):
        meta = call.params.get("metadata") or {}
        key = (meta.get("event_payload") or {}).get("incident")
        if key and "thread_ts" not in call.params:
            found.setdefault(key, call.at)
    return found


def incident_keys(engine: Engine, groups: set[str]) -> dict[str, str] | None:
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT id, group_key FROM incidents")).all()
    found = {row.group_key: f"INC-{row.id}" for row in rows if row.group_key in groups}
    return found if len(found) == len(groups) else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--incidents", type=int, default=200)
    parser.add_argument("--burst", type=int, default=100)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp, SlackStandIn() as slack:
        settings = make_settings(Path(tmp), slack.url, webhook_token=None, log_level="WARNING")
        with run_bot(settings) as bot, bot.client(token=None) as client:
            sequential: list[float] = []
            for n in range(args.incidents):
                payload = notification(alert(pod=f"seq-{n}"), group_key=f"seq-{n}")
                started = time.time()
                key = client.post("/alertmanager", json=payload).json()["incident"]
                wait_until(lambda k=key: k in first_post_times(slack), timeout=30, message=f"{key} posted")
                sequential.append(first_post_times(slack)[key] - started)

            sent: dict[str, float] = {}

            def fire(n: int) -> None:
                payload = notification(alert(pod=f"burst-{n}"), group_key=f"burst-{n}")
                started = time.time()
                with bot.client(token=None) as own:
                    assert own.post("/alertmanager", json=payload).status_code == 200
                sent[f"burst-{n}"] = started

            with ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(fire, range(args.burst)))
            # Under a burst the answer may come before the notification is applied (the intake
            # journal), so incidents are found by their group.
            keys = wait_until(
                lambda: incident_keys(bot.services.engine, set(sent)), timeout=120, message="applied"
            )
            sent = {keys[group]: started for group, started in sent.items()}
            wait_until(lambda: set(sent) <= set(first_post_times(slack)), timeout=120, message="burst posted")
            posted = first_post_times(slack)
            burst = [posted[k] - t for k, t in sent.items()]

    print(describe("sequential", sequential))
    print(describe("burst", burst))
    return 0


if __name__ == "__main__":
    sys.exit(main())
