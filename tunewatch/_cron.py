"""Cron expressions read as crontab(5) reads them, for APScheduler 3.

APScheduler 3's ``CronTrigger.from_crontab`` numbers the days of the week from Monday = 0,
so crontab's ``0`` (Sunday) fires on Mondays and ``7`` (Sunday too) is refused. This module
turns the day-of-week field into names before APScheduler sees it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger

_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# One Gregorian cycle (400 years, a whole number of weeks): the calendar repeats after it,
# so an expression that does not fire within it never fires.
_CYCLE_START = datetime(2000, 1, 1, tzinfo=UTC)
_CYCLE_END = datetime(2401, 1, 1, tzinfo=UTC)


def crontab_trigger(expr: str) -> BaseTrigger:
    """The trigger of a 5-field crontab expression (minute hour day month day-of-week), in
    UTC; raises ``ValueError`` naming the field and the rule. As in crontab, when both
    day fields are restricted — neither starts with ``*``, so ``*/2`` is unrestricted — a
    day matching either fires (APScheduler wants both); otherwise both must match. An
    expression that never fires (``0 3 30 2 *``) is refused: APScheduler would add its
    job paused, with no next run time."""
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(
            f"a cron expression has 5 fields (minute hour day month day-of-week), "
            f"got {len(fields)} in {expr!r}"
        )
    minute, hour, day, month, weekday = fields
    spec = {
        "minute": minute,
        "hour": hour,
        "day": day,
        "month": month,
        "day_of_week": _weekdays(weekday),
    }
    for name, value in spec.items():  # one at a time, so that an error names its field
        try:
            CronTrigger(**{name: value}, timezone=UTC)
        except ValueError as exc:
            raise ValueError(f"{name.replace('_', ' ')}: {exc} in {expr!r}") from exc
    if not day.startswith(("*", "?")) and not weekday.startswith(("*", "?")):
        # a day of the week fires in every month, so the OR of the two always fires
        by_date = {**spec, "day_of_week": "*"}
        by_weekday = {**spec, "day": "*"}
        return OrTrigger(
            [CronTrigger(**by_date, timezone=UTC), CronTrigger(**by_weekday, timezone=UTC)]
        )
    probe = CronTrigger(**spec, timezone=UTC, start_date=_CYCLE_START, end_date=_CYCLE_END)
    if probe.get_next_fire_time(None, _CYCLE_START) is None:  # a few ms: 400 years of months
        raise ValueError(
            f"{expr!r} never fires: no month it names ({month!r}) has a day of the month "
            f"{day!r} (February has at most 29 days; April, June, September and November "
            "30)"
        )
    return CronTrigger(**spec, timezone=UTC)


def _weekdays(field: str) -> str:
    """crontab's day-of-week field (0–7, both Sunday; names; lists, ranges, steps) as
    APScheduler's comma-separated day names."""
    if field in {"*", "?"}:
        return "*"
    days: set[int] = set()
    for part in field.lower().split(","):
        span, slash, step_text = part.partition("/")
        step = _number(step_text, field) if slash else 1
        if step < 1:
            raise ValueError(f"day of the week: a step must be >= 1, got {field!r}")
        if span == "*":
            first, last = 0, 6
        elif "-" in span:
            a, b = span.split("-", 1)
            first, last = _day(a, field), _day(b, field)
            if b == "sun" and first > 0:
                last = 7  # "fri-sun" ends on the Sunday after, as 5-7 does
        else:
            first = _day(span, field)
            last = 7 if slash else first
        if first > last:
            raise ValueError(f"day of the week: range {span!r} runs backwards in {field!r}")
        days.update(d % 7 for d in range(first, last + 1, step))
    return ",".join(_DAYS[d] for d in sorted(days))


def _day(token: str, field: str) -> int:
    if token in _DAYS:
        return _DAYS.index(token)
    n = _number(token, field)
    if n > 7:
        raise ValueError(f"day of the week: {n} is not in 0-7 (0 and 7 are Sunday) in {field!r}")
    return n


def _number(token: str, field: str) -> int:
    if not (token.isascii() and token.isdigit()):
        raise ValueError(
            f"day of the week: {token!r} is neither 0-7 nor a day name "
            f"({', '.join(_DAYS)}) in {field!r}"
        )
    return int(token)
