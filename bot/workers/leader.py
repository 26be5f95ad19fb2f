"""Leader election: exactly one replica runs the scheduler.

APScheduler 3 must not share a job store between live schedulers, so only the holder of the
leader lock starts one. On PostgreSQL the lock is a session-level advisory lock held on a
dedicated connection: it dies with the process (or its connection), and another replica
takes it on its next try. On SQLite (one host) an exclusive ``flock`` on a file beside the
database plays the same part.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from pathlib import Path
from typing import IO, Protocol

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

log = logging.getLogger(__name__)

# Any fixed 64-bit number: the advisory lock's name for "deploybot's scheduler".
ADVISORY_KEY = 0x6465706C6F79  # "deploy"


class LeaderLock(Protocol):
    def try_acquire(self) -> bool:
        """Take the lock if it is free; True when this process holds it."""
        ...

    def still_held(self) -> bool:
        """False once the lock is lost (connection gone); the scheduler must stop then."""
        ...

    def release(self) -> None: ...


class AdvisoryLock:
    """``pg_try_advisory_lock`` on a connection of its own, outside any pool."""

    def __init__(self, url: str) -> None:
        self._engine: Engine = create_engine(url, poolclass=NullPool)
        self._connection: Connection | None = None

    def try_acquire(self) -> bool:
        if self._connection is not None:
            return self.still_held()
        connection = self._engine.connect()
        got = connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_KEY})
        if got.scalar_one():
            connection.commit()
            self._connection = connection
            return True
        connection.close()
        return False

    def still_held(self) -> bool:
        if self._connection is None:
            return False
        try:
            self._connection.execute(text("SELECT 1"))
            self._connection.commit()
            return True
        except Exception:
            log.warning("lost the scheduler leader lock's connection")
            self._drop()
            return False

    def release(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_KEY})
            self._drop()
        self._engine.dispose()

    def _drop(self) -> None:
        with contextlib.suppress(Exception):
            if self._connection is not None:
                self._connection.close()
        self._connection = None


class FileLock:
    """An exclusive, non-blocking ``flock``; the kernel frees it when the process dies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[bytes] | None = None

    def try_acquire(self) -> bool:
        if self._file is not None:
            return True
        handle = open(self.path, "a+b")  # noqa: SIM115 - held open for as long as we lead
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._file = handle
        return True

    def still_held(self) -> bool:
        return self._file is not None

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def leader_lock_for(url: str) -> LeaderLock:
    """The right lock for the database the replicas share."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        return AdvisoryLock(url)
    database = parsed.database or ""
    if parsed.get_backend_name() == "sqlite" and database and database != ":memory:":
        return FileLock(Path(database).with_name(Path(database).name + ".scheduler.lock"))
    raise ValueError(
        f"the scheduler needs PostgreSQL or a SQLite file, not {parsed.get_backend_name()} "
        f"'{database or 'in memory'}' (an in-memory database cannot keep schedules)"
    )


def describe(lock: LeaderLock) -> str:
    return f"{type(lock).__name__} in process {os.getpid()}"
