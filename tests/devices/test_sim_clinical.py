"""The simulator's ground truth against the platform: its NEWS2 arithmetic
(devices/simulator/clinical.py, written apart from core/detectors/news2.py) gives the same
scores and bands as the platform's scoring over the whole input space, and its limits are the
care plan's."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from core.careplan import CarePlan, GlucoseLimits, News2Settings, default_care_plan
from core.detectors import news2 as platform
from core.rules import Rule
from devices.simulator import clinical

EXAMPLES = settings(max_examples=1000, deadline=None)
# Wider than anything plausible (core.catalogue), so the band edges and the rounding of
# negative and huge values are covered too; `Decimal` quantizes them all exactly.
LIMIT = 10**6


def values(low: float, high: float) -> st.SearchStrategy[float]:
    """Any float between the limits, and the decimals devices send (whole numbers, tenths,
    hundredths: 36.05, 91.5) around the table's band edges, where rounding decides."""
    return st.one_of(
        st.floats(min_value=-LIMIT, max_value=LIMIT, allow_nan=False, allow_infinity=False),
        st.integers(min_value=int(low), max_value=int(high)).map(float),
        st.decimals(min_value=Decimal(low), max_value=Decimal(high), places=1).map(float),
        st.decimals(min_value=Decimal(low), max_value=Decimal(high), places=2).map(float),
    )


RESP_RATE = values(0, 60)
SPO2 = values(60, 100)
SYSTOLIC = values(40, 260)
PULSE = values(20, 200)
TEMPERATURE = values(30, 45)
SCALE = st.sampled_from([1, 2])


@EXAMPLES
@given(rr=RESP_RATE, spo2=SPO2, sbp=SYSTOLIC, hr=PULSE, temp=TEMPERATURE, scale=SCALE, oxygen=st.booleans())
def test_every_parameter_scores_as_the_platform_scores_it(
    rr: float, spo2: float, sbp: float, hr: float, temp: float, scale: int, oxygen: bool
) -> None:
    assert clinical.score_resp_rate(rr) == platform.score_resp_rate(rr)
    assert clinical.score_spo2(spo2, scale=scale, on_oxygen=oxygen) == platform.score_spo2(
        spo2, scale=1 if scale == 1 else 2, on_oxygen=oxygen
    )
    assert clinical.score_systolic(sbp) == platform.score_bp_systolic(sbp)
    assert clinical.score_pulse(hr) == platform.score_heart_rate(hr)
    assert clinical.score_temperature(temp) == platform.score_body_temp(temp)


@EXAMPLES
@given(
    rr=RESP_RATE,
    spo2=SPO2,
    sbp=st.none() | SYSTOLIC,
    hr=PULSE,
    temp=TEMPERATURE,
    scale=SCALE,
    oxygen=st.booleans(),
)
def test_the_aggregate_and_its_band_are_the_platforms(
    rr: float, spo2: float, sbp: float | None, hr: float, temp: float, scale: int, oxygen: bool
) -> None:
    score = platform.score_news2(
        platform.News2Input(
            resp_rate=rr, spo2=spo2, on_oxygen=oxygen, bp_systolic=sbp, heart_rate=hr, body_temp=temp, consciousness="A"
        ),
        scale=1 if scale == 1 else 2,
    )
    total = clinical.news2(
        resp_rate=rr, spo2=spo2, pulse=hr, temperature=temp, systolic=sbp, on_oxygen=oxygen, scale=scale
    )
    assert total == score.total
    # The monitor's score of the same set, and the band it raises.
    monitor = clinical.News2Monitor(scale=scale, on_oxygen=oxygen)
    monitor.observe(0.0, {"resp_rate": rr, "spo2": spo2, "heart_rate": hr, "body_temp": temp})
    if sbp is not None:
        monitor.observe(0.0, {"bp_systolic": sbp})
    assert monitor.score(0.0) == (score.total, score.max_single)
    band = clinical.news2_band(score.total, score.max_single)
    assert band == (score.rule.value if score.rule is not None else None)


def test_every_band_of_every_aggregate_is_the_platforms() -> None:
    for total in range(0, 21):
        for max_single in range(0, 4):
            rule = platform.band(total, max_single)[1]
            assert clinical.news2_band(total, max_single) == (rule.value if rule is not None else None)
    assert clinical.NEWS2_BANDS[1:] == tuple(
        r.value for r, _ in sorted(platform.BAND_RANK.items(), key=lambda kv: kv[1]) if r is not None
    )


def test_the_limits_are_the_care_plans_defaults() -> None:
    plan = default_care_plan("anyone")
    spo2_low = next(limit for limit in plan.limits if limit.rule is Rule.SPO2_LOW)
    assert (
        plan.news2.max_age_s,
        plan.news2.step_down_s,
        plan.news2.low_sustained_s,
    ) == (clinical.NEWS2_MAX_AGE_S, clinical.NEWS2_STEP_DOWN_S, clinical.NEWS2_LOW_HOLD_S)
    assert (spo2_low.raise_at, spo2_low.sustained_s) == (clinical.SPO2_LOW, clinical.SPO2_LOW_SUSTAIN_S)
    assert (
        plan.glucose.level1_below,
        plan.glucose.level2_below,
        plan.glucose.high_above,
    ) == (clinical.GLUCOSE_LOW_L1, clinical.GLUCOSE_LOW_L2, clinical.GLUCOSE_HIGH)
    assert (
        plan.bp_crisis.systolic,
        plan.bp_crisis.diastolic,
    ) == (clinical.BP_CRISIS_SYSTOLIC, clinical.BP_CRISIS_DIASTOLIC)
    assert (plan.hf_weight.gain_1d_kg, plan.hf_weight.gain_7d_kg) == (clinical.HF_GAIN_1D_KG, clinical.HF_GAIN_7D_KG)
    wearable = plan.silence_policy("wearable")
    assert (wearable.warn_s, wearable.urgent_s) == (clinical.SILENT_WARN_S, clinical.SILENT_URGENT_S)


def test_a_patients_plan_sets_the_monitor_and_the_glucose_episodes() -> None:
    plan = CarePlan(
        patient_id="p1",
        on_oxygen=True,
        news2=News2Settings(spo2_scale=2, max_age_s=600, step_down_s=120, low_sustained_s=0),
        glucose=GlucoseLimits(level1_below=80, level2_below=60, high_above=None, clear_sustained_s=60),
    )
    monitor = clinical.News2Monitor.for_plan(plan)
    assert (monitor.scale, monitor.on_oxygen) == (2, True)
    assert (monitor.max_age_s, monitor.step_down_s, monitor.low_hold_s) == (600, 120, 0)
    # No low-band hold in this plan: SpO2 93 % on oxygen (scale 2) scores 1 + 2 for oxygen,
    # the low band, raised at once.
    assert monitor.observe(0.0, {"spo2": 93.0, "resp_rate": 16.0, "heart_rate": 70.0, "body_temp": 37.0}) == "news2_low"
    episodes = clinical.GlucoseEpisodes(plan.glucose)
    assert episodes.observe(0.0, 75.0) == ["glucose_low_l1"]  # under the plan's 80, over the default 70
    assert episodes.observe(60.0, 900.0) == []  # no high limit in this plan
    assert clinical.GlucoseEpisodes().observe(0.0, 75.0) == []
