"""What failed, as the summary shows it: grouped, counted, and bounded.

When many probes fail alike (the same missing credentials on every AWS check), the reason is
shown once with the items it hit, and only the first few distinct failures are listed, so
the summary stays within one screen however much fails.
"""

from __future__ import annotations

from bot.domain import DeploySession
from bot.domain.checklist import ChecklistItem
from bot.rendering.checklist import mention
from bot.rendering.limits import MAX_SECTION_TEXT, bounded_lines, clip, escape
from bot.rendering.mrkdwn import clip_mrkdwn

MAX_FAILURE_GROUPS = 5  # distinct failures listed; the rest are counted
MAX_IDS_SHOWN = 4  # item ids listed per failure


def failing_text(session: DeploySession, json_limit: int) -> str:
    """Failing items, one line per distinct failure: when many probes fail alike (the same
    missing credentials), the reason shows once with the items it hit."""
    failing = session.failing_items()
    groups: dict[tuple[str, str], list[ChecklistItem]] = {}
    for item, progress in failing:
        severity = f" ({progress.severity.value})" if progress.severity else ""
        groups.setdefault((progress.reason or "no detail", severity), []).append(item)
    lines = []
    for (reason, severity), items in list(groups.items())[:MAX_FAILURE_GROUPS]:
        summary = clip(reason, 150, json_limit=400, mrkdwn=True)
        if len(items) == 1:
            text = clip_mrkdwn(items[0].text, 80, json_limit=250)
            lines.append(f"❌ *{escape(items[0].id)}* {text}: {summary}{severity}")
        else:
            lines.append(f"❌ {summary}{severity}: {len(items)} items, {_item_ids(items)}")
    listed = list(groups.values())

    def more(n: int) -> str:
        left = listed[len(lines) - n :]  # the n lines cut for room, and the groups not listed
        return (
            f"… and {_count(len(left), 'other failure')} on {_count(sum(map(len, left)), 'item')}"
        )

    shown = bounded_lines(lines, limit=MAX_SECTION_TEXT - 60, json_limit=json_limit, more=more)
    if len(listed) > len(lines) and len(shown) == len(lines):
        shown.append(more(0))
    return "\n".join([f"*Failing* ({len(failing)})", *shown])


def _item_ids(items: list[ChecklistItem], shown: int = MAX_IDS_SHOWN) -> str:
    """``*1.2*, *1.4*, *2.1* and 3 more``."""
    ids = ", ".join(f"*{clip(i.id, 40, mrkdwn=True)}*" for i in items[:shown])
    return ids + (f" and {len(items) - shown} more" if len(items) > shown else "")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"


def overridden_text(session: DeploySession, json_limit: int) -> str:
    """Failed critical checks an operator chose to go on without: kept in sight."""
    lines = []
    for item, progress in session.overridden_items():
        text = clip_mrkdwn(item.text, 80, json_limit=250)
        failure = clip(progress.overrode or "", 120, json_limit=300, mrkdwn=True)
        reason = clip(progress.reason or "", 150, json_limit=400, mrkdwn=True)
        lines.append(
            f"⚠️ *{escape(item.id)}* {text}: failed ({failure}), skipped by "
            f"{mention(progress.by or '')}: {reason}"
        )
    shown = bounded_lines(
        lines,
        limit=MAX_SECTION_TEXT - 60,
        json_limit=json_limit,
        more=lambda n: f"… and {n} more",
    )
    return "\n".join([f"*Failed checks overridden* ({len(lines)})", *shown])


def completion_missing(session: DeploySession) -> list[str]:
    """What completing the deploy still waits for: its gate, and the failed items (counted,
    a few named), unescaped."""
    missing = session.gate_missing(session.policy.complete_gate)
    failed = [item for item, _ in session.failing_items()]
    ids = [f"*{item.id}*" for item in failed[:MAX_IDS_SHOWN]]  # escaped by the caller
    more = f" and {len(failed) - len(ids)} more" if len(failed) > len(ids) else ""
    if len(failed) == 1:
        missing.append(f"failed item {ids[0]}")
    elif failed:
        missing.append(f"{len(failed)} failed items ({', '.join(ids)}{more})")
    return missing
