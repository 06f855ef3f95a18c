"""Slack mrkdwn escaping and truncation, applied to every value that came from outside.

The helpers live in the neutral bot/text.py (so domain packages need not import `bot.slack`);
this module keeps the names Slack code already imports.
"""

from __future__ import annotations

from bot.text import bold, code, defuse, escape, literal, preformatted, strip_paths, truncate

__all__ = ["bold", "code", "defuse", "escape", "literal", "preformatted", "strip_paths", "truncate"]
