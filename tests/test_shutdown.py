"""Real ``deploybot serve`` processes stopped the way Kubernetes stops them.

SIGTERM: the process finishes or hands back what it holds and exits 0 within its drain
timeout; a probe it could not finish is marked interrupted and run again by the next process.
SIGKILL during a probe round: the next process finds the round's heartbeat stopped, marks its
items interrupted (audited) and runs the probes again; nothing stays "running" forever.
"""

from __future__ import annotations

import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from bot.app.sessions import DeployService
from bot.config.loader import load_config
from bot.domain import ItemStatus
from bot.rendering.ids import ActionId
from bot.storage.models import InboxRow, OutboxRow
from tests.support.slack import FakeSlack
from tests.test_replicas import Replica
from tests.test_scheduler import monitoring_session
from tests.test_scheduler_processes import BotProcess, bot_env, wait_until


def hanging_probe_config(tmp_path: Path) -> Path:
    """One probe whose first run hangs for a minute (the process dies or stops during it);
    every later run passes at once. Monitoring: one round, half a second in."""
    marker = tmp_path / "first-run-started"
    script = (
        "import os, sys, time\n"
        f"marker = {str(marker)!r}\n"
        "if not os.path.exists(marker):\n"
        "    open(marker, 'w').close()\n"
        "    time.sleep(60)\n"
        "print('ok')\n"
    )
    (tmp_path / "checklist.yaml").write_text(
        "title: T\nsections:\n  - title: Pre\n    items:\n      - text: Ready\n",
        encoding="utf-8",
    )
    config = tmp_path / "deploybot.yaml"
    config.write_text(
        f"""
roles:
  deployers: [U0DEPLOYER]
  approvers: [U0APPROVER]
probes:
  smoke:
    kind: command
    argv: {[sys.executable, "-c", script]!r}
    timeout: 2m
environments:
  staging:
    channel: "#deploys"
    checklist: checklist.yaml
    starters: [deployers]
    signoffs:
      - role: QA Lead
        by: [approvers]
    probes: [smoke]
    monitoring: every 500ms for 500ms
""",
        encoding="utf-8",
    )
    return config


def monitored(service: DeployService, factory: sessionmaker[Session]) -> int:
    """A session being monitored whose verification round is over: the next probe round is
    the monitoring one, run by the scheduler's leader (no outbox row keeps it)."""
    sid = monitoring_session(service)
    with factory() as db, db.begin():
        db.execute(
            update(OutboxRow)
            .where(OutboxRow.topic == "probes")
            .values(delivered_at=datetime.now(UTC))
        )
    return sid


def probe_item(service: DeployService, sid: int) -> str:
    session = service.get(sid)
    return next(item.id for _, item in session.checklist.walk() if item.probe == "smoke")


def pending(factory: sessionmaker[Session]) -> list[tuple[str, int]]:
    with factory() as db:
        rows = db.execute(
            select(OutboxRow.topic, OutboxRow.id).where(
                OutboxRow.delivered_at.is_(None),
                OutboxRow.failed_at.is_(None),
                OutboxRow.topic != "schedule",  # the sessions' timetables: due later
            )
        ).all()
        unfinished = db.scalars(select(InboxRow.key).where(InboxRow.done_at.is_(None))).all()
    return [(topic, row_id) for topic, row_id in rows] + [("inbox", 0) for _ in unfinished]


def env_for(database_url: str, config: Path, fake: FakeSlack) -> dict[str, str]:
    env = bot_env(database_url, config, fake)
    env.update(
        DEPLOYBOT_HOST="127.0.0.1",
        DEPLOYBOT_OUTBOX_BACKOFF="0.05",
        DEPLOYBOT_OUTBOX_BACKOFF_CAP="0.5",
        DEPLOYBOT_DRAIN_TIMEOUT="4",
    )
    return env


def hanging(first: BotProcess, service: DeployService, sid: int, item: str, tmp_path: Path) -> None:
    """Wait until ``first`` serves and its probe's first run hangs, the item running."""
    first.wait_for("listening on")
    wait_until(
        lambda: (
            service.get(sid).progress(item).status is ItemStatus.RUNNING
            and (tmp_path / "first-run-started").exists()
        ),
        30,
        "the probe runs (its hanging first run has started)",
    )
    # Slack shows it running: the hand-back's note is then the only update the drain owes,
    # not one that waits behind the running one's (one update a second per message).
    wait_until(
        lambda: not any(t == "publish" for t, _ in pending(service.session_factory)),
        30,
        "the running probe shown in Slack",
    )


def test_sigterm_hands_back_a_hanging_probe_and_exits_0(
    session_factory: sessionmaker[Session], database_url: str, tmp_path: Path
) -> None:
    config = hanging_probe_config(tmp_path)
    service = DeployService(config=load_config(config), session_factory=session_factory)
    sid = monitored(service, session_factory)
    item = probe_item(service, sid)
    with FakeSlack() as fake:
        env = env_for(database_url, config, fake)
        first = BotProcess("first", env, tmp_path)
        second = None
        try:
            hanging(first, service, sid, item, tmp_path)
            first.proc.send_signal(signal.SIGTERM)
            assert first.proc.wait(timeout=20) == 0, first.output()
            assert "deploybot: stopped" in first.output()

            # Handed back by the process itself on its way out: audited, shown in Slack.
            progress = service.get(sid).progress(item)
            assert progress.status is ItemStatus.PENDING, progress
            kinds = [e.kind for e in service.history(sid)]
            assert "probe_interrupted" in kinds
            notes = [c.params.get("text", "") for c in fake.calls("chat.postMessage")]
            assert any("interrupted" in str(n) for n in notes), notes
            # The re-run it asked for waits for the next process, due at once.
            left = {topic for topic, _ in pending(session_factory)}
            assert left <= {"probes"}, left

            second = BotProcess("second", env, tmp_path)
            wait_until(
                lambda: service.get(sid).progress(item).status is ItemStatus.DONE,
                30,
                "the next process runs the probe again",
            )
            wait_until(lambda: not pending(session_factory), 30, "everything delivered")
        finally:
            first.kill()
            if second is not None:
                second.kill()


def test_sigterm_delivers_pending_slack_updates_before_it_exits(
    session_factory: sessionmaker[Session], database_url: str, tmp_path: Path
) -> None:
    """A tick acknowledged just before SIGTERM still reaches Slack: nothing is left over."""
    config = hanging_probe_config(tmp_path)
    service = DeployService(config=load_config(config), session_factory=session_factory)
    opened = service.open(environment="staging", user_id="U0DEPLOYER")
    assert opened.id is not None
    sid = opened.id
    with FakeSlack() as fake:
        env = env_for(database_url, config, fake)
        env["DEPLOYBOT_INBOX_CLAIM"] = "60"
        replica = Replica("only", env, tmp_path, fake)
        try:
            wait_until(lambda: not pending(session_factory), 30, "settled")
            wait_until(lambda: bool(fake.calls("chat.postMessage")), 10, "posted")
            channel = str(fake.calls("chat.postMessage")[0].params["channel"])
            summary = fake.messages(channel)[0]
            message = next(
                m
                for m in fake.thread(channel, summary.ts)[1:]
                if any((b.get("elements") or [{}])[0].get("type") == "checkboxes" for b in m.blocks)
            )
            block = next(
                b
                for b in message.blocks
                if (b.get("elements") or [{}])[0].get("type") == "checkboxes"
            )
            option = block["elements"][0]["options"][0]
            before = len(fake.calls("chat.update"))
            answer = replica.slack.block_action(
                user_id="U0DEPLOYER",
                action_id=ActionId.TICK,
                block_id=block["block_id"],
                selected_options=[option],
                channel_id=message.channel,
                message_ts=message.ts,
                message=message,
                response_url=fake.response_url("tick"),
            )
            assert answer.status == 200
            replica.process.proc.send_signal(signal.SIGTERM)
            assert replica.process.proc.wait(timeout=20) == 0, replica.process.output()

            assert service.get(sid).progress(option["value"]).status is ItemStatus.DONE
            assert pending(session_factory) == [], (
                dump(session_factory),
                replica.process.output()[-3000:],
            )
            assert len(fake.calls("chat.update")) > before
        finally:
            replica.process.kill()


def test_after_a_sigkill_during_a_probe_the_next_process_recovers_it(
    session_factory: sessionmaker[Session], database_url: str, tmp_path: Path
) -> None:
    config = hanging_probe_config(tmp_path)
    service = DeployService(config=load_config(config), session_factory=session_factory)
    sid = monitored(service, session_factory)
    item = probe_item(service, sid)
    with FakeSlack() as fake:
        env = env_for(database_url, config, fake)
        first = BotProcess("first", env, tmp_path)
        second = None
        try:
            hanging(first, service, sid, item, tmp_path)
            first.kill()
            second = BotProcess("second", env, tmp_path)
            wait_until(
                lambda: service.get(sid).progress(item).status is ItemStatus.DONE,
                60,
                "the item is still running after a restart",
            )
            kinds = [e.kind for e in service.history(sid)]
            assert "probe_interrupted" in kinds
        finally:
            first.kill()
            if second is not None:
                second.kill()


def dump(factory: sessionmaker[Session]) -> list[object]:
    with factory() as db:
        return [
            (
                r.id,
                r.topic,
                r.idempotency_key,
                r.attempts,
                r.next_attempt_at,
                r.created_at,
                r.last_error,
            )
            for r in db.scalars(select(OutboxRow))
        ]
