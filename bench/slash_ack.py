"""Time for the bot to acknowledge a slash command while alerts are being ingested.

Slack gives an app 3 seconds to answer a command's HTTP request; after that the user sees
"operation_timeout" whatever the bot does next. This measures that answer (the ack): the
HTTP time of signed `/incident list` and `/incident ack INC-n` requests to `POST
/slack/events` on the real bot (`python -m bot serve` in its own process, as deployed: its
journal applier process, SQLite on local disk, slack-bolt, the outbox posting to the local
Slack stand-in), while other threads post Alertmanager notifications as fast as
the bot takes them (new incidents and updates of open ones, so the outbox is busy too).

Also reported: the time until the command's real answer reached the response_url (database
work and the Slack call happen after the ack, so this is the user's wait for the content),
and the ingestion rate the bot sustained meanwhile.

    python -m bench.slash_ack [--commands 400] [--ingesters 2] [--seed 50]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from bench.stats import describe
from bot.sandbox.slack_api import SlackStandIn
from tests.support.botserver import BotProcess, make_settings, wait_until
from tests.support.payloads import alert, notification
from tests.support.slack_requests import ALICE, BOB, sign, slash_command_body


class Ingester(threading.Thread):
    """Posts notifications back to back: a new incident every 4th, else more alerts for an
    open one."""

    def __init__(self, url: str, index: int, stop: threading.Event) -> None:
        super().__init__(name=f"ingester-{index}", daemon=True)
        self.url = url
        self.index = index
        self.stop_event = stop
        self.accepted = 0
        self.failed = 0

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            n = 0
            while not self.stop_event.is_set():
                group = f"ingest-{self.index}-{n // 4}"
                pods = [alert(pod=f"{group}-pod-{k}") for k in range(n % 4 + 1)]
                response = client.post("/alertmanager", json=notification(*pods, group_key=group))
                if response.status_code == 200:
                    self.accepted += 1
                else:
                    self.failed += 1
                n += 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--commands", type=int, default=400, help="slash commands to send (half list, half ack)"
    )
    parser.add_argument("--ingesters", type=int, default=2, help="threads posting Alertmanager notifications")
    parser.add_argument("--seed", type=int, default=50, help="incidents opened before measuring")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp, SlackStandIn() as slack:
        settings = make_settings(Path(tmp), slack.url, webhook_token=None)
        bot = BotProcess(settings, Path(tmp) / "bot.log").start()
        with contextlib.closing(bot), httpx.Client(base_url=bot.url, timeout=30) as client:
            for n in range(args.seed):
                client.post("/alertmanager", json=notification(alert(pod=f"seed-{n}"), group_key=f"seed-{n}"))
            wait_until(
                lambda: len(slack.calls("chat.postMessage")) >= args.seed, timeout=120, message="seeded"
            )

            stop = threading.Event()
            ingesters = [Ingester(bot.url, i, stop) for i in range(args.ingesters)]
            started = time.monotonic()
            for ingester in ingesters:
                ingester.start()
            time.sleep(1.0)  # let ingestion reach a steady state before measuring

            acks: list[float] = []
            sent_at: dict[str, float] = {}
            for n in range(args.commands):
                text = "list" if n % 2 == 0 else f"ack INC-{(n // 2) % args.seed + 1}"
                name = f"bench-{n}"
                response_url = slack.response_url(name, channel="C0INCIDENTS", user=ALICE.id)
                body = slash_command_body(
                    text,
                    user=ALICE if n % 4 else BOB,
                    channel_id="C0INCIDENTS",
                    channel_name="incidents",
                    response_url=response_url,
                    trigger_id=slack.trigger_id(),
                )
                headers = {"Content-Type": "application/x-www-form-urlencoded", **sign(body)}
                begin = time.perf_counter()
                wall = time.time()
                response = client.post("/slack/events", content=body.encode(), headers=headers)
                acks.append(time.perf_counter() - begin)
                if response.status_code != 200:
                    print(f"command {n} got HTTP {response.status_code}: {response.text}", file=sys.stderr)
                    return 1
                sent_at[name] = wall

            stop.set()
            elapsed = time.monotonic() - started
            for ingester in ingesters:
                ingester.join(timeout=60)
            wait_until(lambda: len(slack.responses()) >= args.commands, timeout=120, message="answers")
            answers = [r.at - sent_at[r.name] for r in slack.responses() if r.name in sent_at]

    accepted = sum(i.accepted for i in ingesters)
    failed = sum(i.failed for i in ingesters)
    print(describe("slash command ack", acks))
    print(describe("answer on response_url", answers))
    print(
        f"ingestion meanwhile: {accepted} notifications in {elapsed:.1f} s = {accepted / elapsed:.0f}/s "
        f"from {args.ingesters} threads ({failed} not accepted)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
