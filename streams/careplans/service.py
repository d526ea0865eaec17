"""Care plans as the detectors see them: decoded once, the default plan when a patient has none.

The care-plan table holds each patient's plan as the JSON bytes of `rpm.care-plans.v1`
(validated by the care-plan agent before it is stored). Decoding a plan for every batch would
cost more than the detectors it configures, so the decoded plan is cached and reused as long
as the table still holds the very same bytes object (a new plan, or the table rebuilt from its
changelog, replaces the object and with it the cache entry).
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from core.careplan import CarePlan, decode_care_plan, default_care_plan
from core.logging import get_logger

log = get_logger("streams.careplans")


class InvalidCarePlanError(ValueError):
    """A care-plan record that cannot be applied; the message says why."""


def validate_care_plan(key: bytes | None, value: bytes) -> CarePlan:
    """Decode and check one record of `rpm.care-plans.v1` (key = patient id)."""
    if not key:
        raise InvalidCarePlanError("care-plan record without a key (the key is the patient id)")
    try:
        plan = decode_care_plan(value)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidCarePlanError(f"care plan does not validate: {exc}") from exc
    except (UnicodeError, RecursionError) as exc:  # msgspec: invalid UTF-8 inside a string
        raise InvalidCarePlanError(f"care plan does not decode: {type(exc).__name__}: {exc}") from exc
    patient_id = key.decode("utf-8", "replace")
    if plan.patient_id != patient_id:
        raise InvalidCarePlanError(f"care plan of patient {plan.patient_id!r} published under key {patient_id!r}")
    return plan


class PlanBook:
    """Read side of the care-plan table for the detectors."""

    def __init__(self, table: Mapping[bytes, bytes]) -> None:
        self._table = table
        self._cache: dict[str, tuple[bytes | None, CarePlan]] = {}

    def plan_for(self, patient_id: str) -> CarePlan:
        raw = self._table.get(patient_id.encode())
        cached = self._cache.get(patient_id)
        if cached is not None and cached[0] is raw:
            return cached[1]
        plan: CarePlan
        if raw is None:
            plan = default_care_plan(patient_id)
        else:
            try:
                plan = decode_care_plan(raw)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                # Validated when stored, so only a schema change can get here: say so loudly and
                # keep detecting with the defaults rather than not at all.
                log.error("stored care plan no longer decodes; using the default plan", error=str(exc))
                plan = default_care_plan(patient_id)
        self._cache[patient_id] = (raw, plan)
        return plan

    def forget(self, patient_id: str) -> None:
        self._cache.pop(patient_id, None)
