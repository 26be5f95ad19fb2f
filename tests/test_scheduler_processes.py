"""Real processes: a SIGKILLed leader is replaced, a restarted bot goes on where it was."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bot.app.sessions import DeployService
from bot.storage.models import ProbeRunRow, ScheduleSlotRow, apscheduler_jobs
from tests.support.slack import FakeSlack
from tests.test_scheduler import make_context, monitoring_session, write_config

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


class BotProcess:
    """``deploybot serve`` (or the command ``args`` name) in a child process, its log in a file."""

    def __init__(
        self, name: str, env: dict[str, str], tmp_path: Path, args: tuple[str, ...] = ("serve",)
    ) -> None:
        self.log = tmp_path / f"{name}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", *args],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("wb"),
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_for(self, text: str, timeout: float = 20.0) -> float:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if self.proc.poll() is not None:
                raise AssertionError(f"bot exited ({self.proc.returncode}):\n{self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no '{text}' within {timeout}s:\n{self.output()}")
            time.sleep(0.05)
        return time.monotonic()

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def bot_env(database_url: str, config: Path, fake: FakeSlack) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DEPLOYBOT_"))}
    env.update(
        SLACK_BOT_TOKEN="xoxb-test",
        SLACK_SIGNING_SECRET="secret",
        SLACK_API_URL=fake.base_url,
        DATABASE_URL=database_url,
        DEPLOYBOT_CONFIG=str(config),
        PORT="0",
        DEPLOYBOT_SCHEDULER_POLL="0.3",
        DEPLOYBOT_SCHEDULER_SYNC="0.5",
        # A killed replica's effects are taken over one lease later: short here.
        DEPLOYBOT_OUTBOX_LEASE="3",
        DEPLOYBOT_OUTBOX_POLL="0.3",
    )
    return env


def counts(factory: sessionmaker[Session], sid: int) -> tuple[int, int, int]:
    """(probe runs, fired slots, highest slot) of a session's monitoring."""
    with factory() as db:
        runs = db.scalar(select(func.count()).where(ProbeRunRow.session_id == sid)) or 0
        slots = db.execute(
            select(func.count(), func.max(ScheduleSlotRow.slot)).where(
                ScheduleSlotRow.session_id == sid, ScheduleSlotRow.job == "monitor"
            )
        ).one()
    return int(runs), int(slots[0]), int(slots[1] or 0)


def allowed_extra_rounds(service: DeployService, sid: int) -> int:
    """Rounds that are no monitoring slot: the verification after the deploy, and a re-run
    of a round that a kill interrupted."""
    history = [e.kind for e in service.history(sid)]
    return history.count("deployment_finished") + history.count("probe_interrupted")


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


@pytest.mark.parametrize(
    "database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
def test_sigkilled_leader_is_replaced_and_no_slot_fires_twice(
    database_url: str, session_factory: sessionmaker[Session], tmp_path: Path, fake: FakeSlack
) -> None:
    config = write_config(tmp_path, monitoring="every 400ms for 2m")
    service, _ = make_context(config, session_factory)
    sid = monitoring_session(service)
    env = bot_env(database_url, config, fake)
    first = BotProcess("first", env, tmp_path)
    second = None
    try:
        first.wait_for("became the scheduler leader")
        second = BotProcess("second", env, tmp_path)
        second.wait_for("listening on")
        wait_until(lambda: counts(session_factory, sid)[0] >= 3, 20, "the leader runs probes")
        assert "became the scheduler leader" not in second.output()

        first.kill()
        killed = time.monotonic()
        _, _, last_before = counts(session_factory, sid)
        took_over = second.wait_for("became the scheduler leader", timeout=15)
        assert took_over - killed < 10, "another replica takes over within seconds"
        wait_until(
            lambda: counts(session_factory, sid)[2] >= last_before + 3,
            20,
            "the new leader goes on with the monitoring",
        )
        runs, slots, _ = counts(session_factory, sid)
        assert runs <= slots + allowed_extra_rounds(service, sid)  # nothing ran twice
    finally:
        first.kill()
        if second is not None:
            second.kill()


def test_restart_after_sigkill_goes_on_where_it_was(tmp_path: Path, fake: FakeSlack) -> None:
    from bot.storage.db import make_engine, make_sessionmaker, upgrade

    database_url = f"sqlite:///{tmp_path / 'deploybot.db'}"
    upgrade(database_url)
    factory = make_sessionmaker(make_engine(database_url))
    config = write_config(tmp_path, monitoring="every 400ms for 2m")
    service, _ = make_context(config, factory)
    sid = monitoring_session(service)
    env = bot_env(database_url, config, fake)
    bot = BotProcess("before", env, tmp_path)
    try:
        bot.wait_for("became the scheduler leader")
        wait_until(lambda: counts(factory, sid)[0] >= 3, 20, "monitoring runs")
        bot.kill()
        _, _, last_before = counts(factory, sid)
        with factory() as db:
            stored = db.scalar(select(func.count()).select_from(apscheduler_jobs))
        assert stored == 0  # no job is stored: the next leader derives them from the session
        time.sleep(1.5)  # slots pass while the bot is down: the next leader makes them up once
        bot = BotProcess("after", env, tmp_path)
        bot.wait_for("became the scheduler leader")
        wait_until(lambda: counts(factory, sid)[2] >= last_before + 3, 20, "monitoring goes on")
        runs, slots, _ = counts(factory, sid)
        assert runs <= slots + allowed_extra_rounds(service, sid)  # nothing ran twice
    finally:
        bot.kill()
