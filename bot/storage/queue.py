"""The ``deploy_queue`` table, in the caller's transaction (the caller commits).

Rows change by compare-and-set on their state, so two replicas acting on the same entry
(a lapse and a start, say) never both win.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.domain.errors import DomainError
from bot.domain.queue import QueueEntry, QueueState
from bot.storage.models import QueueEntryRow

ACTIVE = (QueueState.WAITING.value, QueueState.CALLED.value)


def _entry(row: QueueEntryRow) -> QueueEntry:
    return QueueEntry(
        id=row.id,
        environment=row.environment,
        service=row.service,
        user_id=row.user_id,
        joined_at=row.joined_at,
        state=QueueState(row.state),
        called_at=row.called_at,
        turn_until=row.turn_until,
    )


class DeployQueue:
    def __init__(self, db: Session) -> None:
        self.db = db

    def lane(self, environment: str, service: str, *, for_update: bool = False) -> list[QueueEntry]:
        """The active entries of one lane (row-locked with ``for_update`` on PostgreSQL)."""
        query = select(QueueEntryRow).where(
            QueueEntryRow.environment == environment,
            QueueEntryRow.service == service,
            QueueEntryRow.state.in_(ACTIVE),
        )
        if for_update:
            query = query.with_for_update()
        return [_entry(r) for r in self.db.scalars(query.order_by(QueueEntryRow.id))]

    def active(self, environment: str | None = None) -> list[QueueEntry]:
        """Every active entry (of one environment), in the order they joined."""
        query = select(QueueEntryRow).where(QueueEntryRow.state.in_(ACTIVE))
        if environment is not None:
            query = query.where(QueueEntryRow.environment == environment)
        return [_entry(r) for r in self.db.scalars(query.order_by(QueueEntryRow.id))]

    def get(self, entry_id: int) -> QueueEntry | None:
        row = self.db.get(QueueEntryRow, entry_id)
        return _entry(row) if row is not None else None

    def add(self, entry: QueueEntry) -> QueueEntry:
        """Insert a waiting entry and return it with its id.

        Raises:
            DomainError: the person is already in the lane (another replica just added them).
        """
        row = QueueEntryRow(
            environment=entry.environment,
            service=entry.service,
            user_id=entry.user_id,
            joined_at=entry.joined_at,
            state=entry.state.value,
        )
        try:
            with self.db.begin_nested():
                self.db.add(row)
                self.db.flush()
        except IntegrityError:
            raise DomainError(f"You are already in the queue for {entry.title}.") from None
        return _entry(row)

    def save(self, changed: Iterable[tuple[QueueEntry, QueueEntry]]) -> bool:
        """Write each ``(before, after)`` pair if the row is still as ``before`` says;
        False (and nothing more written) as soon as one was changed meanwhile."""
        for before, after in changed:
            result = self.db.execute(
                update(QueueEntryRow)
                .where(QueueEntryRow.id == before.id, QueueEntryRow.state == before.state.value)
                .values(
                    state=after.state.value, called_at=after.called_at, turn_until=after.turn_until
                )
            )
            if getattr(result, "rowcount", 1) != 1:
                return False
        return True
