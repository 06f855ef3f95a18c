"""Terminal text for what the bot posted to the sandbox: the demo's view of "Slack".

Pure functions over stand-in snapshots. mrkdwn stays as it is (`*bold*` reads fine in a
terminal) except Slack's angle-bracket syntax, which becomes readable (`<@U1>` -> `@alice`,
`<https://x|text>` -> `text (https://x)`). Block Kit becomes one line per element, buttons
side by side like `[Acknowledge] [Resolve]`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from bot.sandbox.slack_models import Channel, Message, RecordedCall

__all__ = ["describe_call", "render", "render_blocks", "render_text"]

_ANGLE = re.compile(r"<([^<>]+)>")
_THREAD = " " * 10 + "| "  # thread replies hang under their parent


def _clock(ts: str) -> str:
    try:
        return time.strftime("%H:%M:%S", time.localtime(float(ts)))
    except ValueError:
        return ts


def render_text(text: str, names: Mapping[str, str] | None = None) -> str:
    """mrkdwn made readable: mentions, channel links and URLs resolved, entities unescaped."""
    names = names or {}

    def angle(match: re.Match[str]) -> str:
        inner = match.group(1)
        target, _, label = inner.partition("|")
        if target.startswith("@"):
            return "@" + names.get(target[1:], label or target[1:])
        if target.startswith("#"):
            return "#" + (label or target[1:])
        if target.startswith("!subteam^"):
            return label or "@" + target[len("!subteam^") :]
        if target.startswith("!date^"):
            return label or target
        if target.startswith("!"):
            return "@" + target[1:]
        return f"{label} ({target})" if label else target

    readable = _ANGLE.sub(angle, text)
    return readable.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _text_of(obj: Any, names: Mapping[str, str]) -> str:
    if isinstance(obj, dict):
        return render_text(str(obj.get("text", "")), names)
    return ""


def _element(element: Any, names: Mapping[str, str]) -> str:
    if not isinstance(element, dict):
        return ""
    kind = element.get("type")
    if kind == "button":
        return f"[{_text_of(element.get('text'), names)}]"
    if kind == "image":
        return f"(image: {element.get('alt_text', '')})"
    if kind == "overflow":
        return "[...]"
    if kind in ("plain_text", "mrkdwn"):
        return _text_of(element, names)
    label = _text_of(element.get("placeholder"), names) or str(kind).replace("_", " ")
    return f"[{label} v]"


def _rich_text(node: Any) -> str:
    if isinstance(node, dict):
        if "text" in node and isinstance(node["text"], str):
            return node["text"]
        if node.get("type") == "user":
            return "@" + str(node.get("user_id", ""))
        if node.get("type") == "link":
            return str(node.get("text") or node.get("url", ""))
        if node.get("type") == "emoji":
            return f":{node.get('name', '')}:"
        return "".join(_rich_text(child) for child in node.get("elements", []))
    return ""


def render_blocks(blocks: Sequence[dict[str, Any]], names: Mapping[str, str] | None = None) -> list[str]:
    """One or more lines per block, in order, without indentation."""
    names = names or {}
    lines: list[str] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "header":
            lines.append(f"## {_text_of(block.get('text'), names)}")
        elif kind == "section":
            if "text" in block:
                lines.extend(_text_of(block["text"], names).splitlines() or [""])
            fields = [_text_of(f, names).replace("\n", " ") for f in block.get("fields") or []]
            for i in range(0, len(fields), 2):
                lines.append("   ".join(fields[i : i + 2]))
            if "accessory" in block:
                lines.append(_element(block["accessory"], names))
        elif kind == "divider":
            lines.append("-" * 40)
        elif kind == "context":
            lines.append("  ".join(_element(e, names) for e in block.get("elements") or []))
        elif kind in ("actions", "context_actions"):
            lines.append(" ".join(_element(e, names) for e in block.get("elements") or []))
        elif kind == "image":
            title = _text_of(block.get("title"), names)
            lines.append(
                f"(image: {title or block.get('alt_text', '')}) {block.get('image_url', '')}".rstrip()
            )
        elif kind == "markdown":
            lines.extend(render_text(str(block.get("text", "")), names).splitlines())
        elif kind == "rich_text":
            lines.extend(_rich_text(block).splitlines())
        elif kind == "input":
            lines.append(f"{_text_of(block.get('label'), names)}: {_element(block.get('element'), names)}")
        elif kind == "table":
            for row in block.get("rows") or []:
                cells = [
                    _rich_text(c) or str(c.get("text", "")) if isinstance(c, dict) else str(c) for c in row
                ]
                lines.append(" | ".join(cells))
        else:
            lines.append(f"({kind} block)")
    return lines


def _file_line(file: Mapping[str, Any]) -> str:
    title = file.get("title") or file.get("name")
    return f'[file] {file.get("name")} ({file.get("mimetype")}, {file.get("size")} bytes) "{title}"'


def _message(message: Message, names: Mapping[str, str], indent: str) -> list[str]:
    author = names.get(message.user, message.user)
    body: list[str] = []
    if message.text:
        body.extend(render_text(message.text, names).splitlines())
    if message.blocks:
        block_lines = render_blocks(message.blocks, names)
        if body and block_lines:
            body.append("")  # the notification text, then what the client shows
        body.extend(block_lines)
    for attachment in message.attachments:
        text = attachment.get("text") or attachment.get("fallback") or ""
        body.append(f"| {render_text(str(text), names)}")
    body.extend(_file_line(f) for f in message.files)
    head = f"{indent}{_clock(message.ts)}  {author}:"
    lines = [f"{head} {body[0]}" if body else head]
    pad = indent + " " * 10
    lines.extend(f"{pad}{line}".rstrip() for line in body[1:])
    if message.edits:
        first = render_text(message.edits[0].text, names).splitlines()
        was = f'; first version: "{first[0]}"' if first else ""
        lines.append(f"{pad}(edited {len(message.edits)}x{was})")
    if message.metadata:
        lines.append(f"{pad}(metadata: {message.metadata.get('event_type')})")
    if message.reactions:
        lines.append(pad + " ".join(f":{name}: x{len(users)}" for name, users in message.reactions.items()))
    return lines


def _conversation(channel: Channel, messages: Iterable[Message], names: Mapping[str, str]) -> list[str]:
    label = f"DM with {names.get(channel.name, channel.name)}" if channel.is_im else f"#{channel.name}"
    lines = [f"=== {label} ({channel.id}) ==="]
    for message in messages:
        lines.extend(_message(message, names, ""))
        if message.replies:
            count = len(message.replies)
            lines.append(f"{' ' * 10}+-- thread: {count} repl{'y' if count == 1 else 'ies'}")
            for reply in message.replies:
                lines.extend(_message(reply, names, _THREAD))
    return lines


def render(
    conversations: Sequence[tuple[Channel, Sequence[Message]]],
    *,
    names: Mapping[str, str],
    home_views: Mapping[str, Mapping[str, Any]] | None = None,
    ephemerals: Sequence[Mapping[str, Any]] = (),
) -> str:
    """The whole transcript; channels without messages are left out."""
    sections: list[list[str]] = []
    for channel, messages in conversations:
        if messages:
            sections.append(_conversation(channel, messages, names))
    if ephemerals:
        section = ["=== only visible to one person ==="]
        for item in ephemerals:
            who = names.get(str(item.get("user")), str(item.get("user")))
            text = render_text(str(item.get("text") or ""), names)
            blocks = render_blocks(item.get("blocks") or [], names)
            first = text or (blocks[0] if blocks else "")
            section.append(f"{_clock(str(item.get('ts')))}  to {who}: {first}")
            rest = blocks if text else blocks[1:]
            section.extend(f"{' ' * 10}{line}" for line in rest)
        sections.append(section)
    for user, view in (home_views or {}).items():
        section = [f"=== App Home of {names.get(user, user)} ({user}) ==="]
        section.extend(f"  {line}" for line in render_blocks(view.get("blocks") or [], names))
        sections.append(section)
    if not sections:
        return "(nothing posted yet)\n"
    return "\n\n".join("\n".join(s) for s in sections) + "\n"


def describe_call(call: RecordedCall, names: Mapping[str, str] | None = None) -> str:
    """One line per API call for a live log: method, target, first line of text, outcome."""
    names = names or {}
    params = call.params
    keys = ("channel", "channel_id", "user_id", "user", "filename", "name")
    target = next((str(params[k]) for k in keys if params.get(k)), "")
    text = params.get("text") or params.get("initial_comment") or ""
    if not text and isinstance(params.get("blocks"), list):
        rendered = render_blocks([b for b in params["blocks"] if isinstance(b, dict)], names)
        text = rendered[0] if rendered else ""
    first = render_text(str(text), names).splitlines()[0] if text else ""
    outcome = "ok" if call.ok else f"FAILED {call.status} {call.error or ''}".rstrip()
    parts = [call.method, str(target), first[:80], f"-> {outcome}"]
    return " ".join(p for p in parts if p)
