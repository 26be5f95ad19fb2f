"""One deploy step's progress, as a session stores it (see :mod:`bot.domain.steps`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class StepState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"  # claimed and being applied
    WAITING = "waiting"  # applied; waiting for the rollout, or the pause to end
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class StepProgress:
    """One step as the summary shows it: ``detail`` is its result, or why it failed."""

    name: str
    kind: str = ""  # the config's kind of step (``kubernetes``, ``command``, ``pause``)
    state: StepState = StepState.PENDING
    attempt: int = 0  # how often it was started (a retry starts it again)
    since: datetime | None = None  # when it entered its state
    detail: str | None = None
    continued_by: str | None = None  # who clicked Continue on a pause

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "state": self.state.value,
            "attempt": self.attempt,
            "since": self.since.isoformat() if self.since else None,
            "detail": self.detail,
            "continued_by": self.continued_by,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StepProgress:
        since = data.get("since")
        return cls(
            name=data["name"],
            kind=data.get("kind", ""),
            state=StepState(data["state"]),
            attempt=int(data.get("attempt", 0)),
            since=datetime.fromisoformat(since) if since else None,
            detail=data.get("detail"),
            continued_by=data.get("continued_by"),
        )
