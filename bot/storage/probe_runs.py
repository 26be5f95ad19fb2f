"""Probe runs as stored: every result, already redacted, for reports and the summary."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from bot.domain.checklist import Severity
from bot.storage.models import ProbeRunRow


class ProbeResultLike(Protocol):
    """What storage records of a probe's result.

    :class:`bot.integrations.probes.ProbeResult` is one; storage names only the fields it
    keeps, so that it need not import the integrations above it.
    """

    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def ok(self) -> bool: ...
    @property
    def summary(self) -> str: ...
    @property
    def detail(self) -> str: ...
    @property
    def duration(self) -> float: ...
    @property
    def severity(self) -> Severity: ...
    @property
    def at(self) -> datetime: ...


@dataclass(frozen=True)
class ProbeRun:
    id: int
    session_id: int | None
    environment: str
    probe: str
    item_id: str | None
    kind: str
    ok: bool
    severity: str
    summary: str
    detail: str
    duration_ms: int
    at: datetime


class ProbeRunRepository:
    def __init__(self, db: Session) -> None:
        self.db = db

    def record(
        self,
        result: ProbeResultLike,
        *,
        environment: str,
        session_id: int | None = None,
        item_id: str | None = None,
    ) -> None:
        self.db.execute(
            insert(ProbeRunRow).values(
                session_id=session_id,
                environment=environment,
                probe=result.name,
                item_id=item_id,
                kind=result.kind,
                ok=result.ok,
                severity=result.severity.value,
                summary=result.summary,
                detail=result.detail,
                duration_ms=round(result.duration * 1000),
                at=result.at,
            )
        )

    def for_session(self, session_id: int) -> list[ProbeRun]:
        rows = self.db.scalars(
            select(ProbeRunRow).where(ProbeRunRow.session_id == session_id).order_by(ProbeRunRow.id)
        )
        return [
            ProbeRun(
                r.id,
                r.session_id,
                r.environment,
                r.probe,
                r.item_id,
                r.kind,
                r.ok,
                r.severity,
                r.summary,
                r.detail,
                r.duration_ms,
                r.at,
            )
            for r in rows
        ]
