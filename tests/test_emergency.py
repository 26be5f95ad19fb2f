"""Break-glass in the domain: opening (freeze x override x emergency x role), starting the
deployment (freeze x override x emergency), what an emergency skips (only what it names),
and the retrospective it owes."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from bot.domain import Actor, DeploySession, SessionState, apply
from bot.domain import commands as c
from bot.domain.checklist import Gate
from bot.domain.emergency import Admission, Emergency, EmergencyPolicy, admit
from bot.domain.errors import DomainError, GateClosed, PermissionDenied
from bot.domain.freeze import FreezeOverride, FreezeWindow
from bot.domain.policy import Parties, SignOffRule
from bot.domain.promotion import PromotionRule
from bot.domain.session import change_control_from_json
from tests.test_domain import CAPTAIN, NOW, OPERATOR, QA, QA2, REQUESTER, make_session

WINDOW = FreezeWindow(NOW - timedelta(hours=1), NOW + timedelta(hours=65), "Weekend")
COMMANDER = Actor("U0COMMANDER", frozenset({"commanders", "deployers"}))
LEAD = Actor("U0LEAD", frozenset({"leads"}))
RETRO = SignOffRule("retrospective", "Retrospective", ("leads",))
BREAK_GLASS = EmergencyPolicy(
    roles=("commanders",),
    retrospective=RETRO,
    skip_signoffs=("qa-lead",),
    skip_promotion=True,
)
PARTIES = Parties(requester="U0X", freeze_overriders=("captains",), environment="prod")
POLICY = make_session().policy

# (freeze in force, --override, --emergency, break-glass configured, actor) -> outcome:
# "plain", "override", "emergency", or the error raised.
OPEN_CASES: list[tuple[str, Any, Any, Any, Any, Actor, Any]] = []
for frozen in (None, WINDOW):
    for override in (None, "hotfix"):
        for emergency in (None, "site down", " "):
            for configured in (None, BREAK_GLASS):
                for actor in (REQUESTER, CAPTAIN, COMMANDER):
                    if emergency is not None and override is not None:
                        expected: Any = DomainError  # one or the other, never both
                    elif emergency is not None:
                        if configured is None:
                            expected = DomainError
                        elif actor is not COMMANDER:
                            expected = PermissionDenied
                        elif not emergency.strip():
                            expected = DomainError
                        else:
                            expected = "emergency"
                    elif frozen is None:
                        expected = "plain"
                    elif override is None:
                        expected = DomainError
                    elif actor is not CAPTAIN:
                        expected = PermissionDenied
                    else:
                        expected = "override"
                    name = (
                        f"{'frozen' if frozen else 'open'}-override:{override}-"
                        f"emergency:{emergency!r}-{'glass' if configured else 'none'}-"
                        f"{actor.user_id}"
                    )
                    OPEN_CASES.append(
                        (name, frozen, override, emergency, configured, actor, expected)
                    )


@pytest.mark.parametrize(
    ("frozen", "override", "emergency", "configured", "actor", "expected"),
    [case[1:] for case in OPEN_CASES],
    ids=[case[0] for case in OPEN_CASES],
)
def test_opening_freeze_override_emergency(
    frozen: FreezeWindow | None,
    override: str | None,
    emergency: str | None,
    configured: EmergencyPolicy | None,
    actor: Actor,
    expected: Any,
) -> None:
    def run() -> Admission:
        return admit(
            window=frozen,
            override_reason=override,
            emergency_reason=emergency,
            emergency=configured,
            policy=POLICY,
            actor=actor,
            parties=PARTIES,
            at=NOW,
        )

    if isinstance(expected, type):
        with pytest.raises(expected) as refused:
            run()
        assert "`" in str(refused.value) or "ask" in str(refused.value).lower()
        return
    done = run()
    if expected == "plain":
        assert done == Admission()
    elif expected == "override":
        assert done == Admission(override=FreezeOverride(WINDOW, "U0CAPTAIN", NOW, "hotfix"))
    else:
        assert done.override is None and done.emergency is not None
        assert (done.emergency.by, done.emergency.reason) == ("U0COMMANDER", "site down")
        assert done.emergency.skipped[0] == "sign-off QA Lead"
        assert any(s.startswith("change freeze: Weekend") for s in done.emergency.skipped) == (
            frozen is not None
        )
        assert done.emergency.outstanding


def test_a_freeze_refusal_names_break_glass_when_configured() -> None:
    with pytest.raises(DomainError) as refused:
        admit(
            window=WINDOW,
            override_reason=None,
            emergency_reason=None,
            emergency=BREAK_GLASS,
            policy=POLICY,
            actor=REQUESTER,
            parties=PARTIES,
            at=NOW,
        )
    said = str(refused.value)
    assert "Members of `captains` may override" in said
    assert "members of `commanders` may break glass: `/deploy start prod --emergency" in said


def emergency_session(**policy: Any) -> DeploySession:
    s = make_session(**policy)
    s = replace(s, policy=BREAK_GLASS.relax(s.policy))
    emergency = Emergency(
        "U0COMMANDER", NOW, "site down", RETRO, BREAK_GLASS.skipped(s.policy, WINDOW)
    )
    return replace(s, requester="U0COMMANDER", emergency=emergency)


# Starting the deployment: (freeze in force, overridden before, emergency) -> starts?
START_CASES = [
    (frozen, overridden, emergency)
    for frozen in (False, True)
    for overridden in (False, True)
    for emergency in (False, True)
]


@pytest.mark.parametrize(("frozen", "overridden", "emergency"), START_CASES)
def test_starting_freeze_override_emergency(
    frozen: bool, overridden: bool, emergency: bool
) -> None:
    s = emergency_session() if emergency else make_session()
    # Sign what the gate asks: devops-lead in an emergency (qa-lead is skipped), else qa-lead.
    key = "devops-lead" if emergency else "qa-lead"
    s = apply(s, c.SignOff(key), QA, NOW).session
    if emergency:
        s = replace(s, policy=replace(s.policy, deploy_gate=Gate(signoffs=("devops-lead",))))
    if overridden:
        s = apply(s, c.OverrideFreeze("hotfix", frozen=WINDOW), CAPTAIN, NOW).session
    command = c.StartDeployment(frozen=WINDOW if frozen else None)
    if frozen and not overridden and not emergency:
        with pytest.raises(DomainError, match="change freeze"):
            apply(s, command, OPERATOR, NOW)
    else:
        assert apply(s, command, OPERATOR, NOW).session.state is SessionState.DEPLOYING


def test_an_emergency_skips_only_the_sign_offs_it_names() -> None:
    s = emergency_session(deploy_gate=Gate(signoffs=("qa-lead", "devops-lead")))
    assert [r.key for r in s.policy.signoffs] == ["devops-lead"]
    assert s.policy.deploy_gate.signoffs == ("devops-lead",)
    with pytest.raises(GateClosed, match=r"sign-off from \*DevOps Lead\*"):
        apply(s, c.StartDeployment(frozen=WINDOW), OPERATOR, NOW)
    s = apply(s, c.SignOff("devops-lead"), QA2, NOW).session
    started = apply(s, c.StartDeployment(frozen=WINDOW), OPERATOR, NOW)
    assert started.session.state is SessionState.DEPLOYING


def test_sections_named_are_skipped_and_others_kept() -> None:
    glass = replace(BREAK_GLASS, skip_sections=("pre-deployment",), skip_signoffs=())
    policy = make_session(deploy_gate=Gate(after=("pre-deployment", "post-deployment"))).policy
    relaxed = glass.relax(policy)
    assert relaxed.deploy_gate.after == ("post-deployment",)
    assert relaxed.signoffs == policy.signoffs
    assert glass.skipped(policy, None) == ("section pre-deployment",)
    promoted = replace(policy, promotion=PromotionRule("staging", timedelta(days=7)))
    assert glass.skipped(promoted, None)[-1] == "promotion from staging"


def test_the_retrospective_is_owed_and_signed_once_by_its_role() -> None:
    s = emergency_session()
    with pytest.raises(PermissionDenied, match="only members of `leads`"):
        apply(s, c.SignRetrospective("went fine"), OPERATOR, NOW)
    closed = replace(s, state=SessionState.COMPLETED)
    signed = apply(closed, c.SignRetrospective(" went fine "), LEAD, NOW + timedelta(days=1))
    assert [e.kind for e in signed.events] == ["retrospective_signed"]
    assert signed.session.state is SessionState.COMPLETED
    emergency = signed.session.emergency
    assert emergency is not None and not emergency.outstanding
    assert (emergency.retrospective_by, emergency.retrospective_note) == ("U0LEAD", "went fine")
    with pytest.raises(DomainError, match="already: nothing is owed"):
        apply(signed.session, c.SignRetrospective(), LEAD, NOW)
    # Separation of duties: whoever declared it does not sign its retrospective.
    commander_lead = Actor("U0COMMANDER", frozenset({"leads"}))
    with pytest.raises(PermissionDenied, match="own deploy"):
        apply(s, c.SignRetrospective(), commander_lead, NOW)


def test_no_retrospective_without_an_emergency() -> None:
    with pytest.raises(DomainError, match="was not an emergency"):
        apply(make_session(), c.SignRetrospective(), LEAD, NOW)


def test_an_emergency_survives_storage() -> None:
    s = emergency_session()
    s = apply(s, c.SignRetrospective("ok"), LEAD, NOW).session
    loaded = change_control_from_json(s.state_to_json())
    assert loaded["emergency"] == s.emergency
    assert change_control_from_json({}) == {
        "freeze_override": None,
        "promoted_from": None,
        "emergency": None,
    }
