"""What people (and the bot itself) ask a deploy session to do."""

from __future__ import annotations

from dataclasses import dataclass

from bot.domain.checklist import Severity
from bot.domain.freeze import FreezeWindow
from bot.domain.promotion import CompletedDeploy
from bot.domain.steps import StepCommand


@dataclass(frozen=True)
class TickItem:
    item_id: str


@dataclass(frozen=True)
class UntickItem:
    item_id: str


@dataclass(frozen=True)
class SkipItem:
    item_id: str
    reason: str


@dataclass(frozen=True)
class UnskipItem:
    """Take back a skip: the item is open again (or failed again, if the skip overrode a
    failed check). Ticking a skipped item is refused; this is the explicit way back."""

    item_id: str
    reason: str


@dataclass(frozen=True)
class StartProbe:
    """The bot started the probe linked to an item."""

    item_id: str


@dataclass(frozen=True)
class InterruptProbe:
    """The run of an item's probe ended with no result: the process running it stopped.
    A running item goes back to pending, saying so; any other item is left as it is."""

    item_id: str
    reason: str


@dataclass(frozen=True)
class RequestProbes:
    """Someone (or the bot, to verify) asks for the session's probes to run now."""

    why: str


@dataclass(frozen=True)
class RecordProbeResult:
    item_id: str
    ok: bool
    summary: str
    severity: Severity = Severity.CRITICAL
    runnable: bool = True  # False: the probe could not run (a configuration problem)


@dataclass(frozen=True)
class SignOff:
    key: str


@dataclass(frozen=True)
class StartDeployment:
    """Deploying starts. ``locked`` says who holds the environment, when it is locked (the
    service layer fills it in from storage): a lock stops deploys, not just new sessions.
    ``frozen`` is the change freeze in force, if any (filled in from config and the clock)."""

    locked: str | None = None
    frozen: FreezeWindow | None = None


@dataclass(frozen=True)
class OverrideFreeze:
    """Deploy during the change freeze in force, for a reason (``frozen`` as above)."""

    reason: str
    frozen: FreezeWindow | None = None


@dataclass(frozen=True)
class FinishDeployment:
    """The deploy steps are done; verification starts."""


@dataclass(frozen=True)
class StartMonitoring:
    pass


@dataclass(frozen=True)
class Complete:
    pass


@dataclass(frozen=True)
class Abort:
    reason: str


@dataclass(frozen=True)
class Expire:
    """Left open too long: the bot aborts it and frees the environment."""

    reason: str


@dataclass(frozen=True)
class Fail:
    reason: str


@dataclass(frozen=True)
class StartRollback:
    pass


@dataclass(frozen=True)
class Acknowledge:
    """A responder has seen the incident and is on it."""


@dataclass(frozen=True)
class Resolve:
    """A responder resolves the incident without rolling back (or after a rollback failed,
    having fixed things by hand); verification starts again."""

    note: str = ""


@dataclass(frozen=True)
class RollbackSucceeded:
    """Every rollback step ran and the probes pass again."""


@dataclass(frozen=True)
class RollbackFailed:
    detail: str


@dataclass(frozen=True)
class ChangeVersion:
    """Deploy another version: the sign-offs given so far are withdrawn. ``completed`` are
    the completed deploys the promotion order may point to (filled in from storage)."""

    version: str
    completed: tuple[CompletedDeploy, ...] = ()


@dataclass(frozen=True)
class SignRetrospective:
    """The retrospective an emergency deploy owes, given (with an optional note)."""

    note: str = ""


Command = (
    TickItem
    | UntickItem
    | SkipItem
    | UnskipItem
    | RequestProbes
    | StartProbe
    | InterruptProbe
    | RecordProbeResult
    | SignOff
    | StartDeployment
    | OverrideFreeze
    | FinishDeployment
    | StartMonitoring
    | Complete
    | Abort
    | Expire
    | Fail
    | Acknowledge
    | Resolve
    | StartRollback
    | RollbackSucceeded
    | RollbackFailed
    | ChangeVersion
    | SignRetrospective
    | StepCommand
)
