"""ingest.tracking: the bridge's per-device rules (duplicates, counter resets, gaps, battery
steps, status), without a broker."""

from __future__ import annotations

from ingest.tracking import SEQ_WINDOW, DeviceSide, DeviceTrack, SeqVerdict, device_status, judge_seq, observe


def test_the_same_seq_with_the_same_readings_is_a_duplicate_and_with_others_a_reset() -> None:
    track = DeviceTrack()
    assert judge_seq(track, 5, digest=111, known=None) is SeqVerdict.NEW
    track.remember(5, 111)
    assert judge_seq(track, 5, 111, track.digest_of(5)) is SeqVerdict.DUPLICATE
    assert judge_seq(track, 5, 222, track.digest_of(5)) is SeqVerdict.RESET


def test_a_seq_far_below_the_last_one_is_a_reset_even_when_forgotten() -> None:
    track = DeviceTrack(last_seq=SEQ_WINDOW + 100)
    assert judge_seq(track, 99, 1, None) is SeqVerdict.RESET
    assert judge_seq(track, 100, 1, None) is SeqVerdict.NEW  # within the window: a late message


def test_a_gap_is_reported_from_the_first_missing_seq_unless_refused_messages_fill_it() -> None:
    track = DeviceTrack()
    assert observe(track, 1, None) == DeviceSide(None, None)
    assert observe(track, 4, None) == DeviceSide(gap_from=2, battery=None)
    assert track.last_seq == 4
    track.seqless_rejects = 2  # two messages refused before their seq could be read
    assert observe(track, 7, None) == DeviceSide(None, None)  # they were seqs 5 and 6
    assert track.seqless_rejects == 0
    assert observe(track, 6, None) == DeviceSide(None, None)  # late: no gap, last seq stays
    assert track.last_seq == 7


def test_the_battery_is_reported_when_it_moved_by_a_step() -> None:
    track = DeviceTrack()
    assert observe(track, 1, 0.80).battery == 0.80
    assert observe(track, 2, 0.78).battery is None
    assert observe(track, 3, 0.75).battery == 0.75
    assert track.last_battery == 0.75


def test_status_messages_say_online_or_offline_or_nothing() -> None:
    assert device_status(b"online") == "online"
    assert device_status(b' "OFFLINE" ') == "offline"
    assert device_status(b"rebooting") is None
    assert device_status(b"\xff\xfe") is None
