"""Reminders that reach people: who a due reminder concerns, recorded as an audited event,
and the direct messages that event calls for (with a link to the session).

A sign-off still missing reminds the people who may still give it; a session that waits
for nothing but its requester reminds them; an emergency deploy's retrospective reminds
its role until given. The schedule (:mod:`bot.app.schedules`) sets when and how often; the
jobs (:mod:`bot.workers.jobs`) record the events; :func:`reminder_dms` writes the DMs.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from bot.app.schedules import next_occurrence, schedule
from bot.config.schema import Config
from bot.domain import DeploySession, Event
from bot.domain.policy import SignOffRule
from bot.storage.schedule_slots import OpenSession
from bot.storage.uow import UnitOfWork

if TYPE_CHECKING:
    from bot.app.effects import Change, Effects


def people(config: Config, roles: Iterable[str]) -> list[str]:
    """The Slack users named in ``roles`` (user groups are not expanded here)."""
    found = {m for role in roles for m in config.roles.get(role, ()) if m[:1] in ("U", "W")}
    return sorted(found)


def may_still_sign(config: Config, session: DeploySession, rule: SignOffRule) -> list[str]:
    """Members of the rule's roles who have not signed and are not kept out by separation
    of duties."""
    signed = set(session.signers(rule.key))
    own = session.requester if session.policy.separation_of_duties else None
    return [p for p in people(config, rule.by) if p not in signed and p != own]


def reminded(
    config: Config, session: DeploySession, now: datetime, waited: timedelta
) -> Event | None:
    """Who to remind of an open session, or None when nobody is concerned."""
    data: dict[str, Any] = {"waited": str(waited)}
    missing = session.missing_signoffs(at=now)
    if missing:
        data["signoffs"] = [
            {"role": rule.role, "to": may_still_sign(config, session, rule)} for rule in missing
        ]
        if not any(entry["to"] for entry in data["signoffs"]):
            return None
    else:
        data["requester"] = session.requester  # ready, but nobody started it: stale
    return Event("reminded", "deploybot", now, data)


def retrospective_owed(config: Config, session: DeploySession, now: datetime) -> Event | None:
    """Remind the retrospective role, while an emergency deploy still owes it."""
    emergency = session.emergency
    if emergency is None or not emergency.outstanding:
        return None
    rule = emergency.retrospective
    to = may_still_sign(config, session, rule)
    if not to:
        return None
    return Event("retrospective_reminded", "deploybot", now, {"role": rule.role, "to": to})


def _texts(session: DeploySession, event: Event, link: str | None) -> list[tuple[str, str]]:
    where = f"<{link}|deploy #{session.id}>" if link else f"deploy #{session.id}"
    title = f"{where} ({session.title})"
    data = event.data
    if event.kind == "retrospective_reminded":
        text = (
            f":memo: The emergency {title} still owes its retrospective as "
            f"*{data['role']}*: `/deploy retrospective {session.id} <note>`."
        )
        return [(user, text) for user in data["to"]]
    notices = []
    for entry in data.get("signoffs", ()):
        text = f":bell: {title} has waited {data['waited']} for your sign-off as *{entry['role']}*."
        notices += [(user, text) for user in entry["to"]]
    if data.get("requester"):
        text = (
            f":bell: Your {title} has every sign-off and has waited {data['waited']}: start "
            f"the deployment, or `/deploy abort {session.id} <reason>` to free the environment."
        )
        notices.append((str(data["requester"]), text))
    return notices


def reminder_dms(fx: Effects, uow: UnitOfWork, change: Change) -> None:
    """A DM to each person a reminder concerns; an emergency's retrospective is armed."""
    for event in change.events:
        if event.kind == "emergency_declared":
            _arm_retrospective(fx, uow, change, event.at)
        if event.kind not in ("reminded", "retrospective_reminded"):
            continue
        link = fx.incidents.link(change.after)
        for user, text in _texts(change.after, event, link):
            uow.enqueue(
                topic="slack",
                key=f"{change.session_id}:{event.kind}:{event.at.isoformat()}:{user}",
                payload={"kind": "announce", "channel": user, "text": text},
                session_id=change.session_id,
                at=event.at,
            )


def _arm_retrospective(fx: Effects, uow: UnitOfWork, change: Change, at: datetime) -> None:
    after = change.after
    view = OpenSession(
        change.session_id,
        after.environment,
        after.state.value,
        after.opened_at,
        owes_retrospective=True,
    )
    found = next_occurrence(fx.config, view, "retro", at)
    if found is not None:
        schedule(uow, [found], at=at)
