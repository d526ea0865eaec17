"""The silent-devices gauge's count from a patient's detector state: a device with its urgent
episode open counts as urgent (even with the warn one open too), one with only the warn episode
as warn, a device that speaks as neither."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.detectors.model import Episode
from core.detectors.rules.silence import DeviceSeen, SilenceState
from core.detectors.service import DetectorState
from core.rules import Rule
from streams.detection.pipeline import silent_devices


def test_silent_devices_by_level() -> None:
    now = datetime.now(UTC)
    warn = Episode(Rule.DEVICE_SILENT_WARN, "det-w", now - timedelta(minutes=20))
    urgent = Episode(Rule.DEVICE_SILENT_URGENT, "det-u", now - timedelta(minutes=5))
    seen = now - timedelta(minutes=35)
    state = DetectorState(
        silence=SilenceState(
            devices={
                "dev-urgent": DeviceSeen(device_class="wearable", last_seen=seen, open=(warn, urgent)),
                "dev-warn": DeviceSeen(device_class="wearable", last_seen=seen, open=(warn,)),
                "dev-other-warn": DeviceSeen(device_class="cuff", last_seen=seen, open=(warn,)),
                "dev-speaking": DeviceSeen(device_class="wearable", last_seen=now),
            }
        )
    )

    assert silent_devices(state) == {"warn": 2, "urgent": 1}
    assert silent_devices(DetectorState()) == {"warn": 0, "urgent": 0}
