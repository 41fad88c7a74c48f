"""Is a result's specimen time believable enough to move a patient's state? (pure)

A draw time far in the future (a typo, or 9999-12-31 for "unknown") would become the
patient's latest ANC and push the next due date past any overdue alert; an absurdly old one,
or one from long before therapy started, would re-fold a history it does not belong to.
Such a result is kept and reported (ERR warning, ``data.quality``) but never applied.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

# a draw time without an offset is the sender's local time: allow for any UTC offset
_LOCAL_TIME_SLACK = timedelta(hours=14)


@dataclass(frozen=True, slots=True)
class TimeLimits:
    max_future: timedelta = timedelta(hours=24)
    max_age: timedelta = timedelta(days=365)


def implausible_draw_time(observed_at: datetime, received_at: datetime, limits: TimeLimits, therapy_start: date | None = None, baseline_window_days: int = 30) -> str | None:
    """Why this draw time must not move the state, or None. ``therapy_start`` is given only
    for a patient already on therapy: a result drawn longer than the profile's baseline window
    before it is not a baseline either."""
    received = received_at if received_at.tzinfo else received_at.replace(tzinfo=UTC)
    slack = timedelta(0)
    if observed_at.tzinfo is None:
        observed = observed_at.replace(tzinfo=UTC)
        slack = _LOCAL_TIME_SLACK
    else:
        observed = observed_at
    try:
        if observed > received + limits.max_future + slack:
            return f"specimen time is more than {_hours(limits.max_future)} after the message was received: result not applied"
        if observed < received - limits.max_age - slack:
            return f"specimen time is more than {limits.max_age.days} days before the message was received: result not applied"
    except OverflowError:  # a date at the very edge of the calendar
        return "specimen time is out of range: result not applied"
    if therapy_start is not None and observed_at.date() < therapy_start - timedelta(days=baseline_window_days):
        return f"specimen drawn more than {baseline_window_days} days before therapy start: result not applied"
    return None


def _hours(d: timedelta) -> str:
    h = d.total_seconds() / 3600
    return f"{h:g} hours"
