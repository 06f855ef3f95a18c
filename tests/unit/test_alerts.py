"""The Alertmanager wire model against real payloads and the quirks of real senders."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from bot.alerts import (
    AlertmanagerWebhook,
    fingerprint_of,
    normalize,
    parse_webhook,
    payload_digest,
    unquote_receiver,
)
from bot.errors import PayloadError
from tests.support.payloads import PAYLOADS, recorded, recorded_bytes

ALL_RECORDED = sorted(p.name for p in PAYLOADS.glob("alertmanager_v4_*.json"))


@pytest.mark.parametrize("name", ALL_RECORDED)
def test_every_recorded_payload_parses(name: str) -> None:
    webhook = parse_webhook(recorded_bytes(name))
    alerts = normalize(webhook)
    assert len(alerts) == len(recorded(name)["alerts"])
    for item in alerts:
        assert len(item.fingerprint) == 16
        assert item.status in ("firing", "resolved")
        assert item.starts_at.tzinfo is UTC


def test_fingerprint_matches_alertmanagers_own() -> None:
    payload = recorded("alertmanager_v4_resolved_k8s_deployment_with_truncatedAlerts0.json")
    item = payload["alerts"][0]
    assert fingerprint_of(item["labels"]) == item["fingerprint"] == "fbab788ec4c1018b"


def test_missing_fingerprint_is_derived_stably_from_labels() -> None:
    webhook = parse_webhook(recorded_bytes("alertmanager_v4_firing_1alert_no_fingerprint_msteams.json"))
    first = normalize(webhook)[0].fingerprint
    reordered = json.loads(recorded_bytes("alertmanager_v4_firing_1alert_no_fingerprint_msteams.json"))
    reordered["alerts"][0]["labels"] = dict(reversed(list(reordered["alerts"][0]["labels"].items())))
    assert normalize(AlertmanagerWebhook.model_validate(reordered))[0].fingerprint == first


def test_alert_without_status_takes_the_groups() -> None:
    webhook = parse_webhook(recorded_bytes("alertmanager_v4_firing_12alerts_large_group_msteams.json"))
    assert {a.status for a in normalize(webhook)} == {"firing"}


def test_timestamps_with_offsets_and_nanoseconds() -> None:
    webhook = parse_webhook(recorded_bytes("alertmanager_v4_firing_1alert_tz_offset_metalmatze.json"))
    (item,) = normalize(webhook)
    # 2018-11-04T22:43:58.283995108+01:00
    assert item.starts_at == datetime(2018, 11, 4, 21, 43, 58, 283995, tzinfo=UTC)


def test_firing_alert_has_no_end_even_when_sender_sets_one() -> None:
    (item,) = normalize(
        parse_webhook(recorded_bytes("alertmanager_v4_firing_1alert_tz_offset_metalmatze.json"))
    )
    assert item.status == "firing"
    assert item.ends_at is None


def test_resolved_alert_with_zero_end_time_is_still_resolved() -> None:
    alerts = normalize(
        parse_webhook(recorded_bytes("alertmanager_v4_resolved_3alerts_blackbox_alertmonitor.json"))
    )
    assert {a.status for a in alerts} == {"resolved"}
    assert all(a.ends_at is None for a in alerts)


def test_regex_escaped_receiver_is_unquoted_for_display() -> None:
    webhook = parse_webhook(
        recorded_bytes("alertmanager_v4_resolved_k8s_deployment_with_truncatedAlerts0.json")
    )
    assert webhook.receiver == "web\\.hook"
    assert unquote_receiver(webhook.receiver) == "web.hook"


def test_unknown_fields_are_kept() -> None:
    payload = recorded("alertmanager_v4_firing_1alert_tz_offset_metalmatze.json")
    payload["notification_reason"] = "first notification"
    payload["routeLabels"] = {"team": "ml"}
    webhook = AlertmanagerWebhook.model_validate(payload)
    assert webhook.model_dump()["notification_reason"] == "first notification"


def test_digest_ignores_whitespace_and_key_order() -> None:
    raw = recorded_bytes("alertmanager_v4_firing_3alerts_blackbox_alertmonitor.json")
    compact = json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":")).encode()
    assert payload_digest(parse_webhook(raw)) == payload_digest(parse_webhook(compact))


def test_malformed_json_is_a_payload_error() -> None:
    with pytest.raises(PayloadError, match="malformed JSON"):
        parse_webhook(b'{"receiver": ')
    with pytest.raises(PayloadError, match="JSON object"):
        parse_webhook(b"[1, 2]")


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda p: p.pop("groupKey"), "groupKey"),
        (lambda p: p.update(alerts=[]), "alerts"),
        (lambda p: p["alerts"][0].update(startsAt="yesterday"), "alerts.0.startsAt"),
        (lambda p: p["alerts"][0].update(labels={}), "alerts.0.labels"),
        (lambda p: p.update(status="exploding"), "status"),
        (lambda p: p.update(version="3"), "version"),
    ],
)
def test_validation_errors_name_the_field(mutate: object, field: str) -> None:
    payload = recorded("alertmanager_v4_firing_1alert_tz_offset_metalmatze.json")
    mutate(payload)  # type: ignore[operator]
    with pytest.raises(ValidationError) as info:
        AlertmanagerWebhook.model_validate(payload)
    assert field in {".".join(str(p) for p in e["loc"]) for e in info.value.errors()}
