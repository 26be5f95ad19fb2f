"""The deploy queue: who waits for an environment's slot, and whose turn it is.

Pure. A *lane* is the queue of one environment and service (the slot a session takes). An
entry waits; when the slot frees, the first waiting entry is *called* and has until
``turn_until`` to start its deploy (it is then *taken*); a turn not taken in time *lapses*
and the next entry is called. Anyone may *leave* while waiting or called.
:data:`TRANSITIONS` is the one table of what may happen to an entry; the lane functions
below decide which entry it happens to.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType

from bot.domain.errors import DomainError


class QueueState(StrEnum):
    WAITING = "waiting"
    CALLED = "called"  # it is their turn, until ``turn_until``
    TAKEN = "taken"  # they started their deploy
    LEFT = "left"
    LAPSED = "lapsed"  # the turn passed unused

    @property
    def is_active(self) -> bool:
        return self in (QueueState.WAITING, QueueState.CALLED)


class QueueMove(StrEnum):
    CALL = "call"
    TAKE = "take"
    LEAVE = "leave"
    LAPSE = "lapse"


S, M = QueueState, QueueMove
TRANSITIONS: Mapping[tuple[QueueState, QueueMove], QueueState] = MappingProxyType(
    {
        (S.WAITING, M.CALL): S.CALLED,
        (S.WAITING, M.TAKE): S.TAKEN,  # the slot was free when they started anyway
        (S.WAITING, M.LEAVE): S.LEFT,
        (S.CALLED, M.TAKE): S.TAKEN,
        (S.CALLED, M.LEAVE): S.LEFT,
        (S.CALLED, M.LAPSE): S.LAPSED,
    }
)


@dataclass(frozen=True)
class QueueEntry:
    """One person waiting for the slot of ``environment`` and ``service``."""

    id: int
    environment: str
    service: str
    user_id: str
    joined_at: datetime
    state: QueueState = QueueState.WAITING
    called_at: datetime | None = None
    turn_until: datetime | None = None

    @property
    def lane(self) -> tuple[str, str]:
        return self.environment, self.service

    @property
    def title(self) -> str:
        return " ".join(p for p in (self.environment, self.service) if p)


def move(entry: QueueEntry, what: QueueMove, at: datetime, turn: timedelta) -> QueueEntry:
    """``entry`` after ``what`` at ``at`` (a call gives a turn of ``turn``).

    Raises:
        DomainError: the table does not allow it.
    """
    target = TRANSITIONS.get((entry.state, what))
    if target is None:
        raise DomainError(f"A queue entry that is {entry.state} can't {what}.")
    if what is QueueMove.CALL:
        return replace(entry, state=target, called_at=at, turn_until=at + turn)
    return replace(entry, state=target)


def active(lane: Sequence[QueueEntry]) -> list[QueueEntry]:
    """The entries still in the queue, in the order they are served (who joined first)."""
    return sorted((e for e in lane if e.state.is_active), key=lambda e: (e.joined_at, e.id))


def position(lane: Sequence[QueueEntry], user_id: str) -> int | None:
    """1 for the first in line, None when ``user_id`` is not in the queue."""
    for n, entry in enumerate(active(lane), start=1):
        if entry.user_id == user_id:
            return n
    return None


def check_join(lane: Sequence[QueueEntry], user_id: str, title: str) -> None:
    """Refuse a second place in the same queue.

    Raises:
        DomainError: ``user_id`` is already in it (the message says where).
    """
    where = position(lane, user_id)
    if where is not None:
        raise DomainError(
            f"You are already in the queue for {title} (number {where}). "
            f"`/deploy queue leave {title.split()[0]}` leaves it."
        )


def call_next(lane: Sequence[QueueEntry], at: datetime, turn: timedelta) -> QueueEntry | None:
    """The slot is free: the first waiting entry, called (None when one already holds the
    turn, or nobody waits)."""
    queue = active(lane)
    if any(e.state is QueueState.CALLED for e in queue):
        return None
    return move(queue[0], QueueMove.CALL, at, turn) if queue else None


def lapse(
    lane: Sequence[QueueEntry], entry_id: int, at: datetime, turn: timedelta
) -> list[QueueEntry]:
    """The turn of entry ``entry_id`` came to its end: the entries that change (it lapsed,
    the next one is called); nothing when it was taken, left, or its turn is not over."""
    entry = next((e for e in lane if e.id == entry_id), None)
    if entry is None or entry.state is not QueueState.CALLED:
        return []
    assert entry.turn_until is not None
    if at < entry.turn_until:
        return []
    lapsed = move(entry, QueueMove.LAPSE, at, turn)
    rest = [lapsed if e.id == entry_id else e for e in lane]
    following = call_next(rest, at, turn)
    return [lapsed, *([following] if following else [])]


def turn_holder(lane: Sequence[QueueEntry], at: datetime) -> QueueEntry | None:
    """Who holds the turn at ``at`` (called, and not yet past ``turn_until``)."""
    return next(
        (
            e
            for e in lane
            if e.state is QueueState.CALLED and e.turn_until is not None and at < e.turn_until
        ),
        None,
    )


def check_turn(lane: Sequence[QueueEntry], user_id: str, at: datetime) -> None:
    """Refuse a start while someone else holds the turn: they are admitted ahead of others.

    Raises:
        DomainError: another person's turn (the message says whose, and until when).
    """
    holder = turn_holder(lane, at)
    if holder is None or holder.user_id == user_id:
        return
    assert holder.turn_until is not None
    until = holder.turn_until.strftime("%H:%M UTC")
    raise DomainError(
        f"It is <@{holder.user_id}>'s turn to deploy {holder.title} (from the queue) until "
        f"{until}. Wait, or join the queue: `/deploy start {holder.title} --queue`."
    )


def take(lane: Sequence[QueueEntry], user_id: str, at: datetime) -> QueueEntry | None:
    """``user_id`` opened a session of the lane: their entry, taken (None if they had none)."""
    mine = next((e for e in active(lane) if e.user_id == user_id), None)
    return move(mine, QueueMove.TAKE, at, timedelta(0)) if mine else None


def leave(lane: Sequence[QueueEntry], user_id: str, at: datetime) -> QueueEntry:
    """``user_id`` leaves the lane.

    Raises:
        DomainError: they are not in it.
    """
    mine = next((e for e in active(lane) if e.user_id == user_id), None)
    if mine is None:
        raise DomainError("You are not in that queue: `/deploy queue <env>` shows who is.")
    return move(mine, QueueMove.LEAVE, at, timedelta(0))
