"""What the bot does when a deploy goes wrong: page, open an incident thread, keep it current.

Every effect here is an outbox row written in the same transaction as the audit entry that
explains it, so a page or an incident message is never lost to a crash or an outage; the
outbox worker delivers them (PagerDuty through :mod:`bot.integrations.pagerduty`, Slack through
:mod:`bot.slack.delivery`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.config.schema import Config
from bot.domain import DeploySession, Event
from bot.domain.checklist import Severity
from bot.integrations.pagerduty import Action, page_payload
from bot.integrations.probes import ProbeResult
from bot.rendering.incident import Failure, incident_blocks, incident_text
from bot.storage.models import OutboxRow
from bot.storage.outbox import Outbox
from bot.storage.uow import UnitOfWork

INCIDENT = "incident"


class Incidents:
    """Turns failures, recoveries and responders' actions into pages and Slack messages."""

    def __init__(
        self,
        *,
        config: Config,
        session_factory: sessionmaker[Session],
        outbox: Outbox,
        wake: Callable[[], None] = lambda: None,
        link: Callable[[DeploySession], str | None] = lambda session: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.session_factory = session_factory
        self.outbox = outbox
        self.wake = wake
        self.link = link
        self.clock = clock

    def probe_failed(self, session: DeploySession, result: ProbeResult, *, again: bool) -> None:
        """A probe failed. Critical: page and open (or add to) the incident thread.
        Warning: say so in the session's thread, without paging.

        Args:
            again: the probe had already failed before this run; the thread is not told twice.
        """
        assert session.id is not None
        now = self.clock()
        with UnitOfWork(self.session_factory) as uow:
            db = uow.db
            if result.severity is Severity.WARNING:
                if not again:
                    self._thread(
                        db,
                        session,
                        "summary",
                        f":warning: Probe *{result.name}* (warning): {result.summary}",
                        key=f"warn:{result.name}:{result.at.isoformat()}",
                    )
                uow.commit()
                self.wake()
                return
            self._page(
                db,
                session,
                "trigger",
                [result.name],
                key=f"trigger:{result.at.isoformat()}",
                summary=f"{session.title}: {result.name} failed: {result.summary}",
                details={"summary": result.summary, "detail": result.detail, "kind": result.kind},
                at=result.at,
            )
            opened = self.outbox.enqueue(
                db,
                topic="slack",
                key=f"incident:{session.id}",
                payload=self._incident_root(session, result),
                session_id=session.id,
                at=now,
                ordering_key=f"incident:{session.id}",
            )
            if opened:
                uow.audit.append(
                    [
                        Event(
                            "incident_opened",
                            "deploybot",
                            now,
                            {"probe": result.name, "summary": result.summary},
                        )
                    ],
                    session_id=session.id,
                    environment=session.environment,
                )
            elif not again:
                self._thread(
                    db,
                    session,
                    INCIDENT,
                    f":x: *{result.name}* failed too: {result.summary}",
                    key=f"failed:{result.name}:{result.at.isoformat()}",
                )
            uow.commit()
        self.wake()

    def probe_recovered(self, session: DeploySession, result: ProbeResult) -> None:
        """A probe that had failed passes again: resolve its page, say so in the thread."""
        assert session.id is not None
        with UnitOfWork(self.session_factory) as uow:
            self._page(
                uow.db, session, "resolve", [result.name], key=f"recovered:{result.at.isoformat()}"
            )
            self._thread(
                uow.db,
                session,
                INCIDENT,
                f":white_check_mark: *{result.name}* passes again: {result.summary}",
                key=f"recovered:{result.name}:{result.at.isoformat()}",
                only_if_open=True,
            )
            uow.commit()
        self.wake()

    def acknowledged(self, session: DeploySession, user_id: str) -> None:
        self._responder_action(
            session, "acknowledge", f":eyes: <@{user_id}> acknowledged.", user_id
        )

    def resolved(self, session: DeploySession, user_id: str) -> None:
        self._responder_action(
            session,
            "resolve",
            f":white_check_mark: <@{user_id}> resolved the incident; verification starts again.",
            user_id,
        )

    def rollback_note(self, session: DeploySession, text: str) -> None:
        """A line in the incident thread about the rollback.

        Pages are resolved by the probes themselves: a probe that passes again after the
        rollback resolves its own alert (:meth:`probe_recovered`).
        """
        assert session.id is not None
        now = self.clock()
        digest = hashlib.sha1(text.encode()).hexdigest()[:12]
        with UnitOfWork(self.session_factory) as uow:
            self._thread(uow.db, session, INCIDENT, text, key=f"note:{now.isoformat()}:{digest}")
            uow.commit()
        self.wake()

    def _responder_action(
        self, session: DeploySession, action: Action, text: str, user_id: str
    ) -> None:
        assert session.id is not None
        now = self.clock()
        with UnitOfWork(self.session_factory) as uow:
            self._page(
                uow.db,
                session,
                action,
                self._paged_probes(uow.db, session.id),
                key=f"{action}:{user_id}:{now.isoformat()}",
            )
            self._thread(
                uow.db, session, INCIDENT, text, key=f"{action}:{user_id}:{now.isoformat()}"
            )
            uow.commit()
        self.wake()

    def _page(
        self,
        db: Session,
        session: DeploySession,
        action: Action,
        probes: list[str],
        *,
        key: str,
        summary: str | None = None,
        details: dict[str, Any] | None = None,
        at: datetime | None = None,
    ) -> None:
        """Enqueue one PagerDuty event per probe (each probe is one alert, by dedup key)."""
        env = self.config.environment(session.environment)
        if env.pagerduty is None or session.id is None:
            return
        now = self.clock()
        for probe in probes:
            page = page_payload(
                action=action,
                env_name=session.environment,
                routing_key_env=env.pagerduty.routing_key_env,
                session_id=session.id,
                probe=probe,
                summary=summary or f"{session.title}: {probe}",
                severity="critical",
                details=details or {},
                link=self.link(session),
                at=at or now,
            )
            self.outbox.enqueue(
                db,
                topic="pagerduty",
                key=f"{page['dedup_key']}:{key}",
                payload=page,
                session_id=session.id,
                at=now,
                ordering_key=page["dedup_key"],
            )

    def _paged_probes(self, db: Session, session_id: int) -> list[str]:
        """The probes this session has paged about (each is one alert, by its dedup key)."""
        payloads = db.scalars(
            select(OutboxRow.payload).where(
                OutboxRow.topic == "pagerduty", OutboxRow.session_id == session_id
            )
        )
        return sorted({p["component"] for p in payloads if p.get("action") == "trigger"})

    def _thread(
        self,
        db: Session,
        session: DeploySession,
        purpose: str,
        text: str,
        *,
        key: str,
        only_if_open: bool = False,
    ) -> None:
        payload: dict[str, Any] = {
            "kind": "reply",
            "session_id": session.id,
            "purpose": purpose,
            "text": text,
        }
        if only_if_open:
            payload["skip_without_thread"] = True
        self.outbox.enqueue(
            db,
            topic="slack",
            key=f"{session.id}:{purpose}:{key}",
            payload=payload,
            session_id=session.id,
            at=self.clock(),
            ordering_key=f"{purpose}:{session.id}",
        )

    def _incident_root(self, session: DeploySession, result: ProbeResult) -> dict[str, Any]:
        env = self.config.environment(session.environment)
        oncall = [m for role in env.oncall for m in self.config.roles.get(role, ())]
        failure = Failure(result.name, result.summary, result.severity.value, result.at)
        rollback = [describe_target(t) for t in env.rollback]
        return {
            "kind": "root",
            "session_id": session.id,
            "purpose": INCIDENT,
            "channel": env.incident_channel or env.channel,
            "text": incident_text(session, failure),
            "blocks": incident_blocks(
                session, failure, oncall=oncall, rollback=rollback, session_link=self.link(session)
            ),
        }


def describe_target(target: Any) -> str:
    """One line naming what a rollback target will do."""
    kind = target.kind
    if kind == "kubernetes":
        return f"kubernetes: rollout undo deployment/{target.deployment} -n {target.namespace}"
    if kind == "ecs":
        return f"ecs: service {target.service} in {target.cluster} to its previous task definition"
    if kind == "lambda":
        return f"lambda: alias {target.alias} of {target.function} to its previous version"
    return "command: " + " ".join(target.argv)
