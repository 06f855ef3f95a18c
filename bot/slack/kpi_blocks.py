"""Model KPIs in Slack: the `/model` list, one model's scorecard, and the weekly digest.
Pure functions from `Scorecard`s to Block Kit; every name from outside is escaped.

A KPI reads "p99 latency *0.797 s* ↑ from 0.61 s · SLO ≤ 0.5 s :x:"; one that could not be
computed reads "requests/s: not computed (Prometheus did not answer within 2.5s)", so a
reader never mistakes "unknown" for "zero".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.actions.kubernetes import Revision
from bot.kpis.scorecard import HIGHER_IS_BETTER, Scorecard
from bot.kpis.service import KpiReport
from bot.slack.blocks import Message, slack_date
from bot.text import escape, truncate

__all__ = ["MODEL_USAGE", "digest_message", "model_list", "scorecard_message", "scorecard_text"]

MODEL_USAGE = (
    "Usage: `/model` lists the served models; `/model NAME [WINDOW]` shows one model's KPIs, "
    "e.g. `/model Llama-3.1-8B-Instruct 24h` (WINDOW: a Prometheus duration such as 1h, 24h, 7d; default 7d)."
)
SECTION_TEXT = 3000
MAX_BLOCKS = 50
LABELS = {
    "uptime_pct": "uptime",
    "latency_p99_seconds": "p99 latency",
    "requests_per_second": "requests/s",
    "error_ratio": "error ratio",
    "cost_per_1k_usd": "cost per 1k requests",
    "drift_score": "drift score",
}


def fmt(kpi: str, value: float | None) -> str:
    if value is None:
        return "-"
    if kpi == "uptime_pct":
        return f"{value:.2f}%"
    if kpi == "latency_p99_seconds":
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.3g} s"
    if kpi == "error_ratio":
        return f"{value * 100:.2f}%"
    if kpi == "cost_per_1k_usd":
        return f"${value:.3f}"
    if kpi == "requests_per_second":
        return f"{value:.3g}"
    return f"{value:.3g}"


def _trend(kpi: str, value: float | None, before: float | None) -> str:
    if value is None or before is None:
        return "(no previous window to compare)" if value is not None else ""
    if abs(value - before) <= 1e-9 * max(1.0, abs(before)):
        return f"→ same as the window before ({fmt(kpi, before)})"
    up = value > before
    better = up == HIGHER_IS_BETTER[kpi]
    arrow = "↑" if up else "↓"
    return f"{arrow} from {fmt(kpi, before)}{'' if better else ' :warning:'}"


def _slo(card: Scorecard, kpi: str) -> str:
    value = card.values.get(kpi)
    if kpi == "uptime_pct" and card.slo.uptime_pct is not None:
        ok = value is None or value >= card.slo.uptime_pct
        return f" · SLO ≥ {card.slo.uptime_pct:g}% {':white_check_mark:' if ok else ':x:'}"
    if kpi == "latency_p99_seconds" and card.slo.latency_p99_seconds is not None:
        ok = value is None or value <= card.slo.latency_p99_seconds
        return f" · SLO ≤ {fmt(kpi, card.slo.latency_p99_seconds)} {':white_check_mark:' if ok else ':x:'}"
    return ""


def _name(card: Scorecard) -> str:
    if card.display_name != card.model:
        return f"*{escape(card.display_name)}* ({escape(card.namespace)}/{escape(card.model)})"
    return f"*{escape(card.namespace)}/{escape(card.model)}*"


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": truncate(text, SECTION_TEXT)}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(text, SECTION_TEXT)}]}


def _problems(report: KpiReport) -> list[str]:
    return [f":warning: {escape(p)}" for p in report.problems]


def model_line(card: Scorecard) -> str:
    parts = [
        f"{LABELS[k].split(' ')[0] if k != 'latency_p99_seconds' else 'p99'} {fmt(k, card.values.get(k))}"
        for k in ("uptime_pct", "latency_p99_seconds", "requests_per_second", "error_ratio")
    ]
    opened = len(card.incidents.open) if card.incidents else 0
    tail = f" · :rotating_light: {opened} open" if opened else ""
    breach = " :x:" if card.breaches() else ""
    return f"• {_name(card)}{breach} · {' · '.join(parts)}{tail}"


def model_list(report: KpiReport) -> Message:
    if not report.models:
        text = f"No served models found in Prometheus over {escape(report.window.text)}."
        return {"text": text, "blocks": [_section(text), *map(_context, _problems(report))]}
    head = f"*{len(report.models)} models* over the last {escape(report.window.text)}:"
    lines = [model_line(card) for card in report.models]
    blocks: list[dict[str, Any]] = [_section(head)]
    chunk: list[str] = []
    for line in lines:  # several sections when the list is long (3000 characters each)
        if sum(len(x) + 1 for x in chunk) + len(line) > SECTION_TEXT - 100:
            blocks.append(_section("\n".join(chunk)))
            chunk = []
        chunk.append(line)
    if chunk:
        blocks.append(_section("\n".join(chunk)))
    blocks.append(_context("`/model NAME [WINDOW]` for one model's scorecard and chart"))
    blocks.extend(_context(p) for p in _problems(report))
    return {"text": f"{len(report.models)} models over {report.window.text}", "blocks": blocks[:MAX_BLOCKS]}


def scorecard_text(card: Scorecard) -> str:
    lines = []
    for kpi, label in LABELS.items():
        value = card.values.get(kpi)
        if value is None:
            why = card.missing.get(kpi, "no data")
            lines.append(f"• {label}: not computed ({escape(why)})")
            continue
        trend = _trend(kpi, value, card.previous.get(kpi))
        lines.append(f"• {label} *{fmt(kpi, value)}* {trend}{_slo(card, kpi)}")
    stats = card.incidents
    if stats is None:
        lines.append(f"• incidents: not counted ({escape(card.incidents_missing or 'unknown')})")
    else:
        mtta = f"{stats.mtta_seconds / 60:.1f} min" if stats.mtta_seconds is not None else "-"
        mttr = f"{stats.mttr_seconds / 60:.1f} min" if stats.mttr_seconds is not None else "-"
        lines.append(
            f"• incidents *{stats.incidents}* · median time to ack {mtta} · to resolve {mttr}"
            f" · {stats.critical_minutes:g} min with a critical incident open"
        )
    return "\n".join(lines)


def scorecard_message(
    card: Scorecard, report: KpiReport, *, rollout: Revision | None = None, rollout_note: str | None = None
) -> Message:
    head = f"{_name(card)} over the last {escape(report.window.text)}"
    where = [f"server: {escape(card.server or 'not seen in Prometheus')}"]
    if card.deployment:
        where.append(f"deployment: {escape(card.namespace)}/{escape(card.deployment)}")
    version = card.version or (rollout.model_version if rollout else None)
    where.append(f"model version: {escape(version) if version else 'not known'}")
    if rollout is not None:
        when = slack_date(rollout.created_at) if rollout.created_at else "at an unknown time"
        where.append(f"last rollout: revision {rollout.revision}, {when}")
    elif rollout_note:
        where.append(f"last rollout: not known ({escape(rollout_note)})")
    blocks: list[dict[str, Any]] = [
        _section(head),
        _context(" · ".join(where)),
        _section(scorecard_text(card)),
    ]
    breaches = card.breaches()
    if breaches:
        blocks.append(_section(":x: *SLO breached:* " + "; ".join(escape(b) for b in breaches)))
    if card.incidents and card.incidents.open:
        lines = [
            f"• INC-{o.id} {escape(o.severity)} · {escape(o.status)} · {escape(truncate(o.title, 150))}"
            for o in card.incidents.open[:10]
        ]
        blocks.append(_section("*Open incidents*\n" + "\n".join(lines)))
    else:
        blocks.append(_context("No open incidents."))
    blocks.extend(_context(p) for p in _problems(report))
    return {"text": f"KPIs of {card.namespace}/{card.model} over {report.window.text}", "blocks": blocks}


def digest_message(report: KpiReport, *, title: str = "Model KPIs") -> Message:
    """Every model's scorecard in one message; models breaching an SLO first."""
    ordered: Sequence[Scorecard] = sorted(
        report.models, key=lambda c: (not c.breaches(), c.namespace, c.model)
    )
    breaching = sum(1 for c in ordered if c.breaches())
    head = f"*{escape(title)}* over the last {escape(report.window.text)}: {len(ordered)} models"
    head += f", {breaching} breaching an SLO" if breaching else ", every SLO met"
    blocks: list[dict[str, Any]] = [_section(head)]
    room = MAX_BLOCKS - 2 - len(report.problems)
    for card in ordered[: room // 2]:
        breaches = card.breaches()
        flag = f" :x: {escape('; '.join(breaches))}" if breaches else ""
        blocks.append(_section(f"{_name(card)}{flag}\n{scorecard_text(card)}"))
        blocks.append({"type": "divider"})
    if len(ordered) > room // 2:
        blocks.append(_context(f"…and {len(ordered) - room // 2} more: `/model` lists them all"))
    blocks.extend(_context(p) for p in _problems(report))
    return {
        "text": f"{title}: {len(ordered)} models over {report.window.text}",
        "blocks": blocks[:MAX_BLOCKS],
    }
