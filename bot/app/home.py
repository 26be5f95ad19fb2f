"""The App Home: what one person's Home tab shows, gathered from storage and the config, and
when it is published again (for whom a change to a session matters).

A change calls for ``slack`` outbox rows of kind ``home``, one per person concerned, written
in the bus's unit of work: any replica publishes them (:mod:`bot.slack.home`), rendering
what is stored then.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from bot.app.environments import describe_lock
from bot.app.reminders import people
from bot.config.freezes import upcoming
from bot.config.schema import Config
from bot.domain import DeploySession, SessionState
from bot.domain.policy import SignOffRule
from bot.rendering.home import HomeFacts
from bot.storage.uow import UnitOfWork

if TYPE_CHECKING:
    from bot.app.effects import Change, Effects

# Homes are published a moment after the change, so the session's own messages (on the
# same worker) go first.
HOME_DELAY = timedelta(seconds=1)

# Sessions a Home loads at most: enough for its lists (each shows a few and counts the rest).
HOME_CANDIDATES = 60

# Events after which the Homes of the people concerned are published again.
HOME_EVENTS = frozenset(
    {
        "session_opened",
        "state_changed",
        "signed_off",
        "signoff_withdrawn",
        "incident_opened",
        "incident_acknowledged",
        "incident_resolved",
        "version_changed",
        "retrospective_signed",
    }
)


def may_sign(session: DeploySession, user_id: str, roles: frozenset[str]) -> list[SignOffRule]:
    """The sign-off rules still missing that ``user_id`` (with ``roles``) may give now."""
    if session.state is not SessionState.OPEN:
        return []
    if session.policy.separation_of_duties and session.requester == user_id:
        return []
    return [
        rule
        for rule in session.missing_signoffs()
        if not roles.isdisjoint(rule.by) and user_id not in session.signers(rule.key)
    ]


def home_facts(
    uow: UnitOfWork,
    config: Config,
    user_id: str,
    roles: frozenset[str],
    now: datetime,
    link: Callable[[DeploySession], str | None] = lambda s: None,
) -> HomeFacts:
    """What ``user_id``'s Home shows at ``now``.

    Only the sessions that may concern the person are loaded (found by their summary
    columns, a few lists' worth at most), not every open session.
    """
    oncall = frozenset(
        n for n, env in config.environments.items() if not roles.isdisjoint(env.oncall)
    )
    signing = frozenset(
        name
        for name, env in config.environments.items()
        if any(not roles.isdisjoint(rule.by) for rule in env.signoffs)
    )
    ids = uow.summaries.home_candidates(
        user_id, signing=signing, oncall=oncall, limit=HOME_CANDIDATES
    )
    sessions = [uow.sessions.get(sid) for sid in sorted(ids)]
    mine = [s for s in sessions if s.requester == user_id]
    to_sign = [(s, rules) for s in sessions if (rules := may_sign(s, user_id, roles))]
    incidents = [
        s
        for s in sessions
        if s.open_incident is not None
        and s.environment in config.environments
        and not roles.isdisjoint(config.environment(s.environment).oncall)
    ]
    locks = [describe_lock(lock) for name in config.environments if (lock := uow.locks.get(name))]
    freezes = []
    for name, env in config.environments.items():
        for window in upcoming(env.freezes, now, count=1):
            icon = ":snowflake: *now*" if window.covers(now) else ":calendar:"
            freezes.append(f"{icon} *{name}*: {window.describe()}")
    links = {}
    for session in [*mine, *(s for s, _ in to_sign), *incidents]:
        url = link(session)
        if url and session.id is not None:
            links[session.id] = url
    return HomeFacts(
        user_id=user_id,
        mine=mine,
        to_sign=to_sign,
        incidents=incidents,
        locks=locks,
        queue=uow.queue.active(),
        freezes=freezes,
        links=links,
    )


def concerned(config: Config, session: DeploySession) -> list[str]:
    """Whose Home a change to ``session`` concerns: its requester, its signers, and the
    environment's on-call."""
    roles = [role for rule in session.policy.signoffs for role in rule.by]
    env = config.environments.get(session.environment)
    if env is not None:
        roles += env.oncall
    return sorted({session.requester, *people(config, roles)})


def environment_homes(uow: UnitOfWork, config: Config, environment: str, at: datetime) -> None:
    """Publish again the Homes of everyone an environment concerns (who may start, sign and
    answer there), after a change that is the environment's, not a session's: a lock, an
    unlock, the queue."""
    env = config.environments.get(environment)
    if env is None:
        return
    roles = [*env.starters, *(role for rule in env.signoffs for role in rule.by), *env.oncall]
    for user in people(config, roles):
        uow.enqueue(
            topic="slack",
            key=f"home:{user}:{environment}:{at.isoformat()}",
            payload={"kind": "home", "user_id": user},
            at=at,
            due=at + HOME_DELAY,
            ordering_key=f"home:{user}",
        )


def home_follow_up(fx: Effects, uow: UnitOfWork, change: Change) -> None:
    """Publish the Homes of the people concerned again (one row each per revision)."""
    if not any(e.kind in HOME_EVENTS for e in change.events):
        return
    at = change.events[-1].at
    for user in concerned(fx.config, change.after):
        uow.enqueue(
            topic="slack",
            key=f"home:{user}:{change.session_id}:{change.revision}",
            payload={"kind": "home", "user_id": user},
            session_id=change.session_id,
            at=at,
            due=at + HOME_DELAY,
            ordering_key=f"home:{user}",
        )
