"""What the summary and the report say about change control: an emergency and its
retrospective, the promotion that admitted the version, and sign-offs that lapsed."""

from __future__ import annotations

from datetime import datetime

from bot.domain import DeploySession
from bot.domain.emergency import Emergency
from bot.domain.policy import SignOffRule
from bot.domain.promotion import CompletedDeploy
from bot.rendering.checklist import mention, session_id
from bot.rendering.limits import clip
from bot.rendering.times import slack_date

EMERGENCY_TITLE = "🚨 EMERGENCY"


def emergency_text(session: DeploySession) -> str | None:
    """``🚨 *Emergency deploy* by @x · date: reason``, what it skipped, and whether the
    retrospective is still owed (and how to give it)."""
    done = session.emergency
    if done is None:
        return None
    reason = clip(done.reason, 300, json_limit=600, mrkdwn=True)
    lines = [f"🚨 *Emergency deploy* by {mention(done.by)} · {slack_date(done.at)}: {reason}"]
    if done.skipped:
        skipped = clip("; ".join(done.skipped), 600, json_limit=1_000, mrkdwn=True)
        lines.append(f"_Skipped: {skipped}_")
    lines.append(retrospective_line(session, done))
    return "\n".join(lines)


def retrospective_line(session: DeploySession, done: Emergency) -> str:
    if done.outstanding:
        roles = ", ".join(f"`{r}`" for r in done.retrospective.by)
        return (
            f"⏳ *{clip(done.retrospective.role, 60, mrkdwn=True)}*: outstanding. Members of "
            f"{roles} sign it: `/deploy retrospective {session_id(session)} <note>`."
        )
    note = f": {clip(done.retrospective_note, 300, mrkdwn=True)}" if done.retrospective_note else ""
    return (
        f"✅ *{clip(done.retrospective.role, 60, mrkdwn=True)}*: "
        f"{mention(done.retrospective_by)} · {slack_date(done.retrospective_at)}{note}"
    )


def promotion_text(session: DeploySession, link: str | None = None) -> str | None:
    """``⬆️ Promoted from staging: deploy #3 completed <date>``, linked when the link is known."""
    done: CompletedDeploy | None = session.promoted_from
    if done is None:
        return None
    name = f"deploy #{done.session_id}"
    shown = f"<{link}|{name}>" if link else name
    return (
        f"⬆️ Promoted from *{clip(done.environment, 80, mrkdwn=True)}*: {shown} "
        f"completed {slack_date(done.completed_at)}"
    )


def lapsed_status(session: DeploySession, rule: SignOffRule, now: datetime | None) -> str | None:
    """``⌛ *QA Lead*: lapsed: <@U1> signed <date>; a sign-off holds 4h: sign again``, when
    a signature of ``rule`` no longer counts at ``now``."""
    lapsed = session.lapsed(rule.key, at=now)
    if not lapsed:
        return None
    who = ", ".join(f"{mention(s.by)} signed {slack_date(s.at)}" for s in lapsed)
    valid = session.signers(rule.key, at=now)
    still = ""
    if valid:
        still = f" ({len(valid)} of {rule.count} still valid: "
        still += ", ".join(mention(by) for by in valid) + ")"
    role = clip(rule.role, 60, json_limit=200, mrkdwn=True)
    hours = _span(rule)
    return f"⌛ *{role}*: lapsed: {who}; a sign-off holds {hours}: sign again{still}"


def _span(rule: SignOffRule) -> str:
    minutes = int(rule.valid_for.total_seconds() // 60) if rule.valid_for else 0
    return f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}m"
