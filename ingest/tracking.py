"""What the bridge remembers of each device, and the rules it judges a message's seq, battery and
status by: duplicates, counter resets, gaps (with the messages refused before their seq was
known filling slots), battery steps worth a device event, online and offline.

Pure: no I/O, no clock. The bridge (`ingest.bridge`) asks, then turns the answers into device
events, resend requests and metrics.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from enum import Enum
from typing import Final, Literal

SEQ_WINDOW: Final = 4096  # recent seqs remembered per device (dedup; older ones mean a reset)
BATTERY_STEP: Final = 0.05  # a battery change smaller than this is not reported


@dataclass(slots=True)
class DeviceTrack:
    """What the bridge remembers of a device: recent seqs with their readings' digest (dedup,
    counter resets), last seq (gaps), battery, and messages refused before their seq was known."""

    recent: OrderedDict[int, int] = field(default_factory=OrderedDict)
    last_seq: int | None = None
    last_battery: float | None = None
    last_resend_request: float = 0.0
    seqless_rejects: int = 0  # messages refused as a whole whose seq could not be read

    def digest_of(self, seq: int) -> int | None:
        return self.recent.get(seq)

    def remember(self, seq: int, digest: int, window: int = SEQ_WINDOW) -> None:
        self.recent[seq] = digest
        while len(self.recent) > window:
            self.recent.popitem(last=False)

    def reset(self) -> None:
        """The device restarted its seq counter: what it sent before says nothing of what comes."""
        self.recent.clear()
        self.last_seq = None
        self.seqless_rejects = 0


class SeqVerdict(Enum):
    NEW = "new"
    DUPLICATE = "duplicate"  # the same seq with the same readings: already forwarded
    RESET = "reset"  # an old seq with other readings: the device restarted its counter


def judge_seq(track: DeviceTrack, seq: int, digest: int, known: int | None) -> SeqVerdict:
    """A message's seq against what is known of it (`known`: the digest of the readings last seen
    with this seq, confirmed or still on its way to Kafka; None if none)."""
    if known == digest:
        return SeqVerdict.DUPLICATE
    if known is not None or (track.last_seq is not None and seq < track.last_seq - SEQ_WINDOW):
        return SeqVerdict.RESET
    return SeqVerdict.NEW


@dataclass(frozen=True, slots=True)
class DeviceSide:
    """What a message says of its device beyond its readings."""

    gap_from: int | None  # the first seq missing before this one (a gap to report), or None
    battery: float | None  # a battery level to report (moved by at least BATTERY_STEP), or None


def observe(track: DeviceTrack, seq: int, battery: float | None) -> DeviceSide:
    """Account for a message's seq and battery on the device's track; says what to report."""
    missing = seq - track.last_seq - 1 if track.last_seq is not None else 0
    if missing > 0 and track.seqless_rejects:
        # Messages refused before their seq was known fill these slots.
        explained = min(missing, track.seqless_rejects)
        track.seqless_rejects -= explained
        missing -= explained
    gap_from = track.last_seq + 1 if missing > 0 and track.last_seq is not None else None
    if track.last_seq is None or seq > track.last_seq:
        track.last_seq = seq
    moved = battery is not None and (track.last_battery is None or abs(battery - track.last_battery) >= BATTERY_STEP)
    if moved:
        track.last_battery = battery
    return DeviceSide(gap_from, battery if moved else None)


def device_status(payload: bytes) -> Literal["online", "offline"] | None:
    """The state a device's status message (or its broker-sent will) announces, if any."""
    state = payload.decode("utf-8", "replace").strip().strip('"').lower()
    if state == "online":
        return "online"
    if state == "offline":
        return "offline"
    return None
