"""``/deploy report`` end to end (issue 11, item 18): the report is posted in the session's
thread as Block Kit with the full Markdown and JSON attached as files, the asker gets a link,
and someone the environment does not let read reports gets nothing posted."""

from __future__ import annotations

import json
import re
from pathlib import Path

from bot.domain import ItemStatus, SessionState
from bot.rendering.ids import ActionId
from bot.rendering.limits import validate_message
from bot.storage.db import upgrade
from tests.e2e import running_bot
from tests.support.health import HealthEndpoint
from tests.test_failure_e2e import wait, write_config
from tests.test_page_link_e2e import permalink

ISO_SECOND = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def test_report_is_posted_in_the_thread_with_its_files(
    database_url: str, tmp_path: Path, health: HealthEndpoint
) -> None:
    upgrade(database_url)
    config = write_config(tmp_path, health)
    text = config.read_text(encoding="utf-8").replace(
        "    oncall: [oncall]\n", "    oncall: [oncall]\n    reports: [requester, oncall]\n"
    )
    config.write_text(text.replace("    pagerduty: {routing_key_env: PD_KEY_PROD}\n", ""))
    with running_bot(database_url, config=config) as bot:
        fake = bot.fake
        bot.command("start prod api v2", user="U0DEPLOYER", reply="start")
        assert "Opened deploy #1" in bot.reply("start")["text"]
        bot.click("U0APPROVER", ActionId.SIGN_OFF, "1|qa-lead", reply="sign")
        wait(lambda: "qa-lead" in bot.session(1).signoffs, "sign-off recorded")
        bot.click("U0DEPLOYER", ActionId.RUN_PROBES, "1", reply="probe")
        bot.wait_item(1, "1.1", ItemStatus.DONE)
        bot.command("abort 1 wrong build", user="U0DEPLOYER", reply="abort")
        bot.wait_state(1, SessionState.ABORTED)
        summary = bot.summary()

        # Someone the environment does not let read reports: told so, nothing posted.
        bot.command("report 1", user="U0APPROVER", reply="refused")
        assert "You can't see the report of a prod deploy" in bot.reply("refused")["text"]
        bot.command("report 1", user="U0DEPLOYER", reply="report")
        answer = bot.reply("report")
        assert answer["response_type"] == "ephemeral"
        reports = [
            m for m in fake.thread(summary.channel, summary.ts) if m.text.startswith("Deployment")
        ]
        assert len(reports) == 1  # the requester's only
        (posted,) = reports
        link = permalink(posted.channel, posted.ts)
        assert answer["text"] == f":page_facing_up: Report posted in the thread: {link}"

        # The message: Block Kit within Slack's limits, mentions and <!date> times.
        validate_message(posted.blocks, text=posted.text)
        assert posted.thread_ts == summary.ts
        assert posted.blocks[0] == {
            "type": "header",
            "text": {"type": "plain_text", "text": "Deployment report #1: prod api v2"},
        }
        shown = json.dumps(posted.blocks, ensure_ascii=False)
        assert "*Requested by*\\n<@U0DEPLOYER>" in shown
        assert "✅ *QA Lead*: <@U0APPROVER> · <!date^" in shown
        assert "wrong build" in shown
        assert "*api* · 1 run, 0 failed" in shown
        assert "deploy-1-report.md" in shown and "deploy-1-report.json" in shown
        assert not re.search(r"\d\d:\d\d:\d\d\.\d{6}", shown)  # no microsecond timestamps

        # The files: uploaded the way files_upload_v2 does, shared in the thread.
        wait(lambda: len([f for f in fake.files() if f.completed]) == 2, "the report's files")
        files = {f.name: f for f in fake.files()}
        assert sorted(files) == ["deploy-1-report.json", "deploy-1-report.md"]
        for file in files.values():
            assert (file.channel, file.thread_ts) == (posted.channel, summary.ts)
            assert file.length == len(file.content or b"")
        markdown = files["deploy-1-report.md"].text
        assert markdown.startswith("# Deployment report #1: prod api v2\n")
        assert "| Outcome | aborted: wrong build |" in markdown
        assert not re.search(r"\d\d:\d\d:\d\d\.\d{6}", markdown)
        data = json.loads(files["deploy-1-report.json"].text)
        assert data["id"] == 1 and data["state"] == "aborted"
        assert ISO_SECOND.match(data["opened_at"]) and ISO_SECOND.match(data["closed_at"])
        assert all(ISO_SECOND.match(e["at"]) for e in data["timeline"])
        kinds = [e["kind"] for e in data["timeline"]]
        assert kinds.count("report_requested") == 1
        shared = [m for m in fake.thread(summary.channel, summary.ts) if m.files]
        assert [sorted(f["name"] for f in m.files) for m in shared] == [sorted(files)]
        uploads = fake.calls("files.getUploadURLExternal")
        assert sorted(c.params["filename"] for c in uploads) == sorted(files)

        # The audit log says who asked, and who was refused.
        history = bot.session_history(1)
        assert [(e.kind, e.actor) for e in history if e.kind == "report_requested"] == [
            ("report_requested", "U0DEPLOYER")
        ]
        assert any(e.kind == "refused" and e.actor == "U0APPROVER" for e in history)
