"""A running bot for end-to-end tests: the real Bolt app on waitress, a fake Slack beside it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from bot.domain import DeploySession, ItemStatus, SessionState
from bot.integrations.pagerduty import PagerDuty
from bot.ops.settings import Settings
from bot.rendering.ids import ActionId
from bot.server import Bot, create_bot, serve_http
from bot.storage.models import OutboxRow
from bot.storage.repositories import AuditEntry
from sandbox.serving import WaitressInBackground
from tests.support.slack import Ephemeral, FakeSlack, Message, Response, SlackRequests

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SECRET = "e2e-signing-secret"


@dataclass
class RunningBot:
    fake: FakeSlack
    slack: SlackRequests
    bot: Bot
    url: str

    def command(self, text: str, *, user: str, reply: str, **kw: Any) -> Response:
        return self.slack.command(
            text, user_id=user, response_url=self.fake.response_url(reply), **kw
        )

    def reply(self, name: str, timeout: float = 10.0) -> dict[str, Any]:
        """The ephemeral answer the bot sent to the request's response_url called ``name``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for call in self.fake.calls("response_url"):
                if call.path.endswith(f"/{name}"):
                    return call.params
            time.sleep(0.02)
        seen = [c.path for c in self.fake.calls("response_url")]
        raise AssertionError(f"no reply at {name}; replies seen: {seen}")

    def thread_answer(self, user: str, containing: str, timeout: float = 10.0) -> Ephemeral:
        """The ephemeral answer shown to ``user`` in a thread that contains ``containing``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for shown in self.fake.ephemerals(user):
                if shown.thread_ts and containing in shown.text:
                    return shown
            time.sleep(0.02)
        raise AssertionError(f"no answer in a thread for {user}: {self.fake.ephemerals()}")

    def session(self, session_id: int) -> DeploySession:
        return self.bot.runtime.service.get(session_id)

    def session_history(self, session_id: int) -> list[AuditEntry]:
        return self.bot.runtime.service.history(session_id)

    def wait_state(self, session_id: int, state: SessionState, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while (current := self.session(session_id).state) is not state:
            assert time.monotonic() < deadline, f"deploy #{session_id} is {current}, not {state}"
            time.sleep(0.05)

    def wait_item(
        self, session_id: int, item_id: str, status: ItemStatus, timeout: float = 20.0
    ) -> None:
        deadline = time.monotonic() + timeout
        while (now := self.session(session_id).progress(item_id).status) is not status:
            assert time.monotonic() < deadline, f"item {item_id} is {now}, not {status}"
            time.sleep(0.05)

    def wait_signed(self, session_id: int, key: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while key not in self.session(session_id).signoffs:
            assert time.monotonic() < deadline, f"deploy #{session_id}: {key} was never signed"
            time.sleep(0.05)

    def summary(self) -> Message:
        """The latest summary message in the deploy channel (after pending updates)."""
        self.bot.publisher.flush()
        time.sleep(0.05)  # a listener may still be about to mark the session changed
        self.bot.publisher.flush()
        channel = self.channel()
        return self.fake.messages(channel)[-1]

    def settle(self, timeout: float = 20.0) -> None:
        """Wait until every effect is carried out (the sessions' timetables aside)."""
        deadline = time.monotonic() + timeout
        while True:
            with self.bot.runtime.session_factory() as db:
                left = db.scalar(
                    select(func.count()).where(
                        OutboxRow.topic != "schedule",
                        OutboxRow.delivered_at.is_(None),
                        OutboxRow.failed_at.is_(None),
                    )
                )
            if not left:
                return
            assert time.monotonic() < deadline, f"{left} effects still to do"
            time.sleep(0.05)

    def checklist_messages(self) -> list[Message]:
        summary = self.summary()
        return self.fake.thread(summary.channel, summary.ts)[1:]

    def channel(self) -> str:
        return str(self.fake.calls("chat.postMessage")[0].params["channel"])

    def click(self, user: str, action_id: ActionId, value: str, reply: str) -> Response:
        summary = self.summary()
        return self.slack.block_action(
            user_id=user,
            action_id=action_id,
            value=value,
            block_id="actions",
            channel_id=summary.channel,
            message_ts=summary.ts,
            response_url=self.fake.response_url(reply),
        )

    def tick(self, user: str, item_ids: list[str], reply: str, *, untick: bool = False) -> Response:
        """Click the checkboxes of the element that shows ``item_ids[0]``."""
        for message in self.checklist_messages():
            for block in message.blocks:
                element = (block.get("elements") or [{}])[0]
                if element.get("type") != "checkboxes":
                    continue
                values = [o["value"] for o in element["options"]]
                if item_ids[0] not in values:
                    continue
                current = {o["value"] for o in element.get("initial_options") or []}
                selected = current - set(item_ids) if untick else current | set(item_ids)
                return self.slack.block_action(
                    user_id=user,
                    action_id=ActionId.TICK,
                    block_id=block["block_id"],
                    selected_options=[o for o in element["options"] if o["value"] in selected],
                    channel_id=message.channel,
                    message_ts=message.ts,
                    message=message,
                    response_url=self.fake.response_url(reply),
                )
        raise AssertionError(f"no checkbox shows item {item_ids[0]}")


@contextmanager
def running_bot(
    database_url: str,
    *,
    config: Path = EXAMPLES / "minimal.yaml",
    interval: float = 0.05,
    pagerduty: PagerDuty | None = None,
    background: bool = False,
    backoff: float = 0.05,
    page_link_wait: float = 10.0,
) -> Iterator[RunningBot]:
    """The bot on loopback with its outbox workers; ``background`` also starts its scheduler.

    ``backoff`` is the outbox's first wait after a failed attempt (short, so tests don't wait);
    ``page_link_wait`` how long a trigger waits for the incident thread it links to.
    """
    with FakeSlack() as fake:
        fake.usergroups = {"S0RELEASE": ["U0DEPLOYER"]}
        fake.usergroup_handles = {"S0RELEASE": "release-managers"}
        settings = Settings(
            SLACK_BOT_TOKEN="xoxb-test",
            SLACK_SIGNING_SECRET=SECRET,
            SLACK_API_URL=fake.base_url,
            DATABASE_URL=database_url,
            DEPLOYBOT_CONFIG=str(config),
            DEPLOYBOT_SCHEDULER_POLL=0.05,
            DEPLOYBOT_SCHEDULER_SYNC=0.5,
            DEPLOYBOT_OUTBOX_POLL=0.05,
            DEPLOYBOT_OUTBOX_BACKOFF=backoff,
            DEPLOYBOT_OUTBOX_BACKOFF_CAP=max(0.5, backoff * 8),
            DEPLOYBOT_PAGERDUTY_LINK_WAIT=page_link_wait,
            DEPLOYBOT_DEPLOY_POLL=0.1,
        )
        bot = create_bot(settings, publish_interval=interval, pagerduty=pagerduty)
        bot.start(scheduler=background)
        server = WaitressInBackground(
            serve_http(bot, host="127.0.0.1", port=0, threads=8), name="waitress"
        )
        url = f"http://127.0.0.1:{server.port}"
        try:
            yield RunningBot(
                fake, SlackRequests(SECRET, url + "/slack/events", fake=fake), bot, url
            )
        finally:
            server.close()  # from waitress's own loop: no EBADF in its thread
            bot.close()
