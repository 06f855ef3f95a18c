"""The journal applier alone: CPU per notification turned into an incident.

The applier (bot/intake_applier.py) is what a storm waits for after every notification is
acknowledged: each incident it opens shows up in the storm digest and gets its root message
only once it is applied. This measures it without the server, Slack or other processes:
journals N notifications (each a new group, so each opens an incident) in a SQLite journal
file beside a migrated database, then applies them with the real `JournalApplier` and rules
(routing over 5 channels, storm detection, the outbox jobs an opened incident gets), the way
the applier process does, and prints the time per notification. `--profile` prints cProfile's
top functions instead of a clean time.

    python -m bench.apply [--notifications 300] [--alerts 20 | --payload ingest] [--profile]

`--payload ingest` uses bench/ingest.py's real 3-alert Alertmanager payload.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.storm import group_payload
from bot.db import create_db_engine
from bot.flows.opening import Connected
from bot.intake_applier import JournalApplier
from bot.intake_config import IntakeConfig, IntakeFiles
from bot.intake_journal import FileSink, journal_file_path, open_journal_reader
from bot.intake_rules import build_apply
from bot.schema import migrate
from tests.support.botserver import make_settings

CHANNELS = 5


def bodies(count: int, alerts: int, payload: str) -> list[str]:
    if payload == "ingest":
        from bench.ingest import PAYLOAD

        template = json.loads(PAYLOAD.read_text())
        out = []
        for group in range(count):
            template["groupKey"] = f'{{}}:{{group="{group}"}}'
            out.append(json.dumps(template))
        return out
    return [json.dumps(group_payload(group, CHANNELS, alerts)) for group in range(count)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--notifications", type=int, default=300)
    parser.add_argument("--alerts", type=int, default=20)
    parser.add_argument("--payload", choices=("storm", "ingest"), default="storm")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        routes = "routes:\n" + "".join(
            f"  - name: lane{c}\n    match: ['lane=\"lane{c}\"']\n    channel: C0STORM{c}\n"
            for c in range(CHANNELS)
        )
        (workdir / "routing.yaml").write_text(routes)
        settings = make_settings(workdir, "http://127.0.0.1:9", slack_post_interval=1.0).model_copy(
            update={"routing_file": workdir / "routing.yaml"}
        )
        engine = create_db_engine(settings.database_url)
        migrate(engine)
        journal_path = journal_file_path(settings.database_url)
        assert journal_path is not None
        sink = FileSink(journal_path)
        sink.append(bodies(args.notifications, args.alerts, args.payload))
        config = IntakeConfig.load(IntakeFiles.of(settings))
        applier = JournalApplier(
            engine,
            build_apply(config, Connected(prometheus=True), post_interval=settings.slack_post_interval),
            "bench",
            open_journal_reader(journal_path),
        )
        profile = cProfile.Profile() if args.profile else None
        applied = 0
        started = time.perf_counter()
        if profile is not None:
            profile.enable()
        while batch := applier.apply_batch():
            applied += len(batch)
        if profile is not None:
            profile.disable()
        elapsed = time.perf_counter() - started
        sink.close()
        engine.dispose()
    kind = "the 3-alert ingest payload" if args.payload == "ingest" else f"{args.alerts} alerts each"
    print(
        f"{applied} notifications ({kind}), each a new incident: {elapsed:.2f} s, "
        f"{elapsed / applied * 1000:.2f} ms per notification{' (profiled)' if profile else ''}"
    )
    if profile is not None:
        pstats.Stats(profile).sort_stats("cumulative").print_stats(40)
    return 0


if __name__ == "__main__":
    sys.exit(main())
