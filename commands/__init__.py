"""Thin Bolt listeners: acknowledge at once, parse, hand the command to the bus, answer.

:func:`register` wires every listener into an app; each module holds one family of
module-level listener functions, which find their dependencies in Bolt's context. One
error handler turns errors written for people into ephemeral answers.
"""

from __future__ import annotations

from slack_bolt import App

from commands import checklist, deploy, incident, lifecycle, queue, steps
from commands.deps import Deps, answer_error


def register(app: App, deps: Deps) -> None:
    app.middleware(deps.middleware)
    app.error(answer_error)
    deploy.register(app)
    checklist.register(app)
    lifecycle.register(app)
    incident.register(app)
    steps.register(app)
    queue.register(app)


__all__ = ["Deps", "register"]
