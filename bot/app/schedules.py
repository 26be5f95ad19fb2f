"""A session's timetable: when its expiry, next reminder and next monitoring round are due.

Each job of a session is a chain of ``schedule`` outbox rows, one armed at a time, due at
the job's next slot: the expiry is armed with the session's opening, the first reminder too,
the first monitoring round with the watch's start, each in the same transaction as the
change that calls for it. Any replica's worker delivers a row when it comes due
(:meth:`bot.workers.jobs.Jobs.deliver`), which runs the job (claiming its slot, so nothing
fires twice) and arms the next slot. Nothing polls the sessions: an idle installation asks
the outbox one indexed question per poll, however many sessions are open.

The times are derived from the config and the session's timestamps when a row is armed and
again when it is delivered, so a row that comes due early (the config lengthened a
schedule) waits, and one whose slot passed while no replica ran makes it up once.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.config.schema import Config
from bot.storage.outbox import arm
from bot.storage.schedule_slots import OpenSession
from bot.storage.uow import UnitOfWork

TOPIC = "schedule"
JOBS = ("expire", "remind", "monitor", "retro")
RETRO_EVERY = timedelta(hours=24)  # an owed retrospective's reminders without `reminders:`

# How early a run may come and still count as its slot: replicas' clocks differ a little,
# and timers wake a hair early now and then.
SLOT_TOLERANCE = timedelta(seconds=1)


def current_slot(start: datetime, every: timedelta, now: datetime) -> int:
    """The slot a schedule is in at ``now``: slot k comes due at ``start + k * every``."""
    tolerance = min(SLOT_TOLERANCE, every / 10)
    return (now - start + tolerance) // every


def monitoring_rounds(every: timedelta, window: timedelta) -> int:
    """How many monitoring rounds a watch has ("every 5m for 1h": 12); the last completes."""
    return max(1, window // every)


@dataclass(frozen=True)
class Occurrence:
    """The slot of a session's job to run next, and when it comes due."""

    job: str
    session_id: int
    slot: int
    due: datetime
    anchor: datetime  # the session's opening, or the watch's start

    @property
    def key(self) -> str:
        """Unique per slot (and per watch: a second watch numbers its rounds anew)."""
        if self.job == "monitor":
            return f"monitor:{self.session_id}:{self.anchor.timestamp():.6f}:{self.slot}"
        return f"{self.job}:{self.session_id}:{self.slot}"

    def is_due(self, now: datetime) -> bool:
        return self.due <= now + SLOT_TOLERANCE

    def row(self) -> dict[str, object]:
        payload = {"job": self.job, "session_id": self.session_id, "key": self.key}
        return {
            "topic": TOPIC,
            "key": self.key,
            "payload": payload,
            "session_id": self.session_id,
            "due": self.due,
        }


def next_occurrence(
    config: Config, session: OpenSession, job: str, now: datetime
) -> Occurrence | None:
    """The slot of ``job`` to run next: the current one if it came due and is not claimed,
    else the one after; None when the job has nothing more to run for the session."""
    env = config.environments.get(session.environment)
    if env is None:
        return None
    claimed, sid = session.claimed.get(job, 0), session.id
    if job == "expire":
        if claimed or session.state not in ACTIVE_STATES:
            return None
        opened = session.opened_at
        return Occurrence(job, sid, 1, opened + env.expire_after, opened)
    if job == "remind":
        reminders = env.reminders
        if not reminders or session.state != "open" or claimed >= reminders.max:
            return None
        start = reminder_start(session.opened_at, reminders.after, reminders.interval)
        every = reminders.interval
        return _next_slot(job, sid, start, every, now, claimed, last=reminders.max)
    if job == "retro":
        if not session.owes_retrospective:
            return None
        every = env.reminders.interval if env.reminders else RETRO_EVERY
        return _next_slot(job, sid, session.opened_at, every, now, claimed)
    if job == "monitor":
        since = session.monitoring_since
        if not env.monitoring or session.state != "monitoring" or since is None:
            return None
        every = env.monitoring.every
        last = monitoring_rounds(every, env.monitoring.for_)
        if claimed >= last:
            return None
        return _next_slot(job, sid, since, every, now, claimed, last=last)
    raise ValueError(f"unknown scheduled job {job!r}")


def reminder_start(opened: datetime, after: timedelta, every: timedelta) -> datetime:
    """The anchor of a session's reminders: slot 1 comes due ``after`` its opening, each
    next one ``every`` later."""
    return opened + after - every


# Expire applies in these (see bot.domain.transitions); closed sessions expire no more.
ACTIVE_STATES = frozenset({"open", "deploying", "verifying", "monitoring"})


def _next_slot(
    job: str,
    sid: int,
    start: datetime,
    every: timedelta,
    now: datetime,
    claimed: int,
    *,
    last: int | None = None,
) -> Occurrence:
    slot = current_slot(start, every, now)
    if last is not None:
        slot = min(slot, last)
    # The current slot if it came due unclaimed (made up once, now); else the next one.
    wanted = slot if slot >= 1 and slot > claimed else max(slot, claimed) + 1
    return Occurrence(job, sid, wanted, start + every * wanted, start)


def timetable(
    config: Config, sessions: Iterable[OpenSession], now: datetime, jobs: Collection[str] = JOBS
) -> list[Occurrence]:
    """The occurrences the sessions call for now, one per session and job at most."""
    found = (next_occurrence(config, s, job, now) for s in sessions for job in jobs)
    return [occurrence for occurrence in found if occurrence is not None]


def schedule(uow: UnitOfWork, occurrences: Collection[Occurrence], *, at: datetime) -> None:
    """Arm the occurrences in ``uow``'s transaction (idempotent: a slot is armed once)."""
    if occurrences:
        arm(uow.db, [o.row() for o in occurrences], at=at)
