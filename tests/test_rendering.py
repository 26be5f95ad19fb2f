"""Rendering sessions to Block Kit: content per state, Slack's limits, and the validator."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bot.app.report import report_markdown
from bot.domain import (
    SYSTEM,
    DeploySession,
    ItemProgress,
    ItemStatus,
    SessionPolicy,
    SessionState,
    SignOffRule,
)
from bot.domain.checklist import (
    Checklist,
    ChecklistItem,
    Gate,
    Section,
    Severity,
    SignOffLine,
)
from bot.domain.errors import NotFound
from bot.domain.session import SignOffRecord
from bot.domain.summary import SessionPage, summary_of
from bot.rendering import (
    BlockKitError,
    abort_modal,
    checklist_messages,
    fits,
    help_blocks,
    list_blocks,
    skip_modal,
    status_blocks,
    summary_blocks,
    summary_text,
    validate_message,
    validate_view,
)
from bot.rendering.checklist import channel_link
from bot.rendering.ids import ActionId, InputId, ViewId, pack, unpack
from bot.rendering.limits import clip, escape, json_len, width
from bot.rendering.listing import LIST_PAGE_SIZE
from bot.rendering.times import clock, slack_date

S = SessionState
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=65)
QA, DEVOPS, REQUESTER = "U0QA", "U0DEVOPS", "U0DEPLOYER"


def make_session(checklist: Checklist | None = None, **policy: Any) -> DeploySession:
    checklist = checklist or Checklist(
        sections=(
            Section(
                title="Pre-Deployment",
                items=(
                    ChecklistItem(text="Backups verified"),
                    ChecklistItem(text="Database", children=(ChecklistItem(text="Replicas"),)),
                ),
            ),
            Section(
                title="Post-Deployment",
                gate=Gate(after=("pre-deployment",), signoffs=("qa-lead",)),
                items=(ChecklistItem(text="Smoke test", probe="http-health"),),
            ),
        )
    )
    defaults: dict[str, Any] = {
        "signoffs": (
            SignOffRule("qa-lead", "QA Lead", ("approvers",)),
            SignOffRule("devops-lead", "DevOps Lead", ("approvers",)),
        ),
        "operators": ("deployers",),
        "deploy_gate": Gate(signoffs=("qa-lead",)),
        "complete_gate": Gate(signoffs=("qa-lead", "devops-lead")),
    }
    defaults.update(policy)
    return DeploySession(
        environment="prod",
        requester=REQUESTER,
        checklist=checklist.numbered(),
        policy=SessionPolicy(**defaults),
        opened_at=NOW,
        service="api",
        version="v1.4.2",
        id=7,
    )


def sign(session: DeploySession, *keys: str) -> DeploySession:
    for key in keys:
        rule = session.policy.rule(key)
        assert rule is not None
        session.signoffs[key] = SignOffRecord(key, rule.role, QA, NOW + timedelta(minutes=5))
    return session


def settle_all(session: DeploySession) -> DeploySession:
    for _, item in session.checklist.walk():
        session.items[item.id] = ItemProgress(ItemStatus.DONE, QA, NOW)
    return session


def actions(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for b in blocks if b["type"] == "actions" for e in b["elements"]]


def action_ids(blocks: list[dict[str, Any]]) -> list[str]:
    return [e["action_id"] for e in actions(blocks)]


def texts(blocks: list[dict[str, Any]], only: str | None = None) -> str:
    """Every human-readable text of the blocks (or only those of type ``only``), one a line."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("text"), str) and only in (None, node.get("type")):
                found.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(blocks)
    return "\n".join(found)


def shown_items(messages: list[Any]) -> list[list[str]]:
    """The item ids each message's checkboxes stand for (their block ids name them all)."""
    return [
        [
            i
            for b in m.blocks
            if b.get("block_id", "").startswith("tick|")
            for i in unpack(b["block_id"])[2].split(",")
        ]
        for m in messages
    ]


def option_values(messages: list[Any]) -> list[str]:
    """The item ids offered as checkboxes."""
    return [
        o["value"]
        for m in messages
        for e in actions(m.blocks)
        if e["type"] == "checkboxes"
        for o in e["options"]
    ]


# slack_ids


def test_pack_round_trips_and_refuses_the_separator() -> None:
    assert unpack(pack("tick", 7, "1.1,1.2")) == ["tick", "7", "1.1,1.2"]
    with pytest.raises(ValueError, match="contains"):
        pack(7, "a|b")


# The summary message


def test_summary_shows_who_what_and_when() -> None:
    blocks = summary_blocks(make_session(), now=LATER)
    validate_message(blocks, text=summary_text(make_session()))
    assert blocks[0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "Deploy #7: prod api v1.4.2", "emoji": True},
    }
    fields = [f["text"] for f in blocks[1]["fields"]]
    assert fields[:4] == [
        "*Environment*\nprod",
        "*Service*\napi",
        "*Version*\nv1.4.2",
        "*Requester*\n<@U0DEPLOYER>",
    ]
    assert fields[4] == "*State*\n📝 open"
    # Slack shows times in each reader's zone and keeps "ago" current; the fallback is UTC.
    assert fields[5] == (
        "*Opened*\n<!date^1795435200^{date_short_pretty} {time}|2026-11-23 12:00 UTC>"
        "\n<!date^1795435200^{ago}|1h 05m ago>"
    )
    assert summary_text(make_session()) == "Deploy #7: prod api v1.4.2 is open · 0/4 items done"


SETTLED_BUTTONS: dict[SessionState, list[str]] = {
    S.OPEN: [ActionId.START_DEPLOYMENT, ActionId.RUN_PROBES, ActionId.ABORT],
    S.DEPLOYING: [ActionId.FINISH_DEPLOYMENT, ActionId.RUN_PROBES, ActionId.ABORT],
    S.VERIFYING: [ActionId.RUN_PROBES, ActionId.COMPLETE, ActionId.ABORT],
    S.MONITORING: [ActionId.RUN_PROBES, ActionId.COMPLETE, ActionId.ABORT],
    S.FAILED: [ActionId.RUN_PROBES, ActionId.ABORT],
    S.ROLLBACK_FAILED: [ActionId.RUN_PROBES, ActionId.ABORT],
    S.ROLLING_BACK: [],
    S.COMPLETED: [],
    S.ABORTED: [],
    S.ROLLED_BACK: [],
}


@pytest.mark.parametrize("state", list(SessionState))
def test_buttons_fit_the_state_when_every_gate_is_open(state: SessionState) -> None:
    session = settle_all(sign(make_session(), "qa-lead", "devops-lead"))
    session.state = state
    blocks = summary_blocks(session, now=LATER)
    validate_message(blocks)
    assert action_ids(blocks) == SETTLED_BUTTONS[state]
    for button in actions(blocks):
        assert button["value"] == "7"


@pytest.mark.parametrize("state", list(SessionState))
def test_sign_off_buttons_only_for_missing_roles_while_active(state: SessionState) -> None:
    session = sign(make_session(), "qa-lead")
    session.state = state
    buttons = [
        b
        for b in actions(summary_blocks(session, now=LATER))
        if b["action_id"] == "deploy.sign_off"
    ]
    active = state in (S.OPEN, S.DEPLOYING, S.VERIFYING, S.MONITORING)
    expected = [("Sign off as DevOps Lead", "7|devops-lead")] if active else []
    assert [(b["text"]["text"], b["value"]) for b in buttons] == expected


def test_start_deployment_only_when_the_deploy_gate_is_open() -> None:
    session = make_session()
    blocks = summary_blocks(session, now=LATER)
    assert ActionId.START_DEPLOYMENT not in action_ids(blocks)
    assert "⏸ *Start deployment* waits for: sign-off from *QA Lead*" in texts(blocks)
    signs = [b["text"]["text"] for b in actions(blocks) if b["action_id"] == ActionId.SIGN_OFF]
    assert signs == ["Sign off as QA Lead", "Sign off as DevOps Lead"]

    blocks = summary_blocks(sign(session, "qa-lead"), now=LATER)
    start = next(b for b in actions(blocks) if b["action_id"] == ActionId.START_DEPLOYMENT)
    assert start["style"] == "primary"
    assert start["text"]["text"] == "Start deployment"
    assert "Start deployment* waits" not in texts(blocks)
    assert "Sign off as DevOps Lead" in texts(blocks)  # still signable: it gates completion


def test_complete_waits_for_its_gate_and_failures_and_asks_to_confirm() -> None:
    session = sign(make_session(), "qa-lead")
    session.state = S.VERIFYING
    blocks = summary_blocks(session, now=LATER)
    assert ActionId.COMPLETE not in action_ids(blocks)
    assert "⏸ *Mark complete* waits for: sign-off from *DevOps Lead*" in texts(blocks)

    sign(session, "devops-lead")
    blocks = summary_blocks(session, now=LATER)
    complete = next(b for b in actions(blocks) if b["action_id"] == ActionId.COMPLETE)
    assert complete["text"]["text"] == "Mark complete"
    assert complete["confirm"]["title"]["text"] == "Mark deploy #7 complete?"
    assert complete["confirm"]["text"]["text"] == (
        f"4 of 4 items are still open (1.1, 1.2, 1.2.1, 2.1). "
        f"This closes the session and frees {session.environment}."
    )
    abort = next(b for b in actions(blocks) if b["action_id"] == ActionId.ABORT)
    assert abort["style"] == "danger" and abort["confirm"]["style"] == "danger"


def test_long_sign_off_role_is_cut_to_75_characters() -> None:
    role = "Director of Platform Reliability and Customer-Facing Infrastructure Operations"
    session = make_session(signoffs=(SignOffRule("dir", role, ("approvers",)),))
    button = next(b for b in actions(summary_blocks(session, now=LATER)) if b["value"] == "7|dir")
    assert len(button["text"]["text"]) == 75
    assert (
        button["text"]["text"].startswith("Sign off as Director")
        and button["text"]["text"][-1] == "…"
    )


def test_progress_sign_offs_and_failures_are_shown() -> None:
    session = sign(make_session(), "qa-lead")
    session.items["1.1"] = ItemProgress(ItemStatus.DONE, QA, NOW)
    session.items["1.2"] = ItemProgress(ItemStatus.SKIPPED, QA, NOW, "not needed")
    session.items["2.1"] = ItemProgress(
        ItemStatus.FAILED, SYSTEM.user_id, NOW, "HTTP 503", Severity.CRITICAL
    )
    blocks = summary_blocks(session, now=LATER)
    text = texts(blocks)
    assert "*Progress*  ▓▓▓▓▓░░░░░ 2/4" in text
    assert "• Pre-Deployment 2/3" in text
    assert "🔒 Post-Deployment 0/1" in text  # gate: pre-deployment unfinished
    assert f"✅ *QA Lead*: <@U0QA> · {slack_date(NOW + timedelta(minutes=5))}" in text
    assert "⏳ *DevOps Lead*: missing" in text
    assert "*Failing* (1)\n❌ *2.1* Smoke test: HTTP 503 (critical)" in text


def test_summary_names_the_checklist_signoffs_the_session_does_not_ask_for() -> None:
    lines = ("QA Lead", 12), ("Release Manager", 13), ("DBA", 14), ("CTO", 15), ("CFO", None)
    checklist = make_session().checklist.model_copy(
        update={"signoffs": [SignOffLine(role=role, line=line) for role, line in lines]}
    )
    blocks = summary_blocks(make_session(checklist), now=LATER)

    validate_message(blocks)
    context = texts(blocks, only="mrkdwn").splitlines()
    assert (
        "⚠️ Checklist sign-offs not asked for here: Release Manager (line 13), DBA (line 14),"
        " CTO (line 15) and 1 more"
    ) in context
    assert "QA Lead (line 12)" not in texts(blocks)  # required: it has its sign-off button
    assert "not asked for" not in texts(summary_blocks(make_session(), now=LATER))


def test_identical_failures_are_shown_once_with_the_items_they_hit() -> None:
    hint = "no AWS credentials: set AWS_PROFILE or AWS_ACCESS_KEY_ID for the bot"
    items = tuple(ChecklistItem(text=f"AWS check {i}") for i in range(6))
    items += (ChecklistItem(text="Health endpoint"),)
    session = make_session(Checklist(sections=(Section(title="Checks", items=items),)))
    for n in range(6):
        session.items[f"1.{n + 1}"] = ItemProgress(
            ItemStatus.FAILED, SYSTEM.user_id, NOW, hint, Severity.CRITICAL
        )
    session.items["1.7"] = ItemProgress(ItemStatus.FAILED, SYSTEM.user_id, NOW, "HTTP 503")
    session.state = S.VERIFYING
    blocks = summary_blocks(session, now=LATER)
    text = texts(blocks)
    assert text.count(hint) == 1
    assert (
        f"*Failing* (7)\n❌ {hint} (critical): 6 items, *1.1*, *1.2*, *1.3*, *1.4* and 2 more\n"
        "❌ *1.7* Health endpoint: HTTP 503"
    ) in text
    assert "DevOps Lead*; 7 failed items (*1.1*, *1.2*, *1.3*, *1.4* and 3 more)" in text


def test_many_distinct_failures_are_counted_and_the_summary_stays_short() -> None:
    items = tuple(ChecklistItem(text=f"Probe {i}") for i in range(200))
    session = make_session(Checklist(sections=(Section(title="Checks", items=items),)))
    for n, (_, item) in enumerate(session.checklist.walk()):
        reason = f"check {n} failed: " + "connection refused by upstream " * 3
        session.items[item.id] = ItemProgress(ItemStatus.FAILED, SYSTEM.user_id, NOW, reason)
    session.state = S.VERIFYING
    blocks = summary_blocks(session, now=LATER)
    validate_message(blocks, text=summary_text(session))
    failing = next(
        b["text"]["text"] for b in blocks if "*Failing*" in b.get("text", {}).get("text", "")
    )
    lines = failing.splitlines()
    assert lines[0] == "*Failing* (200)" and len(lines) <= 7
    assert lines[-1] == "… and 195 other failures on 195 items"
    assert len(json.dumps(blocks)) < 6_000  # well inside one screen, not at Slack's limit


def test_many_sections_are_cut_with_a_count() -> None:
    sections = tuple(
        Section(
            title=f"Section {i:02d} " + "with a rather long descriptive title",
            items=(ChecklistItem(text="x"),),
        )
        for i in range(60)
    )
    session = make_session(Checklist(sections=sections), deploy_gate=Gate())
    blocks = summary_blocks(session, now=LATER)
    validate_message(blocks)
    progress = next(
        b["text"]["text"] for b in blocks if "*Progress*" in b.get("text", {}).get("text", "")
    )
    shown = [line for line in progress.splitlines() if line.startswith("• Section")]
    more = progress.splitlines()[-1]
    assert 0 < len(shown) < 60
    assert more == f"… and {60 - len(shown)} more sections"


@pytest.mark.parametrize(
    ("state", "reason", "expected"),
    [
        (S.ABORTED, "change freeze", f"🛑 *Aborted* {slack_date(LATER)}: change freeze"),
        (S.COMPLETED, None, f"✅ *Completed* {slack_date(LATER)}"),
        (S.ROLLED_BACK, "rolled back", f"↩️ *Rolled back* {slack_date(LATER)}: rolled back"),
    ],
)
def test_closed_sessions_show_the_outcome_and_no_buttons(
    state: SessionState, reason: str | None, expected: str
) -> None:
    session = make_session()
    session.state, session.outcome_reason, session.closed_at = state, reason, LATER
    blocks = summary_blocks(session, now=LATER, incident_link="https://x.slack.com/archives/C1/p1")
    validate_message(blocks)
    assert action_ids(blocks) == []
    assert expected in texts(blocks)
    assert "🚨 <https://x.slack.com/archives/C1/p1|Incident thread>" in texts(blocks)
    assert f"closed {slack_date(LATER)}, after 1h 05m" in texts(blocks)


def test_user_text_cannot_inject_mentions_or_links() -> None:
    evil = "<!channel> ping <@U0BOSS> & <https://evil.example|click>"
    checklist = Checklist(sections=(Section(title=evil, items=(ChecklistItem(text=evil),)),))
    session = make_session(checklist, deploy_gate=Gate())
    session.service = evil
    session.items["1.1"] = ItemProgress(ItemStatus.SKIPPED, QA, NOW, evil)
    rendered = [summary_blocks(session, now=LATER)] + [
        m.blocks for m in checklist_messages(session)
    ]
    for blocks in rendered:
        dumped = texts(blocks, only="mrkdwn")  # plain_text shows "<!channel>" as it is
        assert "<!channel>" not in dumped and "<@U0BOSS>" not in dumped
        # A Markdown autolink is a link, to the address it shows: never a disguised one.
        assert "|click>" not in dumped
    assert "&lt;!channel&gt; ping &lt;@U0BOSS&gt; &amp;" in texts(
        checklist_messages(session)[0].blocks
    )


def test_status_list_and_help() -> None:
    session = make_session()
    status = status_blocks(session, now=LATER)
    validate_message(status)
    assert action_ids(status) == [] and "Deploy #7: prod api v1.4.2" in texts(status)

    assert list_blocks(page(), now=LATER) == [
        {"type": "section", "text": {"type": "mrkdwn", "text": "No open deploys."}}
    ]
    other = make_session()
    other.id, other.state, other.environment = 8, S.DEPLOYING, "staging"
    other.items["1.1"] = ItemProgress(ItemStatus.FAILED, SYSTEM.user_id, NOW, "HTTP 503")
    listed = list_blocks(page(session, other), now=LATER)
    validate_message(listed)
    text = texts(listed)
    assert "*#7* prod api v1.4.2 · 📝 open · ░░░░░░░░░░ 0/4 · requested by <@U0DEPLOYER>" in text
    assert (
        "*#8* staging api v1.4.2 · 🚀 deploying" in text
        and "opened <!date^1795435200^{ago}|1h 05m ago> · ❌ 1 failing" in text
    )
    assert "· ⏳ 2 sign-offs missing" in text and "/deploy list 2" not in text

    helped = help_blocks()
    validate_message(helped)
    for usage in (
        "start &lt;env&gt; [service] [version]",
        "status [id]",
        "list [page]",
        "probe [id]",
        "abort [id] [reason]",
        "report [id]",
        "lock &lt;env&gt; [reason]",
        "unlock &lt;env&gt;",
        "help",
    ):
        assert f"`/deploy {usage}`" in texts(helped)


def page(*sessions: DeploySession, total: int | None = None, number: int = 1) -> SessionPage:
    summaries = tuple(summary_of(s) for s in sessions)
    count = len(summaries) if total is None else total
    return SessionPage(summaries, total=count, number=number, per_page=LIST_PAGE_SIZE)


def test_the_list_is_paged_and_says_how_to_see_more() -> None:
    sessions = []
    for n in range(1, LIST_PAGE_SIZE + 1):
        session = make_session()
        # Long titles and names that are no Slack ids: a full page still fits one message.
        session.id, session.service, session.version = n, "s" * 100, "v" * 200
        session.requester = "someone-who-is-no-slack-user" * 4
        sessions.append(session)
    first = list_blocks(page(*sessions, total=45), now=LATER)
    validate_message(first)
    assert texts(first).startswith("Open deploys (45) · page 1 of 3")
    assert len(first) == 1 + LIST_PAGE_SIZE + 1
    assert "`/deploy list 2` for more" in texts(first[-1:])

    last = list_blocks(page(*sessions[:5], total=45, number=3), now=LATER)
    validate_message(last)
    assert "page 3 of 3" in texts(last) and "/deploy list 4" not in texts(last)

    beyond = list_blocks(page(total=45, number=9), now=LATER)
    assert texts(beyond) == (
        "There is no page 9: the 45 open deploys fill pages 1 to 3. Try `/deploy list 3`."
    )


# The checklist thread


def test_one_message_per_section_with_checkboxes_and_a_skip_button() -> None:
    session = make_session()
    messages = checklist_messages(session)
    assert [m.purpose for m in messages] == ["section:pre-deployment", "section:post-deployment"]
    first = messages[0]
    validate_message(first.blocks, text=first.text)
    assert first.text == "Pre-Deployment: 0/3 done"
    assert first.blocks[0]["text"]["text"] == "Pre-Deployment"
    tick = next(b for b in first.blocks if b.get("block_id", "").startswith("tick|"))
    assert tick["block_id"] == "tick|7|1.1,1.2,1.2.1"
    box = tick["elements"][0]
    assert box["action_id"] == ActionId.TICK
    assert [(o["text"]["text"], o["value"]) for o in box["options"]] == [
        ("*1.1* Backups verified", "1.1"),
        ("*1.2* Database", "1.2"),
        ("↳ *1.2.1* Replicas", "1.2.1"),
    ]
    assert "initial_options" not in box
    skip = actions(first.blocks)[-1]
    assert (skip["action_id"], skip["value"]) == (ActionId.SKIP, "7|pre-deployment")
    assert skip["text"]["text"] == "Skip an item…"


def test_item_states_show_who_when_and_why() -> None:
    session = make_session()
    session.items["1.1"] = ItemProgress(ItemStatus.DONE, "U0X", NOW + timedelta(minutes=2))
    session.items["1.2"] = ItemProgress(ItemStatus.SKIPPED, "U0Y", NOW, "not applicable")
    session.items["1.2.1"] = ItemProgress(ItemStatus.RUNNING, SYSTEM.user_id, NOW)
    session.items["2.1"] = ItemProgress(
        ItemStatus.FAILED, SYSTEM.user_id, NOW, "HTTP 503", Severity.CRITICAL
    )
    first, second = checklist_messages(session)
    box = actions(first.blocks)[0]
    assert box["initial_options"] == [box["options"][0]]  # the done item, and only it
    # The skipped item is no checkbox (an empty box would read "to do"): its line says it.
    assert [o["value"] for o in box["options"]] == ["1.1", "1.2.1"]
    context = next(b for b in first.blocks if b["type"] == "context")["elements"][0]["text"]
    assert context.splitlines() == [
        "✅ 1.1 <@U0X> <!date^1795435320^{time}|12:02 UTC>",
        f"⏭ *1.2* Database · skipped by <@U0Y>: not applicable · {clock(NOW)}",
        f"⏳ 1.2.1 running · {clock(NOW)}",
    ]
    assert f"❌ 2.1 probe failed: HTTP 503 (critical) · {clock(NOW)}" in texts(second.blocks)
    assert "1/3 done" not in texts(first.blocks) and "*2/3* done" in texts(first.blocks)


def test_a_closed_gated_section_says_what_it_waits_for_and_keeps_its_checkboxes() -> None:
    second = checklist_messages(make_session())[1]
    validate_message(second.blocks)
    assert "🔒 Closed until: section *Pre-Deployment* is not finished; sign-off from *QA Lead*" in (
        texts(second.blocks)
    )
    assert ActionId.TICK in action_ids(second.blocks)

    session = settle_all(sign(make_session(), "qa-lead"))
    session.items.pop("2.1")
    assert "🔓 Gate passed" in texts(checklist_messages(session)[1].blocks)


@pytest.mark.parametrize("state", [S.COMPLETED, S.ABORTED, S.ROLLED_BACK, S.ROLLING_BACK])
def test_read_only_without_checkboxes_or_buttons(state: SessionState) -> None:
    session = make_session()
    session.state = state
    session.items["1.1"] = ItemProgress(ItemStatus.DONE, "U0X", NOW)
    first = checklist_messages(session)[0]
    validate_message(first.blocks)
    assert actions(first.blocks) == []
    assert "✅ *1.1* Backups verified\n⬜ *1.2* Database\n⬜ ↳ *1.2.1* Replicas" in texts(
        first.blocks
    )
    assert f"Read-only: this deploy is {state.label}." in texts(first.blocks)
    assert [m.purpose for m in checklist_messages(session)] == [
        "section:pre-deployment",
        "section:post-deployment",
    ]


def test_long_item_text_is_cut_and_goes_on_beside_its_chunk_once() -> None:
    long_text = "Confirm that every replica of the orders database caught up " * 3
    checklist = Checklist(
        sections=(Section(title="S", items=(ChecklistItem(text=long_text.strip()),)),)
    )
    blocks = checklist_messages(make_session(checklist))[0].blocks
    option = actions(blocks)[0]["options"][0]["text"]["text"]
    assert 60 <= len(option) <= 75 and option.endswith("…") and option.startswith("*1.1* Confirm")
    tick_index = next(i for i, b in enumerate(blocks) if b.get("block_id", "").startswith("tick"))
    beside = blocks[tick_index + 1]
    assert beside["type"] == "context"
    rest = beside["elements"][0]["text"]
    assert rest.startswith("*1.1* …")
    # Together they show the text once: nothing repeated, nothing lost.
    shown = option.removeprefix("*1.1* ").removesuffix("…") + " " + rest.removeprefix("*1.1* …")
    assert shown == long_text.strip()


def test_an_item_cut_inside_inline_code_closes_it_and_reopens_it_for_the_rest() -> None:
    text = (
        "Check `kubectl rollout status deployment/orders-api -n production --timeout=600s` "
        "and **wait for every pod**"
    )
    checklist = Checklist(sections=(Section(title="S", items=(ChecklistItem(text=text),)),))
    blocks = checklist_messages(make_session(checklist))[0].blocks
    option = actions(blocks)[0]["options"][0]["text"]["text"]
    assert option.endswith("`…") and option.count("`") == 2, option
    rest = next(b for b in blocks if b["type"] == "context")["elements"][0]["text"]
    assert rest.startswith("*1.1* …`") and rest.count("`") == 2, rest
    assert rest.endswith("` and *wait for every pod*")
    assert "Check" not in rest  # the start is not shown twice


# A large checklist


def big_checklist(text_length: int = 200) -> Checklist:
    """230 items: 11 sections of 10 and one of 120 (30 parents, each 2 children, 1 grandchild)."""

    def text(n: int) -> str:
        return (f"Item {n}: verify <svc> & *flags* _now_ ~ümlaut~ " * 10)[:text_length]

    sections = [
        Section(title=f"Section {s}", items=tuple(ChecklistItem(text=text(i)) for i in range(10)))
        for s in range(11)
    ]
    nested = tuple(
        ChecklistItem(
            text=text(p),
            children=(
                ChecklistItem(text=text(p + 1), children=(ChecklistItem(text=text(p + 2)),)),
                ChecklistItem(text=text(p + 3)),
            ),
        )
        for p in range(30)
    )
    sections.insert(3, Section(title="Deployment Steps", items=nested))
    return Checklist(sections=tuple(sections))


def worst_cases(session: DeploySession) -> list[DeploySession]:
    """The same session with every item done, every item failing with a long reason, mixed."""
    reason = "HTTP 503 from <upstream> & retry budget exhausted; see runbook §4 " * 10
    statuses = [ItemStatus.DONE, ItemStatus.SKIPPED, ItemStatus.FAILED, ItemStatus.RUNNING]
    ids = [item.id for _, item in session.checklist.walk()]
    variants = []
    for pick in ([ItemStatus.DONE], [ItemStatus.FAILED], statuses):
        variant = replace(session, items={})
        for n, item_id in enumerate(ids):
            status = pick[n % len(pick)]
            variant.items[item_id] = ItemProgress(status, "U0X", NOW, reason, Severity.WARNING)
        variants.append(variant)
    return variants


def test_230_items_fit_slack_limits_in_every_state() -> None:
    session = make_session(big_checklist())
    assert session.checklist.item_count == 230
    ids = [item.id for _, item in session.checklist.walk()]
    pending = checklist_messages(session)
    for variant in [session, *worst_cases(session)]:
        messages = checklist_messages(variant)
        # Purposes and what each message shows depend on the checklist, not on progress.
        assert [m.purpose for m in messages] == [m.purpose for m in pending]
        assert shown_items(messages) == shown_items(pending)
        values = option_values(messages)
        offered = [i for i in ids if variant.progress(i).status is not ItemStatus.SKIPPED]
        assert sorted(values) == sorted(offered) and len(values) == len(set(values))
        for message in messages:
            validate_message(message.blocks, text=message.text)
            assert len(json.dumps(message.blocks)) <= 12_000 and len(message.blocks) <= 50
        summary = summary_blocks(variant, now=LATER)
        validate_message(summary, text=summary_text(variant))
    part_purposes = [m.purpose for m in pending if m.purpose.startswith("section:deployment-steps")]
    assert part_purposes[:3] == [
        "section:deployment-steps",
        "section:deployment-steps:2",
        "section:deployment-steps:3",
    ]


def test_short_items_share_messages() -> None:
    checklist = Checklist(
        sections=(
            Section(title="S", items=tuple(ChecklistItem(text=f"Check {i}") for i in range(60))),
        )
    )
    messages = checklist_messages(make_session(checklist))
    assert len(messages) == 2  # 30 items (three checkbox groups) per message
    assert sum(1 for m in messages for e in actions(m.blocks) if e["type"] == "checkboxes") == 6


# Property: any checklist, any progress, renders valid messages


TEXT = st.text(
    alphabet=st.one_of(
        st.characters(blacklist_categories=("Cs",)), st.sampled_from("<>&*_~`|@!#\n😀ü")
    ),
    min_size=1,
    max_size=300,
)
LEAF = st.builds(lambda t: ChecklistItem(text=t), TEXT)
ITEM = st.builds(
    lambda t, kids: ChecklistItem(text=t, children=tuple(kids)), TEXT, st.lists(LEAF, max_size=3)
)
SECTION = st.builds(
    lambda t, items: Section(title=t, items=tuple(items)),
    st.text(min_size=1, max_size=120),
    st.lists(ITEM, max_size=30),
)
PROGRESS = st.builds(
    ItemProgress,
    st.sampled_from(list(ItemStatus)),
    st.sampled_from(["U0X", SYSTEM.user_id, "not a user <@U1>"]),
    st.just(NOW),
    st.one_of(st.none(), TEXT),
    st.one_of(st.none(), st.sampled_from(list(Severity))),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sections=st.lists(SECTION, min_size=1, max_size=5),
    state=st.sampled_from(list(SessionState)),
    data=st.data(),
)
def test_any_checklist_renders_valid_messages(
    sections: list[Section], state: SessionState, data: st.DataObject
) -> None:
    session = make_session(Checklist(sections=tuple(sections)))
    pending = checklist_messages(session)
    ids = [item.id for _, item in session.checklist.walk()]
    for item_id in ids:
        progress = data.draw(st.one_of(st.none(), PROGRESS))
        if progress is not None:
            session.items[item_id] = progress
    session.state = state
    messages = checklist_messages(session)
    assert [m.purpose for m in messages] == [m.purpose for m in pending]
    assert sorted(option_values(pending)) == sorted(ids)
    for message in [*pending, *messages]:
        validate_message(message.blocks, text=message.text)
    validate_message(summary_blocks(session, now=LATER), text=summary_text(session))
    for section in session.checklist.sections:
        validate_view(skip_modal(session, section.id))


@given(text=TEXT, limit=st.integers(min_value=2, max_value=100))
# No "&" at all: the kept text "a" must not be mistaken for the start of a cut "&amp;".
@example(text="a\x1f\x07", limit=3)
def test_clip_respects_limits_and_never_cuts_an_escape(text: str, limit: int) -> None:
    clipped = clip(text, limit, json_limit=limit * 3, mrkdwn=True)
    assert width(clipped) <= limit and json_len(clipped) <= limit * 3
    if clipped != escape(text):
        assert clipped.endswith("…")
        kept = clipped[:-1]
        assert escape(text).startswith(kept)
        # Every "&" in escaped text opens an entity; the last one kept is closed by its ";".
        assert "&" not in kept or ";" in kept.rsplit("&", 1)[1]


# Modals


def test_skip_modal_lists_the_sections_open_items() -> None:
    session = make_session()
    session.items["1.1"] = ItemProgress(ItemStatus.DONE, QA, NOW)
    session.items["1.2.1"] = ItemProgress(ItemStatus.FAILED, SYSTEM.user_id, NOW, "lagging")
    view = skip_modal(session, "pre-deployment")
    validate_view(view)
    assert (view["callback_id"], view["private_metadata"]) == (ViewId.SKIP, "7|pre-deployment")
    select = next(b for b in view["blocks"] if b.get("block_id") == InputId.SKIP_ITEM)["element"]
    assert select["action_id"] == InputId.SKIP_ITEM
    assert [(o["text"]["text"], o["value"]) for o in select["options"]] == [
        ("⬜ 1.2 Database", "1.2"),
        ("❌ 1.2.1 Replicas", "1.2.1"),
    ]
    reason = next(b for b in view["blocks"] if b.get("block_id") == InputId.SKIP_REASON)
    assert reason["element"]["multiline"] is True and "optional" not in reason
    assert view["submit"]["text"] == "Skip item"


def test_skipped_items_are_unskipped_in_the_skip_modal_in_a_group_of_their_own() -> None:
    session = make_session()
    session.items["1.1"] = ItemProgress(ItemStatus.SKIPPED, QA, NOW, "not applicable")
    view = skip_modal(session, "pre-deployment")
    validate_view(view)
    select = next(b for b in view["blocks"] if b.get("block_id") == InputId.SKIP_ITEM)["element"]
    groups = [
        (g["label"]["text"], [(o["text"]["text"], o["value"]) for o in g["options"]])
        for g in select["option_groups"]
    ]
    assert groups == [
        ("Skip", [("⬜ 1.2 Database", "1.2"), ("⬜ 1.2.1 Replicas", "1.2.1")]),
        ("Skipped: unskip", [("⏭ 1.1 Backups verified", "unskip|1.1")]),
    ]
    assert "unskip" in texts(view["blocks"])
    # With everything else done, the skipped item can still be taken back.
    for item_id in ("1.2", "1.2.1"):
        session.items[item_id] = ItemProgress(ItemStatus.DONE, QA, NOW)
    only = skip_modal(session, "pre-deployment")
    validate_view(only)
    select = only["blocks"][1]["element"]
    assert [g["label"]["text"] for g in select["option_groups"]] == ["Skipped: unskip"]


def test_a_chunk_of_skipped_items_has_no_checkboxes_but_says_what_was_skipped() -> None:
    session = make_session()
    for item_id in ("1.1", "1.2", "1.2.1"):
        session.items[item_id] = ItemProgress(ItemStatus.SKIPPED, QA, NOW, "n/a")
    first = checklist_messages(session)[0]
    validate_message(first.blocks, text=first.text)
    assert not [e for e in actions(first.blocks) if e["type"] == "checkboxes"]
    lines = texts(first.blocks).splitlines()
    assert f"⏭ *1.1* Backups verified · skipped by <@U0QA>: n/a · {clock(NOW)}" in lines


def test_skip_modal_caps_options_and_explains_when_nothing_can_be_skipped() -> None:
    many = Checklist(
        sections=(
            Section(title="S", items=tuple(ChecklistItem(text="x" * 200) for _ in range(130))),
        )
    )
    view = skip_modal(make_session(many), "s")
    validate_view(view)
    options = view["blocks"][1]["element"]["options"]
    assert len(options) == 100 and all(len(o["text"]["text"]) <= 75 for o in options)
    assert "Showing the first 100 of 130 items" in texts(view["blocks"])

    done = settle_all(make_session())
    view = skip_modal(done, "pre-deployment")
    validate_view(view)
    assert "submit" not in view and "nothing is left to skip" in texts(view["blocks"])

    gated = skip_modal(make_session(), "post-deployment")
    assert "submit" not in gated and "is still closed" in texts(gated["blocks"])

    closed = make_session()
    closed.state = S.COMPLETED
    assert "submit" not in skip_modal(closed, "pre-deployment")
    with pytest.raises(NotFound):
        skip_modal(make_session(), "nope")


def test_abort_modal_asks_for_a_reason() -> None:
    view = abort_modal(make_session())
    validate_view(view)
    assert (view["callback_id"], view["private_metadata"]) == (ViewId.ABORT, "7")
    assert view["blocks"][-1]["block_id"] == InputId.ABORT_REASON
    assert view["blocks"][-1]["element"]["action_id"] == InputId.ABORT_REASON
    closed = make_session()
    closed.state = S.ABORTED
    assert "submit" not in abort_modal(closed)


# The validator


def section(text: str, **extra: Any) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}, **extra}


def checkboxes(count: int, label: str = "x") -> dict[str, Any]:
    options = [{"text": {"type": "mrkdwn", "text": label}, "value": str(i)} for i in range(count)]
    return {
        "type": "actions",
        "elements": [{"type": "checkboxes", "action_id": "a", "options": options}],
    }


def button(text: str) -> dict[str, Any]:
    return {
        "type": "actions",
        "elements": [
            {"type": "button", "action_id": "b", "text": {"type": "plain_text", "text": text}}
        ],
    }


@pytest.mark.parametrize(
    ("blocks", "message"),
    [
        ([section("x")] * 51, "51 blocks; a message holds at most 50"),
        ([checkboxes(11)], r"block 0 \(actions\): checkboxes has 11 options; at most 10"),
        ([checkboxes(1, "o" * 76)], r"block 0 \(actions\): .*75 characters"),
        ([section("ok"), button("b" * 76)], r"block 1 \(actions\): .*75"),
        ([section("s" * 3001)], r"block 0 \(section\): .*3000"),
        ([section("a", block_id="x"), section("b", block_id="x")], "block 1: block_id 'x'"),
        ([{"type": "section"}], r"block 0 \(section\): text or fields attribute must be specified"),
        ([{"type": "sektion", "text": "x"}], "unknown block type"),
        ([section("x", txet="typo")], "slack_sdk does not know 'txet'"),
        (
            [section("y" * 2900) for _ in range(5)],
            "characters of JSON; a message holds at most 12000",
        ),
    ],
)
def test_validate_message_rejects(blocks: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(BlockKitError, match=message):
        validate_message(blocks)
    assert not fits(blocks)


def test_validate_message_accepts_the_limits_themselves() -> None:
    blocks = [section("s" * 3000), checkboxes(10, "o" * 75), button("b" * 75)]
    validate_message(blocks)
    assert fits(blocks)


def test_validate_view_rejects_inputs_without_submit_and_too_many_blocks() -> None:
    view = abort_modal(make_session())
    validate_view(view)
    with pytest.raises(BlockKitError, match="needs a submit"):
        validate_view({k: v for k, v in view.items() if k != "submit"})
    with pytest.raises(BlockKitError, match=r"view: views must contain between 1 and 100 blocks"):
        validate_view({**view, "blocks": [section("x")] * 101})


def test_parts_of_a_long_section_keep_their_number_in_the_header() -> None:
    title = "A very long section title " * 10
    items = tuple(ChecklistItem(text=f"Check {i}") for i in range(40))
    session = make_session(Checklist(sections=(Section(title=title, items=items),)))
    headers = [m.blocks[0]["text"]["text"] for m in checklist_messages(session)]
    assert len(headers) == 2
    assert headers[1].endswith("… (part 2/2)") and len(headers[1]) <= 150


def test_the_summary_keeps_an_overridden_failed_check_in_sight() -> None:
    session = make_session()
    session.items["2.1"] = ItemProgress(
        ItemStatus.SKIPPED, "U0OPS", NOW, "known flaky", Severity.CRITICAL, "HTTP 503"
    )
    session.items["1.1"] = ItemProgress(ItemStatus.SKIPPED, QA, NOW, "not needed")
    blocks = summary_blocks(session, now=LATER)
    validate_message(blocks)
    texts = [b["text"]["text"] for b in blocks if b["type"] == "section" and "text" in b]
    overridden = [t for t in texts if t.startswith("*Failed checks overridden*")]
    assert overridden == [
        "*Failed checks overridden* (1)\n"
        "⚠️ *2.1* Smoke test: failed (HTTP 503), skipped by <@U0OPS>: known flaky"
    ]
    report = report_markdown(session, [])
    assert "2.1 Smoke test (known flaky) **overrode a failed critical probe: HTTP 503**" in report
    assert "1.1 Backups verified (not needed) —" in report


def test_no_time_is_frozen_into_a_message() -> None:
    """Every time shown is Slack's date formatting: local to the reader, "ago" kept current."""
    session = sign(make_session(), "qa-lead")
    session.items["1.1"] = ItemProgress(ItemStatus.DONE, QA, NOW)
    session.items["1.2"] = ItemProgress(ItemStatus.SKIPPED, QA, NOW, "n/a")
    session.items["2.1"] = ItemProgress(ItemStatus.FAILED, SYSTEM.user_id, NOW, "HTTP 503")
    closed = replace(session, state=S.ABORTED, closed_at=LATER, outcome_reason="freeze")
    shown = [
        summary_blocks(session, now=LATER),
        status_blocks(closed, now=LATER),
        list_blocks(page(session), now=LATER),
        *(m.blocks for m in checklist_messages(session)),
    ]
    date = re.compile(r"<!date\^(\d+)\^\{[a-z_]+\}(?: \{[a-z_]+\})*\|[^<>|]+>")
    for blocks in shown:
        text = texts(blocks)
        left = date.sub("", text)
        assert not re.search(r"\d\d:\d\d|\bago\b|UTC", left), left
    stamps = {int(m) for blocks in shown for m in date.findall(texts(blocks))}
    assert stamps <= {int(t.timestamp()) for t in (NOW, LATER, NOW + timedelta(minutes=5))}


def test_a_channel_links_by_id_and_reads_as_written_by_name() -> None:
    assert channel_link("C0DEPLOYS") == "<#C0DEPLOYS>"
    assert channel_link("#deploys-staging") == "#deploys-staging"
