"""Scheduled slots that fired: the durable record that keeps a slot from firing twice.

A slot is one firing of one schedule of one session: monitoring round 3, the first reminder,
the expiry, rollback step 2 of attempt 1. Whoever claims it first (on any replica, before or
after a crash) does the work; everyone else skips it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from bot.storage.models import AuditEventRow, ScheduleSlotRow, SessionRow


@dataclass(frozen=True)
class OpenSession:
    """What an open session's timetable is derived from (see :mod:`bot.app.schedules`)."""

    id: int
    environment: str
    state: str
    opened_at: datetime
    monitoring_since: datetime | None = None
    claimed: dict[str, int] = field(default_factory=dict)  # job: highest slot claimed
    owes_retrospective: bool = False  # an emergency deploy whose retrospective is not given


class ScheduleSlots:
    """The ``schedule_slots`` table, in the caller's transaction (the caller commits)."""

    def __init__(self, db: Session) -> None:
        self.db = db

    def claim(self, session_id: int, job: str, slot: int, *, at: datetime) -> bool:
        """Record that ``(session_id, job, slot)`` fires now.

        Returns:
            True if it was not claimed before; False if it was. A duplicate does not abort
            the surrounding transaction.
        """
        values = {"session_id": session_id, "job": job, "slot": slot, "fired_at": at}
        dialect = self.db.get_bind().dialect.name
        if dialect == "postgresql":
            pg_stmt = postgresql.insert(ScheduleSlotRow).values(values)
            statement = pg_stmt.on_conflict_do_nothing().returning(ScheduleSlotRow.slot)
        elif dialect == "sqlite":
            lite_stmt = sqlite.insert(ScheduleSlotRow).values(values)
            statement = lite_stmt.on_conflict_do_nothing().returning(ScheduleSlotRow.slot)
        else:
            raise NotImplementedError(f"deploybot supports SQLite and PostgreSQL, not {dialect}")
        return self.db.execute(statement).scalar_one_or_none() is not None

    def claimed(self, session_id: int, job: str) -> int:
        """The highest slot of ``(session_id, job)`` claimed so far (0: none)."""
        slot = self.db.scalar(
            select(func.max(ScheduleSlotRow.slot)).where(
                ScheduleSlotRow.session_id == session_id, ScheduleSlotRow.job == job
            )
        )
        return int(slot or 0)

    def monitoring_since(self, session_id: int) -> datetime | None:
        """When the session's latest watch began (its last ``monitoring_started``)."""
        return self.db.scalar(
            select(func.max(AuditEventRow.at)).where(
                AuditEventRow.session_id == session_id,
                AuditEventRow.kind == "monitoring_started",
            )
        )

    def open_sessions(self) -> list[OpenSession]:
        """Every open session with its claimed slots and watch start, in three queries."""
        is_open = select(SessionRow.id).where(SessionRow.is_open).scalar_subquery()
        claimed: dict[int, dict[str, int]] = {}
        for sid, job, slot in self.db.execute(
            select(ScheduleSlotRow.session_id, ScheduleSlotRow.job, func.max(ScheduleSlotRow.slot))
            .where(ScheduleSlotRow.session_id.in_(is_open))
            .group_by(ScheduleSlotRow.session_id, ScheduleSlotRow.job)
        ):
            claimed.setdefault(sid, {})[job] = int(slot)
        since: dict[int, datetime] = dict(
            self.db.execute(  # type: ignore[arg-type]
                select(AuditEventRow.session_id, func.max(AuditEventRow.at))
                .where(
                    AuditEventRow.kind == "monitoring_started",
                    AuditEventRow.session_id.in_(is_open),
                )
                .group_by(AuditEventRow.session_id)
            ).all()
        )
        rows = self.db.execute(
            select(SessionRow.id, SessionRow.environment, SessionRow.state, SessionRow.opened_at)
            .where(SessionRow.is_open)
            .order_by(SessionRow.id)
        )
        return [
            OpenSession(sid, env, state, opened, since.get(sid), claimed.get(sid, {}))
            for sid, env, state, opened in rows
        ]

    def latest(self, session_ids: Collection[int]) -> dict[tuple[int, str], int]:
        """The highest slot claimed so far of each (session, job), for these sessions."""
        if not session_ids:
            return {}
        rows = self.db.execute(
            select(ScheduleSlotRow.session_id, ScheduleSlotRow.job, func.max(ScheduleSlotRow.slot))
            .where(ScheduleSlotRow.session_id.in_(session_ids))
            .group_by(ScheduleSlotRow.session_id, ScheduleSlotRow.job)
        ).all()
        return {(sid, job): int(slot) for sid, job, slot in rows}


def claim_slot(
    session_factory: sessionmaker[Session], session_id: int, job: str, slot: int, *, at: datetime
) -> bool:
    """Claim a slot in a transaction of its own, committed before the caller does the work.

    Returns:
        True the first time ``(session_id, job, slot)`` is claimed, on any replica, ever.
    """
    with session_factory() as db:
        claimed = ScheduleSlots(db).claim(session_id, job, slot, at=at)
        db.commit()
    return claimed
