"""Promotion order and version changes in the domain: which completed deploy admits a
version, what a refusal says, and a new version withdrawing the sign-offs."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from bot.domain import apply
from bot.domain import commands as c
from bot.domain.emergency import Emergency
from bot.domain.errors import DomainError, PermissionDenied
from bot.domain.policy import SignOffRule
from bot.domain.promotion import CompletedDeploy, PromotionRule, check_promotion
from bot.domain.session import policy_from_json
from tests.test_domain import NOW, OPERATOR, OUTSIDER, QA, QA2, REQUESTER, make_session

RULE = PromotionRule("staging", timedelta(days=7))


def done(sid: int, days: float, env: str = "staging", svc: str = "api", ver: str = "1.4") -> Any:
    return CompletedDeploy(sid, env, svc, ver, NOW - timedelta(days=days))


# (completed deploys, version asked) -> the deploy that admits it, or words of the refusal.
CASES: list[tuple[str, list[CompletedDeploy], str, Any]] = [
    ("none at all", [], "1.4", "no staging deploy of it has completed"),
    ("no version given", [done(1, 1)], "", "give the version"),
    ("completed yesterday", [done(1, 1)], "1.4", 1),
    ("exactly at the limit", [done(1, 7)], "1.4", 1),
    ("too old", [done(1, 8)], "1.4", "completed 2026-11-15 12:00 UTC, 8d ago"),
    ("the latest fresh one", [done(1, 3), done(2, 1), done(3, 9)], "1.4", 2),
    ("another version", [done(1, 1, ver="1.3")], "1.4", "no staging deploy"),
    ("another service", [done(1, 1, svc="web")], "1.4", "no staging deploy"),
    ("another environment", [done(1, 1, env="qa")], "1.4", "no staging deploy"),
    ("in the future (clock skew)", [done(1, -1)], "1.4", "no staging deploy"),
]


@pytest.mark.parametrize(
    ("completed", "version", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_promotion_table(completed: list[CompletedDeploy], version: str, expected: Any) -> None:
    def run() -> CompletedDeploy | None:
        return check_promotion(
            RULE, environment="prod", service="api", version=version, completed=completed, at=NOW
        )

    if isinstance(expected, int):
        found = run()
        assert found is not None and found.session_id == expected
    else:
        with pytest.raises(DomainError) as refused:
            run()
        said = str(refused.value)
        assert expected in said
        assert "`/deploy start" in said  # every refusal says what to do


def test_without_a_rule_anything_goes() -> None:
    none = check_promotion(None, environment="prod", service="", version="", completed=[], at=NOW)
    assert none is None


def test_the_rule_survives_storage() -> None:
    s = make_session(promotion=RULE)
    assert policy_from_json(s.policy_to_json()).promotion == RULE
    assert policy_from_json({}).promotion is None


def test_a_new_version_withdraws_every_sign_off() -> None:
    s = make_session()
    s = apply(s, c.SignOff("qa-lead"), QA, NOW).session
    s = apply(s, c.SignOff("devops-lead"), QA2, NOW).session
    changed = apply(s, c.ChangeVersion("v1.4.3"), REQUESTER, NOW)
    assert changed.session.version == "v1.4.3"
    assert changed.session.signoffs == {}
    assert [e.kind for e in changed.events] == [
        "version_changed",
        "signoff_withdrawn",
        "signoff_withdrawn",
    ]
    assert changed.events[0].data == {"from": "v1.4.2", "to": "v1.4.3"}
    assert changed.events[1].data == {"key": "qa-lead", "role": "QA Lead", "signers": ["U0QA"]}
    assert changed.session.missing_signoffs() == s.policy.signoffs
    # An operator may, too; an outsider may not; nor may anyone once deploying started.
    assert apply(s, c.ChangeVersion("v2"), OPERATOR, NOW).session.version == "v2"
    with pytest.raises(PermissionDenied, match="the requester <@U0DEPLOYER>"):
        apply(s, c.ChangeVersion("v2"), OUTSIDER, NOW)
    with pytest.raises(DomainError, match=r"already deploys version v1\.4\.2"):
        apply(s, c.ChangeVersion("v1.4.2"), REQUESTER, NOW)
    deploying = apply(s, c.StartDeployment(), REQUESTER, NOW).session
    with pytest.raises(DomainError, match="can't change the version of a session that is"):
        apply(deploying, c.ChangeVersion("v2"), REQUESTER, NOW)


def test_a_new_version_must_have_been_promoted_too() -> None:
    s = make_session(promotion=RULE)
    with pytest.raises(DomainError, match="Deploy it to staging first"):
        apply(s, c.ChangeVersion("1.4", completed=(done(1, 1, ver="1.3"),)), REQUESTER, NOW)
    moved = apply(s, c.ChangeVersion("1.4", completed=(done(4, 2),)), REQUESTER, NOW).session
    assert moved.promoted_from == done(4, 2)
    # An emergency that skips the promotion order skips it for a new version as well.
    retro = SignOffRule("retrospective", "Retrospective", ("leads",))
    urgent = replace(s, emergency=Emergency("U0X", NOW, "down", retro, skips_promotion=True))
    assert apply(urgent, c.ChangeVersion("9.9"), REQUESTER, NOW).session.promoted_from is None


def test_a_lapsed_sign_off_is_named_with_its_time() -> None:
    rule = (SignOffRule("qa-lead", "QA Lead", ("approvers",), valid_for=timedelta(hours=4)),)
    s = make_session(signoffs=rule)
    s = apply(s, c.SignOff("qa-lead"), QA, NOW).session
    later = NOW + timedelta(hours=5)
    assert [sig.by for sig in s.lapsed("qa-lead", at=later)] == ["U0QA"]
    assert s.lapsed("qa-lead", at=NOW + timedelta(hours=3)) == ()
    missing = s.gate_missing(s.policy.deploy_gate, at=later)
    assert missing == [
        "sign-off from *QA Lead* (lapsed: <@U0QA> at 12:00 UTC; a sign-off holds 4h: sign again)"
    ]
