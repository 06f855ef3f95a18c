"""The runbook's thread message: what this alert means, the steps in order, the links, and
the action buttons. Pure; the runbook renderer has already escaped every label value for
the field it landed in, so only our own framing is added here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.runbooks.render import RenderedAction, RenderedRunbook
from bot.slack.blocks import BUTTON_TEXT, MAX_BLOCKS, SECTION_TEXT, ActionId, Message
from bot.text import defuse, truncate

__all__ = ["runbook_message"]

DESTRUCTIVE = frozenset({"rollback", "restart", "model_rollback"})
MAX_BUTTONS = 5


def _link(url: str, title: str) -> str:
    # `|` and `>` would end Slack's <url|text> early; runbook URLs are ours, but be strict.
    if not url.startswith(("https://", "http://")) or any(c in url for c in "|<> "):
        return title
    return f"<{url}|{title.replace('>', '&gt;').replace('|', '¦')}>"


def runbook_message(
    incident_key: str, runbook: RenderedRunbook, offers: Sequence[tuple[int, RenderedAction]]
) -> Message:
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": truncate(
                    f":book: *Runbook: {runbook.name}*\n{runbook.description}".strip(), SECTION_TEXT
                ),
            },
        }
    ]
    if runbook.steps:
        numbered = [f"*{n}.* {step.strip()}" for n, step in enumerate(runbook.steps, start=1)]
        chunk = ""
        for line in numbered:
            if chunk and len(chunk) + len(line) + 2 > SECTION_TEXT:
                blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": chunk}})
                chunk = ""
            chunk = f"{chunk}\n{line}" if chunk else truncate(line, SECTION_TEXT)
        if chunk:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": chunk}})
    if runbook.links:
        text = "  ·  ".join(_link(link.url, link.title) for link in runbook.links)
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(text, SECTION_TEXT)}]}
        )
    buttons = []
    for index, (record_id, action) in enumerate(offers[:MAX_BUTTONS]):
        button: dict[str, Any] = {
            "type": "button",
            "text": {
                "type": "plain_text",
                "text": truncate(defuse(action.label), BUTTON_TEXT),
                "emoji": True,
            },
            "action_id": f"{ActionId.RUNBOOK_ACTION}:{index}",
            "value": str(record_id),
        }
        if action.action in DESTRUCTIVE:
            button["style"] = "danger"
        buttons.append(button)
    if buttons:
        blocks.append({"type": "actions", "block_id": f"runbook-actions:{incident_key}", "elements": buttons})
    blocks.append(
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": f"runbook `{runbook.name}` version `{runbook.version}`"
                    + (" · actions check the policy and ask before changing anything" if buttons else ""),
                }
            ],
        }
    )
    return {"text": f"{incident_key}: runbook {runbook.name}", "blocks": blocks[:MAX_BLOCKS]}
