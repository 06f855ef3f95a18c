"""The MLflow model registry through its documented REST API (`/api/2.0/mlflow/...`, the
routes of `ModelRegistryService` in mlflow/protos/model_registry.proto), with httpx: the bot
needs five calls, not the whole client.

Wire facts (checked against an MLflow 3 server): versions are strings ("3"), timestamps are
milliseconds since the epoch, a registered model lists its aliases as `[{alias, version}]`,
an unknown model is 404 `RESOURCE_DOES_NOT_EXIST`, an unknown alias 400
`INVALID_PARAMETER_VALUE`. Credentials are MLflow's own: a bearer token
(`MLFLOW_TRACKING_TOKEN`) or basic auth (`MLFLOW_TRACKING_USERNAME`/`PASSWORD`).

Failures follow bot/retry.py: 429 and 5xx (and no answer at all) are `RetryableUpstreamError`,
any other refusal is permanent and says what MLflow said.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

from bot.errors import ConfigError, NotFound, PermanentUpstreamError, RetryableUpstreamError
from bot.retry import is_retryable_status, retry_after_seconds

__all__ = [
    "REGISTRY_MISSING",
    "MlflowRegistry",
    "ModelRegistry",
    "ModelVersion",
    "NoRegistry",
    "RegisteredModel",
]

REGISTRY_MISSING = "the model registry is not configured: set MLFLOW_TRACKING_URI"
API = "api/2.0/mlflow/"


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: str
    created_at: datetime | None
    run_id: str | None
    source: str | None
    status: str | None = None

    @property
    def number(self) -> int:
        return int(self.version) if self.version.isdigit() else 0


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    aliases: dict[str, str] = field(default_factory=dict)  # alias -> version
    versions: tuple[ModelVersion, ...] = ()  # newest first

    def version(self, version: str) -> ModelVersion | None:
        return next((v for v in self.versions if v.version == version), None)


class ModelRegistry(Protocol):
    available: bool

    def model(self, name: str, *, versions: int = 10) -> RegisteredModel: ...

    def run_metrics(self, run_id: str) -> dict[str, float]: ...

    def alias_version(self, name: str, alias: str) -> ModelVersion: ...

    def get_version(self, name: str, version: str) -> ModelVersion: ...

    def set_alias(self, name: str, alias: str, version: str) -> None: ...

    def close(self) -> None: ...


class NoRegistry:
    """No MLFLOW_TRACKING_URI: every call says so (ConfigError, like the other null objects)."""

    available = False

    def model(self, name: str, *, versions: int = 10) -> RegisteredModel:
        raise ConfigError(REGISTRY_MISSING)

    def run_metrics(self, run_id: str) -> dict[str, float]:
        raise ConfigError(REGISTRY_MISSING)

    def alias_version(self, name: str, alias: str) -> ModelVersion:
        raise ConfigError(REGISTRY_MISSING)

    def get_version(self, name: str, version: str) -> ModelVersion:
        raise ConfigError(REGISTRY_MISSING)

    def set_alias(self, name: str, alias: str, version: str) -> None:
        raise ConfigError(REGISTRY_MISSING)

    def close(self) -> None:
        return None


def _when(millis: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(millis) / 1000, UTC)
    except (TypeError, ValueError, OverflowError):
        return None


def _version(raw: Mapping[str, Any]) -> ModelVersion:
    return ModelVersion(
        name=str(raw.get("name", "")),
        version=str(raw.get("version", "")),
        created_at=_when(raw.get("creation_timestamp")),
        run_id=raw.get("run_id") or None,
        source=raw.get("source") or None,
        status=raw.get("status") or None,
    )


def _quote(value: str) -> str:
    """A string literal of MLflow's search filter (SQL-like: single quotes, doubled inside)."""
    return "'" + value.replace("'", "''") + "'"


class MlflowRegistry:
    available = True

    def __init__(
        self,
        tracking_uri: str,
        *,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        base = tracking_uri if tracking_uri.endswith("/") else tracking_uri + "/"
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        auth = httpx.BasicAuth(username, password or "") if username else None
        self._display = httpx.URL(base).copy_with(username=None, password=None)
        self._client = httpx.Client(
            base_url=base + API, headers=headers, auth=auth, timeout=timeout, transport=transport
        )

    # ------------------------------------------------------------------ calls
    def model(self, name: str, *, versions: int = 10) -> RegisteredModel:
        """The registered model with its aliases and its newest `versions` versions."""
        raw = self._call("GET", "registered-models/get", params={"name": name}, what=f"model {name!r}")
        model = raw.get("registered_model") or {}
        aliases = {str(a["alias"]): str(a["version"]) for a in model.get("aliases") or () if "alias" in a}
        found = self._call(
            "GET",
            "model-versions/search",
            params={
                "filter": f"name={_quote(name)}",
                "max_results": versions,
                "order_by": "version_number DESC",
            },
            what=f"versions of {name!r}",
        )
        listed = tuple(_version(v) for v in found.get("model_versions") or ())
        return RegisteredModel(
            name=str(model.get("name", name)),
            aliases=aliases,
            versions=tuple(sorted(listed, key=lambda v: v.number, reverse=True)),
        )

    def run_metrics(self, run_id: str) -> dict[str, float]:
        """The latest value of each metric the run logged."""
        raw = self._call("GET", "runs/get", params={"run_id": run_id}, what=f"run {run_id}")
        metrics = ((raw.get("run") or {}).get("data") or {}).get("metrics") or ()
        return {str(m["key"]): float(m["value"]) for m in metrics if "key" in m and "value" in m}

    def alias_version(self, name: str, alias: str) -> ModelVersion:
        raw = self._call(
            "GET",
            "registered-models/alias",
            params={"name": name, "alias": alias},
            what=f"{name}@{alias}",
        )
        return _version(raw.get("model_version") or {})

    def get_version(self, name: str, version: str) -> ModelVersion:
        raw = self._call(
            "GET",
            "model-versions/get",
            params={"name": name, "version": version},
            what=f"version {version} of {name!r}",
        )
        return _version(raw.get("model_version") or {})

    def set_alias(self, name: str, alias: str, version: str) -> None:
        """Point `alias` at `version` (MLflow moves an existing alias; idempotent)."""
        self._call(
            "POST",
            "registered-models/alias",
            json={"name": name, "alias": alias, "version": version},
            what=f"{name}@{alias}",
        )

    def close(self) -> None:
        self._client.close()

    # ------------------------------------------------------------------ plumbing
    def _call(
        self,
        method: str,
        path: str,
        *,
        what: str,
        params: Mapping[str, Any] | None = None,
        json: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        try:
            response = self._client.request(method, path, params=params, json=json)
        except httpx.TimeoutException as exc:
            raise RetryableUpstreamError(
                f"MLflow at {self._display} did not answer in time ({exc})"
            ) from None
        except httpx.TransportError as exc:
            raise RetryableUpstreamError(f"MLflow at {self._display} is unreachable: {exc}") from None
        if response.is_success:
            try:
                body = response.json()
            except ValueError:
                raise PermanentUpstreamError(f"MLflow answered {path} with something not JSON") from None
            return body if isinstance(body, dict) else {}
        message = _error_text(response)
        if is_retryable_status(response.status_code):
            raise RetryableUpstreamError(
                f"MLflow answered {response.status_code} for {what}: {message}",
                retry_after=retry_after_seconds(response.headers.get("Retry-After")),
            )
        code = _error_code(response)
        if response.status_code == 404 or code == "RESOURCE_DOES_NOT_EXIST" or "not found" in message.lower():
            raise NotFound(f"{what} is not in the model registry ({message})")
        if response.status_code in (401, 403):
            raise PermanentUpstreamError(
                f"MLflow refused the bot ({response.status_code}): check MLFLOW_TRACKING_TOKEN "
                "or MLFLOW_TRACKING_USERNAME/PASSWORD"
            )
        raise PermanentUpstreamError(f"MLflow refused {what} ({response.status_code}): {message}")


def _error_code(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("error_code", "")) if isinstance(body, dict) else ""


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200] or response.reason_phrase
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])[:300]
    return response.reason_phrase
