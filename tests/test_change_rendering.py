"""What the summary and the report show of change control: a lapsed sign-off (who, when,
how long one holds), an emergency and its retrospective, the promotion that admitted the
version. Every message passes slack_sdk's Block Kit validation."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

from bot.app.report import report_json, report_markdown
from bot.domain import apply
from bot.domain import commands as c
from bot.domain.checklist import Gate
from bot.domain.emergency import Emergency
from bot.domain.policy import SignOffRule
from bot.domain.promotion import CompletedDeploy
from bot.rendering.limits import validate_message
from bot.rendering.report import report_blocks
from bot.rendering.session import summary_blocks
from tests.test_domain import NOW, QA, QA2, make_session

FOUR_HOURS = (
    SignOffRule("qa", "QA", ("approvers",), count=2, valid_for=timedelta(hours=4)),
    SignOffRule("ops", "Ops", ("approvers",)),
)
RETRO = SignOffRule("post-incident-review", "Post-incident review", ("leads",))


def text_of(blocks: list[dict[str, object]]) -> str:
    validate_message(blocks, text="x")
    return json.dumps(blocks, ensure_ascii=False)


def test_the_summary_names_the_lapsed_sign_off_and_who_is_still_valid() -> None:
    s = make_session(signoffs=FOUR_HOURS, deploy_gate=Gate(signoffs=("qa", "ops")))
    s = apply(s, c.SignOff("qa"), QA, NOW).session
    s = apply(s, c.SignOff("qa"), QA2, NOW + timedelta(hours=2)).session
    fresh = text_of(summary_blocks(s, now=NOW + timedelta(hours=1)))
    assert "lapsed" not in fresh
    later = text_of(summary_blocks(s, now=NOW + timedelta(hours=5)))
    assert "⌛ *QA*: lapsed: <@U0QA> signed <!date^" in later
    assert "a sign-off holds 4h: sign again (1 of 2 still valid: <@U0QA2>)" in later
    # What *Start deployment* waits for says it too.
    assert "*Start deployment* waits for: sign-off from *QA* (1 of 2) (lapsed: " in later
    assert "Ops" in later and "⌛ *Ops*" not in later


def test_an_emergency_shows_its_reason_skips_and_retrospective() -> None:
    emergency = Emergency(
        "U0COMMANDER", NOW, "site down", RETRO, ("sign-off QA Lead", "change freeze: Weekend")
    )
    s = replace(make_session(), emergency=emergency)
    shown = text_of(summary_blocks(s, now=NOW))
    assert "🚨 EMERGENCY Deploy #7" in shown
    assert "🚨 *Emergency deploy* by <@U0COMMANDER>" in shown and "site down" in shown
    assert "_Skipped: sign-off QA Lead; change freeze: Weekend_" in shown
    assert "⏳ *Post-incident review*: outstanding. Members of `leads` sign it: " in shown
    assert "`/deploy retrospective 7 <note>`" in shown
    done = replace(
        s,
        emergency=replace(
            emergency, retrospective_by="U0LEAD", retrospective_at=NOW, retrospective_note="ok"
        ),
    )
    assert "✅ *Post-incident review*: <@U0LEAD>" in text_of(summary_blocks(done, now=NOW))

    report = text_of(report_blocks(s, [], []))
    assert "🚨 EMERGENCY Deployment report #7" in report
    assert "outstanding" in report
    markdown = report_markdown(s, [])
    assert markdown.startswith("# EMERGENCY Deployment report #7")
    assert "| Emergency | by U0COMMANDER at" in markdown
    assert "| Retrospective | outstanding (Post-incident review) |" in markdown
    assert report_json(s, [])["emergency"]["reason"] == "site down"


def test_the_promotion_is_shown_and_linked() -> None:
    s = replace(
        make_session(),
        promoted_from=CompletedDeploy(3, "staging", "api", "v1.4.2", NOW - timedelta(days=1)),
    )
    linked = text_of(
        summary_blocks(s, now=NOW, promotion_link="https://acme.slack.com/archives/C1/p1")
    )
    assert "⬆️ Promoted from *staging*: <https://acme.slack.com/archives/C1/p1|deploy #3>" in (
        linked
    )
    assert "deploy #3 completed" in text_of(summary_blocks(s, now=NOW))
    assert "| Promoted from | staging deploy #3, completed" in report_markdown(s, [])
