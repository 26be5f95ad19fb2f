"""Change freezes as the configuration writes them, and the windows they make.

A recurring freeze is an iCalendar recurrence rule read on the wall clock of its time zone
(``FREQ=WEEKLY;BYDAY=FR;BYHOUR=15`` starts at 15:00 Berlin time in summer and in winter)
and lasts ``duration`` on that wall clock (66h from Friday 15:00 ends Monday 09:00 local).
A one-off freeze runs ``from`` ``until``.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import dateutil.rrule
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    model_validator,
)
from pydantic_core import PydanticCustomError

from bot.config.probe_specs import Duration
from bot.domain.freeze import FreezeWindow

# Recurrences count from here (a Monday), unless the rule says otherwise: a fixed anchor
# keeps ``INTERVAL=2`` on the same weeks whenever the bot starts.
ANCHOR = datetime(2024, 1, 1)
HOUR = timedelta(hours=1)


def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise PydanticCustomError(
            "timezone", "unknown time zone '{value}': write e.g. 'Europe/Berlin'", {"value": name}
        ) from None
    return name


TimeZone = Annotated[str, AfterValidator(_zone)]


class FreezeBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    reason: str = ""
    timezone: TimeZone = "UTC"

    def windows(self, after: datetime) -> Iterator[FreezeWindow]:
        """The windows still running or starting at or after ``after``, in order."""
        raise NotImplementedError


class RecurringFreeze(FreezeBase):
    """``rrule`` (RFC 5545, without ``DTSTART``) on the wall clock of ``timezone``."""

    rrule: str = Field(min_length=1)
    duration: Duration

    @model_validator(mode="after")
    def _parses(self) -> RecurringFreeze:
        try:
            self.rule()
        except (ValueError, TypeError) as error:
            raise PydanticCustomError(
                "rrule", "bad rrule '{value}': {error}", {"value": self.rrule, "error": str(error)}
            ) from None
        return self

    def rule(self) -> dateutil.rrule.rrule:
        start = ANCHOR.replace(tzinfo=ZoneInfo(self.timezone))
        rule = dateutil.rrule.rrulestr(self.rrule, dtstart=start)
        if not isinstance(rule, dateutil.rrule.rrule):
            raise ValueError("write one RRULE, not a set")
        return rule

    def windows(self, after: datetime) -> Iterator[FreezeWindow]:
        # Starting after ``after - duration`` (less a DST hour): running then, or to come.
        for local in self.rule().xafter(after - self.duration - HOUR, inc=False):
            # On the wall clock (aware + timedelta keeps the zone): Friday 15:00 + 66h ends
            # Monday 09:00 local even when a DST change falls in between.
            begin, end = local.astimezone(UTC), (local + self.duration).astimezone(UTC)
            if end > after:
                yield FreezeWindow(begin, end, self.reason, self.timezone)


class OneOffFreeze(FreezeBase):
    """``from``/``until``: with an offset (``2026-11-27T00:00+01:00``), or read in
    ``timezone`` when written without one."""

    from_: datetime = Field(alias="from")
    until: datetime

    @model_validator(mode="after")
    def _ordered(self) -> OneOffFreeze:
        if self.ends <= self.starts:
            raise PydanticCustomError("freeze", "'until' must be after 'from'")
        return self

    @property
    def starts(self) -> datetime:
        return self._aware(self.from_)

    @property
    def ends(self) -> datetime:
        return self._aware(self.until)

    def _aware(self, at: datetime) -> datetime:
        if at.tzinfo is None:
            at = at.replace(tzinfo=ZoneInfo(self.timezone))
        return at.astimezone(UTC)

    def windows(self, after: datetime) -> Iterator[FreezeWindow]:
        if self.ends > after:
            yield FreezeWindow(self.starts, self.ends, self.reason, self.timezone)


def _kind(data: Any) -> str:
    fields = data if isinstance(data, dict) else vars(data)
    return "recurring" if "rrule" in fields else "one-off"


Freeze = Annotated[
    Annotated[RecurringFreeze, Tag("recurring")] | Annotated[OneOffFreeze, Tag("one-off")],
    Discriminator(_kind),
]
"""A freeze window: recurring when it has an ``rrule``, otherwise one-off."""


def windows(freezes: Iterable[FreezeBase], after: datetime) -> Iterator[FreezeWindow]:
    """Every freeze's windows still running or to come after ``after``, by start."""
    return heapq.merge(*(f.windows(after) for f in freezes), key=lambda w: (w.starts, w.ends))


def freeze_at(freezes: Iterable[FreezeBase], at: datetime) -> FreezeWindow | None:
    """The window in force at ``at`` (the one ending last, when they overlap)."""
    running = itertools.takewhile(lambda w: w.starts <= at, windows(freezes, at))
    return max(running, key=lambda w: w.ends, default=None)


def upcoming(freezes: Iterable[FreezeBase], at: datetime, count: int = 3) -> list[FreezeWindow]:
    """The window in force at ``at`` (if any) and the next ``count`` to start."""
    found: list[FreezeWindow] = []
    for window in windows(freezes, at):
        if window.starts > at and sum(w.starts > at for w in found) >= count:
            break
        found.append(window)
    return found
