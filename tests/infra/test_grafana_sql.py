"""Every SQL panel of the committed dashboards runs against the real TimescaleDB of the test
stack as the read-only reporting login Grafana uses, with Grafana's macros and the dashboard
variables expanded (tests/infra/grafana_macros.py), and returns what the panel draws: a
`time` column and a number for a time series, a number for a stat or bar gauge, rows for a
table; never an empty result on the seeded data.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from core.careplan import default_care_plan, encode_care_plan
from infra.stack import Stack
from tests.helpers import create_patient, unique
from tests.infra.grafana_files import PanelQuery, committed_dashboards, sql_queries
from tests.infra.grafana_macros import Expansion

NOW = datetime.now(UTC).replace(microsecond=0)
TIMESTAMP_OIDS = {1114, 1184}  # timestamp, timestamptz
NUMERIC_OIDS = {20, 21, 23, 700, 701, 1700}  # int8, int2, int4, float4, float8, numeric


@pytest.fixture(scope="module")
def seeded(stack: Stack) -> dict[str, str]:
    """One patient with a device, readings (with a sequence gap), a stored care plan, alerts
    (one acknowledged and resolved, one open), an escalation, reminders, portal requests,
    consent changes and feedback, all within the last hours, written as the platform's tables
    hold them (superuser SQL, as the other database tests seed)."""
    with psycopg.connect(stack.admin_db_url, autocommit=True) as db:
        pid = create_patient(db, enrolled_at=NOW - timedelta(days=3))
        device = unique("dev")
        db.execute(
            "INSERT INTO devices (id, device_class, battery, battery_at) VALUES (%s, 'wearable', 0.15, %s)",
            (device, NOW - timedelta(hours=2)),
        )
        db.execute(
            "INSERT INTO device_bindings (device_id, patient_id, valid_from) VALUES (%s, %s, %s)",
            (device, pid, NOW - timedelta(days=2)),
        )
        readings = []
        for i, seq in enumerate((1, 2, 3, 6, 7, 8)):  # 4 and 5 never arrived
            ts = NOW - timedelta(hours=3) + timedelta(minutes=20 * i)
            readings += [(pid, device, "heart_rate", ts, 70.0 + i, ts + timedelta(seconds=3), seq)]
            readings += [(pid, device, "spo2", ts, 96.0, ts + timedelta(seconds=3), seq)]
        with db.cursor() as cur:
            cur.executemany(
                "INSERT INTO observations (patient_id, device_id, metric, ts, value, received_at, seq)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                readings,
            )
        db.execute(
            "INSERT INTO quarantined_readings (patient_id, device_id, metric, ts, value, received_at, seq)"
            " VALUES (%s, %s, 'heart_rate', %s, 80, %s, 99)",
            (pid, device, NOW - timedelta(days=10), NOW - timedelta(hours=1)),
        )
        plan = encode_care_plan(default_care_plan(pid)).decode()
        db.execute(
            "INSERT INTO care_plans (patient_id, plan) VALUES (%s, %s::jsonb)"
            " ON CONFLICT (patient_id) DO UPDATE SET plan = EXCLUDED.plan",
            (pid, plan),
        )
        resolved = db.execute(
            "INSERT INTO alerts (patient_id, rule, severity, state, title, opened_at, updated_at, resolved_at,"
            " disposition) VALUES (%s, 'heart_rate_high', 'medium', 'resolved', 'Heart rate high', %s, %s, %s,"
            " 'actionable') RETURNING id",
            (pid, NOW - timedelta(hours=3), NOW - timedelta(hours=1), NOW - timedelta(hours=1)),
        ).fetchone()
        opened = db.execute(
            "INSERT INTO alerts (patient_id, rule, severity, state, title, opened_at, updated_at)"
            " VALUES (%s, 'spo2_low', 'high', 'open', 'Oxygen low', %s, %s) RETURNING id",
            (pid, NOW - timedelta(hours=2), NOW - timedelta(hours=2)),
        ).fetchone()
        assert resolved
        assert opened
        db.execute(
            "INSERT INTO alert_events (alert_id, at, from_state, to_state) VALUES (%s, %s, 'open', 'acknowledged'),"
            " (%s, %s, 'acknowledged', 'resolved')",
            (resolved[0], NOW - timedelta(hours=3) + timedelta(minutes=7), resolved[0], NOW - timedelta(hours=1)),
        )
        db.execute(
            "INSERT INTO notifications (alert_id, tier, channel, recipient, due_at, created_at)"
            " VALUES (%s, 1, 'email', 'oncall@example.org', %s, %s)",
            (opened[0], NOW - timedelta(minutes=90), NOW - timedelta(minutes=90)),
        )
        for i, (state, outcome) in enumerate(
            [("sent", "reading_after"), ("sent", "no_reading"), ("cancelled", "cancelled_reading_arrived")]
        ):
            slot = NOW - timedelta(hours=4) + timedelta(hours=i)
            db.execute(
                "INSERT INTO reminders (patient_id, schedule_key, slot_key, kind, metric, channel, scheduled_at,"
                " window_start, window_end, due_at, state, outcome) VALUES (%s, 'measurement:heart_rate', %s,"
                " 'measurement', 'heart_rate', 'in_app', %s, %s, %s, %s, %s, %s)",
                (pid, slot.strftime("%Y-%m-%dT%H:%M"), slot, slot, slot + timedelta(hours=1), slot, state, outcome),
            )
        db.execute(
            "INSERT INTO audit_events (at, actor_role, patient_id, action, resource, outcome)"
            " VALUES (%s, 'patient', %s, 'read', 'me/health', 'allowed')",
            (NOW - timedelta(hours=1), pid),
        )
        db.execute(
            "INSERT INTO consents (patient_id, scope, granted_at, withdrawn_at) VALUES (%s, 'research', %s, %s)",
            (pid, NOW - timedelta(hours=5), NOW - timedelta(hours=2)),
        )
        db.execute(
            "INSERT INTO feedback (patient_id, submitted_at, score) VALUES (%s, %s, 9)",
            (pid, NOW - timedelta(hours=1)),
        )
    return {"patient": pid, "metric": "heart_rate"}


@pytest.fixture(scope="module")
def reporting(stack: Stack) -> Any:
    with psycopg.connect(stack.db_url("reporting"), autocommit=True) as conn:
        yield conn


def _expansion(variables: dict[str, str]) -> Expansion:
    return Expansion(start=NOW - timedelta(hours=6), end=NOW + timedelta(minutes=1), interval="5m", variables=variables)


@pytest.mark.parametrize("query", sql_queries(), ids=lambda q: q.id)
def test_sql_panel_runs_as_reporting_and_returns_what_it_draws(
    query: PanelQuery, seeded: dict[str, str], reporting: psycopg.Connection
) -> None:
    sql = _expansion(seeded).expand(query.target["rawSql"])
    with reporting.cursor() as cur:
        cur.execute(sql)  # a grant the reporting login lacks fails here (InsufficientPrivilege)
        assert cur.description is not None
        columns = [(c.name, c.type_code) for c in cur.description]
        rows = cur.fetchall()
    assert rows, f"no rows: {sql}"
    numeric = [name for name, oid in columns if oid in NUMERIC_OIDS]
    if query.target["format"] == "time_series":
        assert columns[0][0] == "time", columns
        assert columns[0][1] in TIMESTAMP_OIDS, columns
        assert numeric, columns
        times = [r[0] for r in rows]
        assert times == sorted(times), "a time series must come in time order"
        first_number = [name for name, _ in columns].index(numeric[0])
        assert any(r[first_number] is not None for r in rows)
    elif query.panel_type in ("stat", "bargauge"):
        assert numeric, columns
    else:
        assert len(columns) >= 2, columns


def test_patient_drill_down_shows_the_care_plan_limits(seeded: dict[str, str], reporting: psycopg.Connection) -> None:
    (vitals,) = [q for q in sql_queries() if q.dashboard == "rpm-patient" and q.panel == "$metric"]
    rows = reporting.execute(_expansion(seeded).expand(vitals.target["rawSql"])).fetchall()
    low, high = rows[0][4], rows[0][5]
    assert (low, high) == (41.0, 130.0)  # core/careplan.py DEFAULT_LIMITS for heart rate
    spo2 = _expansion({**seeded, "metric": "spo2"}).expand(vitals.target["rawSql"])
    assert reporting.execute(spo2).fetchall()[0][4:6] == (90.0, None)


def test_variable_queries_run_as_reporting(seeded: dict[str, str], reporting: psycopg.Connection) -> None:
    for board in committed_dashboards().values():
        for variable in board.get("templating", {}).get("list", []):
            if variable["type"] == "query":
                values = [r[0] for r in reporting.execute(variable["query"]).fetchall()]
                assert seeded["patient"] in values


def test_sequence_gap_panel_counts_the_missing_messages(
    seeded: dict[str, str], reporting: psycopg.Connection, stack: Stack
) -> None:
    (gaps,) = [q for q in sql_queries() if q.panel.startswith("Sequence gaps")]
    # Narrow to the seeded device: the panel's own query, over its readings only.
    sql = _expansion(seeded).expand(gaps.target["rawSql"])
    sql = sql.replace("FROM observations", f"FROM observations WHERE patient_id = '{seeded['patient']}' AND", 1)
    sql = sql.replace("AND WHERE", "AND")
    with psycopg.connect(stack.admin_db_url, autocommit=True) as admin:  # patient_id is not the reporting's
        total = sum(r[1] for r in admin.execute(sql).fetchall())
    assert total == 2  # sequence numbers 4 and 5


def test_reporting_still_reads_no_reading_value_nor_whole_plan(reporting: psycopg.Connection) -> None:
    for statement in ("SELECT value FROM observations LIMIT 1", "SELECT plan FROM care_plans LIMIT 1"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reporting.execute(statement)


def test_expander_matches_grafanas_macros() -> None:
    exp = Expansion(
        start=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        end=datetime(2026, 1, 2, 9, 4, 5, tzinfo=UTC),
        interval="1m",
        variables={"patient": "p1"},
    )
    assert exp.expand("SELECT $__timeGroupAlias(ts, $__interval) WHERE $__timeFilter(ts) AND id = '$patient'") == (
        "SELECT time_bucket('60s', ts) AS \"time\" WHERE ts BETWEEN '2026-01-02T03:04:05Z' AND"
        " '2026-01-02T09:04:05Z' AND id = 'p1'"
    )
    assert exp.expand("$__timeFrom() $__timeTo() ${patient} $__interval") == (
        "'2026-01-02T03:04:05Z' '2026-01-02T09:04:05Z' p1 1m"
    )
    with pytest.raises(ValueError, match="unixEpochFilter"):
        exp.expand("$__unixEpochFilter(ts)")
    with pytest.raises(ValueError, match="metric"):
        exp.expand("$metric")
