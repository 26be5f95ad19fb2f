"""Change freezes: windows when an environment takes no deploys, and overriding one.

Pure: the service layer computes the window in force from the configuration and its clock
and hands it in (``StartDeployment(frozen=...)``, :func:`admit_start`), so the rules here
are table-testable. An override is a person's decision, with a reason, to deploy inside one
window; it never opens a gate (sign-offs are still required).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot.domain.errors import DomainError
from bot.domain.policy import Action, Actor, Parties, authorize


@dataclass(frozen=True)
class FreezeWindow:
    """One occurrence of a freeze: ``starts`` to ``ends`` (aware), read in ``timezone``."""

    starts: datetime
    ends: datetime
    reason: str = ""
    timezone: str = "UTC"

    def covers(self, at: datetime) -> bool:
        return self.starts <= at < self.ends

    def local(self, at: datetime) -> datetime:
        return at.astimezone(ZoneInfo(self.timezone))

    def describe(self) -> str:
        """``Black Friday (Fri 27 Nov 00:00 CET until Mon 30 Nov 09:00 CET, 08:00 UTC)``."""
        starts, ends = self.local(self.starts), self.local(self.ends)
        utc = self.ends.astimezone(UTC)
        what = self.reason or "Change freeze"
        return (
            f"{what} ({starts:%a %d %b %H:%M %Z} until {ends:%a %d %b %H:%M %Z}, "
            f"{utc:%H:%M} UTC on {utc:%a %d %b})"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "starts": self.starts.isoformat(),
            "ends": self.ends.isoformat(),
            "reason": self.reason,
            "timezone": self.timezone,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FreezeWindow:
        return cls(
            starts=datetime.fromisoformat(data["starts"]),
            ends=datetime.fromisoformat(data["ends"]),
            reason=data.get("reason", ""),
            timezone=data.get("timezone", "UTC"),
        )


@dataclass(frozen=True)
class FreezeOverride:
    """Who decided to deploy inside ``window``, when, and why."""

    window: FreezeWindow
    by: str
    at: datetime
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "window": self.window.to_json(),
            "by": self.by,
            "at": self.at.isoformat(),
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> FreezeOverride | None:
        """``None`` (rows written before freezes existed) means no override."""
        if not data:
            return None
        return cls(
            window=FreezeWindow.from_json(data["window"]),
            by=data["by"],
            at=datetime.fromisoformat(data["at"]),
            reason=data["reason"],
        )


def frozen_message(window: FreezeWindow, doing: str, hint: str) -> str:
    """Why ``doing`` is refused during ``window``, and how to override it."""
    return f"{doing} during a change freeze: {window.describe()}. {hint}"


def override(
    window: FreezeWindow | None,
    reason: str,
    actor: Actor,
    parties: Parties,
    at: datetime,
) -> FreezeOverride:
    """An override of ``window`` by ``actor``, if the policy lets them and they say why.

    Raises:
        DomainError: no freeze is in force, or no reason was given.
        PermissionDenied: ``actor`` is not in a ``freeze_override`` role.
    """
    if window is None:
        raise DomainError("No change freeze is in force: there is nothing to override.")
    authorize(Action.OVERRIDE_FREEZE, actor, parties)
    reason = reason.strip()
    if not reason:
        raise DomainError("Say why you override the change freeze: a reason is required.")
    return FreezeOverride(window, actor.user_id, at, reason)


def admit_start(
    window: FreezeWindow | None,
    override_reason: str | None,
    actor: Actor,
    parties: Parties,
    at: datetime,
) -> FreezeOverride | None:
    """Whether a session may open now: the override it opens with, if a freeze is on.

    ``override_reason`` is what the person gave with ``--override`` (``None``: nothing).
    An override given when no freeze is in force is not needed and not recorded.

    Raises:
        DomainError: a freeze is in force and no override was asked, or it has no reason.
        PermissionDenied: the override was asked by someone not in a ``freeze_override`` role.
    """
    if window is None:
        return None
    if override_reason is None:
        raise DomainError(
            frozen_message(
                window,
                f"You can't start a deploy of {parties.environment}",
                override_hint(
                    parties, f"`/deploy start {parties.environment} --override <reason>`"
                ),
            )
        )
    return override(window, override_reason, actor, parties, at)


def override_hint(parties: Parties, how: str) -> str:
    roles = parties.freeze_overriders
    if not roles:
        return "No role may override freezes here."
    return "Members of " + ", ".join(f"`{r}`" for r in roles) + f" may override: {how}."
