"""Which runbook an alert gets: the most specific one whose matchers all hold.

"Most specific" compares `Specificity` (equality matchers first, then regexes, then the
rest), so a runbook for `alertname="VLLMQueueGrowing", namespace="llm-prod"` wins over one
for `alertname="VLLMQueueGrowing"`, which wins over a catch-all `alertname=~"VLLM.+"`. Two
runbooks that match the same alert equally specifically are a tie: selection stays
deterministic (the name that sorts first wins) and `runbooks check` reports the tie, so it
gets fixed instead of silently depending on names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol, TypeVar

from bot.runbooks.matchers import Specificity

__all__ = ["Selectable", "best_matches", "candidates", "match"]


class Selectable(Protocol):
    """What selection needs of a runbook (loader.Runbook), so this module does not import the
    loader that uses it."""

    @property
    def name(self) -> str: ...

    @property
    def specificity(self) -> Specificity: ...

    def matches(self, labels: Mapping[str, str]) -> bool: ...


Runbook = TypeVar("Runbook", bound=Selectable)


def candidates(runbooks: Iterable[Runbook], labels: Mapping[str, str]) -> list[Runbook]:
    """Every matching runbook, most specific first, ties in name order."""
    found = [rb for rb in runbooks if rb.matches(labels)]
    found.sort(key=lambda rb: rb.name)
    found.sort(key=lambda rb: rb.specificity, reverse=True)
    return found


def best_matches(runbooks: Iterable[Runbook], labels: Mapping[str, str]) -> list[Runbook]:
    """The matching runbooks of the highest specificity (more than one is a tie)."""
    found = candidates(runbooks, labels)
    if not found:
        return []
    top = found[0].specificity
    return [rb for rb in found if rb.specificity == top]


def match(runbooks: Iterable[Runbook], labels: Mapping[str, str]) -> Runbook | None:
    """The runbook for an alert with these labels, or None."""
    found = candidates(runbooks, labels)
    return found[0] if found else None
