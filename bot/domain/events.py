"""What happened to a session: the audit log is these, in order."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Event:
    """One fact about a session. ``kind`` is a stable snake_case name used in reports."""

    kind: str
    actor: str
    at: datetime
    data: dict[str, Any] = field(default_factory=dict)
