"""What lists show about a deploy session, without its checklist.

Storage keeps these figures in columns beside the session, written by every save, so that
``/deploy list`` reads a few small columns instead of parsing every session's checklist.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.domain.session import DeploySession, ItemStatus, SessionState


@dataclass(frozen=True)
class SessionSummary:
    """A session's headline: who deploys what, its state, and how far it got."""

    id: int | None
    environment: str
    service: str
    version: str
    requester: str
    state: SessionState
    settled: int  # items done or skipped, children included
    total: int  # items in the checklist, children included
    failing: int  # items whose probe failed
    missing_signoffs: int  # sign-offs the policy asks for that nobody gave yet
    opened_at: datetime
    closed_at: datetime | None = None

    @property
    def title(self) -> str:
        parts = [self.environment, self.service, self.version]
        return " ".join(p for p in parts if p)


def summary_of(session: DeploySession) -> SessionSummary:
    """The summary of a session, computed from its checklist, progress and policy."""
    settled, total = session.totals
    failing = sum(
        1
        for _, item in session.checklist.walk()
        if session.progress(item.id).status is ItemStatus.FAILED
    )
    return SessionSummary(
        id=session.id,
        environment=session.environment,
        service=session.service,
        version=session.version,
        requester=session.requester,
        state=session.state,
        settled=settled,
        total=total,
        failing=failing,
        missing_signoffs=len(session.missing_signoffs()),
        opened_at=session.opened_at,
        closed_at=session.closed_at,
    )


@dataclass(frozen=True)
class SessionPage:
    """One page of open sessions, oldest first, and how many there are in all."""

    summaries: tuple[SessionSummary, ...]
    total: int
    number: int  # 1-based
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def has_next(self) -> bool:
        return self.number < self.pages
