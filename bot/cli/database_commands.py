"""Commands on the database: ``db upgrade``, ``sessions`` and ``report``."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from bot.cli.common import (
    ConfigOption,
    DatabaseOption,
    app,
    database_call,
    db_app,
    err,
    open_runtime,
    out,
    redact_url,
    user_errors,
)
from bot.domain.errors import DeployError, NotFound


@db_app.command("upgrade")
def db_upgrade(database_url: DatabaseOption = None) -> None:
    """Create or migrate the database schema to the latest version."""
    from bot.ops.settings import get_settings
    from bot.storage.db import upgrade

    url = database_url or get_settings().database_url
    with user_errors():
        head = database_call(lambda: upgrade(url), url)
    out.print(f"Database is at revision {head}.")


@app.command("sessions")
def sessions(
    show_all: Annotated[
        bool, typer.Option("--all", "-a", help="Closed sessions too, newest first.")
    ] = False,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many.")] = 20,
    config: ConfigOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """List the open deploy sessions (as /deploy list does in Slack), with their ids."""
    from rich.table import Table

    with user_errors():
        runtime = open_runtime(config, database_url)
        found = database_call(
            lambda: runtime.service.list_recent(limit, open_only=not show_all),
            runtime.database_url,
        )
    if not found:
        err.print("No open deploys." if not show_all else "No deploys yet.", highlight=False)
        return
    table = Table(title="Deploys" if show_all else "Open deploys", title_justify="left")
    for column in ("id", "environment", "title", "state", "requester", "opened"):
        table.add_column(column, overflow="fold")
    for each in found:
        table.add_row(
            str(each.id),
            each.environment,
            each.title,
            each.state.value,
            each.requester,
            each.opened_at.isoformat(timespec="minutes"),
        )
    out.print(table)


@app.command("report")
def report(
    session_id: Annotated[int, typer.Argument(help="Deploy session id.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="md or json.")] = "md",
    config: ConfigOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Print a deploy session's report (Markdown or JSON)."""
    from bot.app.report import report_json, report_markdown

    if fmt not in ("md", "json"):
        err.print("error: --format is md or json.", style="red")
        raise typer.Exit(2)
    with user_errors():
        runtime = open_runtime(config, database_url)
        service = runtime.service
        try:
            session = database_call(lambda: service.get(session_id), runtime.database_url)
        except NotFound:
            where = f" --database-url '{redact_url(database_url)}'" if database_url else ""
            raise DeployError(
                f"No deploy session #{session_id} in {redact_url(runtime.database_url)}: "
                f"`deploybot sessions --all{where}` lists them."
            ) from None
        history, runs = service.history(session_id), service.probe_runs(session_id)
    if fmt == "json":
        sys.stdout.write(json.dumps(report_json(session, history, runs), indent=2) + "\n")
    else:
        sys.stdout.write(report_markdown(session, history, runs))
