"""The short lessons of /me/learn/<condition>: which exist, their questions and right answers,
which ones fit a care plan, and checking a patient's answers (pure functions; words in
api/portal/text_learn.py).

Which condition a plan points to, from the plan alone (no diagnosis is stored):
- heart failure: the heart-failure weight-gain rules are on;
- COPD: NEWS2 uses SpO2 scale 2 (a prescribed 88-92 % target);
- high blood pressure: a blood-pressure measurement schedule, or a blood-pressure limit;
- diabetes: a glucose measurement schedule.
Every lesson is listed anyway: a patient may read any of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from api.portal.text import t
from core.careplan import CarePlan

CONDITIONS: Final = ("heart_failure", "copd", "hypertension", "diabetes")
PARAGRAPHS: Final = 4
OPTIONS: Final = ("a", "b", "c")
# Question number -> the right option, per lesson.
ANSWERS: Final[dict[str, dict[int, str]]] = {
    "heart_failure": {1: "a", 2: "b", 3: "a"},
    "copd": {1: "b", 2: "a", 3: "a"},
    "hypertension": {1: "b", 2: "a", 3: "b"},
    "diabetes": {1: "a", 2: "b", 3: "b"},
}
BP_METRICS: Final = frozenset({"bp_systolic", "bp_diastolic"})


def conditions_of(plan: CarePlan) -> list[str]:
    """The lessons that fit this plan, in the order of CONDITIONS."""
    measured = {m.metric for m in plan.measurements}
    found = {
        "heart_failure": plan.hf_weight.enabled,
        "copd": plan.news2.spo2_scale == 2,
        "hypertension": bool(measured & BP_METRICS) or any(lim.metric in BP_METRICS for lim in plan.limits),
        "diabetes": "glucose" in measured,
    }
    return [c for c in CONDITIONS if found[c]]


def slug(condition: str) -> str:
    """The lesson's address part: `heart-failure` for `heart_failure`."""
    return condition.replace("_", "-")


def condition_of_slug(value: str) -> str | None:
    name = value.replace("-", "_")
    return name if name in CONDITIONS else None


@dataclass(frozen=True, slots=True)
class Question:
    number: int
    text: str
    options: list[tuple[str, str]]  # (value, words)


@dataclass(frozen=True, slots=True)
class Lesson:
    condition: str
    slug: str
    title: str
    paragraphs: list[str]
    questions: list[Question]


def lesson(condition: str) -> Lesson:
    key = f"learn.{condition}"
    return Lesson(
        condition=condition,
        slug=slug(condition),
        title=t(f"{key}.title"),
        paragraphs=[t(f"{key}.p{n}") for n in range(1, PARAGRAPHS + 1)],
        questions=[
            Question(number, t(f"{key}.q{number}"), [(o, t(f"{key}.q{number}.{o}")) for o in OPTIONS])
            for number in ANSWERS[condition]
        ],
    )


@dataclass(frozen=True, slots=True)
class Feedback:
    number: int
    chosen: str | None
    right: bool
    words: str  # "Right." / "Not quite." / "You did not pick ..." and why


@dataclass(frozen=True, slots=True)
class Marked:
    feedback: list[Feedback]
    right: int
    total: int
    summary: str


def check_answers(condition: str, form: Mapping[str, str]) -> Marked:
    """Mark the answers (`q1`..`qN` -> option) server-side; feedback in words for each question."""
    out: list[Feedback] = []
    for number, answer in ANSWERS[condition].items():
        chosen = form.get(f"q{number}")
        chosen = chosen if chosen in OPTIONS else None
        why = t(f"learn.{condition}.q{number}.why")
        if chosen is None:
            words = f"{t('learn.unanswered')} {why}"
        elif chosen == answer:
            words = f"{t('learn.right')} {why}"
        else:
            words = f"{t('learn.wrong')} {why}"
        out.append(Feedback(number, chosen, chosen == answer, words))
    right = sum(1 for f in out if f.right)
    total = len(out)
    summary = t("learn.score", right=right, total=total) + " "
    summary += t("learn.all_right") if right == total else t("learn.try_again")
    return Marked(out, right, total, summary)
