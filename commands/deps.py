"""What the listeners need, built once at start-up and handed to them through Bolt's context.

One middleware puts :class:`Deps` into every request's context (``context["deps"]``), so
listeners are plain module-level functions; nothing is built at import time.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from slack_bolt import BoltContext, BoltResponse
from slack_bolt.error import BoltUnhandledRequestError
from slack_bolt.request import BoltRequest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.app.rollback import Rollbacks
from bot.app.sessions import DeployService
from bot.config.schema import Config
from bot.domain import inputs
from bot.domain.errors import DeployError
from bot.rendering.ids import unpack
from bot.rendering.modals import notice_modal
from bot.slack.inbox import not_recorded_text
from bot.slack.publisher import SessionPublisher
from bot.storage.db import database_unreachable

log = logging.getLogger("deploybot.commands")

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class Deps:
    service: DeployService
    publisher: SessionPublisher
    config: Config
    rollbacks: Rollbacks

    def middleware(self, req: BoltRequest, resp: BoltResponse, next: Callable[[], Any]) -> Any:
        """Bolt middleware: every listener finds these in ``context["deps"]``."""
        req.context["deps"] = self
        return next()


def deps_of(context: BoltContext) -> Deps:
    deps = context["deps"]
    assert isinstance(deps, Deps)
    return deps


def request_of(context: BoltContext) -> str | None:
    """The Slack request's inbox key (see :mod:`bot.slack.inbox`)."""
    key = context.get("request_key")
    return key if isinstance(key, str) else None


def finishing(listener: Callable[P, R]) -> Callable[P, R]:
    """Answer what the listener raises once it has acknowledged, and mark the request done
    in the inbox once it has run, whatever happened.

    An error raised before the ack goes to Bolt's error handler (:func:`answer_error`),
    which answers it in the HTTP response. After the ack Bolt cannot: it drops the response
    it was given, waits out Slack's 3 seconds and answers 404 ("didn't call ack()"), so the
    error is answered here, by the same function, through the response_url.

    Changes mark their request done in their own transaction (the bus); this covers what
    changes nothing (a status, a refusal), so another replica does not process it again.
    """

    @functools.wraps(listener)
    def run(*args: P.args, **kwargs: P.kwargs) -> R | None:
        context = kwargs.get("context")
        try:
            return listener(*args, **kwargs)
        except Exception as error:
            if not isinstance(context, BoltContext) or context.ack.response is None:
                raise
            answer_error(error, context)
            return None
        finally:
            if isinstance(context, BoltContext) and "deps" in context:
                deps_of(context).service.done(request_of(context))

    return run  # type: ignore[return-value]


def tell(respond: Callable[..., Any] | None, text: str) -> None:
    """An ephemeral reply to the person who asked, through the request's response_url."""
    if respond is not None:
        respond(text=text, response_type="ephemeral", replace_original=False)


def tell_where_clicked(
    client: WebClient | None,
    body: dict[str, Any] | None,
    respond: Callable[..., Any] | None,
    text: str,
) -> None:
    """An ephemeral reply shown where the person clicked: in the thread, for a message in one.

    ``chat.postEphemeral`` takes the thread's ``thread_ts`` (Slack shows it in that thread),
    while a response_url reply lands in the channel, away from the checklist. Elsewhere (a
    message in the channel itself, a modal), or when Slack refuses the post, the answer goes
    through the response_url.
    """
    body = body or {}
    container = body.get("container") or {}
    message = body.get("message") or {}
    channel = container.get("channel_id") or (body.get("channel") or {}).get("id")
    thread = container.get("thread_ts") or message.get("thread_ts")
    user = (body.get("user") or {}).get("id")
    if client is not None and channel and user and thread:
        try:
            client.chat_postEphemeral(channel=channel, user=user, text=text, thread_ts=thread)
            return
        except SlackApiError as error:
            log.warning("could not answer in the thread: %s", error.response.get("error"))
    tell(respond, text)


UNHANDLED = (
    ":warning: deploybot does not know this request: an unknown command, or a button from "
    "an older version of the bot. `/deploy help` lists what it does."
)
FAILED = (
    ":x: Something went wrong inside deploybot (it is logged). "
    "Check `/deploy status` and try again."
)


def answer_error(
    error: Exception,
    context: BoltContext,
    body: dict[str, Any] | None = None,
    response: BoltResponse | None = None,
    client: WebClient | None = None,
) -> None:
    """The Bolt error handler: errors written for people go back to them, privately, where
    they clicked (in the thread, for a click on a message in one).

    With a response_url the answer is an ephemeral message and the HTTP answer an empty 200
    (``response`` is None once the listener acknowledged). A modal's submit has none: the
    answer replaces the modal. Anything else gets a 400 saying what was wrong. An unreachable
    database says so: the request was not recorded and needs repeating once it is back.
    """
    if isinstance(error, BoltUnhandledRequestError):
        text = UNHANDLED
    elif isinstance(error, DeployError):
        text = f":warning: {error}"
    elif database_unreachable(error):
        log.warning("database unreachable: request not recorded (%s)", type(error).__name__)
        text = not_recorded_text(body)
    else:
        log.error("listener failed", exc_info=error)
        text = FAILED
    if context.response_url:
        try:
            tell_where_clicked(client, body, context.respond, text)
        except Exception:  # an unreachable response_url: the HTTP answer is all that is left
            log.warning("could not answer through the response_url", exc_info=True)
        if response is not None:
            response.status, response.body = 200, ""
    elif response is not None and (body or {}).get("type") == "view_submission":
        response.status = 200
        response.body = json.dumps({"response_action": "update", "view": notice_modal(text)})
        response.headers["content-type"] = ["application/json;charset=utf-8"]
    elif response is not None:
        response.status, response.body = 400, text


def parse_id(text: str, what: str = "deploy id") -> int:
    """A session id as people type it (``12``, ``#12``) or as a button carries it.

    Raises:
        InputError: not a plain decimal number of a sane size.
    """
    return inputs.session_id(text, what)


def parse_parts(value: str, count: int, what: str = "button") -> list[str]:
    """The ``count`` parts of a value made by :func:`bot.rendering.ids.pack`.

    Raises:
        InputError: a value of another shape (a forged or garbled click).
    """
    parts = unpack(value)
    if len(parts) != count:
        raise inputs.InputError(
            f"This {what} carries a value deploybot cannot read; reopen the deploy's message "
            "or use `/deploy status`."
        )
    return parts


def typed(view: dict[str, Any], input_id: str, key: str = "value") -> str:
    """What a modal's input ``input_id`` holds: its text, or its selected option's value
    (``key="selected_option"``); empty when the submit does not carry it."""
    values = (view.get("state") or {}).get("values") or {}
    element = (values.get(input_id) or {}).get(input_id) or {}
    found = element.get(key) if isinstance(element, dict) else None
    if isinstance(found, dict):
        found = found.get("value")
    return found if isinstance(found, str) else ""
