"""Which Slack channel an incident goes to: label matchers to channel IDs, in a small YAML file.

    # INCIDENT_BOT_ROUTING_FILE
    routes:                          # first match wins
      - name: llm-platform
        match: ['namespace=~"llm-.*"', 'severity="critical"']   # Alertmanager matcher syntax
        channel: C0LLMPAGES
        incident_channel:            # optional: a channel of its own per incident
          severities: [critical]
          responders: [U0123ABCD]    # invited with the commander
      - name: analytics
        match: ['team="analytics"']
        channel: C0ANALYTICS

Routes are matched on the group's common labels (what every alert of the notification
shares), so a group spanning several teams falls through to the default channel rather than
landing in one team's channel by accident. The default is `INCIDENT_BOT_CHANNEL`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bot.configfile import compose_yaml, format_loc, validation_errors
from bot.errors import ConfigError
from bot.runbooks.errors import MatcherSyntaxError
from bot.runbooks.matchers import Matcher, parse_matchers

__all__ = ["IncidentChannelRule", "Route", "Router"]

_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{2,}$")


class IncidentChannelRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    severities: tuple[str, ...] = ("critical",)
    responders: tuple[str, ...] = ()


class RouteSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    match: list[str] = Field(min_length=1)
    channel: str
    incident_channel: IncidentChannelRule | None = None

    @field_validator("channel")
    @classmethod
    def _channel_id(cls, value: str) -> str:
        if not _CHANNEL_ID.match(value):
            raise ValueError(
                f"{value!r} is not a Slack channel ID (like C0123ABCD); names can be renamed, IDs cannot"
            )
        return value


class RoutingFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    routes: list[RouteSpec] = Field(default_factory=list)


@dataclass(frozen=True)
class Route:
    name: str | None
    channel: str | None
    matchers: tuple[Matcher, ...] = ()
    incident_channel: IncidentChannelRule | None = None

    def wants_incident_channel(self, severity: str) -> bool:
        return self.incident_channel is not None and severity in self.incident_channel.severities

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)


@dataclass
class Router:
    default_channel: str | None
    routes: list[Route] = field(default_factory=list)

    def route(self, labels: Mapping[str, str]) -> Route:
        for route in self.routes:
            if route.matches(labels):
                return route
        return Route(name=None, channel=self.default_channel)

    @classmethod
    def load(cls, path: Path | None, *, default_channel: str | None) -> Router:
        if path is None:
            return cls(default_channel=default_channel)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read routing file: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}:1: the routing file is not UTF-8 text") from exc
        raw, source, problems = compose_yaml(text, str(path))
        if problems:
            raise ConfigError("\n".join(f"{path}:{p.line}: {p.message}" for p in problems))
        try:
            spec = RoutingFile.model_validate(raw or {})
        except ValidationError as exc:
            raise ConfigError("\n".join(validation_errors(exc, source, raw, model=RoutingFile))) from None
        routes: list[Route] = []
        for index, item in enumerate(spec.routes):
            try:
                matchers = tuple(m for text in item.match for m in parse_matchers(text))
            except MatcherSyntaxError as exc:
                loc = ("routes", index, "match")
                raise ConfigError(f"{source.where(loc)}: {format_loc(loc)}: {exc}") from exc
            routes.append(Route(item.name, item.channel, matchers, item.incident_channel))
        return cls(default_channel=default_channel, routes=routes)
