"""Runs APScheduler on the leader replica and keeps its jobs in step with the sessions.

Sessions are the source of truth: a sync job (every few seconds, in memory) makes sure each
open session has its persistent jobs (expiry, reminders, monitoring) and drops the jobs of
sessions that no longer need them. Persistent jobs live in the database through APScheduler's
SQLAlchemyJobStore, so a new leader picks up the next run times where the old one left them.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine

from bot.domain import DeploySession, SessionState
from bot.workers import jobs
from bot.workers.leader import LeaderLock, describe

log = logging.getLogger(__name__)

PERSISTENT = "default"
LOCAL = "local"


class ScheduleRunner:
    """Tries for the leader lock every ``poll`` seconds; while held, runs the scheduler."""

    def __init__(
        self,
        *,
        context: jobs.JobContext,
        engine: Engine,
        lock: LeaderLock,
        poll: float = 2.0,
        sync_every: float = 5.0,
    ) -> None:
        self.context = context
        self.engine = engine
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
        jobs.context = self.context
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
            jobstores={PERSISTENT: SQLAlchemyJobStore(engine=self.engine), LOCAL: MemoryJobStore()},
            executors={"default": ThreadPoolExecutor(4)},
            # A run missed while no replica led is made up once, not once per missed slot.
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300},
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
            jobs.housekeeping, IntervalTrigger(hours=1), id="housekeeping", jobstore=LOCAL
        )
        scheduler.start()
        self.scheduler = scheduler
        log.warning("became the scheduler leader (%s)", describe(self.lock))

    def _step_down(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None
            log.warning("stopped leading the scheduler")

    def sync(self) -> None:
        """Add missing jobs for open sessions; remove jobs nobody needs any more."""
        scheduler = self.scheduler
        if scheduler is None:
            return
        wanted: dict[str, tuple[object, object, list[object]]] = {}
        sessions = self.context.service.list_open()
        for session in sessions:
            wanted.update(self._jobs_for(session))
        for job in scheduler.get_jobs(jobstore=PERSISTENT):
            if job.id not in wanted:
                job.remove()
        for job_id, (func, trigger, args) in wanted.items():
            if scheduler.get_job(job_id, jobstore=PERSISTENT) is None:
                scheduler.add_job(func, trigger, args=args, id=job_id, jobstore=PERSISTENT)

    def _jobs_for(self, session: DeploySession) -> dict[str, tuple[object, object, list[object]]]:
        assert session.id is not None
        sid, env = session.id, self.context.config.environment(session.environment)
        found: dict[str, tuple[object, object, list[object]]] = {}
        after = env.expire_after.total_seconds()
        found[f"expire:{sid}"] = (
            jobs.expire,
            DateTrigger(run_date=session.opened_at + env.expire_after),
            [sid, after],
        )
        if env.reminders and session.state is SessionState.OPEN and session.missing_signoffs():
            every = env.reminders.after
            trigger = IntervalTrigger(
                seconds=every.total_seconds(), start_date=session.opened_at + every
            )
            found[f"remind:{sid}"] = (
                jobs.remind,
                trigger,
                [sid, session.opened_at.isoformat(), every.total_seconds()],
            )
        if env.monitoring and session.state is SessionState.MONITORING:
            since = self._monitoring_since(sid) or session.opened_at
            every, window = env.monitoring.every, env.monitoring.for_
            trigger = IntervalTrigger(
                seconds=every.total_seconds(),
                start_date=since + every,
                end_date=since + window + timedelta(seconds=1),
            )
            found[f"monitor:{sid}"] = (
                jobs.monitor,
                trigger,
                [sid, since.isoformat(), every.total_seconds(), window.total_seconds()],
            )
        return found

    def _monitoring_since(self, session_id: int) -> datetime | None:
        history = self.context.service.history(session_id)
        started = [e.at for e in history if e.kind == "monitoring_started"]
        return started[-1] if started else None
