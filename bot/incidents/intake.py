"""From one Alertmanager notification to incident changes and the Slack jobs they cause.

Grouping rules (one transaction, called by the webhook view):
- One open incident per (receiver, groupKey). New alerts of the group join it.
- An alert is identified by its fingerprint within an incident; one occurrence of it by
  (fingerprint, startsAt). A firing alert we already recorded under a resolved incident with
  the same startsAt is a stale resend (or still firing after a manual resolve) and opens
  nothing; a firing with a later startsAt is a new occurrence and opens a new incident.
- The incident resolves when every alert of it has resolved.
- The same notification content twice (resends, Alertmanager HA peers) changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from bot.alerts import AlertmanagerWebhook, ReceivedAlert, normalize, payload_digest, unquote_receiver
from bot.db import utcnow
from bot.incidents import jobs
from bot.incidents.models import (
    Alert,
    AlertFacts,
    AlertStatus,
    Incident,
    IncidentStatus,
    Notification,
    Severity,
)
from bot.incidents.rules import highest_severity, service_of, severity_of, title_of
from bot.incidents.store import Event, add_event, add_events, alerts_of, find_open, open_key
from bot.routing import Router

__all__ = ["IntakeResult", "apply_notification"]


@dataclass
class IntakeResult:
    duplicate: bool = False
    incident_id: int | None = None
    opened: list[Incident] = field(default_factory=list)
    resolved: list[Incident] = field(default_factory=list)
    jobs: int = 0

    @property
    def incident_key(self) -> str | None:
        return f"INC-{self.incident_id}" if self.incident_id is not None else None


OnOpen = Callable[[Session, Incident, dict[str, str]], int]


def apply_notification(
    session: Session, webhook: AlertmanagerWebhook, *, router: Router, on_open: OnOpen | None = None
) -> IntakeResult:
    """Apply one notification. `on_open(session, incident, labels)` runs in the same
    transaction for a newly opened incident (runbook matching, enrichment jobs) and returns
    how many jobs it queued."""
    digest = payload_digest(webhook)
    seen = session.exec(select(Notification).where(Notification.body_sha256 == digest)).first()
    if seen is not None:
        return IntakeResult(duplicate=True, incident_id=seen.incident_id)

    result = IntakeResult()
    received = normalize(webhook)
    incident = find_open(session, webhook.receiver, webhook.groupKey)
    fresh: list[ReceivedAlert] | None = None
    routed = False
    if incident is None:
        firing = [a for a in received if a.status == "firing"]
        known = _known_occurrences(session, webhook.receiver, webhook.groupKey, firing)
        fresh = [a for a in firing if (a.fingerprint, a.starts_at) not in known]
        if fresh:
            incident, routed = _open(session, webhook, fresh, router)
            result.opened.append(incident)
        for alert in received:
            if alert.status == "resolved":
                _resolve_in_closed_incident(session, webhook, alert)

    if incident is not None:
        assert incident.id is not None
        fired, resolved, current = _merge_alerts(
            session, incident, received, fresh={a.fingerprint for a in fresh} if fresh is not None else None
        )
        _refresh(session, incident, webhook, current)
        all_resolved = all(a.status == AlertStatus.RESOLVED for a in current)
        if result.opened:
            result.jobs += jobs.announce(session, incident, routed=routed)
            if on_open is not None and fresh:
                result.jobs += on_open(session, incident, dict(fresh[0].labels))
        elif fired or (resolved and not all_resolved):
            result.jobs += jobs.alerts_changed(session, incident, fired, resolved)
        if all_resolved:
            _resolve(session, incident)
            result.resolved.append(incident)
            result.jobs += jobs.resolved(session, incident)
        result.incident_id = incident.id

    session.add(
        Notification(
            body_sha256=digest,
            receiver=webhook.receiver,
            group_key=webhook.groupKey,
            status=webhook.status,
            alert_count=len(webhook.alerts),
            incident_id=result.incident_id,
            payload=webhook.model_dump(mode="json"),
        )
    )
    return result


def _known_occurrences(
    session: Session,
    receiver: str,
    group_key: str,
    alerts: Sequence[ReceivedAlert],
    *,
    exclude: int | None = None,
) -> set[tuple[str, datetime]]:
    """Which of these occurrences (fingerprint, startsAt) already belong to an incident of the
    group, other than `exclude`: one query for the whole notification, as a storm's groups
    arrive with dozens of alerts each."""
    if not alerts:
        return set()
    query = (
        sa.select(col(Alert.fingerprint), col(Alert.starts_at))
        .join(Incident, col(Incident.id) == Alert.incident_id)
        .where(
            col(Incident.receiver) == receiver,
            col(Incident.group_key) == group_key,
            col(Alert.fingerprint).in_(sorted({a.fingerprint for a in alerts})),
        )
    )
    if exclude is not None:
        query = query.where(col(Incident.id) != exclude)
    return {(fingerprint, starts_at) for fingerprint, starts_at in session.connection().execute(query)}


def _open(
    session: Session, webhook: AlertmanagerWebhook, firing: list[ReceivedAlert], router: Router
) -> tuple[Incident, bool]:
    """The new incident, and whether a named route took it."""
    labels = webhook.commonLabels or firing[0].labels
    annotations = webhook.commonAnnotations or firing[0].annotations
    severity, raw = _group_severity(firing)
    route = router.route(labels)
    incident = Incident(
        receiver=webhook.receiver,
        group_key=webhook.groupKey,
        open_key=open_key(webhook.receiver, webhook.groupKey),
        status=IncidentStatus.TRIGGERED,
        severity=severity,
        severity_label=raw,
        title=title_of((a.alertname for a in firing), annotations),
        description=annotations.get("description"),
        service=service_of(labels) or service_of(firing[0].labels),
        common_labels=dict(labels),
        common_annotations=dict(annotations),
        external_url=webhook.externalURL or None,
        channel=route.channel,
        started_at=min(a.starts_at for a in firing),
    )
    session.add(incident)
    session.flush()
    add_event(
        session,
        incident,
        "opened",
        f"Incident opened by Alertmanager receiver {unquote_receiver(webhook.receiver)}"
        + (f", routed to {route.name}" if route.name else ""),
        data={"group_key": webhook.groupKey, "route": route.name, "channel": route.channel},
    )
    return incident, bool(route.name)


def _group_severity(alerts: list[ReceivedAlert]) -> tuple[Severity, str | None]:
    pairs = [severity_of(a.labels) for a in alerts]
    top = highest_severity(s for s, _ in pairs)
    raw = next((r for s, r in pairs if s == top and r is not None), None)
    return top, raw


def _merge_alerts(
    session: Session, incident: Incident, received: list[ReceivedAlert], *, fresh: set[str] | None
) -> tuple[list[AlertFacts], list[AlertFacts], list[AlertFacts]]:
    """Upsert the received alerts into the incident: (newly firing, newly resolved, all now).
    `fresh` is set for an incident opened by this notification: the firing alerts already
    found to be new occurrences.

    New alerts (all of a storm's) are inserted in one statement, without ORM objects; an alert
    listed twice in one notification (Alertmanager never does) counts once, as first listed."""
    assert incident.id is not None
    stored = {a.fingerprint: a for a in alerts_of(session, incident.id)} if fresh is None else {}
    known: dict[str, AlertFacts] = dict(stored)
    elsewhere = (
        _known_occurrences(
            session,
            incident.receiver,
            incident.group_key,
            [a for a in received if a.fingerprint not in stored],
            exclude=incident.id,
        )
        if fresh is None
        else set()
    )
    fired: list[AlertFacts] = []
    resolved: list[AlertFacts] = []
    events: list[Event] = []
    inserts: list[dict[str, Any]] = []
    now = utcnow()
    for item in received:
        if item.fingerprint in known and item.fingerprint not in stored:
            continue  # listed twice in this notification
        row = stored.get(item.fingerprint)
        if row is None:
            if fresh is not None and item.status == "firing":
                if item.fingerprint not in fresh:
                    continue  # belongs to an earlier incident of the group (stale resend)
            elif (item.fingerprint, item.starts_at) in elsewhere:
                continue
            inserts.append(_alert_row(incident.id, item, now))
            known[item.fingerprint] = item
            (fired if item.status == "firing" else resolved).append(item)
            events.append(_alert_event(item))
            continue
        row.last_seen_at = now
        if item.status == "firing":
            if row.status == AlertStatus.RESOLVED and item.starts_at > row.starts_at:
                row.status, row.starts_at, row.ends_at = AlertStatus.FIRING, item.starts_at, None
                row.labels, row.annotations = item.labels, item.annotations
                fired.append(row)
                events.append(_alert_event(row, again=True))
            elif row.status == AlertStatus.FIRING:
                row.annotations = item.annotations
        elif row.status == AlertStatus.FIRING and item.starts_at >= row.starts_at:
            row.status, row.ends_at = AlertStatus.RESOLVED, item.ends_at or now
            resolved.append(row)
            events.append(_alert_event(row))
        session.add(row)
    if inserts:
        session.execute(sa.insert(Alert.__table__), inserts)  # type: ignore[attr-defined]
    add_events(session, incident, events)
    return fired, resolved, list(known.values())


def _alert_row(incident_id: int, item: ReceivedAlert, now: datetime) -> dict[str, Any]:
    return {
        "incident_id": incident_id,
        "fingerprint": item.fingerprint,
        "status": item.status,
        "alertname": item.alertname,
        "labels": item.labels,
        "annotations": item.annotations,
        "generator_url": item.generator_url,
        "starts_at": item.starts_at,
        "ends_at": item.ends_at,
        "first_seen_at": now,
        "last_seen_at": now,
    }


def _alert_event(alert: AlertFacts, *, again: bool = False) -> Event:
    if alert.status == AlertStatus.FIRING:
        kind, verb, at = "alert_fired", "fired again" if again else "fired", alert.starts_at
    else:
        kind, verb, at = "alert_resolved", "resolved", alert.ends_at or utcnow()
    where = service_of(alert.labels)
    return Event(
        kind,
        f"Alert {alert.alertname or alert.fingerprint} {verb}" + (f" ({where})" if where else ""),
        at=at,
        data={"fingerprint": alert.fingerprint},
    )


def _refresh(
    session: Session, incident: Incident, webhook: AlertmanagerWebhook, alerts: list[AlertFacts]
) -> None:
    """Keep what the group says about itself current; severity follows the alerts unless a
    responder set it by hand."""
    incident.truncated_alerts = webhook.truncatedAlerts
    if webhook.commonLabels:
        incident.common_labels = dict(webhook.commonLabels)
    if not incident.severity_manual:
        firing = [a for a in alerts if a.status == AlertStatus.FIRING]
        if firing:
            pairs = [severity_of(a.labels) for a in firing]
            top = highest_severity(s for s, _ in pairs)
            if top != incident.severity:
                add_event(session, incident, "severity", f"Severity changed to {top.value} by the alerts")
            incident.severity = top
            incident.severity_label = next((r for s, r in pairs if s == top and r is not None), None)
    session.add(incident)


def _resolve(session: Session, incident: Incident) -> None:
    incident.status = IncidentStatus.RESOLVED
    incident.resolved_at = utcnow()
    incident.open_key = None
    session.add(incident)
    add_event(session, incident, "resolved", "Incident resolved: every alert has resolved")


def _resolve_in_closed_incident(session: Session, webhook: AlertmanagerWebhook, alert: ReceivedAlert) -> None:
    """A resolution for an alert of an incident that was already resolved by hand: record it
    there, so its timeline shows when the alert really stopped."""
    row = session.exec(
        select(Alert)
        .join(Incident, col(Incident.id) == Alert.incident_id)
        .where(
            Incident.receiver == webhook.receiver,
            Incident.group_key == webhook.groupKey,
            Alert.fingerprint == alert.fingerprint,
            Alert.starts_at == alert.starts_at,
            Alert.status == AlertStatus.FIRING,
        )
    ).first()
    if row is None:
        return
    row.status, row.ends_at = AlertStatus.RESOLVED, alert.ends_at or utcnow()
    session.add(row)
    incident = session.get(Incident, row.incident_id)
    if incident is not None:
        add_events(session, incident, [_alert_event(row)])
        jobs.update_root(session, incident)
