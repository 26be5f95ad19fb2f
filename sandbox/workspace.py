"""The sandbox's Slack workspace as its page shows it, and what people do there.

What the bot posted is read from the Slack stand-in (:class:`~sandbox.slack_api.FakeSlack`);
what people do on the page (a ``/deploy`` command, a click, a ticked checkbox, a modal's
submit) goes to the bot through :class:`~sandbox.slack_requests.SlackRequests`: signed
requests with the bodies Slack sends. Every request carries a response URL and a trigger ID
made for it, so the replies and modals it causes are shown to the person who acted, and to
nobody else, as Slack does.
"""

from __future__ import annotations

import itertools
import json
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sandbox.cluster import Cluster
from sandbox.demo import DemoUser
from sandbox.pagerduty import FakePagerDuty
from sandbox.services import DemoServices
from sandbox.slack_api import BOT_USER_ID, FakeSlack, Message
from sandbox.slack_requests import Response, SlackRequests

REQUIRED = "Please complete this required field."
HOME, HOME_TS = "HOME", "0000000000.000000"  # the Home tab, shown as a channel of one message


class PageError(Exception):
    """A request from the page that can't be carried out; the message says why."""


@dataclass(frozen=True)
class ReplyTo:
    """Where a response URL's answer shows: to ``user``, in a channel or in a thread."""

    user: str
    channel: str
    thread_ts: str | None


@dataclass(frozen=True)
class Notice:
    """A line from the sandbox itself, shown to one user (as Slackbot would)."""

    user: str
    channel: str
    text: str
    at: float


class Workspace:
    """The page's view of Slack, and the page's actions sent to the bot."""

    def __init__(
        self,
        *,
        fake: FakeSlack,
        requests: SlackRequests,
        users: list[DemoUser],
        channels: list[str],
        pagerduty: FakePagerDuty,
        cluster: Cluster | None = None,
        services: DemoServices | None = None,
        changed: Callable[[], None] = lambda: None,
    ) -> None:
        self.fake = fake
        self.requests = requests
        self.users = users
        self.channel_ids = [fake.channel_id(name) for name in channels]
        self.pagerduty = pagerduty
        self.cluster = cluster
        self.services = services
        self.changed = changed
        self._lock = threading.Lock()
        self._seq = itertools.count(1)
        self._replies: dict[str, ReplyTo] = {}
        self._triggers: dict[str, str] = {}
        self._closed_views: set[str] = set()
        self._notices: list[Notice] = []

    # -- what people do ------------------------------------------------------------------------

    def command(self, user: str, channel: str, text: str) -> dict[str, Any]:
        """Send a slash command typed in ``channel`` (``/deploy start staging``)."""
        self._check_user(user)
        command, _, rest = text.strip().partition(" ")
        if command != "/deploy":
            self._notice(user, channel, "The sandbox sends `/deploy …` commands to deploybot.")
            return {"status": None}
        response = self.requests.command(
            rest.strip(),
            user_id=user,
            user_name=self._handle(user),
            channel_id=channel,
            channel_name=self.fake.channels.get(channel, channel.lower()),
            response_url=self._response_url(ReplyTo(user, channel, None)),
            trigger_id=self._trigger(user),
        )
        return self._answered(response, user, channel)

    def action(self, user: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """A click, a checkbox change or a select in a message, sent as ``block_actions``."""
        self._check_user(user)
        channel, ts = str(body.get("channel") or ""), str(body.get("ts") or "")
        action_id, block_id = str(body.get("action_id") or ""), body.get("block_id")
        message = self._home_message(user) if channel == HOME else self._message(channel, ts)
        element = _element(message.blocks, action_id, block_id)
        if element is None:
            raise PageError("That control is no longer in the message: it was updated.")
        thread = message.thread_ts if message.thread_ts not in (None, message.ts) else None
        chosen: dict[str, Any] = {}
        if element["type"] == "checkboxes":
            picked = set(body.get("selected") or [])
            chosen["selected_options"] = [o for o in element["options"] if o["value"] in picked]
        elif element["type"] == "static_select":
            option = _option(element, body.get("selected"))
            if option is None:
                raise PageError("That option is not in the list.")
            chosen["selected_option"] = option
        response = self.requests.block_action(
            user_id=user,
            user_name=self._handle(user),
            action_id=action_id,
            block_id=block_id if isinstance(block_id, str) else None,
            channel_id=channel,
            channel_name=self.fake.channels.get(channel, channel.lower()),
            message_ts=ts,
            message=message,
            response_url=self._response_url(ReplyTo(user, channel, thread)),
            trigger_id=self._trigger(user),
            **chosen,
        )
        return self._answered(response, user, channel)

    def submit(self, user: str, view_id: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """Submit the modal ``view_id`` with ``values`` (block ID to the text or option value).

        Returns:
            ``{"closed": True}``, or ``{"errors": {block_id: message}}`` to show in the modal.
        """
        self._check_user(user)
        view = self._open_views(user).get(view_id)
        if view is None:
            raise PageError("That dialog is closed.")
        state: dict[str, dict[str, Any]] = {}
        errors: dict[str, str] = {}
        for block in view.get("blocks") or []:
            if block.get("type") != "input":
                continue
            element, block_id = block["element"], block["block_id"]
            raw = values.get(block_id)
            value: dict[str, Any] = {"type": element["type"]}
            if element["type"] == "static_select":
                value["selected_option"] = _option(element, raw)
                given = value["selected_option"] is not None
            else:
                value["value"] = str(raw) if raw else None
                given = bool(raw and str(raw).strip())
            if not given and not block.get("optional"):
                errors[block_id] = REQUIRED  # Slack checks this before sending anything
            state[block_id] = {element["action_id"]: value}
        if errors:
            return {"errors": errors}
        response = self.requests.view_submission(
            user_id=user,
            user_name=self._handle(user),
            callback_id=str(view.get("callback_id") or ""),
            private_metadata=str(view.get("private_metadata") or ""),
            values=state,
            view_id=view_id,
            view=view,
            trigger_id=self._trigger(user),
        )
        if response.status != 200:
            raise PageError(f"deploybot answered HTTP {response.status}: {response.body[:200]}")
        answer = json.loads(response.body) if response.body.strip() else {}
        if answer.get("response_action") == "errors":
            return {"errors": dict(answer.get("errors") or {})}
        self.close_view(user, view_id)
        return {"closed": True}

    def close_view(self, user: str, view_id: str) -> None:
        """The modal was cancelled (or submitted): it is no longer shown."""
        with self._lock:
            self._closed_views.add(view_id)
        self.changed()

    # -- what the page shows -------------------------------------------------------------------

    def state(self, user: str) -> dict[str, Any]:
        """Everything the page shows to ``user``: channels and threads, their modal, the rest."""
        ephemerals = self._ephemerals(user)
        channels = []
        ids = self.channel_ids + [c for c in self.fake.channels if c not in self.channel_ids]
        for channel in ids:
            items = []
            for message in self.fake.messages(channel):
                replies = [_message(m) for m in self.fake.thread(channel, message.ts)[1:]]
                replies += [
                    e
                    for e in ephemerals
                    if e["channel"] == channel and e["thread_ts"] == message.ts
                ]
                replies.sort(key=lambda item: item["at"])
                items.append({**_message(message), "replies": replies})
            items += [e for e in ephemerals if e["channel"] == channel and not e["thread_ts"]]
            items.sort(key=lambda item: item["at"])
            name = self.fake.channels.get(channel, channel)
            channels.append({"id": channel, "name": name, "items": items})
        channels.append(self._home(user, ephemerals))
        views = [{"id": view_id, **view} for view_id, view in self._open_views(user).items()][-1:]
        return {
            "user": user,
            "users": [{"id": u.id, "name": u.name, "title": u.title} for u in self.users],
            "names": {
                **{u.id: u.name for u in self.users},
                BOT_USER_ID: "deploybot",
                **self.fake.channels,
                **self.fake.usergroup_handles,
            },
            "channels": channels,
            "views": views,
            "pages": self._pages(),
            "cluster": self.cluster.describe() if self.cluster else [],
            "services": self.services.describe() if self.services else [],
        }

    # -- helpers -------------------------------------------------------------------------------

    def _check_user(self, user: str) -> None:
        if user not in {u.id for u in self.users}:
            raise PageError(f"Unknown user {user!r}: pick one of the sandbox's people.")

    def _handle(self, user: str) -> str:
        name = next((u.name for u in self.users if u.id == user), user)
        return name.split()[0].lower()

    def _response_url(self, target: ReplyTo) -> str:
        name = f"r{next(self._seq)}"
        with self._lock:
            self._replies[name] = target
        return self.fake.response_url(name)

    def _trigger(self, user: str) -> str:
        trigger = f"{int(time.time())}.{next(self._seq)}.{secrets.token_hex(16)}"
        with self._lock:
            self._triggers[trigger] = user
        return trigger

    def _notice(self, user: str, channel: str, text: str) -> None:
        with self._lock:
            self._notices.append(Notice(user, channel, text, time.monotonic()))
        self.changed()

    def _answered(self, response: Response, user: str, channel: str) -> dict[str, Any]:
        """Slack shows a failed request as an error, and a message in the ack to its sender."""
        if response.status != 200:
            self._notice(user, channel, f"deploybot answered HTTP {response.status}.")
        elif response.body.strip().startswith("{"):
            answer = json.loads(response.body)
            if answer.get("text") or answer.get("blocks"):
                self._notice(user, channel, str(answer.get("text") or ""))
        return {"status": response.status}

    def open_home(self, user: str) -> dict[str, Any]:
        """The person opened the app's Home tab: Slack sends ``app_home_opened``."""
        self._check_user(user)
        return {"status": self.requests.app_home_opened(user).status}

    def _home(self, user: str, ephemerals: list[dict[str, Any]]) -> dict[str, Any]:
        """The Home tab, shown as a channel holding one message: the view last published."""
        view = self.fake.homes().get(user)
        home = {
            "kind": "message",
            "channel": HOME,
            "ts": HOME_TS,
            "thread_ts": None,
            "user": BOT_USER_ID,
            "text": "" if view else "Nothing published yet: opening the tab asks for it.",
            "blocks": (view or {}).get("blocks") or [],
            "edited": False,
            "at": 0.0,
            "replies": [],
        }
        items = [home, *(e for e in ephemerals if e["channel"] == HOME)]
        return {"id": HOME, "name": "Home", "home": True, "items": items}

    def _home_message(self, user: str) -> Message:
        view = self.fake.homes().get(user) or {}
        return Message(channel=HOME, ts=HOME_TS, text="", blocks=view.get("blocks") or [])

    def _message(self, channel: str, ts: str) -> Message:
        for top in self.fake.messages(channel):
            for message in self.fake.thread(channel, top.ts):
                if message.ts == ts:
                    return message
        raise PageError("That message is not in the channel.")

    def _open_views(self, user: str) -> dict[str, dict[str, Any]]:
        with self._lock:
            closed, triggers = set(self._closed_views), dict(self._triggers)
        return {
            view_id: view
            for view_id, view in self.fake.views().items()
            if view_id not in closed and triggers.get(self.fake.view_trigger(view_id) or "") == user
        }

    def _ephemerals(self, user: str) -> list[dict[str, Any]]:
        """What only ``user`` sees: response URL answers, chat.postEphemeral, sandbox notices."""
        with self._lock:
            replies, notices = dict(self._replies), list(self._notices)
        shown = []
        for call in self.fake.calls("response_url"):
            target = replies.get(call.path.rsplit("/", 1)[-1])
            if target is None or target.user != user or call.params.get("delete_original"):
                continue
            public = call.params.get("response_type") == "in_channel"
            shown.append(
                _ephemeral(target.channel, target.thread_ts, call.params, call.at, public=public)
            )
        for eph in self.fake.ephemerals(user):
            params = {"text": eph.text, "blocks": eph.blocks}
            shown.append(_ephemeral(eph.channel, eph.thread_ts, params, eph.posted_at))
        for notice in notices:
            if notice.user == user:
                item = _ephemeral(notice.channel, None, {"text": notice.text}, notice.at)
                shown.append({**item, "user": "USLACKBOT"})
        return shown

    def _pages(self) -> list[dict[str, Any]]:
        pages = []
        for key, alert in self.pagerduty.alerts().items():
            pages.append(
                {
                    "dedup_key": key,
                    "status": alert.status,
                    "summary": alert.payload.get("summary", ""),
                    "severity": alert.payload.get("severity", ""),
                    "source": alert.payload.get("source", ""),
                    "events": [e["event_action"] for e in alert.events],
                    "links": alert.links,
                }
            )
        return pages


def _message(message: Message) -> dict[str, Any]:
    return {
        "kind": "message",
        "channel": message.channel,
        "ts": message.ts,
        "thread_ts": message.thread_ts,
        "user": message.user,
        "text": message.text,
        "blocks": message.blocks,
        "edited": message.edited_ts is not None,
        "at": message.posted_at,
    }


def _ephemeral(
    channel: str,
    thread_ts: str | None,
    params: Mapping[str, Any],
    at: float,
    *,
    public: bool = False,
) -> dict[str, Any]:
    return {
        "kind": "message" if public else "ephemeral",
        "channel": channel,
        "ts": f"e{at:.6f}",
        "thread_ts": thread_ts,
        "user": BOT_USER_ID,
        "text": str(params.get("text") or ""),
        "blocks": list(params.get("blocks") or []),
        "edited": False,
        "at": at,
    }


def _element(
    blocks: list[dict[str, Any]], action_id: str, block_id: object
) -> dict[str, Any] | None:
    for block in blocks:
        if block_id is not None and block.get("block_id") != block_id:
            continue
        candidates = [*block.get("elements", []), block.get("accessory")]
        for element in candidates:
            if isinstance(element, dict) and element.get("action_id") == action_id:
                return element
    return None


def _option(element: Mapping[str, Any], value: object) -> dict[str, Any] | None:
    return next((o for o in element.get("options") or [] if o.get("value") == value), None)
