"""Block Kit for remediation actions: the confirmation that shows exactly what will change, the
dry run with the exact API request, the approval request, refusals, results and the recovery
check. Pure functions from plain data to Slack messages.

Every button's `value` is an action record's id and nothing else (STYLE.md 7); the record
holds the target and the parameters, which are re-checked when the button is clicked.
Values from Kubernetes and alerts (names, images, model versions) are escaped for mrkdwn and
defused in plain text; Slack's limits are kept (a confirm dialog's text is at most 300
characters, a section's 3000).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from bot.actions.changes import Change
from bot.slack.blocks import BUTTON_TEXT, MAX_BLOCKS, SECTION_TEXT, ActionId, Message, slack_date
from bot.text import code, defuse, escape, literal, preformatted, truncate

__all__ = [
    "ActionButton",
    "Change",
    "SilenceLine",
    "approval_closed_message",
    "approval_request_message",
    "confirmation_message",
    "dry_run_message",
    "notice_message",
    "refusal_message",
    "result_message",
    "silences_message",
    "verification_message",
]

CONFIRM_TEXT = 300  # Slack's limit for a confirm dialog's text
CONFIRM_TITLE = 100
CONFIRM_BUTTON = 30
REQUEST_TEXT = 2400  # an API request in a code block, with room for the framing
# Confirmations and approval requests show the request itself only when it is short (a scale,
# a restart); a rollback's JSON Patch carries a whole pod template, which the dry run shows.
SHORT_REQUEST = 800


class ActionButton(StrEnum):
    """action_ids of the buttons on action messages; the Slack app listens on these."""

    CONFIRM = "action_confirm"
    CANCEL = ActionId.CANCEL.value
    APPROVE = ActionId.APPROVE.value
    REJECT = "action_reject"


@dataclass(frozen=True)
class SilenceLine:
    """One active silence, for `/incident silences`."""

    id: str
    matchers: str
    ends_at: datetime
    created_by: str
    comment: str
    by_bot: bool = False


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": truncate(text, SECTION_TEXT)}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(text, SECTION_TEXT)}]}


def _plain(text: str, limit: int) -> dict[str, Any]:
    return {"type": "plain_text", "text": truncate(defuse(text), limit), "emoji": True}


def _button(text: str, action_id: ActionButton, record_id: int, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "text": _plain(text, BUTTON_TEXT),
        "action_id": action_id.value,
        "value": str(record_id),
    }
    if style:
        button["style"] = style
    return button


def _message(fallback: str, blocks: list[dict[str, Any]]) -> Message:
    return {"text": truncate(escape(fallback), 3000), "blocks": blocks[:MAX_BLOCKS]}


def _change_text(change: Change) -> str:
    lines = [f"*{literal(change.headline)}*"] if change.headline else []
    lines += [f"• {escape(detail)}" for detail in change.details]
    if change.warning:
        lines.append(f":warning: {escape(change.warning)}")
    return "\n".join(lines)


def _request_block(request: str) -> str:
    body = truncate(request, REQUEST_TEXT).replace("```", "'''")
    return f"```{preformatted(body)}```"


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def confirmation_message(
    record_id: int,
    change: Change,
    *,
    notes: Sequence[str] = (),
    expires_at: datetime | None = None,
) -> Message:
    """For the requester only (ephemeral): exactly what will change, and Confirm / Cancel."""
    title = f":warning: *Confirm: {escape(change.verb)} `{code(change.target)}`*"
    blocks: list[dict[str, Any]] = [_section(f"{title}\n{_change_text(change)}")]
    if change.request and len(change.request) <= SHORT_REQUEST:
        blocks.append(_section(f"The request the bot will send:\n{_request_block(change.request)}"))
    confirm_button = _button(_capital(change.verb), ActionButton.CONFIRM, record_id, "danger")
    confirm_button["confirm"] = {
        "title": _plain(f"{_capital(change.verb)} {change.target}?", CONFIRM_TITLE),
        "text": _plain(
            _capital(change.sentence()) + (f". {change.warning}" if change.warning else ""), CONFIRM_TEXT
        ),
        "confirm": _plain(f"Yes, {change.verb}", CONFIRM_BUTTON),
        "deny": _plain("No, keep it", CONFIRM_BUTTON),
        "style": "danger",
    }
    blocks.append(
        {
            "type": "actions",
            "block_id": f"action-confirm:{record_id}",
            "elements": [confirm_button, _button("Cancel", ActionButton.CANCEL, record_id)],
        }
    )
    context = list(notes)
    if expires_at is not None:
        context.append(f"This confirmation expires {slack_date(expires_at, '{time}')}.")
    if context:
        blocks.append(_context(" ".join(context)))
    return _message(f"Confirm: {change.sentence()}", blocks)


def dry_run_message(change: Change, *, reason: str, outcome: str) -> Message:
    """What would have happened, with the exact API request; nothing was changed."""
    text = (
        f":test_tube: *Dry run: {escape(change.verb)} `{code(change.target)}`* ({escape(reason)})\n"
        f"{_change_text(change)}\n{escape(outcome)}"
    )
    blocks = [_section(text)]
    if change.request:
        blocks.append(_section(f"The exact request:\n{_request_block(change.request)}"))
    blocks.append(_context("Nothing was changed."))
    return _message(f"Dry run: {change.sentence()}; nothing was changed", blocks)


def approval_request_message(
    record_id: int,
    change: Change,
    *,
    requester: str,
    needs: str,
    approvals: Sequence[str] = (),
    expires_at: datetime | None = None,
) -> Message:
    """Posted where the team sees it: a different permitted user approves or rejects."""
    text = (
        f":raised_hand: <@{requester}> asks to *{escape(change.verb)} `{code(change.target)}`*; "
        f"it needs {escape(needs)}.\n{_change_text(change)}"
    )
    if approvals:
        text += "\nApproved so far by " + ", ".join(f"<@{a}>" for a in approvals) + "."
    blocks: list[dict[str, Any]] = [_section(text)]
    if change.request and len(change.request) <= SHORT_REQUEST:
        blocks.append(_section(f"The request the bot will send:\n{_request_block(change.request)}"))
    blocks.append(
        {
            "type": "actions",
            "block_id": f"action-approval:{record_id}",
            "elements": [
                _button("Approve", ActionButton.APPROVE, record_id, "primary"),
                _button("Reject", ActionButton.REJECT, record_id, "danger"),
            ],
        }
    )
    if expires_at is not None:
        blocks.append(_context(f"The request expires {slack_date(expires_at, '{time}')}."))
    return _message(f"Approval needed: {change.sentence()}", blocks)


def approval_closed_message(change: Change, *, text: str) -> Message:
    """Replaces an approval request once it was decided, so nobody clicks it again."""
    return _message(
        f"{change.sentence()}: {text}",
        [_section(f"*{escape(_capital(change.verb))} `{code(change.target)}`*: {text}")],
    )


def refusal_message(change: Change | None, *, action: str, target: str, reasons: str) -> Message:
    what = f"{escape(action)} `{code(target)}`"
    text = f":no_entry: *Not allowed: {what}*\n{escape(reasons)}"
    if change is not None and change.headline:
        text += f"\n_(would have been: {literal(change.headline)})_"
    return _message(f"Not allowed: {action} {target}: {reasons}", [_section(text)])


def notice_message(text: str) -> Message:
    """A short mrkdwn answer, already escaped by whoever built it."""
    return {"text": truncate(text, 3000), "blocks": [_section(text)]}


def result_message(
    change: Change, *, ok: bool, actor: str | None, text: str, note: str | None = None
) -> Message:
    """The outcome, in the incident's thread (or the channel it was asked in)."""
    emoji = ":white_check_mark:" if ok else ":x:"
    who = f"<@{actor}> " if actor else ""
    head = f"{emoji} {who}*{escape(change.verb)} `{code(change.target)}`*: " + ("done" if ok else "failed")
    body = f"{head}\n{escape(text)}"
    blocks = [_section(body)]
    if note:
        blocks.append(_context(note))
    return _message(f"{change.sentence()}: {'done' if ok else 'failed'}: {text}", blocks)


def verification_message(change: Change, *, recovered: bool | None, text: str) -> Message:
    """recovered: True (recovered), False (not recovered in time), None (could not be checked)."""
    emoji = {True: ":chart_with_downwards_trend:", False: ":warning:", None: ":grey_question:"}[recovered]
    head = {True: "Recovered", False: "Not recovered", None: "Recovery not checked"}[recovered]
    return _message(
        f"{head} after {change.sentence()}: {text}",
        [_section(f"{emoji} *{head}* after {escape(change.verb)} `{code(change.target)}`: {escape(text)}")],
    )


def silences_message(incident_key: str, silences: Sequence[SilenceLine]) -> Message:
    if not silences:
        return notice_message(f":bell: No active silence matches the alerts of {incident_key}.")
    lines = []
    for s in silences[:20]:
        lines.append(
            f"• `{s.id}` until {slack_date(s.ends_at)} by {escape(s.created_by)}"
            f"{' (incident-bot)' if s.by_bot else ''}: {escape(truncate(s.comment, 200))}\n"
            f"    {escape(truncate(s.matchers, 400))}"
        )
    blocks = [_section(f":no_bell: *Active silences of {incident_key}* ({len(silences)})")]
    chunk = ""
    for line in lines:
        if chunk and len(chunk) + len(line) + 1 > SECTION_TEXT - 10:
            blocks.append(_section(chunk))
            chunk = ""
        chunk = f"{chunk}\n{line}" if chunk else line
    if chunk:
        blocks.append(_section(chunk))
    blocks.append(_context(f"End one early with `/incident unsilence {incident_key} <id>`."))
    return _message(f"{len(silences)} active silence(s) of {incident_key}", blocks)
