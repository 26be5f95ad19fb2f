"""Session summaries: what lists show (and the last shipped version), read from the summary
columns only.

Never the checklist, policy or progress JSON: a page of the open sessions costs two small
queries (the page and the count), whatever the number of sessions and their size. The
columns are written by :func:`bot.storage.repositories.apply_to_row` on every save.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import Session

from bot.domain import SessionState
from bot.domain.summary import SessionPage, SessionSummary
from bot.storage.models import SessionRow

COLUMNS = (
    SessionRow.id,
    SessionRow.environment,
    SessionRow.service,
    SessionRow.version,
    SessionRow.requester,
    SessionRow.state,
    SessionRow.items_settled,
    SessionRow.items_total,
    SessionRow.items_failing,
    SessionRow.signoffs_missing,
    SessionRow.opened_at,
    SessionRow.closed_at,
)


class SessionSummaries:
    """Summaries of deploy sessions, for lists and for finding "the" open session."""

    def __init__(self, db: Session) -> None:
        self._db = db

    def open_page(
        self, number: int, *, per_page: int, environment: str | None = None
    ) -> SessionPage:
        """Page ``number`` (from 1) of the open sessions, oldest first, ``per_page`` a page.

        A page past the last one holds no summaries; its ``total`` still says how many
        sessions are open.
        """
        if number < 1 or per_page < 1:
            raise ValueError(f"page {number} of {per_page}: both start at 1")
        query = open_page_query((number - 1) * per_page, per_page, environment)
        summaries = tuple(_summary(row) for row in self._db.execute(query))
        if number == 1 and len(summaries) < per_page:
            total = len(summaries)  # all of them are on this page: no count needed
        else:
            total = self._db.scalar(count_open_query(environment)) or 0
        return SessionPage(summaries, total=total, number=number, per_page=per_page)

    def previous_version(self, environment: str, service: str, before: int) -> str:
        """The version the last completed deploy of this service before ``before`` shipped."""
        found = self._db.scalars(
            select(SessionRow.version)
            .where(
                SessionRow.environment == environment,
                SessionRow.service == service,
                SessionRow.state == SessionState.COMPLETED.value,
                SessionRow.version != "",
                SessionRow.id < before,
            )
            .order_by(SessionRow.id.desc())
            .limit(1)
        ).first()
        return found or ""

    def home_candidates(
        self,
        user_id: str,
        *,
        signing: frozenset[str],
        oncall: frozenset[str],
        limit: int,
    ) -> list[int]:
        """Ids of the open sessions one person's Home may show, newest first, at most
        ``limit``: theirs, those still open for sign-offs in the environments where they
        may sign, and those past their deploy in the environments where they are on call
        (the only ones that can have an incident)."""
        unsettled = (SessionState.FAILED, SessionState.ROLLING_BACK, SessionState.ROLLBACK_FAILED)
        concerned = or_(
            SessionRow.requester == user_id,
            and_(SessionRow.state == SessionState.OPEN.value, SessionRow.environment.in_(signing)),
            and_(
                SessionRow.state.in_([s.value for s in unsettled]),
                SessionRow.environment.in_(oncall),
            ),
        )
        query = (
            select(SessionRow.id)
            .where(SessionRow.is_open, concerned)
            .order_by(SessionRow.id.desc())
            .limit(limit)
        )
        return list(self._db.scalars(query))

    def get(self, session_id: int) -> SessionSummary | None:
        """The summary of one session, open or closed, or None if there is no such session."""
        row = self._db.execute(select(*COLUMNS).where(SessionRow.id == session_id)).first()
        return _summary(row) if row is not None else None


def open_page_query(
    offset: int, limit: int, environment: str | None = None
) -> Select[*tuple[Any, ...]]:
    """Summaries of open sessions in id order, ``limit`` of them after the first ``offset``.

    The offset is taken on the ids alone, which the partial index ``ix_deploy_sessions_open_id``
    holds (an index-only scan), and only the page's rows are then read: a deep page does not
    read every row before it.
    """
    ids = select(SessionRow.id).where(SessionRow.is_open)
    if environment is not None:
        ids = ids.where(SessionRow.environment == environment)
    page = ids.order_by(SessionRow.id).offset(offset).limit(limit).subquery()
    return select(*COLUMNS).join(page, SessionRow.id == page.c.id).order_by(SessionRow.id)


def count_open_query(environment: str | None = None) -> Select[Any]:
    """How many sessions are open (of one environment)."""
    query = select(func.count()).select_from(SessionRow).where(SessionRow.is_open)
    if environment is not None:
        query = query.where(SessionRow.environment == environment)
    return query


def _summary(row: Any) -> SessionSummary:
    return SessionSummary(
        id=row.id,
        environment=row.environment,
        service=row.service,
        version=row.version,
        requester=row.requester,
        state=SessionState(row.state),
        settled=row.items_settled,
        total=row.items_total,
        failing=row.items_failing,
        missing_signoffs=row.signoffs_missing,
        opened_at=row.opened_at,
        closed_at=row.closed_at,
    )
