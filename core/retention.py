"""How long raw observations must be kept at least, and why (ADR 0028).

Raw readings are part of the clinical record; how long they are kept is the programme's
decision (`RPM_RETENTION_DAYS`). The platform refuses a period shorter than the longest
window anything in it reads or accepts readings over: below it, a what-if or an adherence
figure would silently count fewer readings, and a device's offline backlog would be stored
and dropped again at the next retention round. Migration 0016's functions hold the same
floor in the database, whoever calls them.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Final

from core.wire import MAX_READING_AGE

# Each window that reads or accepts raw observations, by who has it. A reader with a longer
# window adds itself here (tests/alerts/test_retention.py compares the API's constants).
READER_WINDOWS: Final[dict[str, timedelta]] = {
    "the ingest bridge and the stream worker accept readings this old (core/wire.py MAX_READING_AGE)": (
        MAX_READING_AGE
    ),
    "a care-plan what-if replays up to 30 days (api/careplans MAX_WHAT_IF_DAYS)": timedelta(days=30),
    "the patient portal's adherence covers 4 weeks and a day (api/portal WEEKS)": timedelta(days=29),
    "the patient summary's vitals, devices and adherence cover 7 days (api/patients)": timedelta(days=7),
}

LONGEST_READER: Final = max(READER_WINDOWS, key=lambda k: READER_WINDOWS[k])
MIN_RETENTION_DAYS: Final = math.ceil(READER_WINDOWS[LONGEST_READER] / timedelta(days=1))
DEFAULT_RETENTION_DAYS: Final = 400
