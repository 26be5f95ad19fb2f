"""What the bot does when a deploy goes wrong: page, open an incident thread, keep it current.

These are effect builders: each writes outbox rows into the caller's unit of work, which the
bus commits together with the change and the audit entry that call for them (see
:mod:`bot.app.effects`). The incident message itself is rendered from the session's state
by the publisher, like the session's other messages, so it follows acknowledge, rollback and
resolve. The outbox worker delivers them (PagerDuty through
:mod:`bot.integrations.pagerduty`, Slack through :mod:`bot.slack.delivery`), so a page or an
incident message is never lost to a crash or an outage.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from bot.config.schema import Config
from bot.domain import DeploySession
from bot.integrations.pagerduty import Action, page_payload
from bot.integrations.probes.analysis import page_details
from bot.rendering.incident import Failure
from bot.storage.models import OutboxRow
from bot.storage.uow import UnitOfWork

INCIDENT = "incident"
SUMMARY = "summary"


@dataclass(frozen=True)
class Incidents:
    """Turns failures, recoveries and responders' actions into pages and Slack messages."""

    config: Config
    link: Callable[[DeploySession], str | None] = lambda session: None

    def probe_failed(
        self,
        uow: UnitOfWork,
        session: DeploySession,
        failure: Failure,
        *,
        again: bool,
        opened: bool,
    ) -> None:
        """A critical probe failed: page; the incident message is the session's to publish.

        Args:
            again: the probe had already failed before this run; the thread is not told twice.
            opened: this failure opened the incident (its message says what failed).
        """
        self._page(
            uow,
            session,
            "trigger",
            [failure.probe],
            key=f"trigger:{failure.since.isoformat()}",
            summary=f"{session.title}: {failure.probe} failed: {failure.summary}",
            # What on-call needs beyond the summary: the probe's detail (fitted by page_payload),
            # and for a metric analysis its values, condition and verdict one by one.
            details={"detail": failure.detail, **page_details(failure.detail)}
            if failure.detail
            else {},
            at=failure.since,
        )
        if not opened and not again:
            self.thread(
                uow,
                session,
                f":x: *{failure.probe}* failed too: {failure.summary}",
                at=failure.since,
            )

    def probe_warned(self, uow: UnitOfWork, session: DeploySession, failure: Failure) -> None:
        """A probe failed in a way that is no alert (a warning, or before the deploy): say
        so in the session's thread, without paging."""
        self.thread(
            uow,
            session,
            f":warning: Probe *{failure.probe}* ({failure.severity}): {failure.summary}",
            at=failure.since,
            purpose=SUMMARY,
        )

    def probe_not_runnable(self, uow: UnitOfWork, session: DeploySession, failure: Failure) -> None:
        """A probe could not run at all: its configuration is for the requester to fix;
        nobody is paged for it."""
        self.thread(
            uow,
            session,
            f":wrench: <@{session.requester}> probe *{failure.probe}* could not run "
            f"({failure.summary}). That is a configuration problem, so nobody was paged: fix "
            "the probe's settings or credentials and run the probes again.",
            at=failure.since,
            purpose=SUMMARY,
        )

    def probe_recovered(
        self, uow: UnitOfWork, session: DeploySession, probe: str, summary: str, at: datetime
    ) -> None:
        """A probe that had failed passes again: resolve its page, say so in the thread."""
        self._page(uow, session, "resolve", [probe], key=f"recovered:{at.isoformat()}")
        self.thread(
            uow,
            session,
            f":white_check_mark: *{probe}* passes again: {summary}",
            at=at,
            only_if_open=True,
        )

    def resolve_page(
        self, uow: UnitOfWork, session: DeploySession, component: str, *, at: datetime
    ) -> None:
        """Resolve the page about ``component`` (a deploy step retried)."""
        self._page(uow, session, "resolve", [component], key=f"resolve:{at.isoformat()}", at=at)

    def responder(
        self, uow: UnitOfWork, session: DeploySession, action: Action, user_id: str, at: datetime
    ) -> None:
        """A responder acknowledged or resolved: tell PagerDuty and the thread."""
        text = {
            "acknowledge": f":eyes: <@{user_id}> acknowledged.",
            "resolve": f":white_check_mark: <@{user_id}> resolved the incident; "
            "verification starts again.",
        }[action]
        key = f"{action}:{user_id}:{at.isoformat()}"
        self._page(uow, session, action, self._paged_probes(uow, session), key=key)
        self.thread(uow, session, text, at=at)

    def thread(
        self,
        uow: UnitOfWork,
        session: DeploySession,
        text: str,
        *,
        at: datetime,
        purpose: str = INCIDENT,
        only_if_open: bool = False,
    ) -> None:
        """A line in the incident thread (or the session's thread, by ``purpose``)."""
        digest = hashlib.sha1(text.encode()).hexdigest()[:12]
        payload: dict[str, Any] = {
            "kind": "reply",
            "session_id": session.id,
            "purpose": purpose,
            "text": text,
        }
        if only_if_open:
            payload["skip_without_thread"] = True
        uow.enqueue(
            topic="slack",
            key=f"{session.id}:{purpose}:{at.isoformat()}:{digest}",
            payload=payload,
            session_id=session.id,
            at=at,
            ordering_key=f"{purpose}:{session.id}",
        )

    def _page(
        self,
        uow: UnitOfWork,
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
        now = at or datetime.now().astimezone()
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
                at=now,
            )
            uow.enqueue(
                topic="pagerduty",
                key=f"{page['dedup_key']}:{key}",
                payload=page,
                session_id=session.id,
                at=now,
                ordering_key=page["dedup_key"],
            )

    def _paged_probes(self, uow: UnitOfWork, session: DeploySession) -> list[str]:
        """The probes this session has paged about (each is one alert, by its dedup key)."""
        payloads = uow.db.scalars(
            select(OutboxRow.payload).where(
                OutboxRow.topic == "pagerduty", OutboxRow.session_id == session.id
            )
        )
        return sorted({p["component"] for p in payloads if p.get("action") == "trigger"})


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
