"""Patient-facing words of My health and My care plan (issue 12, ADR 0027).

Plain words at or below school grade 8 (tests/portal/test_readability.py checks every entry).
Placeholders are named `str.format` fields; `api.portal.text.t` fills them.
"""

from __future__ import annotations

MESSAGES: dict[str, str] = {
    # --- My health -----------------------------------------------------------------------
    "health.title": "My health",
    "health.intro": "Here are your latest readings. Your care team sees them too.",
    "health.intro_not_shared": (
        "Here are your latest readings. You chose not to share them with your care team, so they do not "
        "see them. You can change this on the Consent page."
    ),
    "health.none": "We have no readings from you in the last 7 days. Check that your devices are on.",
    "health.range.24h": "Last 24 hours",
    "health.range.7d": "Last 7 days",
    "health.range.label": "Show the charts for",
    "health.measured": "Measured {age}.",
    "health.stale": "This reading is more than a day old. Please measure again when you can.",
    "health.chart.limit": "limit {value}",
    "health.chart.aria": "{name}, {span}: {count} points. {limits}",
    "health.chart.aria_limits": "Your limits are {values}.",
    "health.chart.aria_no_limits": "No limit is set.",
    "health.chart.none": "No readings in this time.",
    "health.axis.24h": "24 hours ago",
    "health.axis.7d": "7 days ago",
    "health.axis.now": "Now",
    "health.chart.few": "Only one reading in this time. Pick the last 7 days to see more.",
    # A metric inside a sentence ("Measure your ...").
    "what.bp_systolic": "blood pressure",
    "what.bp_diastolic": "blood pressure",
    "what.spo2": "oxygen level",
    "what.consciousness": "alertness",
    # Metric names (short labels; the readability test skips entries under five words).
    "metric.heart_rate": "Heart rate",
    "metric.resp_rate": "Breathing rate",
    "metric.spo2": "Oxygen level",
    "metric.body_temp": "Temperature",
    "metric.bp_systolic": "Blood pressure, top number",
    "metric.bp_diastolic": "Blood pressure, bottom number",
    "metric.body_weight": "Weight",
    "metric.glucose": "Blood sugar",
    "metric.consciousness": "How alert you are",
    "unit.heart_rate": "beats a minute",
    "unit.resp_rate": "breaths a minute",
    "unit.spo2": "%",
    "unit.body_temp": "°C",
    "unit.bp_systolic": "mmHg",
    "unit.bp_diastolic": "mmHg",
    "unit.body_weight": "kg",
    "unit.glucose": "mg/dL",
    "unit.consciousness": "",
    # What a reading means, and what happens next.
    "meaning.above.told": "Your reading is above the limit of {limit} your care team set. They have been told.",
    "meaning.above.watch": (
        "Your reading is above the limit of {limit} your care team set. If it stays high, they will be told."
    ),
    "meaning.below.told": "Your reading is below the limit of {limit} your care team set. They have been told.",
    "meaning.below.watch": (
        "Your reading is below the limit of {limit} your care team set. If it stays low, they will be told."
    ),
    "meaning.within": "Your reading is inside the limits your care team set. There is nothing more to do.",
    "meaning.no_limit": "Your care team has not set a limit for this reading. They can see it.",
    "meaning.weight": (
        "Your care team is told if your weight goes up by {day} kg in one day, or by {week} kg in one week."
    ),
    "meaning.weight.told": "Your weight went up fast. Your care team has been told.",
    "safety.heart_rate": "If you feel faint or have chest pain, call emergency services.",
    "safety.resp_rate": "If you find it hard to breathe, call emergency services.",
    "safety.spo2": "If you find it hard to breathe or your lips look blue, call emergency services.",
    "safety.body_temp": "If you feel very sick or mixed up, call emergency services.",
    "safety.bp_systolic": (
        "If you have chest pain or a bad headache, or find it hard to talk, call emergency services."
    ),
    "safety.bp_diastolic": (
        "If you have chest pain or a bad headache, or find it hard to talk, call emergency services."
    ),
    "safety.glucose": "Do you feel shaky, sweaty or mixed up? Call emergency services.",
    "safety.body_weight": "If you are short of breath or your legs swell, call your care team today.",
    "safety.consciousness": "Do you feel very sleepy or mixed up? Call emergency services.",
    "trend.rising": "It went up over the last day.",
    "trend.falling": "It went down over the last day.",
    "trend.steady": "It stayed about the same over the last day.",
    # Times in words.
    "age.now": "just now",
    "age.minutes": "{n} minutes ago",
    "age.hours": "{n} hours ago",
    "age.days": "{n} days ago",
    # NEWS2 as an overall score.
    "news2.title": "Your overall score",
    "news2.about": (
        "This score adds up your breathing, oxygen, blood pressure, pulse, how alert you are and your"
        " temperature. A higher score means you may need more care."
    ),
    "news2.low": "Your score is {total}. This is low. Keep taking your readings as planned.",
    "news2.low-medium": "Your score is {total}. One reading needs a closer look. Your care team will check it.",
    "news2.medium": "Your score is {total}. This is higher than usual. Your care team will get in touch.",
    "news2.high": (
        "Your score is {total}. This is high. Your care team has been told and will call you soon."
        " If you feel very sick, call emergency services."
    ),
    "news2.none": "We cannot work out your score. There are no readings from the last day.",
    "news2.missing": "Some parts are missing because there is no recent reading.",
    # Open alerts in the patient's words (never a rule id).
    "alerts.title": "What your care team is looking at",
    "alerts.none": "Nothing right now. Your readings have not raised a flag.",
    "alert.spo2_low": "Your oxygen level was low.",
    "alert.heart_rate_high": "Your heart rate was high.",
    "alert.heart_rate_low": "Your heart rate was low.",
    "alert.resp_rate_high": "You were breathing fast.",
    "alert.temp_high": "Your temperature was high.",
    "alert.news2_low": "Your overall score went up a little.",
    "alert.news2_single_parameter": "One of your readings was far from normal.",
    "alert.news2_medium": "Your overall score went up.",
    "alert.news2_high": "Your overall score is high.",
    "alert.bp_crisis_confirmed": "Your blood pressure was very high twice in a row.",
    "alert.bp_crisis_unconfirmed": "Your blood pressure was very high. Sit still for five minutes and measure again.",
    "alert.hf_weight_gain_1d": "Your weight went up fast in one day. Your body may be holding water.",
    "alert.hf_weight_gain_3d": "Your weight went up fast in three days. Your body may be holding water.",
    "alert.hf_weight_gain_7d": "Your weight went up over the week. Your body may be holding water.",
    "alert.glucose_low_l1": "Your blood sugar was low.",
    "alert.glucose_low_l2": "Your blood sugar was very low.",
    "alert.glucose_high": "Your blood sugar was high.",
    "alert.baseline_deviation": "A reading was not like your usual ones.",
    "alert.measurement_missed": "A planned reading did not come in.",
    "alert.dose_missed": "A planned dose was not marked as taken.",
    "alert.device_silent_warn": "One of your devices has stopped sending readings.",
    "alert.device_silent_urgent": "One of your devices has sent nothing for a long time.",
    "alert.other": "Your care team is checking one of your readings.",
    "alert.state.open": "Your care team has been told.",
    "alert.state.acknowledged": "Someone on your care team is looking at it.",
    "alert.state.snoozed": "Someone on your care team is looking at it.",
    "alert.since": "Since {age}.",
    # Devices.
    "devices.title": "My devices",
    "devices.none": "You have no devices linked to your record yet.",
    "device.wearable": "Wrist band",
    "device.bp_cuff": "Blood pressure cuff",
    "device.pulse_oximeter": "Finger oxygen clip",
    "device.scale": "Scale",
    "device.glucometer": "Blood sugar meter",
    "device.pill_bottle": "Pill bottle",
    "device.thermometer": "Thermometer",
    "device.seen": "Last reading {age}.",
    "device.never": "No reading in the last 7 days.",
    "device.battery": "Battery {pct} percent.",
    "device.battery_low": "Battery {pct} percent. Please charge it or put in a new battery soon.",
    "device.battery_unknown": "It has not told us its battery level.",
    "device.silent": "This device has not sent a reading for a while.",
    "device.silent_help": (
        "When a device goes quiet, check that it is on and near your phone or hub. Charge it if the"
        " battery is low. If it still sends nothing, call your care team."
    ),
    # Pages in words when something is missing.
    "page.no_record.title": "No record yet",
    "page.no_record": "Your account is not linked to a patient record yet. Please call your care team.",
    "page.no_lesson.title": "Lesson not found",
    "page.no_lesson": "There is no lesson at this address. Go to My care plan to see the lessons.",
    "page.expired.title": "Form expired",
    "page.expired": "This form has expired. Go back, reload the page and try again.",
    # --- My care plan --------------------------------------------------------------------
    "plan.title": "My care plan",
    "plan.intro": "This is the plan your care team made for you. Times are in the {zone} time zone.",
    "plan.default": "Your care team has not made a plan for you yet. These are the usual limits.",
    "plan.version": "Plan version {version}, last changed {date} at {time}, {zone} time.",
    "plan.measure.title": "What to measure",
    "plan.measure.times": "Measure your {what} at {times}.",
    "plan.measure.per_day": "Measure your {what} {count} times a day, at any time.",
    "plan.measure.once": "Measure your {what} once a day, at any time.",
    "plan.measure.none": "Your plan has no set times to take readings.",
    "plan.dose.title": "Medicines",
    "plan.dose.times": "Take {dose} at {times}.",
    "plan.dose.none": "Your plan has no set times for medicine.",
    "plan.dose.note": "Mark each dose as taken on your pill bottle so your care team knows.",
    "plan.limits.title": "When your care team is told",
    "plan.limit.high": "If your {what} goes above {limit}.",
    "plan.limit.low": "If your {what} goes below {limit}.",
    "plan.limit.for": "{rule} It must stay that way for {minutes} minutes first.",
    "plan.bp": (
        "If your blood pressure is {systolic} over {diastolic} or higher, sit still and measure again after a few"
        " minutes. If it is still that high, your care team is told at once."
    ),
    "plan.glucose": "If your blood sugar goes below {low} or above {high}.",
    "plan.glucose_low_only": "If your blood sugar goes below {low}.",
    "plan.weight": "If your weight goes up by {day} kg in one day, or by {week} kg in one week.",
    "plan.why.title": "Why these limits",
    "plan.why.none": "Your care team has not added a note. You can ask them about your limits at your next visit.",
    "plan.oxygen": "You use extra oxygen. Your limits take this into account.",
    # Adherence and streaks: encourage, never blame.
    "plan.adherence.title": "How you are doing",
    "plan.adherence.intro": "This shows how many of your planned readings and doses came in each week.",
    "plan.adherence.none": "Nothing is planned yet, so there is nothing to count.",
    "plan.week.label": "Week starting {date}",
    "plan.week.days": "You kept your full plan on {kept} of {days} days.",
    "plan.week.share": "{met} of {expected} planned readings and doses came in.",
    "plan.week.nothing": "Nothing was planned this week.",
    "plan.week.great": "Great work. Keep it up.",
    "plan.week.good": "Good effort. Every reading helps your care team.",
    "plan.week.start": "Every reading counts. A phone alarm can help you remember.",
    "plan.streak.now": "You have kept your plan {days} days in a row. Well done.",
    "plan.streak.one": "You kept your plan yesterday. One more day starts a streak.",
    "plan.streak.zero": "Today is a good day to start a new run. Each day counts.",
    "plan.streak.best": "Your best run in the last four weeks was {days} days in a row.",
    "plan.learn.title": "Learn about your health",
    "plan.learn.intro": "Short lessons with a few questions to check what you learned.",
    "plan.learn.yours": "for you",
}
