"""Errors that carry a message fit to show the person who caused them."""


class DeployError(Exception):
    """Base for errors whose message is written for the user.

    Transport code shows ``str(error)`` as it is (an ephemeral Slack reply, one CLI line).
    """


class DomainError(DeployError):
    """A command that the session's state or policy does not allow. Nothing changed."""


class SlotTaken(DomainError):
    """A session is already open for the environment and service: one may queue instead."""

    def __init__(self, message: str, *, environment: str, service: str) -> None:
        super().__init__(message)
        self.environment = environment
        self.service = service


class PermissionDenied(DomainError):
    """The actor is not allowed to do this (role, separation of duties)."""


class GateClosed(DomainError):
    """A gate is still closed; the message lists what is missing."""


class NotFound(DeployError):
    """An unknown environment, session or item."""


class ConfigError(DeployError):
    """The configuration is invalid; ``problems`` lists every error with its location."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        count = len(problems)
        head = f"{count} error{'s' if count != 1 else ''} in the configuration"
        super().__init__(head + ":\n" + "\n".join(f"  {p}" for p in problems))


class ConcurrencyConflict(DeployError):
    """Someone else changed the session first; reload and try again."""
