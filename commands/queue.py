"""The deploy queue and the App Home: ``/deploy queue``, the *Queue me* button offered when
a start finds the slot taken, and ``app_home_opened``."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, BoltContext, Respond
from slack_sdk import WebClient

from bot.app.queue import DeployQueueService
from bot.domain import inputs
from bot.domain.errors import DeployError, SlotTaken
from bot.rendering.home import queue_blocks
from bot.rendering.ids import ActionId, pack
from bot.rendering.session import button, section_block
from bot.slack.home import HomePublisher
from commands.deps import Deps, deps_of, finishing, parse_parts, request_of, tell


def join(deps: Deps, environment: str, service: str, user_id: str, request: str | None) -> str:
    """Queue ``user_id``; the answer that says where they are."""
    place = DeployQueueService(deps.service).join(
        environment=environment, service=service, user_id=user_id, request=request
    )
    title = " ".join(p for p in (environment, service) if p)
    turn = deps.config.environment(environment).queue_turn
    minutes = round(turn.total_seconds() / 60)
    return (
        f":hourglass: You are number {place} in the queue for {title}. When it frees up you "
        f"get a DM and {minutes} min to `/deploy start {title}`. "
        f"`/deploy queue leave {environment}` leaves the queue."
    )


def offer(respond: Respond, busy: SlotTaken) -> None:
    """Answer a start refused because the slot is taken, with a *Queue me* button."""
    value = pack(busy.environment, busy.service)
    respond(
        text=str(busy),
        blocks=[
            section_block(str(busy)),
            {
                "type": "actions",
                "block_id": "queue_offer",
                "elements": [button("Queue me", ActionId.QUEUE_JOIN, value, "primary")],
            },
        ],
        response_type="ephemeral",
        replace_original=False,
    )


def queue_me(
    ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond, context: BoltContext
) -> None:
    environment, service = parse_parts(action.get("value") or "", 2, "Queue me button")
    ack()
    deps = deps_of(context)
    environment = deps.config.environment_named(inputs.name(environment, "environment"))
    service = inputs.name(service, "service") if service else ""
    text = join(deps, environment, service, body["user"]["id"], request_of(context))
    tell(respond, text)


def show_or_leave(
    deps: Deps, user_id: str, args: list[str], respond: Respond, request: str | None
) -> None:
    """``/deploy queue [env]`` lists; ``/deploy queue leave <env>`` leaves."""
    if args and args[0].lower() == "leave":
        if len(args) != 2:
            raise DeployError("Say which environment: `/deploy queue leave <env>`.")
        env = deps.config.environment_named(inputs.name(args[1], "environment"))
        DeployQueueService(deps.service).leave(environment=env, user_id=user_id, request=request)
        tell(respond, f"You left the queue for {env}.")
        return
    if len(args) > 1:
        raise DeployError("`/deploy queue` takes at most an environment (or `leave <env>`).")
    only = deps.config.environment_named(inputs.name(args[0], "environment")) if args else None
    entries = DeployQueueService(deps.service).entries(only)
    respond(
        blocks=queue_blocks(entries, only),
        text=f"{len(entries)} queued",
        response_type="ephemeral",
        replace_original=False,
    )


def home_opened(event: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    """Publish the Home of who opened it."""
    if event.get("tab", "home") != "home":
        return
    deps = deps_of(context)
    links = deps.publisher.links
    home = HomePublisher(
        client=client,
        config=deps.config,
        session_factory=deps.service.session_factory,
        roles=deps.service.roles,
        link=links.session if links is not None else (lambda s: None),
    )
    home.publish(str(event["user"]))
    deps.service.done(request_of(context))


def register(app: App) -> None:
    app.action(ActionId.QUEUE_JOIN)(finishing(queue_me))
    app.event("app_home_opened")(home_opened)
