"""The access log's plain words (api/accesslog/words.py): every resource the API writes has a
phrase, a route path of a refused request is read by its last word, anything new is "your
record", and every phrase the mapping can pick exists in the catalogue."""

from __future__ import annotations

import pytest

from api.accesslog import words
from api.portal.text import catalogue
from core.catalogue import CATALOGUE


@pytest.mark.parametrize(
    ("resource", "detail", "expected"),
    [
        ("observations", {"metric": "heart_rate"}, "your heart rate readings"),
        ("observations", {}, "your readings"),
        ("observations", {"metric": "not-a-metric"}, "your readings"),
        ("observation_rollups", {"metric": "spo2"}, "a chart of your oxygen level readings"),
        ("patient_summary", {}, "your summary"),
        ("care_plan", {}, "your care plan"),
        ("me/care_plan", {}, "your care plan"),
        ("me/health", {}, "your health page"),
        ("consents", {}, "your consent choices"),
        ("reminders", {}, "your reminders"),
        ("profile", {}, "your contact details"),
        ("alert", {}, "an alert about you"),
        ("device", {}, "your devices"),
        ("break_glass", {}, "your record in an emergency"),
        ("audit_events", {}, "the list of who viewed your record"),
        ("access_log", {}, "the list of who viewed your record"),
        ("privacy_flag", {}, "your note about a visit you did not know"),
        ("/api/v1/patients/{patient_id}/summary", {}, "your summary"),
        ("/api/v1/patients/{patient_id}/care-plan/what-if", {}, "your care plan"),
        ("/api/v1/patients/{patient_id}/observations/rollups", {}, "a chart of your readings"),
        ("/api/v1/patients/{patient_id}", {}, "your record"),
        ("something_new", {}, "your record"),
    ],
)
def test_what_words(resource: str, detail: dict[str, str], expected: str) -> None:
    assert words.what_words(resource, detail) == expected


def test_did_words_and_who() -> None:
    assert words.did_words("read", "care_plan") == "looked at"
    assert words.did_words("update", "care_plan") == "changed"
    assert words.did_words("create", "break_glass") == "opened"
    assert words.did_words("review", "privacy_flag") == "looked into"
    assert words.did_words("teleport", "care_plan") == "used"
    assert words.who_name(is_me=False, role="patient", display_name="Pat Other") == "Another patient"
    assert words.who_name(is_me=True, role="patient", display_name="Me") == "You"
    assert words.who_name(is_me=False, role="clinician", display_name=None) == "Someone we could not name"
    assert words.sentence("Dr Ada Lee", "admin", is_me=False, did="changed", what="your care plan") == (
        "Dr Ada Lee (support staff) changed your care plan."
    )
    assert words.outcome_words("weird") == "Did not finish"


def test_every_phrase_the_mapping_can_pick_is_in_the_catalogue() -> None:
    texts = catalogue()
    keys = {f"access.what.{v}" for v in words._WHAT.values()} | {f"access.did.{v}" for v in words._DID.values()}
    keys |= {f"access.metric.{m}" for m in CATALOGUE} | {f"access.role.{r}" for r in words._ROLES}
    keys |= {"access.what.record", "access.did.other", "access.did.open", "access.role.other"}
    assert sorted(k for k in keys if k not in texts) == []
