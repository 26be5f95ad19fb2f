"""The scheduled jobs. APScheduler pickles jobs by reference, so each is a module-level
function with plain arguments; what they need at run time comes from :data:`context`, set by
the runner when this replica becomes the leader.

Every job claims its slot in ``schedule_slots`` first: a slot that already fired (before a
crash, or on another replica) is skipped, so nothing fires twice for the same slot.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bot.app.probe_rounds import SessionProbes
from bot.app.sessions import DeployService
from bot.config.schema import Config
from bot.domain import SYSTEM, Event, SessionState
from bot.domain.commands import Complete, Expire
from bot.domain.errors import DeployError
from bot.ops.logs import session_scoped
from bot.rendering.incident import notify
from bot.storage.models import InboxRow, OutboxRow, ScheduleSlotRow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobContext:
    config: Config
    service: DeployService
    probes: SessionProbes
    session_factory: sessionmaker[Session]
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)


context: JobContext | None = None


def _ctx() -> JobContext:
    if context is None:
        raise RuntimeError("scheduled job ran before the job context was set")
    return context


def claim_slot(session_id: int, job: str, slot: int) -> bool:
    """True the first time a (session, job, slot) is claimed, on any replica, ever."""
    ctx = _ctx()
    with ctx.session_factory() as db:
        try:
            db.execute(
                insert(ScheduleSlotRow).values(
                    session_id=session_id, job=job, slot=slot, fired_at=ctx.clock()
                )
            )
            db.commit()
        except IntegrityError:
            return False
    return True


@session_scoped
def monitor(session_id: int, since: str, every: float, window: float) -> None:
    """Re-run the session's probes for slot k = round((now - since) / every); at the last
    slot the watch ends and the session completes if nothing is missing."""
    ctx = _ctx()
    elapsed = (ctx.clock() - datetime.fromisoformat(since)).total_seconds()
    slot = max(1, round(elapsed / every))
    last = max(1, int(window // every))
    if slot > last or not claim_slot(session_id, "monitor", slot):
        return
    if ctx.service.get(session_id).state is not SessionState.MONITORING:
        return
    ctx.probes.run(session_id, why=f"monitoring ({slot}/{last})")
    if slot == last and ctx.service.get(session_id).state is SessionState.MONITORING:
        try:
            ctx.service.act_as(session_id, Complete(), SYSTEM)
        except DeployError as waiting:
            text = f"Monitoring finished with every probe passing. {waiting}"
            ctx.service.record(
                session_id, Event("monitoring_unfinished", "deploybot", ctx.clock(), {"text": text})
            )


@session_scoped
def remind(session_id: int, opened: str, after: float) -> None:
    """Nudge the people who can give the sign-offs still missing."""
    ctx = _ctx()
    elapsed = (ctx.clock() - datetime.fromisoformat(opened)).total_seconds()
    slot = max(1, round(elapsed / after))
    if not claim_slot(session_id, "remind", slot):
        return
    session = ctx.service.get(session_id)
    missing = session.missing_signoffs()
    if session.state.is_closed or session.state is not SessionState.OPEN or not missing:
        return
    waited = timedelta(seconds=round(elapsed))
    lines = []
    for rule in missing:
        people = sorted({m for role in rule.by for m in ctx.config.roles.get(role, ())})
        lines.append(f"• *{rule.role}*: " + (" ".join(notify(p) for p in people) or "nobody"))
    text = f":bell: Deploy #{session_id} has waited {waited} for sign-offs:\n" + "\n".join(lines)
    ctx.service.record(session_id, Event("reminder", "deploybot", ctx.clock(), {"text": text}))


@session_scoped
def expire(session_id: int, after: float) -> None:
    """Abort a session left open too long and free its environment."""
    ctx = _ctx()
    if not claim_slot(session_id, "expire", 1):
        return
    session = ctx.service.get(session_id)
    if session.state.is_closed:
        return
    reason = f"expired: open longer than {timedelta(seconds=round(after))}"
    try:
        ctx.service.act_as(session_id, Expire(reason), SYSTEM)
    except DeployError as refused:  # e.g. failed or rolling back: people must decide
        log.info("not expired", extra={"session_id": session_id, "reason": str(refused)})


# What housekeeping keeps: Slack retries within minutes; delivered effects are history that
# the audit log already holds.
KEEP_REQUEST_KEYS = timedelta(days=1)
KEEP_DELIVERED_OUTBOX = timedelta(days=30)


def housekeeping() -> tuple[int, int]:
    """Drop old Slack request keys and long-delivered outbox rows; returns what was removed."""
    ctx = _ctx()
    now = ctx.clock()
    with ctx.session_factory() as db:
        keys = db.execute(delete(InboxRow).where(InboxRow.received_at < now - KEEP_REQUEST_KEYS))
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
