"""The shapes of the Slack requests deploybot takes, checked before Bolt reads them.

Bolt, its kwargs and our listeners index into a request's payload (``body["view"]["type"]``,
``user.get("id")``, ``actions[0]["action_id"]``) on the trust that Slack sent it. A payload of
another shape (a list, a ``user`` that is a string, a ``view`` without ``state``) made them
raise, and the request got an HTTP 500. :func:`problem` names what is wrong instead, so the
edge can refuse it with a 400 that says so. Unknown fields are kept: Slack adds them freely.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from bot.domain.inputs import SLACK_ID_MAX

SlackId = Annotated[
    str, StringConstraints(pattern=r"^[A-Z0-9][A-Z0-9_]*$", max_length=SLACK_ID_MAX)
]
"""A Slack user, team or channel id (``U0123ABC``), as the audit log keeps it."""


class _Shape(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class Ref(_Shape):
    """A team, enterprise or channel: Slack sends an object with an id (or a bare id)."""

    id: str | None = None


class User(_Shape):
    id: SlackId


class Option(_Shape):
    value: str


class Action(_Shape):
    action_id: str
    block_id: str | None = None
    value: str | None = None
    action_ts: str | None = None
    type: str | None = None
    selected_options: list[Option] | None = None
    selected_option: Option | None = None


class Message(_Shape):
    """A message (clicked, or in an event): Bolt looks for its author in it."""

    user: SlackId | User | None = None
    blocks: list[dict[str, Any]] | None = None


class State(_Shape):
    values: dict[str, dict[str, dict[str, Any]]]


class View(_Shape):
    id: str
    type: str
    callback_id: str
    private_metadata: str = ""
    hash: str | None = None
    state: State | None = None


class SubmittedView(View):
    state: State


class Interaction(_Shape):
    """Any ``payload=`` interaction: a click, a modal's submit or close, a shortcut."""

    type: str
    user: User
    team: SlackId | Ref | None = None
    enterprise: SlackId | Ref | None = None
    channel: SlackId | Ref | None = None
    container: dict[str, Any] | None = None
    message: Message | None = None
    actions: list[Action] | None = None
    view: View | None = None
    response_url: str | None = None
    trigger_id: str | None = None
    callback_id: str | None = None
    authorizations: list[dict[str, Any]] | None = None


class BlockActions(Interaction):
    type: Literal["block_actions"]
    actions: list[Action] = Field(min_length=1)
    trigger_id: str  # a button that opens a modal passes it on


class ViewSubmission(Interaction):
    type: Literal["view_submission"]
    view: SubmittedView


class SlashCommand(_Shape):
    command: str
    user_id: SlackId
    text: str = ""
    response_url: str | None = None
    trigger_id: str | None = None


class Event(_Shape):
    type: str
    user: SlackId | User | None = None
    message: Message | None = None
    previous_message: Message | None = None


class Envelope(_Shape):
    """An Events API request (deploybot subscribes to none; Bolt answers what it must)."""

    type: str
    event: Event | None = None
    authorizations: list[dict[str, Any]] | None = None


SHAPES: dict[str, type[_Shape]] = {
    "block_actions": BlockActions,
    "view_submission": ViewSubmission,
}


def problem(body: dict[str, Any], *, interactive: bool) -> str | None:
    """What makes ``body`` (a parsed request) unfit for deploybot, or None when it is fit.

    ``interactive``: the body came as a ``payload=`` form field (clicks, modals).
    """
    if interactive:
        shape: type[_Shape] = SHAPES.get(str(body.get("type")), Interaction)
    elif "command" in body:
        shape = SlashCommand
    elif "ssl_check" in body:
        return None
    elif "type" in body:
        shape = Envelope
    else:
        return "not a slash command, an interaction or an event"
    try:
        shape.model_validate(body)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the payload"
        return f"{where}: {first['msg']}"
    return None


def unstorable(value: Any) -> str | None:
    """Why ``value`` cannot be stored as it is (the inbox keeps every request): a NUL
    character (PostgreSQL's text and jsonb refuse it) or a lone surrogate (not UTF-8)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            if "\x00" in item:
                return "a NUL character (U+0000)"
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    return "a lone surrogate, which is not UTF-8"
    return None
