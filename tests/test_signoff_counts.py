"""Sign-offs that take N different people: the domain, storage of old rows, the summary."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from pydantic import ValidationError

from bot.config.schema import SignOffRequirement
from bot.domain import Actor, SignOffRule, apply
from bot.domain import commands as c
from bot.domain.checklist import Gate
from bot.domain.errors import DomainError, GateClosed, PermissionDenied
from bot.domain.session import policy_from_json, signoffs_from_json
from bot.rendering.session import signoff_status, summary_blocks
from tests.test_domain import NOW, OPERATOR, QA, QA2, REQUESTER, make_session

QA3 = Actor("U0QA3", frozenset({"approvers"}))
TWO_QA = (SignOffRule("qa", "QA", ("approvers",), count=2),)


def test_the_gate_counts_the_role_done_only_at_n() -> None:
    s = make_session(signoffs=TWO_QA, deploy_gate=Gate(signoffs=("qa",)))
    one = apply(s, c.SignOff("qa"), QA, NOW)
    assert one.events[0].data == {"key": "qa", "role": "QA", "signed": 1, "of": 2}
    assert one.session.missing_signoffs() == TWO_QA
    with pytest.raises(GateClosed, match=r"sign-off from \*QA\* \(1 of 2\)"):
        apply(one.session, c.StartDeployment(), OPERATOR, NOW)
    later = NOW + timedelta(minutes=5)
    two = apply(one.session, c.SignOff("qa"), QA2, later).session
    assert two.signers("qa") == (QA.user_id, QA2.user_id)
    assert two.missing_signoffs() == ()
    assert apply(two, c.StartDeployment(), OPERATOR, later).changed
    with pytest.raises(DomainError, match="already signed off by <@U0QA>, <@U0QA2>"):
        apply(two, c.SignOff("qa"), QA3, later)


def test_the_same_person_cannot_sign_twice() -> None:
    s = apply(make_session(signoffs=TWO_QA), c.SignOff("qa"), QA, NOW).session
    with pytest.raises(DomainError, match="already signed off as QA: it takes 2 different"):
        apply(s, c.SignOff("qa"), QA, NOW)


def test_separation_of_duties_applies_to_each_signer() -> None:
    requester = Actor(REQUESTER.user_id, frozenset({"approvers"}))
    s = apply(make_session(signoffs=TWO_QA), c.SignOff("qa"), QA, NOW).session
    with pytest.raises(PermissionDenied, match="separation of duties"):
        apply(s, c.SignOff("qa"), requester, NOW)


def test_counts_round_trip_and_old_rows_still_load() -> None:
    s = apply(make_session(signoffs=TWO_QA), c.SignOff("qa"), QA, NOW).session
    s = apply(s, c.SignOff("qa"), QA2, NOW + timedelta(minutes=1)).session
    state = json.loads(json.dumps(s.state_to_json()))
    assert signoffs_from_json(state["signoffs"]) == s.signoffs
    assert policy_from_json(json.loads(json.dumps(s.policy_to_json()))).signoffs == TWO_QA
    # Stored before counts: one record per key, rules with no count.
    old = {"qa-lead": {"key": "qa-lead", "role": "QA Lead", "by": "U0QA", "at": NOW.isoformat()}}
    assert signoffs_from_json(old)["qa-lead"].signers == ("U0QA",)
    rule = {"key": "qa-lead", "role": "QA Lead", "by": ["approvers"]}
    assert policy_from_json({"signoffs": [rule]}).signoffs[0].count == 1
    assert "more" not in make_signed_once()["qa-lead"]


def make_signed_once() -> dict[str, dict[str, object]]:
    s = apply(make_session(), c.SignOff("qa-lead"), QA, NOW).session
    signoffs: dict[str, dict[str, object]] = s.state_to_json()["signoffs"]
    return signoffs


def test_the_summary_shows_how_many_of_n_and_who() -> None:
    s = make_session(signoffs=TWO_QA)
    assert signoff_status(s, TWO_QA[0]) == "⏳ *QA*: missing (0 of 2)"
    s = apply(s, c.SignOff("qa"), QA, NOW).session
    assert signoff_status(s, TWO_QA[0]) == "⏳ *QA*: 1 of 2 (<@U0QA>)"
    assert "QA*: 1 of 2 (<@U0QA>)" in json.dumps(summary_blocks(s, now=NOW), ensure_ascii=False)
    s = apply(s, c.SignOff("qa"), QA2, NOW).session
    assert signoff_status(s, TWO_QA[0]).startswith("✅ *QA*: 2 of 2 (<@U0QA>, <@U0QA2>) · ")
    # A count of one reads as before.
    single = apply(make_session(), c.SignOff("qa-lead"), QA, NOW).session
    assert signoff_status(single, single.policy.signoffs[0]).startswith("✅ *QA Lead*: <@U0QA> · ")


# valid_for: a signature older than that does not count when deploying starts.

FOUR_HOURS = (SignOffRule("qa", "QA", ("approvers",), count=2, valid_for=timedelta(hours=4)),)


def test_expired_signatures_do_not_count_at_start_deployment_and_are_given_again() -> None:
    s = make_session(signoffs=FOUR_HOURS, deploy_gate=Gate(signoffs=("qa",)))
    s = apply(s, c.SignOff("qa"), QA, NOW).session
    s = apply(s, c.SignOff("qa"), QA2, NOW + timedelta(hours=3)).session
    assert apply(s, c.StartDeployment(), OPERATOR, NOW + timedelta(hours=3, minutes=59)).changed
    late = NOW + timedelta(hours=5)
    with pytest.raises(
        GateClosed, match=r"\*QA\* \(1 of 2\) \(lapsed: <@U0QA> at 12:00 UTC; a sign-off holds 4h"
    ):
        apply(s, c.StartDeployment(), OPERATOR, late)
    assert s.signers("qa", at=late) == (QA2.user_id,)
    # QA's expired signature makes room: they sign again, and deploying may start.
    again = apply(s, c.SignOff("qa"), QA, late).session
    assert again.signers("qa") == (QA2.user_id, QA.user_id)
    assert apply(again, c.StartDeployment(), OPERATOR, late).changed


def test_the_summary_asks_again_for_an_expired_sign_off() -> None:
    s = make_session(signoffs=FOUR_HOURS[:1], deploy_gate=Gate(signoffs=("qa",)))
    s = apply(s, c.SignOff("qa"), QA, NOW).session
    s = apply(s, c.SignOff("qa"), QA2, NOW).session

    def buttons(at: datetime) -> list[str]:
        blocks = summary_blocks(s, now=at)
        return [e["text"]["text"] for b in blocks if b["type"] == "actions" for e in b["elements"]]

    assert "Start deployment" in buttons(NOW) and "Sign off as QA" not in buttons(NOW)
    later = buttons(NOW + timedelta(hours=5))
    assert "Sign off as QA" in later and "Start deployment" not in later


def test_valid_for_is_kept_in_the_frozen_policy() -> None:
    s = make_session(signoffs=FOUR_HOURS)
    stored = json.loads(json.dumps(s.policy_to_json()))
    assert policy_from_json(stored).signoffs == FOUR_HOURS


def test_the_config_writes_count_and_valid_for() -> None:
    spec = {"role": "QA", "by": ["approvers"], "count": 2, "valid_for": "4h"}
    written = SignOffRequirement.model_validate(spec)
    assert (written.count, written.valid_for) == (2, timedelta(hours=4))
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        SignOffRequirement.model_validate({**spec, "count": 0})
