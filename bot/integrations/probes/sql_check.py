"""SQL probe: run one query in a transaction that is rolled back; compare its first value."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.pool import NullPool

from bot.config.probe_specs import SqlProbe
from bot.integrations.probes.base import ProbeConfigError, ProbeContext, ProbeOutcome

SHOWN = 200


def check(spec: SqlProbe, ctx: ProbeContext) -> ProbeOutcome:
    """Connect to the database in ``$url_env``, run ``spec.query``, roll back.

    Connecting and the query are bounded by ``spec.timeout``: libpq's ``connect_timeout``
    (whole seconds, at least 2) and ``statement_timeout`` on PostgreSQL; the lock wait and
    an interrupt of the running statement on SQLite. The transaction is read-only where
    the database can say so (PostgreSQL ``READ ONLY``, SQLite ``query_only``) and is rolled
    back in any case. The URL and its password are registered for redaction.

    Args:
        spec: The probe as configured.
        ctx: Where the database URL comes from.

    Returns:
        Passed when the query runs and, if ``expect`` is given, the first column of the
        first row equals it.

    Raises:
        ProbeConfigError: The variable is unset, is not a database URL, names a driver
            that is not installed, or names a SQLite file that does not exist.
    """
    url = _url(ctx, spec.url_env)
    timeout = spec.timeout.total_seconds()
    backend = url.get_backend_name()
    try:
        engine = create_engine(
            url, poolclass=NullPool, connect_args=_connect_args(backend, timeout)
        )
    except (ArgumentError, NoSuchModuleError, ImportError) as error:
        raise ProbeConfigError(f"cannot use the URL in {spec.url_env}: {error}") from None
    started = time.monotonic()
    try:
        with engine.connect() as connection:
            _bound(connection, backend, started + timeout)
            row = connection.execute(text(spec.query)).first()
            connection.rollback()
    except DBAPIError as error:
        reason = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
        if time.monotonic() - started >= timeout:
            return ProbeOutcome(False, f"timed out after {timeout:g}s: {reason}", str(error.orig))
        return ProbeOutcome(False, f"query failed: {reason}", f"{spec.query}\n{error.orig}")
    finally:
        engine.dispose()
    elapsed_ms = (time.monotonic() - started) * 1000
    value = row[0] if row is not None else None
    shown = repr(value)[:SHOWN]
    detail = f"{spec.query}\nfirst row: {repr(tuple(row))[:SHOWN] if row is not None else 'none'}"
    if spec.expect is None:
        got = f"returned {shown}" if row is not None else "returned no rows"
        return ProbeOutcome(True, f"{got} in {elapsed_ms:.0f} ms", detail)
    if row is None:
        return ProbeOutcome(False, f"returned no rows (expected {spec.expect!r})", detail)
    if value != spec.expect and str(value) != str(spec.expect):
        return ProbeOutcome(False, f"returned {shown} (expected {spec.expect!r})", detail)
    return ProbeOutcome(True, f"returned {shown} in {elapsed_ms:.0f} ms", detail)


def _url(ctx: ProbeContext, variable: str) -> URL:
    raw = ctx.env(variable)
    try:
        url = make_url(raw)
    except ArgumentError:
        raise ProbeConfigError(f"{variable} is not a database URL") from None
    if url.password:
        ctx.secrets.append(str(url.password))
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")  # psycopg 3 is the driver we ship
    database = url.database or ""
    on_disk = database not in ("", ":memory:") and not database.startswith("file:")
    if url.get_backend_name() == "sqlite" and on_disk and not Path(database).is_file():
        # Connecting would create an empty file: a probe must not write.
        raise ProbeConfigError(f"SQLite database {database} not found")
    return url


def _connect_args(backend: str, timeout: float) -> dict[str, Any]:
    if backend == "sqlite":
        return {"timeout": timeout}
    if backend in ("postgresql", "mysql", "mariadb"):
        return {"connect_timeout": max(1, math.ceil(timeout))}
    return {}


def _bound(connection: Connection, backend: str, deadline: float) -> None:
    """Make the transaction read-only and stop the statement at ``deadline``."""
    if backend == "postgresql":
        connection.execute(text("SET TRANSACTION READ ONLY"))
        remaining_ms = max(1, int((deadline - time.monotonic()) * 1000))
        connection.execute(text(f"SET LOCAL statement_timeout = {remaining_ms}"))
    elif backend == "sqlite":
        connection.execute(text("PRAGMA query_only = ON"))
        dbapi = connection.connection.dbapi_connection
        if dbapi is not None and hasattr(dbapi, "set_progress_handler"):
            dbapi.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
