"""What a change to a session calls for beyond the session itself, after the event table's
rules (:data:`bot.app.effects.EFFECTS`): the environment's queue moves on, reminders reach
people by DM, and the App Home of everyone concerned is published again.

Each is a function of the whole change, run in the bus's unit of work."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from bot.app.home import home_follow_up
from bot.app.queue import queue_follow_up
from bot.app.reminders import reminder_dms
from bot.storage.uow import UnitOfWork

if TYPE_CHECKING:
    from bot.app.effects import Change, Effects

FollowUp = Callable[["Effects", UnitOfWork, "Change"], None]

FOLLOW_UPS: tuple[FollowUp, ...] = (queue_follow_up, reminder_dms, home_follow_up)
