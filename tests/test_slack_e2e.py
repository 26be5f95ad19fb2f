"""End to end through the real Bolt app over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
from pathlib import Path

from bot.domain import ItemStatus, SessionState
from bot.rendering.checklist import checklist_messages
from bot.rendering.ids import ActionId, InputId, ViewId
from bot.rendering.limits import validate_message
from bot.storage.db import upgrade
from tests.e2e import RunningBot, running_bot


def _report_file(bot: RunningBot, name: str, count: int = 1) -> str:
    """The text of the ``count``-th report file called ``name`` once it is shared."""
    deadline = time.monotonic() + 10
    while len(shared := [f for f in bot.fake.files() if f.completed and f.name == name]) < count:
        assert time.monotonic() < deadline, f"no report file {name}: {bot.fake.files()}"
        time.sleep(0.05)
    return shared[count - 1].text


def _buttons(bot: RunningBot) -> list[str]:
    return [
        e["text"]["text"]
        for b in bot.summary().blocks
        if b["type"] == "actions"
        for e in b["elements"]
    ]


def test_whole_deploy_from_slack(database_url: str) -> None:
    upgrade(database_url)
    with running_bot(database_url) as bot:
        fake = bot.fake
        # Bad input first: each gets an ephemeral answer and changes nothing.
        assert bot.command("start prod", user="U0DEPLOYER", reply="unknown").status == 200
        assert "Unknown environment 'prod'. Known: staging." in bot.reply("unknown")["text"]
        bot.command("start staging", user="U0OUTSIDER", reply="outsider")
        assert "only members of `deployers` can" in bot.reply("outsider")["text"]
        bot.command("frobnicate", user="U0DEPLOYER", reply="bad")
        assert "Unknown subcommand `frobnicate`" in bot.reply("bad")["text"]
        assert fake.calls("chat.postMessage") == []

        # Start: a summary in the channel, the checklist in its thread.
        assert (
            bot.command("start staging api v1.4.2", user="U0DEPLOYER", reply="start").status == 200
        )
        assert bot.reply("start")["response_type"] == "ephemeral"
        assert bot.reply("start")["text"] == (
            "Opened deploy #1 of staging api v1.4.2 in #deploys-staging."
        )
        posted = fake.calls("chat.postMessage")
        assert posted[0].params["channel"] == "#deploys-staging"
        for call in posted:
            validate_message(call.params["blocks"], text=call.params["text"])
        assert len(bot.checklist_messages()) == 2
        assert "Sign off as QA Lead" in _buttons(bot)
        assert "Start deployment" not in _buttons(bot)

        bot.command("start staging api", user="U0DEPLOYER", reply="again")
        assert "already open: #1" in bot.reply("again")["text"]

        # Tick items; an outsider may not.
        bot.tick("U0DEPLOYER", ["1.1", "1.2"], reply="tick1")
        bot.wait_item(1, "1.2", ItemStatus.DONE)
        bot.tick("U0OUTSIDER", ["1.3"], reply="tick-outsider")
        bot.thread_answer("U0OUTSIDER", "only the requester <@U0DEPLOYER>")
        # Post-Deployment is gated on Pre-Deployment.
        bot.tick("U0DEPLOYER", ["2.1"], reply="gated")
        bot.thread_answer("U0DEPLOYER", "*Post-Deployment* is still closed")

        # Skip an item through the modal.
        bot.slack.block_action(
            user_id="U0DEPLOYER",
            action_id=ActionId.SKIP,
            value="1|pre-deployment",
            block_id="skip",
            channel_id=bot.summary().channel,
            message_ts=bot.summary().ts,
        )
        view = fake.wait_for("views.open")[0].params["view"]
        assert view["callback_id"] == ViewId.SKIP
        skipped = bot.slack.view_submission(
            user_id="U0DEPLOYER",
            callback_id=ViewId.SKIP,
            private_metadata=view["private_metadata"],
            values={
                InputId.SKIP_ITEM: {
                    InputId.SKIP_ITEM: {
                        "type": "static_select",
                        "selected_option": {"value": "1.3"},
                    }
                },
                InputId.SKIP_REASON: {
                    InputId.SKIP_REASON: {"type": "plain_text_input", "value": "probe runs later"}
                },
            },
        )
        assert skipped.status == 200
        session = bot.session(1)
        assert session.progress("1.1").by == "U0DEPLOYER"
        assert session.progress("1.3").status is ItemStatus.SKIPPED
        assert session.progress("1.3").reason == "probe runs later"

        # Sign-offs: an outsider, then the requester (an approver through a user group).
        bot.click("U0OUTSIDER", ActionId.SIGN_OFF, "1|qa-lead", reply="so-outsider")
        assert "only members of `approvers`" in bot.reply("so-outsider")["text"]
        bot.click("U0DEPLOYER", ActionId.SIGN_OFF, "1|qa-lead", reply="so-self")
        assert "separation of duties" in bot.reply("so-self")["text"]
        # The deploy gate is closed until QA Lead and DevOps Lead sign.
        bot.click("U0DEPLOYER", ActionId.START_DEPLOYMENT, "1", reply="early")
        assert "Still missing: sign-off from *QA Lead*" in bot.reply("early")["text"]
        bot.click("U0APPROVER1", ActionId.SIGN_OFF, "1|qa-lead", reply="so-qa")
        bot.wait_signed(1, "qa-lead")  # clicks are handled after the ack: keep their order
        bot.click("U0APPROVER2", ActionId.SIGN_OFF, "1|qa-lead", reply="so-qa-twice")
        assert "already signed off by <@U0APPROVER1>" in bot.reply("so-qa-twice")["text"]
        bot.click("U0APPROVER2", ActionId.SIGN_OFF, "1|devops-lead", reply="so-devops")
        bot.wait_signed(1, "devops-lead")
        assert set(bot.session(1).signoffs) == {"qa-lead", "devops-lead"}
        assert "Start deployment" in _buttons(bot)

        bot.click("U0DEPLOYER", ActionId.START_DEPLOYMENT, "1", reply="deploy")
        bot.tick("U0DEPLOYER", ["2.1", "2.2"], reply="post")
        bot.wait_state(1, SessionState.DEPLOYING)
        bot.wait_item(1, "2.2", ItemStatus.DONE)
        # Completing takes the verify phase: its probe round ends in monitoring.
        bot.click("U0DEPLOYER", ActionId.COMPLETE, "1", reply="complete-early")
        assert (
            "You can't complete a session that is deploying" in bot.reply("complete-early")["text"]
        )
        bot.click("U0DEPLOYER", ActionId.FINISH_DEPLOYMENT, "1", reply="deployed")
        bot.wait_state(1, SessionState.MONITORING)
        bot.click("U0DEPLOYER", ActionId.COMPLETE, "1", reply="complete")
        bot.wait_state(1, SessionState.COMPLETED)
        final = bot.session(1)
        assert final.state is SessionState.COMPLETED
        assert final.totals == (5, 5)
        assert "completed" in json.dumps(bot.summary().blocks).lower()
        assert _buttons(bot) == []
        for call in fake.calls("chat.update"):
            validate_message(call.params["blocks"], text=call.params["text"])

        # The audit log holds every change and every refusal.
        kinds = [e.kind for e in bot.bot.runtime.service.history(1)]
        assert kinds.count("refused") >= 5
        assert kinds.count("signed_off") == 2
        assert "session_completed" in kinds

        bot.command("report 1", user="U0APPROVER1", reply="report")
        assert "Report posted in the thread: https://" in bot.reply("report")["text"]
        report = _report_file(bot, "deploy-1-report.md")
        assert report.startswith("# Deployment report #1: staging api v1.4.2")
        assert "| QA Lead | U0APPROVER1 |" in report
        bot.command("list", user="U0APPROVER1", reply="list")
        assert "No open deploys" in json.dumps(bot.reply("list"))


def test_forged_and_stale_requests_get_401_and_change_nothing(database_url: str) -> None:
    upgrade(database_url)
    with running_bot(database_url) as bot:
        forged = bot.command(
            "start staging", user="U0DEPLOYER", reply="f", signature="v0=" + "0" * 64
        )
        assert forged.status == 401
        stale = bot.command(
            "start staging", user="U0DEPLOYER", reply="s", timestamp=int(time.time()) - 6 * 60
        )
        assert stale.status == 401
        time.sleep(0.3)
        assert bot.fake.calls("chat.postMessage") == []
        assert bot.fake.calls("response_url") == []
        assert bot.bot.runtime.service.list_open() == []


def test_slack_retry_does_not_double_the_effect(database_url: str) -> None:
    upgrade(database_url)
    with running_bot(database_url) as bot:
        first = bot.command("start staging", user="U0DEPLOYER", reply="one", trigger_id="T.1.abc")
        retry = bot.command(
            "start staging", user="U0DEPLOYER", reply="one", trigger_id="T.1.abc", retry_num=1
        )
        assert (first.status, retry.status) == (200, 200)
        bot.reply("one")
        time.sleep(0.3)
        assert len(bot.bot.runtime.service.list_open()) == 1
        assert len(bot.fake.calls("response_url")) == 1
        summaries = [c for c in bot.fake.calls("chat.postMessage") if "thread_ts" not in c.params]
        assert len(summaries) == 1


def test_double_click_on_an_item_ticks_once(database_url: str) -> None:
    upgrade(database_url)
    with running_bot(database_url) as bot:
        bot.command("start staging", user="U0DEPLOYER", reply="start")
        bot.reply("start")
        bot.tick("U0DEPLOYER", ["1.1"], reply="c1")
        bot.tick("U0DEPLOYER", ["1.1"], reply="c2")  # the same click again, a new action_ts
        bot.wait_item(1, "1.1", ItemStatus.DONE)
        time.sleep(0.3)
        ticks = [e for e in bot.bot.runtime.service.history(1) if e.kind == "item_ticked"]
        assert len(ticks) == 1


def test_health_and_readiness(database_url: str) -> None:
    import urllib.request

    upgrade(database_url)
    with running_bot(database_url) as bot:
        for path, body in (("/healthz", "ok"), ("/readyz", "ready")):
            with urllib.request.urlopen(bot.url + path, timeout=5) as answer:
                assert (answer.status, answer.read().decode().strip()) == (200, body)


def test_large_runbook_renders_within_slack_limits(database_url: str, tmp_path: Path) -> None:
    lines = ["# Big release", ""]
    for section in range(12):
        lines += [f"## Phase {section}", ""]
        for n in range(20 if section else 10):
            lines.append(f"- [ ] Step {section}.{n}: " + "verify the thing carefully " * 3)
            if n % 5 == 0:
                lines.append(f"  - [ ] Sub-step {section}.{n}.a with `kubectl get pods -n ns`")
    (tmp_path / "big.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = tmp_path / "deploybot.yaml"
    config.write_text(
        "roles:\n  deployers: [U0DEPLOYER]\n"
        "environments:\n  big:\n    channel: '#big'\n    checklist: big.md\n"
        "    starters: [deployers]\n",
        encoding="utf-8",
    )
    upgrade(database_url)
    with running_bot(database_url, config=config) as bot:
        bot.command("start big", user="U0DEPLOYER", reply="start")
        assert "Opened deploy #1" in bot.reply("start")["text"]
        bot.bot.publisher.flush(timeout=60)  # the answer came once the summary was posted
        session = bot.session(1)
        assert session.checklist.item_count >= 230
        shown: list[str] = []
        for call in bot.fake.calls("chat.postMessage"):
            validate_message(call.params["blocks"], text=call.params["text"])
            assert len(call.params["blocks"]) <= 50
            assert len(json.dumps(call.params["blocks"])) <= 12_000
            for block in call.params["blocks"]:
                for element in block.get("elements") or []:
                    if element.get("type") == "checkboxes":
                        assert len(element["options"]) <= 10
                        shown += [o["value"] for o in element["options"]]
        assert sorted(shown) == sorted(i.id for _, i in session.checklist.walk())


def test_a_long_checklist_is_answered_at_once_then_posted_in_order_at_slacks_pace(
    database_url: str, tmp_path: Path
) -> None:
    """Slack refuses posts beyond about one per second per channel: /deploy start answers
    once the summary is posted, and the thread follows from the outbox, in order, once."""
    sections = 4
    lines = ["# Release", ""]
    for section in range(sections):
        lines += [f"## Phase {section}", "", f"- [ ] Step {section}.a", f"- [ ] Step {section}.b"]
    (tmp_path / "long.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = tmp_path / "deploybot.yaml"
    config.write_text(
        "roles:\n  deployers: [U0DEPLOYER]\n"
        "environments:\n  long:\n    channel: '#long'\n    checklist: long.md\n"
        "    starters: [deployers]\n",
        encoding="utf-8",
    )
    upgrade(database_url)
    with running_bot(database_url, config=config) as bot:
        # Each thread post is refused once, then taken when the client tries again.
        bot.fake.limit_posts(spacing=0.5, retry_after=0)
        bot.command("start long", user="U0DEPLOYER", reply="start")
        assert "Opened deploy #1" in bot.reply("start")["text"]
        summary = bot.fake.messages("#long")[0]
        # Answered once the summary was posted, long before the thread (0.5 s a post): an
        # answer that waited for the publication would find the thread complete.
        assert len(bot.fake.thread("#long", summary.ts)[1:]) < sections
        bot.bot.publisher.flush(timeout=60)
        thread = bot.fake.thread("#long", summary.ts)[1:]
        want = [m.text for m in checklist_messages(bot.session(1))]

    assert len(want) == sections
    assert [m.text for m in thread] == want  # in order, each once, after the refusals


def test_burst_of_changes_is_coalesced(database_url: str) -> None:
    upgrade(database_url)
    with running_bot(database_url, interval=1.0) as bot:
        bot.command("start staging", user="U0DEPLOYER", reply="start")
        bot.reply("start")
        bot.bot.publisher.flush()
        before = len(bot.fake.calls("chat.update"))
        service, publisher = bot.bot.runtime.service, bot.bot.publisher
        from bot.domain.commands import TickItem, UntickItem

        started = time.monotonic()
        for n in range(100):  # 100 changes as fast as the database takes them
            command = TickItem("1.1") if n % 2 == 0 else UntickItem("1.1")
            service.act(1, command, "U0DEPLOYER")
        service.act(1, TickItem("1.2"), "U0DEPLOYER")
        elapsed = time.monotonic() - started
        publisher.flush()
        updates = bot.fake.calls("chat.update")[before:]
        # Two messages change (summary, Pre-Deployment): at most one update each per second.
        assert 1 <= len(updates) <= 2 * (int(elapsed) + 2)
        # The final state wins: the checklist message shows exactly what the database holds.
        section = bot.checklist_messages()[0]
        shown_done = {
            o["value"]
            for b in section.blocks
            for e in b.get("elements") or []
            if e.get("type") == "checkboxes"
            for o in e.get("initial_options") or []
        }
        session = bot.session(1)
        assert shown_done == {"1.2"}  # 1.1 was toggled 100 times and ends unticked
        assert session.progress("1.1").status is ItemStatus.PENDING


def test_abort_asks_for_a_reason_and_frees_the_environment(database_url: str) -> None:
    upgrade(database_url)
    with running_bot(database_url) as bot:
        bot.command("start staging", user="U0DEPLOYER", reply="start")
        bot.reply("start")
        abort = next(
            e
            for b in bot.summary().blocks
            if b["type"] == "actions"
            for e in b["elements"]
            if e["action_id"] == ActionId.ABORT
        )
        assert abort["confirm"]["confirm"]["text"] == "Abort"  # Slack asks before sending it
        bot.click("U0DEPLOYER", ActionId.ABORT, "1", reply="abort")
        view = bot.fake.wait_for("views.open")[0].params["view"]
        assert view["callback_id"] == ViewId.ABORT

        def submit(reason: str) -> dict[str, object]:
            answer = bot.slack.view_submission(
                user_id="U0DEPLOYER",
                callback_id=ViewId.ABORT,
                private_metadata=view["private_metadata"],
                values={
                    InputId.ABORT_REASON: {
                        InputId.ABORT_REASON: {"type": "plain_text_input", "value": reason}
                    }
                },
            )
            assert answer.status == 200
            return answer.json() if answer.body else {}

        # An empty reason keeps the modal open with the error beside the field.
        assert submit("  ") == {
            "response_action": "errors",
            "errors": {InputId.ABORT_REASON: "Say why you abort: a reason is required."},
        }
        assert bot.session(1).state is SessionState.OPEN
        submit("wrong build")
        aborted = bot.session(1)
        assert (aborted.state, aborted.outcome_reason) == (SessionState.ABORTED, "wrong build")
        bot.command("start staging", user="U0DEPLOYER", reply="again")
        assert "Opened deploy #2" in bot.reply("again")["text"]


def test_slack_rate_limits_are_honoured(database_url: str) -> None:
    upgrade(database_url)
    with running_bot(database_url) as bot:
        bot.command("start staging", user="U0DEPLOYER", reply="start")
        bot.reply("start")
        bot.bot.publisher.flush()
        bot.fake.rate_limit("chat.update", times=2, retry_after=1)
        before = len(bot.fake.calls("chat.update"))
        started = time.monotonic()
        bot.tick("U0DEPLOYER", ["1.1"], reply="tick")
        bot.wait_item(1, "1.1", ItemStatus.DONE)
        bot.bot.publisher.flush(timeout=20)
        attempts = bot.fake.calls("chat.update")[before:]
        # Two 429s answered with Retry-After, then the updates went through.
        assert len(attempts) >= 3
        assert attempts[1].at - attempts[0].at >= 1.0
        assert time.monotonic() - started >= 1.0
        section = bot.checklist_messages()[0]
        assert "1.1" in json.dumps(
            [e.get("initial_options") for b in section.blocks for e in b.get("elements") or []]
        )


def test_channel_the_bot_cannot_post_in_is_said_plainly(database_url: str) -> None:
    upgrade(database_url)
    with running_bot(database_url) as bot:
        bot.fake.fail("chat.postMessage", error="not_in_channel")
        bot.command("start staging", user="U0DEPLOYER", reply="start")
        answer = bot.reply("start")["text"]
        assert (
            "Deploy #1 is open, but Slack refused its checklist message (not_in_channel)" in answer
        )
        assert "`/deploy abort 1` frees it" in answer


def test_an_environment_can_narrow_who_reads_reports(database_url: str, tmp_path: Path) -> None:
    (tmp_path / "list.md").write_text("# Release\n\n- [ ] Deploy\n", encoding="utf-8")
    config = tmp_path / "deploybot.yaml"
    config.write_text(
        "roles:\n  deployers: [U0DEPLOYER]\n  sre: [U0SRE]\n"
        "environments:\n  prod:\n    channel: '#prod'\n    checklist: list.md\n"
        "    starters: [deployers]\n    operators: [sre]\n    reports: [requester, operators]\n",
        encoding="utf-8",
    )
    upgrade(database_url)
    with running_bot(database_url, config=config) as bot:
        bot.command("start prod", user="U0DEPLOYER", reply="start")
        assert "Opened deploy #1" in bot.reply("start")["text"]
        bot.command("report 1", user="U0OUTSIDER", reply="outsider")
        assert bot.reply("outsider")["text"] == (
            ":warning: You can't see the report of a prod deploy: "
            "only the requester <@U0DEPLOYER> or members of `sre` can."
        )
        for count, user in enumerate(("U0DEPLOYER", "U0SRE"), start=1):
            bot.command("report 1", user=user, reply=user)
            assert "Report posted in the thread" in bot.reply(user)["text"]
            assert _report_file(bot, "deploy-1-report.md", count).startswith(
                "# Deployment report #1: prod"
            )
        refused = [e for e in bot.bot.runtime.service.history(1) if e.kind == "refused"]
        assert [(e.actor, e.data["command"]) for e in refused] == [("U0OUTSIDER", "report")]


def test_commands_read_as_people_type_them(database_url: str) -> None:
    upgrade(database_url)
    with running_bot(database_url) as bot:
        bot.command("report", user="U0DEPLOYER", reply="none-open")
        assert "e.g. `/deploy report 12`" in bot.reply("none-open")["text"]
        bot.command("START STAGING", user="U0DEPLOYER", reply="upper")
        assert bot.reply("upper")["text"].startswith("Opened deploy #1 of staging")
        assert bot.session(1).environment == "staging"
        bot.command("status abc", user="U0DEPLOYER", reply="abc")
        said = bot.reply("abc")["text"]
        assert "`abc` is not a deploy id" in said and "no open deploy" not in said
        bot.command("lock Staging freeze", user="U0DEPLOYER", reply="lock")
        assert "staging is locked by <@U0DEPLOYER>" in bot.reply("lock")["text"]
