"""Settings, read from the environment (and an optional `.env` file) by pydantic-settings.

The variable names are part of the contract in DESIGN.md; other tools set them, so they are
spelled out as aliases instead of being derived from a prefix. `Settings()` never fails for
a missing Slack setting, because `demo`, `runbooks check` and the tests need no Slack at all;
`serve` calls `require_for_serve()`, which names the first missing variable in one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.errors import ConfigError

__all__ = ["Settings"]

MIB = 1024 * 1024


def _env(name: str) -> AliasChoices:
    """Accept the contract's variable name and the field name (for `Settings(field=...)`)."""
    return AliasChoices(name, name.lower())


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
        frozen=True,
    )

    slack_bot_token: SecretStr | None = Field(None, validation_alias=_env("SLACK_BOT_TOKEN"))
    slack_signing_secret: SecretStr | None = Field(None, validation_alias=_env("SLACK_SIGNING_SECRET"))
    slack_api_url: str = Field("https://slack.com/api/", validation_alias=_env("SLACK_API_URL"))
    # App-level token (xapp-...): Slack over Socket Mode instead of POST /slack/events.
    slack_app_token: SecretStr | None = Field(None, validation_alias=_env("SLACK_APP_TOKEN"))
    channel: str | None = Field(None, validation_alias=_env("INCIDENT_BOT_CHANNEL"))
    database_url: str = Field("sqlite:///incident-bot.db", validation_alias=_env("INCIDENT_BOT_DATABASE_URL"))
    webhook_token: SecretStr | None = Field(None, validation_alias=_env("INCIDENT_BOT_WEBHOOK_TOKEN"))
    # When set, /api/* (incidents, postmortems, the OpenAPI document) needs this Bearer token.
    api_token: SecretStr | None = Field(None, validation_alias=_env("INCIDENT_BOT_API_TOKEN"))
    runbooks_dir: Path = Field(Path("runbooks"), validation_alias=_env("INCIDENT_BOT_RUNBOOKS_DIR"))
    policy_file: Path | None = Field(None, validation_alias=_env("INCIDENT_BOT_POLICY_FILE"))
    routing_file: Path | None = Field(None, validation_alias=_env("INCIDENT_BOT_ROUTING_FILE"))
    prometheus_url: str | None = Field(None, validation_alias=_env("PROMETHEUS_URL"))
    alertmanager_url: str | None = Field(None, validation_alias=_env("ALERTMANAGER_URL"))
    kubeconfig: str | None = Field(None, validation_alias=_env("KUBECONFIG"))
    models_file: Path | None = Field(None, validation_alias=_env("INCIDENT_BOT_MODELS_FILE"))
    kpi_digest: str | None = Field(None, validation_alias=_env("INCIDENT_BOT_KPI_DIGEST"))
    kpi_channel: str | None = Field(None, validation_alias=_env("INCIDENT_BOT_KPI_CHANNEL"))
    # MLflow's model registry, with MLflow's own credential variables (unset: registry off).
    mlflow_tracking_uri: str | None = Field(None, validation_alias=_env("MLFLOW_TRACKING_URI"))
    mlflow_tracking_token: SecretStr | None = Field(None, validation_alias=_env("MLFLOW_TRACKING_TOKEN"))
    mlflow_tracking_username: str | None = Field(None, validation_alias=_env("MLFLOW_TRACKING_USERNAME"))
    mlflow_tracking_password: SecretStr | None = Field(
        None, validation_alias=_env("MLFLOW_TRACKING_PASSWORD")
    )
    # Set by Kubernetes in every pod: the bot then uses its service account (in-cluster config).
    kubernetes_service_host: str | None = Field(None, validation_alias=_env("KUBERNETES_SERVICE_HOST"))

    # Off when operators migrate with `incident-bot db upgrade` (a Job before the rollout).
    migrate_on_start: bool = Field(True, validation_alias=_env("INCIDENT_BOT_MIGRATE_ON_START"))
    max_body_bytes: int = Field(8 * MIB, gt=0, validation_alias=_env("INCIDENT_BOT_MAX_BODY_BYTES"))
    dry_run: bool = Field(False, validation_alias=_env("INCIDENT_BOT_DRY_RUN"))
    retention_days: int = Field(30, ge=1, validation_alias=_env("INCIDENT_BOT_RETENTION_DAYS"))
    # How long the bot watches for recovery after an action (0: no recovery check).
    verify_seconds: float = Field(600.0, ge=0, le=86400, validation_alias=_env("INCIDENT_BOT_VERIFY_SECONDS"))
    workers: int = Field(4, ge=1, le=64, validation_alias=_env("INCIDENT_BOT_WORKERS"))
    slack_timeout: float = Field(10.0, gt=0, validation_alias=_env("INCIDENT_BOT_SLACK_TIMEOUT"))
    # Socket Mode: seconds between pings; four unanswered ones count as a lost connection.
    slack_ping_interval: float = Field(
        10.0, gt=0, le=300, validation_alias=_env("INCIDENT_BOT_SLACK_PING_INTERVAL")
    )
    slack_post_interval: float = Field(1.0, ge=0, validation_alias=_env("INCIDENT_BOT_SLACK_POST_INTERVAL"))
    public_url: str | None = Field(None, validation_alias=_env("INCIDENT_BOT_PUBLIC_URL"))
    # Where journaled notifications are turned into incidents: a process of its own (so a
    # storm's database work never competes with answering requests for the interpreter), or
    # a thread of the serving process (one process, for small installs and quick tests).
    intake_applier: Literal["process", "thread"] = Field(
        "process", validation_alias=_env("INCIDENT_BOT_INTAKE_APPLIER")
    )
    log_level: str = Field("INFO", validation_alias=_env("INCIDENT_BOT_LOG_LEVEL"))
    log_format: Literal["json", "text"] = Field("json", validation_alias=_env("INCIDENT_BOT_LOG_FORMAT"))

    @field_validator("slack_api_url")
    @classmethod
    def _trailing_slash(cls, value: str) -> str:
        # slack-sdk joins base_url and the method name by plain concatenation.
        return value if value.endswith("/") else value + "/"

    @field_validator("channel")
    @classmethod
    def _blank_channel_is_unset(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    def require_for_serve(self) -> None:
        """Fail with one line naming the first missing setting `serve` cannot run without.
        In Socket Mode (SLACK_APP_TOKEN) nothing arrives over HTTP from Slack, so the signing
        secret is not needed."""
        required = {
            "SLACK_BOT_TOKEN": (self.slack_bot_token, "the bot token (xoxb-...)"),
            "SLACK_SIGNING_SECRET": (self.slack_signing_secret, "verifies requests from Slack"),
            "INCIDENT_BOT_CHANNEL": (self.channel, "the default Slack channel ID for incidents"),
        }
        if self.socket_mode:
            del required["SLACK_SIGNING_SECRET"]
            if not self.app_token().startswith("xapp-"):
                raise ConfigError(
                    "SLACK_APP_TOKEN must be an app-level token (xapp-..., scope connections:write), "
                    "from the Slack app's Basic Information > App-Level Tokens"
                )
        for name, (value, meaning) in required.items():
            if value is None or (isinstance(value, SecretStr) and not value.get_secret_value()):
                raise ConfigError(f"missing required setting {name}: {meaning}")

    @property
    def socket_mode(self) -> bool:
        return self.slack_app_token is not None

    def app_token(self) -> str:
        return self.slack_app_token.get_secret_value() if self.slack_app_token else ""

    @property
    def in_cluster(self) -> bool:
        return bool(self.kubernetes_service_host)

    def token(self) -> str:
        return self.slack_bot_token.get_secret_value() if self.slack_bot_token else ""

    def api_bearer_token(self) -> str | None:
        value = self.api_token.get_secret_value().strip() if self.api_token else ""
        return value or None

    def signing_secret(self) -> str:
        return self.slack_signing_secret.get_secret_value() if self.slack_signing_secret else ""
