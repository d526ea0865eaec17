"""Device messages on the wire: payloads exactly per core.wire.DevicePayload (schema 1),
values in canonical or accepted input units, and the deliberately broken payloads of the
fault-injection scenario.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from core.catalogue import GLUCOSE_MGDL_PER_MMOLL, KG_PER_LB
from core.wire import MAX_PAYLOAD_BYTES, SCHEMA_VERSION, DevicePayload, WireReading, encode
from devices.simulator.physiology import CANONICAL_UNITS, GLUCOSE, METRICS, TEMP, WEIGHT

# Digits after the decimal point a device reports, per metric (canonical unit).
DECIMALS: Final = (0, 0, 0, 1, 0, 0, 1, 0)


class DeviceReading:
    """One measured value as a device sends it (with its unit; the bridge makes it a core.wire.Reading)."""

    __slots__ = ("dose_id", "metric", "ts", "unit", "value")

    def __init__(self, metric: str, value: float, unit: str, ts: float, dose_id: str | None = None) -> None:
        self.metric, self.value, self.unit, self.ts, self.dose_id = metric, value, unit, ts, dose_id


def convert(metric: int, value: float, unit: str | None) -> tuple[float, str]:
    """A canonical value expressed in `unit` (an accepted input unit), rounded as a device would."""
    if unit is None:
        return round(value, DECIMALS[metric]), CANONICAL_UNITS[metric]
    if metric == WEIGHT and unit == "[lb_av]":
        return round(value / KG_PER_LB, 1), unit
    if metric == GLUCOSE and unit == "mmol/L":
        return round(value / GLUCOSE_MGDL_PER_MMOLL, 1), unit
    if metric == TEMP and unit in ("[degF]", "degF"):
        return round(value * 9.0 / 5.0 + 32.0, 1), unit
    raise ValueError(f"no conversion of {METRICS[metric]} into {unit}")


def _dt(t: float) -> datetime:
    # Millisecond resolution, as a device clock would report.
    return datetime.fromtimestamp(round(t * 1000.0) / 1000.0, UTC)


def encode_message(
    device_id: str, seq: int, sent_at: float, readings: list[DeviceReading], battery: float | None
) -> bytes:
    payload = DevicePayload(
        schema=SCHEMA_VERSION,
        device_id=device_id,
        seq=seq,
        sent_at=_dt(sent_at),
        readings=[WireReading(r.metric, r.value, r.unit, _dt(r.ts), r.dose_id) for r in readings],
        battery=battery,
    )
    return encode(payload)


# --- faults ---------------------------------------------------------------------------------
_PLACEHOLDER: Final = 987654.321


def fault_payload(kind: str, device_id: str, seq: int, at: float, reading: DeviceReading) -> bytes:
    """A payload that a correct platform must refuse (or that the broker refuses).

    `nan`, `inf`, `malformed_json` and `oversize` cannot be parsed, or never reach the
    platform, so they carry no usable seq; `wrong_unit` and `unknown_unit` are valid
    messages with one bad reading and do use a seq.
    """
    if kind in ("nan", "inf"):
        raw = encode_message(device_id, seq, at, [DeviceReading(reading.metric, _PLACEHOLDER, reading.unit, at)], None)
        return raw.replace(repr(_PLACEHOLDER).encode(), b"NaN" if kind == "nan" else b"1e999")
    if kind == "malformed_json":
        return encode_message(device_id, seq, at, [reading], None)[:-17] + b',"readings":[{'
    if kind == "oversize":
        filler = [DeviceReading(reading.metric, reading.value, reading.unit, at - i * 0.001) for i in range(1000)]
        raw = encode_message(device_id, seq, at, filler, None)
        assert len(raw) > MAX_PAYLOAD_BYTES
        return raw
    if kind == "foreign_topic":
        return encode_message(device_id, seq, at, [reading], None)  # valid, but for another device's topic
    if kind == "unknown_unit":
        bad = DeviceReading("heart_rate", 72.0, "bpm", at + 0.002)
        return encode_message(device_id, seq, at, [reading, bad], None)
    if kind == "wrong_unit":
        # A Celsius value labelled Fahrenheit: 37.0 [degF] is 2.8 Cel, outside plausibility.
        bad = DeviceReading("body_temp", 37.0, "[degF]", at + 0.001)
        return encode_message(device_id, seq, at, [reading, bad], None)
    raise ValueError(f"unknown fault kind {kind!r}")
