"""Reminder rules (pure: plain data in, decisions out, the clock passed in; ADR 0026).

Slots are the adherence detector's own (core/detectors/rules/adherence.py: `schedules_of` and its
slot maths in the plan's time zone), so a reminder, a missed-measurement alert and the
adherence figures always speak of the same slot.

- Planned: each slot of each schedule gets one reminder per channel the patient chose
  (e-mail only with an address), due at the slot's scheduled time (for a count per day, at
  `daily_at` local time), once its due time is within the planning horizon and while its
  window is open. Slots before the plan's `effective_from` are left alone, as the detector does.
- Decided when due: the slot's reading or dose already arrived -> cancelled
  (`cancelled_reading_arrived`); the schedule is gone from the plan -> skipped; the window
  closed -> skipped; the channel is no longer chosen, or e-mail has no address -> skipped;
  in the patient's quiet hours -> moved to the end of the quiet hours if the window is still
  open then, else skipped (`skipped_quiet_hours`); otherwise sent.
- One follow-up per channel at most, planned when the first reminder is sent: at the middle
  of the time left between the due time and the window's end, no sooner than `gap` after the
  first was sent and no later than `margin` before the window ends; none when that cannot be.
  It is decided like the first.
- A sent reminder's outcome is settled once its window closed: `reading_after` or `no_reading`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time, timedelta
from typing import Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.careplan import CarePlan
from core.detectors.rules.adherence import Schedule, Slot, schedules_of
from core.detectors.rules.adherence import _slot_for as slot_for  # the detector's nearest-slot rule
from core.detectors.rules.adherence import _slots as slots_between  # the detector's slot maths

Channel = Literal["in_app", "email"]
CHANNELS: Final[tuple[Channel, ...]] = ("in_app", "email")
Action = Literal["send", "cancel", "defer", "skip"]

SENT: Final = "sent"
CANCELLED_READING_ARRIVED: Final = "cancelled_reading_arrived"
SKIPPED_QUIET_HOURS: Final = "skipped_quiet_hours"
SKIPPED_WINDOW_CLOSED: Final = "skipped_window_closed"
SKIPPED_CHANNEL_OFF: Final = "skipped_channel_off"
SKIPPED_NO_ADDRESS: Final = "skipped_no_address"
SKIPPED_PLAN_CHANGED: Final = "skipped_plan_changed"
SKIPPED_SEND_FAILED: Final = "skipped_send_failed"
READING_AFTER: Final = "reading_after"
NO_READING: Final = "no_reading"
# Every outcome a reminder can end with (docs/operations.md, "Reminders").
OUTCOMES: Final = (
    SENT,
    READING_AFTER,
    NO_READING,
    CANCELLED_READING_ARRIVED,
    SKIPPED_QUIET_HOURS,
    SKIPPED_WINDOW_CLOSED,
    SKIPPED_CHANNEL_OFF,
    SKIPPED_NO_ADDRESS,
    SKIPPED_PLAN_CHANGED,
    SKIPPED_SEND_FAILED,
)


def zone_or(name: str | None, fallback: ZoneInfo) -> ZoneInfo:
    """The named time zone, or the fallback when it is empty or unknown."""
    if not name:
        return fallback
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return fallback


@dataclass(frozen=True, slots=True)
class Preferences:
    """What the patient chose (table `patient_preferences`); a patient without a row gets these
    defaults: in-app only, no quiet hours, the plan's time zone."""

    channels: tuple[Channel, ...] = ("in_app",)
    email: str | None = None
    quiet_start: time | None = None
    quiet_end: time | None = None
    time_zone: str | None = None

    def active_channels(self) -> tuple[Channel, ...]:
        return tuple(c for c in CHANNELS if c in self.channels and (c != "email" or self.email))


@dataclass(frozen=True, slots=True)
class Policy:
    """The service's settings the rules use."""

    horizon: timedelta = timedelta(hours=2)
    daily_at: time = time(18, 0)
    follow_up_gap: timedelta = timedelta(minutes=15)
    follow_up_margin: timedelta = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class Reminder:
    """One reminder (a row of `reminders`); `id` is None until stored."""

    patient_id: str
    schedule_key: str
    slot_key: str
    kind: Literal["measurement", "dose"]
    metric: str
    dose_id: str | None
    channel: Channel
    follow_up: bool
    scheduled_at: datetime
    window_start: datetime
    window_end: datetime
    due_at: datetime
    id: int | None = None
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    outcome: str | None = None
    until: datetime | None = None


def _due_of(s: Schedule, slot: Slot, zone: ZoneInfo, policy: Policy) -> datetime:
    if slot.whole_day:
        day = slot.start.astimezone(zone).date()
        return datetime.combine(day, policy.daily_at, tzinfo=zone).astimezone(UTC)
    return slot.scheduled


def plan_reminders(plan: CarePlan, prefs: Preferences, now: datetime, policy: Policy = Policy()) -> list[Reminder]:
    """The first reminders of every slot due by `now + horizon` whose window is still open."""
    channels = prefs.active_channels()
    if not channels:
        return []
    zone = plan.zone
    horizon = now + policy.horizon
    out: list[Reminder] = []
    for s in schedules_of(plan):
        for slot in slots_between(s, zone, now, horizon):
            due = _due_of(s, slot, zone, policy)
            if due > horizon or slot.end <= now or due >= slot.end:
                continue
            if plan.effective_from is not None and slot.start < plan.effective_from:
                continue
            for channel in channels:
                out.append(
                    Reminder(
                        patient_id=plan.patient_id,
                        schedule_key=s.key,
                        slot_key=slot.key,
                        kind="dose" if s.dose_id is not None else "measurement",
                        metric=s.metric,
                        dose_id=s.dose_id,
                        channel=channel,
                        follow_up=False,
                        scheduled_at=slot.scheduled,
                        window_start=slot.start,
                        window_end=slot.end,
                        due_at=due,
                    )
                )
    return out


def schedule_of(plan: CarePlan, key: str) -> Schedule | None:
    return next((s for s in schedules_of(plan) if s.key == key), None)


def satisfied(s: Schedule, zone: ZoneInfo, slot_key: str, readings: Iterable[datetime]) -> bool:
    """Whether readings at these times (of the schedule's metric and dose) fill the slot, by the
    detector's rule: each reading counts for the nearest slot whose window holds it, distinct
    times once."""
    counted: set[datetime] = set()
    required = 1
    for ts in readings:
        slot = slot_for(s, zone, ts.astimezone(UTC))
        if slot is not None and slot.key == slot_key:
            counted.add(ts)
            required = slot.required
    return bool(counted) and len(counted) >= required


def quiet_until(prefs: Preferences, zone: ZoneInfo, now: datetime) -> datetime | None:
    """The end of the quiet hours `now` lies in (UTC), or None when `now` is not in quiet hours.
    Quiet hours run from `quiet_start` up to `quiet_end` local time and may wrap midnight."""
    start, end = prefs.quiet_start, prefs.quiet_end
    if start is None or end is None or start == end:
        return None
    local = now.astimezone(zone)
    t = local.time().replace(tzinfo=None)
    day = local.date()
    if start < end:
        if not start <= t < end:
            return None
    elif t >= start:
        day += timedelta(days=1)
    elif not t < end:
        return None
    return datetime.combine(day, end, tzinfo=zone).astimezone(UTC)


def decide(
    reminder: Reminder,
    *,
    received: bool,
    scheduled: bool,
    prefs: Preferences,
    zone: ZoneInfo,
    now: datetime,
) -> Decision:
    """What to do with a reminder that is due. `received`: the slot's reading or dose came;
    `scheduled`: the plan still has the schedule; `zone`: the patient's time zone."""
    if received:
        return Decision("cancel", CANCELLED_READING_ARRIVED)
    if not scheduled:
        return Decision("skip", SKIPPED_PLAN_CHANGED)
    if now >= reminder.window_end:
        return Decision("skip", SKIPPED_WINDOW_CLOSED)
    if reminder.channel not in prefs.channels:
        return Decision("skip", SKIPPED_CHANNEL_OFF)
    if reminder.channel == "email" and not prefs.email:
        return Decision("skip", SKIPPED_NO_ADDRESS)
    quiet_end = quiet_until(prefs, zone, now)
    if quiet_end is not None:
        if quiet_end < reminder.window_end:
            return Decision("defer", until=quiet_end)
        return Decision("skip", SKIPPED_QUIET_HOURS)
    return Decision("send", SENT)


def follow_up_of(reminder: Reminder, sent_at: datetime, policy: Policy = Policy()) -> Reminder | None:
    """The one follow-up of a first reminder just sent, or None (a follow-up has none, and a
    window too short for one gets none)."""
    if reminder.follow_up:
        return None
    start = reminder.due_at  # the due time it was sent at (after any quiet hours)
    at = start + (reminder.window_end - start) / 2
    at = max(at, sent_at + policy.follow_up_gap)
    if at > reminder.window_end - policy.follow_up_margin:
        return None
    return replace(reminder, id=None, follow_up=True, due_at=at, attempts=0)


def window_outcome(received: bool) -> str:
    """The outcome of a sent reminder once its window closed."""
    return READING_AFTER if received else NO_READING


def received_for(plan: CarePlan, reminder: Reminder, readings: Sequence[datetime]) -> tuple[bool, bool]:
    """(received, scheduled) for a reminder under the patient's current plan."""
    s = schedule_of(plan, reminder.schedule_key)
    if s is None:
        return False, False
    return satisfied(s, plan.zone, reminder.slot_key, readings), True
