"""The pure deploy domain: sessions, their state machine and policy. No I/O here."""

from bot.domain.commands import Command
from bot.domain.events import Event
from bot.domain.policy import (
    POLICY,
    Action,
    Actor,
    EnvironmentPolicy,
    Parties,
    Party,
    SessionPolicy,
    SignOffRule,
    authorize,
)
from bot.domain.session import DeploySession, Incident, ItemProgress, ItemStatus, SessionState
from bot.domain.transitions import SYSTEM, TRANSITIONS, Outcome, apply

__all__ = [
    "POLICY",
    "SYSTEM",
    "TRANSITIONS",
    "Action",
    "Actor",
    "Command",
    "DeploySession",
    "EnvironmentPolicy",
    "Event",
    "Incident",
    "ItemProgress",
    "ItemStatus",
    "Outcome",
    "Parties",
    "Party",
    "SessionPolicy",
    "SessionState",
    "SignOffRule",
    "apply",
    "authorize",
]
