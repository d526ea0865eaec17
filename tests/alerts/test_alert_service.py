"""The alert service (`python -m alerts`) through the real stack: detections written to
`rpm.detections.v1` by a Kafka producer, alerts, history and the outbox read from TimescaleDB.

Each test has patients of its own in a care team of its own, so the tests do not see each
other's alerts. The process is the stack's (its own database login, metrics on its own port).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from alerts.repository import ALERT_COLUMNS, alert_from_row
from core.alert_lifecycle import CANCEL_QUEUED_SQL, Alert, acknowledge
from core.wire import DETECTIONS, REJECTED, DetectionRecord, encode, rejected_decoder
from infra.stack import Stack
from tests.helpers import create_patient, unique, wait_for
from tests.streams.support import metric_samples, produce, read_topic


@pytest.fixture(scope="module")
def service(stack: Stack) -> Iterator[Stack]:
    stack.start_alerts()
    yield stack
    stack.stop(["alerts"])


@dataclass
class Team:
    id: str
    clinician: str
    email: str


def make_team(db: psycopg.Connection, patients: list[str], tiers: list[tuple[int, int, str]] | None = None) -> Team:
    team = db.execute("INSERT INTO care_teams (name) VALUES (%s) RETURNING id", (unique("team"),)).fetchone()
    assert team is not None
    user = db.execute(
        "INSERT INTO users (username, password_hash, role, display_name) VALUES (%s, 'x', 'clinician', 'Dr Test') "
        "RETURNING id",
        (unique("dr"),),
    ).fetchone()
    assert user is not None
    email = f"{unique('dr')}@clinic.test"
    db.execute("INSERT INTO notification_settings (user_id, email) VALUES (%s, %s)", (user[0], email))
    db.execute("INSERT INTO care_team_members (care_team_id, user_id) VALUES (%s, %s)", (team[0], user[0]))
    for p in patients:
        db.execute("INSERT INTO care_team_patients (care_team_id, patient_id) VALUES (%s, %s)", (team[0], p))
    for tier, after_s, min_severity in tiers or []:
        db.execute(
            "INSERT INTO escalation_tiers (care_team_id, tier, after_s, min_severity) VALUES (%s, %s, %s, %s)",
            (team[0], tier, after_s, min_severity),
        )
    return Team(str(team[0]), str(user[0]), email)


def detection(
    patient: str,
    rule: str = "spo2_low",
    severity: str = "high",
    kind: str = "raise",
    *,
    did: str | None = None,
    clears: str | None = None,
) -> DetectionRecord:
    now = datetime.now(UTC)
    return DetectionRecord(
        detection_id=did or str(uuid.uuid4()),
        patient_id=patient,
        rule=rule,  # type: ignore[arg-type]
        severity=severity,  # type: ignore[arg-type]
        kind=kind,  # type: ignore[arg-type]
        detected_at=now,
        episode_start=now,
        evidence={"value": 87, "threshold": 90},
        clears=clears,
        produced_at=now,
    )


def send(stack: Stack, *records: DetectionRecord | tuple[str, bytes]) -> None:
    items = [(r.patient_id, encode(r)) if isinstance(r, DetectionRecord) else r for r in records]
    asyncio.run(produce(stack.kafka_bootstrap, items, topic=DETECTIONS.name))


def alerts_of(db: psycopg.Connection, patient: str, rule: str | None = None) -> list[Alert]:
    rows = db.execute(
        f"SELECT {ALERT_COLUMNS} FROM alerts WHERE patient_id = %s AND (%s::text IS NULL OR rule = %s) "  # noqa: S608
        "ORDER BY opened_at",
        (patient, rule, rule),
    ).fetchall()
    return [alert_from_row(r) for r in rows]


def events_of(db: psycopg.Connection, alert_id: str) -> list[tuple[str, Any, dict[str, Any]]]:
    """The alert's lifecycle history; delivery records ('notified') are checked in
    test_notify_delivery and test_notify_outbox."""
    return [
        (r[0], r[1], r[2])
        for r in db.execute(
            "SELECT kind, actor_id, detail FROM alert_events WHERE alert_id = %s AND kind <> 'notified' ORDER BY id",
            (alert_id,),
        ).fetchall()
    ]


def outbox(db: psycopg.Connection, alert_id: str) -> list[tuple[int, str, str, str]]:
    return [
        (r[0], r[1], r[2], r[3])
        for r in db.execute(
            "SELECT tier, channel, recipient, state FROM notifications WHERE alert_id = %s ORDER BY tier, channel",
            (alert_id,),
        ).fetchall()
    ]


def pending(db: psycopg.Connection, alert_id: str) -> bool:
    """Whether a notification of the alert is still to be sent (queued, or held by the sender)."""
    return any(state in ("queued", "sending") for *_, state in outbox(db, alert_id))


def processed(db: psycopg.Connection, detection_id: str) -> bool:
    return db.execute("SELECT 1 FROM alert_detections WHERE detection_id = %s", (detection_id,)).fetchone() is not None


def test_repeats_update_one_alert_and_a_republished_id_creates_nothing(service: Stack, db: psycopg.Connection) -> None:
    patient = create_patient(db)
    team = make_team(db, [patient])
    webhook = db.execute(
        "INSERT INTO webhooks (care_team_id, url, secret) VALUES (%s, 'http://127.0.0.1:9/hook', %s) RETURNING id",
        (team.id, "s" * 40),
    ).fetchone()
    assert webhook is not None
    first, second = detection(patient, severity="medium"), detection(patient, severity="high")
    sentinel = detection(patient, rule="news2_medium", severity="medium")
    send(service, first, second, first, second, sentinel)
    assert wait_for(lambda: processed(db, sentinel.detection_id), timeout=60)

    [alert] = alerts_of(db, patient, "spo2_low")
    assert (alert.state, alert.repeat_count, alert.severity) == ("open", 2, "high")
    assert alert.detection_ids == (first.detection_id, second.detection_id)
    assert alert.next_escalation_at == alert.opened_at + timedelta(minutes=15)  # the default tier 1
    kinds = [(k, actor) for k, actor, _ in events_of(db, alert.id)]
    assert kinds == [("opened", None), ("retriggered", None)]
    assert [d["detection_id"] for _, _, d in events_of(db, alert.id)] == [first.detection_id, second.detection_id]
    patient_ids = db.execute("SELECT DISTINCT patient_id FROM alert_events WHERE alert_id = %s", (alert.id,)).fetchall()
    assert patient_ids == [(patient,)]
    # tier 0 of the default tiers: e-mail to the team's clinician, the team's webhook; once
    # (the sender of alerts/notify may have taken them up already: their state is its business)
    assert [row[:3] for row in outbox(db, alert.id)] == [(0, "email", team.email), (0, "webhook", str(webhook[0]))]
    seen = db.execute("SELECT count(*) FROM alert_detections WHERE alert_id = %s", (alert.id,)).fetchone()
    assert seen == (2,)
    opened = metric_samples(service.ports.alerts_metrics, "rpm_alerts_opened_total")
    assert opened.get('{rule="spo2_low",severity="medium"}', 0) >= 1
    duplicates = metric_samples(service.ports.alerts_metrics, "rpm_alerts_detections_total")
    assert duplicates.get('{outcome="duplicate"}', 0) >= 2


def test_a_clear_resolves_self_resolved_and_cancels_what_is_queued(service: Stack, db: psycopg.Connection) -> None:
    patient = create_patient(db)
    team = make_team(db, [patient])
    raised = detection(patient, rule="heart_rate_high", severity="medium")
    cleared = detection(patient, rule="heart_rate_high", severity="medium", kind="clear", clears=raised.detection_id)
    send(service, raised, cleared)
    assert wait_for(lambda: processed(db, cleared.detection_id), timeout=60)
    [alert] = alerts_of(db, patient)
    assert (alert.state, alert.disposition, alert.resolved_by, alert.next_escalation_at) == (
        "resolved",
        "self_resolved",
        None,
        None,
    )
    assert [k for k, _, _ in events_of(db, alert.id)] == ["opened", "resolved"]
    assert [row[:3] for row in outbox(db, alert.id)] == [(0, "email", team.email)]
    # cancelled (a row the sender held at that moment is cancelled by its re-check at send time)
    assert wait_for(lambda: not pending(db, alert.id), timeout=30), outbox(db, alert.id)
    # A raise after the clear is a new episode: a new alert.
    again = detection(patient, rule="heart_rate_high", severity="medium")
    send(service, again)
    assert wait_for(lambda: processed(db, again.detection_id), timeout=60)
    assert [a.state for a in alerts_of(db, patient)] == ["resolved", "open"]


def _acknowledge_as_the_api_does(db: psycopg.Connection, alert_id: str, user_id: str) -> None:
    """The API's acknowledgement: the lifecycle rule, then its SQL in one transaction."""
    with db.transaction():
        row = db.execute(f"SELECT {ALERT_COLUMNS} FROM alerts WHERE id = %s FOR UPDATE", (alert_id,)).fetchone()  # noqa: S608
        assert row is not None
        t = acknowledge(alert_from_row(row), user_id, datetime.now(UTC))
        a = t.alert
        db.execute(
            "UPDATE alerts SET state = %s, acknowledged_at = %s, acknowledged_by = %s, snoozed_until = %s, "
            "next_escalation_at = %s, updated_at = %s WHERE id = %s",
            (a.state, a.acknowledged_at, a.acknowledged_by, a.snoozed_until, a.next_escalation_at, a.updated_at, a.id),
        )
        for e in t.events:
            db.execute(
                "INSERT INTO alert_events (alert_id, at, actor_id, from_state, to_state, patient_id, kind, detail) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (a.id, e.at, e.actor_id, e.from_state, e.to_state, a.patient_id, e.kind, Jsonb(dict(e.detail))),
            )
        assert t.cancel_queued
        db.execute(CANCEL_QUEUED_SQL, (a.id,))


def test_escalation_fires_on_time_and_stops_once_acknowledged(service: Stack, db: psycopg.Connection) -> None:
    acked, canary = create_patient(db), create_patient(db)
    team = make_team(db, [acked, canary], tiers=[(0, 0, "low"), (1, 2, "low"), (2, 6, "low")])
    raised = detection(acked, severity="high")
    send(service, raised)
    assert wait_for(lambda: processed(db, raised.detection_id), timeout=60)
    [alert] = alerts_of(db, acked)
    assert alert.escalation_tier == 0
    assert alert.next_escalation_at == alert.opened_at + timedelta(seconds=2)

    def tier(patient: str) -> int:
        found = alerts_of(db, patient)
        return found[0].escalation_tier if found else -1

    assert wait_for(lambda: tier(acked) == 1, timeout=30)
    [alert] = alerts_of(db, acked)
    escalated = [d for k, _, d in events_of(db, alert.id) if k == "escalated"]
    assert [d["tier"] for d in escalated] == [1]
    assert alert.next_escalation_at == alert.opened_at + timedelta(seconds=6)
    assert (1, "email", team.email) in [row[:3] for row in outbox(db, alert.id)]

    _acknowledge_as_the_api_does(db, alert.id, team.clinician)
    acked_at = datetime.now(UTC)
    # The canary opens after the acknowledgement; once the timer took it to tier 2, the timer
    # has run past the acknowledged alert's tier-2 time as well.
    canary_raise = detection(canary, severity="high")
    send(service, canary_raise)
    assert wait_for(lambda: tier(canary) == 2, timeout=60)
    assert alerts_of(db, canary)[0].opened_at > acked_at - timedelta(seconds=1)
    [alert] = alerts_of(db, acked)
    assert (alert.state, alert.escalation_tier, alert.next_escalation_at) == ("acknowledged", 1, None)
    assert [k for k, _, _ in events_of(db, alert.id)] == ["opened", "escalated", "acknowledged"]
    assert [row[:3] for row in outbox(db, alert.id)] == [(0, "email", team.email), (1, "email", team.email)]
    assert wait_for(lambda: not pending(db, alert.id), timeout=30), outbox(db, alert.id)


def test_a_poison_record_is_one_dead_letter_and_the_next_is_processed(service: Stack, db: psycopg.Connection) -> None:
    patient = create_patient(db)
    make_team(db, [patient])
    marker = unique("poison")
    stranger = unique("no-such-patient")
    after = detection(patient, severity="low")
    send(
        service,
        (patient, f'{{"not a detection": "{marker}"}}'.encode()),
        detection(stranger, severity="low", did=marker),
        after,
    )
    assert wait_for(lambda: processed(db, after.detection_id), timeout=60)
    assert [a.state for a in alerts_of(db, patient)] == ["open"]

    def letters() -> list[tuple[str, str]]:
        found = []
        for _, value in read_topic(service.kafka_bootstrap, REJECTED.name, REJECTED.partitions):
            letter = rejected_decoder.decode(value)
            if letter.topic == DETECTIONS.name and marker in letter.payload:
                found.append((letter.reason, letter.detail))
        return found

    got = wait_for(lambda: len(letters()) >= 2, timeout=30) and letters()
    assert sorted(r for r, _ in got) == ["undecodable_record", "unknown_patient"]
    assert any(stranger in d for r, d in got if r == "unknown_patient")
    assert not alerts_of(db, stranger)


def test_kill_9_mid_stream_then_restart_duplicates_nothing(service: Stack, db: psycopg.Connection) -> None:
    patients = [create_patient(db) for _ in range(10)]
    make_team(db, patients)
    rules = ("spo2_low", "heart_rate_high", "resp_rate_high")
    records = [detection(patients[i % 10], rule=rules[(i // 10) % 3], severity="medium") for i in range(1500)]
    ids = [r.detection_id for r in records]
    send(service, *records)

    def done() -> int:
        row = db.execute("SELECT count(*) FROM alert_detections WHERE detection_id = ANY(%s)", (ids,)).fetchone()
        return int(row[0]) if row else 0

    assert wait_for(lambda: done() >= 50, timeout=60)
    service.kill("alerts")
    midway = done()
    service.start_alerts()
    assert wait_for(lambda: done() == len(ids), timeout=180), f"{done()} of {len(ids)} processed"
    rows = db.execute(
        "SELECT patient_id, rule, count(*), sum(repeat_count) FROM alerts WHERE patient_id = ANY(%s) "
        "GROUP BY patient_id, rule",
        (patients,),
    ).fetchall()
    assert len(rows) == 30
    assert all(count == 1 for _, _, count, _ in rows), rows
    assert sum(int(total) for *_, total in rows) == len(ids)
    events = db.execute(
        "SELECT count(*) FROM alert_events WHERE patient_id = ANY(%s) AND kind IN ('opened', 'retriggered')",
        (patients,),
    ).fetchone()
    assert events == (len(ids),)  # one opened or retriggered per detection, none twice
    assert midway < len(ids), "the process was killed after it had finished: no mid-stream kill"


def test_the_service_reports_ready_and_its_figures(service: Stack, db: psycopg.Connection) -> None:
    patient = create_patient(db)
    make_team(db, [patient])
    raised = detection(patient, rule="temp_high", severity="low")
    send(service, raised)
    assert wait_for(lambda: processed(db, raised.detection_id), timeout=60)
    [alert] = alerts_of(db, patient)
    db.execute(
        "UPDATE alerts SET state = 'resolved', disposition = 'actionable', resolved_at = now() WHERE id = %s",
        (alert.id,),
    )
    health = service.health()["alerts"]
    assert health[0], health

    def precision() -> float | None:
        return metric_samples(service.ports.alerts_metrics, "rpm_alerts_precision").get('{rule="temp_high"}')

    # recomputed every alerts_figures_s (30 s by default)
    assert wait_for(lambda: precision() is not None, timeout=60)
    value = precision()
    assert value is not None
    assert 0.0 < value <= 1.0
    per_day = metric_samples(service.ports.alerts_metrics, "rpm_alerts_per_patient_day")
    assert per_day[""] > 0


def test_quiet_hours_delay_e_mail_but_never_for_a_critical_alert(service: Stack, db: psycopg.Connection) -> None:
    patient = create_patient(db)
    team = make_team(db, [patient])
    # Quiet from an hour ago to an hour from now, in UTC: whatever the time the test runs.
    now = datetime.now(UTC)
    start, end = (now - timedelta(hours=1)).time(), (now + timedelta(hours=1)).time()
    db.execute(
        "UPDATE notification_settings SET quiet_start = %s, quiet_end = %s WHERE user_id = %s",
        (start.replace(microsecond=0), end.replace(microsecond=0), team.clinician),
    )
    medium = detection(patient, rule="resp_rate_high", severity="medium")
    critical = detection(patient, rule="news2_high", severity="critical")
    send(service, medium, critical)
    assert wait_for(lambda: processed(db, critical.detection_id), timeout=60)

    def email(rule: str) -> tuple[datetime, datetime, int]:
        row = db.execute(
            "SELECT n.due_at, a.opened_at, n.attempts FROM notifications n JOIN alerts a ON a.id = n.alert_id "
            "WHERE a.patient_id = %s AND a.rule = %s AND n.channel = 'email'",
            (patient, rule),
        ).fetchone()
        assert row is not None, rule
        return row[0], row[1], int(row[2])

    # Not due before the end of the quiet hours, so the sender has not touched it.
    delayed, opened, attempts = email("resp_rate_high")
    assert delayed > opened + timedelta(minutes=55)
    assert attempts == 0
    # Critical: due when it opened (the sender, if running, takes it up at once, and a failed
    # attempt moves due_at on: then it has an attempt).
    due, opened, attempts = email("news2_high")
    assert due == opened or attempts > 0


def test_a_snooze_that_ends_puts_the_alert_back_to_open(service: Stack, db: psycopg.Connection) -> None:
    patient = create_patient(db)
    make_team(db, [patient])
    raised = detection(patient, rule="glucose_high", severity="medium")
    send(service, raised)
    assert wait_for(lambda: processed(db, raised.detection_id), timeout=60)
    [alert] = alerts_of(db, patient)
    # As the API snoozes (core.alert_lifecycle.snooze), with an end that is already past.
    db.execute(
        "UPDATE alerts SET state = 'snoozed', snoozed_until = now() - interval '1 second', "
        "next_escalation_at = NULL WHERE id = %s",
        (alert.id,),
    )
    assert wait_for(lambda: alerts_of(db, patient)[0].state == "open", timeout=30)
    [alert] = alerts_of(db, patient)
    assert alert.snoozed_until is None
    assert alert.next_escalation_at is not None  # escalation runs again
    assert [k for k, _, _ in events_of(db, alert.id)] == ["opened", "unsnoozed"]


def test_a_patient_who_withdrew_sharing_gets_alerts_but_their_care_team_is_not_notified(
    service: Stack, db: psycopg.Connection
) -> None:
    # ADR 0024: sharing withdrawn as the API records it (a closed grant, none open).
    withdrawn, sharing = create_patient(db), create_patient(db)
    db.execute(
        "INSERT INTO consents (patient_id, scope, granted_at, withdrawn_at) "
        "VALUES (%s, 'share_care_team', now() - interval '1 day', now())",
        (withdrawn,),
    )
    team = make_team(db, [withdrawn, sharing])
    db.execute(
        "INSERT INTO webhooks (care_team_id, url, secret) VALUES (%s, 'http://127.0.0.1:9/hook', %s)",
        (team.id, "s" * 40),
    )
    first, second = detection(withdrawn, severity="critical"), detection(sharing, severity="critical")
    send(service, first, second)
    assert wait_for(lambda: processed(db, first.detection_id) and processed(db, second.detection_id), timeout=60)
    [alert] = alerts_of(db, withdrawn)
    [control] = alerts_of(db, sharing)
    # The alert is kept (admins see it; the patient sees it on My health), with no e-mail and no
    # webhook for the care team; the sharing patient's alert of the same team notifies as usual.
    assert alert.state == "open"
    assert outbox(db, alert.id) == []
    assert [row[1] for row in outbox(db, control.id)] == ["email", "webhook"]


def test_many_patients_detections_at_once_keep_each_patients_order(service: Stack, db: psycopg.Connection) -> None:
    """Different patients' detections are applied side by side (RPM_ALERTS_PARALLEL); one
    patient's raise, clear and next raise still land in that order: a clear applied before
    its raise would leave nothing to resolve and the first episode open."""
    patients = [create_patient(db) for _ in range(24)]
    make_team(db, patients)
    first = {p: detection(p, rule="heart_rate_high", severity="medium") for p in patients}
    cleared = {
        p: detection(p, rule="heart_rate_high", severity="medium", kind="clear", clears=first[p].detection_id)
        for p in patients
    }
    again = {p: detection(p, rule="heart_rate_high", severity="medium") for p in patients}
    send(service, *first.values(), *cleared.values(), *again.values())  # interleaved across patients
    assert wait_for(lambda: all(processed(db, again[p].detection_id) for p in patients), timeout=90)
    for p in patients:
        assert [(a.state, a.disposition) for a in alerts_of(db, p)] == [("resolved", "self_resolved"), ("open", None)]
