"""The deploy queue, DM reminders and the App Home through the real Bolt app over HTTP, on
SQLite and PostgreSQL: a busy start offers *Queue me*; the environment freeing up calls
the first in line (DM and channel) who is admitted ahead of others; a turn not taken lapses
to the next (on an injected clock); reminders DM the people who can sign, then the
requester, at most the configured number of times; the Home is published when opened and
after a change, and its Sign-off buttons sign."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from bot.app.queue import DeployQueueService
from bot.app.schedules import reminder_start
from bot.domain import SessionState
from bot.domain.queue import QueueState
from bot.rendering.ids import ActionId
from bot.rendering.limits import validate_view
from bot.storage.db import upgrade
from bot.workers.jobs import Jobs
from bot.workers.outbox import OutboxWorker
from tests.e2e import EXAMPLES, RunningBot, running_bot

DEPLOYER, SECOND, THIRD = "U0DEPLOYER", "U0SECOND", "U0THIRD"


def queue_config(tmp_path: Path) -> Path:
    checklist = tmp_path / "short.yaml"
    checklist.write_text(
        yaml.safe_dump({"sections": [{"title": "Checks", "items": [{"text": "Tests pass"}]}]})
    )
    config = yaml.safe_load((EXAMPLES / "minimal.yaml").read_text())
    config["roles"]["deployers"] += [SECOND, THIRD]
    staging = config["environments"]["staging"]
    staging.update(
        checklist=str(checklist),
        probes=[],
        queue_turn="15m",
        reminders={"after": "30m", "every": "1h", "max": 2},
    )
    for key in ("monitoring", "pagerduty"):
        del staging[key]
    path = tmp_path / "queue.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def eventually(what: str, found: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := found()):
        assert time.monotonic() < deadline, what
        time.sleep(0.02)
    return result


def replica_at(bot: RunningBot, at: datetime) -> int:
    """Deliver the ``slack`` rows due by ``at``, as a replica whose clock reads ``at`` would
    (effects of a job run on an injected clock are due then, not now)."""
    slack = bot.bot.workers[0]._handlers["slack"]  # the running bot's own delivery
    worker = OutboxWorker(bot.bot.runtime.session_factory, {"slack": slack}, clock=lambda: at)
    return worker.deliver_due()


def posted(bot: RunningBot, channel: str, containing: str) -> list[str]:
    """Texts posted to ``channel`` (a user ID: a DM) that contain ``containing``, once some are."""
    return eventually(
        f"no message to {channel} with {containing!r}: "
        f"{[m.text for m in bot.fake.messages(channel)]}",
        lambda: [m.text for m in bot.fake.messages(channel) if containing in m.text],
    )


def test_queue_notify_take_turn_and_lapse(database_url: str, tmp_path: Path) -> None:
    upgrade(database_url)
    with running_bot(database_url, config=queue_config(tmp_path)) as bot:
        bot.command("start staging", user=DEPLOYER, reply="first")
        assert "Opened deploy #1" in bot.reply("first")["text"]

        bot.command("start staging", user=SECOND, reply="busy")
        offer = bot.reply("busy")
        assert "already open: #1" in offer["text"]
        (button,) = offer["blocks"][1]["elements"]
        assert (button["action_id"], button["value"]) == (ActionId.QUEUE_JOIN, "staging|")
        bot.slack.block_action(
            user_id=SECOND,
            action_id=ActionId.QUEUE_JOIN,
            value=button["value"],
            block_id="queue_offer",
            channel_id="C0DEPLOYS",
            message_ts="1.0",
            is_ephemeral=True,
            response_url=bot.fake.response_url("queued"),
        )
        assert "You are number 1 in the queue for staging" in bot.reply("queued")["text"]
        bot.command("start staging --queue", user=THIRD, reply="third")
        assert "number 2" in bot.reply("third")["text"]
        bot.command("start staging --queue", user=THIRD, reply="twice")
        assert "already in the queue for staging (number 2)" in bot.reply("twice")["text"]

        bot.command("queue staging", user=DEPLOYER, reply="listed")
        listing = json.dumps(bot.reply("listed")["blocks"])
        assert "1. <@U0SECOND>" in listing and "2. <@U0THIRD>" in listing
        bot.command("list", user=DEPLOYER, reply="list")
        assert "Deploy queue (2)" in json.dumps(bot.reply("list")["blocks"])

        bot.command("abort 1 make way", user=DEPLOYER, reply="aborted")
        bot.reply("aborted")
        dm = posted(bot, SECOND, "your turn to deploy *staging*")[0]
        assert "`/deploy start staging` within 15 min" in dm
        posted(bot, "#deploys-staging", "<@U0SECOND> is next in the queue")
        assert THIRD not in json.dumps([m.text for m in bot.fake.messages(THIRD)])

        # The turn is U0SECOND's: U0THIRD is refused, though the environment is free.
        bot.command("start staging", user=THIRD, reply="early")
        assert "It is <@U0SECOND>'s turn to deploy staging" in bot.reply("early")["text"]

        # Fifteen minutes pass (on an injected clock) and the turn lapses to U0THIRD.
        queue = DeployQueueService(bot.bot.runtime.service)
        called = next(e for e in queue.entries("staging") if e.state is QueueState.CALLED)
        assert called.user_id == SECOND and called.turn_until is not None
        jobs = bot.bot.scheduler.jobs
        Jobs(replace(jobs.context, clock=lambda: called.turn_until)).queue_turn(called.id)
        replica_at(bot, called.turn_until)
        posted(bot, THIRD, "your turn to deploy *staging*")
        assert [(e.user_id, e.state) for e in queue.entries("staging")] == [
            (THIRD, QueueState.CALLED)
        ]
        bot.command("start staging", user=THIRD, reply="taken")
        assert "Opened deploy #" in bot.reply("taken")["text"]
        assert queue.entries("staging") == []
        kinds = [e.kind for e in bot.bot.runtime.service.environment_history("staging")]
        assert kinds.count("queue_joined") == 2 and "queue_turn_lapsed" in kinds
        assert kinds[-1] == "queue_taken"


def test_leaving_the_queue(database_url: str, tmp_path: Path) -> None:
    upgrade(database_url)
    with running_bot(database_url, config=queue_config(tmp_path)) as bot:
        bot.command("queue leave staging", user=SECOND, reply="nothing")
        assert "not in a queue for staging" in bot.reply("nothing")["text"]
        bot.command("start staging", user=DEPLOYER, reply="first")
        bot.reply("first")
        bot.command("start staging --queue", user=SECOND, reply="queued")
        bot.reply("queued")
        bot.command("queue leave staging", user=SECOND, reply="left")
        assert "You left the queue for staging" in bot.reply("left")["text"]
        bot.command("queue", user=SECOND, reply="empty")
        assert "Nobody is queued" in json.dumps(bot.reply("empty")["blocks"])


def home(bot: RunningBot, user: str, containing: str, absent: str | None = None) -> dict[str, Any]:
    def shown() -> dict[str, Any] | None:
        view = bot.fake.homes().get(user)
        text = json.dumps(view or {})
        if view and containing in text and (absent is None or absent not in text):
            return view
        return None

    return eventually(f"no Home for {user} showing {containing!r}", shown)


def test_app_home_published_on_open_and_after_changes(database_url: str, tmp_path: Path) -> None:
    upgrade(database_url)
    with running_bot(database_url, config=queue_config(tmp_path)) as bot:
        assert bot.slack.app_home_opened("U0APPROVER1").status == 200
        view = home(bot, "U0APPROVER1", "Nothing waits for you.")
        validate_view(view)

        bot.command("start staging api", user=DEPLOYER, reply="opened")
        bot.reply("opened")
        view = home(bot, "U0APPROVER1", "Sign off as QA Lead")
        validate_view(view)
        buttons = [e for b in view["blocks"] if b["type"] == "actions" for e in b["elements"]]
        assert [(b["action_id"], b["value"]) for b in buttons] == [
            (ActionId.SIGN_OFF, "1|qa-lead"),
            (ActionId.SIGN_OFF, "1|devops-lead"),
        ]
        home(bot, DEPLOYER, "staging api")  # the requester's open deploys
        home(bot, "U0ONCALL", "Your open deploys")  # on-call of the environment

        # The Home's button does what the summary's does.
        bot.slack.block_action(
            user_id="U0APPROVER1",
            action_id=ActionId.SIGN_OFF,
            value="1|qa-lead",
            block_id="home_sign|1",
            channel_id="D0HOME",
            message_ts="1.0",
            is_ephemeral=True,
            response_url=bot.fake.response_url("signed"),
        )
        bot.wait_signed(1, "qa-lead")
        after = home(bot, "U0APPROVER1", "Sign off as DevOps Lead", absent="Sign off as QA Lead")
        validate_view(after)
        # An environment's own changes reach the Homes of those it concerns, unopened.
        bot.command("lock staging maintenance", user=DEPLOYER, reply="locked")
        bot.reply("locked")
        home(bot, "U0ONCALL", "staging is locked by <@U0DEPLOYER>")
        bot.command("unlock staging", user=DEPLOYER, reply="unlocked")
        bot.reply("unlocked")
        home(bot, "U0ONCALL", "Your open deploys", absent="staging is locked")


def test_reminders_reach_signers_then_the_requester_by_dm(
    database_url: str, tmp_path: Path
) -> None:
    upgrade(database_url)
    with running_bot(database_url, config=queue_config(tmp_path)) as bot:
        bot.command("start staging", user=DEPLOYER, reply="opened")
        bot.reply("opened")
        service = bot.bot.runtime.service
        opened = service.get(1).opened_at
        start = reminder_start(opened, timedelta(minutes=30), timedelta(hours=1))
        context = bot.bot.scheduler.jobs.context

        def remind_at(at: datetime) -> None:
            Jobs(replace(context, clock=lambda: at)).remind(1, start, timedelta(hours=1))
            replica_at(bot, at)

        remind_at(opened + timedelta(minutes=30))
        for approver in ("U0APPROVER1", "U0APPROVER2"):
            dm = posted(bot, approver, "for your sign-off as *QA Lead*")[0]
            assert "deploy #1" in dm and "waited 0:30:00" in dm
        assert bot.fake.messages(DEPLOYER) == []  # separation of duties: not asked to sign
        remind_at(opened + timedelta(minutes=31))  # the same slot: nothing more
        bot.wait_state(1, SessionState.OPEN)

        bot.command("start staging", user=SECOND, reply="x")  # busy: offered the queue
        bot.reply("x")
        for key, who in (("qa-lead", "U0APPROVER1"), ("devops-lead", "U0APPROVER2")):
            bot.slack.block_action(
                user_id=who,
                action_id=ActionId.SIGN_OFF,
                value=f"1|{key}",
                channel_id="D0HOME",
                message_ts="1.0",
                is_ephemeral=True,
            )
            bot.wait_signed(1, key)
        remind_at(opened + timedelta(hours=1, minutes=30))
        stale = posted(bot, DEPLOYER, "has every sign-off and has waited 1:30:00")[0]
        assert "`/deploy abort 1 <reason>`" in stale
        remind_at(opened + timedelta(hours=2, minutes=30))  # a third: beyond `max: 2`
        bot.bot.publisher.flush()
        reminders = [e for e in service.history(1) if e.kind == "reminded"]
        assert len(reminders) == 2
        assert len(bot.fake.messages("U0APPROVER1")) == 1
        assert len(bot.fake.messages(DEPLOYER)) == 1


def test_an_owed_retrospective_reminds_its_role_until_given(
    database_url: str, tmp_path: Path
) -> None:
    path = queue_config(tmp_path)
    config = yaml.safe_load(path.read_text())
    config["environments"]["staging"]["emergency"] = {
        "roles": ["deployers"],
        "retrospective": {"role": "Post-incident review", "by": ["oncall"]},
    }
    path.write_text(yaml.safe_dump(config))
    upgrade(database_url)
    with running_bot(database_url, config=path) as bot:
        bot.command('start staging --emergency "hotfix"', user=DEPLOYER, reply="opened")
        assert "emergency" in bot.reply("opened")["text"]
        service = bot.bot.runtime.service
        sid = service.list_open("staging")[0].id
        opened = service.get(sid).opened_at
        context = bot.bot.scheduler.jobs.context

        def deliver_at(at: datetime, slot: int) -> None:
            payload = {"job": "retro", "session_id": sid, "key": f"retro:{sid}:{slot}"}
            Jobs(replace(context, clock=lambda: at)).deliver(payload)
            replica_at(bot, at)

        deliver_at(opened + timedelta(hours=1), 1)  # every `reminders.every`
        dm = posted(bot, "U0ONCALL", "still owes its retrospective as *Post-incident review*")
        assert f"`/deploy retrospective {sid} <note>`" in dm[0]
        bot.command(f"abort {sid} done", user=DEPLOYER, reply="aborted")
        bot.reply("aborted")
        deliver_at(opened + timedelta(hours=2), 2)  # closed, still owed: reminded again
        eventually("a second reminder", lambda: len(bot.fake.messages("U0ONCALL")) == 2 or None)
        bot.command(f"retrospective {sid} learned", user="U0ONCALL", reply="signed")
        assert "signed" in bot.reply("signed")["text"]
        deliver_at(opened + timedelta(hours=3), 3)  # given: the chain ends
        kinds = [e.kind for e in service.history(sid)]
        assert kinds.count("retrospective_reminded") == 2
