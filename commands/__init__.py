"""Thin Bolt listeners: acknowledge at once, parse, call the service layer, reply.

:func:`register` wires every listener into an app; each module holds one family.
"""

from __future__ import annotations

from slack_bolt import App

from commands import checklist, deploy, incident, lifecycle
from commands.deps import Deps


def register(app: App, deps: Deps) -> None:
    deploy.register(app, deps)
    checklist.register(app, deps)
    lifecycle.register(app, deps)
    incident.register(app, deps)


__all__ = ["Deps", "register"]
