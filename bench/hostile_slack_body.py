"""Memory and time the bot spends refusing an oversized unsigned body on `POST /slack/events`.

Before the request guard (bot/slack/request_guard.py), a 100 MB unsigned body was read whole
before Bolt's 401 and the process grew by the body's size. Now a declared Content-Length over
1 MiB is refused before reading, and a chunked body is refused once 1 MiB has arrived. This
sends both kinds to the real bot (uvicorn, in this process) and prints the answer, the time to
it, how much of the body the client had sent by then, and the process's peak RSS before and
after (ru_maxrss, which only grows, so growth means the body was held).

    python -m bench.hostile_slack_body [--megabytes 100]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx

from bot.sandbox.slack_api import SlackStandIn
from tests.support.botserver import make_settings, run_bot

CHUNK = 64 * 1024


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=100)
    args = parser.parse_args(argv)
    size = args.megabytes * 1024 * 1024
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": str(int(time.time())),
        "X-Slack-Signature": "v0=" + "0" * 64,
    }
    with (
        tempfile.TemporaryDirectory() as tmp,
        SlackStandIn() as slack,
        run_bot(make_settings(Path(tmp), slack.url), run_workers=False) as bot,
    ):
        url = f"{bot.url}/slack/events"
        print(f"peak RSS after start: {_peak_mib():.0f} MiB")
        sent = 0

        def chunks() -> Iterator[bytes]:
            nonlocal sent
            block = b"a" * CHUNK
            while sent < size:
                sent += CHUNK
                yield block

        for kind in ("chunked (no Content-Length)", "Content-Length declared"):
            sent = 0
            started = time.perf_counter()
            try:
                if kind.startswith("chunked"):
                    response = httpx.post(url, content=chunks(), headers=headers, timeout=120)
                else:
                    response = httpx.post(
                        url,
                        content=chunks(),
                        headers={**headers, "Content-Length": str(size)},
                        timeout=120,
                    )
                answer = f"{response.status_code} {response.json().get('error')}"
            except httpx.HTTPError as exc:  # the server may close while the client still sends
                answer = f"connection ended by the server ({type(exc).__name__})"
            elapsed = time.perf_counter() - started
            print(
                f"{args.megabytes} MiB unsigned, {kind}: {answer}; {elapsed * 1000:.0f} ms; "
                f"client had sent {sent / 1024 / 1024:.1f} MiB; peak RSS now {_peak_mib():.0f} MiB"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
