"""Change freezes: the domain's rules (freeze x override x role), and the windows the
configuration makes, across daylight-saving changes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import TypeAdapter, ValidationError

from bot.config.freezes import Freeze, freeze_at, upcoming
from bot.domain import Actor, DeploySession, SessionState, apply
from bot.domain import commands as c
from bot.domain.errors import DomainError, GateClosed, PermissionDenied
from bot.domain.freeze import FreezeOverride, FreezeWindow, admit_start
from bot.domain.policy import Parties
from bot.domain.session import policy_from_json
from bot.storage.repositories import to_domain
from tests.test_domain import CAPTAIN, NOW, OPERATOR, REQUESTER, make_session, signed

WINDOW = FreezeWindow(
    NOW - timedelta(hours=1), NOW + timedelta(hours=65), "Weekend", "Europe/Berlin"
)
PARTIES = Parties(requester=REQUESTER.user_id, freeze_overriders=("captains",), environment="prod")
FREEZES = TypeAdapter(tuple[Freeze, ...])


# Opening a session: (freeze in force, --override reason, actor) -> recorded, or refused.
START_CASES: list[tuple[str, FreezeWindow | None, str | None, Actor, Any]] = [
    ("no freeze", None, None, REQUESTER, None),
    ("no freeze, override not needed", None, "hotfix", CAPTAIN, None),
    ("frozen", WINDOW, None, REQUESTER, DomainError),
    ("frozen, captain without --override", WINDOW, None, CAPTAIN, DomainError),
    ("frozen, override by a non-captain", WINDOW, "hotfix", REQUESTER, PermissionDenied),
    ("frozen, override without a reason", WINDOW, "  ", CAPTAIN, DomainError),
    ("frozen, override by a captain", WINDOW, "hotfix for INC-12", CAPTAIN, FreezeOverride),
]


@pytest.mark.parametrize(
    ("window", "reason", "actor", "expected"),
    [case[1:] for case in START_CASES],
    ids=[case[0] for case in START_CASES],
)
def test_opening_during_a_freeze(
    window: FreezeWindow | None, reason: str | None, actor: Actor, expected: Any
) -> None:
    if expected is None:
        assert admit_start(window, reason, actor, PARTIES, NOW) is None
    elif expected is FreezeOverride:
        done = admit_start(window, reason, actor, PARTIES, NOW)
        assert done == FreezeOverride(WINDOW, CAPTAIN.user_id, NOW, "hotfix for INC-12")
    else:
        with pytest.raises(expected):
            admit_start(window, reason, actor, PARTIES, NOW)


def test_a_refusal_names_the_window_its_end_in_both_zones_and_who_may_override() -> None:
    with pytest.raises(DomainError) as refused:
        admit_start(WINDOW, None, REQUESTER, PARTIES, NOW)
    assert str(refused.value) == (
        "You can't start a deploy of prod during a change freeze: Weekend "
        "(Mon 23 Nov 12:00 CET until Thu 26 Nov 06:00 CET, 05:00 UTC on Thu 26 Nov). "
        "Members of `captains` may override: `/deploy start prod --override <reason>`."
    )
    nobody = Parties(requester=REQUESTER.user_id, environment="prod")
    with pytest.raises(DomainError, match="No role may override freezes here"):
        admit_start(WINDOW, None, REQUESTER, nobody, NOW)


def test_starting_the_deployment_during_a_freeze_takes_an_override() -> None:
    s = signed(make_session())
    with pytest.raises(DomainError, match="Deployment can't start during a change freeze"):
        apply(s, c.StartDeployment(frozen=WINDOW), OPERATOR, NOW)
    with pytest.raises(PermissionDenied, match="only members of `captains`"):
        apply(s, c.OverrideFreeze("hotfix", frozen=WINDOW), OPERATOR, NOW)
    overridden = apply(s, c.OverrideFreeze("hotfix", frozen=WINDOW), CAPTAIN, NOW)
    assert [e.kind for e in overridden.events] == ["freeze_overridden"]
    assert overridden.events[0].data["reason"] == "hotfix"
    again = apply(overridden.session, c.OverrideFreeze("again", frozen=WINDOW), CAPTAIN, NOW)
    assert again.events == ()
    started = apply(overridden.session, c.StartDeployment(frozen=WINDOW), OPERATOR, NOW)
    assert started.session.state is SessionState.DEPLOYING
    # The next window is another freeze: that override does not cover it.
    later = FreezeWindow(WINDOW.starts + timedelta(days=7), WINDOW.ends + timedelta(days=7))
    with pytest.raises(DomainError, match="change freeze"):
        apply(overridden.session, c.StartDeployment(frozen=later), OPERATOR, NOW)


def test_an_override_never_bypasses_sign_offs() -> None:
    s = apply(make_session(), c.OverrideFreeze("hotfix", frozen=WINDOW), CAPTAIN, NOW).session
    with pytest.raises(GateClosed, match="sign-off from \\*QA Lead\\*"):
        apply(s, c.StartDeployment(frozen=WINDOW), OPERATOR, NOW)


def test_nothing_to_override_without_a_freeze() -> None:
    with pytest.raises(DomainError, match="No change freeze is in force"):
        apply(make_session(), c.OverrideFreeze("hotfix"), CAPTAIN, NOW)


def test_the_override_and_its_roles_survive_storage() -> None:
    s = apply(make_session(), c.OverrideFreeze("hotfix", frozen=WINDOW), CAPTAIN, NOW).session
    state = s.state_to_json()
    assert FreezeOverride.from_json(state["freeze_override"]) == s.freeze_override
    assert policy_from_json(s.policy_to_json()).freeze_override == ("captains",)
    # Rows written before freezes existed load with no override and no override roles.
    assert FreezeOverride.from_json(None) is None
    assert policy_from_json({}).freeze_override == ()
    assert _loaded_without_the_key(s).freeze_override is None


def _loaded_without_the_key(s: DeploySession) -> DeploySession:
    class Row:
        id = 7
        environment, service, version, requester = "prod", "api", "v1", "U0DEPLOYER"
        state, opened_at, closed_at = "open", NOW, None
        checklist = s.checklist.model_dump(mode="json")
        policy = s.policy_to_json()
        checklist_digest = policy_digest = f"test-{uuid.uuid4()}"  # never in the cache
        progress = {k: v for k, v in s.state_to_json().items() if k != "freeze_override"}

    return to_domain(Row())  # type: ignore[arg-type]


# The windows the configuration makes.


def weekly(zone: str, **more: Any) -> tuple[Any, ...]:
    spec = {"rrule": "FREQ=WEEKLY;BYDAY=FR;BYHOUR=15", "duration": "66h", "timezone": zone}
    return FREEZES.validate_python([{**spec, **more}])


@pytest.mark.parametrize(
    ("zone", "before", "after"),
    [
        # Wednesdays: the next window starts on the Friday after. Europe/Berlin leaves CET
        # for CEST on 29 March 2026 and returns on 25 October.
        ("Europe/Berlin", datetime(2026, 3, 25, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)),
        ("Europe/Berlin", datetime(2026, 10, 21, tzinfo=UTC), datetime(2026, 10, 28, tzinfo=UTC)),
        # America/New_York: 8 March and 1 November 2026.
        ("America/New_York", datetime(2026, 3, 4, tzinfo=UTC), datetime(2026, 3, 11, tzinfo=UTC)),
        ("America/New_York", datetime(2026, 10, 28, tzinfo=UTC), datetime(2026, 11, 4, tzinfo=UTC)),
    ],
)
def test_a_weekly_window_starts_at_the_local_time_on_both_sides_of_a_dst_change(
    zone: str, before: datetime, after: datetime
) -> None:
    freezes = weekly(zone)
    first, second = (upcoming(freezes, at, count=1)[0] for at in (before, after))
    local = ZoneInfo(zone)
    for window in (first, second):
        starts, ends = window.starts.astimezone(local), window.ends.astimezone(local)
        assert (starts.strftime("%a %H:%M"), ends.strftime("%a %H:%M")) == (
            "Fri 15:00",
            "Mon 09:00",
        )
    # The same wall-clock time is another UTC time once the clocks have changed.
    assert first.starts.astimezone(UTC).hour != second.starts.astimezone(UTC).hour


def test_a_window_spanning_the_change_ends_at_the_local_time_too() -> None:
    # Fri 27 March 15:00 CET (14:00 UTC) to Mon 30 March 09:00 CEST (07:00 UTC): 65 hours.
    window = freeze_at(weekly("Europe/Berlin"), datetime(2026, 3, 29, 12, tzinfo=UTC))
    assert window is not None
    assert (window.starts, window.ends) == (
        datetime(2026, 3, 27, 14, tzinfo=UTC),
        datetime(2026, 3, 30, 7, tzinfo=UTC),
    )
    assert "Mon 30 Mar 09:00 CEST" in window.describe()
    assert "07:00 UTC" in window.describe()


def test_in_force_and_upcoming_windows_merge_recurring_and_one_off() -> None:
    freezes = FREEZES.validate_python(
        [
            {"rrule": "FREQ=WEEKLY;BYDAY=FR;BYHOUR=15", "duration": "66h", "reason": "Weekend"},
            {"from": "2026-11-27T00:00+01:00", "until": "2026-11-30T09:00", "reason": "BF"},
        ]
    )
    thursday = datetime(2026, 11, 26, 12, tzinfo=UTC)
    assert freeze_at(freezes, thursday) is None
    saturday = freeze_at(freezes, datetime(2026, 11, 28, tzinfo=UTC))
    assert saturday is not None and saturday.reason == "BF"  # the one ending last
    shown = upcoming(freezes, thursday)
    assert [w.reason for w in shown] == ["BF", "Weekend", "Weekend"]
    assert shown[0].ends == datetime(2026, 11, 30, 9, tzinfo=UTC)  # read in UTC by default
    running = upcoming(freezes, datetime(2026, 11, 28, tzinfo=UTC))
    assert running[0].covers(datetime(2026, 11, 28, tzinfo=UTC)) and len(running) == 5


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"rrule": "FREQ=SOMETIMES", "duration": "1h"}, "bad rrule"),
        ({"rrule": "FREQ=DAILY", "duration": "1h", "timezone": "Mars/Olympus"}, "time zone"),
        ({"from": "2026-11-27T00:00", "until": "2026-11-26T00:00"}, "'until' must be after"),
        ({"from": "2026-11-27T00:00"}, "until"),
    ],
)
def test_bad_freezes_are_refused(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        FREEZES.validate_python([spec])


def test_only_an_open_session_takes_an_override() -> None:
    """Overriding is only for a session still open: not once it is deploying."""
    s = make_session(SessionState.DEPLOYING)
    with pytest.raises(DomainError, match="that is deploying"):
        apply(s, c.OverrideFreeze("hotfix", frozen=WINDOW), CAPTAIN, NOW)
