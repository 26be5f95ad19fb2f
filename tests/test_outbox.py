"""The outbox on SQLite and PostgreSQL: enqueue in the caller's transaction, deliver, retry."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from bot.storage.db import make_engine, make_sessionmaker
from bot.storage.models import OutboxRow, SessionRow
from bot.storage.outbox import OUTBOX_ID, Outbox, PermanentFailure, RetryAfter
from bot.workers.outbox import OutboxWorker

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Recorder:
    """A handler that records payloads and fails as told (``errors`` are raised in turn)."""

    def __init__(self, *errors: BaseException, delay: float = 0.0) -> None:
        self.payloads: list[dict[str, Any]] = []
        self.errors = list(errors)
        self.delay = delay
        self._lock = threading.Lock()

    def __call__(self, payload: dict[str, Any]) -> None:
        if self.delay:
            time.sleep(self.delay)
        with self._lock:
            self.payloads.append(payload)
            if self.errors:
                raise self.errors.pop(0)

    @property
    def ids(self) -> list[int]:
        with self._lock:
            return [p[OUTBOX_ID] for p in self.payloads]


def enqueue(
    factory: sessionmaker[Session],
    key: str,
    *,
    topic: str = "slack",
    at: datetime = NOW,
    ordering_key: str | None = None,
) -> bool:
    with factory() as db, db.begin():
        return Outbox().enqueue(
            db, topic=topic, key=key, payload={"key": key}, at=at, ordering_key=ordering_key
        )


def rows(factory: sessionmaker[Session]) -> list[OutboxRow]:
    with factory() as db:
        return list(db.scalars(select(OutboxRow).order_by(OutboxRow.id)))


def row(factory: sessionmaker[Session], key: str) -> OutboxRow:
    with factory() as db:
        return db.scalars(select(OutboxRow).where(OutboxRow.idempotency_key == key)).one()


def new_session_row() -> SessionRow:
    return SessionRow(
        environment="prod", service="api", version="v1", requester="U1", state="open",
        is_open=True, checklist={}, policy={}, progress={}, opened_at=NOW,
    )  # fmt: skip


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout} s")
        time.sleep(0.005)


@pytest.fixture
def clock() -> Clock:
    return Clock()


# Enqueue


def test_enqueue_is_idempotent_by_topic_and_key(session_factory: sessionmaker[Session]) -> None:
    assert enqueue(session_factory, "page-1") is True
    with session_factory() as db, db.begin():
        again = Outbox().enqueue(
            db, topic="slack", key="page-1", payload={"other": True}, at=NOW + timedelta(hours=1)
        )
    assert again is False
    assert enqueue(session_factory, "page-1", topic="pagerduty") is True

    stored = rows(session_factory)
    assert [(r.topic, r.idempotency_key, r.payload) for r in stored] == [
        ("slack", "page-1", {"key": "page-1"}),  # the first one, untouched
        ("pagerduty", "page-1", {"key": "page-1"}),
    ]
    first = stored[0]
    assert (first.created_at, first.next_attempt_at) == (NOW, NOW)
    assert (first.attempts, first.delivered_at, first.failed_at, first.last_error) == (
        0, None, None, None,
    )  # fmt: skip


def test_a_duplicate_leaves_the_callers_transaction_usable(
    session_factory: sessionmaker[Session],
) -> None:
    outbox = Outbox()
    with session_factory() as db, db.begin():
        session = new_session_row()
        db.add(session)
        db.flush()
        assert outbox.enqueue(db, topic="slack", key="k", payload={}, session_id=session.id, at=NOW)
        # On PostgreSQL a unique violation would abort the transaction; ON CONFLICT does not.
        assert not outbox.enqueue(db, topic="slack", key="k", payload={}, at=NOW)
        assert outbox.enqueue(db, topic="slack", key="k2", payload={}, at=NOW)
        session.state = "aborted"
        session_id = session.id
    stored = rows(session_factory)
    assert [(r.idempotency_key, r.session_id) for r in stored] == [("k", session_id), ("k2", None)]
    with session_factory() as db:
        assert db.get(SessionRow, session_id).state == "aborted"  # type: ignore[union-attr]


def test_enqueue_is_rolled_back_with_the_callers_transaction(
    session_factory: sessionmaker[Session],
) -> None:
    with pytest.raises(RuntimeError), session_factory() as db, db.begin():
        session = new_session_row()
        db.add(session)
        db.flush()
        Outbox().enqueue(db, topic="pagerduty", key="p", payload={}, session_id=session.id, at=NOW)
        raise RuntimeError("the state change failed")
    with session_factory() as db:
        assert db.scalar(select(func.count()).select_from(OutboxRow)) == 0
        assert db.scalar(select(func.count()).select_from(SessionRow)) == 0


def test_enqueue_refuses_unknown_topics_empty_keys_and_naive_times(
    session_factory: sessionmaker[Session],
) -> None:
    outbox = Outbox()
    with session_factory() as db:
        with pytest.raises(ValueError, match="unknown outbox topic 'email'"):
            outbox.enqueue(db, topic="email", key="k", payload={}, at=NOW)
        with pytest.raises(ValueError, match="idempotency key"):
            outbox.enqueue(db, topic="slack", key="", payload={}, at=NOW)
        with pytest.raises(ValueError, match="naive"):
            outbox.enqueue(db, topic="slack", key="k", payload={}, at=NOW.replace(tzinfo=None))


# Delivering


def test_worker_delivers_due_rows_with_their_id(
    session_factory: sessionmaker[Session], clock: Clock
) -> None:
    for key in ("a", "b"):
        enqueue(session_factory, key)
    enqueue(session_factory, "later", at=NOW + timedelta(minutes=1))
    handler = Recorder()
    worker = OutboxWorker(session_factory, {"slack": handler}, clock=clock)

    assert worker.deliver_due() == 2
    ids = {r.idempotency_key: r.id for r in rows(session_factory)}
    assert handler.payloads == [
        {"key": "a", OUTBOX_ID: ids["a"]},
        {"key": "b", OUTBOX_ID: ids["b"]},
    ]
    assert worker.deliver_due() == 0
    delivered = row(session_factory, "a")
    assert (delivered.delivered_at, delivered.attempts, delivered.last_error) == (NOW, 1, None)
    assert row(session_factory, "later").delivered_at is None

    clock.advance(60)
    assert worker.deliver_due() == 1
    assert handler.ids[-1] == ids["later"]


def test_failures_are_retried_with_exponential_backoff_and_jitter(
    session_factory: sessionmaker[Session], clock: Clock
) -> None:
    enqueue(session_factory, "a")
    handler = Recorder(*(RuntimeError(f"boom #{n}") for n in range(1, 8)))
    worker = OutboxWorker(
        session_factory, {"slack": handler}, backoff_base=1.0, backoff_cap=20.0, clock=clock
    )

    delays = []
    for attempt in range(1, 8):
        assert worker.deliver_due() == 0
        failed = row(session_factory, "a")
        assert failed.attempts == attempt
        assert failed.last_error == f"RuntimeError: boom #{attempt}"
        delay = (failed.next_attempt_at - clock.now).total_seconds()
        step = min(20.0, 2.0 ** (attempt - 1))
        assert step / 2 <= delay <= step, (attempt, delay)
        delays.append(delay)
        assert worker.deliver_due() == 0  # not due yet: the handler is not called
        assert len(handler.payloads) == attempt
        clock.advance(delay)

    assert len(set(delays)) == len(delays)  # jittered, not lock-step
    assert worker.deliver_due() == 1
    done = row(session_factory, "a")
    assert (done.attempts, done.delivered_at, done.last_error) == (8, clock.now, None)


def test_retry_after_sets_the_delay_the_handler_asks_for(
    session_factory: sessionmaker[Session], clock: Clock
) -> None:
    enqueue(session_factory, "a")
    handler = Recorder(RetryAfter(7, "rate limited"))
    worker = OutboxWorker(session_factory, {"slack": handler}, clock=clock)

    assert worker.deliver_due() == 0
    waiting = row(session_factory, "a")
    assert waiting.next_attempt_at == NOW + timedelta(seconds=7)
    assert (waiting.attempts, waiting.last_error, waiting.failed_at) == (1, "rate limited", None)
    clock.advance(6.9)
    assert worker.deliver_due() == 0
    clock.advance(0.1)
    assert worker.deliver_due() == 1


def test_gives_up_after_max_attempts_leaving_the_error_visible(
    session_factory: sessionmaker[Session], clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    enqueue(session_factory, "a")
    handler = Recorder(*(RuntimeError("boom") for _ in range(10)))
    worker = OutboxWorker(
        session_factory, {"slack": handler}, max_attempts=3, backoff_base=1.0, clock=clock
    )

    with caplog.at_level(logging.WARNING, logger="bot.workers.outbox"):
        for _ in range(6):
            worker.deliver_due()
            clock.advance(600)

    assert len(handler.payloads) == 3
    failed = row(session_factory, "a")
    assert (failed.attempts, failed.delivered_at, failed.last_error) == (
        3,
        None,
        "RuntimeError: boom",
    )
    assert failed.failed_at == NOW + timedelta(seconds=1200)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [
        f"outbox row {failed.id} (slack a) not delivered, giving up after 3 attempts: "
        "RuntimeError: boom"
    ]


def test_a_permanent_failure_is_not_retried(
    session_factory: sessionmaker[Session], clock: Clock
) -> None:
    enqueue(session_factory, "a")
    handler = Recorder(PermanentFailure("SOME_VARIABLE is not set"))
    worker = OutboxWorker(session_factory, {"slack": handler}, clock=clock)

    worker.deliver_due()
    clock.advance(3600)
    worker.deliver_due()

    failed = row(session_factory, "a")
    assert len(handler.payloads) == 1
    assert (failed.attempts, failed.failed_at, failed.last_error) == (
        1, NOW, "SOME_VARIABLE is not set",
    )  # fmt: skip


def test_rows_with_one_ordering_key_are_delivered_in_order(
    session_factory: sessionmaker[Session], clock: Clock
) -> None:
    enqueue(session_factory, "trigger", ordering_key="alert-1")
    enqueue(session_factory, "resolve", ordering_key="alert-1")
    enqueue(session_factory, "other", ordering_key="alert-2")
    handler = Recorder(RuntimeError("PagerDuty is down"))
    worker = OutboxWorker(session_factory, {"slack": handler}, backoff_base=1.0, clock=clock)

    assert worker.deliver_due() == 1  # the trigger failed; the resolve may not overtake it
    assert [p["key"] for p in handler.payloads] == ["trigger", "other"]
    assert row(session_factory, "resolve").attempts == 0

    clock.advance(1)
    assert worker.deliver_due() == 2
    assert [p["key"] for p in handler.payloads] == ["trigger", "other", "trigger", "resolve"]


def test_a_row_given_up_on_no_longer_holds_back_its_successors(
    session_factory: sessionmaker[Session], clock: Clock
) -> None:
    enqueue(session_factory, "first", ordering_key="k")
    enqueue(session_factory, "second", ordering_key="k")
    handler = Recorder(PermanentFailure("refused"))
    worker = OutboxWorker(session_factory, {"slack": handler}, clock=clock)

    assert worker.deliver_due() == 1
    assert [p["key"] for p in handler.payloads] == ["first", "second"]


def test_topics_without_a_handler_are_left_alone(
    session_factory: sessionmaker[Session], clock: Clock
) -> None:
    enqueue(session_factory, "page", topic="pagerduty")
    enqueue(session_factory, "update", topic="slack")
    handler = Recorder()
    worker = OutboxWorker(session_factory, {"slack": handler}, clock=clock)

    assert worker.deliver_due() == 1
    assert [p["key"] for p in handler.payloads] == ["update"]
    untouched = row(session_factory, "page")
    assert (untouched.attempts, untouched.next_attempt_at) == (0, NOW)


# Replicas and restarts


@pytest.fixture
def replica_factories(database_url: str, engine: Engine) -> Iterator[list[sessionmaker[Session]]]:
    """Two session factories on engines of their own, as two bot replicas would have."""
    engines = [make_engine(database_url) for _ in range(2)]
    yield [make_sessionmaker(e) for e in engines]
    for e in engines:
        e.dispose()


def test_two_workers_deliver_each_of_50_rows_exactly_once(
    session_factory: sessionmaker[Session], replica_factories: list[sessionmaker[Session]]
) -> None:
    for n in range(50):
        enqueue(session_factory, f"row-{n}", at=datetime.now(UTC))
    handlers = [Recorder(delay=0.002), Recorder(delay=0.002)]
    workers = [
        OutboxWorker(factory, {"slack": handler}, batch_size=3, poll_interval=0.05)
        for factory, handler in zip(replica_factories, handlers, strict=True)
    ]
    for worker in workers:
        worker.start()
    try:
        wait_until(lambda: sum(len(h.payloads) for h in handlers) >= 50, timeout=20)
        time.sleep(0.1)  # room for a duplicate to show up, if there were one
    finally:
        for worker in workers:
            worker.stop()

    calls = Counter(handlers[0].ids + handlers[1].ids)
    assert sorted(calls) == [r.id for r in rows(session_factory)]
    assert set(calls.values()) == {1}
    assert all(h.payloads for h in handlers), "both workers should have delivered some"
    assert all(r.delivered_at is not None and r.attempts == 1 for r in rows(session_factory))


class _Crash(BaseException):
    """The process dies in the middle of a delivery."""


def test_a_restarted_worker_delivers_what_the_old_one_left(
    session_factory: sessionmaker[Session],
    replica_factories: list[sessionmaker[Session]],
    clock: Clock,
) -> None:
    for n in range(5):
        enqueue(session_factory, f"row-{n}")
    ids = [r.id for r in rows(session_factory)]
    seen: list[int] = []

    def dies_on_the_third(payload: dict[str, Any]) -> None:
        seen.append(payload[OUTBOX_ID])
        if len(seen) == 3:
            raise _Crash()

    crashing = OutboxWorker(
        replica_factories[0], {"slack": dies_on_the_third}, batch_size=4, clock=clock
    )
    with pytest.raises(_Crash):
        crashing.deliver_due()
    assert seen == ids[:3]

    new = Recorder()
    restarted = OutboxWorker(replica_factories[1], {"slack": new}, clock=clock)
    # Row 5 was never claimed: due at once. Rows 3 and 4 are leased to the dead worker.
    assert restarted.deliver_due() == 1
    assert new.ids == [ids[4]]
    clock.advance(60)  # the lease runs out
    assert restarted.deliver_due() == 2
    assert new.ids == [ids[4], ids[2], ids[3]]
    assert all(r.delivered_at is not None for r in rows(session_factory))


def test_the_thread_delivers_on_wake_and_retries_on_its_own(
    session_factory: sessionmaker[Session],
) -> None:
    handler = Recorder(RuntimeError("once"), RuntimeError("twice"))
    worker = OutboxWorker(
        session_factory, {"slack": handler}, backoff_base=0.01, backoff_cap=0.02, poll_interval=30
    )
    worker.start()
    try:
        time.sleep(0.05)  # the thread's first pass found nothing and sleeps (30 s at most)
        enqueue(session_factory, "a", at=datetime.now(UTC))
        started = time.monotonic()
        worker.wake()
        wait_until(lambda: row(session_factory, "a").delivered_at is not None, timeout=5)
        assert time.monotonic() - started < 5  # far below the poll interval
    finally:
        worker.stop()
    assert len(handler.payloads) == 3
    assert row(session_factory, "a").attempts == 3
