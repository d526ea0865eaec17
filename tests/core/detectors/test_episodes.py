"""The episode bookkeeping every rule with hysteresis shares: raise once, hold, clear."""

from __future__ import annotations

from datetime import datetime, timedelta

from core.detectors.episodes import EpisodeTracker
from core.detectors.model import Detection, DetectionKind, Episode, episode_of, raise_detection
from core.rules import Rule, Severity

from .factory import at, events

HOLD = timedelta(minutes=15)


def tracker(
    found: list[Detection], episodes: list[Episode | None] | None = None, hold_since: datetime | None = None
) -> EpisodeTracker:
    return EpisodeTracker("p1", found, episodes or [], hold_since=hold_since)


def test_a_raise_opens_an_episode_and_its_clear_names_that_raise() -> None:
    found: list[Detection] = []
    episodes = tracker(found)
    episode = episodes.raise_episode(Rule.SPO2_LOW, Severity.HIGH, at=at(10), episode_start=at(0), evidence={"v": 88})
    assert episodes.is_open
    assert episodes.has(Rule.SPO2_LOW)
    assert episodes.episode == episode
    episodes.clear(at=at(30), evidence={"v": 95})
    assert events(found) == [(Rule.SPO2_LOW, DetectionKind.RAISE), (Rule.SPO2_LOW, DetectionKind.CLEAR)]
    raised, cleared = found
    assert raised.episode_start == at(0)
    assert raised.detected_at == at(10)
    assert raised.severity is Severity.HIGH
    assert cleared.clears == raised.detection_id
    assert cleared.detected_at == at(30)
    assert cleared.severity is Severity.INFO
    assert cleared.evidence == {"v": 95}
    assert not episodes.is_open
    assert episodes.episode is None


def test_the_ids_are_those_of_the_model_so_a_replay_gives_the_same_ones() -> None:
    found: list[Detection] = []
    tracker(found).raise_episode(Rule.BASELINE_DEVIATION, Severity.LOW, at=at(5), evidence={}, key_suffix="spo2")
    direct = raise_detection(
        "p1", Rule.BASELINE_DEVIATION, Severity.LOW, at=at(5), episode_start=at(5), evidence={}, key_suffix="spo2"
    )
    assert found == [direct]


def test_the_hold_answers_its_start_once_it_has_lasted_long_enough() -> None:
    found: list[Detection] = []
    episodes = tracker(found)
    episodes.raise_episode(Rule.GLUCOSE_HIGH, Severity.MEDIUM, at=at(0), evidence={})
    assert episodes.held(at(5), HOLD) is None
    assert episodes.held(at(19), HOLD) is None
    assert episodes.held(at(20), HOLD) == at(5)
    assert episodes.hold_since == at(5)
    assert episodes.hold_last == at(20)
    assert len(found) == 1  # holding clears nothing by itself


def test_a_reading_that_does_not_count_starts_the_hold_again() -> None:
    episodes = tracker([])
    episodes.raise_episode(Rule.GLUCOSE_HIGH, Severity.MEDIUM, at=at(0), evidence={})
    assert episodes.held(at(5), HOLD) is None
    episodes.break_hold()
    assert episodes.held(at(10), HOLD) is None
    assert episodes.held(at(20), HOLD) is None
    assert episodes.held(at(25), HOLD) == at(10)


def test_with_a_max_gap_a_run_with_a_longer_gap_starts_again() -> None:
    episodes = tracker([])
    episodes.raise_episode(Rule.SPO2_LOW, Severity.HIGH, at=at(0), evidence={})
    gap = timedelta(minutes=10)
    assert episodes.held(at(1), HOLD, max_gap=gap) is None
    assert episodes.held(at(12), HOLD, max_gap=gap) is None  # 11 min after the last: a new run
    assert episodes.held(at(22), HOLD, max_gap=gap) is None
    assert episodes.held(at(27), HOLD, max_gap=gap) == at(12)
    # Without a max gap the same readings would have held since minute 1.
    other = tracker([])
    other.raise_episode(Rule.SPO2_LOW, Severity.HIGH, at=at(0), evidence={})
    assert [other.held(at(m), HOLD) for m in (1, 12, 22)] == [None, None, at(1)]


def test_nothing_open_nothing_held_nothing_cleared() -> None:
    found: list[Detection] = []
    episodes = tracker(found)
    assert episodes.held(at(0), timedelta(0)) is None
    assert episodes.hold_since is None
    episodes.clear(at=at(1), evidence={})
    assert found == []
    assert not episodes.is_open


def test_episodes_that_end_together_clear_together_in_the_order_raised() -> None:
    found: list[Detection] = []
    episodes = tracker(found)
    episodes.raise_episode(Rule.GLUCOSE_LOW_L1, Severity.MEDIUM, at=at(0), evidence={})
    episodes.raise_episode(Rule.GLUCOSE_LOW_L2, Severity.HIGH, at=at(5), evidence={})
    assert list(episodes.episodes) == ["glucose_low_l1", "glucose_low_l2"]
    assert episodes.episode is not None
    assert episodes.episode.rule is Rule.GLUCOSE_LOW_L2
    episodes.clear(at=at(30), evidence={})
    assert events(found)[2:] == [(Rule.GLUCOSE_LOW_L1, DetectionKind.CLEAR), (Rule.GLUCOSE_LOW_L2, DetectionKind.CLEAR)]


def test_one_rule_can_be_cleared_alone() -> None:
    found: list[Detection] = []
    episodes = tracker(found)
    episodes.raise_episode(Rule.HF_WEIGHT_GAIN_1D, Severity.HIGH, at=at(0), evidence={})
    episodes.raise_episode(Rule.HF_WEIGHT_GAIN_7D, Severity.HIGH, at=at(0), evidence={})
    episodes.clear(at=at(60), evidence={}, rule=Rule.HF_WEIGHT_GAIN_1D)
    assert events(found)[-1] == (Rule.HF_WEIGHT_GAIN_1D, DetectionKind.CLEAR)
    assert list(episodes.episodes) == ["hf_weight_gain_7d"]


def test_a_dropped_episode_ends_without_a_clear() -> None:
    found: list[Detection] = []
    episodes = tracker(found)
    episodes.raise_episode(Rule.BP_CRISIS_UNCONFIRMED, Severity.LOW, at=at(0), evidence={})
    episodes.held(at(1), HOLD)
    episodes.drop()
    assert len(found) == 1
    assert not episodes.is_open
    assert episodes.hold_since is None


def test_it_resumes_from_saved_state_and_shares_one_list_with_other_trackers() -> None:
    saved = episode_of(raise_detection("p1", Rule.NEWS2_LOW, Severity.LOW, at=at(0), episode_start=at(0), evidence={}))
    found: list[Detection] = []
    band = tracker(found, episodes=[saved, None], hold_since=at(40))
    other = tracker(found, episodes=[None])
    assert band.episode == saved
    assert not other.is_open
    other.raise_episode(Rule.GLUCOSE_HIGH, Severity.MEDIUM, at=at(45), evidence={})
    assert band.held(at(70), timedelta(minutes=30)) == at(40)
    band.clear(at=at(70), evidence={})
    assert [(d.rule, d.kind) for d in found] == [
        (Rule.GLUCOSE_HIGH, DetectionKind.RAISE),
        (Rule.NEWS2_LOW, DetectionKind.CLEAR),
    ]
    assert found[1].clears == saved.detection_id
