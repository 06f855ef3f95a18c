"""One error tree for the whole bot, with stable codes.

Every boundary translates these the same way: HTTP views turn them into a status and a
JSON body, Slack handlers into an ephemeral message where the user is, workers into a retry
decision. The codes are stable so that logs, the timeline and tests can refer to them.

    BotError                         E000
    +-- ConfigError                  E100  bad or missing setting, invalid file at start
    +-- PayloadError                 E200  inbound payload can never succeed (4xx)
    +-- NotFound                     E300  no such incident, runbook, deployment, silence
    +-- PolicyDenied                 E400  the policy does not allow this action
    +-- Conflict                     E500  state changed under us (lock held, 409, already done)
    +-- UpstreamError                E600  Slack, Prometheus, Alertmanager or Kubernetes failed
        +-- RetryableUpstreamError   E601  worth retrying: 5xx, 429, timeouts, connection errors
        +-- PermanentUpstreamError   E602  never worth retrying: 4xx, Slack ok:false, 403/404
"""

from __future__ import annotations

__all__ = [
    "BotError",
    "ConfigError",
    "Conflict",
    "NotFound",
    "PayloadError",
    "PermanentUpstreamError",
    "PolicyDenied",
    "RetryableUpstreamError",
    "UpstreamError",
]


class BotError(Exception):
    """Base of every error the bot raises on purpose; `str()` is safe to show a user."""

    code = "E000"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(BotError):
    code = "E100"


class PayloadError(BotError):
    code = "E200"


class NotFound(BotError):
    code = "E300"


class PolicyDenied(BotError):
    code = "E400"


class Conflict(BotError):
    code = "E500"


class UpstreamError(BotError):
    code = "E600"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RetryableUpstreamError(UpstreamError):
    code = "E601"


class PermanentUpstreamError(UpstreamError):
    code = "E602"
