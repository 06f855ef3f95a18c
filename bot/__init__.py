"""incident-bot: turns Prometheus Alertmanager alerts into Slack incidents that responders drive."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
