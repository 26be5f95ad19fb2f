"""What was deployed before: the version a deploy step's ``{previous_version}`` names."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.storage.models import SessionRow


def previous_version(db: Session, *, environment: str, service: str, before: int) -> str:
    """The version of the last completed deploy of ``environment`` (and ``service``) opened
    before session ``before``; empty when there is none."""
    query = (
        select(SessionRow.version)
        .where(
            SessionRow.environment == environment,
            SessionRow.service == service,
            SessionRow.state == "completed",
            SessionRow.version != "",
            SessionRow.id < before,
        )
        .order_by(SessionRow.id.desc())
        .limit(1)
    )
    return db.scalars(query).first() or ""
