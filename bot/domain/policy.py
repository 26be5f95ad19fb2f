"""Who may do what in a deploy session. Pure: roles arrive already resolved."""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.domain.checklist import Gate
from bot.domain.errors import PermissionDenied


@dataclass(frozen=True)
class Actor:
    """A person acting on a session, with the config roles they belong to.

    Resolving roles (Slack user IDs, user groups) is I/O, so the service layer does it and
    the domain only compares names.
    """

    user_id: str
    roles: frozenset[str] = frozenset()

    def has_any(self, roles: tuple[str, ...]) -> bool:
        return bool(self.roles.intersection(roles))


@dataclass(frozen=True)
class SignOffRule:
    """A required sign-off: ``key`` is the slug, ``role`` the name people read."""

    key: str
    role: str
    by: tuple[str, ...]


@dataclass(frozen=True)
class SessionPolicy:
    """The environment's rules, frozen into the session when it opens.

    Freezing them means a config change mid-deploy cannot silently move the goalposts.
    """

    signoffs: tuple[SignOffRule, ...] = ()
    operators: tuple[str, ...] = ()
    oncall: tuple[str, ...] = ()
    separation_of_duties: bool = True
    deploy_gate: Gate = field(default_factory=Gate)
    complete_gate: Gate = field(default_factory=Gate)

    def rule(self, key: str) -> SignOffRule | None:
        return next((r for r in self.signoffs if r.key == key), None)

    @property
    def approver_roles(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(role for rule in self.signoffs for role in rule.by))

    def require_operator(self, actor: Actor, requester: str, doing: str) -> None:
        """The requester and members of the operator roles run the session."""
        if actor.user_id == requester or actor.has_any(self.operators):
            return
        raise PermissionDenied(
            f"You can't {doing}: only the requester <@{requester}> or members of "
            f"{_roles(self.operators)} can."
        )

    def require_responder(self, actor: Actor, doing: str) -> None:
        """On-call and the deploy's approvers handle failures (roll back, resolve)."""
        allowed = self.oncall + self.approver_roles
        if not actor.has_any(allowed):
            raise PermissionDenied(f"You can't {doing}: only members of {_roles(allowed)} can.")

    def require_signer(self, actor: Actor, rule: SignOffRule, requester: str) -> None:
        if not actor.has_any(rule.by):
            raise PermissionDenied(
                f"You can't sign off as {rule.role}: only members of {_roles(rule.by)} can."
            )
        if self.separation_of_duties and actor.user_id == requester:
            raise PermissionDenied(
                f"You can't sign off as {rule.role} on your own deploy (separation of duties): "
                "ask another member of the role."
            )


def _roles(roles: tuple[str, ...]) -> str:
    return ", ".join(f"`{r}`" for r in roles) if roles else "(no role configured)"
