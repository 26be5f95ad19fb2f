"""The ``/deploy`` slash command and its subcommands."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from slack_bolt import Ack, App, BoltContext, Respond

from bot.app.environments import describe_lock
from bot.app.queue import DeployQueueService
from bot.config.freezes import upcoming
from bot.domain import DeploySession, inputs
from bot.domain.commands import (
    Abort,
    ChangeVersion,
    OverrideFreeze,
    RequestProbes,
    SignRetrospective,
)
from bot.domain.errors import DeployError, NotFound, SlotTaken
from bot.rendering.checklist import channel_link
from bot.rendering.home import queue_blocks
from bot.rendering.listing import LIST_PAGE_SIZE, help_blocks, list_blocks
from bot.rendering.session import status_blocks
from commands import queue
from commands.deps import Deps, deps_of, finishing, parse_id, request_of, tell

QUOTES = "\"'\u201c\u201d\u2018\u2019 "  # around a reason typed in quotes (Slack curls them)
POST_WAIT = 8.0  # seconds /deploy start waits for its checklist to reach Slack
MAX_PAGE = 10_000  # `/deploy list <page>`: beyond any real number of open deploys
NAMED_WHEN_SEVERAL = 5  # open deploys named when a command needs an id and several are open

USAGE = (
    "Usage: `/deploy start <env> [service] [version] [--override <reason>] "
    "[--emergency <reason>] [--queue]` · `status [id]` · "
    "`list [page]` · `probe [id]` · `abort [id] [reason]` · `report [id]` · "
    "`lock <env> [reason]` · `unlock <env>` · `freezes [env]` · `override [id] <reason>` · "
    "`version [id] <version>` · `retrospective [id] [note]` · "
    "`queue [env]` · `queue leave <env>` · "
    "`help`\n" + inputs.LIMITS
)
OPTIONS = ("--override", "--emergency")


class UsageError(DeployError):
    def __init__(self, problem: str) -> None:
        super().__init__(f"{problem}\n{USAGE}")


@dataclass(frozen=True)
class Invocation:
    user_id: str
    args: list[str]
    respond: Respond
    request: str | None = None  # the inbox key: marked done with the change it asks for
    response_url: str | None = None
    subcommand: str = "status"  # as typed, lower-cased: examples in answers use it


Handler = Callable[[Deps, Invocation], None]


def deploy(ack: Ack, command: dict[str, Any], respond: Respond, context: BoltContext) -> None:
    """``/deploy <subcommand> ...``: acknowledged at once, then handled."""
    words = (command.get("text") or "").split()
    sub, args = (words[0].lower(), words[1:]) if words else ("help", [])
    handler = SUBCOMMANDS.get(sub)
    if handler is None:
        raise UsageError(f"Unknown subcommand `{inputs.shown(sub)}`.")
    ack()  # within Slack's 3 seconds; the work below runs after the response is sent
    call = Invocation(
        command["user_id"], args, respond, request_of(context), command.get("response_url"), sub
    )
    handler(deps_of(context), call)


def register(app: App) -> None:
    app.command("/deploy")(finishing(deploy))


def start(deps: Deps, call: Invocation) -> None:
    queued = [a for a in call.args if a.lower() == "--queue"]
    args, reasons = _reason_options([a for a in call.args if a.lower() != "--queue"])
    if not args or len(args) > 3:
        raise UsageError(
            "`/deploy start` takes an environment, then optionally a service and version."
        )
    env, service, version = (args + ["", ""])[:3]
    env = deps.config.environment_named(inputs.name(env, "environment"))
    service = inputs.name(service, "service") if service else ""
    version = inputs.version(version) if version else ""
    try:
        session = deps.service.open(
            environment=env,
            user_id=call.user_id,
            service=service,
            version=version,
            request=call.request,
            override=reasons.get("--override"),
            emergency=reasons.get("--emergency"),
        )
    except SlotTaken as busy:
        if queued:
            tell(call.respond, queue.join(deps, env, service, call.user_id, call.request))
        else:
            queue.offer(call.respond, busy)
        return
    assert session.id is not None
    refused = deps.publisher.failure(session.id, timeout=POST_WAIT)
    if refused is not None:
        # The session is open and audited; only its messages are missing. Say so plainly.
        raise DeployError(
            f"Deploy #{session.id} is open, but Slack refused its checklist message "
            f"({refused}): is the bot in the environment's channel? "
            f"`/deploy status {session.id}` works meanwhile; `/deploy abort {session.id}` frees it."
        )
    channel = deps.config.environment(env).channel
    urgent = " as an :rotating_light: emergency" if session.emergency else ""
    tell(
        call.respond,
        f"Opened deploy #{session.id} of {session.title}{urgent} in {channel_link(channel)}.",
    )


def _reason_options(args: list[str]) -> tuple[list[str], dict[str, str]]:
    """``[... --override some reason] [--emergency another]``: the words before the first
    option, and each option's reason (up to the next option; quotes around it dropped)."""
    marks = [i for i, word in enumerate(args) if word.lower() in OPTIONS]
    reasons: dict[str, str] = {}
    for n, at in enumerate(marks):
        end = marks[n + 1] if n + 1 < len(marks) else len(args)
        option = args[at].lower()
        reason = inputs.free_text(" ".join(args[at + 1 : end]).strip(QUOTES))
        if not reason:
            why = "override the freeze" if option == "--override" else "break glass"
            raise UsageError(f'Say why you {why}: `{option} "reason"`.')
        reasons[option] = reason
    return args[: marks[0]] if marks else args, reasons


def version(deps: Deps, call: Invocation) -> None:
    """Change an open session's version: its sign-offs are withdrawn (audited, announced)."""
    session_id, rest = _id_and_rest(deps, call)
    if len(rest) != 1:
        raise UsageError("Say which version: `/deploy version [id] <version>`.")
    new = inputs.version(rest[0])
    outcome = deps.service.act(session_id, ChangeVersion(new), call.user_id, request=call.request)
    withdrawn = sum(e.kind == "signoff_withdrawn" for e in outcome.events)
    again = f" {withdrawn} sign-off(s) withdrawn: they must be given again." if withdrawn else ""
    tell(call.respond, f"Deploy #{session_id} now deploys version {new}.{again}")


def retrospective(deps: Deps, call: Invocation) -> None:
    """Sign the retrospective an emergency deploy owes, with an optional note."""
    session_id, rest = _id_and_rest(deps, call)
    note = inputs.free_text(" ".join(rest).strip(QUOTES), "note")
    deps.service.act(session_id, SignRetrospective(note), call.user_id, request=call.request)
    tell(call.respond, f":memo: Retrospective of deploy #{session_id} signed.")


def override(deps: Deps, call: Invocation) -> None:
    """Override the change freeze in force for an open session (audited, announced)."""
    session_id, rest = _id_and_rest(deps, call)
    reason = inputs.free_text(" ".join(rest).strip(QUOTES))
    if not reason:
        raise UsageError("Say why: `/deploy override [id] <reason>`.")
    deps.service.act(session_id, OverrideFreeze(reason), call.user_id, request=call.request)
    tell(call.respond, f":snowflake: Deploy #{session_id} may deploy during the freeze: {reason}")


def freezes(deps: Deps, call: Invocation) -> None:
    """The change freezes in force and the next three of each environment (or of one)."""
    if len(call.args) > 1:
        raise UsageError("`/deploy freezes` takes at most an environment.")
    names = (
        [deps.config.environment_named(inputs.name(call.args[0], "environment"))]
        if call.args
        else list(deps.config.environments)
    )
    now = datetime.now(UTC)
    lines = []
    for name in names:
        windows = upcoming(deps.config.environment(name).freezes, now)
        if not windows and call.args:
            lines.append(f"*{name}*: no change freezes are configured or to come.")
        for window in windows:
            icon = ":snowflake: *now*" if window.covers(now) else ":calendar:"
            lines.append(f"{icon} *{name}*: {window.describe()}")
    tell(call.respond, "\n".join(lines) or "No change freezes are configured or to come.")


def status(deps: Deps, call: Invocation) -> None:
    session = _session_arg(deps, call)
    call.respond(
        blocks=status_blocks(session, now=datetime.now(UTC)),
        text=f"Deploy #{session.id}: {session.state.label}",
        response_type="ephemeral",
        replace_original=False,
    )


def list_open(deps: Deps, call: Invocation) -> None:
    """``/deploy list [page]``: a page of the open sessions, read from their summaries."""
    if len(call.args) > 1 or (call.args and not call.args[0].isdigit()):
        raise UsageError("`/deploy list` takes an optional page number: `/deploy list 2`.")
    number = int(call.args[0]) if call.args else 1
    if not 1 <= number <= MAX_PAGE:
        raise UsageError(f"Pages go from 1 to {MAX_PAGE}.")
    page = deps.service.open_page(number, per_page=LIST_PAGE_SIZE)
    waiting = DeployQueueService(deps.service).entries() if number == 1 else []
    call.respond(
        blocks=list_blocks(page, now=datetime.now(UTC))
        + (queue_blocks(waiting) if waiting else []),
        text=f"{page.total} open deploy(s)",
        response_type="ephemeral",
        replace_original=False,
    )


def probe(deps: Deps, call: Invocation) -> None:
    session = _session_arg(deps, call)
    assert session.id is not None
    run_probes(deps, session.id, call.user_id, call.request, call.response_url, call.respond)


def run_probes(
    deps: Deps,
    session_id: int,
    user_id: str,
    request: str | None,
    response_url: str | None,
    respond: Respond,
) -> None:
    """Ask for a probe round: the domain decides who may; the round runs as an effect, and
    its verdict is sent to ``response_url``."""
    session = deps.service.get(session_id)
    if not any(item.probe for _, item in session.checklist.walk()):
        tell(
            respond,
            f"Deploy #{session_id} has no probes: none are configured for {session.environment}.",
        )
        return
    actor = deps.service.actor(user_id)
    command = RequestProbes("a manual run")
    deps.service.handle(session_id, [command], actor, request=request, reply_to=response_url)
    tell(respond, f":hourglass_flowing_sand: Running the probes of deploy #{session_id}…")


def abort(deps: Deps, call: Invocation) -> None:
    session_id, rest = _id_and_rest(deps, call)
    reason = inputs.free_text(" ".join(rest))
    if not reason:
        raise UsageError("Say why: `/deploy abort [id] <reason>`.")
    deps.service.act(session_id, Abort(reason), call.user_id, request=call.request)
    tell(call.respond, f"Aborted deploy #{session_id}: {reason}")


def report(deps: Deps, call: Invocation) -> None:
    """Post the report in the session's thread, as an effect: who may read reports is the
    environment's policy (a refusal is answered here); the asker gets the link when it is
    posted."""
    session = _session_arg(deps, call)
    assert session.id is not None
    deps.service.request_report(
        session.id, call.user_id, request=call.request, reply_to=call.response_url
    )


def lock(deps: Deps, call: Invocation) -> None:
    if not call.args:
        raise UsageError("`/deploy lock` takes an environment and optionally a reason.")
    env = deps.config.environment_named(inputs.name(call.args[0], "environment"))
    reason = inputs.free_text(" ".join(call.args[1:]))
    held = deps.service.lock(
        environment=env, user_id=call.user_id, reason=reason, request=call.request
    )
    tell(call.respond, ":lock: " + describe_lock(held))


def unlock(deps: Deps, call: Invocation) -> None:
    if len(call.args) != 1:
        raise UsageError("`/deploy unlock` takes one environment.")
    env = deps.config.environment_named(inputs.name(call.args[0], "environment"))
    deps.service.unlock(environment=env, user_id=call.user_id, request=call.request)
    tell(call.respond, f":unlock: {env} is unlocked.")


def show_help(deps: Deps, call: Invocation) -> None:
    call.respond(
        blocks=help_blocks(), text=USAGE, response_type="ephemeral", replace_original=False
    )


SUBCOMMANDS: dict[str, Handler] = {
    "start": start,
    "status": status,
    "list": list_open,
    "probe": probe,
    "abort": abort,
    "report": report,
    "lock": lock,
    "unlock": unlock,
    "freezes": freezes,
    "override": override,
    "version": version,
    "retrospective": retrospective,
    "queue": lambda deps, call: queue.show_or_leave(
        deps, call.user_id, call.args, call.respond, call.request
    ),
    "help": show_help,
}


def _session_arg(deps: Deps, call: Invocation) -> DeploySession:
    """The session a command takes only an id for: the one given (``abc`` is no id, not a
    missing one), else the only open one."""
    if call.args:
        session_id, rest = parse_id(call.args[0]), call.args[1:]
    else:
        session_id, rest = _id_and_rest(deps, call)
    if rest:
        raise UsageError(f"Unexpected `{inputs.shown(' '.join(rest))}` after the session id.")
    return deps.service.get(session_id)


def _id_and_rest(deps: Deps, call: Invocation) -> tuple[int, list[str]]:
    """The session id from ``#12`` or ``12``; without one, the only open session."""
    if call.args and call.args[0].lstrip("#")[:1].isdigit():
        return parse_id(call.args[0]), call.args[1:]
    page = deps.service.open_page(1, per_page=NAMED_WHEN_SEVERAL)
    if page.total == 1 and page.summaries:
        only = page.summaries[0].id
        assert only is not None
        return only, call.args
    example = f"`/deploy {call.subcommand} {{}}`"
    if not page.total:
        raise NotFound(
            "There is no open deploy. Give a session id, e.g. " + example.format(12) + "."
        )
    ids = ", ".join(f"#{s.id} ({s.title})" for s in page.summaries)
    if page.total > len(page.summaries):
        ids += f" and {page.total - len(page.summaries)} more (`/deploy list`)"
    first = page.summaries[0].id if page.summaries else 12
    raise NotFound(f"Several deploys are open: {ids}. Say which, e.g. {example.format(first)}.")
