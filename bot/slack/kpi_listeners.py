"""`/model`: the served models one line each, or one model's scorecard and chart.

`/model` and `/model NAME [WINDOW]`. A typo (a window that is not a duration) is answered in
the ack itself; otherwise the ack goes out at once and the answer follows on the request's
response_url within Slack's 3 seconds: the KPIs are computed under a 2.5-second budget
(`SLASH_BUDGET_SECONDS`), and any KPI Prometheus did not deliver in time is shown as "not
computed" with the reason. The chart (latency p99 and error ratio over the window) follows as
a PNG in the channel when it is drawn.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import anyio
from slack_bolt.async_app import AsyncAck, AsyncBoltContext, AsyncRespond

from bot.actions.kubernetes import Revision, WorkloadsApi
from bot.diagnostics.graph import GraphsUnavailable
from bot.errors import BotError, UpstreamError
from bot.kpis.scorecard import Scorecard
from bot.kpis.service import KpiReport, KpiService
from bot.kpis.window import Window, WindowError
from bot.slack import replies
from bot.slack.app import SlackApp, after_ack
from bot.slack.blocks import Message
from bot.slack.chat import SlackChat
from bot.slack.commands import UsageError, unescape
from bot.slack.kpi_blocks import MODEL_USAGE, model_list, scorecard_message
from bot.text import escape

__all__ = [
    "MODEL_COMMAND",
    "SLASH_BUDGET_SECONDS",
    "ModelQuery",
    "parse_model_command",
    "register_kpi_listeners",
]

logger = logging.getLogger(__name__)

MODEL_COMMAND = "/model"
#: What the answer may wait for Prometheus: the rest of Slack's 3 s is the round trips.
SLASH_BUDGET_SECONDS = 2.5
CHART_TIMEOUT_SECONDS = 20.0


@dataclass(frozen=True)
class ModelQuery:
    name: str | None
    window: Window


def parse_model_command(text: str) -> ModelQuery:
    """`` -> list; `NAME` -> scorecard over 7d; `NAME WINDOW`; `WINDOW` alone -> list over it."""
    tokens = unescape(text).split()
    if not tokens:
        return ModelQuery(None, Window.parse(None))
    if len(tokens) == 1:
        try:
            return ModelQuery(None, Window.parse(tokens[0]))
        except WindowError:
            return ModelQuery(tokens[0], Window.parse(None))
    try:
        window = Window.parse(tokens[-1])
    except WindowError as exc:
        raise UsageError(exc.message, usage=MODEL_USAGE) from None
    return ModelQuery(" ".join(tokens[:-1]), window)


def _ephemeral(message: Message) -> dict[str, Any]:
    return {
        "text": message["text"],
        "blocks": message.get("blocks"),
        "response_type": "ephemeral",
        "replace_original": False,
    }


async def last_rollout(workloads: WorkloadsApi, card: Scorecard) -> tuple[Revision | None, str | None]:
    """The deployment's current revision (when it was rolled out, which model version), or why not."""
    if not workloads.available:
        return None, None
    if card.server is None or not card.deployment or "," in card.deployment:
        return None, None
    name = card.deployment
    try:
        with anyio.fail_after(SLASH_BUDGET_SECONDS):
            revisions = await anyio.to_thread.run_sync(
                lambda: workloads.history(card.namespace, name), abandon_on_cancel=True
            )
    except TimeoutError:
        return None, "the Kubernetes API did not answer in time"
    except BotError as exc:
        return None, exc.message
    current = [r for r in revisions if r.current] or revisions[-1:]
    return (current[-1] if current else None), None


def register_kpi_listeners(
    slack: SlackApp, kpis: KpiService, chat: SlackChat, workloads: WorkloadsApi
) -> None:
    async def model_command(
        ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond, context: AsyncBoltContext
    ) -> None:
        try:
            query = parse_model_command(str(command.get("text") or ""))
        except UsageError as exc:
            message = replies.usage_message(exc.message, exc.usage)
            await ack(text=message["text"], blocks=message.get("blocks"))
            return
        await ack()
        channel = str(command.get("channel_id") or "")
        await after_ack(answer(query, channel, respond), command, context, respond)

    async def answer(query: ModelQuery, channel: str, respond: AsyncRespond) -> None:
        report: KpiReport = await anyio.to_thread.run_sync(
            lambda: kpis.report(query.window, budget=SLASH_BUDGET_SECONDS), abandon_on_cancel=True
        )
        if query.name is None:
            await respond(**_ephemeral(model_list(report)))
            return
        found = report.find(query.name)
        if not found:
            raise BotError(
                f"No model named {escape(query.name)} is served or described. `/model` lists them."
            )
        if len(found) > 1:
            places = ", ".join(f"`{escape(c.namespace)}/{escape(c.model)}`" for c in found)
            raise BotError(f"{escape(query.name)} is served in several places: {places}. Name one of them.")
        card = found[0]
        rollout, rollout_note = await last_rollout(workloads, card)
        await respond(
            **_ephemeral(scorecard_message(card, report, rollout=rollout, rollout_note=rollout_note))
        )
        try:
            with anyio.fail_after(CHART_TIMEOUT_SECONDS):
                png = await anyio.to_thread.run_sync(
                    lambda: kpis.chart_png(card, query.window), abandon_on_cancel=True
                )
            if png is None:
                return
            await chat.upload(
                channel,
                None,
                content=png,
                filename=f"kpis-{card.namespace}-{card.model.replace('/', '_')}-{query.window.text}.png",
                title=f"{card.display_name}: p99 latency and error ratio over {query.window.text}",
                alt_txt=f"p99 latency and error ratio of {card.model} over {query.window.text}",
            )
        except (GraphsUnavailable, UpstreamError, TimeoutError) as exc:
            reason = exc.message if isinstance(exc, BotError) else "Prometheus did not answer in time"
            await respond(**_ephemeral(replies.notice(f"No chart: {escape(reason)}")))

    slack.bolt.command(MODEL_COMMAND)(model_command)
