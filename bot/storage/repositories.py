"""Repositories: deploy sessions, the audit log, environment locks and Slack message refs.

Each takes the SQLAlchemy ``Session`` of one unit of work (see :mod:`bot.storage.uow`) and
speaks in domain objects; rows never leave this module. The mapping between a session row
and a :class:`DeploySession` lives in :func:`to_domain` and :func:`apply_to_row` only.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from bot.domain import DeploySession, Event, SessionState
from bot.domain.checklist import Checklist
from bot.domain.errors import ConcurrencyConflict, DomainError, NotFound, SlotTaken
from bot.domain.session import (
    change_control_from_json,
    incident_from_json,
    policy_from_json,
    progress_from_json,
    signoffs_from_json,
)
from bot.domain.step_progress import StepProgress
from bot.domain.summary import summary_of
from bot.storage.frozen_parts import CHECKLISTS, POLICIES, digest_of
from bot.storage.models import AuditEventRow, EnvironmentLockRow, SessionRow, SlackMessageRow


def to_domain(row: SessionRow) -> DeploySession:
    """The deploy session a row holds; its ``id`` is the row's id.

    The checklist and policy come from the process's cache by digest: their JSON is read
    and validated only the first time this process meets them.
    """
    progress = row.progress
    return DeploySession(
        environment=row.environment,
        requester=row.requester,
        checklist=CHECKLISTS.get(
            row.checklist_digest, lambda: Checklist.model_validate(row.checklist)
        ),
        policy=POLICIES.get(row.policy_digest, lambda: policy_from_json(row.policy)),
        opened_at=row.opened_at,
        service=row.service,
        version=row.version,
        id=row.id,
        state=SessionState(row.state),
        items=progress_from_json(progress["items"]),
        signoffs=signoffs_from_json(progress["signoffs"]),
        closed_at=row.closed_at,
        outcome_reason=progress.get("outcome_reason"),
        incident=incident_from_json(progress.get("incident")),
        **change_control_from_json(progress),
        steps=tuple(StepProgress.from_json(step) for step in progress.get("steps", ())),
    )


def apply_to_row(session: DeploySession, row: SessionRow, *, new: bool = True) -> None:
    """Copy every domain field onto ``row`` (not ``id``, not ``revision``: the ORM owns them),
    with the summary columns lists read (:func:`bot.domain.summary.summary_of`).

    A session's checklist and policy are frozen when it opens, so an update (``new=False``)
    does not serialise and rewrite them (nor their digests).
    """
    row.environment = session.environment
    row.service = session.service
    row.version = session.version
    row.requester = session.requester
    row.state = session.state.value
    row.is_open = not session.state.is_closed
    if new:
        row.checklist = session.checklist.model_dump(mode="json")
        row.policy = session.policy_to_json()
        row.checklist_digest = digest_of(row.checklist)
        row.policy_digest = digest_of(row.policy)
        CHECKLISTS.put(row.checklist_digest, session.checklist)
        POLICIES.put(row.policy_digest, session.policy)
    row.progress = session.state_to_json()
    row.opened_at = session.opened_at
    row.closed_at = session.closed_at
    summary = summary_of(session)
    row.items_settled, row.items_total = summary.settled, summary.total
    row.items_failing, row.signoffs_missing = summary.failing, summary.missing_signoffs


@contextmanager
def conflicts_translated(db: Session, session_id: int | None = None) -> Iterator[None]:
    """Turn a failed version check at flush into :class:`ConcurrencyConflict`.

    The SQLAlchemy session is rolled back first, so the unit of work can only be discarded.
    """
    try:
        yield
    except StaleDataError as error:
        db.rollback()
        which = f"deploy #{session_id}" if session_id is not None else "this deploy"
        raise ConcurrencyConflict(
            f"Someone else changed {which} at the same moment. Try again."
        ) from error


class SessionRepository:
    """Deploy sessions. Rows loaded here are remembered so that :meth:`save` can update them."""

    def __init__(self, db: Session) -> None:
        self._db = db
        self._loaded: dict[int, SessionRow] = {}

    def add(self, session: DeploySession) -> int:
        """Insert a new session and return its id (the number people type).

        Raises:
            DomainError: a session for the same environment and service is already open; the
                unit of work is rolled back (nothing it did so far is kept).
        """
        row = SessionRow()
        apply_to_row(session, row)
        self._db.add(row)
        try:
            self._db.flush()
        except IntegrityError:
            self._db.rollback()
            existing = self.find_open(session.environment, session.service)
            if existing is None:
                raise  # some other constraint: a bug, not a user error
            what = " ".join(p for p in (session.environment, session.service) if p)
            raise SlotTaken(
                f"A deploy of {what} is already open: #{existing.id}. "
                f"Finish or abort it first (`/deploy status {existing.id}`), or queue: "
                f"`/deploy start {what} --queue`.",
                environment=session.environment,
                service=session.service,
            ) from None
        self._loaded[row.id] = row
        return row.id

    def get(self, session_id: int, *, for_update: bool = False) -> DeploySession:
        """The session with this id.

        Args:
            for_update: lock its row until the transaction ends (PostgreSQL), so that changes
                to one session queue up instead of conflicting. SQLite has one writer anyway.

        Raises:
            NotFound: there is none.
        """
        row = self._db.get(SessionRow, session_id, with_for_update=for_update or None)
        if row is None:
            raise NotFound(f"No deploy session #{session_id}. Try /deploy list.")
        return self._remember(row)

    def revision(self, session_id: int) -> int:
        """The revision of a session loaded or saved in this unit of work."""
        return self._loaded[session_id].revision

    def save(self, session: DeploySession) -> None:
        """Write a changed session back, only if nobody else changed it since it was loaded.

        The UPDATE is conditional on the revision read in this unit of work and is flushed at
        once, so a conflict surfaces here.

        Raises:
            ConcurrencyConflict: another transaction saved the session first.
            ValueError: the session was not loaded by this unit of work.
        """
        row = self._loaded.get(session.id) if session.id is not None else None
        if row is None:
            raise ValueError(f"deploy #{session.id} was not loaded in this unit of work")
        apply_to_row(session, row, new=False)
        with conflicts_translated(self._db, session.id):
            self._db.flush()

    def find_open(self, environment: str, service: str) -> DeploySession | None:
        """The open session for this environment and service, if there is one."""
        row = self._db.scalars(
            select(SessionRow).where(
                SessionRow.environment == environment,
                SessionRow.service == service,
                SessionRow.is_open,
            )
        ).first()
        return self._remember(row) if row is not None else None

    def list_open(self, environment: str | None = None) -> list[DeploySession]:
        """Open sessions, oldest first, optionally of one environment."""
        query = select(SessionRow).where(SessionRow.is_open).order_by(SessionRow.id)
        if environment is not None:
            query = query.where(SessionRow.environment == environment)
        return [self._remember(row) for row in self._db.scalars(query)]

    def list_recent(self, limit: int, *, open_only: bool = False) -> list[DeploySession]:
        """The latest ``limit`` sessions (or open sessions), newest first."""
        query = select(SessionRow).order_by(SessionRow.id.desc()).limit(limit)
        if open_only:
            query = query.where(SessionRow.is_open)
        return [self._remember(row) for row in self._db.scalars(query)]

    def environment_of(self, session_id: int) -> str | None:
        """The environment of a session, or None if there is no such session."""
        query = select(SessionRow.environment).where(SessionRow.id == session_id)
        return self._db.scalars(query).first()

    def _remember(self, row: SessionRow) -> DeploySession:
        self._loaded[row.id] = row
        return to_domain(row)


@dataclass(frozen=True)
class AuditEntry:
    """One line of the audit log as stored."""

    id: int
    session_id: int | None
    environment: str | None
    actor: str
    kind: str
    data: dict[str, Any]
    at: datetime


class AuditLog:
    """The append-only audit log (the database refuses UPDATE and DELETE on it)."""

    def __init__(self, db: Session) -> None:
        self._db = db

    def append(
        self, events: Iterable[Event], *, session_id: int | None, environment: str | None
    ) -> None:
        """Record events in the order given; written when the unit of work commits."""
        self._db.add_all(
            AuditEventRow(
                session_id=session_id,
                environment=environment,
                actor=event.actor,
                kind=event.kind,
                data=dict(event.data),
                at=event.at,
            )
            for event in events
        )

    def for_session(self, session_id: int) -> list[AuditEntry]:
        """Every entry about a session, in the order it was recorded (its columns, not ORM
        objects: a long session's report loads thousands, and they would sit in the map)."""
        a = AuditEventRow
        rows = self._db.execute(
            select(a.id, a.session_id, a.environment, a.actor, a.kind, a.data, a.at)
            .where(a.session_id == session_id)
            .order_by(a.id)
        )
        return [AuditEntry(*row) for row in rows]

    def for_environment(self, environment: str) -> list[AuditEntry]:
        """Every entry about an environment that belongs to no session (locks)."""
        rows = self._db.scalars(
            select(AuditEventRow)
            .where(AuditEventRow.environment == environment, AuditEventRow.session_id.is_(None))
            .order_by(AuditEventRow.id)
        )
        return [
            AuditEntry(r.id, r.session_id, r.environment, r.actor, r.kind, r.data, r.at)
            for r in rows
        ]


@dataclass(frozen=True)
class EnvironmentLock:
    """An environment held by someone: no deploy may start there until it is unlocked."""

    environment: str
    reason: str
    locked_by: str
    locked_at: datetime

    def describe(self) -> str:
        reason = self.reason or "no reason given"
        return (
            f"{self.environment} is locked by <@{self.locked_by}> since "
            f"{self.locked_at:%Y-%m-%d %H:%M} UTC: {reason}."
        )


class LockRepository:
    """Environment locks, one row per locked environment."""

    def __init__(self, db: Session) -> None:
        self._db = db

    def get(self, environment: str) -> EnvironmentLock | None:
        """The lock on an environment, or None when it is free."""
        row = self._db.get(EnvironmentLockRow, environment)
        return _lock(row) if row is not None else None

    def lock(self, *, environment: str, reason: str, by: str, at: datetime) -> EnvironmentLock:
        """Lock a free environment.

        Raises:
            DomainError: it is already locked (the message says by whom, why and since when).
        """
        existing = self.get(environment)
        if existing is None:
            row = EnvironmentLockRow(
                environment=environment, reason=reason, locked_by=by, locked_at=at
            )
            self._db.add(row)
            try:
                self._db.flush()
                return _lock(row)
            except IntegrityError:  # locked by someone else in the meantime
                self._db.rollback()
                existing = self.get(environment)
                if existing is None:
                    raise
        raise DomainError(f"Already locked: {existing.describe()}")

    def unlock(self, environment: str) -> EnvironmentLock:
        """Free a locked environment and return the lock that was removed.

        Raises:
            DomainError: it is not locked.
        """
        row = self._db.get(EnvironmentLockRow, environment)
        if row is None:
            raise DomainError(f"{environment} is not locked.")
        lock = _lock(row)
        self._db.delete(row)
        self._db.flush()
        return lock


def _lock(row: EnvironmentLockRow) -> EnvironmentLock:
    return EnvironmentLock(row.environment, row.reason, row.locked_by, row.locked_at)


@dataclass(frozen=True)
class SlackMessage:
    """A posted message: where it is, and which session revision and render it shows."""

    channel: str
    ts: str
    version: int = 0
    digest: str | None = None
    sent_at: datetime | None = None


class SlackMessageRepository:
    """Which Slack message (channel, ts) shows which part of a session."""

    KEY = ("session_id", "purpose")

    def __init__(self, db: Session) -> None:
        self._db = db

    def get(self, session_id: int, purpose: str) -> tuple[str, str] | None:
        """``(channel, ts)`` of the message for this purpose, if it was posted."""
        found = self._db.execute(
            select(SlackMessageRow.channel, SlackMessageRow.ts).where(
                SlackMessageRow.session_id == session_id, SlackMessageRow.purpose == purpose
            )
        ).first()
        return (found.channel, found.ts) if found is not None else None

    def put(
        self,
        session_id: int,
        purpose: str,
        channel: str,
        ts: str,
        *,
        version: int = 0,
        digest: str | None = None,
        sent_at: datetime | None = None,
    ) -> None:
        """Remember (or replace) the message for this purpose; safe when two workers race."""
        values = {
            "session_id": session_id,
            "purpose": purpose,
            "channel": channel,
            "ts": ts,
            "version": version,
            "digest": digest,
            "sent_at": sent_at,
        }
        dialect = self._db.get_bind().dialect.name
        if dialect == "postgresql":
            pg = postgresql.insert(SlackMessageRow).values(values)
            self._db.execute(
                pg.on_conflict_do_update(
                    index_elements=["session_id", "purpose"],
                    set_={k: pg.excluded[k] for k in values if k not in self.KEY},
                )
            )
        elif dialect == "sqlite":
            lite = sqlite.insert(SlackMessageRow).values(values)
            self._db.execute(
                lite.on_conflict_do_update(
                    index_elements=["session_id", "purpose"],
                    set_={k: lite.excluded[k] for k in values if k not in self.KEY},
                )
            )
        else:
            raise NotImplementedError(f"deploybot supports SQLite and PostgreSQL, not {dialect}")

    def for_session(self, session_id: int) -> dict[str, SlackMessage]:
        """Every message of a session, by purpose."""
        rows = self._db.scalars(
            select(SlackMessageRow).where(SlackMessageRow.session_id == session_id)
        )
        return {
            r.purpose: SlackMessage(r.channel, r.ts, r.version, r.digest, r.sent_at) for r in rows
        }

    def stale(self, session_id: int, purpose: str) -> None:
        """Forget which revision a message shows, so the next publication renders it again."""
        self._db.execute(
            update(SlackMessageRow)
            .where(SlackMessageRow.session_id == session_id, SlackMessageRow.purpose == purpose)
            .values(version=-1, digest=None)
        )

    def shown(
        self, session_id: int, purpose: str, *, version: int, digest: str, sent_at: datetime | None
    ) -> None:
        """Record that a message now shows ``version`` (never moves a message back in time)."""
        values: dict[str, Any] = {"version": version, "digest": digest}
        if sent_at is not None:
            values["sent_at"] = sent_at
        self._db.execute(
            update(SlackMessageRow)
            .where(
                SlackMessageRow.session_id == session_id,
                SlackMessageRow.purpose == purpose,
                SlackMessageRow.version < version,
            )
            .values(**values)
        )
