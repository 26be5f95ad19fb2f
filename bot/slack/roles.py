"""Config roles resolved against Slack: user IDs as written, user groups through the API."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.config.schema import Config

log = logging.getLogger(__name__)


class SlackRoles:
    """Which roles a user holds, expanding user groups (``@handle`` or ``S…`` IDs).

    Group members and handles are cached for ``ttl`` seconds: a role check happens on every
    click, and ``usergroups.users.list`` is rate limited (Tier 2). A group Slack will not show
    (a missing scope, say) grants nothing until it does: a refusal, never a wrong yes.
    """

    def __init__(
        self,
        config: Config,
        client: WebClient,
        *,
        ttl: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.client = client
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()
        self._handles: dict[str, str] | None = None
        self._handles_at = 0.0
        self._members: dict[str, tuple[float, frozenset[str]]] = {}

    def roles_of(self, user_id: str) -> frozenset[str]:
        return frozenset(
            role
            for role, members in self.config.roles.items()
            if any(self._includes(member, user_id) for member in members)
        )

    def _includes(self, member: str, user_id: str) -> bool:
        if member == user_id:
            return True
        group_id = self._group_id(member)
        return group_id is not None and user_id in self._group_members(group_id)

    def _group_id(self, member: str) -> str | None:
        if member.startswith("S"):
            return member
        if not member.startswith("@"):
            return None
        with self._lock:
            if self._handles is None or self.clock() - self._handles_at >= self.ttl:
                try:
                    groups = self.client.usergroups_list().get("usergroups") or []
                    self._handles = {g["handle"]: g["id"] for g in groups}
                except SlackApiError as error:
                    log.warning(
                        "cannot list Slack user groups (%s): @handles grant no role until it "
                        "works (the bot needs the usergroups:read scope)",
                        error.response.get("error"),
                    )
                    self._handles = self._handles or {}
                self._handles_at = self.clock()
            return self._handles.get(member[1:])

    def _group_members(self, group_id: str) -> frozenset[str]:
        with self._lock:
            cached = self._members.get(group_id)
            if cached and self.clock() - cached[0] < self.ttl:
                return cached[1]
        try:
            users = self.client.usergroups_users_list(usergroup=group_id).get("users") or []
        except SlackApiError:
            # A group we cannot read grants nothing; better a refusal than a wrong yes.
            users = []
        members = frozenset(users)
        with self._lock:
            self._members[group_id] = (self.clock(), members)
        return members
