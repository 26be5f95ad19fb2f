"""The deploy session aggregate: what the checklist, sign-offs and state are right now."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from bot.domain.checklist import Checklist, ChecklistItem, Gate, Section, Severity, walk_item
from bot.domain.emergency import Emergency
from bot.domain.freeze import FreezeOverride
from bot.domain.policy import SessionPolicy, SignOffRule
from bot.domain.promotion import CompletedDeploy, PromotionRule
from bot.domain.step_progress import StepProgress


class SessionState(StrEnum):
    OPEN = "open"  # checklist in progress, collecting sign-offs
    DEPLOYING = "deploying"
    VERIFYING = "verifying"
    MONITORING = "monitoring"
    COMPLETED = "completed"
    ABORTED = "aborted"
    FAILED = "failed"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"
    ROLLBACK_FAILED = "rollback_failed"

    @property
    def label(self) -> str:
        return self.value.replace("_", " ")

    @property
    def is_closed(self) -> bool:
        """Closed sessions free their environment and accept no more changes."""
        return self in CLOSED_STATES


CLOSED_STATES = frozenset({SessionState.COMPLETED, SessionState.ABORTED, SessionState.ROLLED_BACK})


class ItemStatus(StrEnum):
    PENDING = "pending"
    DONE = "done"
    SKIPPED = "skipped"
    RUNNING = "running"
    FAILED = "failed"

    @property
    def is_settled(self) -> bool:
        """Done or deliberately skipped: the item no longer holds its section open."""
        return self in (ItemStatus.DONE, ItemStatus.SKIPPED)


@dataclass(frozen=True)
class ItemProgress:
    status: ItemStatus = ItemStatus.PENDING
    by: str | None = None
    at: datetime | None = None
    reason: str | None = None  # why skipped, or the failing probe's summary
    severity: Severity | None = None
    overrode: str | None = None  # a skipped item's failed critical probe, as it failed


@dataclass(frozen=True)
class Signature:
    by: str
    at: datetime


@dataclass(frozen=True)
class SignOffRecord:
    """A sign-off as given so far: ``by`` and ``at`` are the first signer's (what rows from
    before counts held); ``more`` are the further signers a count of N asks for."""

    key: str
    role: str
    by: str
    at: datetime
    more: tuple[Signature, ...] = ()

    @property
    def signers(self) -> tuple[str, ...]:
        return (self.by, *(s.by for s in self.more))

    @property
    def signatures(self) -> tuple[Signature, ...]:
        return (Signature(self.by, self.at), *self.more)

    def valid(self, rule: SignOffRule, at: datetime | None) -> SignOffRecord | None:
        """The record without signatures ``rule.valid_for`` has run out on at ``at``
        (``None``: none left); unchanged without an expiry or a time."""
        if rule.valid_for is None or at is None:
            return self
        kept = [s for s in self.signatures if s.at + rule.valid_for > at]
        if not kept:
            return None
        return replace(self, by=kept[0].by, at=kept[0].at, more=tuple(kept[1:]))

    @property
    def last_at(self) -> datetime:
        return self.more[-1].at if self.more else self.at

    def with_signer(self, by: str, at: datetime) -> SignOffRecord:
        return replace(self, more=(*self.more, Signature(by, at)))

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "key": self.key,
            "role": self.role,
            "by": self.by,
            "at": self.at.isoformat(),
        }
        if self.more:
            data["more"] = [{"by": s.by, "at": s.at.isoformat()} for s in self.more]
        return data


@dataclass(frozen=True)
class Incident:
    """A critical probe failure and how responders handled it.

    How a rollback went is the session's state (rolling back, rolled back, rollback failed).
    """

    opened_at: datetime
    probe: str
    summary: str
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    resolved_by: str | None = None
    resolved_at: datetime | None = None

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None

    @property
    def is_acknowledged(self) -> bool:
        return self.acknowledged_at is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "opened_at": self.opened_at.isoformat(),
            "probe": self.probe,
            "summary": self.summary,
            "acknowledged_by": self.acknowledged_by,
            "acknowledged_at": _iso(self.acknowledged_at),
            "resolved_by": self.resolved_by,
            "resolved_at": _iso(self.resolved_at),
        }


@dataclass
class DeploySession:
    """One deployment of an environment (and optional service), from open to closed.

    Mutated only by :func:`bot.domain.transitions.apply`, which works on a copy.
    """

    environment: str
    requester: str
    checklist: Checklist
    policy: SessionPolicy
    opened_at: datetime
    service: str = ""
    version: str = ""
    id: int | None = None
    state: SessionState = SessionState.OPEN
    items: dict[str, ItemProgress] = field(default_factory=dict)
    signoffs: dict[str, SignOffRecord] = field(default_factory=dict)
    closed_at: datetime | None = None
    outcome_reason: str | None = None  # why it was aborted, failed or rolled back
    incident: Incident | None = None  # the latest, open or resolved
    freeze_override: FreezeOverride | None = None  # deploying inside a change freeze
    promoted_from: CompletedDeploy | None = None  # the deploy the promotion order asked for
    emergency: Emergency | None = None  # break-glass, and its retrospective
    steps: tuple[StepProgress, ...] = ()  # the deploy steps the bot runs (bot.domain.steps)

    @property
    def open_incident(self) -> Incident | None:
        return self.incident if self.incident is not None and self.incident.is_open else None

    def progress(self, item_id: str) -> ItemProgress:
        return self.items.get(item_id, ItemProgress())

    def find_item(self, item_id: str) -> tuple[Section, ChecklistItem] | None:
        return next(((s, i) for s, i in self.checklist.walk() if i.id == item_id), None)

    def section_counts(self, section: Section) -> tuple[int, int]:
        """(settled, total) items in a section, children included."""
        ids = [each.id for item in section.items for each in walk_item(item)]
        return sum(self.progress(i).status.is_settled for i in ids), len(ids)

    def section_complete(self, section_id: str) -> bool:
        section = self.checklist.section(section_id)
        if section is None:
            return False
        settled, total = self.section_counts(section)
        return settled == total

    def missing_signoffs(
        self, keys: tuple[str, ...] | None = None, *, at: datetime | None = None
    ) -> tuple[SignOffRule, ...]:
        """The sign-offs short of their count (at ``at``, expired signatures left out)."""
        wanted = (
            self.policy.signoffs
            if keys is None
            else [r for r in self.policy.signoffs if r.key in keys]
        )
        return tuple(r for r in wanted if len(self.signers(r.key, at=at)) < r.count)

    def signers(self, key: str, *, at: datetime | None = None) -> tuple[str, ...]:
        """Who has signed ``key`` so far, in order (at ``at``: whose signature still holds)."""
        record = self.signoffs.get(key)
        rule = self.policy.rule(key)
        if record is not None and rule is not None:
            record = record.valid(rule, at)
        return record.signers if record else ()

    def lapsed(self, key: str, *, at: datetime | None) -> tuple[Signature, ...]:
        """The signatures of ``key`` that its ``valid_for`` has run out on by ``at``."""
        record, rule = self.signoffs.get(key), self.policy.rule(key)
        if record is None or rule is None or rule.valid_for is None or at is None:
            return ()
        valid_for = rule.valid_for
        return tuple(s for s in record.signatures if s.at + valid_for <= at)

    def gate_missing(self, gate: Gate, *, at: datetime | None = None) -> list[str]:
        """What keeps a gate closed, in words; empty when it is open. With ``at``,
        signatures whose ``valid_for`` has run out by then do not count."""
        missing = []
        for section_id in gate.after:
            if not self.section_complete(section_id):
                section = self.checklist.section(section_id)
                title = section.title if section else section_id
                missing.append(f"section *{title}* is not finished")
        for rule in self.missing_signoffs(gate.signoffs, at=at):
            have = len(self.signers(rule.key, at=at))
            of = f" ({have} of {rule.count})" if rule.count > 1 else ""
            lapsed = self.lapsed(rule.key, at=at)
            if lapsed:
                who = ", ".join(f"<@{s.by}> at {s.at:%H:%M} UTC" for s in lapsed)
                of += f" (lapsed: {who}; a sign-off holds {_hours(rule.valid_for)}: sign again)"
            missing.append(f"sign-off from *{rule.role}*{of}")
        return missing

    def failing_items(self) -> list[tuple[ChecklistItem, ItemProgress]]:
        return [
            (item, self.items[item.id])
            for _, item in self.checklist.walk()
            if item.id in self.items and self.items[item.id].status is ItemStatus.FAILED
        ]

    def overridden_items(self) -> list[tuple[ChecklistItem, ItemProgress]]:
        """Items whose failed critical probe an operator skipped, with a reason."""
        return [
            (item, self.items[item.id])
            for _, item in self.checklist.walk()
            if item.id in self.items and self.items[item.id].overrode is not None
        ]

    @property
    def totals(self) -> tuple[int, int]:
        counts = [self.section_counts(s) for s in self.checklist.sections]
        return sum(c[0] for c in counts), sum(c[1] for c in counts)

    @property
    def title(self) -> str:
        parts = [self.environment, self.service, self.version]
        return " ".join(p for p in parts if p)

    # Serialisation for storage: plain JSON types only.

    def state_to_json(self) -> dict[str, Any]:
        return {
            "items": {k: _progress_json(v) for k, v in self.items.items()},
            "signoffs": {k: v.to_json() for k, v in self.signoffs.items()},
            "outcome_reason": self.outcome_reason,
            "incident": self.incident.to_json() if self.incident else None,
            "freeze_override": self.freeze_override.to_json() if self.freeze_override else None,
            "promoted_from": self.promoted_from.to_json() if self.promoted_from else None,
            "emergency": self.emergency.to_json() if self.emergency else None,
            "steps": [step.to_json() for step in self.steps],
        }

    def policy_to_json(self) -> dict[str, Any]:
        p = self.policy
        return {
            "signoffs": [
                {**asdict(r), "valid_for": r.valid_for.total_seconds() if r.valid_for else None}
                for r in p.signoffs
            ],
            "operators": list(p.operators),
            "oncall": list(p.oncall),
            "separation_of_duties": p.separation_of_duties,
            "freeze_override": list(p.freeze_override),
            "promotion": p.promotion.to_json() if p.promotion else None,
            "deploy_gate": p.deploy_gate.model_dump(mode="json"),
            "complete_gate": p.complete_gate.model_dump(mode="json"),
        }


def policy_from_json(data: dict[str, Any]) -> SessionPolicy:
    """The policy :meth:`DeploySession.policy_to_json` wrote; missing keys take defaults."""
    return SessionPolicy(
        signoffs=tuple(
            SignOffRule(
                key=r["key"],
                role=r["role"],
                by=tuple(r["by"]),
                count=r.get("count", 1),
                valid_for=timedelta(seconds=r["valid_for"]) if r.get("valid_for") else None,
            )
            for r in data.get("signoffs", ())
        ),
        operators=tuple(data.get("operators", ())),
        oncall=tuple(data.get("oncall", ())),
        separation_of_duties=data.get("separation_of_duties", True),
        freeze_override=tuple(data.get("freeze_override", ())),
        promotion=PromotionRule.from_json(data.get("promotion")),
        deploy_gate=Gate.model_validate(data.get("deploy_gate", {})),
        complete_gate=Gate.model_validate(data.get("complete_gate", {})),
    )


def change_control_from_json(progress: dict[str, Any]) -> dict[str, Any]:
    """The change-control fields ``state_to_json()`` wrote, as keyword arguments of
    :class:`DeploySession` (rows from before they existed have none)."""
    return {
        "freeze_override": FreezeOverride.from_json(progress.get("freeze_override")),
        "promoted_from": CompletedDeploy.from_json(progress.get("promoted_from")),
        "emergency": Emergency.from_json(progress.get("emergency")),
    }


def incident_from_json(data: dict[str, Any] | None) -> Incident | None:
    """The incident ``state_to_json()["incident"]`` holds; ``None`` (or rows written before
    incidents were kept) means none."""
    if not data:
        return None
    return Incident(
        opened_at=datetime.fromisoformat(data["opened_at"]),
        probe=data["probe"],
        summary=data["summary"],
        acknowledged_by=data.get("acknowledged_by"),
        acknowledged_at=_from_iso(data.get("acknowledged_at")),
        resolved_by=data.get("resolved_by"),
        resolved_at=_from_iso(data.get("resolved_at")),
    )


def progress_from_json(data: dict[str, Any]) -> dict[str, ItemProgress]:
    return {
        k: ItemProgress(
            status=ItemStatus(v["status"]),
            by=v["by"],
            at=datetime.fromisoformat(v["at"]) if v["at"] else None,
            reason=v["reason"],
            severity=Severity(v["severity"]) if v["severity"] else None,
            overrode=v.get("overrode"),
        )
        for k, v in data.items()
    }


def signoffs_from_json(data: dict[str, Any]) -> dict[str, SignOffRecord]:
    """Sign-offs as :meth:`DeploySession.state_to_json` wrote them; rows from before counts
    have no ``more``."""
    return {
        k: SignOffRecord(
            v["key"],
            v["role"],
            v["by"],
            datetime.fromisoformat(v["at"]),
            tuple(Signature(m["by"], datetime.fromisoformat(m["at"])) for m in v.get("more", ())),
        )
        for k, v in data.items()
    }


def _progress_json(p: ItemProgress) -> dict[str, Any]:
    return {
        "status": p.status.value,
        "by": p.by,
        "at": p.at.isoformat() if p.at else None,
        "reason": p.reason,
        "severity": p.severity.value if p.severity else None,
        "overrode": p.overrode,
    }


def _hours(span: timedelta | None) -> str:
    minutes = int(span.total_seconds() // 60) if span else 0
    return f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}m"


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


def _from_iso(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None
