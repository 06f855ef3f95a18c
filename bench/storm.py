"""An alert storm: 10,000 alerts in 500 groups over 5 channels, Slack's real posting pace.

Starts the bot (`python -m bot serve`, SQLite, 8 outbox workers, a routing file sending each
group to one of 5 channels by a label, INCIDENT_BOT_SLACK_POST_INTERVAL=1) against the Slack
stand-in enforcing 1 post per second per channel, fires 500 notifications of 20 alerts each
from 16 client threads in a process of their own (bench/senders.py), and reports:
- that exactly 500 incidents were opened;
- time until every incident was visible in its channel (listed in the storm digest, or its
  own root message, whichever came first);
- time until every incident had its own root message, against the bound Slack's rate sets
  (incidents in the busiest channel x 1 s);
- 429s from the stand-in (posts over Slack's rate: should be 0).

With `--rss N`: afterwards keeps posting notifications (20 alerts each, new groups, resolved
again so history grows) until N alerts in total, printing the bot's resident memory every
20,000 alerts.

    python -m bench.storm [--groups 500] [--alerts-per-group 20] [--channels 5] [--rss 100000]
        [--log bot.log]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from bench.memory import children, rss_kb
from bench.senders import encode, post_notifications
from bot.sandbox.slack_api import SlackStandIn
from tests.support.botserver import BotProcess, make_settings, settings_env, wait_until
from tests.support.payloads import alert, notification

KEY = re.compile(r"INC-\d+")


class StormBot(BotProcess):
    """The bot process with the settings the storm needs beyond the tests' defaults."""

    def __init__(self, *args: Any, extra_env: dict[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.extra_env = extra_env

    def start(self) -> StormBot:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--port", str(self.port)],
            env={**settings_env(self.settings), **self.extra_env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

        def healthy() -> bool:
            try:
                return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, timeout=60, message="bot process")
        return self


def group_payload(group: int, channels: int, alerts: int, *, status: str = "firing") -> dict[str, Any]:
    items = [
        alert(
            f"GpuPoolDown{group}",
            status=status,
            pod=f"pool{group}-{i}",
            lane=f"lane{group % channels}",
            severity="critical" if group % 7 == 0 else "warning",
        )
        for i in range(alerts)
    ]
    return notification(*items, group_key=f'{{}}:{{pool="{group}"}}')


def rss_line(pid: int) -> str:
    """The serving process's resident memory, its children's (the journal applier, the
    multiprocessing resource tracker) and the sum."""
    main = rss_kb(pid) / 1024
    kids = sum(rss_kb(child) for child in children(pid)) / 1024
    return f"{main + kids:.0f} MB (serve {main:.0f} MB, its child processes {kids:.0f} MB)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--groups", type=int, default=500)
    parser.add_argument("--alerts-per-group", type=int, default=20)
    parser.add_argument("--channels", type=int, default=5)
    parser.add_argument(
        "--rss", type=int, default=0, help="then keep going to this many alerts, printing RSS"
    )
    parser.add_argument("--log", type=Path, help="keep the bot's log (at INFO) in this file")
    args = parser.parse_args(argv)
    channels = [f"C0STORM{c}" for c in range(args.channels)]

    with tempfile.TemporaryDirectory() as tmp, SlackStandIn() as slack:
        workdir = Path(tmp)
        for channel in channels:
            slack.add_channel(channel.lower(), channel_id=channel)
        slack.set_rate_limit(1.0)
        routes = "routes:\n" + "".join(
            f"  - name: lane{c}\n    match: ['lane=\"lane{c}\"']\n    channel: {channel}\n"
            for c, channel in enumerate(channels)
        )
        (workdir / "routing.yaml").write_text(routes)
        settings = make_settings(workdir, slack.url, slack_post_interval=1.0, slack_timeout=10.0)
        bot = StormBot(
            settings,
            workdir / "bot.log",
            extra_env={
                "INCIDENT_BOT_ROUTING_FILE": str(workdir / "routing.yaml"),
                "INCIDENT_BOT_WORKERS": "8",
                "INCIDENT_BOT_LOG_LEVEL": "INFO" if args.log else "WARNING",
            },
        ).start()
        assert bot.process is not None
        try:
            bodies = encode(
                [group_payload(g, args.channels, args.alerts_per_group) for g in range(args.groups)]
            )
            started = time.monotonic()
            visible: dict[str, float] = {}
            rooted: dict[str, float] = {}
            digest_seen: dict[str, float] = {}
            done = False

            def observe() -> None:
                now = time.monotonic()
                for channel in channels:
                    for message in slack.messages(channel):
                        event = (message.metadata or {}).get("event_payload") or {}
                        if event.get("digest"):
                            digest_seen.setdefault(channel, now)
                            text = " ".join(
                                str((b.get("text") or {}).get("text", ""))
                                for b in message.blocks
                                if b.get("type") == "section"
                            )
                            for key in KEY.findall(text):
                                visible.setdefault(key, now)
                        elif event.get("incident") and not message.thread_ts:
                            rooted.setdefault(str(event["incident"]), now)
                            visible.setdefault(str(event["incident"]), now)

            with ThreadPoolExecutor(max_workers=1) as sender:
                future = sender.submit(post_notifications, bot.url, bodies)
                while not future.done():
                    observe()
                    time.sleep(0.2)
                acked = future.result()
            all_acked = max(acked) - started
            while not done:
                observe()
                done = len(rooted) >= args.groups and len(visible) >= args.groups
                if time.monotonic() - started > 900:
                    break
                time.sleep(0.2)
            incidents = httpx.get(f"{bot.url}/api/incidents", params={"limit": 500, "status": "all"}).json()
            per_channel = [
                sum(1 for g in range(args.groups) if g % args.channels == c) for c in range(args.channels)
            ]
            bound = max(per_channel) * settings.slack_post_interval
            t_visible = max(visible.values()) - started
            t_rooted = max(rooted.values()) - started
            over_rate = [c for c in slack.calls("chat.postMessage") if c.status == 429]
            print(
                f"{args.groups * args.alerts_per_group} alerts in {args.groups} groups"
                f" over {args.channels} channels"
            )
            print(f"incidents opened: {len(incidents['incidents'])} (root messages: {len(rooted)})")
            print(f"all notifications acknowledged after {all_acked:.1f} s")
            if digest_seen:
                print(
                    f"storm visible (a digest in each of {len(digest_seen)} channels) after "
                    f"{max(digest_seen.values()) - started:.1f} s"
                    f" (first digest after {min(digest_seen.values()) - started:.1f} s,"
                    f" first root message after {min(rooted.values()) - started:.1f} s)"
                )
            print(f"all incidents visible (digest or root) after {t_visible:.1f} s")
            print(
                f"all incidents with their root message after {t_rooted:.1f} s; Slack's rate bound "
                f"{bound:.0f} s; ratio {t_rooted / bound:.2f}x"
            )
            print(f"posts answered 429 (over Slack's rate): {len(over_rate)}")
            print(f"bot RSS after the storm: {rss_line(bot.process.pid)}")

            if args.rss:
                total = args.groups * args.alerts_per_group
                group = args.groups
                step = 20_000
                next_report = ((total // step) + 1) * step
                while total < args.rss:
                    batch = [
                        group_payload(g, args.channels, args.alerts_per_group)
                        for g in range(group, group + 50)
                    ]
                    resolved = [
                        group_payload(g, args.channels, args.alerts_per_group, status="resolved")
                        for g in range(group, group + 50)
                    ]
                    post_notifications(bot.url, encode(batch), in_process=True)
                    post_notifications(bot.url, encode(resolved), in_process=True)
                    group += 50
                    total += 50 * args.alerts_per_group
                    if total >= next_report:
                        print(f"RSS after {total} alerts: {rss_line(bot.process.pid)}", flush=True)
                        next_report += step
        finally:
            bot.stop()
            if args.log:
                args.log.write_bytes((workdir / "bot.log").read_bytes())
    return 0


if __name__ == "__main__":
    sys.exit(main())
