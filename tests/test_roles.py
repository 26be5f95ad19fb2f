"""Config roles resolved against Slack's user groups, through the Slack stand-in."""

from __future__ import annotations

from pathlib import Path

from bot.config.loader import load_config
from bot.slack.app import make_client
from bot.slack.roles import SlackRoles
from tests.support.slack import FakeSlack

MINIMAL = Path(__file__).resolve().parent.parent / "examples" / "minimal.yaml"


def test_an_unlistable_group_grants_nothing_and_is_asked_again_later() -> None:
    now = [0.0]
    with FakeSlack() as fake:
        fake.usergroups = {"S0RELEASE": ["U0MEMBER"]}
        fake.usergroup_handles = {"S0RELEASE": "release-managers"}
        fake.fail("usergroups.list", error="missing_scope")
        roles = SlackRoles(
            load_config(MINIMAL),
            make_client("xoxb-test", base_url=fake.base_url),
            clock=lambda: now[0],
        )
        assert roles.roles_of("U0MEMBER") == frozenset()  # refused, not an error
        assert roles.roles_of("U0APPROVER1") == frozenset({"approvers"})  # ids still work
        now[0] += 301
        assert roles.roles_of("U0MEMBER") == frozenset({"approvers"})
        assert len(fake.calls("usergroups.list")) == 2
