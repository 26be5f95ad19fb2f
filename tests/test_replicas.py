"""Any replica, any request: two ``deploybot serve`` processes on one PostgreSQL database.

Two people tick 100 items of one session as fast as they can, their clicks going to the
two replicas in turn; in the second run one replica is SIGKILLed mid-burst and the clicks
it no longer answers go to the other (as Slack's retry or the person's second click
would). After quiet: every click that was acknowledged is applied, each tick audited to
its clicker, every Slack message equals the render of the stored state, and nothing was
posted twice.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.app.sessions import DeployService
from bot.config.loader import load_config
from bot.domain import ItemStatus
from bot.rendering.checklist import checklist_messages
from bot.rendering.ids import ActionId
from bot.storage.models import InboxRow, OutboxRow
from bot.storage.uow import UnitOfWork
from tests.support.slack import FakeSlack, Message, SlackRequests
from tests.test_scheduler_processes import BotProcess, bot_env

ITEMS = 100
PEOPLE = ("U0DEPLOYER", "U0APPROVER1")


def burst_config(tmp_path: Path, items: int = ITEMS) -> Path:
    """One environment whose checklist is one section of ``items`` items."""
    lines = "\n".join(f"      - text: Item {n}" for n in range(1, items + 1))
    (tmp_path / "burst.yaml").write_text(
        f"title: Burst\nsections:\n  - title: Burst\n    items:\n{lines}\n", encoding="utf-8"
    )
    config = tmp_path / "deploybot.yaml"
    config.write_text(
        """
roles:
  deployers: [U0DEPLOYER]
  approvers: [U0APPROVER1]
environments:
  staging:
    channel: "#deploys-staging"
    checklist: burst.yaml
    starters: [deployers]
    signoffs:
      - role: QA Lead
        by: [approvers]
""",
        encoding="utf-8",
    )
    return config


class Replica:
    def __init__(self, name: str, env: dict[str, str], tmp_path: Path, fake: FakeSlack) -> None:
        self.process = BotProcess(name, env, tmp_path)
        try:
            self.process.wait_for("listening on")
        except AssertionError:
            self.process.kill()
            raise
        port = re.search(r"listening on 127\.0\.0\.1:(\d+)", self.process.output())
        assert port is not None, self.process.output()
        url = f"http://127.0.0.1:{port.group(1)}/slack/events"
        self.slack = SlackRequests("secret", url, fake=fake)


def pending(factory: sessionmaker[Session]) -> tuple[int, int]:
    """(effects not yet delivered, Slack requests not yet finished)."""
    with factory() as db:
        effects = db.scalars(
            select(OutboxRow.id).where(
                OutboxRow.delivered_at.is_(None),
                OutboxRow.failed_at.is_(None),
                OutboxRow.topic != "schedule",  # the sessions' timetables: due later
            )
        ).all()
        requests = db.scalars(select(InboxRow.key).where(InboxRow.done_at.is_(None))).all()
    return len(effects), len(requests)


def quiet(factory: sessionmaker[Session], timeout: float = 60.0) -> None:
    """Wait until every effect is delivered and every Slack request finished."""
    deadline = time.monotonic() + timeout
    while pending(factory) != (0, 0):
        assert time.monotonic() < deadline, f"still pending: {pending(factory)}"
        time.sleep(0.1)


def item_blocks(messages: list[Message]) -> dict[str, tuple[Message, str]]:
    """Item id -> (the message showing it, as first posted, and its checkboxes block id)."""
    found = {}
    for message in messages:
        for block in message.blocks:
            element = (block.get("elements") or [{}])[0]
            if element.get("type") == "checkboxes":
                for option in element["options"]:
                    found[option["value"]] = (message, block["block_id"])
    return found


@pytest.mark.parametrize(
    "database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
@pytest.mark.parametrize("kill", [False, True], ids=["both-live", "one-killed-mid-burst"])
def test_two_replicas_take_a_burst_of_ticks_from_two_people(
    database_url: str,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    kill: bool,
) -> None:
    config = burst_config(tmp_path)
    with FakeSlack() as fake:
        env = bot_env(database_url, config, fake)
        env.update(
            DEPLOYBOT_HOST="127.0.0.1",
            DEPLOYBOT_OUTBOX_POLL="0.2",
            DEPLOYBOT_OUTBOX_BACKOFF="0.05",
            DEPLOYBOT_OUTBOX_BACKOFF_CAP="0.5",
            DEPLOYBOT_OUTBOX_LEASE="3",
            DEPLOYBOT_INBOX_CLAIM="2",
        )
        replicas: list[Replica] = []
        try:
            replicas += [Replica(name, env, tmp_path, fake) for name in ("a", "b")]
            start = replicas[0].slack.command(
                "start staging", user_id="U0DEPLOYER", response_url=fake.response_url("start")
            )
            assert start.status == 200
            fake.wait_for("response_url", timeout=20)
            quiet(session_factory)
            summary = fake.calls("chat.postMessage")[0]
            channel = str(summary.params["channel"])
            ts = fake.messages(channel)[0].ts
            shown = item_blocks(fake.thread(channel, ts)[1:])
            assert len(shown) == ITEMS
            order = sorted(shown, key=_order)

            live = list(replicas)
            acknowledged: list[str] = []

            def click(n: int) -> None:
                item = order[n]
                message, block_id = shown[item]
                replica = live[n % len(live)]
                options = _options(message, block_id)
                kw = dict(
                    user_id=PEOPLE[(n // 2) % 2],
                    action_id=ActionId.TICK,
                    block_id=block_id,
                    selected_options=[o for o in options if o["value"] == item],
                    channel_id=message.channel,
                    message_ts=message.ts,
                    message=message,  # as first posted: nothing ticked
                )
                try:
                    answer = replica.slack.block_action(**kw)  # type: ignore[arg-type]
                except OSError:  # the killed replica: click again, the other one answers
                    answer = live[0].slack.block_action(**kw)  # type: ignore[arg-type]
                assert answer.status == 200, answer
                acknowledged.append(item)

            with ThreadPoolExecutor(max_workers=4) as pool:
                list(pool.map(click, range(ITEMS // 2)))
                if kill:
                    replicas[1].process.kill()
                    live[:] = [replicas[0]]
                list(pool.map(click, range(ITEMS // 2, ITEMS)))
            assert len(acknowledged) == ITEMS

            quiet(session_factory)

            service = DeployService(config=load_config(config), session_factory=session_factory)
            session = service.get(1)
            assert all(session.progress(i).status is ItemStatus.DONE for i in shown)
            ticks = [
                (e.actor, e.data["item"]) for e in service.history(1) if e.kind == "item_ticked"
            ]
            assert len(ticks) == ITEMS  # each once, none lost
            assert sorted(ticks) == sorted((PEOPLE[(n // 2) % 2], order[n]) for n in range(ITEMS))

            # Every message shows the stored state; each was posted exactly once.
            with UnitOfWork(session_factory) as uow:
                stored = uow.slack_messages.for_session(1)
            wanted = {m.purpose: m.blocks for m in checklist_messages(session)}
            assert set(wanted) <= set(stored)
            for purpose, blocks in wanted.items():
                record = stored[purpose]
                current = next(m for m in fake.thread(channel, ts) if m.ts == record.ts)
                assert current.blocks == blocks, purpose
            posted = [c.params.get("thread_ts") for c in fake.calls("chat.postMessage")]
            assert len(posted) == len(stored)
        finally:
            for replica in replicas:
                replica.process.kill()


def _order(item_id: str) -> tuple[int, ...]:
    return tuple(int(part) for part in item_id.split("."))


def _options(message: Message, block_id: str) -> list[dict[str, object]]:
    block = next(b for b in message.blocks if b.get("block_id") == block_id)
    options: list[dict[str, object]] = block["elements"][0]["options"]
    return options
