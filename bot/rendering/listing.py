"""The ``/deploy list`` and ``/deploy help`` replies."""

from __future__ import annotations

from datetime import datetime

from bot.domain.inputs import LIMITS
from bot.domain.summary import SessionPage
from bot.rendering.checklist import mention
from bot.rendering.limits import JsonBlock, clip, escape, fits
from bot.rendering.session import (
    context_block,
    header_block,
    progress_bar,
    section_block,
    state_label,
)
from bot.rendering.times import ago

LIST_PAGE_SIZE = 20  # sessions per `/deploy list` page: within one message

USAGE = (
    ("start <env> [service] [version]", "open a deploy session and post its checklist"),
    ("start <env> … --override <reason>", "open one during a change freeze (freeze_override)"),
    ("status [id]", "the session's state, progress, sign-offs and failing probes"),
    ("list [page]", f"the open deploy sessions, {LIST_PAGE_SIZE} a page"),
    ("probe [id]", "run the session's probes now"),
    ("abort [id] [reason]", "abort a session (the reason goes in the audit log)"),
    ("report [id]", "post the deployment report"),
    ("lock <env> [reason]", "hold an environment: no deploy can start there"),
    ("unlock <env>", "free a held environment"),
    ("freezes [env]", "the change freezes in force and the next three"),
    ("override [id] <reason>", "deploy an open session during a change freeze"),
    ("start <env> … --emergency <reason>", "break glass: skip the freeze and what is configured"),
    ("version [id] <version>", "deploy another version: its sign-offs are withdrawn"),
    ("retrospective [id] [note]", "sign the retrospective an emergency deploy owes"),
    ("start <env> … --queue", "queue for a busy environment: a DM when it is your turn"),
    ("queue [env]", "who is queued for which environment"),
    ("queue leave <env>", "leave the queue for an environment"),
    ("help", "this help"),
)


def list_blocks(page: SessionPage, *, now: datetime) -> list[JsonBlock]:
    """The ``/deploy list`` reply: one line per open session on this page, and how to see
    the next page ("No open deploys." if there are none).

    Titles are cut shorter until the page fits one message.
    """
    if page.total == 0:
        return [section_block("No open deploys.")]
    if not page.summaries:
        return [
            section_block(
                f"There is no page {page.number}: the {page.total} open deploys fill "
                f"{_pages(page.pages)}. Try `/deploy list {page.pages}`."
            )
        ]
    blocks: list[JsonBlock] = []
    for title_chars in (100, 40, 10):
        blocks = _list_page(page, now, title_chars)
        if fits(blocks):
            break
    return blocks


def _list_page(page: SessionPage, now: datetime, title_chars: int) -> list[JsonBlock]:
    heading = f"Open deploys ({page.total})"
    if page.pages > 1:
        heading += f" · page {page.number} of {page.pages}"
    blocks = [header_block(heading)]
    for summary in page.summaries:
        title = clip(summary.title, title_chars, json_limit=3 * title_chars, mrkdwn=True)
        line = (
            f"*#{summary.id}* {title}"
            f" · {state_label(summary.state)} · {progress_bar(summary.settled, summary.total)}"
            f" · requested by {mention(clip(summary.requester, 40))}"
            f" · opened {ago(summary.opened_at, now)}"
        )
        if summary.failing:
            line += f" · ❌ {summary.failing} failing"
        if summary.missing_signoffs:
            line += f" · ⏳ {_count(summary.missing_signoffs, 'sign-off')} missing"
        blocks.append(section_block(line))
    hint = "`/deploy status <id>` shows one."
    if page.has_next:
        hint = f"`/deploy list {page.number + 1}` for more · " + hint
    blocks.append(context_block(hint))
    return blocks


def _pages(pages: int) -> str:
    return "1 page" if pages == 1 else f"pages 1 to {pages}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"


def help_blocks() -> list[JsonBlock]:
    """The ``/deploy help`` reply: usage of every subcommand."""
    lines = [f"`/deploy {escape(usage)}` {what}" for usage, what in USAGE]
    return [
        header_block("/deploy: run deployments from Slack"),
        section_block("\n".join(lines)),
        context_block(
            "Without an id, `status`, `probe`, `abort` and `report` act on the open deploy you "
            "started. Tick items, skip them and sign off with the buttons in the deploy's thread. "
            + LIMITS
        ),
    ]
