"""Database plumbing: engines, session factories and the Alembic migrations.

Nothing connects at import time; the runtime calls these at start-up.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from contextlib import AbstractContextManager
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_S = 30


def default_database_url() -> str:
    """``$DATABASE_URL``, else a SQLite file ``deploybot.db`` in the working directory."""
    return os.environ.get("DATABASE_URL") or "sqlite:///deploybot.db"


def make_engine(url: str) -> Engine:
    """An engine configured for deploybot's two databases.

    SQLite: usable from several threads, waits up to 30 s for a lock, enforces foreign keys
    and uses WAL so that readers don't block the writer. PostgreSQL (psycopg 3): pooled
    connections are checked before use, so a restarted server costs no failed request.
    ``postgresql://`` and ``postgres://`` URLs are taken to mean psycopg 3.
    """
    parsed = _with_driver(make_url(url))
    serializer = _json_dumps
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(
            parsed,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S},
            json_serializer=serializer,
        )
        event.listen(engine, "connect", _sqlite_on_connect)
        return engine
    return create_engine(parsed, pool_pre_ping=True, json_serializer=serializer)


# One lock per SQLite database file in this process (see :func:`taking_turns`).
_SQLITE_TURNS: dict[str, threading.RLock] = {}
_SQLITE_TURNS_LOCK = threading.Lock()


def taking_turns(factory: sessionmaker[Session]) -> AbstractContextManager[object]:
    """Units of work on one SQLite file take turns through an in-process lock.

    SQLite has a single writer, and its busy handler makes a waiting writer sleep up to
    100 ms between tries: under a burst of clicks a short transaction waited over a second
    (the ack benchmark's p99). Waiting in line on a lock costs no sleep. Re-entrant, so a
    unit of work may open another in the same thread. PostgreSQL needs none: sessions are
    row-locked and everything else runs concurrently.
    """
    bind = factory.kw.get("bind")
    if not isinstance(bind, Engine) or bind.dialect.name != "sqlite":
        return contextlib.nullcontext()
    key = str(bind.url.database)
    with _SQLITE_TURNS_LOCK:
        return _SQLITE_TURNS.setdefault(key, threading.RLock())


def database_unreachable(error: BaseException) -> bool:
    """True when ``error`` (or what caused it) says the database is out of reach: refused
    or lost connections, a server shutting down, a pool waiting in vain, a SQLite file that
    can't be opened or stays locked. Not for errors in a query itself (constraints, syntax).
    """
    seen: BaseException | None = error
    for _ in range(5):  # the error, and what it was raised from
        if seen is None:
            return False
        if isinstance(seen, OperationalError | InterfaceError | PoolTimeout):
            return True
        if isinstance(seen, DBAPIError) and seen.connection_invalidated:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """The factory units of work open their SQLAlchemy sessions from."""
    return sessionmaker(engine)


def alembic_config(url: str | None = None) -> Config:
    """Alembic's configuration, built in code: no ``alembic.ini`` to ship or find."""
    config = Config()
    config.set_main_option("script_location", str(_migrations_dir()))
    # Date-prefixed revisions: `2026_11_23_0001_initial.py` (pass --rev-id when creating one).
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str) -> str:
    """Migrate the database at ``url`` to the latest revision; safe to run again.

    Returns:
        The head revision the database is now at.
    """
    config = alembic_config(url)
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    finally:
        engine.dispose()
    head = ScriptDirectory.from_config(config).get_current_head()
    if head is None:
        raise RuntimeError("the migrations package holds no revision")
    return head


def migrations_current(engine: Engine) -> bool:
    """Whether the database answers and its schema is at the latest migration.

    Returns False for a database that was never migrated or is behind.

    Raises:
        sqlalchemy.exc.OperationalError: the database cannot be reached.
    """
    heads = set(ScriptDirectory.from_config(alembic_config()).get_heads())
    with engine.connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
    return current == heads


def sqlite_file(url: URL | str) -> Path | None:
    """The file of a SQLite database URL; None for another database or an in-memory one."""
    parsed = make_url(url) if isinstance(url, str) else url
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    name = parsed.database
    if name.startswith("file:"):  # a URI filename (``?uri=true``)
        name = name.removeprefix("file:").split("?", 1)[0]
        if name in ("", ":memory:") or parsed.query.get("mode") == "memory":
            return None
    return Path(name)


def schema_problem(engine: Engine) -> str | None:
    """Why the database can't be used as it is (missing, not migrated, behind), or None.

    Creates nothing: a SQLite file that does not exist is reported, not opened (opening it
    would create an empty one).

    Raises:
        sqlalchemy.exc.OperationalError: the database cannot be reached.
    """
    path = sqlite_file(engine.url)
    if path is not None and not path.exists():
        return f"there is no database at {path}"
    if not migrations_current(engine):
        return "the database schema is not current"
    return None


def _migrations_dir() -> Path:
    """The installed ``migrations`` package's directory (regular or namespace package)."""
    import migrations

    for entry in migrations.__path__:
        if (Path(entry) / "env.py").is_file():
            return Path(entry)
    raise RuntimeError("the migrations package has no env.py")


def _with_driver(url: URL) -> URL:
    if url.drivername in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+psycopg")
    return url


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        # With WAL, NORMAL keeps the database consistent and makes each commit much cheaper.
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _json_default(value: object) -> object:
    """Audit data may carry timestamps and enums; store them the way reports print them."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, set | frozenset):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _json_dumps(value: object) -> str:
    return json.dumps(value, default=_json_default)
