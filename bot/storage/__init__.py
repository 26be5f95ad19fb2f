"""Persistence: typed SQLAlchemy models, repositories and the unit of work."""

from bot.storage.repositories import AuditEntry, EnvironmentLock
from bot.storage.uow import UnitOfWork, run_in_transaction

__all__ = ["AuditEntry", "EnvironmentLock", "UnitOfWork", "run_in_transaction"]
