"""The scheduled jobs: methods of :class:`Jobs`, which holds what they need at run time.

A session's jobs come due as ``schedule`` outbox rows (:mod:`bot.app.schedules`), which any
replica's worker delivers through :meth:`Jobs.deliver`: it runs the slot that came due and
arms the next. Housekeeping runs on the leader (:mod:`bot.workers.scheduler`).

Every job claims its slot in ``schedule_slots`` first: a slot that already fired (before a
crash, or on another replica) is skipped, so nothing fires twice for the same slot.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker

from bot.app.probe_rounds import SessionProbes
from bot.app.queue import TURN_JOB, DeployQueueService
from bot.app.reminders import reminded, retrospective_owed
from bot.app.schedules import Occurrence, current_slot, monitoring_rounds, next_occurrence, schedule
from bot.app.sessions import DeployService
from bot.config.schema import Config
from bot.domain import SYSTEM, Event, SessionState
from bot.domain.commands import Complete, Expire
from bot.domain.errors import DeployError
from bot.ops.logs import session_scoped
from bot.rendering.incident import notify
from bot.storage.models import InboxRow, OutboxRow
from bot.storage.outbox import Defer
from bot.storage.schedule_slots import OpenSession, claim_slot
from bot.storage.uow import UnitOfWork

__all__ = ["JobContext", "Jobs", "current_slot", "monitoring_rounds"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobContext:
    """What the scheduled jobs need at run time; ``clock`` places them in their slots."""

    config: Config
    service: DeployService
    probes: SessionProbes
    session_factory: sessionmaker[Session]
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)


# What housekeeping keeps: Slack retries within minutes; delivered effects are history that
# the audit log already holds.
KEEP_REQUEST_KEYS = timedelta(days=1)
KEEP_DELIVERED_OUTBOX = timedelta(days=30)


class Jobs:
    """The jobs the leader schedules, bound to one context."""

    def __init__(self, context: JobContext) -> None:
        self.context = context

    def deliver(self, payload: dict[str, Any]) -> None:
        """The ``schedule`` topic's handler: run the job's slot if it came due, then arm the
        next slot (a new row); a row that came early waits for its slot (:class:`Defer`).

        Delivery is at least once: a row delivered again finds its slot claimed, runs
        nothing, and arms the same next slot (the same key: recorded once).
        """
        if payload.get("job") == TURN_JOB:
            self.queue_turn(int(payload["entry_id"]))
            return
        job, sid, key = str(payload["job"]), int(payload["session_id"]), payload.get("key")
        now = self.context.clock()
        wanted = self._next(sid, job, now)
        if wanted is None:
            return  # the chain ends: the session closed, the watch ended, no reminders
        if not wanted.is_due(now):
            if wanted.key == key:
                raise Defer((wanted.due - now).total_seconds())
            self._arm(wanted, now)  # the timetable moved (config, a new watch): follow it
            return
        self._run(wanted)
        after = self._next(sid, job, self.context.clock())
        if after is not None and after.key != key:
            self._arm(after, now)

    def queue_turn(self, entry_id: int) -> None:
        """A queue turn's deadline: the turn lapses if it was not taken, and the next one in
        the queue is called; a row that came early waits."""
        queue = DeployQueueService(self.context.service)
        now = self.context.clock()
        left = queue.turn_left(entry_id, now)
        if left > 0:
            raise Defer(left)
        queue.lapse(entry_id, now)

    def _next(self, session_id: int, job: str, now: datetime) -> Occurrence | None:
        with UnitOfWork(self.context.session_factory) as uow:
            session = uow.sessions.get(session_id)
            since = uow.schedule_slots.monitoring_since(session_id) if job == "monitor" else None
            claimed = {job: uow.schedule_slots.claimed(session_id, job)}
        owes = session.emergency is not None and session.emergency.outstanding
        view = OpenSession(
            session_id,
            session.environment,
            session.state.value,
            session.opened_at,
            since,
            claimed,
            owes_retrospective=owes,
        )
        return next_occurrence(self.context.config, view, job, now)

    def _arm(self, occurrence: Occurrence, now: datetime) -> None:
        with UnitOfWork(self.context.session_factory) as uow:
            schedule(uow, [occurrence], at=now)
            uow.commit()

    def _run(self, due: Occurrence) -> None:
        env = self.context.config.environment(self.context.service.get(due.session_id).environment)
        if due.job == "expire":
            self.expire(due.session_id, env.expire_after)
        elif due.job == "remind" and env.reminders:
            self.remind(due.session_id, due.anchor, env.reminders.interval)
        elif due.job == "retro":
            self.remind_retrospective(due.session_id, due.slot)
        elif due.job == "monitor" and env.monitoring:
            self.monitor(due.session_id, due.anchor, env.monitoring.every, env.monitoring.for_)

    def claim(self, session_id: int, job: str, slot: int) -> bool:
        """True the first time a (session, job, slot) is claimed, on any replica, ever."""
        ctx = self.context
        return claim_slot(ctx.session_factory, session_id, job, slot, at=ctx.clock())

    @session_scoped
    def monitor(
        self, session_id: int, since: datetime, every: timedelta, window: timedelta
    ) -> None:
        """Re-run the session's probes for the current round; at the last round the watch
        ends and the session completes if nothing is missing.

        The round is the one current now, and at most the last: a run that comes late (no
        leader for a while) makes up the missed rounds once, and still ends the watch.
        """
        ctx = self.context
        last = monitoring_rounds(every, window)
        slot = min(current_slot(since, every, ctx.clock()), last)
        if slot < 1 or not self.claim(session_id, "monitor", slot):
            return
        if ctx.service.get(session_id).state is not SessionState.MONITORING:
            return
        ctx.probes.run(session_id, why=f"monitoring ({slot}/{last})")
        if slot == last and ctx.service.get(session_id).state is SessionState.MONITORING:
            try:
                ctx.service.act_as(session_id, Complete(), SYSTEM)
            except DeployError as waiting:
                text = f"Monitoring finished with every probe passing. {waiting}"
                self._say(session_id, "monitoring_unfinished", text)

    @session_scoped
    def remind(self, session_id: int, start: datetime, every: timedelta) -> None:
        """Nudge the people who can give the sign-offs still missing (in the thread and by
        DM), or the requester of a session that waits for nothing but them (by DM); at most
        the configured number of times. ``start`` anchors the slots (slot 1 is due at
        ``start + every``)."""
        ctx = self.context
        now = ctx.clock()
        slot = current_slot(start, every, now)
        session = ctx.service.get(session_id)
        env = ctx.config.environment(session.environment)
        most = env.reminders.max if env.reminders else 1
        if slot < 1 or slot > most or not self.claim(session_id, "remind", slot):
            return
        if session.state is not SessionState.OPEN:
            return
        waited = timedelta(seconds=round((now - session.opened_at).total_seconds()))
        missing = session.missing_signoffs()
        if missing:
            lines = []
            for rule in missing:
                people = sorted({m for role in rule.by for m in ctx.config.roles.get(role, ())})
                names = " ".join(notify(p) for p in people) or "nobody"
                lines.append(f"• *{rule.role}*: " + names)
            head = f":bell: Deploy #{session_id} has waited {waited} for sign-offs:"
            self._say(session_id, "reminder", "\n".join([head, *lines]))
        event = reminded(ctx.config, session, now, waited)
        if event is not None:
            ctx.service.record(session_id, event)

    @session_scoped
    def remind_retrospective(self, session_id: int, slot: int) -> None:
        """Remind the retrospective role of an emergency deploy, by DM, until it is given."""
        ctx = self.context
        if slot < 1 or not self.claim(session_id, "retro", slot):
            return
        session = ctx.service.get(session_id)
        event = retrospective_owed(ctx.config, session, ctx.clock())
        if event is not None:
            ctx.service.record(session_id, event)

    @session_scoped
    def expire(self, session_id: int, after: timedelta) -> None:
        """Abort a session left open too long and free its environment."""
        ctx = self.context
        if not self.claim(session_id, "expire", 1):
            return
        session = ctx.service.get(session_id)
        if session.state.is_closed:
            return
        reason = f"expired: open longer than {timedelta(seconds=round(after.total_seconds()))}"
        try:
            ctx.service.act_as(session_id, Expire(reason), SYSTEM)
        except DeployError as refused:  # e.g. failed or rolling back: people must decide
            log.info("not expired", extra={"session_id": session_id, "reason": str(refused)})

    def housekeeping(self) -> tuple[int, int]:
        """Drop old Slack request keys and long-delivered outbox rows; returns what was removed."""
        ctx = self.context
        now = ctx.clock()
        with ctx.session_factory() as db:
            keys = db.execute(
                delete(InboxRow).where(InboxRow.received_at < now - KEEP_REQUEST_KEYS)
            )
            rows = db.execute(
                delete(OutboxRow).where(
                    OutboxRow.delivered_at.is_not(None),
                    OutboxRow.delivered_at < now - KEEP_DELIVERED_OUTBOX,
                )
            )
            db.commit()
        removed = int(getattr(keys, "rowcount", 0) or 0), int(getattr(rows, "rowcount", 0) or 0)
        log.info("housekeeping", extra={"request_keys": removed[0], "outbox_rows": removed[1]})
        return removed

    def _say(self, session_id: int, kind: str, text: str) -> None:
        """An audited note in the session's thread (posted as an effect of the event)."""
        event = Event(kind, "deploybot", self.context.clock(), {"text": text})
        self.context.service.record(session_id, event)
