"""Publishes a person's App Home (``views.publish``): on ``app_home_opened``, and for the
``slack`` outbox rows of kind ``home`` that changes write (:mod:`bot.app.home`), on any
replica. The view is rendered from what is stored when it is published."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from slack_sdk import WebClient
from sqlalchemy.orm import Session, sessionmaker

from bot.app.home import home_facts
from bot.config.schema import Config
from bot.domain import DeploySession
from bot.rendering.home import home_view
from bot.rendering.limits import validate_view
from bot.storage.uow import UnitOfWork


class Roles(Protocol):
    def roles_of(self, user_id: str) -> frozenset[str]: ...


class HomePublisher:
    def __init__(
        self,
        *,
        client: WebClient,
        config: Config,
        session_factory: sessionmaker[Session],
        roles: Roles,
        link: Callable[[DeploySession], str | None] = lambda s: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.client = client
        self.config = config
        self.session_factory = session_factory
        self.roles = roles
        self.link = link
        self.clock = clock

    def view(self, user_id: str) -> dict[str, Any]:
        """The Home of ``user_id`` as it is now, checked against Slack's limits."""
        roles = self.roles.roles_of(user_id)
        now = self.clock()
        with UnitOfWork(self.session_factory) as uow:
            facts = home_facts(uow, self.config, user_id, roles, now, self.link)
        view = home_view(facts, now=now)
        validate_view(view)
        return view

    def publish(self, user_id: str) -> None:
        self.client.views_publish(user_id=user_id, view=self.view(user_id))

    def deliver(self, payload: dict[str, Any]) -> None:
        """A ``home`` row: publish that person's Home again."""
        self.publish(str(payload["user_id"]))
