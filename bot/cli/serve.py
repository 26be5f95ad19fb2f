"""``deploybot serve`` and ``deploybot worker``: run the bot, its log one JSON object per line.

``serve`` runs everything in one process by default; ``serve --role web`` only verifies,
records and acknowledges Slack's requests, and ``worker`` does the work (see
:class:`bot.server.Role`).
"""

from __future__ import annotations

import logging
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bot.cli.common import ConfigOption, app, err
from bot.domain.errors import DeployError
from bot.ops.logs import LogFormat

if TYPE_CHECKING:
    from bot.config.schema import Config
    from bot.server import Role


LogFormatOption = Annotated[
    LogFormat,
    typer.Option(
        "--log-format",
        envvar="DEPLOYBOT_LOG_FORMAT",
        help="json: one JSON object per line, with the session id; text: for a terminal.",
    ),
]


class ServeRole(StrEnum):
    ALL = "all"
    WEB = "web"


@app.command("serve")
def serve(
    config: ConfigOption = None,
    log_format: LogFormatOption = LogFormat.JSON,
    role: Annotated[
        ServeRole,
        typer.Option(
            "--role",
            help="all: the web tier and the workers in this process; web: verify, record "
            "and acknowledge Slack's requests only, leaving the work to `deploybot worker`s.",
        ),
    ] = ServeRole.ALL,
) -> None:
    """Run the bot: Socket Mode when SLACK_APP_TOKEN is set, else HTTP on $PORT."""
    from bot.server import Role

    _run(Role(role.value), config, log_format)


@app.command("worker")
def worker(config: ConfigOption = None, log_format: LogFormatOption = LogFormat.JSON) -> None:
    """Run the workers only: the Slack requests `serve --role web` recorded, the outbox and
    the scheduler; /healthz, /readyz and /metrics on $PORT."""
    from bot.server import Role

    _run(Role.WORKER, config, log_format)


def _run(role: Role, config: Path | None, log_format: LogFormat) -> None:
    import os
    import signal
    import time
    from typing import Any

    from bot.domain.errors import ConfigError
    from bot.ops.logs import configure_logging, held_back, replay
    from bot.ops.settings import get_settings
    from bot.server import HttpServing, create_bot, serve_http, serve_socket_mode

    settings = get_settings()
    try:
        # What the libraries log while the settings are checked (Slack's client retrying)
        # is held back: a refusal to start is one printed line for a person, and a start
        # writes it in the configured format.
        with held_back() as early:
            bot = create_bot(settings, config_path=config, role=role)
    except ConfigError as error:
        for problem in error.problems:
            err.print(problem, highlight=False, markup=False)
        err.print("error: the config is invalid; deploybot will not start.", style="red")
        raise typer.Exit(1) from None
    except DeployError as error:
        err.print(f"[red]error:[/red] {error}", highlight=False)
        raise typer.Exit(1) from None
    configure_logging(log_format)  # every line from here on is formatted, libraries' too
    replay(early)
    log = logging.getLogger("deploybot")
    _warn_unset_env(bot.runtime.config, log)
    # SIGTERM (Kubernetes stopping the pod) stops it as Ctrl-C does: gracefully.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    bot.start()
    http: HttpServing | None = None
    socket_mode: Any = None
    try:
        # Every role serves /healthz, /readyz and /metrics on DEPLOYBOT_HOST:PORT (and the
        # drain closes that server); Socket Mode takes Slack's requests over its own
        # connection, one per web process.
        http = HttpServing(serve_http(bot, host=settings.host, port=settings.port))
        where = f"{settings.host}:{http.port}"
        if not role.web:
            log.info("deploybot worker: health on %s (/healthz, /readyz, /metrics)", where)
        elif settings.slack_app_token:
            socket_mode = serve_socket_mode(bot, app_token=settings.slack_app_token, block=False)
            log.info("deploybot: Socket Mode (role %s); health on %s", role.value, where)
        else:
            log.info(
                "deploybot: listening on %s (/slack/events, /healthz, /readyz, /metrics)%s",
                where,
                "" if role.works else "; web only: `deploybot worker` does the work",
            )
        while True:
            # Not one endless wait: the kernel may hand the signal to another thread, and the
            # main thread runs Python's handler only once its wait returns.
            time.sleep(1)
    except KeyboardInterrupt:
        # A second signal must not cut the drain short; the drain itself is bounded.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        log.warning("deploybot: stopping (drain of at most %g s)", settings.drain_timeout)
        if socket_mode is not None:
            socket_mode.close()
        bot.drain(http, timeout=settings.drain_timeout)
        log.warning("deploybot: stopped")
        logging.shutdown()
        # Threads still busy past the deadline (a probe that ignores its timeout) have had
        # their work handed back: they must not keep the process past its grace period.
        os._exit(0)
    except BaseException:
        bot.close()
        raise


def _warn_unset_env(config: Config, log: logging.Logger) -> None:
    """One warning naming every environment variable the config names that is unset: a
    missing routing key would otherwise show only when an incident pages."""
    import os

    from bot.config.env_refs import unset_env_vars

    unset = unset_env_vars(config, os.environ)
    if unset:
        log.warning(
            "environment variables the config names are not set: %s",
            ", ".join(f"{name} ({', '.join(where)})" for name, where in unset.items()),
            extra={"unset_env": sorted(unset), "config": config.source},
        )
