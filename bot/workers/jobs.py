"""The scheduled jobs: methods of :class:`Jobs`, which holds what they need at run time.

The leader's scheduler keeps them in memory as bound methods (nothing is pickled, nothing is
set in a module global) and derives them from the sessions at every sync
(:mod:`bot.workers.scheduler`).

Every job claims its slot in ``schedule_slots`` first: a slot that already fired (before a
crash, or on another replica) is skipped, so nothing fires twice for the same slot.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker

from bot.app.probe_rounds import SessionProbes
from bot.app.sessions import DeployService
from bot.config.schema import Config
from bot.domain import SYSTEM, Event, SessionState
from bot.domain.commands import Complete, Expire
from bot.domain.errors import DeployError
from bot.ops.logs import session_scoped
from bot.rendering.incident import notify
from bot.storage.models import InboxRow, OutboxRow
from bot.storage.schedule_slots import claim_slot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobContext:
    """What the scheduled jobs need at run time; ``clock`` places them in their slots."""

    config: Config
    service: DeployService
    probes: SessionProbes
    session_factory: sessionmaker[Session]
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)


# How early a run may come and still count as its slot: APScheduler computes run times in
# float seconds (a microsecond early now and then), and replicas' clocks differ a little.
SLOT_TOLERANCE = timedelta(seconds=1)


def current_slot(start: datetime, every: timedelta, now: datetime) -> int:
    """The slot a schedule is in at ``now``: slot k comes due at ``start + k * every``."""
    tolerance = min(SLOT_TOLERANCE, every / 10)
    return (now - start + tolerance) // every


def monitoring_rounds(every: timedelta, window: timedelta) -> int:
    """How many monitoring rounds a watch has ("every 5m for 1h": 12); the last completes."""
    return max(1, window // every)


# What housekeeping keeps: Slack retries within minutes; delivered effects are history that
# the audit log already holds.
KEEP_REQUEST_KEYS = timedelta(days=1)
KEEP_DELIVERED_OUTBOX = timedelta(days=30)


class Jobs:
    """The jobs the leader schedules, bound to one context."""

    def __init__(self, context: JobContext) -> None:
        self.context = context

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
    def remind(self, session_id: int, opened: datetime, after: timedelta) -> None:
        """Nudge the people who can give the sign-offs still missing."""
        ctx = self.context
        now = ctx.clock()
        slot = current_slot(opened, after, now)
        if slot < 1 or not self.claim(session_id, "remind", slot):
            return
        session = ctx.service.get(session_id)
        missing = session.missing_signoffs()
        if session.state is not SessionState.OPEN or not missing:
            return
        waited = timedelta(seconds=round((now - opened).total_seconds()))
        lines = []
        for rule in missing:
            people = sorted({m for role in rule.by for m in ctx.config.roles.get(role, ())})
            lines.append(f"• *{rule.role}*: " + (" ".join(notify(p) for p in people) or "nobody"))
        head = f":bell: Deploy #{session_id} has waited {waited} for sign-offs:"
        self._say(session_id, "reminder", "\n".join([head, *lines]))

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
