"""What the listeners need, built once at start-up and handed to them through Bolt's context.

One middleware puts :class:`Deps` into every request's context (``context["deps"]``), so
listeners are plain module-level functions; nothing is built at import time.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from slack_bolt import BoltContext, BoltResponse
from slack_bolt.request import BoltRequest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.app.rollback import Rollbacks
from bot.app.sessions import DeployService
from bot.config.schema import Config
from bot.domain.errors import DeployError
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
    """Mark the request done in the inbox once its listener has run, whatever happened.

    Changes mark it in their own transaction (the bus); this covers what changes nothing
    (a status, a refusal while parsing), so it is not processed again by another replica.
    """

    @functools.wraps(listener)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return listener(*args, **kwargs)
        finally:
            context = kwargs.get("context")
            if isinstance(context, BoltContext) and "deps" in context:
                deps_of(context).service.done(request_of(context))

    return run


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


def answer_error(
    error: Exception,
    respond: Callable[..., Any] | None,
    body: dict[str, Any] | None = None,
    client: WebClient | None = None,
) -> None:
    """The Bolt error handler: errors written for people go back to them, privately, where
    they clicked.

    An unreachable database says so: the person's command or click was not recorded and
    needs repeating once it is back (nothing else is wrong with it).
    """
    if isinstance(error, DeployError):
        tell_where_clicked(client, body, respond, f":warning: {error}")
        return
    if database_unreachable(error):
        log.warning("database unreachable: request not recorded (%s)", type(error).__name__)
        tell(respond, not_recorded_text(body))
        return
    log.error("listener failed", exc_info=error)
    tell_where_clicked(
        client,
        body,
        respond,
        ":x: Something went wrong inside deploybot (it is logged). "
        "Check `/deploy status` and try again.",
    )


def parse_id(text: str, what: str = "deploy id") -> int:
    """A session id as people type it (``12``, ``#12``) or as a button carries it.

    Raises:
        DeployError: not a plain decimal number of a sane size.
    """
    digits = text.strip().lstrip("#")
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 9:
        raise DeployError(f"`{text[:40]}` is not a {what}: give a number such as `12`.")
    return int(digits)
