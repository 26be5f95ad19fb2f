"""The deployment report as a Slack message: a summary in Block Kit, posted in the session's
thread with the full report (Markdown and JSON) attached as files beside it.

The message says who did what as mentions and when as ``<!date>`` times (each reader's own
time zone). Long parts (many probes, a long incident) are cut with "… and N more", halving
their budgets until the message fits Slack's limits; the files hold everything.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from bot.domain import DeploySession, ItemStatus
from bot.rendering.change_control import EMERGENCY_TITLE, emergency_text, promotion_text
from bot.rendering.checklist import mention, session_id
from bot.rendering.limits import (
    MAX_FIELD_TEXT,
    MAX_HEADER_TEXT,
    MAX_SECTION_TEXT,
    JsonBlock,
    bounded_lines,
    clip,
    fits,
)
from bot.rendering.mrkdwn import to_plain
from bot.rendering.session import signoff_status, state_label
from bot.rendering.times import duration, slack_date
from bot.storage.probe_runs import ProbeRun
from bot.storage.repositories import AuditEntry

# Audit kinds that belong in an incidents-and-rollback part of the report.
INCIDENT_KINDS = frozenset(
    {
        "probe_failed",
        "session_failed",
        "rollback_started",
        "rollback_verifying",
        "rollback_succeeded",
        "rollback_failed",
        "incident_opened",
        "incident_acknowledged",
        "incident_resolved",
        "page_sent",
        "page_resolved",
    }
)
# Budgets (JSON characters) of the long parts at full scale; scaled down until it fits.
CHECKLIST_JSON = 2_000
PROBES_JSON = 2_000
INCIDENTS_JSON = 2_500
SCALES = (1.0, 0.5, 0.25, 0.1)
NOTABLE = (ItemStatus.FAILED, ItemStatus.SKIPPED, ItemStatus.RUNNING)


def report_filenames(session: DeploySession) -> tuple[str, str]:
    """The names of the attached files: the Markdown report and the JSON report."""
    stem = f"deploy-{session_id(session)}-report"
    return f"{stem}.md", f"{stem}.json"


def report_text(session: DeploySession) -> str:
    """The message's notification fallback text."""
    return (
        f"Deployment report #{session_id(session)}: {clip(session.title, 200, mrkdwn=True)} "
        f"({session.state.label})"
    )


def report_blocks(
    session: DeploySession, history: Sequence[AuditEntry], probe_runs: Sequence[ProbeRun]
) -> list[JsonBlock]:
    """The report's summary message; it passes :func:`~bot.rendering.limits.validate_message`.

    Args:
        session: the session reported on.
        history: its audit entries, in order.
        probe_runs: its stored probe runs, in order.
    """
    blocks: list[JsonBlock] = []
    for scale in SCALES:
        blocks = _blocks(session, history, probe_runs, scale)
        if fits(blocks):
            break
    return blocks


def _blocks(
    session: DeploySession,
    history: Sequence[AuditEntry],
    runs: Sequence[ProbeRun],
    scale: float,
) -> list[JsonBlock]:
    urgent = f"{EMERGENCY_TITLE} " if session.emergency is not None else ""
    title = f"{urgent}Deployment report #{session_id(session)}: {session.title}"
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": clip(title, MAX_HEADER_TEXT)}},
        _fields(session),
    ]
    for text in (emergency_text(session), promotion_text(session)):
        if text:
            blocks.append(_section(text))
    if session.policy.signoffs:
        blocks.append(_section(_signoffs(session)))
    blocks.append(_section(_checklist(session, scale)))
    blocks.append(_section(_probes(runs, scale)))
    blocks.append(_section(_incidents(history, scale)))
    md, js = report_filenames(session)
    span = ""
    if history:
        span = f" from {slack_date(history[0].at)} to {slack_date(history[-1].at)}"
    blocks.append(
        _context(
            f"Timeline: {len(history)} audited event{'s' if len(history) != 1 else ''}{span}. "
            f"The full report is in the files below: `{md}` (Markdown) and `{js}` (JSON)."
        )
    )
    return blocks


def _fields(session: DeploySession) -> JsonBlock:
    def value(text: str | None) -> str:
        return clip(text, 200, json_limit=400, mrkdwn=True) if text else "—"

    outcome = state_label(session.state)
    if session.outcome_reason:
        outcome += f": {value(session.outcome_reason)}"
    ended = "—"
    if session.closed_at is not None:
        ended = slack_date(session.closed_at)
        ended += f"\nafter {duration(session.closed_at - session.opened_at)}"
    settled, total = session.totals
    fields = {
        "Environment": value(session.environment),
        "Service": value(session.service),
        "Version": value(session.version),
        "Requested by": mention(session.requester),
        "Started": slack_date(session.opened_at),
        "Ended": ended,
        "Outcome": outcome,
        "Checklist": f"{settled}/{total} items done or skipped",
    }
    return {
        "type": "section",
        "fields": [
            {"type": "mrkdwn", "text": clip(f"*{name}*\n{text}", MAX_FIELD_TEXT)}
            for name, text in fields.items()
        ],
    }


def _signoffs(session: DeploySession) -> str:
    lines = []
    for rule in session.policy.signoffs:
        lines.append(signoff_status(session, rule))
    return _titled("Sign-offs", lines, 1_500, lambda n: f"… and {n} more")


def _checklist(session: DeploySession, scale: float) -> str:
    """Each section's count, then the items that did not simply get done."""
    lines = []
    for section in session.checklist.sections:
        done, count = session.section_counts(section)
        mark = "✅" if count and done == count else "•"
        name = clip(to_plain(section.title), 60, json_limit=200, mrkdwn=True)
        lines.append(f"{mark} {name} {done}/{count}")
    for _, item in session.checklist.walk():
        progress = session.progress(item.id)
        if progress.status not in NOTABLE and not progress.overrode:
            continue
        text = clip(to_plain(item.text), 80, json_limit=240, mrkdwn=True)
        line = f"{_mark(progress.status)} {item.id} {text}: {progress.status.value}"
        if progress.reason:
            line += f" ({clip(progress.reason, 120, json_limit=300, mrkdwn=True)})"
        if progress.by:
            line += f" · {mention(progress.by)}"
        if progress.at:
            line += f" · {slack_date(progress.at)}"
        if progress.overrode:
            line += (
                f" · *overrode a failed critical probe: {clip(progress.overrode, 80, mrkdwn=True)}*"
            )
        lines.append(line)
    return _titled("Checklist", lines, int(CHECKLIST_JSON * scale), _more("item"))


def _probes(runs: Sequence[ProbeRun], scale: float) -> str:
    """One line per probe: its runs, failures and last result."""
    by_probe: dict[str, list[ProbeRun]] = {}
    for run in runs:
        by_probe.setdefault(run.probe, []).append(run)
    if not by_probe:
        return "*Probe results*\nNo probe ran."
    lines = []
    for name, each in by_probe.items():
        last = each[-1]
        failed = sum(not r.ok for r in each)
        mark = "✅" if last.ok else f"❌ ({last.severity})"
        summary = clip(last.summary, 100, json_limit=250, mrkdwn=True)
        plural = "s" if len(each) != 1 else ""
        lines.append(
            f"{mark} *{clip(name, 60, mrkdwn=True)}* · {len(each)} run{plural}, {failed} failed"
            f" · last: {summary} · {slack_date(last.at)}"
        )
    return _titled("Probe results", lines, int(PROBES_JSON * scale), _more("probe"))


def _incidents(history: Sequence[AuditEntry], scale: float) -> str:
    lines = [
        f"{slack_date(e.at)} {mention(e.actor)} {e.kind.replace('_', ' ')}{_details(e.data)}"
        for e in history
        if e.kind in INCIDENT_KINDS
    ]
    if not lines:
        return "*Incidents and rollback*\nNone."
    return _titled("Incidents and rollback", lines, int(INCIDENTS_JSON * scale), _more("event"))


def _details(data: dict[str, Any]) -> str:
    shown = [
        f"{key}: {value}"
        for key, value in data.items()
        if isinstance(value, str | int | float) and not isinstance(value, bool) and value != ""
    ]
    if not shown:
        return ""
    return f" ({clip(', '.join(shown), 160, json_limit=400, mrkdwn=True)})"


def _titled(title: str, lines: list[str], json_limit: int, more: Callable[[int], str]) -> str:
    head = f"*{title}*"
    shown = bounded_lines(
        lines, limit=MAX_SECTION_TEXT - len(head) - 1, json_limit=max(json_limit, 200), more=more
    )
    return "\n".join([head, *shown])


def _more(noun: str) -> Callable[[int], str]:
    return lambda n: f"… and {n} more {noun}{'s' if n != 1 else ''} (see the files)"


def _mark(status: ItemStatus) -> str:
    return {ItemStatus.FAILED: "❌", ItemStatus.SKIPPED: "⏭", ItemStatus.RUNNING: "⏳"}.get(
        status, "•"
    )


def _section(text: str) -> JsonBlock:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, MAX_SECTION_TEXT)}}


def _context(text: str) -> JsonBlock:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(text, 3000)}]}
