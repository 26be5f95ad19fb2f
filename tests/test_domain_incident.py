"""The incident a session keeps: opened by a critical probe failure, acknowledged, resolved."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.domain import SYSTEM, DeploySession, Incident, SessionState, apply
from bot.domain import commands as c
from bot.domain.checklist import Severity
from bot.domain.errors import PermissionDenied
from bot.domain.session import incident_from_json
from tests.test_domain import NOW, ONCALL, QA, REQUESTER, make_session

S = SessionState
LATER = NOW + timedelta(minutes=3)


def failed(item: str = "1.1", summary: str = "HTTP 503", **kw: Severity) -> c.RecordProbeResult:
    return c.RecordProbeResult(item, ok=False, summary=summary, **kw)


def with_incident(state: SessionState = S.FAILED) -> DeploySession:
    session = apply(make_session(S.DEPLOYING), failed(), SYSTEM, NOW).session
    session.state = state
    return session


def test_a_critical_failure_opens_an_incident() -> None:
    out = apply(make_session(S.DEPLOYING), failed(), SYSTEM, NOW)
    assert out.session.incident == Incident(opened_at=NOW, probe="backups", summary="HTTP 503")
    assert [(e.kind, e.data) for e in out.events] == [
        (
            "probe_failed",
            {"item": "1.1", "summary": "HTTP 503", "severity": "critical", "alert": True},
        ),
        ("incident_opened", {"probe": "backups", "summary": "HTTP 503"}),
    ]


def test_an_item_without_a_probe_names_the_incident_by_its_id() -> None:
    out = apply(make_session(S.VERIFYING), failed("1.2", "replica lag"), SYSTEM, NOW)
    assert out.session.incident is not None
    assert (out.session.incident.probe, out.events[-1].data["probe"]) == ("1.2", "1.2")


def test_warnings_and_passes_open_no_incident() -> None:
    warned = apply(make_session(), failed(severity=Severity.WARNING), SYSTEM, NOW)
    passed = apply(make_session(), c.RecordProbeResult("1.1", True, "HTTP 200"), SYSTEM, NOW)
    for out in (warned, passed):
        assert out.session.incident is None
        assert "incident_opened" not in [e.kind for e in out.events]


def test_before_the_deploy_a_critical_failure_is_no_alert() -> None:
    out = apply(make_session(S.OPEN), failed(), SYSTEM, NOW)
    assert out.session.incident is None
    assert [(e.kind, e.data["alert"]) for e in out.events] == [("probe_failed", False)]
    # The item is failed all the same: it holds its section's gate shut.
    assert out.session.progress("1.1").status.value == "failed"


@pytest.mark.parametrize("state", [S.DEPLOYING, S.VERIFYING, S.MONITORING])
def test_a_probe_that_cannot_run_is_a_configuration_problem_not_an_alert(
    state: SessionState,
) -> None:
    cannot = c.RecordProbeResult("1.1", False, "not runnable: no AWS credentials", runnable=False)
    out = apply(make_session(state), cannot, SYSTEM, NOW)
    assert out.session.incident is None
    assert [(e.kind, e.data["alert"], e.data["runnable"]) for e in out.events] == [
        ("probe_failed", False, False)
    ]
    assert apply(make_session(state), failed(), SYSTEM, NOW).session.incident is not None


def test_a_skipped_item_stays_skipped_when_its_probe_fails_and_ticks_when_it_passes() -> None:
    s = apply(make_session(S.VERIFYING), c.SkipItem("1.1", "not this time"), REQUESTER, NOW)
    started = apply(s.session, c.StartProbe("1.1"), SYSTEM, NOW).session
    assert started.progress("1.1").status.value == "skipped"
    out = apply(started, failed(), SYSTEM, NOW)
    assert out.session.progress("1.1").status.value == "skipped"
    assert out.session.incident is None
    assert [(e.kind, e.data["alert"]) for e in out.events] == [("probe_failed", False)]
    passed = apply(out.session, c.RecordProbeResult("1.1", True, "HTTP 200"), SYSTEM, NOW)
    assert passed.session.progress("1.1").status.value == "done"


def test_later_failures_belong_to_the_open_incident() -> None:
    session = with_incident(S.DEPLOYING)
    out = apply(session, failed("1.2", "replica lag"), SYSTEM, LATER)
    assert out.session.incident == session.incident
    assert [e.kind for e in out.events] == ["probe_failed"]


def test_a_failure_after_resolving_opens_a_new_incident() -> None:
    resolved = apply(with_incident(), c.Resolve("flaky"), ONCALL, LATER).session
    out = apply(resolved, failed(summary="HTTP 500"), SYSTEM, LATER + timedelta(minutes=1))
    assert out.session.incident == Incident(
        opened_at=LATER + timedelta(minutes=1), probe="backups", summary="HTTP 500"
    )
    assert out.events[-1].kind == "incident_opened"


def test_acknowledge_records_who_and_when_once() -> None:
    out = apply(with_incident(), c.Acknowledge(), ONCALL, LATER)
    assert out.session.incident is not None
    assert (out.session.incident.acknowledged_by, out.session.incident.acknowledged_at) == (
        ONCALL.user_id,
        LATER,
    )
    assert [e.kind for e in out.events] == ["incident_acknowledged"]
    # A double click, or a second responder: nothing changes, nothing is recorded.
    again = apply(out.session, c.Acknowledge(), QA, LATER + timedelta(minutes=1))
    assert again.events == ()
    assert again.session.incident == out.session.incident


def test_acknowledge_without_an_incident_is_still_recorded() -> None:
    """A session can fail without a probe (a deploy step, say): on-call still acknowledges."""
    out = apply(make_session(S.FAILED), c.Acknowledge(), ONCALL, NOW)
    assert out.session.incident is None
    assert [e.kind for e in out.events] == ["incident_acknowledged"]


def test_resolve_records_who_and_when_and_verifies_again() -> None:
    acked = apply(with_incident(), c.Acknowledge(), ONCALL, NOW).session
    out = apply(acked, c.Resolve("flaky probe"), QA, LATER)
    incident = out.session.incident
    assert incident is not None and not incident.is_open
    assert (incident.resolved_by, incident.resolved_at) == (QA.user_id, LATER)
    assert incident.acknowledged_by == ONCALL.user_id
    assert out.session.state is S.VERIFYING
    assert out.session.open_incident is None


def test_a_failed_rollback_can_be_resolved() -> None:
    out = apply(with_incident(S.ROLLBACK_FAILED), c.Resolve("fixed by hand"), ONCALL, LATER)
    assert out.session.state is S.VERIFYING
    assert out.session.incident is not None and out.session.incident.resolved_by == "U0ONCALL"


def test_only_responders_acknowledge_and_resolve() -> None:
    for command in (c.Acknowledge(), c.Resolve("x")):
        with pytest.raises(PermissionDenied, match="only members of `oncall`, `approvers`"):
            apply(with_incident(), command, REQUESTER, LATER)


def test_incident_round_trips_through_json() -> None:
    session = apply(with_incident(), c.Acknowledge(), ONCALL, LATER).session
    session = apply(session, c.Resolve("ok"), QA, LATER + timedelta(minutes=5)).session
    data = session.state_to_json()
    assert incident_from_json(data["incident"]) == session.incident
    assert make_session().state_to_json()["incident"] is None
    # Rows written before sessions kept incidents have no key at all.
    assert incident_from_json(None) is None
    assert incident_from_json({}) is None
