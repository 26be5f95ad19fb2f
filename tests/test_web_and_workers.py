"""The web tier only acknowledges; ``deploybot worker`` processes do the work.

Real processes on one database (SQLite file or PostgreSQL schema), signed HTTP requests:
a ``deploybot serve --role web`` process records and acknowledges a request and changes
nothing; ``deploybot worker`` processes carry it out, two of them never the same request
twice; a worker SIGKILLed in the middle of a request leaves it to another.
"""

from __future__ import annotations

import re
import signal
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bot.app.sessions import DeployService
from bot.config.loader import load_config
from bot.domain import ItemStatus
from bot.rendering.ids import ActionId
from bot.storage.models import InboxRow, SessionRow
from tests.support.slack import FakeSlack, SlackRequests
from tests.test_replicas import burst_config, item_blocks, quiet
from tests.test_scheduler_processes import BotProcess, bot_env

QUICK = {
    "DEPLOYBOT_HOST": "127.0.0.1",
    "DEPLOYBOT_INBOX_POLL": "0.05",
    "DEPLOYBOT_OUTBOX_POLL": "0.2",
    "DEPLOYBOT_OUTBOX_BACKOFF": "0.05",
    "DEPLOYBOT_OUTBOX_BACKOFF_CAP": "0.5",
}


class Processes:
    """The processes a test starts, all killed at its end."""

    def __init__(self, env: dict[str, str], tmp_path: Path, fake: FakeSlack) -> None:
        self.env, self.tmp_path, self.fake = env, tmp_path, fake
        self.started: list[BotProcess] = []

    def web(self, name: str = "web") -> SlackRequests:
        """``deploybot serve --role web``; signed requests to it."""
        process = self._start(name, ("serve", "--role", "web"))
        process.wait_for("listening on")
        port = re.search(r"listening on 127\.0\.0\.1:(\d+)", process.output())
        assert port is not None, process.output()
        assert "web only" in process.output()
        url = f"http://127.0.0.1:{port.group(1)}/slack/events"
        return SlackRequests("secret", url, fake=self.fake)

    def worker(self, name: str, *, wait: bool = True) -> BotProcess:
        """``deploybot worker``; with ``wait``, once it is up."""
        process = self._start(name, ("worker",))
        if wait:
            process.wait_for("deploybot worker: health on")
        return process

    def _start(self, name: str, args: tuple[str, ...]) -> BotProcess:
        process = BotProcess(name, self.env, self.tmp_path, args)
        self.started.append(process)
        return process

    def kill_all(self) -> None:
        for process in self.started:
            process.kill()


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


def running(
    database_url: str, tmp_path: Path, fake: FakeSlack, **env: str
) -> tuple[Processes, Path]:
    config = burst_config(tmp_path, items=20)
    values = bot_env(database_url, config, fake)
    values.update(QUICK, **env)
    return Processes(values, tmp_path, fake), config


def inbox(factory: sessionmaker[Session]) -> list[InboxRow]:
    with factory() as db:
        return list(db.scalars(select(InboxRow)))


def sessions(factory: sessionmaker[Session]) -> int:
    with factory() as db:
        return db.scalar(select(func.count()).select_from(SessionRow)) or 0


def test_the_web_tier_records_and_acknowledges_and_workers_do_the_work_once(
    database_url: str, session_factory: sessionmaker[Session], tmp_path: Path, fake: FakeSlack
) -> None:
    processes, config = running(database_url, tmp_path, fake)
    try:
        slack = processes.web()
        answer = slack.command(
            "start staging", user_id="U0DEPLOYER", response_url=fake.response_url("start")
        )
        assert (answer.status, answer.body) == (200, "")
        # Recorded, left to the workers (due at once, held by nobody), and nothing done.
        (row,) = inbox(session_factory)
        assert row.done_at is None and row.claimed_until == row.received_at
        assert sessions(session_factory) == 0
        assert fake.calls("response_url") == [] and fake.calls("chat.postMessage") == []

        workers = [processes.worker(name, wait=False) for name in ("worker-a", "worker-b")]
        (opened,) = fake.wait_for("response_url", timeout=20)
        assert "Opened deploy #1" in opened.params["text"]
        for worker in workers:
            worker.wait_for("deploybot worker: health on")
        quiet(session_factory)

        # A burst through the web tier, taken by both workers: ticks and status commands.
        channel = str(fake.calls("chat.postMessage")[0].params["channel"])
        ts = fake.messages(channel)[0].ts
        shown = item_blocks(fake.thread(channel, ts)[1:])
        assert len(shown) == 20

        def tick(item: str) -> int:
            message, block_id = shown[item]
            block = next(b for b in message.blocks if b.get("block_id") == block_id)
            options = block["elements"][0]["options"]
            return slack.block_action(
                user_id="U0APPROVER1",
                action_id=ActionId.TICK,
                block_id=block_id,
                selected_options=[o for o in options if o["value"] == item],
                channel_id=message.channel,
                message_ts=message.ts,
                message=message,  # as first posted: nothing ticked
            ).status

        def status(n: int) -> int:
            return slack.command(
                "status 1", user_id="U0DEPLOYER", response_url=fake.response_url(f"status-{n}")
            ).status

        with ThreadPoolExecutor(max_workers=4) as pool:
            ticks = pool.map(tick, sorted(shown))
            statuses = pool.map(status, range(20))
            assert set(ticks) | set(statuses) == {200}
        quiet(session_factory)

        answered = Counter(c.path.rsplit("/", 1)[-1] for c in fake.calls("response_url"))
        assert answered == Counter({"start": 1} | {f"status-{n}": 1 for n in range(20)})
        service = DeployService(config=load_config(config), session_factory=session_factory)
        session = service.get(1)
        assert all(session.progress(i).status is ItemStatus.DONE for i in shown)
        ticked = [e.data["item"] for e in service.history(1) if e.kind == "item_ticked"]
        assert sorted(ticked) == sorted(shown)  # each once
        assert all(row.done_at is not None for row in inbox(session_factory))

        # SIGTERM: each role drains and stops cleanly.
        for process in processes.started:
            process.proc.send_signal(signal.SIGTERM)
        for process in processes.started:
            assert process.proc.wait(timeout=30) == 0, process.output()
            assert "deploybot: stopped" in process.output()
    finally:
        processes.kill_all()


class HangingResponseUrl:
    """A response URL whose first POST never gets an answer (the worker hangs in it)."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.first = threading.Event()
        self.second = threading.Event()
        self._release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.bodies.append(body)
                if len(outer.bodies) == 1:
                    outer.first.set()
                    outer._release.wait(30)
                else:
                    outer.second.set()
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hang"

    def close(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()


def test_a_worker_killed_mid_request_leaves_it_to_another(
    database_url: str, session_factory: sessionmaker[Session], tmp_path: Path, fake: FakeSlack
) -> None:
    processes, _ = running(database_url, tmp_path, fake, DEPLOYBOT_INBOX_CLAIM="1")
    hanging = HangingResponseUrl()
    try:
        first = processes.worker("worker-a", wait=False)
        slack = processes.web()
        first.wait_for("deploybot worker: health on")
        answer = slack.command("status", user_id="U0DEPLOYER", response_url=hanging.url)
        assert (answer.status, answer.body) == (200, "")
        assert hanging.first.wait(20), first.output()  # worker a is answering, and hangs
        first.kill()
        (row,) = inbox(session_factory)
        assert row.done_at is None  # unfinished: a's claim runs out

        second = processes.worker("worker-b")
        assert hanging.second.wait(20), second.output()
        quiet(session_factory)
        assert len(hanging.bodies) == 2 and hanging.bodies[0] == hanging.bodies[1]
        (row,) = inbox(session_factory)
        assert row.done_at is not None
    finally:
        processes.kill_all()
        hanging.close()
