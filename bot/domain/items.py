"""What commands do to checklist items: ticks, skips and probe results.

The state machine (:mod:`bot.domain.transitions`) has already checked that the session's
state allows the command and that the actor may send it; these handlers check what the
tables cannot (which item, its section's gate, reasons) and change the session's copy.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.domain import commands as c
from bot.domain.checklist import ChecklistItem, Severity
from bot.domain.errors import DomainError, GateClosed
from bot.domain.events import Event
from bot.domain.policy import SYSTEM, Action, Actor, authorize
from bot.domain.policy import Party as P
from bot.domain.session import DeploySession, Incident, ItemProgress, ItemStatus, SessionState

# Before the deploy a failure blocks gates but is no alert.
BEFORE_DEPLOY = (SessionState.OPEN,)


def tick(s: DeploySession, cmd: c.TickItem, actor: Actor, at: datetime) -> list[Event]:
    open_item(s, cmd.item_id)
    progress = s.progress(cmd.item_id)
    if progress.status is ItemStatus.DONE:
        return []  # a double click or a retried request: nothing new happened
    if progress.status is ItemStatus.SKIPPED:
        raise DomainError(_skipped_message(cmd.item_id, progress, "tick"))
    if _failed_critical(progress) and actor != SYSTEM:
        # A tick would hide a failing check from the completion gate without a word.
        raise DomainError(
            f"Item {cmd.item_id} failed its probe ({progress.reason}): it is ticked when "
            "the probe passes again. To go on without it, an operator skips it with a reason."
        )
    s.items[cmd.item_id] = ItemProgress(ItemStatus.DONE, actor.user_id, at)
    return [Event("item_ticked", actor.user_id, at, {"item": cmd.item_id})]


def untick(s: DeploySession, cmd: c.UntickItem, actor: Actor, at: datetime) -> list[Event]:
    open_item(s, cmd.item_id)
    progress = s.progress(cmd.item_id)
    if progress.status is ItemStatus.PENDING:
        return []
    if progress.status is ItemStatus.SKIPPED:
        raise DomainError(_skipped_message(cmd.item_id, progress, "untick"))
    s.items[cmd.item_id] = ItemProgress(ItemStatus.PENDING, actor.user_id, at)
    return [Event("item_unticked", actor.user_id, at, {"item": cmd.item_id})]


def skip(s: DeploySession, cmd: c.SkipItem, actor: Actor, at: datetime) -> list[Event]:
    open_item(s, cmd.item_id)
    reason = cmd.reason.strip()
    if not reason:
        raise DomainError("Say why you skip this item: a reason is required.")
    progress = s.progress(cmd.item_id)
    data = {"item": cmd.item_id, "reason": reason}
    overrode = None
    if _failed_critical(progress):
        # Overriding a failed critical check is the operators' call, audited and kept on
        # the summary as such.
        authorize(
            Action.SKIP, actor, s.policy.parties(s.requester), allowed=(P.OPERATORS, P.SYSTEM)
        )
        overrode = data["overrode"] = progress.reason or "the probe failed"
    s.items[cmd.item_id] = ItemProgress(
        ItemStatus.SKIPPED, actor.user_id, at, reason, progress.severity, overrode
    )
    return [Event("item_skipped", actor.user_id, at, data)]


def unskip(s: DeploySession, cmd: c.UnskipItem, actor: Actor, at: datetime) -> list[Event]:
    open_item(s, cmd.item_id)
    progress = s.progress(cmd.item_id)
    if progress.status is not ItemStatus.SKIPPED:
        raise DomainError(f"Item {cmd.item_id} is not skipped: there is nothing to unskip.")
    reason = cmd.reason.strip()
    if not reason:
        raise DomainError("Say why you unskip this item: a reason is required.")
    if progress.overrode is not None:
        # The skip overrode a failed check: taking it back puts the failure back in sight.
        s.items[cmd.item_id] = ItemProgress(
            ItemStatus.FAILED, actor.user_id, at, progress.overrode, progress.severity
        )
    else:
        s.items[cmd.item_id] = ItemProgress(ItemStatus.PENDING, actor.user_id, at)
    data = {"item": cmd.item_id, "reason": reason, "was": progress.reason or ""}
    return [Event("item_unskipped", actor.user_id, at, data)]


def _skipped_message(item_id: str, progress: ItemProgress, verb: str) -> str:
    why = f": {progress.reason}" if progress.reason else ""
    return (
        f"Item {item_id} is skipped (by <@{progress.by}>{why}), so it can't be {verb}ed. "
        f"To work on it again, unskip it first: *Skip an item…* in its section, then pick it "
        "under *Skipped: unskip*."
    )


def _failed_critical(progress: ItemProgress) -> bool:
    return progress.status is ItemStatus.FAILED and progress.severity is Severity.CRITICAL


def request_probes(
    s: DeploySession, cmd: c.RequestProbes, actor: Actor, at: datetime
) -> list[Event]:
    return [Event("probes_requested", actor.user_id, at, {"why": cmd.why})]


def start_probe(s: DeploySession, cmd: c.StartProbe, actor: Actor, at: datetime) -> list[Event]:
    _item(s, cmd.item_id)
    if s.progress(cmd.item_id).status is not ItemStatus.SKIPPED:  # a skip stands until a pass
        s.items[cmd.item_id] = ItemProgress(ItemStatus.RUNNING, actor.user_id, at)
    return [Event("probe_started", actor.user_id, at, {"item": cmd.item_id})]


def interrupt_probe(
    s: DeploySession, cmd: c.InterruptProbe, actor: Actor, at: datetime
) -> list[Event]:
    _item(s, cmd.item_id)
    if s.progress(cmd.item_id).status is not ItemStatus.RUNNING:
        return []
    s.items[cmd.item_id] = ItemProgress(ItemStatus.PENDING, actor.user_id, at, cmd.reason)
    return [
        Event("probe_interrupted", actor.user_id, at, {"item": cmd.item_id, "reason": cmd.reason})
    ]


def probe_result(
    s: DeploySession, cmd: c.RecordProbeResult, actor: Actor, at: datetime
) -> list[Event]:
    item = _item(s, cmd.item_id)
    status = ItemStatus.DONE if cmd.ok else ItemStatus.FAILED
    severity: Severity | None = None if cmd.ok else cmd.severity
    # People skipped the item (or overrode its failure): a failure no longer holds it.
    skipped = s.progress(cmd.item_id).status is ItemStatus.SKIPPED and not cmd.ok
    if not skipped:
        s.items[cmd.item_id] = ItemProgress(status, actor.user_id, at, cmd.summary, severity)
    kind = "probe_passed" if cmd.ok else "probe_failed"
    data: dict[str, Any] = {"item": cmd.item_id, "summary": cmd.summary}
    if severity:
        data["severity"] = severity.value
        # Only a critical failure of what was deployed is an alert: before the deploy a
        # failure blocks the gates, and a probe that cannot run is a configuration problem.
        data["alert"] = (
            severity is Severity.CRITICAL
            and cmd.runnable
            and not skipped
            and s.state not in BEFORE_DEPLOY
        )
        if not cmd.runnable:
            data["runnable"] = False
    events = [Event(kind, actor.user_id, at, data)]
    if data.get("alert") and s.open_incident is None:
        # One incident at a time: later failures belong to the one already open.
        probe = item.probe or item.id
        s.incident = Incident(opened_at=at, probe=probe, summary=cmd.summary)
        opened = {"probe": probe, "summary": cmd.summary}
        events.append(Event("incident_opened", actor.user_id, at, opened))
    return events


def _item(s: DeploySession, item_id: str) -> ChecklistItem:
    found = s.find_item(item_id)
    if found is None:
        raise DomainError(f"This checklist has no item {item_id}.")
    return found[1]


def open_item(s: DeploySession, item_id: str) -> None:
    """The item exists and its section's gate is open."""
    found = s.find_item(item_id)
    if found is None:
        raise DomainError(f"This checklist has no item {item_id}.")
    section, _ = found
    if section.gate is not None:
        missing = s.gate_missing(section.gate)
        if missing:
            raise GateClosed(
                f"*{section.title}* is still closed. Waiting for: " + "; ".join(missing) + "."
            )
