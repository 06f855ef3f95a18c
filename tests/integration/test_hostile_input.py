"""Hostile input, through HTTP into the real bot: unsigned or malformed Slack requests, payloads
Alertmanager could never get accepted, alert text written to break Slack formatting, and
reads of the API without its token.

A `Tripwire` (a real HTTP server on loopback) stands in for every place an unverified request
could make the bot reach out to: it is the Slack Web API base URL and the `response_url` in the
bodies, and the test fails if anything arrives there. The database is compared row by row.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.config import Settings
from bot.http_guards import CloseOnError
from bot.sandbox.slack_api import SlackStandIn
from tests.support.botserver import SIGNING_SECRET, RunningBot, run_bot, wait_until
from tests.support.payloads import alert, notification
from tests.support.postgres import fresh_database
from tests.support.promstack import PrometheusServer, free_port
from tests.support.slack_requests import ALICE, FORM, sign, slash_command_body

MIB = 1024 * 1024


class Tripwire:
    """A loopback HTTP server that records every request; nothing should ever reach it."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        hits = self.hits

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                hits.append(f"{self.command} {self.path}")
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"ok": true}')

            do_GET = do_POST = do_PUT = _record

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> Tripwire:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def assert_untouched(self) -> None:
        # Anything an unverified request set off would be under way by now (the bot answered
        # already); give background tasks a moment to reach out, then look.
        time.sleep(0.3)
        assert self.hits == [], f"the bot reached out for an unverified request: {self.hits}"


@pytest.fixture
def tripwire() -> Iterator[Tripwire]:
    with Tripwire() as wire:
        yield wire


@pytest.fixture
def guarded_bot(settings_for: Callable[..., Settings], tripwire: Tripwire) -> Iterator[RunningBot]:
    """The bot with the tripwire as its Slack Web API: any Slack call fails the test."""
    with run_bot(settings_for(slack_api_url=f"{tripwire.url}/api/")) as running:
        yield running


def state(bot: RunningBot) -> dict[str, int]:
    """Row counts of every table: what a state change would show."""
    with bot.services.engine.connect() as conn:
        names = sa.inspect(conn).get_table_names()
        return {
            n: conn.execute(sa.select(sa.func.count()).select_from(sa.table(n))).scalar_one() for n in names
        }


def post_events(bot: RunningBot, body: bytes | str, headers: Mapping[str, str | bytes]) -> httpx.Response:
    content = body.encode() if isinstance(body, str) else body
    return httpx.post(f"{bot.url}/slack/events", content=content, headers=_raw(headers), timeout=30)


def _raw(headers: Mapping[str, str | bytes]) -> list[tuple[bytes, bytes]]:
    """Header values as bytes, so a test can send what no well-behaved client would."""
    return [(k.encode(), v if isinstance(v, bytes) else v.encode()) for k, v in headers.items()]


def command_body(response_url: str, **changes: str | None) -> str:
    body = slash_command_body(
        "ack INC-1",
        user=ALICE,
        channel_id="C0INCIDENTS",
        channel_name="incidents",
        response_url=response_url,
        trigger_id=f"trig-{secrets.token_hex(4)}",
    )
    fields = dict(pair.split("=", 1) for pair in body.split("&"))
    for key, value in changes.items():
        if value is None:
            fields.pop(key, None)
        else:
            fields[key] = quote(value, safe="")
    return "&".join(f"{k}={v}" for k, v in fields.items())


def click_body(response_url: str, **changes: Any) -> str:
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": ALICE.id, "username": ALICE.name, "name": ALICE.name, "team_id": "T0SANDBOX"},
        "api_app_id": "A0SANDBOX",
        "trigger_id": f"trig-{secrets.token_hex(4)}",
        "team": {"id": "T0SANDBOX", "domain": "sandbox"},
        "channel": {"id": "C0INCIDENTS", "name": "incidents"},
        "response_url": response_url,
        "actions": [{"action_id": "incident_ack", "value": "1", "type": "button", "action_ts": "1.2"}],
    }
    payload.update(changes)
    return "payload=" + quote(json.dumps(payload))


def raw_signature(body: bytes, timestamp: str, secret: str = SIGNING_SECRET) -> str:
    """Slack's v0 signature over raw bytes (slack-sdk's helper needs text)."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


# ------------------------------------------------------------------ /slack/events: unsigned


def test_malformed_timestamp_reaches_nobody_and_logs_nothing_of_the_body(
    guarded_bot: RunningBot, tripwire: Tripwire, caplog: pytest.LogCaptureFixture
) -> None:
    """The reported hole: `X-Slack-Request-Timestamp: abc` made Bolt's check raise and the error
    handler answer the body's response_url (or DM its user_id) with a 500."""
    caplog.set_level(logging.DEBUG)
    before = state(guarded_bot)
    marker = f"marker-{secrets.token_hex(6)}"
    response_url = f"{tripwire.url}/response/{marker}"
    for body in (command_body(response_url, text=marker), click_body(response_url, trigger_id=marker)):
        for timestamp in (
            "abc",
            "",
            "1e9",
            "-1",
            "0x10",
            "1700000000.5",
            ("\u0661\u0667" + "\u0660" * 8).encode(),
            "9" * 40,
        ):
            signature = "v0=" + "0" * 64
            response = post_events(
                guarded_bot,
                body,
                {
                    "Content-Type": FORM,
                    "X-Slack-Request-Timestamp": timestamp,
                    "X-Slack-Signature": signature,
                },
            )
            assert response.status_code == 401, (timestamp, response.text)
            assert "signature" in response.json()["error"].lower()
    tripwire.assert_untouched()
    assert state(guarded_bot) == before
    assert marker not in caplog.text


@pytest.mark.parametrize(
    ("name", "body", "headers", "status"),
    [
        ("no signature headers", "command", {}, 401),
        ("wrong secret", "command", "forged", 401),
        ("five minutes stale", "command", "stale", 401),
        ("signature not hex", "command", {"X-Slack-Signature": "v0=zz"}, 401),
        ("not JSON, unsigned", "{bad", "forged", 401),
        ("payload not JSON, unsigned", "payload=notjson", "forged", 401),
        ("JSON array, unsigned", "[1, 2]", "forged", 401),
        ("invalid UTF-8", b"\xff\xfe payload=\x80", "forged", 400),
    ],
)
def test_unsigned_requests_are_refused_before_anything_happens(
    guarded_bot: RunningBot,
    tripwire: Tripwire,
    name: str,
    body: str | bytes,
    headers: dict[str, str] | str,
    status: int,
) -> None:
    before = state(guarded_bot)
    text: str | bytes = command_body(f"{tripwire.url}/response/x") if body == "command" else body
    raw = text.encode() if isinstance(text, str) else text
    stamp = str(int(time.time()))
    if headers == "forged":
        sent = {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": raw_signature(raw, stamp, "wrong")}
    elif headers == "stale":
        sent = sign(raw.decode(), timestamp=int(time.time()) - 301)
    else:
        assert isinstance(headers, dict)
        sent = {"X-Slack-Request-Timestamp": stamp, **headers} if headers else {}
    response = post_events(guarded_bot, raw, {"Content-Type": FORM, **sent})
    assert response.status_code == status, (name, response.text)
    assert response.json()["error"]
    tripwire.assert_untouched()
    assert state(guarded_bot) == before


# ------------------------------------------------------------------ /slack/events: signed but odd


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("not JSON", "{bad"),
        ("payload not JSON", "payload=notjson"),
        ("JSON array", "[1, 2]"),
        ("JSON string", '"hello"'),
        ("empty form", ""),
        ("user as a list", click_body("http://127.0.0.1:9/r", user=["U0ONCALL1"])),
        ("user without id", click_body("http://127.0.0.1:9/r", user={"name": "alice"})),
        ("channel as a number", click_body("http://127.0.0.1:9/r", channel=5)),
        ("actions not a list", click_body("http://127.0.0.1:9/r", actions={"a": 1})),
        ("actions of strings", click_body("http://127.0.0.1:9/r", actions=["x"])),
        ("action_id a number", click_body("http://127.0.0.1:9/r", actions=[{"action_id": 5, "value": "1"}])),
        (
            "view callback_id a number",
            click_body("http://127.0.0.1:9/r", type="view_submission", view={"callback_id": 5}),
        ),
        ("event as a string", json.dumps({"type": "event_callback", "event_id": "Ev1", "event": "x"})),
        ("enterprise as a number", json.dumps({"type": "event_callback", "enterprise": 7, "event": {}})),
    ],
)
def test_signed_requests_of_the_wrong_shape_are_400(
    guarded_bot: RunningBot, tripwire: Tripwire, name: str, body: str
) -> None:
    before = state(guarded_bot)
    response = post_events(guarded_bot, body, {"Content-Type": FORM, **sign(body)})
    assert response.status_code == 400, (name, response.status_code, response.text)
    assert response.json()["error"]
    tripwire.assert_untouched()
    assert state(guarded_bot) == before


def test_signed_command_without_user_id_is_refused_and_not_recorded(
    guarded_bot: RunningBot, tripwire: Tripwire
) -> None:
    for user_id in (None, "", "  "):
        before = state(guarded_bot)
        body = command_body(f"{tripwire.url}/response/x", user_id=user_id, text="declare GPU on fire")
        response = post_events(guarded_bot, body, {"Content-Type": FORM, **sign(body)})
        assert response.status_code == 200
        assert "without a user_id" in response.json()["text"]
        assert "nothing was done" in response.json()["text"]
        tripwire.assert_untouched()
        assert state(guarded_bot) == before


# ------------------------------------------------------------------ /slack/events: size


def test_large_slack_bodies_are_refused_before_they_are_read(
    guarded_bot: RunningBot, tripwire: Tripwire
) -> None:
    big = b"payload=" + b"a" * (2 * MIB)
    stamp = str(int(time.time()))
    headers = {
        "Content-Type": FORM,
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": "v0=" + "0" * 64,
    }
    declared = post_events(guarded_bot, big, headers)
    assert declared.status_code == 413
    assert "larger than" in declared.json()["error"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer encoding
        for _ in range(40):
            yield b"a" * 64 * 1024

    streamed = httpx.post(f"{guarded_bot.url}/slack/events", content=chunks(), headers=headers, timeout=30)
    assert streamed.status_code == 413
    signed = big.decode()
    assert post_events(guarded_bot, signed, {"Content-Type": FORM, **sign(signed)}).status_code == 413
    tripwire.assert_untouched()


# ------------------------------------------------------------------ /slack/events: property


# What h11 lets a client send in a header value: visible ASCII and obs-text (0x80-0xFF).
_HEADER_TEXT = st.binary(max_size=80).map(lambda b: bytes(c for c in b if 0x21 <= c <= 0x7E or c >= 0x80))


@st.composite
def hostile_slack_request(draw: st.DrawFn) -> tuple[bytes, dict[str, str | bytes]]:
    marker_url = "http://127.0.0.1:9/response/x"
    body: bytes = draw(
        st.one_of(
            st.binary(max_size=400),
            st.text(max_size=400).map(str.encode),
            st.builds(lambda t: command_body(marker_url, text=t).encode(), st.text(max_size=50)),
            st.builds(
                lambda u: click_body(marker_url, user=u).encode(),
                st.one_of(st.none(), st.integers(), st.text(max_size=10), st.lists(st.text(max_size=5))),
            ),
            st.recursive(
                st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                lambda inner: (
                    st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
                ),
                max_leaves=20,
            ).map(lambda v: json.dumps(v).encode()),
        )
    )
    now = int(time.time())
    timestamp = draw(
        st.one_of(
            st.just(str(now)),
            st.just(str(now - 400)),
            st.integers(min_value=-(10**30), max_value=10**30).map(str),
            _HEADER_TEXT,
        )
    )
    stamp = timestamp.decode("latin-1") if isinstance(timestamp, bytes) else timestamp
    signature = draw(
        st.one_of(
            st.just(raw_signature(body, stamp, "not-the-secret")),
            st.just(raw_signature(body, str(now - 400), SIGNING_SECRET)),  # right secret, stale
            st.just(raw_signature(body, str(now), SIGNING_SECRET).upper()),  # not Slack's spelling
            st.just("v0=" + hashlib.sha256(body).hexdigest()),
            _HEADER_TEXT,
        )
    )
    headers: dict[str, str | bytes] = {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": signature}
    drop = draw(st.sampled_from([(), ("X-Slack-Request-Timestamp",), ("X-Slack-Signature",)]))
    for name in drop:
        headers.pop(name)
    headers["Content-Type"] = draw(st.sampled_from([FORM, "application/json", "text/plain"]))
    return body, headers


def test_property_no_unsigned_request_gets_a_5xx_or_acts(guarded_bot: RunningBot, tripwire: Tripwire) -> None:
    before = state(guarded_bot)
    with httpx.Client(base_url=guarded_bot.url, timeout=30) as client:

        @settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        @given(hostile_slack_request())
        def check(request: tuple[bytes, dict[str, str | bytes]]) -> None:
            body, headers = request
            response = client.post("/slack/events", content=body, headers=_raw(headers))
            assert response.status_code in (400, 401, 413), (response.status_code, response.text)

        check()
    tripwire.assert_untouched()
    assert state(guarded_bot) == before


_ODD = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def signed_odd_request(draw: st.DrawFn) -> str:
    """Slack-shaped but odd: a known type, with any of the fields Bolt and the bot read replaced."""
    payload: dict[str, Any] = {
        "type": draw(st.sampled_from(["block_actions", "event_callback", "view_submission", "shortcut"])),
        "user": {"id": "U0ONCALL1"},
        "team": {"id": "T0SANDBOX"},
        "trigger_id": "trig-1",
        "actions": [{"action_id": "incident_ack", "value": "1", "action_ts": "1.2"}],
        "event": {"type": "app_home_opened", "user": "U0ONCALL1", "tab": "home"},
        "event_id": f"Ev{secrets.token_hex(4)}",
    }
    for name in draw(
        st.lists(
            st.sampled_from(
                [
                    "user",
                    "team",
                    "actions",
                    "event",
                    "view",
                    "channel",
                    "container",
                    "enterprise",
                    "trigger_id",
                    "authorizations",
                ]
            ),
            max_size=3,
            unique=True,
        )
    ):
        payload[name] = draw(_ODD)
    for name in draw(st.lists(st.sampled_from(["action_id", "block_id", "value"]), max_size=2, unique=True)):
        if (
            isinstance(payload["actions"], list)
            and payload["actions"]
            and isinstance(payload["actions"][0], dict)
        ):
            payload["actions"][0][name] = draw(_ODD)
    if payload["type"] == "event_callback":
        return json.dumps(payload)
    return "payload=" + quote(json.dumps(payload))


def test_property_signed_but_odd_requests_never_get_a_5xx(bot: RunningBot) -> None:
    with httpx.Client(base_url=bot.url, timeout=30) as client:

        @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        @given(signed_odd_request())
        def check(body: str) -> None:
            kind = "application/json" if body.startswith("{") else FORM
            response = client.post(
                "/slack/events", content=body, headers={"Content-Type": kind, **sign(body)}
            )
            assert response.status_code < 500, (body, response.status_code, response.text)

        check()
        assert client.get("/readyz").status_code == 200


# ------------------------------------------------------------------ /alertmanager


def _payload(**alert_changes: Any) -> dict[str, Any]:
    item = alert(pod="vllm-0")
    item.update(alert_changes)
    return notification(item)


def _deep(levels: int) -> Any:
    value: Any = {}
    for _ in range(levels):
        value = {"x": value}
    return value


def _cases() -> list[tuple[str, bytes, int, str]]:
    """(name, body, status, field named in the answer)."""
    surrogate_value = json.dumps(_payload()).replace('"vllm-0"', '"\\ud800"').encode()
    surrogate_name = json.dumps(_payload()).replace('"pod"', '"p\\udfff"').encode()
    huge_int = json.dumps(_payload()).replace('"version": "4"', '"version": "4", "n": ' + "9" * 5000).encode()
    return [
        ("nested 5,000 deep", b"[" * 5000 + b"]" * 5000, 400, "(body)"),
        (
            "nested object 5,000 deep",
            json.dumps(_payload()).encode()[:-1] + b', "x": ' + b'{"a":' * 5000 + b"1" + b"}" * 5000 + b"}",
            400,
            "(body)",
        ),
        ("integer of 5,000 digits", huge_int, 400, "(body)"),
        ("lone surrogate in a label value", surrogate_value, 400, "commonLabels.pod|alerts.0.labels.pod"),
        ("lone surrogate in a label name", surrogate_name, 400, "commonLabels|alerts.0.labels"),
        (
            "truncatedAlerts beyond 64 bits",
            json.dumps({**_payload(), "truncatedAlerts": 2**70}).encode(),
            422,
            "truncatedAlerts",
        ),
        ("extras nested 500 deep", json.dumps({**_payload(), "extra": _deep(500)}).encode(), 400, "(body)"),
        (
            "startsAt at the end of time",
            json.dumps(_payload(startsAt="9999-12-31T23:59:59-10:00")).encode(),
            422,
            "alerts.0.startsAt",
        ),
        (
            "startsAt before year 1 in UTC",
            json.dumps(_payload(startsAt="0001-01-01T00:00:00+10:00")).encode(),
            422,
            "alerts.0.startsAt",
        ),
        (
            "endsAt at the end of time",
            json.dumps(_payload(endsAt="9999-12-31T23:59:59-10:00")).encode(),
            422,
            "alerts.0.endsAt",
        ),
        (
            "NaN",
            json.dumps(_payload()).replace('"version": "4"', '"version": "4", "n": NaN').encode(),
            400,
            "(body)",
        ),
        (
            "1e400",
            json.dumps(_payload()).replace('"version": "4"', '"version": "4", "n": 1e400').encode(),
            400,
            "n",
        ),
    ]


@pytest.mark.parametrize(("name", "body", "status", "field"), _cases(), ids=[c[0] for c in _cases()])
def test_payloads_that_can_never_succeed_get_a_4xx_naming_the_problem(
    bot: RunningBot, name: str, body: bytes, status: int, field: str
) -> None:
    """And the keep-alive connection stays usable: the next request on it is answered."""
    host = urlsplit(bot.url)
    conn = http.client.HTTPConnection(host.hostname or "127.0.0.1", host.port, timeout=30)
    headers = {"Content-Type": "application/json", "Authorization": "Bearer am-webhook-secret"}
    conn.request("POST", "/alertmanager", body=body, headers=headers)
    response = conn.getresponse()
    answer = json.loads(response.read())
    assert response.status == status, (name, answer)
    if status == 400:
        assert answer["field"] in field.split("|")
        assert answer["error"]
    else:
        assert field in [d["field"] for d in answer["details"]], answer
    assert response.getheader("connection") != "close"
    conn.request("GET", "/readyz")
    again = conn.getresponse()
    assert again.status == 200, again.read()
    again.read()
    conn.close()
    assert bot.incidents() == []


def test_timestamp_at_the_last_accepted_second_is_stored(bot: RunningBot) -> None:
    response = bot.post_alert(_payload(startsAt="2026-01-01T00:00:00Z", endsAt="9998-12-31T23:59:59Z"))
    assert response.status_code == 200, response.text
    assert bot.incidents()[0]["status"] == "triggered"


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=15,
)
_PATHS = [
    ("alerts", 0, "labels", "pod"),
    ("alerts", 0, "labels"),
    ("alerts", 0, "startsAt"),
    ("alerts", 0, "endsAt"),
    ("alerts", 0, "fingerprint"),
    ("alerts", 0, "annotations"),
    ("alerts", 0),
    ("alerts",),
    ("truncatedAlerts",),
    ("groupKey",),
    ("status",),
    ("commonLabels",),
    ("version",),
    ("extra",),
]


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_property_mutated_alertmanager_payloads_never_get_a_5xx(
    settings_for: Callable[..., Settings], request: pytest.FixtureRequest, database: str
) -> None:
    overrides = {}
    if database == "postgresql":
        overrides["database_url"] = fresh_database(request.getfixturevalue("postgres"))
    with run_bot(settings_for(**overrides), run_workers=False) as bot, bot.client() as client:

        @settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        @given(
            st.sampled_from(_PATHS),
            _JSON | st.sampled_from(["9999-12-31T23:59:59-10:00", "0001-01-01T00:00:00+14:00", "\ud800"]),
            st.sampled_from(["replace", "delete"]),
        )
        def check(path: tuple[str | int, ...], value: Any, how: str) -> None:
            payload: Any = _payload()
            payload["groupKey"] = f"g-{secrets.token_hex(4)}"
            target = payload
            for step in path[:-1]:
                target = target[step]
            if how == "delete" and isinstance(target, dict):
                target.pop(path[-1], None)
            elif how == "delete":
                target.pop(path[-1])
            else:
                target[path[-1]] = value
            body = json.dumps(payload).encode("utf-8", "surrogatepass")
            response = client.post(
                "/alertmanager", content=body, headers={"Content-Type": "application/json"}
            )
            assert response.status_code < 500, (path, value, response.text)
            assert response.status_code in (200, 400, 422), response.text

        check()
        assert client.get("/readyz").status_code == 200


# ------------------------------------------------------------------ alert text in Slack


def test_alert_text_cannot_break_slack_formatting(bot: RunningBot, slack: SlackStandIn) -> None:
    hostile = alert("Lat*ency <!channel>", pod="vllm-`0`<!here>", model_name="a*b_c~d~")
    hostile["annotations"] = {"summary": "*loud* _italic_ `code` <!channel>", "description": "~x~ <@U1>"}
    key = bot.post_alert(notification(hostile, group_key="hostile")).json()["incident"]
    incident = wait_until(lambda: bot.incident(key)["ts"] and bot.incident(key), message="root posted")
    message = slack.message("C0INCIDENTS", incident["ts"])
    texts = [message.text, *_block_texts(message.blocks)]
    everything = "\n".join(texts)
    for mention in ("<!channel>", "<!here>", "<@U1>"):
        assert mention not in everything
    context = next(t for t in _block_texts(message.blocks) if "pod=" in t)
    # Each label is one code span: the value's backticks do not end it.
    assert context.count("`") % 2 == 0
    assert "`pod=vllm-\u02cb0\u02cb&lt;!here&gt;`" in context
    description = next(t for t in _block_texts(message.blocks) if "x" in t and "@U1" in t)
    assert "~" not in description


def test_graph_upload_title_and_alt_text_cannot_mention_anyone(
    settings_for: Callable[..., Settings],
    slack: SlackStandIn,
    prometheus_factory: Callable[..., PrometheusServer],
) -> None:
    prometheus = prometheus_factory()
    hostile = alert("<!channel> *Lat*")
    hostile["generatorURL"] = f"{prometheus.url}/graph?g0.expr={quote('vector(1)')}&g0.tab=1"
    with run_bot(settings_for(prometheus_url=prometheus.url)) as bot:
        assert bot.post_alert(notification(hostile, group_key="graph")).status_code == 200
        upload = wait_until(
            lambda: [u for u in slack.uploads() if u.completed], timeout=60, message="graph upload"
        )[0]
        for field in (upload.title, upload.alt_txt or ""):
            assert "<!channel>" not in field
            assert "channel>" in field  # still readable: only a zero-width space was added
        assert upload.alt_txt


def test_runbook_render_error_names_no_server_path(
    settings_for: Callable[..., Settings], slack: SlackStandIn, tmp_path: Path
) -> None:
    runbooks = tmp_path / "hostile-runbooks"
    runbooks.mkdir()
    (runbooks / "needs-gpu.yaml").write_text(
        "name: needs-gpu\n"
        "description: GPU {{ labels.gpu }} is hot\n"
        "match:\n"
        '  - alertname="GPUHot"\n'
        "steps:\n"
        "  - Check GPU {{ labels.gpu }}.\n"
    )
    with run_bot(settings_for(runbooks_dir=runbooks)) as bot:
        key = bot.post_alert(notification(alert("GPUHot"), group_key="gpu")).json()["incident"]
        incident = wait_until(lambda: bot.incident(key)["ts"] and bot.incident(key), message="root posted")

        def warning() -> str | None:
            for m in slack.thread("C0INCIDENTS", incident["ts"]):
                if "could not be rendered" in m.text + json.dumps(m.blocks):
                    return m.text + json.dumps(m.blocks)
            return None

        text = wait_until(warning, message="runbook warning")
        assert text is not None
        assert "needs-gpu.yaml" in text
        assert str(tmp_path) not in text
        assert str(runbooks) not in text


def _block_texts(blocks: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for block in blocks:
        if isinstance(block.get("text"), dict):
            out.append(block["text"]["text"])
        for element in block.get("elements") or []:
            if isinstance(element, dict) and "text" in element and isinstance(element["text"], str):
                out.append(element["text"])
        for field in block.get("fields") or []:
            out.append(field["text"])
    return out


# ------------------------------------------------------------------ the API token


def test_api_needs_the_token_when_one_is_set(settings_for: Callable[..., Settings]) -> None:
    with (
        run_bot(settings_for(api_token="api-secret-1"), run_workers=False) as bot,
        httpx.Client(base_url=bot.url, timeout=30) as client,
    ):
        for path in (
            "/api/incidents",
            "/api/incidents/1",
            "/api/incidents/1/postmortem",
            "/api/openapi.json",
            "/api/models",
            "/api/models/llama-3-8b",
        ):
            for header in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic api-secret-1"}):
                refused = client.get(path, headers=header)
                assert refused.status_code == 401, (path, header)
                assert refused.headers["www-authenticate"].startswith("Bearer")
                assert "api-secret-1" not in refused.text
        allowed = client.get("/api/incidents", headers={"Authorization": "Bearer api-secret-1"})
        assert allowed.status_code == 200
        assert allowed.json() == {"incidents": []}
        openapi = client.get("/api/openapi.json", headers={"Authorization": "Bearer api-secret-1"})
        assert openapi.status_code == 200
        assert openapi.json()["info"]["title"] == "incident-bot"
        # The webhook is a plain ASGI route, documented all the same.
        assert "401" in openapi.json()["paths"]["/alertmanager"]["post"]["responses"]
        for open_path in ("/healthz", "/readyz", "/metrics"):
            assert client.get(open_path).status_code == 200, open_path
        assert "api-secret-1" not in client.get("/metrics").text


def test_api_is_open_when_no_token_is_set(bot: RunningBot) -> None:
    assert httpx.get(f"{bot.url}/api/incidents", timeout=30).status_code == 200


# ------------------------------------------------------------------ a 500, should one happen


def test_an_unexpected_error_answers_500_with_connection_close() -> None:
    """No route of the bot should raise; if one does, the client is told the connection ends
    (uvicorn would otherwise drop the keep-alive connection silently, losing the next request)."""

    async def broken(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("a bug")

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(CloseOnError(broken), host="127.0.0.1", port=port, log_config=None, lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, message="server to start")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/anything")
        response = conn.getresponse()
        assert response.status == 500
        assert response.getheader("connection") == "close"
        assert json.loads(response.read()) == {"error": "internal error; it is logged"}
        conn.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
