"""A click acknowledged is a click kept: checkbox semantics, the inbox, repaired messages.

Every test drives the real Bolt app over signed HTTP on SQLite and PostgreSQL, with Slack's
Web API answered by the recording stand-in.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from slack_bolt import BoltResponse
from slack_bolt.request import BoltRequest

from bot.domain import ItemStatus, SessionState
from bot.rendering.checklist import checklist_messages
from bot.rendering.ids import ActionId, InputId, ViewId
from bot.slack.inbox import SlackInbox
from bot.storage.db import upgrade
from tests.e2e import RunningBot, running_bot
from tests.support.slack import Message
from tests.test_replicas import burst_config, item_blocks


def ticks_in(message: Message) -> set[str]:
    return {
        o["value"]
        for b in message.blocks
        for e in b.get("elements") or []
        if e.get("type") == "checkboxes"
        for o in e.get("initial_options") or []
    }


def click(bot: RunningBot, user: str, message: Message, selected: set[str], reply: str) -> Any:
    """Click the checkboxes element of ``message`` that shows ``selected`` (the first one when
    nothing is), as it was shown, leaving ``selected`` ticked (Slack sends the element's
    whole selection)."""
    block = next(
        b
        for b in message.blocks
        if (b.get("elements") or [{}])[0].get("type") == "checkboxes"
        and (not selected or selected & {o["value"] for o in b["elements"][0]["options"]})
    )
    element = block["elements"][0]
    return bot.slack.block_action(
        user_id=user,
        action_id=ActionId.TICK,
        block_id=block["block_id"],
        selected_options=[o for o in element["options"] if o["value"] in selected],
        channel_id=message.channel,
        message_ts=message.ts,
        message=message,
        response_url=bot.fake.response_url(reply),
    )


def opened(bot: RunningBot) -> Message:
    bot.command("start staging", user="U0DEPLOYER", reply="start")
    assert "Opened deploy #1" in bot.reply("start")["text"]
    return bot.checklist_messages()[0]


def test_two_people_ticking_one_message_at_once_keep_both_ticks(database_url: str) -> None:
    upgrade(database_url)
    with running_bot(database_url) as bot:
        message = opened(bot)  # both see it with nothing ticked
        clicks = [
            threading.Thread(target=click, args=(bot, "U0DEPLOYER", message, {"1.1"}, "a")),
            threading.Thread(target=click, args=(bot, "U0APPROVER1", message, {"1.2"}, "b")),
        ]
        for each in clicks:
            each.start()
        for each in clicks:
            each.join()
        bot.wait_item(1, "1.1", ItemStatus.DONE)
        bot.wait_item(1, "1.2", ItemStatus.DONE)
        changes = [
            (e.actor, e.kind, e.data["item"])
            for e in bot.session_history(1)
            if e.kind in ("item_ticked", "item_unticked")
        ]
        assert sorted(changes) == [
            ("U0APPROVER1", "item_ticked", "1.2"),
            ("U0DEPLOYER", "item_ticked", "1.1"),
        ]
        assert ticks_in(bot.checklist_messages()[0]) == {"1.1", "1.2"}


def test_a_click_changes_only_what_the_clicker_changed(database_url: str) -> None:
    upgrade(database_url)
    with running_bot(database_url) as bot:
        stale = opened(bot)
        click(bot, "U0DEPLOYER", stale, {"1.1"}, "tick")
        bot.wait_item(1, "1.1", ItemStatus.DONE)
        # A second person still sees the old message (1.1 not ticked) and ticks 1.2: Slack
        # sends {1.2}, which must not untick 1.1.
        click(bot, "U0APPROVER1", stale, {"1.2"}, "stale")
        bot.wait_item(1, "1.2", ItemStatus.DONE)
        # A tick of what someone already did is a no-op, never an untick or a second tick.
        click(bot, "U0APPROVER2", stale, {"1.1"}, "again")
        fresh = bot.checklist_messages()[0]
        assert ticks_in(fresh) == {"1.1", "1.2"}
        # Unticking from a message that shows the tick does untick it, by its clicker.
        click(bot, "U0APPROVER2", fresh, {"1.2"}, "untick")
        bot.wait_item(1, "1.1", ItemStatus.PENDING)
        changes = [
            (e.actor, e.kind, e.data["item"])
            for e in bot.session_history(1)
            if e.kind in ("item_ticked", "item_unticked")
        ]
        assert changes == [
            ("U0DEPLOYER", "item_ticked", "1.1"),
            ("U0APPROVER1", "item_ticked", "1.2"),
            ("U0APPROVER2", "item_unticked", "1.1"),
        ]
        assert ticks_in(bot.checklist_messages()[0]) == {"1.2"}


def test_one_click_of_many_boxes_is_one_transaction(database_url: str) -> None:
    upgrade(database_url)
    with running_bot(database_url) as bot:
        message = opened(bot)
        before = len(bot.session_history(1))
        click(bot, "U0DEPLOYER", message, {"1.1", "1.2", "1.3"}, "three")
        bot.wait_item(1, "1.3", ItemStatus.DONE)
        history = bot.session_history(1)[before:]
        assert [e.kind for e in history] == ["item_ticked"] * 3
        assert len({e.at for e in history}) == 1  # applied together, at one moment


def test_a_repeated_request_changes_nothing_even_after_a_restart(database_url: str) -> None:
    upgrade(database_url)
    with running_bot(database_url) as bot:
        first = bot.slack.command(
            "lock staging release train",
            user_id="U0DEPLOYER",
            response_url=bot.fake.response_url("lock"),
            trigger_id="trigger-lock-1",
        )
        assert first.status == 200
        assert ":lock:" in bot.reply("lock")["text"]
        retry = bot.slack.post(first.request_body, retry_num=1)
        assert (retry.status, retry.body) == (200, "")
    with running_bot(database_url) as restarted:  # another replica, or this one restarted
        replay = restarted.slack.post(first.request_body)
        assert (replay.status, replay.body) == (200, "")
        locks = [
            e
            for e in restarted.bot.runtime.service.environment_history("staging")
            if e.kind == "environment_locked"
        ]
        assert len(locks) == 1
        replies = [c for c in restarted.fake.calls("response_url") if c.path.endswith("/lock")]
        assert replies == []  # nobody was told twice


def test_a_request_left_unfinished_by_a_dead_replica_is_finished_by_another(
    database_url: str,
) -> None:
    upgrade(database_url)
    with running_bot(database_url) as bot:
        sent = bot.slack.command(
            "lock staging left behind",
            user_id="U0DEPLOYER",
            response_url=bot.fake.response_url("lock"),
            trigger_id="trigger-lock",
        )
        assert sent.status == 200
        bot.reply("lock")
        # The next request reached a replica that recorded it, acknowledged it and died: it
        # is in the inbox, never finished, its claim run out.
        form = dict(parse_qsl(sent.request_body))
        form.update(
            text="unlock staging",
            trigger_id="trigger-orphan",
            response_url=bot.fake.response_url("orphan"),
        )
        body = urlencode(form)
        request = BoltRequest(body=body, headers=bot.slack.signed_headers(body))
        dying = SlackInbox(bot.bot.runtime.session_factory, claim=0.0)
        assert dying.middleware(request, BoltResponse(status=200), lambda: None) is None
        # This replica's inbox worker takes it over and answers the person.
        assert ":unlock:" in bot.reply("orphan", timeout=10)["text"]
        kinds = [e.kind for e in bot.bot.runtime.service.environment_history("staging")]
        assert kinds == ["environment_locked", "environment_unlocked"]


def test_a_failed_update_is_retried_until_the_message_is_right(database_url: str) -> None:
    upgrade(database_url)
    with running_bot(database_url, interval=0.2) as bot:
        message = opened(bot)
        # Retry-After: 0 here (test_slack_rate_limits_are_honoured waits out a real one).
        bot.fake.outage("chat.update", status=500, times=1)
        bot.fake.rate_limit("chat.update", times=4, retry_after=0)
        bot.fake.outage("chat.update", status=503, times=4)
        click(bot, "U0DEPLOYER", message, {"1.1", "1.2"}, "tick")
        bot.wait_item(1, "1.2", ItemStatus.DONE)
        bot.bot.publisher.flush(timeout=60)
        session = bot.session(1)
        want = {m.purpose: m.blocks for m in checklist_messages(session)}
        shown = bot.checklist_messages()
        assert shown[0].blocks == want["section:pre-deployment"]
        assert ticks_in(shown[0]) == {"1.1", "1.2"}


def test_a_burst_of_clicks_on_one_session_is_queued_never_refused(
    database_url: str, tmp_path: Path
) -> None:
    """40 people's clicks at once on one session: each applied, none refused."""
    upgrade(database_url)
    config = burst_config(tmp_path, items=40)
    with running_bot(database_url, config=config) as bot:
        bot.command("start staging", user="U0DEPLOYER", reply="start")
        assert "Opened deploy #1" in bot.reply("start")["text"]
        shown = item_blocks(bot.checklist_messages())
        people = ("U0DEPLOYER", "U0APPROVER1")

        def tick(n: int) -> int:
            item = str(sorted(shown, key=lambda i: [int(p) for p in i.split(".")])[n])
            message, _ = shown[item]
            return int(click(bot, people[n % 2], message, {item}, f"click-{n}").status)

        with ThreadPoolExecutor(max_workers=8) as pool:
            assert set(pool.map(tick, range(40))) == {200}
        for item in shown:
            bot.wait_item(1, item, ItemStatus.DONE)
        assert not [c for c in bot.fake.calls("response_url") if "click-" in c.path]  # no refusal


def test_a_lock_stops_the_deployment_of_an_open_session(database_url: str) -> None:
    upgrade(database_url)
    with running_bot(database_url) as bot:
        message = opened(bot)
        bot.command("lock staging release freeze", user="U0DEPLOYER", reply="lock")
        assert ":lock:" in bot.reply("lock")["text"]
        # Ticks and sign-offs go on while the environment is locked.
        click(bot, "U0DEPLOYER", message, {"1.1"}, "tick")
        bot.wait_item(1, "1.1", ItemStatus.DONE)
        for user, key in (("U0APPROVER1", "qa-lead"), ("U0APPROVER2", "devops-lead")):
            bot.click(user, ActionId.SIGN_OFF, f"1|{key}", reply=f"sign-{key}")
            bot.wait_signed(1, key)
        bot.click("U0DEPLOYER", ActionId.START_DEPLOYMENT, "1", reply="locked")
        assert (
            "Deployment can't start: staging is locked by <@U0DEPLOYER>"
            in (bot.reply("locked")["text"])
        )
        assert bot.session(1).state is SessionState.OPEN
        bot.command("unlock staging", user="U0DEPLOYER", reply="unlock")
        bot.reply("unlock")
        bot.click("U0DEPLOYER", ActionId.START_DEPLOYMENT, "1", reply="start-deploying")
        bot.wait_state(1, SessionState.DEPLOYING)


def test_a_refused_tick_is_answered_in_the_thread_where_it_was_clicked(database_url: str) -> None:
    upgrade(database_url)
    with running_bot(database_url) as bot:
        message = opened(bot)
        click(bot, "U0OUTSIDER", message, {"1.1"}, "outsider")
        answer = bot.thread_answer("U0OUTSIDER", "Not changed (tick 1.1)")
        summary = bot.summary()
        assert (answer.channel, answer.thread_ts) == (summary.channel, summary.ts)
        assert "only the requester <@U0DEPLOYER>" in answer.text
        assert not [c for c in bot.fake.calls("response_url") if c.path.endswith("/outsider")]
        assert bot.session(1).progress("1.1").status is ItemStatus.PENDING
        assert ticks_in(bot.checklist_messages()[0]) == set()  # the box is shown unticked
        refused = [e for e in bot.session_history(1) if e.kind == "refused"]
        assert [e.actor for e in refused] == ["U0OUTSIDER"]


def submit_skip_modal(bot: RunningBot, user: str, value: str, reason: str) -> Any:
    return bot.slack.view_submission(
        user_id=user,
        callback_id=ViewId.SKIP,
        private_metadata="1|pre-deployment",
        values={
            InputId.SKIP_ITEM: {
                InputId.SKIP_ITEM: {"type": "static_select", "selected_option": {"value": value}}
            },
            InputId.SKIP_REASON: {
                InputId.SKIP_REASON: {"type": "plain_text_input", "value": reason}
            },
        },
    )


def test_a_skipped_item_is_unskipped_explicitly_never_ticked_away(database_url: str) -> None:
    upgrade(database_url)
    with running_bot(database_url) as bot:
        message = opened(bot)
        assert submit_skip_modal(bot, "U0DEPLOYER", "1.2", "no schema change").status == 200
        bot.wait_item(1, "1.2", ItemStatus.SKIPPED)
        skipped_view = bot.checklist_messages()[0]
        options = [
            o["value"]
            for b in skipped_view.blocks
            for e in b.get("elements") or []
            if e.get("type") == "checkboxes"
            for o in e["options"]
        ]
        assert "1.2" not in options  # no empty box that reads "to do"
        assert "skipped by <@U0DEPLOYER>: no schema change" in json.dumps(skipped_view.blocks)
        # A stale message still offers the box: the tick is refused, and says how to unskip.
        click(bot, "U0DEPLOYER", message, {"1.2"}, "stale")
        answer = bot.thread_answer("U0DEPLOYER", "1.2 is skipped")
        assert "unskip" in answer.text
        assert bot.session(1).progress("1.2").status is ItemStatus.SKIPPED
        # Unskipping is its own choice in the skip modal, audited with its reason.
        assert submit_skip_modal(bot, "U0DEPLOYER", "unskip|1.2", "schema changed").status == 200
        bot.wait_item(1, "1.2", ItemStatus.PENDING)
        unskipped = [e for e in bot.session_history(1) if e.kind == "item_unskipped"]
        assert [(e.actor, e.data["reason"]) for e in unskipped] == [
            ("U0DEPLOYER", "schema changed")
        ]
        bot.tick("U0DEPLOYER", ["1.2"], reply="tick")
        bot.wait_item(1, "1.2", ItemStatus.DONE)
