"""Reading the past: completed deploys (for the promotion order) and the audit log as a
stream of rows (for ``deploybot audit export``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from bot.domain.promotion import CompletedDeploy
from bot.domain.session import SessionState
from bot.storage.models import AuditEventRow, SessionRow

EXPORT_BATCH = 500  # rows fetched per round trip while exporting


def completed_deploys(
    db: Session, environment: str, service: str, version: str, *, limit: int = 20
) -> tuple[CompletedDeploy, ...]:
    """The latest completed sessions of ``environment`` for ``service`` ``version``."""
    rows = db.execute(
        select(SessionRow.id, SessionRow.closed_at)
        .where(
            SessionRow.environment == environment,
            SessionRow.service == service,
            SessionRow.version == version,
            SessionRow.state == SessionState.COMPLETED.value,
        )
        .order_by(SessionRow.closed_at.desc())
        .limit(limit)
    )
    return tuple(
        CompletedDeploy(sid, environment, service, version, closed_at)
        for sid, closed_at in rows
        if closed_at is not None
    )


@dataclass(frozen=True)
class AuditRow:
    """One exported line of the audit log, with the session's service and version."""

    id: int
    session_id: int | None
    environment: str | None
    service: str | None
    version: str | None
    actor: str
    event: str
    at: datetime
    detail: dict[str, Any]


def audit_rows(
    engine: Engine, *, since: datetime, environment: str | None = None
) -> Iterator[AuditRow]:
    """The audit log from ``since`` on (of one environment, if given), oldest first,
    streamed: a server-side cursor on PostgreSQL, :data:`EXPORT_BATCH` rows at a time, so
    a year of history never sits in memory."""
    query = (
        select(
            AuditEventRow.id,
            AuditEventRow.session_id,
            AuditEventRow.environment,
            SessionRow.service,
            SessionRow.version,
            AuditEventRow.actor,
            AuditEventRow.kind,
            AuditEventRow.at,
            AuditEventRow.data,
        )
        .outerjoin(SessionRow, SessionRow.id == AuditEventRow.session_id)
        .where(AuditEventRow.at >= since)
        .order_by(AuditEventRow.at, AuditEventRow.id)
    )
    if environment is not None:
        query = query.where(AuditEventRow.environment == environment)
    with engine.connect() as connection:
        result = connection.execution_options(stream_results=True, yield_per=EXPORT_BATCH).execute(
            query
        )
        for row in result:
            yield AuditRow(*row)
