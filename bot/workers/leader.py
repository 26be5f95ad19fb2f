"""Leader election: exactly one replica per installation runs the scheduler.

Only the holder of the leader lock runs scheduled jobs. On PostgreSQL the lock is a
session-level advisory lock held on a dedicated connection: it dies with the process (or its
connection), and another replica takes it on its next try. Advisory locks are server-wide,
so the key is derived from the installation (its database and schema, or a configured name):
two installations on one server each get a leader. On SQLite (one host) an exclusive
``flock`` on a file beside the database file plays the same part; the file names the
installation.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
from pathlib import Path
from typing import IO, Protocol

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

log = logging.getLogger(__name__)


def advisory_key(installation: str) -> int:
    """The advisory lock key of an installation's scheduler: a stable signed 64-bit hash.

    Stable across processes and Python versions (unlike ``hash()``), and signed because
    ``pg_try_advisory_lock`` takes a ``bigint``.
    """
    digest = hashlib.sha256(f"deploybot scheduler: {installation}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class LeaderLock(Protocol):
    def try_acquire(self) -> bool:
        """Take the lock if it is free; True when this process holds it."""
        ...

    def still_held(self) -> bool:
        """False once the lock is lost (connection gone); the scheduler must stop then."""
        ...

    def release(self) -> None: ...


class AdvisoryLock:
    """``pg_try_advisory_lock`` on a connection of its own, outside any pool.

    Args:
        url: the installation's database.
        installation: a configured name for the installation; None derives it from the
            database and schema the connection lands in.
    """

    def __init__(self, url: str, *, installation: str | None = None) -> None:
        self._engine: Engine = create_engine(url, poolclass=NullPool)
        self._connection: Connection | None = None
        self.installation = installation or None
        self.key = advisory_key(installation) if installation else None

    def try_acquire(self) -> bool:
        if self._connection is not None:
            return self.still_held()
        connection = self._engine.connect()
        held = False
        try:
            key = self.key if self.key is not None else self._derive_key(connection)
            got = connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key})
            held = bool(got.scalar_one())
            if held:
                connection.commit()
                self._connection = connection
        finally:
            if not held:
                connection.close()
        return held

    def _derive_key(self, connection: Connection) -> int:
        """Name the installation by the database and the schema its tables live in.

        The server is asked rather than the URL parsed: ``current_schema()`` is where the
        tables are, however the search path was set (``options`` in the URL, ``PGOPTIONS``,
        ``ALTER ROLE ... SET search_path``).
        """
        query = (
            "SELECT current_database(), coalesce(current_schema(), current_setting('search_path'))"
        )
        database, schema = connection.execute(text(query)).one()
        connection.commit()
        self.installation = f"{database}/{schema}"
        self.key = advisory_key(self.installation)
        return self.key

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
                self._connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
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


def leader_lock_for(url: str, *, installation: str | None = None) -> LeaderLock:
    """The right lock for the database the replicas share.

    Args:
        url: the database URL.
        installation: ``DEPLOYBOT_INSTALLATION``; names the installation on PostgreSQL
            (empty or None: its database and schema do). On SQLite the database file does.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        return AdvisoryLock(url, installation=installation or None)
    database = parsed.database or ""
    if parsed.get_backend_name() == "sqlite" and database and database != ":memory:":
        return FileLock(Path(database).with_name(Path(database).name + ".scheduler.lock"))
    raise ValueError(
        f"the scheduler needs PostgreSQL or a SQLite file, not {parsed.get_backend_name()} "
        f"'{database or 'in memory'}' (an in-memory database cannot keep schedules)"
    )


def describe(lock: LeaderLock) -> str:
    """Which lock, for which installation, in which process (for the logs)."""
    if isinstance(lock, AdvisoryLock):
        return f"advisory lock of installation {lock.installation!r} in process {os.getpid()}"
    if isinstance(lock, FileLock):
        return f"file lock {lock.path} in process {os.getpid()}"
    return f"{type(lock).__name__} in process {os.getpid()}"
