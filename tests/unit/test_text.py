"""bot/text.py: outside text stays literal wherever it lands in Slack mrkdwn."""

from __future__ import annotations

import pytest

from bot.text import bold, code, defuse, escape, literal, preformatted, strip_paths, truncate


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("<!channel>", "&lt;!channel&gt;"),
        ("a & b", "a &amp; b"),
        ("*loud*", "\u2217loud\u2217"),
        ("~gone~", "\u223cgone\u223c"),
        ("`code`", "\u02cbcode\u02cb"),
        ("_italic_", "\uff3fitalic\uff3f"),
        ("vllm_high_latency", "vllm_high_latency"),  # inside a word `_` is not markup in Slack
    ],
)
def test_literal_neutralises_markup(raw: str, shown: str) -> None:
    assert literal(raw) == shown


def test_bold_cannot_be_closed_early_by_the_value() -> None:
    assert bold("Lat*ency <!here>") == "*Lat\u2217ency &lt;!here&gt;*"
    assert bold("x").count("*") == 2


def test_code_span_cannot_be_ended_by_the_value() -> None:
    assert code("vllm-`0`\nnext") == "vllm-\u02cb0\u02cb next"
    assert "`" not in code("```")
    assert escape("*a*") == "*a*"  # entities only, for our own markup


def test_plain_text_and_file_titles_keep_their_look_but_mention_nobody() -> None:
    assert defuse("<!channel> Lat") == "<\u200b!channel> Lat"


def test_absolute_paths_become_file_names() -> None:
    message = "1 runbook error:\n/srv/bot/runbooks/vllm.yaml:12: steps.0: 'gpu' is undefined"
    assert strip_paths(message) == "1 runbook error:\nvllm.yaml:12: steps.0: 'gpu' is undefined"
    assert strip_paths("see https://example.com/a/b") == "see https://example.com/a/b"


def test_truncate_never_cuts_an_entity() -> None:
    assert truncate(escape("a" * 8 + "<b"), 11) == "a" * 8 + "…"


def test_preformatted_block_cannot_be_ended_by_the_value() -> None:
    assert (
        preformatted('{"image": "x```<!channel>"}\nnext')
        == '{"image": "x\u02cb\u02cb\u02cb&lt;!channel&gt;"}\nnext'
    )
