"""bot.actions.silences against a real Alertmanager (Debian 0.25) started by promstack."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from bot.actions.silences import (
    AlertmanagerSilences,
    Matcher,
    Silence,
    matchers_for_alert,
    parse_duration,
)
from bot.errors import NotFound, PayloadError, PermanentUpstreamError, RetryableUpstreamError
from tests.support.promstack import AlertmanagerServer, poll_until

pytest_plugins = ["tests.support.promstack"]
pytestmark = pytest.mark.prometheus

ALERT = {
    "alertname": "ModelLatencyHigh",
    "namespace": "llm-prod",
    # Regex metacharacters: as a regex this would also match the sibling below.
    "deployment": "vllm-llama.*(3)+",
    "severity": "page",
}
SIBLING = {**ALERT, "deployment": "vllm-llama-70b3"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def silences(alertmanager: AlertmanagerServer) -> AsyncIterator[AlertmanagerSilences]:
    client = AlertmanagerSilences(alertmanager.url, timeout=5.0, attempts=2, backoff_max=0.2)
    yield client
    await client.aclose()


def _post_alert(am: AlertmanagerServer, labels: dict[str, str]) -> None:
    now = datetime.now(UTC)
    am.post_alerts(
        [
            {
                "labels": labels,
                "annotations": {"summary": "p99 latency above 2s"},
                "startsAt": now.isoformat(),
                "endsAt": (now + timedelta(minutes=10)).isoformat(),
                "generatorURL": "http://prometheus.example/graph",
            }
        ]
    )


def _alert_status(am: AlertmanagerServer, labels: dict[str, str]) -> dict[str, Any] | None:
    for alert in am.alerts():
        if alert["labels"] == labels:
            status: dict[str, Any] = alert["status"]
            return status
    return None


# --------------------------------------------------------------------------- create / list / expire


@pytest.mark.anyio
async def test_silence_for_an_alert_silences_exactly_that_alert(
    alertmanager: AlertmanagerServer, silences: AlertmanagerSilences
) -> None:
    silence = await silences.create(
        matchers_for_alert(ALERT),
        duration=parse_duration("2h"),
        created_by="U0123ABCD",
        comment="rollout of a fixed image in progress",
    )

    uuid.UUID(silence.id)
    assert silence.state == "active"
    assert silence.ends_at - silence.starts_at == timedelta(hours=2)
    stored = await silences.get(silence.id)
    assert stored.id == silence.id
    assert stored.state == "active"
    assert set(stored.matchers) == set(matchers_for_alert(ALERT))
    assert all(not m.is_regex and m.is_equal for m in stored.matchers)
    assert stored.ends_at == silence.ends_at
    assert (stored.created_by, stored.comment) == ("U0123ABCD", "rollout of a fixed image in progress")

    _post_alert(alertmanager, ALERT)
    _post_alert(alertmanager, SIBLING)
    silenced = poll_until(
        lambda: (s := _alert_status(alertmanager, ALERT)) and s["silencedBy"] and s,
        timeout=30,
        what="the alert to be silenced",
    )
    assert silenced["silencedBy"] == [silence.id]
    assert silenced["state"] == "suppressed"
    sibling = poll_until(lambda: _alert_status(alertmanager, SIBLING), timeout=30, what="the sibling alert")
    assert sibling["silencedBy"] == []
    assert sibling["state"] == "active"


@pytest.mark.anyio
async def test_list_filters_by_matchers_and_expire_ends_the_silence(
    alertmanager: AlertmanagerServer, silences: AlertmanagerSilences
) -> None:
    prod = await silences.create(
        matchers_for_alert(ALERT), duration=timedelta(minutes=30), created_by="U1", comment="prod"
    )
    quoted = {"alertname": "Drift", "note": 'say "hi" \\ now'}
    other = await silences.create(
        matchers_for_alert(quoted), duration=timedelta(minutes=30), created_by="U2", comment="staging"
    )

    assert {s.id for s in await silences.list()} == {prod.id, other.id}
    assert [s.id for s in await silences.list([Matcher("namespace", "llm-prod")])] == [prod.id]
    assert [s.id for s in await silences.list(matchers_for_alert(quoted))] == [other.id]
    assert await silences.list([Matcher("namespace", "llm-staging")]) == []

    _post_alert(alertmanager, ALERT)
    poll_until(
        lambda: (s := _alert_status(alertmanager, ALERT)) and s["silencedBy"] == [prod.id],
        timeout=30,
        what="the alert to be silenced",
    )

    await silences.expire(prod.id)

    assert (await silences.get(prod.id)).state == "expired"
    assert [s.id for s in await silences.list()] == [other.id]
    everything = await silences.list(active_only=False)
    assert {s.id: s.state for s in everything} == {prod.id: "expired", other.id: "active"}
    poll_until(
        lambda: (s := _alert_status(alertmanager, ALERT)) and s["silencedBy"] == [] and s,
        timeout=30,
        what="the alert to be unsilenced",
    )
    await silences.expire(prod.id)  # a second click is a no-op


@pytest.mark.anyio
async def test_unknown_and_malformed_ids(silences: AlertmanagerSilences) -> None:
    unknown = str(uuid.uuid4())
    with pytest.raises(NotFound, match=f"no silence {unknown}"):
        await silences.expire(unknown)
    with pytest.raises(NotFound, match=f"no silence {unknown}"):
        await silences.get(unknown)
    with pytest.raises(PayloadError, match="'not-an-id' is not a silence id"):
        await silences.expire("not-an-id")


# --------------------------------------------------------------------------- refusals


@pytest.mark.anyio
async def test_reason_duration_and_matchers_are_checked_before_sending(
    silences: AlertmanagerSilences,
) -> None:
    matchers = matchers_for_alert(ALERT)
    with pytest.raises(PayloadError, match="needs a reason"):
        await silences.create(matchers, duration=timedelta(hours=1), created_by="U1", comment="  ")
    with pytest.raises(PayloadError, match="longer than the maximum of 30d"):
        await silences.create(matchers, duration=timedelta(days=31), created_by="U1", comment="x")
    with pytest.raises(PayloadError, match="longer than zero"):
        await silences.create(matchers, duration=timedelta(0), created_by="U1", comment="x")
    with pytest.raises(PayloadError, match="at least one matcher"):
        await silences.create([], duration=timedelta(hours=1), created_by="U1", comment="x")
    assert await silences.list(active_only=False) == []


@pytest.mark.anyio
async def test_alertmanager_refusal_carries_its_message(silences: AlertmanagerSilences) -> None:
    with pytest.raises(PermanentUpstreamError, match="at least one matcher must not match the empty string"):
        await silences.create(
            [Matcher("severity", "")], duration=timedelta(hours=1), created_by="U1", comment="x"
        )
    with pytest.raises(PermanentUpstreamError, match=r"refused creating a silence \(400\).*invalid regular"):
        await silences.create(
            [Matcher("deployment", "vllm-(", is_regex=True)],
            duration=timedelta(hours=1),
            created_by="U1",
            comment="x",
        )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2h", timedelta(hours=2)),
        ("30m", timedelta(minutes=30)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1d", timedelta(days=1)),
        ("90s", timedelta(seconds=90)),
        (" 1H 30M ", timedelta(hours=1, minutes=30)),
        ("1w", timedelta(weeks=1)),
        ("30d", timedelta(days=30)),
    ],
)
def test_parse_duration_accepts(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "bad silence duration '': use a number with a unit, e.g. 90s"),
        ("2", "bad silence duration '2'"),
        ("two hours", "bad silence duration 'two hours'"),
        ("30m1h", "bad silence duration '30m1h'"),
        ("-1h", "bad silence duration '-1h'"),
        ("1.5h", "bad silence duration '1.5h'"),
        ("0m", "silence duration '0m' must be longer than zero"),
        ("31d", "silence duration '31d' is longer than the maximum of 30d"),
        ("5w", "silence duration '5w' is longer than the maximum of 30d"),
    ],
)
def test_parse_duration_refuses(text: str, message: str) -> None:
    with pytest.raises(PayloadError) as info:
        parse_duration(text)
    assert message in str(info.value)


def test_matchers_for_alert_are_literal_equality_matchers() -> None:
    assert matchers_for_alert({"b": "x|y", "a": ".*"}) == [Matcher("a", ".*"), Matcher("b", "x|y")]
    with pytest.raises(PayloadError, match="without labels"):
        matchers_for_alert({})
    with pytest.raises(PayloadError, match="bad label name '1bad'"):
        Matcher("1bad", "x")


# --------------------------------------------------------------------------- failures on the way


@pytest.mark.anyio
async def test_alertmanager_down_is_retryable_with_a_clear_message(
    alertmanager_factory: Callable[..., AlertmanagerServer],
) -> None:
    am = alertmanager_factory()
    am.stop()
    async with AlertmanagerSilences(
        am.url, timeout=2.0, attempts=2, backoff_max=0.1, bearer_token="s3cret-token"
    ) as client:
        with pytest.raises(RetryableUpstreamError) as info:
            await client.create(
                matchers_for_alert(ALERT), duration=timedelta(hours=1), created_by="U1", comment="x"
            )
        message = str(info.value)
        assert f"cannot reach Alertmanager at {am.url} while creating a silence" in message
        assert "gave up after 2 attempts" in message
        assert "s3cret-token" not in message
        with pytest.raises(RetryableUpstreamError, match="while listing silences"):
            await client.list()

    with_password = am.url.replace("http://", "http://bob:pw-secret@")
    async with AlertmanagerSilences(with_password, attempts=1) as client:
        with pytest.raises(RetryableUpstreamError) as info:
            await client.expire(str(uuid.uuid4()))
        assert f"cannot reach Alertmanager at {am.url} while expiring silence" in str(info.value)
        assert "pw-secret" not in str(info.value)


@pytest.mark.anyio
async def test_a_server_that_never_answers_times_out() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # accepts connections in the kernel, never answers
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        async with AlertmanagerSilences(url, timeout=0.3, attempts=1) as client:
            with pytest.raises(RetryableUpstreamError, match=r"timed out after 0\.3s while expiring silence"):
                await client.expire(str(uuid.uuid4()))


class FlakyProxy:
    """Relays to Alertmanager; the first POST /api/v2/silences fails as scripted: "lost" forwards
    it and then answers 504 (the silence exists, the answer is lost), "refused" answers 503
    without forwarding."""

    def __init__(self, upstream: str, first_post: str) -> None:
        self.first_post: str | None = first_post
        self.seen: list[tuple[str, str, str | None]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                proxy.seen.append((self.command, self.path, self.headers.get("Authorization")))
                scripted = None
                if self.command == "POST" and self.path.startswith("/api/v2/silences"):
                    scripted, proxy.first_post = proxy.first_post, None
                if scripted != "refused":
                    upstream_response = httpx.request(
                        self.command,
                        upstream + self.path,
                        content=body,
                        headers={"Content-Type": self.headers.get("Content-Type", "application/json")},
                        timeout=10,
                    )
                if scripted is not None:
                    self._answer(504 if scripted == "lost" else 503, b"upstream trouble", "text/plain")
                    return
                self._answer(
                    upstream_response.status_code,
                    upstream_response.content,
                    upstream_response.headers.get("Content-Type", "application/json"),
                )

            def _answer(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_DELETE = _relay

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


@pytest.fixture(params=["lost", "refused"])
def flaky_proxy(request: pytest.FixtureRequest, alertmanager: AlertmanagerServer) -> Iterator[FlakyProxy]:
    proxy = FlakyProxy(alertmanager.url, request.param)
    yield proxy
    proxy.close()


@pytest.mark.anyio
async def test_retried_create_leaves_exactly_one_silence(
    alertmanager: AlertmanagerServer, flaky_proxy: FlakyProxy
) -> None:
    lost = flaky_proxy.first_post == "lost"
    async with AlertmanagerSilences(
        flaky_proxy.url, attempts=3, backoff_max=0.1, bearer_token="s3cret-token"
    ) as client:
        silence = await client.create(
            matchers_for_alert(ALERT), duration=timedelta(hours=1), created_by="U1", comment="retry me"
        )

    stored = alertmanager.silences()
    assert [s["id"] for s in stored] == [silence.id]
    assert isinstance(silence, Silence)
    assert silence.state == "active"
    posts = [seen for seen in flaky_proxy.seen if seen[0] == "POST"]
    assert len(posts) == (1 if lost else 2)
    assert {auth for _, _, auth in flaky_proxy.seen} == {"Bearer s3cret-token"}
