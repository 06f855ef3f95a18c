"""Did it work? What the bot watches after an action, and how it words the answer. Pure.

The verdict comes from the alert's own expression (read back from its generatorURL): the
service has recovered when the expression returns nothing, which is exactly when Prometheus
would resolve the alert (leaving out its `for:`). Without an expression there is no verdict
from Prometheus; the incident's alerts resolving (Alertmanager's word) is used instead.

The figure shown before and after ("p99 end-to-end latency 38 s -> 4.1 s") is the runbook's
`recovery_query` when it has one (the number its author chose to show recovery), else the
alert expression's left-hand side when the expression is a comparison with a number
(`<lhs> > 10`), else the expression's own value. Several series are summarised by the worst
one: the highest for an alert on a high value, the lowest for an alert on a low value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from bot.diagnostics import Series, format_value, format_values
from bot.runbooks.render import RenderedRunbook

__all__ = ["Comparison", "RecoveryCheck", "figure_of", "recovery_check", "split_comparison"]

_COMPARISON = re.compile(r"(==|!=|>=|<=|>|<)")
_NUMBER = re.compile(r"^(?:bool\s+)?([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)$")


@dataclass(frozen=True)
class Comparison:
    lhs: str
    op: str
    threshold: float


def split_comparison(expr: str) -> Comparison | None:
    """`<lhs> <op> <number>` at the top level of `expr` (outside brackets, braces and strings),
    or None when the expression is not such a comparison."""
    depth = 0
    quote: str | None = None
    last: tuple[int, str] | None = None
    i = 0
    while i < len(expr):
        ch = expr[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if ch == quote:
                quote = None
        elif ch in "\"'`":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0:
            match = _COMPARISON.match(expr, i)
            if match:
                last = (i, match.group(1))
                i += len(match.group(1))
                continue
        i += 1
    if last is None:
        return None
    position, op = last
    lhs, rhs = expr[:position].strip(), expr[position + len(op) :].strip()
    number = _NUMBER.match(rhs)
    if not lhs or number is None or _COMPARISON.search(_strip_nested(lhs)):
        return None
    return Comparison(lhs, op, float(number.group(1)))


def _strip_nested(expr: str) -> str:
    """`expr` with everything inside brackets removed (to find a second top-level operator)."""
    out, depth = [], 0
    for ch in expr:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def _normal(query: str) -> str:
    return " ".join(query.split())


@dataclass(frozen=True)
class RecoveryCheck:
    """What to watch: `condition` (recovered when it returns nothing; None: watch the alerts
    instead) and `figure`, the query whose value is reported, with its title and unit."""

    condition: str | None
    figure: str | None
    title: str
    unit: str
    lowest: bool  # the alert fires on a low value: the worst series is the lowest
    # How long the condition must stay clear to count as recovered: the alert rule's `for:`
    # (a condition that clears for one poll and comes back within `for:` has not recovered).
    hold: float = 0.0

    def to_payload(self) -> dict[str, object]:
        return {
            "condition": self.condition,
            "figure": self.figure,
            "title": self.title,
            "unit": self.unit,
            "lowest": self.lowest,
            "hold": self.hold,
        }

    @classmethod
    def from_payload(cls, data: dict[str, object]) -> RecoveryCheck:
        return cls(
            condition=str(data["condition"]) if data.get("condition") else None,
            figure=str(data["figure"]) if data.get("figure") else None,
            title=str(data.get("title") or "the alert"),
            unit=str(data.get("unit") or "none"),
            lowest=bool(data.get("lowest")),
            hold=float(str(data.get("hold") or 0)),
        )

    def change(self, before: float | None, after: float | None) -> str:
        """'p99 end-to-end latency 38 s -> 4.1 s'."""
        if self.figure is None:
            return self.title
        first, second = format_values([before, after], self.unit)
        if first.startswith("0.0") or second.startswith("0.0"):
            # Far apart ("1.75 min -> 0.0811 min"): each on its own scale reads better.
            first, second = format_value(before, self.unit), format_value(after, self.unit)
        return f"{self.title} {first} -> {second}"


def _guess_unit(query: str) -> str:
    if re.search(r"histogram_quantile\s*\(.*_seconds_bucket", query, re.DOTALL):
        return "seconds"
    return "none"


def recovery_check(
    alert_expr: str | None, alertname: str | None, runbook: RenderedRunbook | None
) -> RecoveryCheck | None:
    """What to watch after an action on an incident, or None when there is nothing to watch."""
    recovery = runbook.recovery_query.strip() if runbook and runbook.recovery_query else None
    comparison = split_comparison(alert_expr) if alert_expr else None
    lowest = comparison is not None and comparison.op in ("<", "<=")
    figure: str | None
    if recovery:
        figure = recovery
    elif comparison is not None:
        figure = comparison.lhs
    else:
        figure = alert_expr
    if figure is None:
        return None
    title, unit = alertname or "the alert's expression", _guess_unit(figure)
    for item in runbook.diagnostics if runbook else ():
        if _normal(item.query) == _normal(figure):
            title = re.sub(r"[*_`~]", "", item.title).replace("&lt;", "<").replace("&gt;", ">")
            title, unit = title.replace("&amp;", "&"), item.unit
            break
    return RecoveryCheck(condition=alert_expr, figure=figure, title=title, unit=unit, lowest=lowest)


def figure_of(series: Sequence[Series], *, lowest: bool = False) -> float | None:
    """The worst finite value among the series' newest samples; None when there is none."""
    values = [s.last for s in series if s.last is not None and not math.isnan(s.last)]
    if not values:
        return None
    return min(values) if lowest else max(values)
