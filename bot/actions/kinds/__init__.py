"""Each kind of action on a workload binds, in one module, how it is planned (what it will
change, for the confirmation), dry-run (the exact request, validated by the API server) and
carried out (re-checked against the live object first): `rollback.py`, `scale.py`,
`restart.py`. The flows look the kind up here instead of testing parameter types; a new kind
is a new module (its parameter model in bot/actions/registry.py, its policy name in
bot/actions/policy.py) registered below.

Silences are not a workload kind: they act on Alertmanager for an incident's alerts, and their
flow lives with the incident context in bot/flows/actions.py and bot/flows/execution.py.
"""

from __future__ import annotations

from bot.actions.kinds.base import Outcome, WorkloadKind, outcome_of
from bot.actions.kinds.restart import RESTART
from bot.actions.kinds.rollback import ROLLBACK
from bot.actions.kinds.scale import SCALE
from bot.errors import PayloadError

__all__ = ["WORKLOAD_KINDS", "Outcome", "WorkloadKind", "outcome_of", "workload_kind"]

WORKLOAD_KINDS: dict[str, WorkloadKind] = {kind.name: kind for kind in (ROLLBACK, SCALE, RESTART)}


def workload_kind(name: str) -> WorkloadKind:
    try:
        return WORKLOAD_KINDS[name]
    except KeyError:
        raise PayloadError(f"{name!r} is not an action on a workload") from None
