"""Idle cost does not grow with open sessions: the statements an idle `serve` runs per poll
are the same with 10 open sessions as with 100 (counted, not timed)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, update

from bot.app.sessions import DeployService
from bot.domain import SYSTEM
from bot.domain.commands import FinishDeployment, SignOff, StartDeployment, StartMonitoring
from bot.ops.settings import Settings
from bot.server import Bot, create_bot
from bot.storage.db import upgrade
from bot.storage.models import OutboxRow
from tests.support.slack import FakeSlack
from tests.test_scheduler import write_config

PASSES = 5  # of every idle loop


@pytest.fixture
def bot(database_url: str, tmp_path: Path) -> Iterator[Bot]:
    upgrade(database_url)
    config = write_config(tmp_path, monitoring="every 1h for 3h", expire_after="1d")
    with FakeSlack() as fake:
        settings = Settings(
            SLACK_BOT_TOKEN="xoxb-test",
            SLACK_SIGNING_SECRET="secret",
            SLACK_API_URL=fake.base_url,
            DATABASE_URL=database_url,
            DEPLOYBOT_CONFIG=str(config),
        )
        bot = create_bot(settings)
        try:
            yield bot
        finally:
            bot.close()


def open_sessions(service: DeployService, first: int, count: int) -> None:
    """Open sessions: every tenth is deployed and watched (a monitoring row armed)."""
    for n in range(first, first + count):
        session = service.open(environment="staging", user_id="U0DEPLOYER", service=f"svc{n}")
        assert session.id is not None
        if n % 10 == 0:
            service.act(session.id, SignOff("qa-lead"), "U0APPROVER")
            service.act(session.id, StartDeployment(), "U0DEPLOYER")
            service.act(session.id, FinishDeployment(), "U0DEPLOYER")
            service.act_as(session.id, StartMonitoring(), SYSTEM)


def settle(bot: Bot) -> None:
    """Mark the effects of opening the sessions (Slack messages) as carried out: what is
    measured is the idle bot, with only the sessions' schedules armed."""
    with bot.runtime.session_factory() as db, db.begin():
        db.execute(
            update(OutboxRow)
            .where(OutboxRow.topic != "schedule", OutboxRow.delivered_at.is_(None))
            .values(delivered_at=datetime.now(UTC))
        )


def idle_statements(bot: Bot) -> list[str]:
    """The statements of ``PASSES`` passes of every loop an idle `serve` runs."""
    settle(bot)
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement.split()[0].upper())

    event.listen(Engine, "before_cursor_execute", count)  # the leader lock's engine too
    try:
        for _ in range(PASSES):
            for worker in bot.workers:
                assert worker.step() > 0  # nothing due: the worker sleeps
            assert bot.inbox.take_due() == 0
            bot.recovery.task()
            bot.scheduler.tick()  # the leader checks it still holds the lock
    finally:
        event.remove(Engine, "before_cursor_execute", count)
    return statements


def test_idle_statements_do_not_depend_on_the_number_of_open_sessions(bot: Bot) -> None:
    service = bot.runtime.service
    open_sessions(service, 0, 10)
    bot.scheduler.tick()  # leads; reconciles at once, in the scheduler's thread
    time.sleep(0.5)
    with_10 = idle_statements(bot)

    open_sessions(service, 10, 90)
    assert bot.scheduler.reconcile() >= 100 * 2  # start-up's cost: bulk, not per poll
    with_100 = idle_statements(bot)

    assert with_100 == with_10
    # One query per outbox worker and one for the inbox and the probe recovery each,
    # plus the leader lock's check on PostgreSQL.
    assert len(with_10) <= PASSES * (len(bot.workers) + 3)
