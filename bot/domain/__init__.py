"""The pure deploy domain: sessions, their state machine and policy. No I/O here."""

from bot.domain.commands import Command
from bot.domain.events import Event
from bot.domain.policy import Actor, SessionPolicy, SignOffRule
from bot.domain.session import DeploySession, ItemProgress, ItemStatus, SessionState
from bot.domain.transitions import SYSTEM, TRANSITIONS, Outcome, apply

__all__ = [
    "SYSTEM",
    "TRANSITIONS",
    "Actor",
    "Command",
    "DeploySession",
    "Event",
    "ItemProgress",
    "ItemStatus",
    "Outcome",
    "SessionPolicy",
    "SessionState",
    "SignOffRule",
    "apply",
]
