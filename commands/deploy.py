"""The ``/deploy`` slash command and its subcommands."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk.errors import SlackApiError

from bot.app.report import report_markdown
from bot.app.sessions import describe_lock
from bot.domain import DeploySession
from bot.domain.commands import Abort
from bot.domain.errors import DeployError, NotFound
from bot.rendering.session import help_blocks, list_blocks, status_blocks
from commands.deps import Deps, in_background, replying_errors, tell

USAGE = (
    "Usage: `/deploy start <env> [service] [version]` · `status [id]` · `list` · `probe [id]` · "
    "`abort [id] [reason]` · `report [id]` · `lock <env> [reason]` · `unlock <env>` · `help`"
)


class UsageError(DeployError):
    def __init__(self, problem: str) -> None:
        super().__init__(f"{problem}\n{USAGE}")


@dataclass(frozen=True)
class Invocation:
    user_id: str
    args: list[str]
    respond: Respond


Handler = Callable[[Deps, Invocation], None]


def register(app: App, deps: Deps) -> None:
    def handle_deploy(ack: Ack, command: dict[str, Any], respond: Respond) -> None:
        ack()  # within Slack's 3 seconds; the work below runs after the response is sent
        words = (command.get("text") or "").split()
        sub, args = (words[0].lower(), words[1:]) if words else ("help", [])
        handler = SUBCOMMANDS.get(sub)
        if handler is None:
            tell(respond, f":warning: Unknown subcommand `{sub}`.\n{USAGE}")
            return
        call = Invocation(command["user_id"], args, respond)
        replying_errors(respond, lambda: handler(deps, call))

    app.command("/deploy")(handle_deploy)


def start(deps: Deps, call: Invocation) -> None:
    if not call.args or len(call.args) > 3:
        raise UsageError(
            "`/deploy start` takes an environment, then optionally a service and version."
        )
    env, service, version = (call.args + ["", ""])[:3]
    session = deps.service.open(
        environment=env, user_id=call.user_id, service=service, version=version
    )
    assert session.id is not None
    try:
        channel, _ = deps.publisher.post(session)
    except SlackApiError as error:
        # The session is open and audited; only its messages are missing. Say so plainly.
        raise DeployError(
            f"Deploy #{session.id} is open, but Slack refused its checklist message "
            f"({error.response.get('error')}): is the bot in the environment's channel? "
            f"`/deploy status {session.id}` works meanwhile; `/deploy abort {session.id}` frees it."
        ) from None
    tell(call.respond, f"Opened deploy #{session.id} of {session.title} in <#{channel}>.")


def status(deps: Deps, call: Invocation) -> None:
    session = _session_arg(deps, call)
    call.respond(
        blocks=status_blocks(session, now=datetime.now(UTC)),
        text=f"Deploy #{session.id}: {session.state.label}",
        response_type="ephemeral",
        replace_original=False,
    )


def list_open(deps: Deps, call: Invocation) -> None:
    if call.args:
        raise UsageError("`/deploy list` takes no arguments.")
    sessions = deps.service.list_open()
    call.respond(
        blocks=list_blocks(sessions, now=datetime.now(UTC)),
        text=f"{len(sessions)} open deploy(s)",
        response_type="ephemeral",
        replace_original=False,
    )


def probe(deps: Deps, call: Invocation) -> None:
    session = _session_arg(deps, call)
    assert session.id is not None
    run_probes(deps, session.id, call.respond)


def run_probes(deps: Deps, session_id: int, respond: Respond) -> None:
    """Start a probe round in the background; say so now, and say how it went after."""
    session = deps.service.get(session_id)
    if not any(item.probe for _, item in session.checklist.walk()):
        tell(
            respond,
            f"Deploy #{session_id} has no probes: none are configured for {session.environment}.",
        )
        return
    if session.state.is_closed:
        raise DeployError(
            f"Deploy #{session_id} is {session.state.label}: its probes no longer run."
        )
    tell(respond, f":hourglass_flowing_sand: Running the probes of deploy #{session_id}…")

    def work() -> None:
        outcome = deps.probes.run(session_id, why="a manual run")
        failed = [r for r in outcome.results if not r.ok]
        lines = [f"• *{r.name}* ({r.severity.value}): {r.summary}" for r in failed[:10]]
        verdict = f"{len(outcome.results) - len(failed)}/{len(outcome.results)} probes passed"
        tell(
            respond,
            f"Deploy #{session_id}: {verdict}." + ("\n" + "\n".join(lines) if lines else ""),
        )

    in_background(deps, respond, work)


def abort(deps: Deps, call: Invocation) -> None:
    session_id, rest = _id_and_rest(deps, call)
    reason = " ".join(rest)
    if not reason:
        raise UsageError("Say why: `/deploy abort [id] <reason>`.")
    deps.service.act(session_id, Abort(reason), call.user_id)
    deps.publisher.changed(session_id)
    tell(call.respond, f"Aborted deploy #{session_id}: {reason}")


def report(deps: Deps, call: Invocation) -> None:
    session = _session_arg(deps, call)
    assert session.id is not None
    service = deps.service
    text = report_markdown(session, service.history(session.id), service.probe_runs(session.id))
    # Slack shows Markdown-ish text; a report longer than a message goes as a snippet in a
    # code block, cut to Slack's 40,000-character text limit.
    call.respond(
        text=f"```{text[:39_000]}```",
        response_type="ephemeral",
        replace_original=False,
    )


def lock(deps: Deps, call: Invocation) -> None:
    if not call.args:
        raise UsageError("`/deploy lock` takes an environment and optionally a reason.")
    env, reason = call.args[0], " ".join(call.args[1:])
    held = deps.service.lock(environment=env, user_id=call.user_id, reason=reason)
    tell(call.respond, ":lock: " + describe_lock(held))


def unlock(deps: Deps, call: Invocation) -> None:
    if len(call.args) != 1:
        raise UsageError("`/deploy unlock` takes one environment.")
    deps.service.unlock(environment=call.args[0], user_id=call.user_id)
    tell(call.respond, f":unlock: {call.args[0]} is unlocked.")


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
    "help": show_help,
}


def _session_arg(deps: Deps, call: Invocation) -> DeploySession:
    session_id, rest = _id_and_rest(deps, call)
    if rest:
        raise UsageError(f"Unexpected `{' '.join(rest)}` after the session id.")
    return deps.service.get(session_id)


def _id_and_rest(deps: Deps, call: Invocation) -> tuple[int, list[str]]:
    """The session id from ``#12`` or ``12``; without one, the only open session."""
    if call.args and call.args[0].lstrip("#").isdigit():
        return int(call.args[0].lstrip("#")), call.args[1:]
    open_sessions = deps.service.list_open()
    if len(open_sessions) == 1 and open_sessions[0].id is not None:
        return open_sessions[0].id, call.args
    if not open_sessions:
        raise NotFound("There is no open deploy. Give a session id, e.g. `/deploy status 12`.")
    ids = ", ".join(f"#{s.id} ({s.title})" for s in open_sessions)
    raise NotFound(
        f"Several deploys are open: {ids}. Say which, e.g. `/deploy status {open_sessions[0].id}`."
    )
