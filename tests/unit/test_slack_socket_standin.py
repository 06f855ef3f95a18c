"""The Socket Mode stand-in speaks Slack's protocol (docs.slack.dev "Using Socket Mode";
slack-sdk's recorded envelopes): checked here with a plain aiohttp WebSocket client, so the
bot's tests against it (tests/integration/test_socket_mode.py) rest on the real format."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from bot.sandbox.slack_socket import SocketModeStandIn


@pytest.fixture
def socket() -> Iterator[SocketModeStandIn]:
    with SocketModeStandIn(app_id="A0TEST") as standin:
        yield standin


async def receive(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    message = await asyncio.wait_for(ws.receive(), 10)
    assert message.type == aiohttp.WSMsgType.TEXT, message
    data: dict[str, Any] = json.loads(message.data)
    return data


def test_a_connection_is_greeted_envelopes_are_acked_and_disconnect_is_announced(
    socket: SocketModeStandIn,
) -> None:
    url = socket.issue_url()

    async def session() -> None:
        async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
            hello = await receive(ws)
            assert hello["type"] == "hello"
            assert hello["num_connections"] == 1
            assert hello["connection_info"] == {"app_id": "A0TEST"}
            assert hello["debug_info"]["approximate_connection_time"] > 0

            envelope_id = await asyncio.to_thread(
                socket.events_api, {"type": "event_callback", "event_id": "Ev1"}, retry_attempt=2
            )
            envelope = await receive(ws)
            assert envelope == {
                "envelope_id": envelope_id,
                "payload": {"type": "event_callback", "event_id": "Ev1"},
                "type": "events_api",
                "accepts_response_payload": False,
                "retry_attempt": 2,
                "retry_reason": "",
            }
            command_id = await asyncio.to_thread(socket.slash_command, {"command": "/incident"})
            command = await receive(ws)
            assert command["type"] == "slash_commands"
            assert command["accepts_response_payload"] is True
            assert "retry_attempt" not in command
            await ws.send_str(json.dumps({"envelope_id": command_id, "payload": {"text": "hi"}}))
            ack = await asyncio.to_thread(socket.wait_for_ack, command_id)
            assert ack.payload == {"text": "hi"}

            await asyncio.to_thread(socket.disconnect, "warning")
            assert await receive(ws) == {
                "type": "disconnect",
                "reason": "warning",
                "debug_info": {"host": "applink-sandbox-1"},
            }

    asyncio.run(session())
    assert socket.connects == 1


def test_a_url_opens_one_connection_only(socket: SocketModeStandIn) -> None:
    url = socket.issue_url()

    async def twice() -> int:
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(url) as ws:
                await receive(ws)
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(url)
            return refused.value.status

    assert asyncio.run(twice()) == 401
    assert socket.refused == 1
