"""Who may do what: one table, for every command, and one function that enforces it.

Pure: roles arrive already resolved (an :class:`Actor` carries the config roles it belongs
to), so the domain only compares names. :data:`POLICY` says which parties may take each
:class:`Action`; :class:`Parties` says who fills each party in one place (a session, or an
environment); :func:`authorize` checks an actor against both and refuses with a message
naming who may.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from types import MappingProxyType

from bot.domain.checklist import Gate
from bot.domain.errors import PermissionDenied
from bot.domain.promotion import PromotionRule


@dataclass(frozen=True)
class Actor:
    """A person acting on a session, with the config roles they belong to.

    Resolving roles (Slack user IDs, user groups) is I/O, so the service layer does it and
    the domain only compares names.
    """

    user_id: str
    roles: frozenset[str] = frozenset()

    def has_any(self, roles: Iterable[str]) -> bool:
        return not self.roles.isdisjoint(roles)


SYSTEM = Actor("deploybot")
"""deploybot itself: probe results, schedules, rollbacks it carries out."""


class Party(StrEnum):
    """Who may take an action, as the policy table names them."""

    REQUESTER = "requester"  # who opened the session
    OPERATORS = "operators"  # the environment's operator roles
    APPROVERS = "approvers"  # members of any of the session's sign-off roles
    SIGNER = "signer"  # members of the one sign-off role in question (and not the requester)
    ONCALL = "oncall"  # the environment's on-call roles
    STARTERS = "starters"  # the environment's roles that may start a deploy
    FREEZE_OVERRIDERS = "freeze_overriders"  # the environment's roles that may override freezes
    EMERGENCY = "emergency"  # the environment's roles that may break glass
    SYSTEM = "system"  # deploybot itself
    ANYONE = "anyone"  # any member of the workspace


class Action(StrEnum):
    """Everything that can be asked of a session or an environment."""

    START_SESSION = "start_session"
    TICK = "tick"
    UNTICK = "untick"
    SKIP = "skip"
    SIGN_OFF = "sign_off"
    START_DEPLOYMENT = "start_deployment"
    FINISH_DEPLOYMENT = "finish_deployment"
    RUN_PROBES = "run_probes"
    ABORT = "abort"
    COMPLETE = "complete"
    ACKNOWLEDGE = "acknowledge"
    ROLL_BACK = "roll_back"
    RESOLVE = "resolve"
    LOCK = "lock"
    UNLOCK = "unlock"
    REPORT = "report"
    OVERRIDE_FREEZE = "override_freeze"
    DECLARE_EMERGENCY = "declare_emergency"
    CHANGE_VERSION = "change_version"
    SIGN_RETROSPECTIVE = "sign_retrospective"
    CONTINUE_STEP = "continue_step"  # a paused deploy step: its roles decide
    RETRY_STEP = "retry_step"
    # What only deploybot records: probe starts and results, monitoring, expiry, failure,
    # the outcome of a rollback.
    RECORD = "record"


P = Party
_WORKERS = (P.REQUESTER, P.OPERATORS, P.APPROVERS, P.ONCALL, P.SYSTEM)
_RUNNERS = (P.REQUESTER, P.OPERATORS, P.SYSTEM)
_RESPONDERS = (P.ONCALL, P.APPROVERS)

POLICY: Mapping[Action, tuple[Party, ...]] = MappingProxyType(
    {
        Action.START_SESSION: (P.STARTERS,),
        # Anyone with a part in this deploy works the checklist; outsiders may not.
        Action.TICK: _WORKERS,
        Action.UNTICK: _WORKERS,
        Action.SKIP: _WORKERS,
        Action.SIGN_OFF: (P.SIGNER,),
        # The requester and the operators run the session; the bot too (it completes a
        # deploy when monitoring ends).
        Action.START_DEPLOYMENT: _RUNNERS,
        Action.FINISH_DEPLOYMENT: _RUNNERS,
        Action.RUN_PROBES: _RUNNERS,
        Action.ABORT: _RUNNERS,
        Action.COMPLETE: _RUNNERS,
        # On-call and the deploy's approvers handle failures; the bot may roll back itself.
        Action.ACKNOWLEDGE: _RESPONDERS,
        Action.ROLL_BACK: (*_RESPONDERS, P.SYSTEM),
        Action.RESOLVE: _RESPONDERS,
        Action.LOCK: (P.STARTERS, P.OPERATORS),
        Action.UNLOCK: (P.STARTERS, P.OPERATORS),
        # The default; an environment may narrow it (EnvironmentPolicy.report).
        Action.REPORT: (P.ANYONE,),
        # Only the roles the environment names; nobody when it names none.
        Action.OVERRIDE_FREEZE: (P.FREEZE_OVERRIDERS,),
        # Break-glass: only the roles the environment's `emergency:` names.
        Action.DECLARE_EMERGENCY: (P.EMERGENCY,),
        # Who runs the session may correct its version (its sign-offs are withdrawn).
        Action.CHANGE_VERSION: (P.REQUESTER, P.OPERATORS),
        # The retrospective role (as a signer: not the requester, with separation of duties).
        Action.SIGN_RETROSPECTIVE: (P.SIGNER,),
        Action.CONTINUE_STEP: (P.ANYONE,),
        Action.RETRY_STEP: (*_RESPONDERS, P.REQUESTER, P.OPERATORS),
        Action.RECORD: (P.SYSTEM,),
    }
)

# How a refusal names the action: "You can't <doing>: ..."
DOING: Mapping[Action, str] = MappingProxyType(
    {
        Action.START_SESSION: "start a deploy of {environment}",
        Action.TICK: "tick items",
        Action.UNTICK: "untick items",
        Action.SKIP: "skip items",
        Action.SIGN_OFF: "sign off as {role}",
        Action.START_DEPLOYMENT: "start the deployment",
        Action.FINISH_DEPLOYMENT: "finish the deployment",
        Action.RUN_PROBES: "run probes",
        Action.ABORT: "abort this deploy",
        Action.COMPLETE: "complete the deploy",
        Action.ACKNOWLEDGE: "acknowledge the incident",
        Action.ROLL_BACK: "roll back",
        Action.RESOLVE: "resolve the incident",
        Action.LOCK: "lock {environment}",
        Action.UNLOCK: "unlock {environment}",
        Action.REPORT: "see the report of a {environment} deploy",
        Action.OVERRIDE_FREEZE: "override the change freeze of {environment}",
        Action.DECLARE_EMERGENCY: "deploy {environment} as an emergency",
        Action.CHANGE_VERSION: "change the version of this deploy",
        Action.SIGN_RETROSPECTIVE: "sign the retrospective as {role}",
        Action.CONTINUE_STEP: "continue this deploy",
        Action.RETRY_STEP: "retry a deploy step",
        Action.RECORD: "record this",
    }
)


@dataclass(frozen=True)
class SignOffRule:
    """A required sign-off: ``key`` is the slug, ``role`` the name people read; it takes
    ``count`` distinct people; with ``valid_for``, a signature older than that no longer
    counts when deploying starts."""

    key: str
    role: str
    by: tuple[str, ...]
    count: int = 1
    valid_for: timedelta | None = None


@dataclass(frozen=True)
class Parties:
    """Who fills each party in one place: a session (with its requester) or an environment.

    ``signer`` is the sign-off rule in question, for :attr:`Party.SIGNER`.
    """

    requester: str | None = None
    operators: tuple[str, ...] = ()
    approvers: tuple[str, ...] = ()
    oncall: tuple[str, ...] = ()
    starters: tuple[str, ...] = ()
    freeze_overriders: tuple[str, ...] = ()
    emergency: tuple[str, ...] = ()
    signer: SignOffRule | None = None
    separation_of_duties: bool = True
    environment: str = "this environment"

    def includes(self, party: Party, actor: Actor) -> bool:
        """Whether ``actor`` belongs to ``party`` here."""
        if party is Party.ANYONE:
            return True
        if party is Party.SYSTEM:
            return actor == SYSTEM
        if party is Party.REQUESTER:
            return self.requester is not None and actor.user_id == self.requester
        if party is Party.SIGNER:
            return (
                self.signer is not None
                and actor.has_any(self.signer.by)
                and not self.own_deploy(actor)
            )
        return actor.has_any(self.roles(party))

    def roles(self, party: Party) -> tuple[str, ...]:
        """The config roles whose members make up ``party`` (none for the others)."""
        if party is Party.SIGNER:
            return self.signer.by if self.signer else ()
        return {
            Party.OPERATORS: self.operators,
            Party.APPROVERS: self.approvers,
            Party.ONCALL: self.oncall,
            Party.STARTERS: self.starters,
            Party.FREEZE_OVERRIDERS: self.freeze_overriders,
            Party.EMERGENCY: self.emergency,
        }.get(party, ())

    def own_deploy(self, actor: Actor) -> bool:
        """Separation of duties forbids ``actor`` to approve: it is their own deploy."""
        return self.separation_of_duties and actor.user_id == self.requester


def authorize(
    action: Action,
    actor: Actor,
    parties: Parties,
    *,
    allowed: tuple[Party, ...] | None = None,
) -> None:
    """Let ``actor`` take ``action`` if they belong to a party the policy allows.

    Args:
        allowed: the parties allowed, when an environment overrides :data:`POLICY`.

    Raises:
        PermissionDenied: they don't; the message says who may.
    """
    allowed = POLICY[action] if allowed is None else allowed
    if any(parties.includes(party, actor) for party in allowed):
        return
    raise PermissionDenied(refusal(action, actor, parties, allowed))


def is_allowed(
    action: Action,
    actor: Actor,
    parties: Parties,
    *,
    allowed: tuple[Party, ...] | None = None,
) -> bool:
    """:func:`authorize` as a yes or no (to show or hide a button, say)."""
    allowed = POLICY[action] if allowed is None else allowed
    return any(parties.includes(party, actor) for party in allowed)


def refusal(action: Action, actor: Actor, parties: Parties, allowed: tuple[Party, ...]) -> str:
    """Why ``actor`` may not take ``action``, naming who may."""
    if allowed == (Party.SYSTEM,):
        return "Only deploybot itself records this."
    role = parties.signer.role if parties.signer else "this role"
    doing = DOING[action].format(environment=parties.environment, role=role)
    signer = parties.signer
    if (
        Party.SIGNER in allowed
        and signer is not None
        and actor.has_any(signer.by)
        and parties.own_deploy(actor)
    ):
        return (
            f"You can't {doing} on your own deploy (separation of duties): "
            "ask another member of the role."
        )
    who = []
    if Party.REQUESTER in allowed and parties.requester:
        who.append(f"the requester <@{parties.requester}>")
    roles = tuple(dict.fromkeys(r for party in allowed for r in parties.roles(party)))
    if roles:
        who.append("members of " + ", ".join(f"`{r}`" for r in roles))
    if not who:
        return f"You can't {doing}: no role is configured for it here."
    return f"You can't {doing}: only {' or '.join(who)} can."


@dataclass(frozen=True)
class SessionPolicy:
    """The environment's rules, frozen into the session when it opens.

    Freezing them means a config change mid-deploy cannot silently move the goalposts.
    """

    signoffs: tuple[SignOffRule, ...] = ()
    operators: tuple[str, ...] = ()
    oncall: tuple[str, ...] = ()
    separation_of_duties: bool = True
    freeze_override: tuple[str, ...] = ()  # roles that may deploy during a change freeze
    promotion: PromotionRule | None = None  # where a version must have completed first
    deploy_gate: Gate = field(default_factory=Gate)
    complete_gate: Gate = field(default_factory=Gate)

    def rule(self, key: str) -> SignOffRule | None:
        return next((r for r in self.signoffs if r.key == key), None)

    @property
    def approver_roles(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(role for rule in self.signoffs for role in rule.by))

    def parties(
        self, requester: str, *, signer: SignOffRule | None = None, environment: str = ""
    ) -> Parties:
        """Who fills each party in a session opened by ``requester``."""
        return Parties(
            requester=requester,
            operators=self.operators,
            approvers=self.approver_roles,
            oncall=self.oncall,
            freeze_overriders=self.freeze_override,
            signer=signer,
            separation_of_duties=self.separation_of_duties,
            environment=environment or "this environment",
        )


@dataclass(frozen=True)
class EnvironmentPolicy:
    """An environment's rules for what is asked of it rather than of one session:
    start a session, lock, unlock, see reports.

    Build it with :meth:`build` from the environment's configuration.
    """

    environment: str
    starters: tuple[str, ...]
    operators: tuple[str, ...] = ()
    oncall: tuple[str, ...] = ()
    approvers: tuple[str, ...] = ()
    freeze_override: tuple[str, ...] = ()
    emergency: tuple[str, ...] = ()  # roles that may break glass
    # Who may see a deploy's report: the hook for a per-environment setting.
    report: tuple[Party, ...] = POLICY[Action.REPORT]

    @classmethod
    def build(
        cls,
        environment: str,
        *,
        starters: Iterable[str],
        operators: Iterable[str] = (),
        oncall: Iterable[str] = (),
        approvers: Iterable[str] = (),
        report: Iterable[str] | None = None,
        freeze_override: Iterable[str] = (),
        emergency: Iterable[str] = (),
    ) -> EnvironmentPolicy:
        """The policy from plain names, as the configuration writes them.

        Args:
            approvers: the roles of the environment's sign-offs.
            report: party names (``"requester"``, ``"operators"``...) who may see reports;
                ``None`` keeps the default (anyone).

        Raises:
            ValueError: ``report`` names an unknown party, or ``signer`` (it has no
                sign-off to refer to here).
        """
        parties = POLICY[Action.REPORT]
        if report is not None:
            named_elsewhere = (Party.SIGNER, Party.FREEZE_OVERRIDERS, Party.EMERGENCY)
            known = [p.value for p in Party if p not in named_elsewhere]
            unknown = [name for name in report if name not in known]
            if unknown:
                raise ValueError(
                    f"unknown report parties {', '.join(unknown)} (known: {', '.join(known)})"
                )
            parties = tuple(Party(name) for name in report)
        return cls(
            environment=environment,
            starters=tuple(starters),
            operators=tuple(operators),
            oncall=tuple(oncall),
            approvers=tuple(dict.fromkeys(approvers)),
            freeze_override=tuple(freeze_override),
            emergency=tuple(emergency),
            report=parties,
        )

    def allowed(self, action: Action) -> tuple[Party, ...]:
        """The parties allowed ``action`` here: the table's row, or this environment's own."""
        return self.report if action is Action.REPORT else POLICY[action]

    def parties(self, *, requester: str | None = None) -> Parties:
        """Who fills each party here; ``requester`` when a session is in question."""
        return Parties(
            requester=requester,
            operators=self.operators,
            approvers=self.approvers,
            oncall=self.oncall,
            starters=self.starters,
            freeze_overriders=self.freeze_override,
            emergency=self.emergency,
            environment=self.environment,
        )

    def authorize(self, action: Action, actor: Actor, *, requester: str | None = None) -> None:
        """:func:`authorize` for an environment-level action (or a session's report).

        Raises:
            PermissionDenied: the actor may not; the message says who may.
        """
        authorize(action, actor, self.parties(requester=requester), allowed=self.allowed(action))
