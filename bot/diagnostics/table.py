"""Diagnostics as Slack Block Kit: a headline per query and a compact table of its top series.

Read at 3 a.m. on a phone, so:

* the first line of each diagnostic is its answer: the title, then the top series' value and
  how it compares ("*4.2 s*, up from 0.6 s before the incident and 0.5 s last week");
* the table is a section's `fields` (Slack lays them out as two columns that wrap inside the
  screen, on desktop and on mobile) rather than a monospace code block, whose long rows wrap
  mid-row on a phone and lose their alignment. Left: the series, named only by the labels
  whose values differ between the series (`llama-3-8b · pod-xk2pq`; the label names are said
  once above); right: the value in bold with an arrow for its trend, and the two baselines
  below it. At most `top` (5) series, i.e. 10 fields, Slack's maximum per section; the rest
  is "… and 12 more series";
* the query itself goes last, small, in a context block, for whoever wants to rerun it.

Every value that came from outside (label names and values, the query, error texts) is
escaped for mrkdwn and cut: label values in the middle (`llama-3-8…-xk2pq`), because pod
names differ at their end. Inline code spans are used for label values so that `*`, `_` and
`~` in them are shown as typed; a backtick inside becomes U+02CB (a look-alike) so it cannot close the span.
Budgets are Slack's: 50 blocks per message (2 per diagnostic; beyond 24 diagnostics the rest
are counted, not shown), 3000 characters per section text, 2000 per field.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.diagnostics.baseline import Comparison, Trend
from bot.diagnostics.run import DiagnosticResult
from bot.text import code, escape, literal, truncate

__all__ = ["TOP_SERIES", "diagnostics_blocks", "diagnostics_message", "diagnostics_text"]

Block = dict[str, Any]

TOP_SERIES = 5
MAX_BLOCKS = 50
SECTION_TEXT = 3000
FIELD_TEXT = 2000
CONTEXT_TEXT = 2000
FALLBACK_TEXT = 3000
TITLE_LIMIT = 200
LABEL_VALUE_LIMIT = 60
SERIES_NAME_LIMIT = 180
QUERY_LIMIT = 600
ERROR_LIMIT = 1500

_ARROWS = {Trend.UP: "↑", Trend.DOWN: "↓", Trend.SAME: "≈"}
#: Shown instead of a backtick inside an inline code span (MODIFIER LETTER GRAVE ACCENT).
_BACKTICK = "\u02cb"
_BASELINE_NOTE = (
    "_before_: median over the hour before the incident started · "
    "_last week_: median over the hour around the same time 7 days earlier"
)


def _middle(text: str, limit: int) -> str:
    """Cut in the middle, keeping both ends (pod and replica names differ at their end)."""
    if len(text) <= limit:
        return text
    head = (limit - 1) // 2
    tail = limit - 1 - head
    return f"{text[:head]}…{text[-tail:] if tail else ''}"


def _code(text: str, limit: int = LABEL_VALUE_LIMIT) -> str:
    if not text:
        return "_(empty)_"
    return f"`{escape(_middle(text, limit).replace('`', _BACKTICK))}`"


def _bold(title: str) -> str:
    """The title in bold, unless the runbook already formatted it (nested `*` would break)."""
    return title if "*" in title else f"*{title}*"


def _differing(comparisons: Sequence[Comparison]) -> list[str]:
    """Label names whose values are not the same in every series, in a stable order
    (`__name__` first when it differs, then alphabetical)."""
    names: set[str] = set()
    for c in comparisons:
        names.update(c.labels)
    differing = [n for n in names if len({c.labels.get(n, "") for c in comparisons}) > 1]
    return sorted(differing, key=lambda n: (n != "__name__", n))


def _series_name(comparison: Comparison, names: Sequence[str]) -> str:
    if not names:
        labels = ", ".join(f"{k}={v}" for k, v in sorted(comparison.labels.items()))
        return _code(labels or "{}", SERIES_NAME_LIMIT)
    parts = [_code(comparison.labels.get(n, "")) for n in names]
    return truncate(" · ".join(parts), SERIES_NAME_LIMIT * 2)


def _value_cell(comparison: Comparison) -> str:
    now, before, week = comparison.formatted()
    tb, tw = comparison.trends
    arrow = _ARROWS.get(tb) or _ARROWS.get(tw) or ""
    cell = f"*{now}*" + (f" {arrow}" if arrow else "")
    if comparison.before is not None or comparison.last_week is not None:
        cell += f"\n{before} before · {week} last week"
    return cell


def _headline(result: DiagnosticResult, names: Sequence[str]) -> str:
    comparisons = result.comparisons
    if not comparisons:
        return "_No data: the query returned no series._"
    top = comparisons[0]
    text = literal(top.text())
    now = top.formatted()[0]
    # Bold the current value, the one number that matters most.
    if text.startswith(literal(now)) and top.current is not None:
        text = f"*{literal(now)}*{text[len(literal(now)) :]}"
    if len(comparisons) == 1:
        return text
    return f"Top: {_series_name(top, names)} at {text}"


def _result_blocks(result: DiagnosticResult, top: int) -> list[Block]:
    title = truncate(result.title.strip() or "Diagnostic", TITLE_LIMIT)
    query = _middle(result.query.strip(), QUERY_LIMIT).replace("`", _BACKTICK)
    context = f"`{code(query)}`"
    if result.error is not None:
        why = literal(truncate(result.error, ERROR_LIMIT))
        text = f":warning: {_bold(title)}\nPrometheus query failed: {why}"
        return [
            {"type": "section", "text": {"type": "mrkdwn", "text": truncate(text, SECTION_TEXT)}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(context, CONTEXT_TEXT)}]},
        ]
    comparisons = list(result.comparisons)
    names = _differing(comparisons)
    heading = _bold(title)
    if len(comparisons) > 1:
        by = f", by {', '.join(literal(n) for n in names)}" if names else ""
        heading += f" · {len(comparisons)} series{by}"
    section: Block = {
        "type": "section",
        "text": {"type": "mrkdwn", "text": truncate(f"{heading}\n{_headline(result, names)}", SECTION_TEXT)},
    }
    shown = comparisons[:top] if len(comparisons) > 1 else []
    if shown:
        fields: list[dict[str, str]] = []
        for comparison in shown:
            fields.append({"type": "mrkdwn", "text": truncate(_series_name(comparison, names), FIELD_TEXT)})
            fields.append({"type": "mrkdwn", "text": truncate(_value_cell(comparison), FIELD_TEXT)})
        section["fields"] = fields
    more = len(comparisons) - len(shown) if shown else 0
    if more > 0:
        context += f" · … and {more} more series"
    return [
        section,
        {"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(context, CONTEXT_TEXT)}]},
    ]


def diagnostics_blocks(results: Sequence[DiagnosticResult], *, top: int = TOP_SERIES) -> list[Block]:
    """Block Kit for a thread reply holding `results`, within Slack's limits.

    `top` is capped at 5: two fields per series and Slack allows 10 fields per section.
    """
    top = max(1, min(top, 5))
    blocks: list[Block] = []
    has_baseline = any(
        c.before is not None or c.last_week is not None for r in results for c in r.comparisons
    )
    reserve = 2 if has_baseline else 1  # the baseline note, and a "more diagnostics" line
    for index, result in enumerate(results):
        rendered = _result_blocks(result, top)
        if len(blocks) + len(rendered) > MAX_BLOCKS - reserve:
            left = len(results) - index
            blocks.append(
                {
                    "type": "context",
                    "elements": [
                        {
                            "type": "mrkdwn",
                            "text": f"… and {left} more diagnostic{'s' if left != 1 else ''} not shown "
                            "(Slack allows 50 blocks per message)",
                        }
                    ],
                }
            )
            break
        blocks.extend(rendered)
    if has_baseline:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _BASELINE_NOTE}]})
    return blocks[:MAX_BLOCKS]


def diagnostics_text(results: Sequence[DiagnosticResult]) -> str:
    """The plain fallback (`text` of the message): notifications and screen readers."""
    lines: list[str] = []
    for result in results:
        title = result.title.strip() or "Diagnostic"
        if result.error is not None:
            lines.append(f"{title}: Prometheus query failed: {literal(result.error)}")
        elif not result.comparisons:
            lines.append(f"{title}: no data")
        else:
            lines.append(f"{title}: {literal(result.comparisons[0].text())}")
    return truncate("\n".join(lines) or "No diagnostics.", FALLBACK_TEXT)


def diagnostics_message(results: Sequence[DiagnosticResult], *, top: int = TOP_SERIES) -> dict[str, Any]:
    """`{"text": fallback, "blocks": [...]}`, ready for `chat.postMessage` in the thread."""
    return {"text": diagnostics_text(results), "blocks": diagnostics_blocks(results, top=top)}
