"""`/incident` text as Slack sends it, parsed into commands or usage errors."""

from __future__ import annotations

import pytest

from bot.incidents.models import Severity
from bot.slack import commands
from bot.slack.commands import (
    USAGE,
    Ack,
    Assign,
    Help,
    ListOpen,
    Note,
    Postmortem,
    Resolve,
    SetSeverity,
    Show,
    Timeline,
    UsageError,
    parse,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", Help()),
        ("   ", Help()),
        ("help", Help()),
        ("HELP me", Help()),
        ("list", ListOpen()),
        ("ls", ListOpen()),
        ("show INC-42", Show(42)),
        ("show inc-42", Show(42)),
        ("show 42", Show(42)),
        ("show #42", Show(42)),
        ("show INC42", Show(42)),
        ("ack INC-7", Ack(7)),
        ("acknowledge 7", Ack(7)),
        ("  ack   7  ", Ack(7)),
        ("resolve 7", Resolve(7, None)),
        ("resolve 7 rolled back to r41", Resolve(7, "rolled back to r41")),
        ("timeline INC-3", Timeline(3)),
        ("postmortem INC-3", Postmortem(3)),
        ("severity 3 critical", SetSeverity(3, Severity.CRITICAL)),
        ("sev 3 WARNING", SetSeverity(3, Severity.WARNING)),
        ("severity INC-3 info", SetSeverity(3, Severity.INFO)),
        ("note 3 GPU memory at 98%", Note(3, "GPU memory at 98%")),
    ],
)
def test_commands_parse(text: str, expected: commands.Command) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # "Escape channels, users, and links" on: Slack sends the ID, with or without the name.
        ("assign INC-9 <@U0ONCALL2|bob>", Assign(9, "U0ONCALL2", "bob")),
        ("assign INC-9 <@U0ONCALL2>", Assign(9, "U0ONCALL2", None)),
        ("assign 9 <@W012AB3CD|grid.user>", Assign(9, "W012AB3CD", "grid.user")),
        ("assign 9 U0ONCALL2", Assign(9, "U0ONCALL2", None)),
    ],
)
def test_assign_accepts_the_mention_formats_slack_sends(text: str, expected: Assign) -> None:
    assert parse(text) == expected


def test_free_text_is_unescaped_once() -> None:
    # Slack escapes &, < and > in what people type; &amp;lt; is someone typing "&lt;" literally.
    assert parse("note 1 p99 &gt; 2s &amp; rising, see &amp;lt;") == Note(1, "p99 > 2s & rising, see &lt;")
    assert parse("resolve 1 a\nb") == Resolve(1, "a\nb")


@pytest.mark.parametrize(
    ("text", "problem", "usage"),
    [
        ("frobnicate", "`frobnicate` is not an /incident subcommand.", USAGE),
        ("list all", "`list` takes no arguments.", "Usage: `/incident list`"),
        ("show", "`show` needs an incident ID.", "Usage: `/incident show ID`"),
        ("ack INC-", "`INC-` is not an incident ID", "Usage: `/incident ack ID`"),
        ("ack 4 2", "`ack` takes only an incident ID.", "Usage: `/incident ack ID`"),
        ("timeline -1", "`-1` is not an incident ID", "Usage: `/incident timeline ID`"),
        ("severity 4", "`severity` needs a level; use critical, warning or info.", None),
        ("severity 4 sev1", "`sev1` is not a severity; use critical, warning or info.", None),
        ("assign 4", "`assign` needs exactly one person", None),
        ("assign 4 <@U1> <@U2>", "`assign` needs exactly one person", None),
        ("assign 4 bob", "`bob` is not a user", None),
        ("assign 4 @bob", "`@bob` reached the bot as plain text", None),
        ("note 4", "`note` needs some text to add.", "Usage: `/incident note ID text`"),
    ],
)
def test_usage_errors_say_what_was_wrong(text: str, problem: str, usage: str | None) -> None:
    with pytest.raises(UsageError) as caught:
        parse(text)
    assert problem in caught.value.message
    if usage is not None:
        assert caught.value.usage.startswith(usage)


def test_echoed_input_cannot_break_out_or_ping() -> None:
    with pytest.raises(UsageError) as caught:
        parse("`&lt;!channel&gt;`")
    assert "<!channel>" not in caught.value.message
    assert "&lt;!channel&gt;" in caught.value.message
    assert caught.value.message.count("`") == 2


def test_overlong_text_is_refused() -> None:
    with pytest.raises(UsageError, match="keep it under 3000"):
        parse("note 1 " + "x" * 3001)


def test_usage_lists_every_subcommand() -> None:
    for sub in commands.Sub:
        assert f"`/incident {commands.SYNTAX[sub][0]}`" in USAGE
