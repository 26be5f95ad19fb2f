"""Database fixtures: every storage test runs on SQLite and on PostgreSQL.

PostgreSQL tests get a schema of their own (so they run in parallel under pytest-xdist),
built by the migrations, never by ``create_all``. Outside CI a missing server skips them;
in CI (``CI=true``) it fails the run.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from bot.storage.db import make_engine, make_sessionmaker, upgrade

pytest_plugins = [
    "tests.support.health",  # the `health` endpoint fixture
    "tests.support.moto",  # `moto_endpoint`: a moto server per test module
]

DEFAULT_TEST_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _postgres_unavailable(reason: str) -> None:
    message = f"PostgreSQL is not reachable ({reason}); set TEST_DATABASE_URL or start it"
    if os.environ.get("CI") == "true":
        pytest.fail(message + " (PostgreSQL tests never skip in CI)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database: a fresh SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'deploybot.db'}"
        return
    admin_url = os.environ.get("TEST_DATABASE_URL", DEFAULT_TEST_DATABASE_URL)
    schema = f"test_{uuid.uuid4().hex}"
    admin = make_engine(admin_url)
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except OperationalError as error:
        admin.dispose()
        _postgres_unavailable(str(error.orig).strip().splitlines()[0])
    # search_path in the URL: alembic and the application both land in the schema.
    url = make_url(admin_url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on a database migrated to the latest revision."""
    upgrade(database_url)
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def session_factory(engine: Engine) -> sessionmaker[Session]:
    return make_sessionmaker(engine)
