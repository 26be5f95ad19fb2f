"""Builds the running parts from settings, in one place, at start-up (never at import)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from bot.app.sessions import DeployService, RoleResolver
from bot.config.loader import load_config
from bot.config.schema import Config
from bot.storage.db import make_engine, make_sessionmaker


@dataclass
class Runtime:
    config: Config
    database_url: str
    engine: Engine
    session_factory: sessionmaker[Session]
    service: DeployService


def build_runtime(
    *,
    config_path: str | Path | None = None,
    database_url: str | None = None,
    roles: RoleResolver | None = None,
) -> Runtime:
    """Load the config (raising ConfigError) and connect the database lazily."""
    from bot.ops.settings import get_settings

    settings = get_settings()
    config = load_config(config_path or settings.config_path)
    url = database_url or settings.database_url
    engine = make_engine(url)
    factory = make_sessionmaker(engine)
    service = DeployService(config=config, session_factory=factory, roles=roles)
    return Runtime(config, url, engine, factory, service)
