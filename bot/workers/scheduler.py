"""Runs APScheduler on the leader replica and keeps its jobs in step with the sessions.

Nothing of the schedule is stored but the sessions and the slots that fired. At every sync (a
few seconds apart) the leader derives each open session's jobs (expiry, reminders,
monitoring) from the config and the session's timestamps (``opened_at``, the
``monitoring_started`` audit time), and adds, replaces or drops jobs in an in-memory job
store to match. The jobs are bound methods of :class:`~bot.workers.jobs.Jobs`: nothing is
pickled, and nothing is kept in a module global.

A new leader (after a crash, or a handover) derives the same schedule. ``schedule_slots``
keeps a slot that already fired from firing again, and a slot that came due while no
replica led (or whose run failed before it claimed it) is made up at the next sync, once,
as the current slot: APScheduler's own ``IntervalTrigger`` would skip it, since it starts
from the next slot after ``now``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.domain import DeploySession, SessionState
from bot.storage.uow import UnitOfWork
from bot.workers.jobs import JobContext, Jobs, current_slot, monitoring_rounds
from bot.workers.leader import LeaderLock, describe

log = logging.getLogger(__name__)

SESSIONS = "default"  # the sessions' jobs, derived at every sync
LOCAL = "local"  # the runner's own: sync and housekeeping

# A due, unclaimed slot of a job already scheduled is made up only this long after it came
# due: by then its own run has claimed it unless that run never came or failed.
CATCH_UP_AFTER = timedelta(seconds=2)


@dataclass(frozen=True)
class WantedJob:
    """A session's job as the sessions call for it now."""

    func: Callable[..., object]
    trigger: BaseTrigger
    args: tuple[object, ...]
    due: datetime | None = None  # a slot that came due and is not claimed: run it now


class ScheduleRunner:
    """Tries for the leader lock every ``poll`` seconds; while held, runs the scheduler.

    Args:
        context: what the jobs need at run time.
        lock: the installation's leader lock (:func:`bot.workers.leader.leader_lock_for`).
        poll: seconds between tries for the lock (and checks that it is still held).
        sync_every: seconds between syncs of the jobs with the sessions.
    """

    def __init__(
        self,
        *,
        context: JobContext,
        lock: LeaderLock,
        poll: float = 2.0,
        sync_every: float = 5.0,
    ) -> None:
        self.context = context
        self.jobs = Jobs(context)
        self.lock = lock
        self.poll = poll
        self.sync_every = sync_every
        self.scheduler: BackgroundScheduler | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="schedule-leader", daemon=True)

    @property
    def leading(self) -> bool:
        return self.scheduler is not None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._step_down()
        self.lock.release()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if self.scheduler is None and self.lock.try_acquire():
                    self._lead()
                elif self.scheduler is not None and not self.lock.still_held():
                    self._step_down()
            except Exception:  # the database may be briefly away: try again next poll
                log.exception("leader election failed; retrying")
            self._stop.wait(self.poll)

    def _lead(self) -> None:
        scheduler = BackgroundScheduler(
            jobstores={SESSIONS: MemoryJobStore(), LOCAL: MemoryJobStore()},
            executors={"default": ThreadPoolExecutor(4)},
            # Claimed slots decide what runs: a late run is still wanted (no misfire grace),
            # and runs missed while the executor was busy are made up once (coalesce).
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone="UTC",
        )
        scheduler.add_job(
            self.sync,
            IntervalTrigger(seconds=self.sync_every),
            id="sync",
            jobstore=LOCAL,
            next_run_time=datetime.now(UTC),
        )
        scheduler.add_job(
            self.jobs.housekeeping, IntervalTrigger(hours=1), id="housekeeping", jobstore=LOCAL
        )
        scheduler.start()
        self.scheduler = scheduler
        log.info("became the scheduler leader (%s)", describe(self.lock))

    def _step_down(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None
            log.info("stopped leading the scheduler")

    def sync(self) -> None:
        """Make the scheduled jobs those the open sessions call for now."""
        scheduler = self.scheduler
        if scheduler is None:
            return
        sessions = self.context.service.list_open()
        with UnitOfWork(self.context.session_factory) as uow:
            fired = uow.schedule_slots.latest([s.id for s in sessions if s.id is not None])
        now = self.context.clock()
        wanted: dict[str, WantedJob] = {}
        for session in sessions:
            wanted.update(self._jobs_for(session, fired, now))
        for job in scheduler.get_jobs(jobstore=SESSIONS):
            if job.id not in wanted:
                job.remove()
        for job_id, want in wanted.items():
            job = scheduler.get_job(job_id, jobstore=SESSIONS)
            if job is None or tuple(job.args) != want.args:
                extra = {} if want.due is None else {"next_run_time": want.due}
                scheduler.add_job(
                    want.func,
                    want.trigger,
                    args=want.args,
                    id=job_id,
                    jobstore=SESSIONS,
                    replace_existing=True,
                    **extra,
                )
            elif (
                want.due is not None
                and want.due <= now - CATCH_UP_AFTER
                and (job.next_run_time is None or job.next_run_time > want.due)
            ):
                job.modify(next_run_time=want.due)

    def _jobs_for(
        self, session: DeploySession, fired: dict[tuple[int, str], int], now: datetime
    ) -> dict[str, WantedJob]:
        assert session.id is not None
        sid, env = session.id, self.context.config.environment(session.environment)
        found: dict[str, WantedJob] = {}
        if (sid, "expire") not in fired:  # a run date in the past runs at once
            found[f"expire:{sid}"] = WantedJob(
                self.jobs.expire,
                DateTrigger(run_date=session.opened_at + env.expire_after),
                (sid, env.expire_after),
            )
        if env.reminders and session.state is SessionState.OPEN and session.missing_signoffs():
            every, opened = env.reminders.after, session.opened_at
            found[f"remind:{sid}"] = WantedJob(
                self.jobs.remind,
                IntervalTrigger(seconds=every.total_seconds(), start_date=opened + every),
                (sid, opened, every),
                due=_due(opened, every, now, fired.get((sid, "remind"), 0)),
            )
        if env.monitoring and session.state is SessionState.MONITORING:
            since = self._monitoring_since(sid) or session.opened_at
            every, window = env.monitoring.every, env.monitoring.for_
            last = monitoring_rounds(every, window)
            claimed = fired.get((sid, "monitor"), 0)
            if claimed < last:
                # Half a round past the last: run times are floats, the end date is exact.
                trigger = IntervalTrigger(
                    seconds=every.total_seconds(),
                    start_date=since + every,
                    end_date=since + every * last + every / 2,
                )
                found[f"monitor:{sid}"] = WantedJob(
                    self.jobs.monitor,
                    trigger,
                    (sid, since, every, window),
                    due=_due(since, every, now, claimed, last=last),
                )
        return found

    def _monitoring_since(self, session_id: int) -> datetime | None:
        history = self.context.service.history(session_id)
        started = [e.at for e in history if e.kind == "monitoring_started"]
        return started[-1] if started else None


def _due(
    start: datetime, every: timedelta, now: datetime, claimed: int, *, last: int | None = None
) -> datetime | None:
    """When the current slot came due, if it has not been claimed (else None)."""
    slot = current_slot(start, every, now)
    if last is not None:
        slot = min(slot, last)
    if slot < 1 or slot <= claimed:
        return None
    return start + every * slot
