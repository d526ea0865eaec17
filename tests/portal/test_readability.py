"""Every patient-facing string of the catalogue (every api/portal/text_*.py and core/texts/text_*.py
module, e.g. the reminder e-mail's) reads at or below school grade 8 (Flesch-Kincaid grade, textstat).

How strings are measured:
- `{placeholders}` are replaced by a short word ("ten") before scoring: a filled-in number or
  date is read as one short word.
- A string of fewer than 5 words (a label, a button, a metric name, "limit {value}") is not
  scored on its own: the formula is meaningless on a few words (one long word can score grade
  15). Those strings are grouped instead: all short strings of one catalogue are joined as
  sentences of one text, and that text must also be at or below grade 8.
- Units and symbols ("mmHg", "%") are short strings and only count within their group.
The modules are found by `catalogue_modules()` (by name, in both packages), so a new
api/portal/text_<part>.py or core/texts/text_<part>.py is checked without editing this test.
"""

from __future__ import annotations

import importlib
import re

import pytest
import textstat

from api.portal.text import catalogue, catalogue_modules, t
from core.texts import catalogue as core_catalogue
from core.texts import t as core_t

MAX_GRADE = 8.0
MIN_WORDS = 5
MODULES = [m.__name__ for m in catalogue_modules()]
PLACEHOLDER = re.compile(r"\{[a-z_]+\}")


def plain(text: str) -> str:
    return PLACEHOLDER.sub("ten", text)


def messages(module: str) -> dict[str, str]:
    found: dict[str, str] = importlib.import_module(module).MESSAGES
    return found


def test_catalogues_are_found() -> None:
    assert "api.portal.text_health" in MODULES
    assert "api.portal.text_learn" in MODULES
    # The reminder e-mail the alert service sends is in the same catalogue (ADR 0026, 0027).
    assert "core.texts.text_reminder_email" in MODULES
    assert len(MODULES) == len(set(MODULES))


@pytest.mark.parametrize("module", MODULES)
def test_every_sentence_is_grade_8_or_below(module: str) -> None:
    too_hard = {}
    for msg_id, text in messages(module).items():
        words = plain(text)
        if len(words.split()) < MIN_WORDS:
            continue
        grade = textstat.flesch_kincaid_grade(words)
        if grade > MAX_GRADE:
            too_hard[msg_id] = (round(grade, 1), text)
    assert too_hard == {}


@pytest.mark.parametrize("module", MODULES)
def test_short_strings_read_together_at_grade_8_or_below(module: str) -> None:
    short = [plain(text).strip() for text in messages(module).values() if len(plain(text).split()) < MIN_WORDS]
    short = [s for s in short if re.search(r"[A-Za-z]", s)]
    if not short:
        pytest.skip("no short strings")
    text = " ".join(s if s.endswith((".", "?", "!")) else f"{s}." for s in short)
    assert textstat.flesch_kincaid_grade(text) <= MAX_GRADE


def test_ids_are_unique_across_catalogues_and_lookup_fails_loudly() -> None:
    total = sum(len(messages(m)) for m in MODULES)
    assert len(catalogue()) == total  # catalogue() raises on a duplicate id
    assert t("health.measured", age="5 minutes ago") == "Measured 5 minutes ago."
    # The alert service reads its part through core.texts: the same ids and texts.
    assert core_catalogue().items() <= catalogue().items()
    assert t("reminder_email.subject", what="x") == core_t("reminder_email.subject", what="x")
    with pytest.raises(KeyError):
        t("no.such.message")
