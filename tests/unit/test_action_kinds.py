"""Every action kind on a workload registered in bot/actions/registry.py has its module in
bot/actions/kinds/ binding plan, dry run and execution; the flows find it by name."""

from __future__ import annotations

import pytest

from bot.actions.kinds import WORKLOAD_KINDS, workload_kind
from bot.actions.registry import REGISTRY
from bot.errors import PayloadError


def test_every_workload_action_has_a_kind_module() -> None:
    workload_actions = {str(kind) for kind, spec in REGISTRY.items() if spec.workload}
    assert workload_actions == set(WORKLOAD_KINDS) == {"rollback", "scale", "restart"}
    for name in workload_actions:
        assert workload_kind(name).name == name


def test_a_silence_is_not_a_workload_kind() -> None:
    with pytest.raises(PayloadError, match="'silence' is not an action on a workload"):
        workload_kind("silence")
