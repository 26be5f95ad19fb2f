"""The leader: housekeeping, and a rare reconcile of the sessions' timetables.

A session's expiry, reminders and monitoring rounds are not polled for: each is a
``schedule`` outbox row armed in the transaction of the change that calls for it, due at
its slot, and delivered by any replica's outbox worker (:mod:`bot.app.schedules`,
:meth:`bot.workers.jobs.Jobs.deliver`). The leader (one replica, by an advisory lock) runs
only what must run once per installation: housekeeping, and :meth:`ScheduleRunner.reconcile`
when it becomes the leader and every ``sync_every`` seconds after (an hour by default),
which arms a row for any open session whose chain lacks one.

``schedule_slots`` keeps a slot that already fired from firing again, and a slot that came
due while no replica ran is made up once, as the current slot, when its row is delivered.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from bot.app.schedules import schedule, timetable
from bot.storage.uow import UnitOfWork
from bot.workers.jobs import JobContext, Jobs
from bot.workers.leader import LeaderLock, describe

log = logging.getLogger(__name__)


class ScheduleRunner:
    """Tries for the leader lock every ``poll`` seconds; while held, runs the scheduler.

    Args:
        context: what the jobs need at run time.
        lock: the installation's leader lock (:func:`bot.workers.leader.leader_lock_for`).
        poll: seconds between tries for the lock (and checks that it is still held).
        sync_every: seconds between reconciles of the open sessions' timetables.
    """

    def __init__(
        self,
        *,
        context: JobContext,
        lock: LeaderLock,
        poll: float = 2.0,
        sync_every: float = 3600.0,
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
            self.tick()
            self._stop.wait(self.poll)

    def tick(self) -> None:
        """One poll: take the lock if free, or step down if it was lost."""
        try:
            if self.scheduler is None and self.lock.try_acquire():
                self._lead()
            elif self.scheduler is not None and not self.lock.still_held():
                self._step_down()
        except Exception:  # the database may be briefly away: try again next poll
            log.exception("leader election failed; retrying")

    def _lead(self) -> None:
        scheduler = BackgroundScheduler(
            jobstores={"default": MemoryJobStore()},
            executors={"default": ThreadPoolExecutor(1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone="UTC",
        )
        scheduler.add_job(
            self.reconcile,
            IntervalTrigger(seconds=self.sync_every),
            id="reconcile",
            next_run_time=datetime.now(UTC),
        )
        scheduler.add_job(self.jobs.housekeeping, IntervalTrigger(hours=1), id="housekeeping")
        scheduler.start()
        self.scheduler = scheduler
        log.info("became the scheduler leader (%s)", describe(self.lock))

    def _step_down(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None
            log.info("stopped leading the scheduler")

    def reconcile(self) -> int:
        """Arm the next slot of every open session's jobs, where none is armed yet.

        A safety net, not the clock: each change arms what it calls for in its own
        transaction. This catches sessions opened before schedules were outbox rows, and a
        schedule the config shortened. Three queries and one insert per 500 rows, whatever
        the number of sessions; returns how many occurrences it armed or confirmed.
        """
        ctx = self.context
        now = ctx.clock()
        with UnitOfWork(ctx.session_factory) as uow:
            wanted = timetable(ctx.config, uow.schedule_slots.open_sessions(), now)
            schedule(uow, wanted, at=now)
            uow.commit()
        return len(wanted)
