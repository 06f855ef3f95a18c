"""The thread notice that mentions a model's owners on its drift or quality incident.

Runs inside the intake transaction (`on_open`), like the runbook matching: no I/O, one reply
job queued after the root message. Only when the incident went to the owners' channel
(`bot/kpis/owner_routing.py`); a routing-file route that took it elsewhere wins, owners and all.
"""

from __future__ import annotations

from sqlmodel import Session

from bot.incidents import jobs
from bot.incidents.models import Incident
from bot.kpis.models_file import ModelsFile
from bot.kpis.owner_routing import owners_spec
from bot.slack.blocks import notice
from bot.text import escape

__all__ = ["OwnerNotices", "owner_mention"]


def owner_mention(owner: str) -> str:
    """A user (`U...`, `W...`) as `<@U...>`, a user group (`S...`) as `<!subteam^S...>`."""
    return f"<!subteam^{owner}>" if owner.startswith("S") else f"<@{owner}>"


class OwnerNotices:
    def __init__(self, models: ModelsFile) -> None:
        self.models = models

    def on_open(self, session: Session, incident: Incident, labels: dict[str, str]) -> int:
        spec = owners_spec(self.models, incident.common_labels or labels)
        if spec is None or incident.channel != spec.owners_channel or not spec.owners:
            return 0
        owners = " ".join(owner_mention(o) for o in spec.owners)
        name = escape(spec.display_name or spec.model)
        text = (
            f":bust_in_silhouette: {owners}: {incident.key} is a drift or quality incident of *{name}*,"
            " a model you own. It went to this channel instead of paging on-call."
        )
        return jobs.reply(session, incident, notice(text), dedupe_key=f"owners:{incident.id}")
