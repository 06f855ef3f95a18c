"""The Slack stand-in, driven by the real slack-sdk clients over real HTTP.

What matters is that slack-sdk (sync and async, as the bot uses them) sees what slack.com
would send: response shapes, `ok: false` errors as `SlackApiError`, 429 + Retry-After that the
SDK's retry handler honours, and state that later calls (history, replies) reflect.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook import WebhookClient

from bot.sandbox.slack_api import SlackStandIn
from bot.sandbox.slack_models import RecordedCall
from bot.sandbox.transcript import describe_call

TS = re.compile(r"^\d{10}\.\d{6}$")
# The 8-byte PNG signature, an IHDR chunk start and bytes that break any text decoding.
PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01"
    b"\x08\x06\x00\x00\x00\x1f\x15\xc4\x89\xff\xfe\x00\r\n"
)
BUTTONS: list[dict[str, Any]] = [
    {"type": "section", "text": {"type": "mrkdwn", "text": "*INC-1* vLLM p99 latency high"}},
    {
        "type": "actions",
        "elements": [
            {
                "type": "button",
                "text": {"type": "plain_text", "text": "Acknowledge"},
                "action_id": "ack",
                "value": "1",
            },
            {
                "type": "button",
                "text": {"type": "plain_text", "text": "Resolve"},
                "action_id": "resolve",
                "value": "1",
            },
        ],
    },
]


@pytest.fixture
def standin() -> Iterator[SlackStandIn]:
    with SlackStandIn() as server:
        yield server


@pytest.fixture
def client(standin: SlackStandIn) -> WebClient:
    return WebClient(token=standin.bot_token, base_url=standin.url, timeout=10)


def api_error(call: Any) -> SlackApiError:
    with pytest.raises(SlackApiError) as info:
        call()
    return info.value


# ------------------------------------------------------------------ basics


def test_url_ends_in_api_and_auth_test_names_the_bot(standin: SlackStandIn, client: WebClient) -> None:
    assert standin.url == f"{standin.base}/api/"
    assert standin.base.startswith("http://127.0.0.1:")
    auth = client.auth_test()
    assert auth["ok"] is True
    assert (auth["user_id"], auth["team_id"], auth["bot_id"]) == ("U0BOT", "T0SANDBOX", "B0BOT")


def test_wrong_or_missing_token_is_refused_like_slack(standin: SlackStandIn) -> None:
    wrong = WebClient(token="xoxb-not-the-sandbox-token", base_url=standin.url)
    error = api_error(lambda: wrong.chat_postMessage(channel="C0INCIDENTS", text="hi"))
    assert (error.response.status_code, error.response["error"]) == (200, "invalid_auth")
    anonymous = WebClient(base_url=standin.url)
    error = api_error(lambda: anonymous.auth_test())
    assert error.response["error"] == "not_authed"
    assert standin.messages("incidents") == []
    assert all(
        c.headers.get("Authorization", "").endswith("[REDACTED]") for c in standin.calls("chat.postMessage")
    )


def test_unknown_method_is_an_error(client: WebClient) -> None:
    error = api_error(
        lambda: client.api_call("chat.postMesage", json={"channel": "C0INCIDENTS", "text": "x"})
    )
    assert error.response["error"] == "unknown_method"


# ------------------------------------------------------------------ messages


def test_post_message_returns_channel_ts_and_the_stored_message(
    standin: SlackStandIn, client: WebClient
) -> None:
    first = client.chat_postMessage(channel="#incidents", text="INC-1 opened", blocks=BUTTONS)
    second = client.chat_postMessage(channel="incidents", text="INC-2 opened")
    assert first["channel"] == "C0INCIDENTS"
    assert TS.match(first["ts"])
    assert TS.match(second["ts"])
    assert float(second["ts"]) > float(first["ts"])
    message = first["message"]
    assert (message["text"], message["bot_id"], message["user"]) == ("INC-1 opened", "B0BOT", "U0BOT")
    assert [b["type"] for b in message["blocks"]] == ["section", "actions"]
    assert all(b["block_id"] for b in message["blocks"])  # Slack fills in block ids
    assert [m.text for m in standin.messages("C0INCIDENTS")] == ["INC-1 opened", "INC-2 opened"]


def test_update_keeps_the_ts_and_an_edit_history(standin: SlackStandIn, client: WebClient) -> None:
    posted = client.chat_postMessage(channel="C0INCIDENTS", text="INC-1 triggered", blocks=BUTTONS)
    updated = client.chat_update(channel="C0INCIDENTS", ts=posted["ts"], text="INC-1 acknowledged by alice")
    assert (updated["ts"], updated["text"]) == (posted["ts"], "INC-1 acknowledged by alice")
    [message] = standin.messages("C0INCIDENTS")
    assert message.text == "INC-1 acknowledged by alice"
    assert len(message.blocks) == 2  # blocks not sent in the update are kept
    assert [e.text for e in message.edits] == ["INC-1 triggered"]
    history = client.conversations_history(channel="C0INCIDENTS")["messages"]
    assert history[0]["edited"]["user"] == "U0BOT"

    missing = api_error(lambda: client.chat_update(channel="C0INCIDENTS", ts="1700000000.000001", text="x"))
    assert missing.response["error"] == "message_not_found"
    human = standin.post_as_user("incidents", "U0ONCALL1", "looking")
    refused = api_error(lambda: client.chat_update(channel="C0INCIDENTS", ts=human.ts, text="x"))
    assert refused.response["error"] == "cant_update_message"


def test_concurrent_posts_get_unique_increasing_ts(standin: SlackStandIn, client: WebClient) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        posts = pool.map(lambda n: client.chat_postMessage(channel="C0INCIDENTS", text=f"{n}"), range(40))
        answers = list(posts)
    stamps = [a["ts"] for a in answers]
    assert len(set(stamps)) == 40
    stored = [m.ts for m in standin.messages("incidents")]
    assert stored == sorted(stamps, key=float)
    assert len(standin.calls("chat.postMessage")) == 40


def test_chunked_request_bodies_are_read(standin: SlackStandIn) -> None:
    host, port = standin.base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    body = iter([b'{"channel": "C0INCIDENTS", ', b'"text": "chunked"}'])
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {standin.bot_token}"}
    connection.request("POST", "/api/chat.postMessage", body=body, headers=headers, encode_chunked=True)
    assert json.loads(connection.getresponse().read())["ok"] is True
    connection.close()
    assert [m.text for m in standin.messages("incidents")] == ["chunked"]


def test_thread_replies_come_back_in_thread_order(standin: SlackStandIn, client: WebClient) -> None:
    root = client.chat_postMessage(channel="C0INCIDENTS", text="INC-3")["ts"]
    for i in range(3):
        client.chat_postMessage(channel="C0INCIDENTS", thread_ts=root, text=f"detail {i}")
    standin.post_as_user("incidents", "U0ONCALL2", "on it", thread_ts=root)
    replies = client.conversations_replies(channel="C0INCIDENTS", ts=root)["messages"]
    assert [m["text"] for m in replies] == ["INC-3", "detail 0", "detail 1", "detail 2", "on it"]
    assert replies[0]["reply_count"] == 4
    assert replies[0]["reply_users"] == ["U0BOT", "U0ONCALL2"]
    assert all(m["thread_ts"] == root for m in replies)
    assert [m.text for m in standin.thread("incidents", root)] == [
        "detail 0",
        "detail 1",
        "detail 2",
        "on it",
    ]
    assert [m.text for m in standin.messages("incidents")] == ["INC-3"]  # replies stay in the thread
    paged = client.conversations_replies(channel="C0INCIDENTS", ts=root, limit=2)
    assert paged["has_more"] is True
    assert paged["response_metadata"]["next_cursor"]
    rest = client.conversations_replies(
        channel="C0INCIDENTS", ts=root, cursor=paged["response_metadata"]["next_cursor"]
    )
    assert [m["text"] for m in rest["messages"]] == ["INC-3", "detail 2", "on it"]


def test_history_is_newest_first_paged_and_carries_metadata_on_request(client: WebClient) -> None:
    stamps = []
    for n in range(5):
        posted = client.chat_postMessage(
            channel="C0INCIDENTS",
            text=f"INC-{n}",
            metadata={"event_type": "incident_opened", "event_payload": {"incident": n}},
        )
        stamps.append(posted["ts"])
    plain = client.conversations_history(channel="C0INCIDENTS")
    assert [m["text"] for m in plain["messages"]] == ["INC-4", "INC-3", "INC-2", "INC-1", "INC-0"]
    assert "metadata" not in plain["messages"][0]
    with_meta = client.conversations_history(channel="C0INCIDENTS", include_all_metadata=True, limit=2)
    assert [m["metadata"]["event_payload"]["incident"] for m in with_meta["messages"]] == [4, 3]
    assert with_meta["has_more"] is True
    texts = [
        m["text"]
        for page in client.conversations_history(channel="C0INCIDENTS", limit=2)
        for m in page["messages"]
    ]
    assert texts == ["INC-4", "INC-3", "INC-2", "INC-1", "INC-0"]  # slack-sdk follows next_cursor
    window = client.conversations_history(channel="C0INCIDENTS", oldest=stamps[1], latest=stamps[3])
    assert [m["text"] for m in window["messages"]] == ["INC-2"]
    inclusive = client.conversations_history(
        channel="C0INCIDENTS", oldest=stamps[1], latest=stamps[3], inclusive=True
    )
    assert [m["text"] for m in inclusive["messages"]] == ["INC-3", "INC-2", "INC-1"]


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("blocks", "pointer"),
    [
        ([{"type": "divider"}] * 51, "/blocks"),
        ([{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}], "/blocks/0/text/text"),
        ([{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}], "/blocks/0/text/text"),
        ([{"type": "sectoin", "text": {"type": "mrkdwn", "text": "typo"}}], "/blocks/0/type"),
        (
            [{"type": "actions", "elements": [{**BUTTONS[1]["elements"][0], "action_id": "a" * 256}]}],
            "/blocks/0/elements/0/action_id",
        ),
        (
            [{"type": "actions", "elements": [{**BUTTONS[1]["elements"][0], "value": "v" * 2001}]}],
            "/blocks/0/elements/0/value",
        ),
        ([{"type": "divider", "block_id": "b" * 256}], "/blocks/0/block_id"),
    ],
)
def test_blocks_slack_would_refuse_get_invalid_blocks(
    standin: SlackStandIn, client: WebClient, blocks: list[dict[str, Any]], pointer: str
) -> None:
    error = api_error(lambda: client.chat_postMessage(channel="C0INCIDENTS", text="x", blocks=blocks))
    assert error.response["error"] == "invalid_blocks"
    assert any(f"[json-pointer:{pointer}]" in m for m in error.response["response_metadata"]["messages"])
    assert standin.messages("incidents") == []


def test_fifty_blocks_are_fine(client: WebClient) -> None:
    assert client.chat_postMessage(channel="C0INCIDENTS", text="x", blocks=[{"type": "divider"}] * 50)["ok"]


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"channel": "C0DOESNOTEXIST", "text": "x"}, "channel_not_found"),
        ({"channel": "#no-such-channel", "text": "x"}, "channel_not_found"),
        ({"channel": "C0SRELEADS", "text": "x"}, "not_in_channel"),
        ({"channel": "C0INCIDENTS"}, "no_text"),
        ({"channel": "C0INCIDENTS", "text": "x" * 40_001}, "msg_too_long"),
        ({"channel": "C0INCIDENTS", "text": "x", "metadata": "{not json"}, "invalid_metadata_format"),
        (
            {"channel": "C0INCIDENTS", "text": "x", "metadata": {"event_payload": {}}},
            "invalid_metadata_schema",
        ),
        ({"text": "x"}, "invalid_arguments"),
    ],
)
def test_ok_false_errors_raise_slack_api_error(
    client: WebClient, arguments: dict[str, Any], error: str
) -> None:
    failure = api_error(lambda: client.api_call("chat.postMessage", json=arguments))
    assert failure.response.status_code == 200
    assert failure.response["ok"] is False
    assert failure.response["error"] == error


# ------------------------------------------------------------------ wire formats


def test_json_form_and_query_arguments_mean_the_same_message(
    standin: SlackStandIn, client: WebClient
) -> None:
    """slack-sdk's three shapes: `json=`, a form body (`data=`/`params=`), the async client's query."""
    metadata = {"event_type": "incident_opened", "event_payload": {"key": "INC-7"}}
    as_json = {"channel": "C0INCIDENTS", "text": "json", "blocks": BUTTONS, "metadata": metadata}
    client.api_call("chat.postMessage", json=as_json)
    encoded = {"channel": "C0INCIDENTS", "blocks": json.dumps(BUTTONS), "metadata": json.dumps(metadata)}
    client.api_call("chat.postMessage", data={**encoded, "text": "form"})

    async def via_query() -> None:
        async_client = AsyncWebClient(token=standin.bot_token, base_url=standin.url)
        await async_client.api_call("chat.postMessage", params={**encoded, "text": "query"})

    asyncio.run(via_query())
    calls = standin.calls("chat.postMessage")
    assert [c.body_kind for c in calls] == ["json", "form", "query"]
    for call in calls:
        assert call.params["blocks"] == BUTTONS  # JSON-encoded fields are decoded when recorded
        assert call.params["metadata"] == metadata
    history = client.conversations_history(channel="C0INCIDENTS", include_all_metadata=True)["messages"]
    assert [m["text"] for m in history] == ["query", "form", "json"]
    for message in history:
        assert message["metadata"] == metadata
        assert [b["type"] for b in message["blocks"]] == ["section", "actions"]


def _multipart(fields: dict[str, str], boundary: str = "--------------sandbox") -> bytes:
    """The multipart layout slack-sdk's urllib client writes when `files=` are sent."""
    parts = b"".join(
        f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n'.encode() + v.encode()
        for k, v in fields.items()
    )
    return parts + f"\r\n--{boundary}--\r\n".encode()


def test_raw_requests_as_slack_sdk_writes_them(standin: SlackStandIn) -> None:
    """Byte-level: the encodings slack-sdk puts on the wire for chat.postMessage."""
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "a&b <x> ü"}}]
    quoted = urllib.parse.quote(json.dumps(blocks))
    bodies = [
        ("application/json;charset=utf-8", json.dumps({"channel": "C0INCIDENTS", "text": "ü json"}).encode()),
        (
            "application/json; charset=utf-8",
            json.dumps({"channel": "C0INCIDENTS", "text": "ü json2"}).encode(),
        ),
        (
            "application/x-www-form-urlencoded",
            f"channel=C0INCIDENTS&text=%C3%BC+form&blocks={quoted}".encode(),
        ),
        (
            "multipart/form-data; boundary=--------------sandbox",
            _multipart({"channel": "C0INCIDENTS", "text": "ü multipart", "blocks": json.dumps(blocks)}),
        ),
    ]
    host, port = standin.base.removeprefix("http://").split(":")
    for content_type, body in bodies:
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        headers = {"Content-Type": content_type, "Authorization": f"Bearer {standin.bot_token}"}
        connection.request("POST", "/api/chat.postMessage", body=body, headers=headers)
        response = connection.getresponse()
        answer = json.loads(response.read())
        connection.close()
        assert response.status == 200
        assert response.getheader("Content-Type") == "application/json; charset=utf-8"
        assert answer["ok"] is True, answer
    messages = standin.messages("C0INCIDENTS")
    assert [m.text for m in messages] == ["ü json", "ü json2", "ü form", "ü multipart"]
    assert messages[2].blocks[0]["text"]["text"] == "a&b <x> ü"
    assert messages[3].blocks[0]["text"]["text"] == "a&b <x> ü"
    assert [c.body_kind for c in standin.calls()] == ["json", "json", "form", "multipart"]


def test_token_in_form_field_is_accepted_and_redacted(standin: SlackStandIn) -> None:
    body = urllib.parse.urlencode(
        {"token": standin.bot_token, "channel": "C0INCIDENTS", "text": "legacy"}
    ).encode()
    request = urllib.request.Request(f"{standin.url}chat.postMessage", data=body, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.loads(response.read())["ok"] is True
    assert standin.calls("chat.postMessage")[0].params["token"] == "[REDACTED]"


# ------------------------------------------------------------------ files


def test_files_upload_v2_puts_the_png_bytes_in_the_thread(standin: SlackStandIn, client: WebClient) -> None:
    root = client.chat_postMessage(channel="C0INCIDENTS", text="INC-9")["ts"]
    result = client.files_upload_v2(
        channel="C0INCIDENTS",
        thread_ts=root,
        content=PNG,
        filename="latency.png",
        title="p99 latency",
        initial_comment="Graph of the last hour",
    )
    assert [c.method for c in standin.calls()][-3:] == [
        "files.getUploadURLExternal",
        "upload",
        "files.completeUploadExternal",
    ]
    file_id = result["file"]["id"]
    assert result["files"][0]["title"] == "p99 latency"
    [upload] = standin.uploads()
    assert (upload.file_id, upload.data, upload.mimetype) == (file_id, PNG, "image/png")
    assert (upload.channel, upload.thread_ts, upload.completed) == ("C0INCIDENTS", root, True)
    [share] = standin.thread("C0INCIDENTS", root)
    assert share.text == "Graph of the last hour"
    assert share.files[0]["id"] == file_id
    assert share.files[0]["size"] == len(PNG)
    replies = client.conversations_replies(channel="C0INCIDENTS", ts=root)["messages"]
    assert replies[1]["files"][0]["name"] == "latency.png"
    with urllib.request.urlopen(share.files[0]["url_private"], timeout=10) as response:
        assert response.read() == PNG


def test_upload_url_accepts_multipart_bytes(standin: SlackStandIn, client: WebClient) -> None:
    ticket = client.files_getUploadURLExternal(filename="g.png", length=len(PNG))
    boundary = "----sandbox"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="filename"; filename="g.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + PNG
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        ticket["upload_url"], data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        assert response.read() == f"OK - {len(PNG)}".encode()
    client.files_completeUploadExternal(
        files=[{"id": ticket["file_id"], "title": "g"}], channel_id="C0INCIDENTS"
    )
    assert standin.uploads()[0].data == PNG
    assert standin.messages("incidents")[0].files[0]["title"] == "g"


def test_async_client_posts_reads_and_uploads(standin: SlackStandIn) -> None:
    async def scenario() -> tuple[str, list[str], str]:
        client = AsyncWebClient(token=standin.bot_token, base_url=standin.url, timeout=10)
        root = await client.chat_postMessage(channel="C0INCIDENTS", text="INC-async", blocks=BUTTONS)
        await client.chat_postMessage(channel="C0INCIDENTS", text="detail", thread_ts=root["ts"])
        uploaded = await client.files_upload_v2(
            channel="C0INCIDENTS", thread_ts=root["ts"], content=PNG, filename="g.png"
        )
        replies = await client.conversations_replies(channel="C0INCIDENTS", ts=root["ts"])
        with pytest.raises(SlackApiError) as failure:
            await client.chat_update(channel="C0INCIDENTS", ts="1700000000.000001", text="x")
        assert failure.value.response["error"] == "message_not_found"
        return uploaded["file"]["id"], [m["text"] for m in replies["messages"]], root["ts"]

    file_id, texts, root = asyncio.run(scenario())
    assert texts == ["INC-async", "detail", ""]
    assert standin.uploads()[0].data == PNG
    assert standin.uploads()[0].file_id == file_id
    assert standin.thread("incidents", root)[1].files[0]["id"] == file_id
    assert {c.body_kind for c in standin.calls("conversations.replies")} == {"query"}  # async GET


# ------------------------------------------------------------------ workspace methods


def test_conversations_create_applies_slack_name_rules(standin: SlackStandIn, client: WebClient) -> None:
    created = client.conversations_create(name="inc-42-vllm-latency")
    channel = created["channel"]
    assert channel["name"] == "inc-42-vllm-latency"
    assert channel["id"].startswith("C")
    assert channel["is_member"]
    for name, error in [
        ("inc-42-vllm-latency", "name_taken"),
        ("incidents", "name_taken"),
        ("INC 42", "invalid_name_specials"),
        ("x" * 81, "invalid_name_maxlength"),
        ("---", "invalid_name_punctuation"),
    ]:
        assert api_error(lambda n=name: client.conversations_create(name=n)).response["error"] == error
    private = client.conversations_create(name="inc-43", is_private=True)["channel"]
    assert private["is_private"] is True
    assert standin.channel("inc-43").members == ("U0BOT",)


def test_conversations_invite_follows_slack_semantics(standin: SlackStandIn, client: WebClient) -> None:
    channel = client.conversations_create(name="inc-44")["channel"]["id"]
    invited = client.conversations_invite(channel=channel, users=["U0ONCALL1", "U0ONCALL2"])
    assert invited["channel"]["id"] == channel
    assert set(standin.channel(channel).members) == {"U0BOT", "U0ONCALL1", "U0ONCALL2"}
    again = api_error(lambda: client.conversations_invite(channel=channel, users="U0ONCALL1,U0ANALYST"))
    assert again.response["error"] == "already_in_channel"
    assert again.response["errors"] == [{"user": "U0ONCALL1", "ok": False, "error": "already_in_channel"}]
    assert "U0ANALYST" not in standin.channel(channel).members  # nobody is invited without force
    forced = client.conversations_invite(channel=channel, users="U0ONCALL1,U0ANALYST", force=True)
    assert forced["errors"][0]["error"] == "already_in_channel"
    assert "U0ANALYST" in standin.channel(channel).members
    unknown = api_error(lambda: client.conversations_invite(channel=channel, users="U0NOBODY"))
    assert unknown.response["error"] == "user_not_found"
    outside = api_error(lambda: client.conversations_invite(channel="C0SRELEADS", users="U0ONCALL2"))
    assert outside.response["error"] == "not_in_channel"


def test_join_info_and_members(standin: SlackStandIn, client: WebClient) -> None:
    assert "U0BOT" not in standin.channel("general").members
    assert client.conversations_join(channel="C0GENERAL")["channel"]["is_member"] is True
    assert client.conversations_join(channel="C0GENERAL")["warning"] == "already_in_channel"
    assert api_error(lambda: client.conversations_join(channel="C0SRELEADS")).response["error"] == (
        "method_not_supported_for_channel_type"
    )
    info = client.conversations_info(channel="C0INCIDENTS", include_num_members=True)["channel"]
    assert (info["name"], info["num_members"]) == ("incidents", 4)
    members = [
        m for page in client.conversations_members(channel="C0INCIDENTS", limit=3) for m in page["members"]
    ]
    assert members == ["U0BOT", "U0ONCALL1", "U0ONCALL2", "U0ANALYST"]


def test_users_info_and_usergroup_members(standin: SlackStandIn, client: WebClient) -> None:
    alice = client.users_info(user="U0ONCALL1")["user"]
    assert (alice["name"], alice["real_name"], alice["is_bot"]) == ("alice", "Alice Chen", False)
    assert api_error(lambda: client.users_info(user="U0NOBODY")).response["error"] == "user_not_found"
    assert client.usergroups_users_list(usergroup="S0SRE")["users"] == ["U0ONCALL1", "U0ONCALL2"]
    assert (
        api_error(lambda: client.usergroups_users_list(usergroup="S0NONE")).response["error"]
        == "no_such_subteam"
    )
    standin.add_user("U0DAVE", "dave", "Dave Lee")
    standin.add_usergroup("S0ML", "ml-oncall", ["U0DAVE"])
    assert client.usergroups_users_list(usergroup="S0ML")["users"] == ["U0DAVE"]
    standin.add_channel("ml-incidents", channel_id="C0ML", members=["U0DAVE"])
    assert client.chat_postMessage(channel="#ml-incidents", text="hi")["channel"] == "C0ML"


def test_ephemeral_permalink_and_reactions(standin: SlackStandIn, client: WebClient) -> None:
    posted = client.chat_postMessage(channel="C0INCIDENTS", text="INC-5")
    ephemeral = client.chat_postEphemeral(
        channel="C0INCIDENTS", user="U0ONCALL1", text="only you can see this"
    )
    assert TS.match(ephemeral["message_ts"])
    assert [e["text"] for e in standin.ephemerals("incidents")] == ["only you can see this"]
    assert [m["text"] for m in client.conversations_history(channel="C0INCIDENTS")["messages"]] == ["INC-5"]
    standin.add_user("U0DAVE", "dave")
    outsider = api_error(lambda: client.chat_postEphemeral(channel="C0INCIDENTS", user="U0DAVE", text="x"))
    assert outsider.response["error"] == "user_not_in_channel"
    link = client.chat_getPermalink(channel="C0INCIDENTS", message_ts=posted["ts"])["permalink"]
    assert link == f"https://sandbox.slack.com/archives/C0INCIDENTS/p{posted['ts'].replace('.', '')}"
    client.reactions_add(channel="C0INCIDENTS", timestamp=posted["ts"], name="eyes")
    assert standin.message("incidents", posted["ts"]).reactions == {"eyes": ("U0BOT",)}
    twice = api_error(
        lambda: client.reactions_add(channel="C0INCIDENTS", timestamp=posted["ts"], name="eyes")
    )
    assert twice.response["error"] == "already_reacted"


def test_views_publish_open_push_update(standin: SlackStandIn, client: WebClient) -> None:
    home = {
        "type": "home",
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "*2 open incidents*"}}],
    }
    published = client.views_publish(user_id="U0ONCALL1", view=home)["view"]
    assert published["id"].startswith("V")
    assert published["type"] == "home"
    assert standin.home_view("U0ONCALL1")["blocks"][0]["text"]["text"] == "*2 open incidents*"  # type: ignore[index]
    assert standin.home_view("U0ONCALL2") is None
    modal = {
        "type": "modal",
        "callback_id": "scale",
        "title": {"type": "plain_text", "text": "Scale deployment"},
        "submit": {"type": "plain_text", "text": "Scale"},
        "blocks": [
            {
                "type": "input",
                "block_id": "replicas",
                "label": {"type": "plain_text", "text": "Replicas"},
                "element": {"type": "number_input", "is_decimal_allowed": False, "action_id": "n"},
            }
        ],
    }
    trigger = standin.trigger_id()
    opened = client.views_open(trigger_id=trigger, view=modal)["view"]
    reused = api_error(lambda: client.views_open(trigger_id=trigger, view=modal))
    assert reused.response["error"] == "exchanged_trigger_id"
    pushed = client.views_push(trigger_id=standin.trigger_id(), view=modal)["view"]
    assert (pushed["root_view_id"], pushed["previous_view_id"]) == (opened["id"], opened["id"])
    stale = api_error(lambda: client.views_update(view_id=opened["id"], hash="0.stale", view=modal))
    assert stale.response["error"] == "hash_conflict"
    renamed = {**modal, "title": {"type": "plain_text", "text": "Scaling..."}}
    client.views_update(view_id=opened["id"], hash=opened["hash"], view=renamed)
    assert [v["title"]["text"] for v in standin.views()] == ["Scaling...", "Scale deployment"]
    too_long = {**modal, "title": {"type": "plain_text", "text": "A title longer than 24 chars"}}
    bad = api_error(lambda: client.views_open(trigger_id=standin.trigger_id(), view=too_long))
    assert bad.response["error"] == "invalid_arguments"
    assert "/view/title/text" in bad.response["response_metadata"]["messages"][0]


# ------------------------------------------------------------------ failure injection


def test_429_carries_retry_after_that_the_sdk_handler_honours(
    standin: SlackStandIn, client: WebClient
) -> None:
    standin.fail_next("chat.postMessage", status=429, retry_after=1)
    limited = api_error(lambda: client.chat_postMessage(channel="C0INCIDENTS", text="x"))
    assert limited.response.status_code == 429
    assert limited.response.headers["Retry-After"] == "1"
    assert limited.response["error"] == "ratelimited"
    assert standin.messages("incidents") == []

    standin.reset()
    patient = WebClient(token=standin.bot_token, base_url=standin.url, timeout=10)
    patient.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=1))
    standin.fail_next("chat.postMessage", status=429, retry_after=1)
    assert patient.chat_postMessage(channel="C0INCIDENTS", text="after the wait")["ok"]
    first, second = standin.calls("chat.postMessage")
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 1.0  # the SDK slept for Retry-After before trying again
    assert [m.text for m in standin.messages("incidents")] == ["after the wait"]


def test_per_channel_rate_limit(standin: SlackStandIn, client: WebClient) -> None:
    standin.set_rate_limit(per_channel_per_second=0.1, burst=2)
    client.chat_postMessage(channel="C0INCIDENTS", text="1")
    client.chat_postMessage(channel="#incidents", text="2")
    limited = api_error(lambda: client.chat_postMessage(channel="C0INCIDENTS", text="3"))
    assert limited.response.status_code == 429
    assert int(limited.response.headers["Retry-After"]) >= 1
    assert client.chat_postMessage(channel="C0GENERAL", text="other channel")["ok"]
    standin.set_rate_limit(None)
    assert client.chat_postMessage(channel="C0INCIDENTS", text="4")["ok"]
    assert [m.text for m in standin.messages("incidents")] == ["1", "2", "4"]


def test_injected_500_and_ok_false_do_no_work(standin: SlackStandIn, client: WebClient) -> None:
    standin.fail_next("chat.postMessage", status=500)
    standin.fail_next("chat.update", ok_false_error="channel_not_found")
    server_error = api_error(lambda: client.chat_postMessage(channel="C0INCIDENTS", text="lost"))
    assert server_error.response.status_code == 500
    posted = client.chat_postMessage(channel="C0INCIDENTS", text="kept")
    refused = api_error(lambda: client.chat_update(channel="C0INCIDENTS", ts=posted["ts"], text="changed"))
    assert (refused.response.status_code, refused.response["error"]) == (200, "channel_not_found")
    assert [m.text for m in standin.messages("incidents")] == ["kept"]
    assert [c.status for c in standin.calls("chat.postMessage")] == [500, 200]


def test_delay_makes_the_client_time_out_after_the_message_was_posted(standin: SlackStandIn) -> None:
    impatient = WebClient(token=standin.bot_token, base_url=standin.url, timeout=1)
    standin.delay_next("chat.postMessage", 2.5)
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        impatient.chat_postMessage(channel="C0INCIDENTS", text="INC-8 opened")
    [call] = standin.wait_for("chat.postMessage", timeout=20)
    assert call.ok
    history = WebClient(token=standin.bot_token, base_url=standin.url).conversations_history(
        channel="C0INCIDENTS"
    )
    assert [m["text"] for m in history["messages"]] == ["INC-8 opened"]  # it really was posted


def test_outage_until_restored(standin: SlackStandIn, client: WebClient) -> None:
    standin.outage()
    down = api_error(lambda: client.chat_postMessage(channel="C0INCIDENTS", text="x"))
    assert down.response.status_code == 503
    standin.outage(mode="reset")
    with pytest.raises((ConnectionError, urllib.error.URLError)):
        client.auth_test()
    standin.restore()
    assert client.chat_postMessage(channel="C0INCIDENTS", text="back")["ok"]
    assert [m.text for m in standin.messages("incidents")] == ["back"]


def test_wait_for_explains_what_arrived_instead(standin: SlackStandIn, client: WebClient) -> None:
    client.chat_postMessage(channel="C0INCIDENTS", text="x")
    with pytest.raises(AssertionError, match=r"expected 1 call\(s\) of chat\.update.*chat\.postMessage x1"):
        standin.wait_for("chat.update", timeout=0.2)


# ------------------------------------------------------------------ response_url, listeners, transcript


def test_response_url_records_and_replaces_the_original(standin: SlackStandIn, client: WebClient) -> None:
    posted = client.chat_postMessage(channel="C0INCIDENTS", text="INC-6 triggered", blocks=BUTTONS)
    url = standin.response_url("click-1", channel="C0INCIDENTS", message_ts=posted["ts"], user="U0ONCALL1")
    hook = WebhookClient(url)
    answer = hook.send(text="INC-6 acknowledged by alice", replace_original=True)
    assert (answer.status_code, answer.body) == (200, "ok")
    assert hook.send(text="Scaling to 4 replicas...", response_type="in_channel").status_code == 200
    assert hook.send(text="You are not allowed to do that").status_code == 200
    assert hook.send(text="").status_code == 400
    bodies = [r.body for r in standin.responses()]
    assert bodies[0] == {"text": "INC-6 acknowledged by alice", "replace_original": True}
    assert [m.text for m in standin.messages("incidents")] == [
        "INC-6 acknowledged by alice",
        "Scaling to 4 replicas...",
    ]
    assert standin.ephemerals()[-1]["text"] == "You are not allowed to do that"


def test_listeners_see_every_call_and_transcript_reads_like_slack(
    standin: SlackStandIn, client: WebClient
) -> None:
    seen: list[RecordedCall] = []
    unsubscribe = standin.subscribe(seen.append)
    root = client.chat_postMessage(channel="C0INCIDENTS", text="INC-1 opened", blocks=BUTTONS)["ts"]
    client.chat_postMessage(channel="C0INCIDENTS", thread_ts=root, text="Runbook: check <@U0ONCALL1>")
    client.files_upload_v2(channel="C0INCIDENTS", thread_ts=root, content=PNG, filename="graph.png")
    client.chat_update(channel="C0INCIDENTS", ts=root, text="INC-1 acknowledged", blocks=BUTTONS)
    client.views_publish(user_id="U0ONCALL2", view={"type": "home", "blocks": BUTTONS[:1]})
    unsubscribe()
    client.auth_test()
    assert [c.method for c in seen] == [  # listeners run before the client gets its answer
        "chat.postMessage",
        "chat.postMessage",
        "files.getUploadURLExternal",
        "upload",
        "files.completeUploadExternal",
        "chat.update",
        "views.publish",
    ]
    assert describe_call(seen[1], {"U0ONCALL1": "alice"}) == (
        "chat.postMessage C0INCIDENTS Runbook: check @alice -> ok"
    )
    text = standin.transcript()
    assert "=== #incidents (C0INCIDENTS) ===" in text
    assert "incident-bot: INC-1 acknowledged" in text
    assert "*INC-1* vLLM p99 latency high" in text
    assert "[Acknowledge] [Resolve]" in text
    assert '(edited 1x; first version: "INC-1 opened")' in text
    assert "thread: 2 replies" in text
    assert "Runbook: check @alice" in text
    assert "[file] graph.png (image/png" in text
    assert "=== App Home of bob (U0ONCALL2) ===" in text
    assert "#general" not in text  # empty channels are left out


def test_reset_returns_to_the_started_state(standin: SlackStandIn, client: WebClient) -> None:
    client.chat_postMessage(channel="C0INCIDENTS", text="x")
    client.conversations_create(name="inc-99")
    standin.fail_next("*", status=500, times=5)
    standin.reset()
    assert standin.calls() == []
    assert standin.messages("incidents") == []
    assert client.conversations_create(name="inc-99")["ok"]  # the name is free again, no fault left
