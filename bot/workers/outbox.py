"""The outbox: effects that must not be lost, recorded with the change that caused them.

Effects are written to the ``outbox`` table in the same transaction as the change that calls
for them (:class:`bot.storage.outbox.Outbox`). An :class:`OutboxWorker` delivers due rows
through one handler per topic, retrying with backoff.

Delivery is at least once: a worker that dies between delivering and recording the delivery
leaves the row to be delivered again once its lease runs out. Receivers make that exactly
once through idempotency (PagerDuty merges events with the same ``dedup_key``); handlers get
the row's id as ``payload["outbox_id"]`` to pass along.

Several replicas may run workers on one PostgreSQL database: a worker claims rows in one
statement (``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED)``) that moves their
``next_attempt_at`` a lease ahead, so no other worker sees them as due while it delivers.
On SQLite the same statement runs under SQLite's single writer lock.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, exists, select, update
from sqlalchemy.orm import Session, aliased, sessionmaker

from bot.storage.models import OutboxRow
from bot.storage.outbox import OUTBOX_ID, Defer, PermanentFailure, RetryAfter, next_due, utcnow

_MIN_DELAY = timedelta(milliseconds=1)
_MAX_ERROR_CHARS = 2000

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], None]
"""Delivers one payload; raises to fail (see :class:`RetryAfter`, :class:`PermanentFailure`)."""


@dataclass(frozen=True)
class _Claimed:
    id: int
    topic: str
    key: str
    payload: dict[str, Any]
    attempts: int  # before this attempt


class OutboxWorker:
    """Delivers due outbox rows through a handler per topic, in a daemon thread or by hand.

    Only rows whose topic has a handler are touched, so separate workers may serve separate
    topics. On failure a row is retried after ``backoff_base * 2**(attempts-1)`` seconds
    (capped at ``backoff_cap``, with jitter between half and all of it), or after the delay a
    :class:`RetryAfter` asks for; after ``max_attempts`` attempts, or a
    :class:`PermanentFailure`, it is left undelivered with ``failed_at`` and ``last_error``
    set, and logged. A new worker over the same database picks up whatever is still due.

    Args:
        factory: session factory for the outbox's database.
        handlers: ``{topic: handler}``.
        max_attempts: attempts before giving up on a row.
        backoff_base: seconds before the first retry.
        backoff_cap: longest wait between attempts, in seconds.
        lease: seconds a claimed row stays invisible to other workers; renewed every third
            of it while the row is in hand, so it bounds how long a dead replica's rows wait.
        batch_size: rows claimed per statement.
        poll_interval: longest sleep between passes of the thread (other replicas' rows
            are noticed within it; :meth:`wake` skips the wait).
        clock: returns now, timezone-aware.
        rng: random source for jitter.
        drains: what :meth:`drain` does: deliver every row that comes due before the
            deadline (quick effects), or only finish the row in hand and hand the rest back
            (long effects: another replica starts them at once).
    """

    def __init__(
        self,
        factory: sessionmaker[Session],
        handlers: Mapping[str, Handler],
        *,
        max_attempts: int = 20,
        backoff_base: float = 1.0,
        backoff_cap: float = 300.0,
        lease: float = 15.0,
        batch_size: int = 10,
        poll_interval: float = 2.0,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
        drains: bool = True,
    ) -> None:
        if not handlers:
            raise ValueError("an outbox worker needs at least one handler")
        if max_attempts < 1 or batch_size < 1:
            raise ValueError("max_attempts and batch_size must be at least 1")
        if backoff_base <= 0 or backoff_cap < backoff_base or lease <= 0 or poll_interval <= 0:
            raise ValueError("backoff, lease and poll interval must be positive")
        self._factory = factory
        self._handlers = dict(handlers)
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.lease = timedelta(seconds=lease)
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self._clock = clock
        self._rng = rng or random.Random()
        self._hand_lock = threading.Lock()
        self._wakeup = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.drains = drains
        self._in_hand: set[int] = set()
        self._drain_until: float | None = None  # time.monotonic() deadline while draining

    @property
    def topics(self) -> frozenset[str]:
        """The topics this worker delivers."""
        return frozenset(self._handlers)

    # -- the thread ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start delivering in a daemon thread (at once: rows left by a previous run are due)."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("the outbox worker is already running")
        self._stopping.clear()
        self._wakeup.set()
        self._thread = threading.Thread(target=self._run, name="outbox-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread after the delivery in progress, waiting up to ``timeout`` seconds."""
        self._stopping.set()
        self._wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def drain(self, deadline: float) -> bool:
        """Stop gracefully by ``deadline`` (a ``time.monotonic()`` value): deliver what is due
        (see ``drains``), then stop; rows still in hand at the deadline are handed back, due
        at once for any replica. Returns True when the thread stopped in time."""
        self._drain_until = deadline
        self._wakeup.set()
        thread = self._thread
        if thread is not None:
            thread.join(max(0.0, deadline - time.monotonic()))
        stopped = thread is None or not thread.is_alive()
        self._stopping.set()
        self._wakeup.set()
        self.hand_back()
        if stopped:
            self._thread = None
        return stopped

    def finish(self, deadline: float) -> None:
        """Once the thread has stopped (:meth:`drain`): deliver, in the caller's thread, what
        comes due before ``deadline`` (effects written since, on the way out), then hand
        back what is left in hand."""
        self._drain_until = deadline
        try:
            while not self._drained():
                self.deliver_due()
                time.sleep(min(self._next_due_in() or 0.0, self.poll_interval) or 0.01)
        finally:
            self.hand_back()

    def hand_back(self) -> int:
        """Make the rows in hand due now, for any worker: this one is going away."""
        with self._hand_lock:
            held, self._in_hand = sorted(self._in_hand), set()
        if not held:
            return 0
        with self._factory() as db, db.begin():
            db.execute(
                update(OutboxRow)
                .where(
                    OutboxRow.id.in_(held),
                    OutboxRow.delivered_at.is_(None),
                    OutboxRow.failed_at.is_(None),
                )
                .values(next_attempt_at=self._clock())
                .execution_options(synchronize_session=False)
            )
        log.warning("handed back %d outbox row(s) in hand: %s", len(held), held)
        return len(held)

    def _drained(self) -> bool:
        """While draining: True once nothing more of ours comes due before the deadline."""
        until = self._drain_until
        if until is None:
            return False
        if self._draining():
            return True
        try:
            due = self._next_due_in()
        except Exception:  # the database is away: nothing more to deliver in time
            return True
        return due is None or time.monotonic() + due >= until

    def _draining(self) -> bool:
        """True when no new row should be started (a drain past its deadline, or one that
        only finishes what is in hand)."""
        until = self._drain_until
        if until is None:
            return False
        return not self.drains or time.monotonic() >= until

    def wake(self) -> None:
        """Deliver now rather than at the next poll (call it after committing an enqueue)."""
        self._wakeup.set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wakeup.clear()
            try:
                wait = self.step()
            except Exception:  # the database may be down: keep the thread, try again later
                log.exception("outbox pass failed; trying again in %g s", self.poll_interval)
                wait = self.poll_interval
            if self._drain_until is not None and self._drained():
                return
            if wait > 0:
                self._wakeup.wait(wait)

    def step(self) -> float:
        """One pass of the thread: deliver what is due; returns the seconds to wait.

        Idle, a pass is one indexed query: is a row of ours due before the next poll?
        Rows scheduled further ahead (sessions' expiries, reminders) are not read.
        """
        due = self._next_due_in(within=self.poll_interval)
        if due == 0:
            delivered = self.deliver_due()
            due = self._next_due_in(within=self.poll_interval)
            if due == 0 and not delivered:  # due but held back behind a row in another's hand
                return min(self.poll_interval, 0.05)
        return self.poll_interval if due is None else due

    def _next_due_in(self, within: float | None = None) -> float | None:
        """Seconds until the next row of ours comes due (0 if one is due), None if none
        (or none within ``within`` seconds)."""
        now = self._clock()
        before = None if within is None else now + timedelta(seconds=within)
        with self._factory() as db:
            due = next_due(db, self._handlers, before=before)
        if due is None:
            return None
        return max(0.0, (due - now).total_seconds())

    # -- one pass ------------------------------------------------------------------------------

    def deliver_due(self) -> int:
        """Deliver every row due now, claiming batches until none is left.

        Rows that fail in this pass are due later, so a pass always ends.

        Returns:
            How many rows were delivered.
        """
        started = self._clock()
        delivered = 0
        while not self._draining() and (claimed := self._claim(started)):
            with self._hand_lock:
                self._in_hand.update(row.id for row in claimed)
            with self._renewing():
                for row in claimed:
                    if self._draining():
                        break  # the rest stay in hand: handed back by drain()
                    delivered += self._deliver(row)
                    with self._hand_lock:
                        self._in_hand.discard(row.id)
        return delivered

    @contextmanager
    def _renewing(self) -> Iterator[None]:
        """Renew the lease of the rows in hand while a batch is delivered.

        A long effect (a rollback step waiting on a rollout) keeps its row; a replica that
        dies stops renewing, and its rows come due for another replica one lease later.
        """
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(self.lease.total_seconds() / 3):
                with self._hand_lock:
                    held = sorted(self._in_hand)
                if not held:
                    continue
                try:
                    with self._factory() as db, db.begin():
                        db.execute(
                            update(OutboxRow)
                            .where(
                                OutboxRow.id.in_(held),
                                OutboxRow.delivered_at.is_(None),
                                OutboxRow.failed_at.is_(None),
                            )
                            .values(next_attempt_at=self._clock() + self.lease)
                            .execution_options(synchronize_session=False)
                        )
                except Exception:  # the next renewal tries again; the lease has slack
                    log.warning("could not renew the outbox lease", exc_info=True)

        renewer = threading.Thread(target=renew, name="outbox-lease", daemon=True)
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join()

    def _claim(self, due_by: datetime) -> list[_Claimed]:
        """Lease up to ``batch_size`` due rows in one short transaction."""
        with self._factory() as db, db.begin():
            result = db.execute(
                update(OutboxRow)
                .where(OutboxRow.id.in_(self._due_ids(due_by)))
                .values(next_attempt_at=self._clock() + self.lease)
                .returning(
                    OutboxRow.id,
                    OutboxRow.topic,
                    OutboxRow.idempotency_key,
                    OutboxRow.payload,
                    OutboxRow.attempts,
                )
                .execution_options(synchronize_session=False)
            )
            rows = [_Claimed(*row) for row in result]
        return sorted(rows, key=lambda row: row.id)

    def _due_ids(self, due_by: datetime) -> Select[int]:
        due = aliased(OutboxRow, name="due")
        earlier = aliased(OutboxRow, name="earlier")
        # An older row of the same stream still pending holds this one back (FIFO per key);
        # it stays pending while another worker delivers it, so order holds across replicas.
        held_back = exists().where(
            earlier.topic == due.topic,
            earlier.ordering_key == due.ordering_key,
            earlier.id < due.id,
            earlier.delivered_at.is_(None),
            earlier.failed_at.is_(None),
        )
        return (
            select(due.id)
            .where(
                due.delivered_at.is_(None),
                due.failed_at.is_(None),
                due.next_attempt_at <= due_by,
                due.topic.in_(self._handlers),
                ~held_back,
            )
            .order_by(due.id)
            .limit(self.batch_size)
            .with_for_update(skip_locked=True)  # PostgreSQL; SQLite has one writer anyway
        )

    def _deliver(self, row: _Claimed) -> int:
        attempt = row.attempts + 1
        try:
            self._handlers[row.topic]({**row.payload, OUTBOX_ID: row.id})
        except Defer as wait:
            later = self._clock() + max(timedelta(seconds=wait.seconds), _MIN_DELAY)
            self._record(row.id, next_attempt_at=later)
        except RetryAfter as error:
            delay = timedelta(seconds=error.seconds)
            self._failed(row, attempt, str(error), delay)
        except PermanentFailure as error:
            self._failed(row, attempt, str(error) or type(error).__name__, None)
        except Exception as error:
            message = f"{type(error).__name__}: {error}"
            self._failed(row, attempt, message, self._backoff(attempt))
        else:
            self._record(row.id, attempts=attempt, delivered_at=self._clock(), last_error=None)
            return 1
        return 0

    def _failed(self, row: _Claimed, attempt: int, message: str, delay: timedelta | None) -> None:
        """Record a failed attempt: retry after ``delay``, or give up (None: permanently)."""
        message = message[:_MAX_ERROR_CHARS]
        now = self._clock()
        if delay is None or attempt >= self.max_attempts:
            why = "permanent error" if delay is None else f"{attempt} attempts"
            log.error(
                "outbox row %d (%s %s) not delivered, giving up after %s: %s",
                row.id, row.topic, row.key, why, message,
            )  # fmt: skip
            self._record(row.id, attempts=attempt, failed_at=now, last_error=message)
            return
        delay = max(delay, _MIN_DELAY)
        log.warning(
            "outbox row %d (%s %s) attempt %d failed, next in %.3g s: %s",
            row.id, row.topic, row.key, attempt, delay.total_seconds(), message,
        )  # fmt: skip
        self._record(row.id, attempts=attempt, next_attempt_at=now + delay, last_error=message)

    def _backoff(self, attempt: int) -> timedelta:
        """Exponential backoff with "equal jitter": between half and all of the step."""
        step = min(self.backoff_cap, self.backoff_base * 2 ** min(attempt - 1, 62))
        return timedelta(seconds=step / 2 + self._rng.uniform(0, step / 2))

    def _record(self, row_id: int, **values: Any) -> None:
        with self._factory() as db, db.begin():
            db.execute(
                update(OutboxRow)
                # Another worker may have delivered it after our lease ran out: keep that.
                .where(OutboxRow.id == row_id, OutboxRow.delivered_at.is_(None))
                .values(**values)
                .execution_options(synchronize_session=False)
            )
