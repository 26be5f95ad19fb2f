"""Sessions' schedules as outbox rows: a slot that came due while no replica ran is made up,
once, and then the session's own timetable goes on; a run that failed is tried again; a row
delivered twice fires once."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.app.sessions import DeployService
from bot.config.loader import load_config
from bot.domain import SessionState
from bot.storage.models import ProbeRunRow, ScheduleSlotRow
from bot.workers.jobs import Jobs, current_slot
from bot.workers.outbox import OutboxWorker
from tests.test_scheduler import (
    make_context,
    monitoring_session,
    pending_schedule,
    schedule_worker,
    write_config,
)


def test_current_slot_counts_a_run_a_hair_early_as_its_slot() -> None:
    start, hour = datetime(2026, 11, 23, 12, tzinfo=UTC), timedelta(hours=1)
    assert current_slot(start, hour, start + hour - timedelta(microseconds=1)) == 1
    assert current_slot(start, hour, start + hour) == 1
    assert current_slot(start, hour, start + 2 * hour - timedelta(seconds=2)) == 1
    assert current_slot(start, hour, start + timedelta(minutes=10)) == 0
    assert current_slot(start, timedelta(seconds=1), start + timedelta(seconds=0.95)) == 1


@pytest.fixture
def start_worker() -> Iterator[Callable[[sessionmaker[Session], Path], OutboxWorker]]:
    """Starts a replica's schedule worker and stops it afterwards."""
    workers: list[OutboxWorker] = []

    def start(factory: sessionmaker[Session], config: Path) -> OutboxWorker:
        worker = schedule_worker(make_context(config, factory)[1])
        workers.append(worker)
        worker.start()
        return worker

    yield start
    for worker in workers:
        worker.stop()


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


def test_a_slot_missed_while_nobody_ran_fires_once_then_the_timetable_goes_on(
    database_url: str,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    start_worker: Callable[[sessionmaker[Session], Path], OutboxWorker],
) -> None:
    config = write_config(tmp_path, monitoring="every 1h for 3h", expire_after="1d")
    since = datetime.now(UTC) - timedelta(hours=1, seconds=10)  # round 1 came due 10 s ago
    sid = monitoring_session(service_at(config, session_factory, since))

    start_worker(session_factory, config)
    wait_until(lambda: ("monitor", 1) in fired(session_factory, sid), "round 1 is made up")
    wait_until(lambda: probe_runs(session_factory, sid) == 1, "round 1 runs the probes")
    time.sleep(0.4)  # several polls (every 0.1 s): none of them runs round 1 again
    assert fired(session_factory, sid) == [("monitor", 1)]
    assert probe_runs(session_factory, sid) == 1
    monitor = [(k, due) for k, due in pending_schedule(session_factory, sid) if "monitor" in k]
    assert monitor == [  # back on the session's timetable: round 2, one row
        (f"monitor:{sid}:{since.timestamp():.6f}:2", since + timedelta(hours=2))
    ]


def test_a_worker_after_the_whole_watch_runs_the_last_round_and_completes(
    database_url: str,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    start_worker: Callable[[sessionmaker[Session], Path], OutboxWorker],
) -> None:
    config = write_config(tmp_path, monitoring="every 1h for 2h", expire_after="1d")
    sid = monitoring_session(
        service_at(config, session_factory, datetime.now(UTC) - timedelta(hours=5))
    )
    service, _ = make_context(config, session_factory)

    start_worker(session_factory, config)
    wait_until(lambda: service.get(sid).state is SessionState.COMPLETED, "the watch ends")
    time.sleep(0.4)  # several polls (every 0.1 s)
    assert fired(session_factory, sid) == [("monitor", 2)]  # the last round, once
    assert probe_runs(session_factory, sid) == 1
    assert not [k for k, _ in pending_schedule(session_factory, sid) if "monitor" in k]


def test_an_expiry_long_past_fires_once_when_a_worker_comes(
    database_url: str,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    start_worker: Callable[[sessionmaker[Session], Path], OutboxWorker],
) -> None:
    config = write_config(tmp_path)  # expire after 2h, remind after 1h
    opened = datetime.now(UTC) - timedelta(hours=3, minutes=30)
    session = service_at(config, session_factory, opened).open(
        environment="staging", user_id="U0DEPLOYER"
    )
    assert session.id is not None
    service, _ = make_context(config, session_factory)

    start_worker(session_factory, config)
    start_worker(session_factory, config)  # a second replica: still once
    wait_until(lambda: service.get(session.id).state is SessionState.ABORTED, "it expires")
    assert service.get(session.id).outcome_reason == "expired: open longer than 2:00:00"
    time.sleep(0.4)  # several polls (every 0.1 s)
    # The reminder that came due is made up once too (as the current slot), or not at all
    # when the expiry closed the session first; nothing fires twice.
    assert fired(session_factory, session.id) in (
        [("expire", 1)],
        [("expire", 1), ("remind", 3)],
    )
    assert pending_schedule(session_factory, session.id) == []  # the chains ended


def test_a_run_that_failed_before_claiming_its_slot_is_tried_again(
    database_url: str,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path, monitoring="every 1h for 3h", expire_after="1d")
    since = datetime.now(UTC) - timedelta(hours=1, seconds=10)
    sid = monitoring_session(service_at(config, session_factory, since))
    _, context = make_context(config, session_factory)
    failures = [RuntimeError("the database went away")]

    class Flaky(Jobs):
        def monitor(self, *args: object) -> None:  # type: ignore[override]
            if failures:
                raise failures.pop()
            super().monitor(*args)  # type: ignore[arg-type]

    worker = OutboxWorker(
        session_factory, {"schedule": Flaky(context).deliver}, poll_interval=0.1, backoff_base=0.1
    )
    worker.start()
    try:
        wait_until(lambda: probe_runs(session_factory, sid) == 1, "round 1 runs on a retry")
        time.sleep(0.3)
        assert not failures
        assert fired(session_factory, sid) == [("monitor", 1)]
        assert probe_runs(session_factory, sid) == 1
    finally:
        worker.stop()


def test_a_row_delivered_twice_fires_its_slot_once_and_arms_the_next_once(
    database_url: str, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    config = write_config(tmp_path, monitoring="every 1h for 3h", expire_after="1d")
    since = datetime.now(UTC) - timedelta(hours=1, seconds=10)
    sid = monitoring_session(service_at(config, session_factory, since))
    _, context = make_context(config, session_factory)
    ((key, _),) = [(k, d) for k, d in pending_schedule(session_factory, sid) if "monitor" in k]
    payload = {"job": "monitor", "session_id": sid, "key": key}
    jobs = Jobs(context)
    jobs.deliver(dict(payload))
    jobs.deliver(dict(payload))  # at least once: the lease ran out, another replica took it
    assert fired(session_factory, sid) == [("monitor", 1)]
    assert probe_runs(session_factory, sid) == 1
    monitor = [k for k, _ in pending_schedule(session_factory, sid) if "monitor" in k]
    assert monitor == [key, key.rsplit(":", 1)[0] + ":2"]  # this row is not marked here
