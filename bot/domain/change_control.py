"""Change-control commands on an open session: a new version, and an emergency's retrospective.

Their rows of the transition, verb and policy tables live here and are merged into
:mod:`bot.domain.transitions`, which applies them like any other command.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from bot.domain import commands as c
from bot.domain.errors import DomainError
from bot.domain.events import Event
from bot.domain.policy import Action, Actor, SignOffRule
from bot.domain.promotion import check_promotion
from bot.domain.session import DeploySession, SessionState

S = SessionState

TRANSITIONS: dict[tuple[SessionState, type[Any]], SessionState] = {
    # A version is what gets signed off and deployed: it changes only before deploying.
    (S.OPEN, c.ChangeVersion): S.OPEN,
    # The retrospective is owed after the deploy, whatever became of it.
    **{(state, c.SignRetrospective): state for state in S},
}

VERBS: dict[type[Any], str] = {
    c.ChangeVersion: "change the version of",
    c.SignRetrospective: "sign the retrospective of",
}

ACTIONS: dict[type[Any], Action] = {
    c.ChangeVersion: Action.CHANGE_VERSION,
    c.SignRetrospective: Action.SIGN_RETROSPECTIVE,
}


def retrospective_rule(s: DeploySession) -> SignOffRule:
    """Who signs the session's retrospective (the signer party of its policy check).

    Raises:
        DomainError: the session was no emergency.
    """
    if s.emergency is None:
        raise DomainError(
            f"Deploy #{s.id} was not an emergency: it owes no retrospective "
            "(only `/deploy start <env> --emergency` deploys do)."
        )
    return s.emergency.retrospective


def change_version(
    s: DeploySession, cmd: c.ChangeVersion, actor: Actor, at: datetime
) -> list[Event]:
    """The session deploys ``cmd.version`` from now on; every sign-off is withdrawn (each
    audited), since what was approved was another version."""
    version = cmd.version.strip()
    if not version:
        raise DomainError("Say which version: `/deploy version [id] <version>`.")
    if version == s.version:
        raise DomainError(f"Deploy #{s.id} already deploys version {version}: nothing changes.")
    if s.emergency is None or not s.emergency.skips_promotion:
        s.promoted_from = check_promotion(
            s.policy.promotion,
            environment=s.environment,
            service=s.service,
            version=version,
            completed=cmd.completed,
            at=at,
        )
    events = [Event("version_changed", actor.user_id, at, {"from": s.version, "to": version})]
    for key, record in s.signoffs.items():
        data = {"key": key, "role": record.role, "signers": list(record.signers)}
        events.append(Event("signoff_withdrawn", actor.user_id, at, data))
    s.signoffs = {}
    s.version = version
    return events


def sign_retrospective(
    s: DeploySession, cmd: c.SignRetrospective, actor: Actor, at: datetime
) -> list[Event]:
    emergency = s.emergency
    assert emergency is not None  # retrospective_rule refused before
    if not emergency.outstanding:
        raise DomainError(
            f"The retrospective of deploy #{s.id} was signed by <@{emergency.retrospective_by}> "
            f"already: nothing is owed."
        )
    note = cmd.note.strip()
    s.emergency = replace(
        emergency, retrospective_by=actor.user_id, retrospective_at=at, retrospective_note=note
    )
    data = {"role": emergency.retrospective.role, "note": note}
    return [Event("retrospective_signed", actor.user_id, at, data)]


HANDLERS: dict[type[Any], Callable[[DeploySession, Any, Actor, datetime], list[Event]]] = {
    c.ChangeVersion: change_version,
    c.SignRetrospective: sign_retrospective,
}
