"""Wire contracts between processes (ARCHITECTURE.md §4): the MQTT device payload, the
Kafka records, topic names and partition counts. Encoded and decoded with msgspec.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Final, Literal

import msgspec

from core.rules import Rule, Severity

SCHEMA_VERSION: Final = 1
MAX_PAYLOAD_BYTES: Final = 64 * 1024
MAX_READINGS_PER_MESSAGE: Final = 2000
# A message's seq is stored with each of its readings in a bigint column: larger is refused at
# the bridge (schema_invalid) and in a Kafka record (undecodable_record), never by the database.
MAX_SEQ: Final = 2**63 - 1
# A reading's time against the moment the bridge received it: up to 5 min ahead (device clock
# skew), up to 365 days behind (a device that kept readings offline for long). The bridge
# refuses readings outside these bounds; the stream worker refuses records that break them.
FUTURE_TOLERANCE: Final = timedelta(minutes=5)
MAX_READING_AGE: Final = timedelta(days=365)

AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]

# --- MQTT topics -----------------------------------------------------------------------------
TOPIC_PREFIX: Final = "rpm/v1/devices"
INGEST_SHARE_GROUP: Final = "ingest"


def telemetry_topic(device_id: str) -> str:
    return f"{TOPIC_PREFIX}/{device_id}/telemetry"


def status_topic(device_id: str) -> str:
    return f"{TOPIC_PREFIX}/{device_id}/status"


def commands_topic(device_id: str) -> str:
    return f"{TOPIC_PREFIX}/{device_id}/commands"


def device_id_from_topic(topic: str) -> tuple[str, str] | None:
    """Split `rpm/v1/devices/{id}/{kind}` into (id, kind); None for any other topic."""
    parts = topic.split("/")
    if len(parts) != 5 or "/".join(parts[:3]) != TOPIC_PREFIX or not parts[3]:
        return None
    return parts[3], parts[4]


# --- MQTT payload (device -> platform) -------------------------------------------------------
class WireReading(msgspec.Struct, forbid_unknown_fields=True):
    metric: str
    value: float
    unit: str
    ts: AwareDatetime
    dose_id: str | None = None


class DevicePayload(msgspec.Struct, forbid_unknown_fields=True):
    schema: int
    device_id: str
    seq: Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)]
    sent_at: AwareDatetime
    readings: Annotated[list[WireReading], msgspec.Meta(min_length=1)]
    battery: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] | None = None


class DeviceCommand(msgspec.Struct, tag_field="command", forbid_unknown_fields=False):
    """Platform -> device; today only "resend from seq N"."""


class ResendFrom(DeviceCommand, tag="resend"):
    from_seq: int


# --- Kafka records ---------------------------------------------------------------------------
class Reading(msgspec.Struct, array_like=True):
    """One normalised reading (canonical unit of the catalogue)."""

    metric: str
    value: float
    ts: AwareDatetime
    dose_id: str | None = None


class ReadingBatch(msgspec.Struct):
    """The validated readings of one device message, or of several messages of one device
    received in one bridge batch (ADR 0032); key = patient_id. A record of `rpm.readings.v1`
    is one of these, or a JSON array of them: the batches of several patients whose readings
    share a partition, keyed by the first one's patient id (ADR 0034).

    `seq` is the (first) message's seq. When the record carries several messages, `seqs` holds
    each reading's own message seq, in the order of `readings`; None when every reading has
    `seq` (one message). Records without `seqs` (older bridges, check-ins) decode as before."""

    patient_id: str
    device_id: str
    seq: int
    received_at: datetime
    readings: list[Reading]
    quarantined: bool = False
    seqs: list[int] | None = None

    def seq_of(self, index: int) -> int:
        """The message seq of reading `index`."""
        return self.seq if self.seqs is None else self.seqs[index]


class RejectedMessage(msgspec.Struct):
    """A dead letter: why a device message was refused, with its raw payload (capped)."""

    reason: str
    detail: str
    topic: str
    device_id: str | None
    received_at: datetime
    payload: str
    payload_size: int


class DeviceEvent(msgspec.Struct):
    kind: Literal["online", "offline", "battery", "seq_gap", "seq_reset"]
    device_id: str
    at: datetime
    patient_id: str | None = None
    battery: float | None = None
    expected_seq: int | None = None
    got_seq: int | None = None


class DetectionRecord(msgspec.Struct, kw_only=True):
    """A detector finding on `rpm.detections.v1`; key = patient_id.

    `detection_id` is deterministic (UUID v5 of patient, rule, kind and episode), so a record
    produced twice (at-least-once delivery, a replay after a worker crash) is the same
    detection: consumers drop ids they have seen. `kind="clear"` ends the episode whose raise
    is named by `clears`. `detected_at` is the time of the triggering reading (timer-based
    rules: when the threshold was crossed); `received_at` is when the platform received the
    newest reading of the batch that produced it (None for timer-based rules) and
    `produced_at` when the worker published it, so consumers can measure pipeline latency.
    """

    detection_id: str
    patient_id: str
    rule: Rule
    severity: Severity
    kind: Literal["raise", "clear"]
    detected_at: AwareDatetime
    episode_start: AwareDatetime
    evidence: dict[str, Any]
    clears: str | None = None
    received_at: AwareDatetime | None = None
    produced_at: AwareDatetime | None = None
    schema: int = 1


# --- Kafka topics ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class KafkaTopic:
    name: str
    partitions: int
    compacted: bool = False


READINGS: Final = KafkaTopic("rpm.readings.v1", 8)
REJECTED: Final = KafkaTopic("rpm.rejected.v1", 2)
DEVICE_EVENTS: Final = KafkaTopic("rpm.device-events.v1", 4)
CARE_PLANS: Final = KafkaTopic("rpm.care-plans.v1", 8, compacted=True)
DETECTIONS: Final = KafkaTopic("rpm.detections.v1", 8)
ALL_TOPICS: Final = (READINGS, REJECTED, DEVICE_EVENTS, CARE_PLANS, DETECTIONS)


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash of a record key (the Java client's `Utils.murmur2`), as an unsigned
    32-bit value; written here so that every producer of ours and the worker agree on it."""
    m, h = 0x5BD1E995, (0x9747B28C ^ len(data)) & 0xFFFFFFFF
    whole = len(data) - len(data) % 4
    for i in range(0, whole, 4):
        k = (int.from_bytes(data[i : i + 4], "little") * m) & 0xFFFFFFFF
        k = ((k ^ (k >> 24)) * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail = data[whole:]
    if tail:
        for shift, byte in reversed(list(enumerate(tail))):
            h ^= byte << (8 * shift)
        h = (h * m) & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * m) & 0xFFFFFFFF
    return h ^ (h >> 15)


def default_partition(key: bytes, partition_count: int) -> int:
    """The partition Kafka's default partitioner (Java client, librdkafka's `murmur2_random`,
    aiokafka's `DefaultPartitioner`) picks for a keyed record: a patient's records land on the
    same partition whoever produces them, and the worker finds its state there."""
    return (murmur2(key) & 0x7FFFFFFF) % partition_count


_encoder = msgspec.json.Encoder()
encode = _encoder.encode
payload_decoder: Final = msgspec.json.Decoder(DevicePayload)
batch_decoder: Final = msgspec.json.Decoder(ReadingBatch)
# A record of rpm.readings.v1: one ReadingBatch (a JSON object), or the batches of several
# patients of one partition (a JSON array of them, ADR 0034).
readings_record_decoder: Final = msgspec.json.Decoder(ReadingBatch | list[ReadingBatch])
rejected_decoder: Final = msgspec.json.Decoder(RejectedMessage)
device_event_decoder: Final = msgspec.json.Decoder(DeviceEvent)
detection_decoder: Final = msgspec.json.Decoder(DetectionRecord)
