"""Bolt listeners for remediation: `/rollback`, `/scale`, the runbook buttons on incidents, and
the Confirm / Cancel / Approve / Reject buttons on action messages.

Thin, like every listener (STYLE.md 8): parse what can be parsed without I/O (a typo in a
command is answered in the ack itself), `ack()`, then one call into `ActionFlows` through
`after_ack`, which turns any failure into a message where the person is (and keeps Bolt from
resetting the ack when a flow raises). Buttons carry only an action record's id.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from slack_bolt.async_app import AsyncAck, AsyncBoltContext, AsyncRespond

from bot.flows.actions import ActionFlows
from bot.flows.requests import Answer, Invocation
from bot.incidents.lifecycle import Actor
from bot.slack import commands, replies
from bot.slack.action_blocks import ActionButton
from bot.slack.app import SlackApp, after_ack, request_key
from bot.slack.blocks import ActionId
from bot.slack.flows import answer_via

__all__ = ["ROLLBACK_COMMAND", "RUNBOOK_BUTTONS", "SCALE_COMMAND", "register_action_listeners"]

ROLLBACK_COMMAND = "/rollback"
SCALE_COMMAND = "/scale"
RUNBOOK_BUTTONS = re.compile(rf"^{re.escape(ActionId.RUNBOOK_ACTION.value)}:\d+$")

ParsedCommand = TypeVar("ParsedCommand", commands.Rollback | commands.ModelRollback, commands.Scale)
ButtonStep = Callable[[str, Invocation, Answer | None], Awaitable[None]]


def _command_invocation(command: dict[str, Any]) -> Invocation:
    actor = Actor(str(command.get("user_id") or ""), command.get("user_name") or None)
    return Invocation(actor, command.get("channel_id"), request_key(command) or "command:?")


def _click_invocation(body: dict[str, Any]) -> Invocation:
    user = body.get("user") or {}
    actor = Actor(str(user.get("id") or ""), user.get("username") or user.get("name") or None)
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
    return Invocation(actor, channel, request_key(body) or "action:?")


def _answer(respond: AsyncRespond | None) -> Answer | None:
    return answer_via(respond, response_url=respond.response_url if respond is not None else None)


def _usage(exc: commands.UsageError) -> dict[str, Any]:
    message = replies.usage_message(exc.message, exc.usage)
    return {"text": message["text"], "blocks": message.get("blocks")}


def register_action_listeners(slack: SlackApp, flows: ActionFlows) -> None:
    bolt = slack.bolt

    # /rollback and /scale differ only in their parser and the parameters they hand on.
    bolt.command(ROLLBACK_COMMAND)(
        _workload_command(
            flows,
            ROLLBACK_COMMAND,
            commands.parse_rollback,
            _rollback_params,
        )
    )
    bolt.command(SCALE_COMMAND)(
        _workload_command(
            flows,
            SCALE_COMMAND,
            commands.parse_scale,
            lambda p: {"namespace": p.namespace, "deployment": p.deployment, "replicas": p.replicas},
        )
    )

    # Every action button does the same: ack, then the flow step named by its action_id,
    # with the action record's id from the button's value.
    steps: dict[str | re.Pattern[str], ButtonStep] = {
        RUNBOOK_BUTTONS: flows.offer_clicked,
        ActionButton.CONFIRM.value: flows.confirm,
        ActionButton.CANCEL.value: flows.cancel,
        ActionButton.APPROVE.value: flows.approve,
        ActionButton.REJECT.value: flows.reject,
    }
    for action_id, step in steps.items():
        bolt.action(action_id)(_button_listener(step))


def _rollback_params(p: commands.Rollback | commands.ModelRollback) -> dict[str, Any]:
    if isinstance(p, commands.ModelRollback):
        return {
            "model": p.model,
            "alias": p.alias,
            "version": p.version,
            "restart": p.restart,
            "deployments": list(p.deployments),
        }
    return {"namespace": p.namespace, "deployment": p.deployment, "revision": p.revision}


def _workload_command(
    flows: ActionFlows,
    name: str,
    parse: Callable[[str], ParsedCommand],
    params: Callable[[ParsedCommand], dict[str, Any]],
) -> Callable[..., Awaitable[None]]:
    """A slash command asking for a workload action: a typo is answered in the ack itself,
    the request goes to the action flow after it."""
    kind = name.lstrip("/")

    async def listener(
        ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond, context: AsyncBoltContext
    ) -> None:
        try:
            parsed = parse(str(command.get("text") or ""))
        except commands.UsageError as exc:
            await ack(**_usage(exc))
            return
        await ack()
        work = flows.request(
            "model_rollback" if isinstance(parsed, commands.ModelRollback) else kind,
            params(parsed),
            _command_invocation(command),
            _answer(respond),
            find_incident=True,
            source=name,
            dry_run=parsed.dry_run,
        )
        await after_ack(work, command, context, respond)

    return listener


def _button_listener(step: ButtonStep) -> Callable[..., Awaitable[None]]:
    async def listener(
        ack: AsyncAck,
        body: dict[str, Any],
        action: dict[str, Any],
        respond: AsyncRespond | None,
        context: AsyncBoltContext,
    ) -> None:
        await ack()
        work = step(str(action.get("value")), _click_invocation(body), _answer(respond))
        await after_ack(work, body, context, respond)

    return listener
