"""``deploybot audit export``: the audit log as JSON Lines or CSV, streamed."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, TextIO

import typer

from bot.cli.common import DatabaseOption, app, database_call, err, require_schema, user_errors
from bot.domain.errors import DeployError

if TYPE_CHECKING:
    from bot.storage.history import AuditRow

audit_app = typer.Typer(no_args_is_help=True, help="The audit log.")
app.add_typer(audit_app, name="audit")

COLUMNS = ("session_id", "environment", "service", "version", "actor", "event", "time", "detail")


@audit_app.command("export")
def export(
    since: Annotated[
        str, typer.Option("--since", help="First day (or time) to export: 2026-11-01.")
    ],
    environment: Annotated[
        str | None, typer.Option("--environment", "-e", help="Only this environment.")
    ] = None,
    fmt: Annotated[
        Literal["jsonl", "csv"], typer.Option("--format", "-f", help="jsonl or csv.")
    ] = "jsonl",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here (default: stdout).")
    ] = None,
    database_url: DatabaseOption = None,
) -> None:
    """Export the audit log from a date on, one row per audited event, oldest first.

    Rows are streamed from the database (a server-side cursor on PostgreSQL), so a year of
    history never sits in memory: session id, environment, service, version, actor, event,
    time (UTC, ISO 8601) and the event's detail as JSON.
    """
    from bot.ops.settings import get_settings
    from bot.storage.db import make_engine
    from bot.storage.history import audit_rows

    url = database_url or get_settings().database_url
    with user_errors():
        start = _since(since)
        engine = make_engine(url)
        try:
            require_schema(engine, url, given=database_url is not None)
            with _opened(output) as sink:
                count = database_call(
                    lambda: write_rows(
                        audit_rows(engine, since=start, environment=environment), sink, fmt
                    ),
                    url,
                )
        finally:
            engine.dispose()
    where = f" to {output}" if output else ""
    err.print(f"Exported {count} audit event(s){where}.", highlight=False)


def write_rows(rows: Iterable[AuditRow], sink: TextIO, fmt: str) -> int:
    """Write ``rows`` as they come (one line each); return how many."""
    writer = csv.writer(sink) if fmt == "csv" else None
    if writer is not None:
        writer.writerow(COLUMNS)
    count = 0
    for row in rows:
        values = (
            row.session_id,
            row.environment,
            row.service,
            row.version,
            row.actor,
            row.event,
            row.at.astimezone(UTC).isoformat(),
        )
        if writer is not None:
            detail = json.dumps(row.detail, sort_keys=True, default=str)
            writer.writerow([*("" if v is None else v for v in values), detail])
        else:
            record = dict(zip(COLUMNS, (*values, row.detail), strict=True))
            sink.write(json.dumps(record, default=str) + "\n")
        count += 1
    sink.flush()
    return count


def _since(text: str) -> datetime:
    """``2026-11-01`` (midnight UTC) or an ISO time; a naive time is UTC."""
    try:
        parsed = (
            datetime.fromisoformat(text)
            if "T" in text or " " in text
            else datetime.combine(date.fromisoformat(text), datetime.min.time())
        )
    except ValueError:
        raise DeployError(
            f"--since '{text}' is not a date: write it as 2026-11-01 (or 2026-11-01T09:00)."
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@contextmanager
def _opened(output: Path | None) -> Iterator[TextIO]:
    if output is None:
        yield sys.stdout
        return
    try:
        sink = output.open("w", encoding="utf-8", newline="")
    except OSError as error:
        raise DeployError(f"can't write {output}: {error.strerror}") from None
    with sink:
        yield sink
