"""The deploy queue as people use it: join, leave, list; and what follows when an
environment frees up (the next one is called, by DM and in the channel, with a time limit)
or a turn lapses (the one after is called).

The domain decides (:mod:`bot.domain.queue`); this module reads and writes the lanes in a
unit of work, audits each move on the environment and writes the notices and the turn's
deadline as outbox rows in the same transaction, so any replica carries them out.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bot.app.home import environment_homes
from bot.config.schema import Config
from bot.domain import Event, SessionState
from bot.domain import queue as lanes
from bot.domain.errors import DomainError
from bot.domain.policy import Action
from bot.domain.queue import QueueEntry
from bot.storage.uow import UnitOfWork

if TYPE_CHECKING:
    from bot.app.effects import Change, Effects
    from bot.app.sessions import DeployService

TURN_JOB = "queue_turn"  # the ``schedule`` row that ends a called entry's turn


def until(at: datetime) -> str:
    return at.strftime("%H:%M UTC")


class DeployQueueService:
    """Join, leave and list the queues; built on the bus for who may and the clock."""

    def __init__(self, service: DeployService) -> None:
        self.service = service
        self.config: Config = service.config

    def join(
        self, *, environment: str, service: str, user_id: str, request: str | None = None
    ) -> int:
        """Queue ``user_id`` for the slot of ``environment`` and ``service``; their place
        (1: next). If the slot is free meanwhile, they are called at once.

        Raises:
            NotFound: unknown environment.
            PermissionDenied: they may not start deploys there.
            DomainError: they are already in that queue.
        """
        self.service.authorize(environment, Action.START_SESSION, user_id, request=request)
        now = self.service.clock()
        with UnitOfWork(self.service.session_factory) as uow:
            lane = uow.queue.lane(environment, service, for_update=True)
            title = " ".join(p for p in (environment, service) if p)
            lanes.check_join(lane, user_id, title)
            entry = uow.queue.add(QueueEntry(0, environment, service, user_id, now))
            audit(uow, "queue_joined", entry, now)
            if uow.sessions.find_open(environment, service) is None:
                call_next(uow, self.config, environment, service, now)
            environment_homes(uow, self.config, environment, now)
            uow.after_commit(self.service.wake)
            uow.commit()
            place = lanes.position([*lane, entry], user_id)
        self.service.done(request)
        return place or 1

    def leave(self, *, environment: str, user_id: str, request: str | None = None) -> int:
        """Take ``user_id`` out of every queue of ``environment``; how many places they left.

        Raises:
            DomainError: they are in none.
        """
        now = self.service.clock()
        with UnitOfWork(self.service.session_factory) as uow:
            mine = [e for e in uow.queue.active(environment) if e.user_id == user_id]
            if not mine:
                raise DomainError(
                    f"You are not in a queue for {environment}: `/deploy queue {environment}` "
                    "shows who is."
                )
            for entry in mine:
                lane = uow.queue.lane(entry.environment, entry.service, for_update=True)
                left = lanes.leave(lane, user_id, now)
                if not uow.queue.save([(entry, left)]):
                    raise DomainError("Your place changed at the same moment. Try again.")
                audit(uow, "queue_left", left, now)
                if entry.state is lanes.QueueState.CALLED and not uow.sessions.find_open(
                    entry.environment, entry.service
                ):
                    call_next(uow, self.config, entry.environment, entry.service, now)
            environment_homes(uow, self.config, environment, now)
            uow.after_commit(self.service.wake)
            uow.commit()
        self.service.done(request)
        return len(mine)

    def entries(self, environment: str | None = None) -> list[QueueEntry]:
        """Everyone in a queue (of ``environment``), in the order they joined."""
        with UnitOfWork(self.service.session_factory) as uow:
            return uow.queue.active(environment)

    def turn_left(self, entry_id: int, now: datetime) -> float:
        """Seconds left of a called entry's turn (0 when over, or not called any more)."""
        with UnitOfWork(self.service.session_factory) as uow:
            entry = uow.queue.get(entry_id)
        if entry is None or entry.state is not lanes.QueueState.CALLED or not entry.turn_until:
            return 0.0
        return max(0.0, (entry.turn_until - now).total_seconds())

    def lapse(self, entry_id: int, now: datetime) -> bool:
        """End a called entry's turn if it is over and still not taken; the next one is
        called. False when there was nothing to do (taken, left, or not over yet)."""
        with UnitOfWork(self.service.session_factory) as uow:
            entry = uow.queue.get(entry_id)
            if entry is None:
                return False
            lane = uow.queue.lane(entry.environment, entry.service, for_update=True)
            turn = self.config.environment(entry.environment).queue_turn
            changed = lanes.lapse(lane, entry_id, now, turn)
            if not changed:
                return False
            before = {e.id: e for e in lane}
            if not uow.queue.save((before[c.id], c) for c in changed):
                return False
            audit(uow, "queue_turn_lapsed", changed[0], now)
            for called in changed[1:]:
                announce_call(uow, self.config, called, now)
            uow.after_commit(self.service.wake)
            uow.commit()
            return True


def audit(uow: UnitOfWork, kind: str, entry: QueueEntry, at: datetime) -> None:
    data: dict[str, Any] = {"service": entry.service, "entry": entry.id}
    if entry.turn_until is not None and kind == "queue_called":
        data["until"] = entry.turn_until.isoformat()
    actor = "deploybot" if kind in ("queue_called", "queue_turn_lapsed") else entry.user_id
    event = Event(kind, actor, at, data)
    uow.audit.append([event], session_id=None, environment=entry.environment)


def call_next(
    uow: UnitOfWork, config: Config, environment: str, service: str, at: datetime
) -> None:
    """The slot is free: call the first in its queue (if nobody holds the turn)."""
    lane = uow.queue.lane(environment, service, for_update=True)
    called = lanes.call_next(lane, at, config.environment(environment).queue_turn)
    if called is None:
        return
    before = next(e for e in lane if e.id == called.id)
    if uow.queue.save([(before, called)]):
        announce_call(uow, config, called, at)


def announce_call(uow: UnitOfWork, config: Config, entry: QueueEntry, at: datetime) -> None:
    """Tell them (DM) and the environment's channel; arm the end of the turn."""
    assert entry.turn_until is not None
    audit(uow, "queue_called", entry, at)
    minutes = round((entry.turn_until - at).total_seconds() / 60)
    dm = (
        f":arrow_forward: It's your turn to deploy *{entry.title}*: "
        f"`/deploy start {entry.title}` within {minutes} min (until {until(entry.turn_until)}), "
        "or the turn passes to the next in the queue."
    )
    channel = (
        f":arrow_forward: {entry.title} is free: <@{entry.user_id}> is next in the queue, "
        f"until {until(entry.turn_until)}."
    )
    stamp = f"{entry.id}:{entry.turn_until.isoformat()}"
    for key, where, text in (("dm", entry.user_id, dm), ("channel", None, channel)):
        uow.enqueue(
            topic="slack",
            key=f"queue:{stamp}:{key}",
            payload={
                "kind": "announce",
                "channel": where or config.environment(entry.environment).channel,
                "text": text,
            },
            at=at,
        )
    deadline = f"{TURN_JOB}:{stamp}"
    payload = {"job": TURN_JOB, "entry_id": entry.id, "key": deadline}
    uow.enqueue(topic="schedule", key=deadline, payload=payload, at=at, due=entry.turn_until)


CLOSED = frozenset(s.value for s in SessionState if s.is_closed)


def freed(events: Sequence[Event]) -> bool:
    """Whether the change closed the session (completed, aborted, rolled back, expired)."""
    return any(e.kind == "state_changed" and str(e.data.get("to")) in CLOSED for e in events)


def queue_follow_up(fx: Effects, uow: UnitOfWork, change: Change) -> None:
    """A session opened: its requester's place is taken. A session closed: the next one in
    its queue is called."""
    session, at = change.after, change.events[-1].at
    if any(e.kind == "session_opened" for e in change.events):
        lane = uow.queue.lane(session.environment, session.service, for_update=True)
        taken = lanes.take(lane, session.requester, at)
        if taken is not None:
            before = next(e for e in lane if e.id == taken.id)
            if uow.queue.save([(before, taken)]):
                audit(uow, "queue_taken", taken, at)
    if freed(change.events):
        call_next(uow, fx.config, session.environment, session.service, at)
