"""What the listeners need, built once at start-up and passed in (nothing at import time)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from bot.app.incidents import Incidents
from bot.app.probe_rounds import SessionProbes
from bot.app.rollback import Rollbacks
from bot.app.sessions import DeployService
from bot.config.schema import Config
from bot.domain.errors import DeployError
from bot.slack.publisher import SessionPublisher

log = logging.getLogger("deploybot.commands")


@dataclass(frozen=True)
class Deps:
    service: DeployService
    publisher: SessionPublisher
    config: Config
    probes: SessionProbes
    background: Executor  # slow work (probe rounds) that must not hold Bolt's listener threads
    incidents: Incidents
    rollbacks: Rollbacks
    kick_scheduler: Callable[[], None]


def tell(respond: Callable[..., Any], text: str) -> None:
    """An ephemeral reply to the person who asked, through the request's response_url."""
    respond(text=text, response_type="ephemeral", replace_original=False)


def in_background(deps: Deps, respond: Callable[..., Any], work: Callable[[], None]) -> None:
    """Run ``work`` on the background pool; its errors still reach the person who asked."""
    deps.background.submit(replying_errors, respond, work)


def replying_errors(respond: Callable[..., Any], work: Callable[[], None]) -> None:
    """Run ``work``; errors written for people go back to them, privately."""
    try:
        work()
    except DeployError as error:
        tell(respond, f":warning: {error}")
    except Exception:
        log.exception("listener failed")
        tell(
            respond,
            ":x: Something went wrong inside deploybot (it is logged). "
            "Check `/deploy status` and try again.",
        )
