"""The leader derives its jobs from the sessions: a new leader makes up, once, what no leader
ran while there was none, and then keeps to the sessions' own timetable."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.app.sessions import DeployService
from bot.config.loader import load_config
from bot.domain import SessionState
from bot.storage.models import ProbeRunRow, ScheduleSlotRow
from bot.workers.jobs import current_slot
from bot.workers.leader import FileLock, LeaderLock, leader_lock_for
from bot.workers.scheduler import ScheduleRunner
from tests.test_scheduler import make_context, monitoring_session, write_config


def test_an_interval_trigger_started_in_the_past_skips_the_slot_now_due() -> None:
    """Why the runner computes the current slot itself: APScheduler goes to the next one."""
    now = datetime.now(UTC)
    start = now - timedelta(hours=1, seconds=10)  # slot 1 came due 10 s ago
    trigger = IntervalTrigger(hours=1, start_date=start)
    assert trigger.get_next_fire_time(None, now) == start + timedelta(hours=2)


def test_current_slot_counts_a_run_a_hair_early_as_its_slot() -> None:
    start, hour = datetime(2026, 11, 23, 12, tzinfo=UTC), timedelta(hours=1)
    assert current_slot(start, hour, start + hour - timedelta(microseconds=1)) == 1
    assert current_slot(start, hour, start + hour) == 1
    assert current_slot(start, hour, start + 2 * hour - timedelta(seconds=2)) == 1
    assert current_slot(start, hour, start + timedelta(minutes=10)) == 0
    assert current_slot(start, timedelta(seconds=1), start + timedelta(seconds=0.95)) == 1


def lock_for(database_url: str, tmp_path: Path) -> LeaderLock:
    if database_url.startswith("sqlite"):
        return FileLock(tmp_path / "leader.lock")
    return leader_lock_for(database_url)


@pytest.fixture
def start_leader(
    database_url: str, tmp_path: Path
) -> Iterator[Callable[[sessionmaker[Session], Path], ScheduleRunner]]:
    """Starts a runner that will lead (nobody else competes) and stops it afterwards."""
    runners: list[ScheduleRunner] = []

    def start(factory: sessionmaker[Session], config: Path) -> ScheduleRunner:
        _, context = make_context(config, factory)
        runner = ScheduleRunner(
            context=context, lock=lock_for(database_url, tmp_path), poll=0.1, sync_every=0.3
        )
        runners.append(runner)
        runner.start()
        return runner

    yield start
    for runner in runners:
        runner.stop()


def service_at(config: Path, factory: sessionmaker[Session], at: datetime) -> DeployService:
    """A service whose clock stands at ``at``: sessions opened and watched in the past."""
    return DeployService(config=load_config(config), session_factory=factory, clock=lambda: at)


def fired(factory: sessionmaker[Session], sid: int) -> list[tuple[str, int]]:
    with factory() as db:
        rows = db.execute(
            select(ScheduleSlotRow.job, ScheduleSlotRow.slot)
            .where(ScheduleSlotRow.session_id == sid)
            .order_by(ScheduleSlotRow.job, ScheduleSlotRow.slot)
        ).all()
    return [(job, slot) for job, slot in rows]


def probe_runs(factory: sessionmaker[Session], sid: int) -> int:
    with factory() as db:
        return len(db.scalars(select(ProbeRunRow.id).where(ProbeRunRow.session_id == sid)).all())


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_a_slot_missed_while_nobody_led_fires_once_then_the_timetable_goes_on(
    database_url: str,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    start_leader: Callable[[sessionmaker[Session], Path], ScheduleRunner],
) -> None:
    config = write_config(tmp_path, monitoring="every 1h for 3h", expire_after="1d")
    since = datetime.now(UTC) - timedelta(hours=1, seconds=10)  # round 1 came due 10 s ago
    sid = monitoring_session(service_at(config, session_factory, since))

    runner = start_leader(session_factory, config)
    wait_until(lambda: ("monitor", 1) in fired(session_factory, sid), "round 1 is made up")
    wait_until(lambda: probe_runs(session_factory, sid) == 1, "round 1 runs the probes")
    time.sleep(1.2)  # several syncs: none of them runs round 1 again
    assert fired(session_factory, sid) == [("monitor", 1)]
    assert probe_runs(session_factory, sid) == 1
    assert runner.scheduler is not None
    job = runner.scheduler.get_job(f"monitor:{sid}", jobstore="default")
    assert job.next_run_time == since + timedelta(hours=2)  # back on the session's timetable


def test_a_new_leader_after_the_whole_watch_runs_the_last_round_and_completes(
    database_url: str,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    start_leader: Callable[[sessionmaker[Session], Path], ScheduleRunner],
) -> None:
    config = write_config(tmp_path, monitoring="every 1h for 2h", expire_after="1d")
    sid = monitoring_session(
        service_at(config, session_factory, datetime.now(UTC) - timedelta(hours=5))
    )
    service, _ = make_context(config, session_factory)

    runner = start_leader(session_factory, config)
    wait_until(lambda: service.get(sid).state is SessionState.COMPLETED, "the watch ends")
    time.sleep(0.8)  # a sync after completion drops the session's jobs
    assert fired(session_factory, sid) == [("monitor", 2)]  # the last round, once
    assert probe_runs(session_factory, sid) == 1
    assert runner.scheduler is not None
    assert runner.scheduler.get_jobs(jobstore="default") == []


def test_an_expiry_long_past_fires_once_when_a_leader_comes(
    database_url: str,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    start_leader: Callable[[sessionmaker[Session], Path], ScheduleRunner],
) -> None:
    config = write_config(tmp_path)  # expire after 2h, remind after 1h
    opened = datetime.now(UTC) - timedelta(hours=3, minutes=30)
    session = service_at(config, session_factory, opened).open(
        environment="staging", user_id="U0DEPLOYER"
    )
    assert session.id is not None
    service, _ = make_context(config, session_factory)

    start_leader(session_factory, config)
    wait_until(lambda: service.get(session.id).state is SessionState.ABORTED, "it expires")
    assert service.get(session.id).outcome_reason == "expired: open longer than 2:00:00"
    time.sleep(0.8)
    # The reminder that came due is made up once too (as the current slot), or not at all
    # when the expiry closed the session first; nothing fires twice.
    assert fired(session_factory, session.id) in (
        [("expire", 1)],
        [("expire", 1), ("remind", 3)],
    )


def test_a_due_slot_whose_run_never_claimed_it_is_run_again_at_the_next_sync(
    database_url: str, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    from apscheduler.jobstores.memory import MemoryJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    from bot.storage.schedule_slots import claim_slot

    config = write_config(tmp_path, monitoring="every 1h for 3h", expire_after="1d")
    since = datetime.now(UTC) - timedelta(hours=1, seconds=10)
    sid = monitoring_session(service_at(config, session_factory, since))
    _, context = make_context(config, session_factory)
    runner = ScheduleRunner(context=context, lock=FileLock(tmp_path / "unused.lock"))
    # A paused scheduler: sync sets the jobs up, nothing runs, each next run time shows.
    scheduler = BackgroundScheduler(jobstores={"default": MemoryJobStore()}, timezone="UTC")
    scheduler.start(paused=True)
    runner.scheduler = scheduler
    try:
        job_id, round_1, round_2 = (
            f"monitor:{sid}",
            since + timedelta(hours=1),
            since + timedelta(hours=2),
        )
        runner.sync()
        assert scheduler.get_job(job_id).next_run_time == round_1  # due: made up at once
        # The run came and went (the scheduler moved on) but failed before it claimed round 1:
        scheduler.modify_job(job_id, next_run_time=round_2)
        runner.sync()
        assert scheduler.get_job(job_id).next_run_time == round_1  # so it is tried again
        # Once round 1 is claimed, the next sync leaves the timetable alone.
        assert claim_slot(session_factory, sid, "monitor", 1, at=datetime.now(UTC))
        scheduler.modify_job(job_id, next_run_time=round_2)
        runner.sync()
        assert scheduler.get_job(job_id).next_run_time == round_2
        assert {j.id for j in scheduler.get_jobs()} == {job_id, f"expire:{sid}"}
    finally:
        scheduler.shutdown(wait=False)
