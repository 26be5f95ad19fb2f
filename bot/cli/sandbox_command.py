"""``deploybot sandbox``: the bot and everything it talks to, on this machine, no Slack."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bot.cli.common import app, err, escape, out
from bot.domain.errors import DeployError


@app.command("sandbox")
def sandbox(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Run this config with its real probes, not the demo."),
    ] = None,
    port: Annotated[
        int, typer.Option("--port", "-p", min=0, max=65535, help="The page's port (0: any).")
    ] = 3100,
    directory: Annotated[
        Path | None,
        typer.Option(
            "--dir",
            help="Keep the database and the demo's files here, after it stops too; a new run "
            "here starts afresh (default: $XDG_DATA_HOME/deploybot/sandbox, i.e. "
            "~/.local/share/deploybot/sandbox).",
            show_default=False,
        ),
    ] = None,
    temporary: Annotated[
        bool,
        typer.Option("--temporary", help="Use a temporary directory, removed when it stops."),
    ] = False,
    database_url: Annotated[
        str | None,
        typer.Option("--database-url", help="The bot's database (default: sandbox.db in --dir)."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log the bot's work.")] = False,
) -> None:
    """Try deploybot without Slack: the bot, a local Slack with a page, PagerDuty, Kubernetes.

    It prints where its data lives and, when it stops, the command printing a session's report.
    """
    import gc
    import logging
    import signal
    import time

    from bot.domain.errors import ConfigError

    if temporary and directory is not None:
        err.print("error: --dir and --temporary exclude each other.", style="red")
        raise typer.Exit(2)
    try:
        from sandbox.app import Sandbox, SandboxOptions
        from sandbox.demo import default_directory
    except ImportError as missing:  # installed without the extra, or from the Docker image
        err.print(
            f"error: the sandbox is not installed ({missing.name} is missing): "
            "pip install 'deploybot[sandbox]' (or -e '.[sandbox]' in deploybot's source tree).",
            style="red",
        )
        raise typer.Exit(2) from None

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    if not verbose:  # one replica, always the leader: not news here
        logging.getLogger("bot.workers.scheduler").setLevel(logging.ERROR)
    # SIGTERM stops it as cleanly as Ctrl-C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if directory is None and not temporary:
        directory = default_directory()
    options = SandboxOptions(
        config=config, port=port, directory=directory, database_url=database_url
    )
    try:
        running = Sandbox(options).start()
    except ConfigError as error:
        for problem in error.problems:
            err.print(problem, highlight=False, markup=False)
        err.print("error: the config is invalid; the sandbox will not start.", style="red")
        raise typer.Exit(1) from None
    except DeployError as error:
        err.print(f"[red]error:[/red] {escape(str(error))}", highlight=False)
        raise typer.Exit(1) from None
    what = f"config {config}" if config else "the demo"
    try:  # from here on, a Ctrl-C (even during the prints) stops every part
        keeping = "kept when it stops" if running.kept else "removed when it stops"
        # One write: whoever reads the URL line has the rest too, even if Ctrl-C follows.
        out.print(
            f"deploybot sandbox: running {what}; open {running.url}\n"
            f"Its data: {running.database_url} ({keeping}), in {running.directory}.\n"
            "Press Ctrl-C to stop.",
            highlight=False,
        )
        while True:
            # Not one endless wait: the kernel may hand the signal to another thread, and the
            # main thread runs Python's handler only once its wait returns.
            time.sleep(1)
    except KeyboardInterrupt:
        # A second Ctrl-C must not cut the shutdown short; every part's stop is bounded.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        err.print("deploybot sandbox: stopping…")
    finally:
        running.close()
    out.print("deploybot sandbox: stopped.", highlight=False)
    if running.kept:
        out.print(f"A session's report: {running.report_command()}", highlight=False)
    # Everything is closed; what is left is the interpreter's teardown, whose collections walk
    # the ~130,000 objects the imports made: over a second of CPU, many seconds on a loaded
    # machine. Frozen objects are left out of those collections.
    gc.freeze()
