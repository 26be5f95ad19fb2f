"""Permalinks to the bot's messages, built from the workspace URL that auth.test returns."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from bot.domain import DeploySession
from bot.storage.uow import UnitOfWork


@dataclass(frozen=True)
class SlackLinks:
    team_url: str  # e.g. "https://acme.slack.com/"
    session_factory: sessionmaker[Session]

    def message(self, channel: str, ts: str) -> str:
        # Slack's permalink form: /archives/<channel>/p<ts without the dot>.
        return f"{self.team_url.rstrip('/')}/archives/{channel}/p{ts.replace('.', '')}"

    def to(self, session_id: int, purpose: str) -> str | None:
        with UnitOfWork(self.session_factory) as uow:
            found = uow.slack_messages.get(session_id, purpose)
        return self.message(*found) if found else None

    def session(self, session: DeploySession) -> str | None:
        return self.to(session.id, "summary") if session.id is not None else None
