"""Probe rounds in progress: which process runs each, and its heartbeat.

A round is recorded in the transaction that marks its items "running", renewed while it runs
(:func:`beat`) and ended with its last result (:func:`end_round`). A process that dies stops
renewing: once a round's heartbeat is older than a lease, any replica claims it
(:func:`claim_dead`) and marks its items interrupted. A process stopping on purpose hands
its rounds back at once (:func:`abandon`).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, timedelta

from sqlalchemy import exists, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from bot.storage.models import ProbeRoundRow

_LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


def begin_round(db: Session, *, session_id: int, owner: str, at: datetime) -> int:
    """Record a round of ``session_id`` run by ``owner``, in the caller's transaction."""
    values = {
        "session_id": session_id,
        "owner": owner,
        "started_at": at,
        "heartbeat_at": at,
        "finished_at": None,
    }
    return int(
        db.execute(insert(ProbeRoundRow).values(values).returning(ProbeRoundRow.id)).scalar_one()
    )


def beat(factory: sessionmaker[Session], round_ids: Collection[int], at: datetime) -> None:
    """Say that the rounds in ``round_ids`` are still being run."""
    if not round_ids:
        return
    with factory() as db, db.begin():
        db.execute(
            update(ProbeRoundRow)
            .where(ProbeRoundRow.id.in_(sorted(round_ids)), ProbeRoundRow.finished_at.is_(None))
            .values(heartbeat_at=at)
        )


def end_round(factory: sessionmaker[Session], round_id: int, at: datetime) -> None:
    with factory() as db, db.begin():
        db.execute(
            update(ProbeRoundRow)
            .where(ProbeRoundRow.id == round_id, ProbeRoundRow.finished_at.is_(None))
            .values(finished_at=at, heartbeat_at=at)
        )


def abandon(factory: sessionmaker[Session], round_ids: Collection[int]) -> None:
    """Hand rounds back: nobody runs them any more, whatever the lease says."""
    if not round_ids:
        return
    with factory() as db, db.begin():
        db.execute(
            update(ProbeRoundRow)
            .where(ProbeRoundRow.id.in_(sorted(round_ids)), ProbeRoundRow.finished_at.is_(None))
            .values(heartbeat_at=_LONG_AGO)
        )


def reopen(factory: sessionmaker[Session], round_ids: Collection[int]) -> None:
    """Put claimed dead rounds back, still dead, for the next sweep to try again."""
    if not round_ids:
        return
    with factory() as db, db.begin():
        db.execute(
            update(ProbeRoundRow)
            .where(ProbeRoundRow.id.in_(sorted(round_ids)))
            .values(finished_at=None, heartbeat_at=_LONG_AGO)
        )


def claim_dead(
    db: Session, *, now: datetime, stale: timedelta, limit: int = 20
) -> list[tuple[int, int]]:
    """End the rounds nobody has renewed for ``stale`` and return them as
    ``(round id, session id)``, in the caller's transaction; each is claimed once, by one
    replica (``FOR UPDATE SKIP LOCKED`` on PostgreSQL)."""
    dead = (
        select(ProbeRoundRow.id)
        .where(ProbeRoundRow.finished_at.is_(None), ProbeRoundRow.heartbeat_at < now - stale)
        .order_by(ProbeRoundRow.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = db.execute(
        update(ProbeRoundRow)
        .where(ProbeRoundRow.id.in_(dead))
        .values(finished_at=now)
        .returning(ProbeRoundRow.id, ProbeRoundRow.session_id)
        .execution_options(synchronize_session=False)
    )
    return sorted((int(r.id), int(r.session_id)) for r in rows)


def live_round(db: Session, session_id: int, *, now: datetime, stale: timedelta) -> bool:
    """Does a live process run a round of ``session_id`` now?"""
    query = select(
        exists().where(
            ProbeRoundRow.session_id == session_id,
            ProbeRoundRow.finished_at.is_(None),
            ProbeRoundRow.heartbeat_at >= now - stale,
        )
    )
    return bool(db.scalar(query))
