"""A session's deploy steps as the summary shows them, and the button a pause offers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.domain import DeploySession, SessionState
from bot.domain.step_progress import StepProgress, StepState
from bot.rendering.ids import ActionId, pack
from bot.rendering.limits import MAX_SECTION_TEXT, bounded_lines, clip
from bot.rendering.times import duration

ICONS: dict[StepState, str] = {
    StepState.PENDING: "⚪",
    StepState.RUNNING: "▶️",
    StepState.WAITING: "⏳",
    StepState.DONE: "✅",
    StepState.FAILED: "❌",
}
STEPS_JSON = 2_000


def steps_text(session: DeploySession, now: datetime, scale: float = 1.0) -> str:
    """``*Deploy steps*`` and a line per step: its state, for how long, and its detail."""
    lines = [
        f"{ICONS[p.state]} {n}. {clip(p.name, 120, mrkdwn=True)}: {_state(p, now)}"
        for n, p in enumerate(session.steps, start=1)
    ]
    kept = bounded_lines(
        lines,
        limit=MAX_SECTION_TEXT - 40,
        json_limit=max(200, int(STEPS_JSON * scale)),
        more=lambda n: f"… and {n} more steps",
    )
    return "*Deploy steps*\n" + "\n".join(kept)


def _state(p: StepProgress, now: datetime) -> str:
    text = p.state.value
    if p.state in (StepState.RUNNING, StepState.WAITING) and p.since is not None:
        text += f" for {duration(now - p.since)}"
    if p.state is StepState.FAILED and p.detail:
        text += f": {clip(p.detail, 200, mrkdwn=True)}"
    elif p.state is StepState.DONE and p.detail:
        text += f" · {clip(p.detail, 120, mrkdwn=True)}"
    if p.continued_by:
        text += f" (continued by <@{p.continued_by}>)"
    return text


def continue_buttons(session: DeploySession, make: Any) -> list[dict[str, Any]]:
    """*Continue* on a pause that waits for a person (``make`` builds a button)."""
    if session.state is not SessionState.DEPLOYING:
        return []
    return [
        make(f"Continue step {n}", ActionId.CONTINUE_STEP, pack(session.id, n), "primary")
        for n, p in enumerate(session.steps, start=1)
        if p.kind == "pause" and p.state is StepState.WAITING and not p.continued_by
    ]


def failed_step(session: DeploySession) -> int | None:
    """The step that failed the session (1-based), if one did."""
    return next(
        (n for n, p in enumerate(session.steps, start=1) if p.state is StepState.FAILED), None
    )
