"""Promotion order: a version reaches an environment only after it completed in another.

Pure: the service layer reads the completed deploys of the required environment (same
service and version) and hands them in with the time; :func:`check_promotion` picks the one
that admits the deploy, or refuses saying what is missing and what to do.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bot.domain.errors import DomainError


@dataclass(frozen=True)
class PromotionRule:
    """``requires: {environment: staging, within: 7d}``: a deploy here needs the same
    service and version to have completed in ``environment`` less than ``within`` ago."""

    environment: str
    within: timedelta

    def to_json(self) -> dict[str, Any]:
        return {"environment": self.environment, "within": self.within.total_seconds()}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> PromotionRule | None:
        if not data:
            return None
        return cls(data["environment"], timedelta(seconds=data["within"]))


@dataclass(frozen=True)
class CompletedDeploy:
    """A session that completed: the evidence a promotion points to."""

    session_id: int
    environment: str
    service: str
    version: str
    completed_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "environment": self.environment,
            "service": self.service,
            "version": self.version,
            "completed_at": self.completed_at.isoformat(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> CompletedDeploy | None:
        """``None`` (rows written before promotions existed) means none."""
        if not data:
            return None
        return cls(
            session_id=data["session_id"],
            environment=data["environment"],
            service=data["service"],
            version=data["version"],
            completed_at=datetime.fromisoformat(data["completed_at"]),
        )


def check_promotion(
    rule: PromotionRule | None,
    *,
    environment: str,
    service: str,
    version: str,
    completed: Iterable[CompletedDeploy],
    at: datetime,
) -> CompletedDeploy | None:
    """The deploy of ``rule.environment`` that lets ``service`` ``version`` into
    ``environment`` at ``at`` (the latest that qualifies); ``None`` when no rule applies.

    Args:
        completed: completed deploys, of any environment, service and version (only those
            that match count).

    Raises:
        DomainError: no deploy qualifies; the message says what is missing and what to do.
    """
    if rule is None:
        return None
    what = " ".join(p for p in (service, version) if p) or "this deploy"
    first = f"`/deploy start {rule.environment} {service or '<service>'} {version or '<version>'}`"
    if not version:
        raise DomainError(
            f"{environment} takes only versions that completed in {rule.environment} within "
            f"{_span(rule.within)}: give the version, e.g. "
            f"`/deploy start {environment} {service or '<service>'} <version>`."
        )
    same = [
        d
        for d in completed
        if (d.environment, d.service, d.version) == (rule.environment, service, version)
        and d.completed_at <= at
    ]
    fresh = [d for d in same if at - d.completed_at <= rule.within]
    if fresh:
        return max(fresh, key=lambda d: d.completed_at)
    if same:
        latest = max(same, key=lambda d: d.completed_at)
        raise DomainError(
            f"{environment} needs {what} to have completed in {rule.environment} within "
            f"{_span(rule.within)}, but its last {rule.environment} deploy "
            f"(#{latest.session_id}) completed {latest.completed_at:%Y-%m-%d %H:%M} UTC, "
            f"{_span(at - latest.completed_at)} ago. Deploy it to {rule.environment} again "
            f"first: {first}."
        )
    raise DomainError(
        f"{environment} needs {what} to have completed in {rule.environment} within "
        f"{_span(rule.within)}, and no {rule.environment} deploy of it has completed. "
        f"Deploy it to {rule.environment} first: {first}."
    )


def _span(span: timedelta) -> str:
    """``7d``, ``36h``, ``90m``: the largest whole unit."""
    minutes = int(span.total_seconds() // 60)
    if minutes and minutes % (24 * 60) == 0:
        return f"{minutes // (24 * 60)}d"
    if minutes and minutes % 60 == 0:
        return f"{minutes // 60}h"
    if minutes >= 24 * 60:
        return f"{minutes // (24 * 60)}d {minutes % (24 * 60) // 60}h"
    return f"{minutes}m"
