"""How often reminders come, as a table: the first ``after`` the opening, then ``every``,
``max`` at most; an owed retrospective keeps reminding; closed sessions are not reminded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.app.schedules import next_occurrence
from bot.config.loader import load_config
from bot.config.schema import Config
from bot.storage.schedule_slots import OpenSession

OPENED = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    root: Path = tmp_path_factory.mktemp("reminders")
    (root / "c.yaml").write_text("sections:\n  - title: S\n    items:\n      - text: Ready\n")
    (root / "deploybot.yaml").write_text(
        """
roles: {deployers: [U0D]}
environments:
  prod:
    channel: "#prod"
    checklist: c.yaml
    starters: [deployers]
    reminders: {after: 30m, every: 1h, max: 3}
  staging:
    channel: "#staging"
    checklist: c.yaml
    starters: [deployers]
"""
    )
    return load_config(root / "deploybot.yaml")


@pytest.mark.parametrize(
    ("env", "state", "claimed", "now", "expected"),
    [
        # (slot, due) of the next reminder, or None
        ("prod", "open", 0, OPENED, (1, OPENED + H / 2)),
        ("prod", "open", 1, OPENED + H / 2, (2, OPENED + 3 * H / 2)),
        ("prod", "open", 2, OPENED + 3 * H / 2, (3, OPENED + 5 * H / 2)),
        ("prod", "open", 3, OPENED + 5 * H / 2, None),  # max: 3
        ("prod", "open", 0, OPENED + 10 * H, (3, OPENED + 5 * H / 2)),  # late: made up once
        ("prod", "open", 1, OPENED + 2 * H, (2, OPENED + 3 * H / 2)),  # slot 2 due unclaimed
        ("prod", "deploying", 0, OPENED, None),
        ("prod", "completed", 0, OPENED, None),
        ("staging", "open", 0, OPENED, None),  # no reminders configured
    ],
)
def test_reminder_slots(
    config: Config,
    env: str,
    state: str,
    claimed: int,
    now: datetime,
    expected: tuple[int, datetime] | None,
) -> None:
    session = OpenSession(1, env, state, OPENED, claimed={"remind": claimed})
    found = next_occurrence(config, session, "remind", now)
    assert (None if found is None else (found.slot, found.due)) == expected


@pytest.mark.parametrize(
    ("env", "owes", "state", "claimed", "expected"),
    [
        ("prod", True, "completed", 0, (1, OPENED + H)),  # every `reminders.every`
        ("prod", True, "completed", 7, (8, OPENED + 8 * H)),  # no max: until given
        ("staging", True, "aborted", 0, (1, OPENED + 24 * H)),  # daily without `reminders`
        ("prod", False, "completed", 0, None),  # given (or no emergency)
    ],
)
def test_retrospective_reminder_slots(
    config: Config,
    env: str,
    owes: bool,
    state: str,
    claimed: int,
    expected: tuple[int, datetime] | None,
) -> None:
    session = OpenSession(
        1, env, state, OPENED, claimed={"retro": claimed}, owes_retrospective=owes
    )
    found = next_occurrence(config, session, "retro", OPENED)
    assert (None if found is None else (found.slot, found.due)) == expected
