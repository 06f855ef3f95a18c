"""Block Kit, view and metadata checks that slack.com makes and a bot can fail.

Not a full schema: the limits that bite in practice (counts and lengths from the official
SDK validators, python-slack-sdk `slack_sdk/models/blocks/*.py`, and docs.slack.dev
block-kit pages), unknown types, duplicate ids and wrong text types. Each problem is reported
the way Slack words it in `response_metadata.messages`: "[ERROR] <what> [json-pointer:<where>]".
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = [
    "MAX_MESSAGE_BLOCKS",
    "MAX_VIEW_BLOCKS",
    "check_blocks",
    "check_metadata",
    "check_view",
]

MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_VIEW_BYTES = 250_000

BLOCK_TYPES = frozenset(
    {
        "actions",
        "context",
        "context_actions",
        "divider",
        "file",
        "header",
        "image",
        "input",
        "markdown",
        "rich_text",
        "section",
        "table",
        "video",
    }
)
INTERACTIVE_ELEMENTS = frozenset(
    {
        "button",
        "channels_select",
        "checkboxes",
        "conversations_select",
        "datepicker",
        "datetimepicker",
        "email_text_input",
        "external_select",
        "file_input",
        "multi_channels_select",
        "multi_conversations_select",
        "multi_external_select",
        "multi_static_select",
        "multi_users_select",
        "number_input",
        "overflow",
        "plain_text_input",
        "radio_buttons",
        "rich_text_input",
        "static_select",
        "timepicker",
        "url_text_input",
        "users_select",
        "workflow_button",
    }
)
SECTION_ACCESSORIES = INTERACTIVE_ELEMENTS | {"image"}
EVENT_TYPE = re.compile(r"^[A-Za-z0-9_]+$")


class _Checker:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def fail(self, what: str, where: str) -> None:
        self.errors.append(f"[ERROR] {what} [json-pointer:{where}]")

    def max_len(self, value: Any, limit: int, where: str) -> None:
        if isinstance(value, str) and len(value) > limit:
            self.fail(f"must be less than {limit + 1} characters", where)

    def text_object(self, obj: Any, where: str, *, limit: int, plain_only: bool = False) -> None:
        if not isinstance(obj, dict):
            self.fail("must be an object", where)
            return
        kind = obj.get("type")
        if kind not in ("plain_text", "mrkdwn") or (plain_only and kind != "plain_text"):
            allowed = "plain_text" if plain_only else "plain_text, mrkdwn"
            self.fail(f"must be one of: {allowed}", f"{where}/type")
        text = obj.get("text")
        if not isinstance(text, str) or not text:
            self.fail("must be more than 0 characters", f"{where}/text")
        else:
            self.max_len(text, limit, f"{where}/text")

    def confirm(self, obj: Any, where: str) -> None:
        if obj is None:
            return
        if not isinstance(obj, dict):
            self.fail("must be an object", where)
            return
        for key, limit in (("title", 100), ("text", 300), ("confirm", 30), ("deny", 30)):
            self.text_object(obj.get(key), f"{where}/{key}", limit=limit, plain_only=key != "text")

    def options(self, items: Any, where: str, *, maximum: int) -> None:
        if not isinstance(items, list):
            self.fail("must be an array", where)
            return
        if len(items) > maximum:
            self.fail(f"must provide no more than {maximum} items", where)
        for i, option in enumerate(items):
            at = f"{where}/{i}"
            if not isinstance(option, dict):
                self.fail("must be an object", at)
                continue
            self.text_object(option.get("text"), f"{at}/text", limit=75)
            value = option.get("value")
            self.max_len(value, 150, f"{at}/value")

    def element(self, element: Any, where: str, allowed: frozenset[str]) -> str | None:
        if not isinstance(element, dict):
            self.fail("must be an object", where)
            return None
        kind = element.get("type")
        if kind not in allowed:
            self.fail(f"unsupported type: {kind!r}", f"{where}/type")
            return None
        action_id = element.get("action_id")
        self.max_len(action_id, 255, f"{where}/action_id")
        if kind == "image":
            self.image_ref(element, where)
            return None
        if kind == "button":
            self.text_object(element.get("text"), f"{where}/text", limit=75, plain_only=True)
            self.max_len(element.get("value"), 2000, f"{where}/value")
            self.max_len(element.get("url"), 3000, f"{where}/url")
            style = element.get("style")
            if style is not None and style not in ("primary", "danger"):
                self.fail("must be one of: primary, danger", f"{where}/style")
        elif kind in ("static_select", "multi_static_select"):
            if "options" in element:
                self.options(element["options"], f"{where}/options", maximum=100)
            elif "option_groups" not in element:
                self.fail("must provide options or option_groups", where)
        elif kind == "overflow":
            self.options(element.get("options"), f"{where}/options", maximum=5)
        elif kind in ("checkboxes", "radio_buttons"):
            self.options(element.get("options"), f"{where}/options", maximum=10)
        placeholder = element.get("placeholder")
        if placeholder is not None:
            self.text_object(placeholder, f"{where}/placeholder", limit=150, plain_only=True)
        self.confirm(element.get("confirm"), f"{where}/confirm")
        return action_id if isinstance(action_id, str) else None

    def image_ref(self, obj: dict[str, Any], where: str) -> None:
        if not obj.get("image_url") and not obj.get("slack_file"):
            self.fail("must provide image_url or slack_file", where)
        self.max_len(obj.get("image_url"), 3000, f"{where}/image_url")
        alt = obj.get("alt_text")
        if not isinstance(alt, str) or not alt:
            self.fail("must be more than 0 characters", f"{where}/alt_text")
        self.max_len(alt, 2000, f"{where}/alt_text")

    def block(self, block: dict[str, Any], where: str) -> None:
        kind = block["type"]
        if kind == "section":
            if "text" not in block and "fields" not in block:
                self.fail("must provide text or fields", where)
            if "text" in block:
                self.text_object(block["text"], f"{where}/text", limit=3000)
            fields = block.get("fields")
            if fields is not None:
                if not isinstance(fields, list) or len(fields) > 10:
                    self.fail("must provide no more than 10 items", f"{where}/fields")
                else:
                    for i, field_obj in enumerate(fields):
                        self.text_object(field_obj, f"{where}/fields/{i}", limit=2000)
            if "accessory" in block:
                self.element(block["accessory"], f"{where}/accessory", SECTION_ACCESSORIES)
        elif kind == "header":
            self.text_object(block.get("text"), f"{where}/text", limit=150, plain_only=True)
        elif kind == "actions":
            self.elements(block.get("elements"), f"{where}/elements", INTERACTIVE_ELEMENTS, maximum=25)
        elif kind == "context":
            elements = block.get("elements")
            if not isinstance(elements, list) or not elements:
                self.fail("must provide at least 1 item", f"{where}/elements")
            elif len(elements) > 10:
                self.fail("must provide no more than 10 items", f"{where}/elements")
            else:
                for i, element in enumerate(elements):
                    at = f"{where}/elements/{i}"
                    if isinstance(element, dict) and element.get("type") == "image":
                        self.image_ref(element, at)
                    else:
                        self.text_object(element, at, limit=3000)
        elif kind == "image":
            self.image_ref(block, where)
            if "title" in block:
                self.text_object(block["title"], f"{where}/title", limit=2000, plain_only=True)
        elif kind == "markdown":
            text = block.get("text")
            if not isinstance(text, str) or not text:
                self.fail("must be more than 0 characters", f"{where}/text")
            self.max_len(text, 12000, f"{where}/text")
        elif kind == "input":
            self.text_object(block.get("label"), f"{where}/label", limit=2000, plain_only=True)
            self.element(block.get("element"), f"{where}/element", INTERACTIVE_ELEMENTS)
        elif kind == "rich_text" and not isinstance(block.get("elements"), list):
            self.fail("must be an array", f"{where}/elements")

    def elements(self, elements: Any, where: str, allowed: frozenset[str], *, maximum: int) -> None:
        if not isinstance(elements, list) or not elements:
            self.fail("must provide at least 1 item", where)
            return
        if len(elements) > maximum:
            self.fail(f"must provide no more than {maximum} items", where)
        seen: set[str] = set()
        for i, element in enumerate(elements):
            action_id = self.element(element, f"{where}/{i}", allowed)
            if action_id is not None:
                if action_id in seen:
                    self.fail(f"duplicate action_id: {action_id}", f"{where}/{i}/action_id")
                seen.add(action_id)


def check_blocks(blocks: Any, *, limit: int = MAX_MESSAGE_BLOCKS, where: str = "/blocks") -> list[str]:
    """Slack's complaints about a `blocks` array; empty when it would be accepted."""
    checker = _Checker()
    if not isinstance(blocks, list):
        checker.fail("must be an array", where)
        return checker.errors
    if len(blocks) > limit:
        checker.fail(f"must provide no more than {limit} items", where)
    block_ids: set[str] = set()
    for i, block in enumerate(blocks):
        at = f"{where}/{i}"
        if not isinstance(block, dict):
            checker.fail("must be an object", at)
            continue
        kind = block.get("type")
        if kind not in BLOCK_TYPES:
            checker.fail(f"unsupported type: {kind!r}", f"{at}/type")
            continue
        block_id = block.get("block_id")
        if block_id is not None:
            if not isinstance(block_id, str) or not block_id:
                checker.fail("must be a non-empty string", f"{at}/block_id")
            else:
                checker.max_len(block_id, 255, f"{at}/block_id")
                if block_id in block_ids:
                    checker.fail(f"duplicate block_id: {block_id}", f"{at}/block_id")
                block_ids.add(block_id)
        checker.block(block, at)
    return checker.errors


def check_view(view: Any, *, home: bool) -> list[str]:
    """Problems with a `view` for views.open/push/update (modal) or views.publish (home)."""
    checker = _Checker()
    if not isinstance(view, dict):
        checker.fail("must be an object", "/view")
        return checker.errors
    expected = "home" if home else "modal"
    if view.get("type") != expected:
        checker.fail(f"must be {expected}", "/view/type")
    if not home:
        checker.text_object(view.get("title"), "/view/title", limit=24, plain_only=True)
    for key in ("submit", "close"):
        if key in view:
            checker.text_object(view[key], f"/view/{key}", limit=24, plain_only=True)
    checker.max_len(view.get("private_metadata"), 3000, "/view/private_metadata")
    checker.max_len(view.get("callback_id"), 255, "/view/callback_id")
    checker.max_len(view.get("external_id"), 255, "/view/external_id")
    blocks = view.get("blocks")
    if blocks is None:
        checker.fail("missing required field: blocks", "/view/blocks")
    else:
        checker.errors += check_blocks(blocks, limit=MAX_VIEW_BLOCKS, where="/view/blocks")
        has_input = isinstance(blocks, list) and any(
            isinstance(b, dict) and b.get("type") == "input" for b in blocks
        )
        if has_input and not home and "submit" not in view:
            checker.fail("submit is required when an input block is present", "/view/submit")
    if len(json.dumps(view)) > MAX_VIEW_BYTES:
        checker.fail("view_too_large", "/view")
    return checker.errors


def check_metadata(metadata: Any) -> str | None:
    """The error code for a message `metadata` argument, or None when Slack would store it."""
    if not isinstance(metadata, dict):
        return "invalid_metadata_format"
    event_type = metadata.get("event_type")
    payload = metadata.get("event_payload")
    if not isinstance(event_type, str) or not EVENT_TYPE.match(event_type) or not isinstance(payload, dict):
        return "invalid_metadata_schema"
    return None
