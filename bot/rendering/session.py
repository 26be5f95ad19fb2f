"""A deploy session's summary message and the ``/deploy status`` reply."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.domain import TRANSITIONS, DeploySession, SessionState
from bot.domain.commands import (
    Abort,
    Complete,
    FinishDeployment,
    SignOff,
    StartDeployment,
    StartProbe,
)
from bot.domain.freeze import FreezeOverride
from bot.domain.policy import SignOffRule
from bot.rendering.change_control import (
    EMERGENCY_TITLE,
    emergency_text,
    lapsed_status,
    promotion_text,
)
from bot.rendering.checklist import mention, session_id, unasked_signoffs
from bot.rendering.failures import completion_missing, failing_text, overridden_text
from bot.rendering.ids import ActionId, pack
from bot.rendering.limits import (
    MAX_ACTIONS_ELEMENTS,
    MAX_BUTTON_TEXT,
    MAX_FIELD_TEXT,
    MAX_HEADER_TEXT,
    MAX_SECTION_TEXT,
    JsonBlock,
    bounded_lines,
    clip,
    escape,
    fits,
)
from bot.rendering.mrkdwn import to_plain
from bot.rendering.steps import continue_buttons, steps_text
from bot.rendering.times import ago, duration, slack_date

S = SessionState
STATE_EMOJI: dict[SessionState, str] = {
    S.OPEN: "📝",
    S.DEPLOYING: "🚀",
    S.VERIFYING: "🔎",
    S.MONITORING: "📈",
    S.COMPLETED: "✅",
    S.ABORTED: "🛑",
    S.FAILED: "❌",
    S.ROLLING_BACK: "⏪",
    S.ROLLED_BACK: "↩️",
    S.ROLLBACK_FAILED: "🔥",
}
# Budgets (JSON characters) of the variable parts at full scale; halved until the message fits.
SECTIONS_JSON = 2_400
SIGNOFFS_JSON = 1_500
FAILING_JSON = 2_000
SCALES = (1.0, 0.5, 0.2, 0.0)


def summary_blocks(
    session: DeploySession,
    *,
    now: datetime,
    session_link: str | None = None,
    incident_link: str | None = None,
    promotion_link: str | None = None,
) -> list[JsonBlock]:
    """The summary message posted in the environment's channel, with the buttons that fit.

    Args:
        session: The session to show.
        now: The current time, for how long the session has been open.
        session_link: A permalink to the checklist thread, shown when given.
        incident_link: A permalink to the incident thread, shown when given.
        promotion_link: A permalink to the deploy the promotion order pointed to.

    Returns:
        Blocks that pass :func:`~bot.rendering.limits.validate_message`; long lists (sections,
        failing items) are cut with "… and N more" until they do.
    """
    actions = _actions(session, now)
    blocks: list[JsonBlock] = []
    for scale in SCALES:
        blocks = _overview(session, now, scale, session_link, incident_link, promotion_link)
        blocks += actions
        if fits(blocks):
            break
    return blocks


def summary_text(session: DeploySession) -> str:
    """The summary's notification fallback text (``text`` of ``chat.postMessage``)."""
    settled, total = session.totals
    title = clip(session.title, 200, mrkdwn=True)
    return (
        f"Deploy #{session_id(session)}: {title} is {session.state.label} "
        f"· {settled}/{total} items done"
    )


def status_blocks(session: DeploySession, *, now: datetime) -> list[JsonBlock]:
    """The ``/deploy status`` reply: the summary without buttons."""
    blocks: list[JsonBlock] = []
    for scale in SCALES:
        blocks = _overview(session, now, scale, None, None)
        if fits(blocks):
            break
    return blocks


def state_label(state: SessionState) -> str:
    """The state as people read it, with its emoji: "🚀 deploying"."""
    return f"{STATE_EMOJI[state]} {state.label}"


def progress_bar(settled: int, total: int, cells: int = 10) -> str:
    """``▓▓▓▓▓░░░░░ 12/24``; the bar is full only when everything is settled."""
    if total == 0:
        return "no items"
    filled = settled * cells // total
    return "▓" * filled + "░" * (cells - filled) + f" {settled}/{total}"


# The overview shared by the summary and the status reply.


def _overview(
    session: DeploySession,
    now: datetime,
    scale: float,
    session_link: str | None,
    incident_link: str | None,
    promotion_link: str | None = None,
) -> list[JsonBlock]:
    urgent = f"{EMERGENCY_TITLE} " if session.emergency is not None else ""
    blocks = [
        header_block(f"{urgent}Deploy #{session_id(session)}: {session.title}"),
        _fields(session, now),
    ]
    blocks.append(section_block(_progress(session, scale)))
    if session.steps:
        blocks.append(section_block(steps_text(session, now, scale)))
    if session.policy.signoffs:
        blocks.append(section_block(_signoffs(session, max(scale, 0.3), now)))
    if session.failing_items():
        blocks.append(section_block(failing_text(session, int(FAILING_JSON * scale))))
    if session.overridden_items():
        blocks.append(section_block(overridden_text(session, int(FAILING_JSON * scale))))
    if session.freeze_override is not None:
        blocks.append(section_block(_freeze_override(session.freeze_override)))
    for text in (emergency_text(session), promotion_text(session, promotion_link)):
        if text:
            blocks.append(section_block(text))
    outcome = _outcome(session)
    if outcome:
        blocks.append(section_block(outcome))
    links = [_link("🚨", incident_link, "Incident thread"), _link("🧵", session_link, "Checklist")]
    if any(links):
        blocks.append(context_block(" · ".join(link for link in links if link)))
    waits = _waits(session, now)
    if waits:
        blocks.append(context_block("\n".join(waits)))
    unasked = unasked_signoffs(session)
    if unasked:
        blocks.append(context_block(unasked))
    return blocks


def _fields(session: DeploySession, now: datetime) -> JsonBlock:
    def value(text: str) -> str:
        return clip(text, 80, json_limit=300, mrkdwn=True) if text else "—"

    opened = slack_date(session.opened_at)
    if session.closed_at is not None:
        opened += f"\nclosed {slack_date(session.closed_at)}, after "
        opened += duration(session.closed_at - session.opened_at)
    else:
        opened += "\n" + ago(session.opened_at, now)
    fields = {
        "Environment": value(session.environment),
        "Service": value(session.service),
        "Version": value(session.version),
        "Requester": mention(session.requester),
        "State": state_label(session.state),
        "Opened": opened,
    }
    return {
        "type": "section",
        "fields": [
            {"type": "mrkdwn", "text": clip(f"*{name}*\n{text}", MAX_FIELD_TEXT)}
            for name, text in fields.items()
        ],
    }


def _progress(session: DeploySession, scale: float) -> str:
    settled, total = session.totals
    head = f"*Progress*  {progress_bar(settled, total)}"
    lines = []
    for section in session.checklist.sections:
        done, count = session.section_counts(section)
        closed = section.gate is not None and session.gate_missing(section.gate)
        mark = "🔒" if closed else "✅" if count and done == count else "•"
        title = clip(to_plain(section.title), 60, json_limit=200, mrkdwn=True)
        lines.append(f"{mark} {title} {done}/{count}")
    shown = bounded_lines(
        lines,
        limit=MAX_SECTION_TEXT - len(head) - 1,
        json_limit=int(SECTIONS_JSON * scale),
        more=lambda n: f"… and {n} more section{'s' if n != 1 else ''}",
    )
    return "\n".join([head, *shown])


def _signoffs(session: DeploySession, scale: float, now: datetime) -> str:
    lines = []
    for rule in session.policy.signoffs:
        lines.append(lapsed_status(session, rule, now) or signoff_status(session, rule))
    shown = bounded_lines(
        lines,
        limit=MAX_SECTION_TEXT - 20,
        json_limit=int(SIGNOFFS_JSON * scale),
        more=lambda n: f"… and {n} more",
    )
    return "\n".join(["*Sign-offs*", *shown])


def signoff_status(session: DeploySession, rule: SignOffRule) -> str:
    """``✅ *QA Lead*: <@U1> · date``, or with a count ``⏳ *QA*: 1 of 2 (<@U1>)``."""
    role = clip(rule.role, 60, json_limit=200, mrkdwn=True)
    record = session.signoffs.get(rule.key)
    if record is None:
        return f"⏳ *{role}*: missing" + (f" (0 of {rule.count})" if rule.count > 1 else "")
    who = ", ".join(mention(by) for by in record.signers)
    done = len(record.signers) >= rule.count
    if rule.count > 1:
        who = f"{len(record.signers)} of {rule.count} ({who})"
    return f"✅ *{role}*: {who} · {slack_date(record.last_at)}" if done else f"⏳ *{role}*: {who}"


def _freeze_override(done: FreezeOverride) -> str:
    reason = clip(done.reason, 300, json_limit=600, mrkdwn=True)
    window = clip(done.window.describe(), 300, json_limit=600, mrkdwn=True)
    return (
        f":snowflake: *Change freeze overridden* by {mention(done.by)} · {slack_date(done.at)}: "
        f"{reason}\n_{window}_"
    )


def _outcome(session: DeploySession) -> str | None:
    if not session.state.is_closed and not session.outcome_reason:
        return None
    text = f"{STATE_EMOJI[session.state]} *{session.state.label.capitalize()}*"
    if session.closed_at is not None:
        text += f" {slack_date(session.closed_at)}"
    if session.outcome_reason:
        text += ": " + clip(session.outcome_reason, 500, json_limit=1_000, mrkdwn=True)
    return text


def _waits(session: DeploySession, now: datetime) -> list[str]:
    """What the next phase still waits for, in the states where it is the next step."""
    waits = []
    if (session.state, StartDeployment) in TRANSITIONS:
        missing = session.gate_missing(session.policy.deploy_gate, at=now)
        if missing:
            waits.append("⏸ *Start deployment* waits for: " + escape("; ".join(missing)))
    if (session.state, Complete) in TRANSITIONS:
        missing = completion_missing(session)
        if missing:
            waits.append("⏸ *Mark complete* waits for: " + escape("; ".join(missing)))
    return [clip(w, 1_000, json_limit=1_500) for w in waits]


# Buttons


def _actions(session: DeploySession, now: datetime) -> list[JsonBlock]:
    sid, state = session_id(session), session.state

    def allowed(command: type[Any]) -> bool:
        return (state, command) in TRANSITIONS

    buttons = []
    if allowed(SignOff):
        # At ``now``: a sign-off whose ``valid_for`` has run out is asked for again.
        for rule in session.missing_signoffs(at=now):
            text = f"Sign off as {rule.role}"
            buttons.append(button(text, ActionId.SIGN_OFF, pack(sid, rule.key)))
    if allowed(StartDeployment) and not session.gate_missing(session.policy.deploy_gate, at=now):
        buttons.append(button("Start deployment", ActionId.START_DEPLOYMENT, sid, "primary"))
    if allowed(FinishDeployment) and not session.steps:  # else the bot deploys, then verifies
        buttons.append(button("Deployed: verify", ActionId.FINISH_DEPLOYMENT, sid))
    buttons += continue_buttons(session, button)
    # During a rollback the bot re-runs the probes itself when it is done.
    if allowed(StartProbe) and state is not S.ROLLING_BACK:
        buttons.append(button("Run probes", ActionId.RUN_PROBES, sid))
    if allowed(Complete) and not completion_missing(session):
        confirm = confirm_dialog(
            f"Mark deploy #{sid} complete?",
            _open_items(session) + f"This closes the session and frees {session.environment}.",
            "Mark complete",
        )
        buttons.append(button("Mark complete", ActionId.COMPLETE, sid, confirm=confirm))
    if allowed(Abort):
        confirm = confirm_dialog(
            f"Abort deploy #{sid}?",
            "You will be asked for a reason; the session closes and the environment is freed.",
            "Abort",
            danger=True,
        )
        buttons.append(button("Abort", ActionId.ABORT, sid, "danger", confirm))
    return [
        {"type": "actions", "elements": buttons[i : i + MAX_ACTIONS_ELEMENTS]}
        for i in range(0, len(buttons), MAX_ACTIONS_ELEMENTS)
    ]


def _open_items(session: DeploySession) -> str:
    """What completing would leave undone, for the confirmation (plain text, short)."""
    open_ids = [
        i.id for _, i in session.checklist.walk() if not session.progress(i.id).status.is_settled
    ]
    if not open_ids:
        return ""
    total = session.totals[1]
    shown = ", ".join(open_ids[:8]) + (
        f" and {len(open_ids) - 8} more" if len(open_ids) > 8 else ""
    )
    return f"{len(open_ids)} of {total} items are still open ({shown}). "


def button(
    text: str,
    action_id: ActionId,
    value: object,
    style: str | None = None,
    confirm: dict[str, Any] | None = None,
) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "action_id": action_id.value,
        "text": {"type": "plain_text", "text": clip(text, MAX_BUTTON_TEXT), "emoji": True},
        "value": str(value),
    }
    if style:
        button["style"] = style
    if confirm:
        button["confirm"] = confirm
    return button


def confirm_dialog(title: str, text: str, yes: str, *, danger: bool = False) -> dict[str, Any]:
    confirm: dict[str, Any] = {
        "title": {"type": "plain_text", "text": clip(title, 100)},
        "text": {"type": "plain_text", "text": clip(text, 300)},
        "confirm": {"type": "plain_text", "text": yes},
        "deny": {"type": "plain_text", "text": "Cancel"},
    }
    if danger:
        confirm["style"] = "danger"
    return confirm


# Small blocks


def header_block(text: str) -> JsonBlock:
    return {
        "type": "header",
        "text": {
            "type": "plain_text",
            "text": clip(text, MAX_HEADER_TEXT, json_limit=600),
            "emoji": True,
        },
    }


def section_block(text: str) -> JsonBlock:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, MAX_SECTION_TEXT)}}


def context_block(text: str) -> JsonBlock:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(text, 3_000)}]}


def _link(icon: str, url: str | None, label: str) -> str | None:
    if not url:
        return None
    if any(c in url for c in "<>| \n") or len(url) > 1_000:
        return f"{icon} {label}: {clip(url, 1_000, mrkdwn=True)}"
    return f"{icon} <{url}|{label}>"
