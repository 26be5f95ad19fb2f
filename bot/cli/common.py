"""What the commands share: the Typer apps, the consoles, the options, one-line errors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console

from bot.domain.errors import DeployError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from bot.runtime import Runtime

HELP = """\
deploybot runs production deploys as shared, audited Slack sessions: a checklist thread,
sign-offs, probes, paging and rollback.

Start with `deploybot sandbox` (no Slack needed), check a configuration with
`deploybot config check`, and run the bot with `deploybot serve`.
"""

app = typer.Typer(no_args_is_help=True, add_completion=False, help=HELP)
db_app = typer.Typer(no_args_is_help=True, help="The database: migrations.")
config_app = typer.Typer(no_args_is_help=True, help="The YAML configuration.")
checklist_app = typer.Typer(no_args_is_help=True, help="Checklists and Markdown runbooks.")
probes_app = typer.Typer(no_args_is_help=True, help="Probes: an environment's read-only checks.")
app.add_typer(db_app, name="db")
app.add_typer(config_app, name="config")
app.add_typer(checklist_app, name="checklist")
app.add_typer(probes_app, name="probes")
deploy_app = typer.Typer(no_args_is_help=True, help="Deploys: what their steps would do.")
app.add_typer(deploy_app, name="deploy")

T = TypeVar("T")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="Config file (default: $DEPLOYBOT_CONFIG or ./deploybot.yaml)."
    ),
]
DatabaseOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="Database URL (default: $DATABASE_URL or sqlite:///deploybot.db).",
    ),
]


def package_version() -> str:
    """deploybot's version, from the installed package's metadata."""
    try:
        return version("deploybot")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _print_version(value: bool) -> None:
    if value:
        out.print(f"deploybot {package_version()}", highlight=False)
        raise typer.Exit()


@app.callback()
def root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print deploybot's version and exit.",
        ),
    ] = False,
) -> None:
    """The commands; `deploybot COMMAND --help` tells more about each."""


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn errors written for people into one red line and exit status 1."""
    try:
        yield
    except DeployError as error:
        err.print(f"[red]error:[/red] {escape(str(error))}", highlight=False, markup=True)
        raise typer.Exit(1) from None


def escape(text: str) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def read_text(path: Path) -> str:
    """A UTF-8 file's text; a file that can't be read is one line saying why.

    Raises:
        DeployError: the file is missing, unreadable or not UTF-8.
    """
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        raise DeployError(f"can't read {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise DeployError(f"{path} is not UTF-8 text") from None


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path``; a file that can't be written is one line saying why.

    Raises:
        DeployError: the folder is missing, or the file can't be written.
    """
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as error:
        raise DeployError(f"can't write {path}: {error.strerror}") from None


def database_call(call: Callable[[], T], url: str) -> T:
    """Run ``call``; an unreachable database becomes one line saying which and what to do."""
    from sqlalchemy.exc import OperationalError

    try:
        return call()
    except OperationalError as error:
        reason = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
        raise DeployError(
            f"can't reach the database ({redact_url(url)}): {reason}. "
            "Check DATABASE_URL and that the server is up."
        ) from None


def require_schema(engine: Engine, url: str, *, given: bool) -> None:
    """Refuse, in one line, a database that is missing or not migrated; create nothing.

    Args:
        engine: the database's engine (not connected yet).
        url: its URL, as the person gave it or the settings hold it.
        given: the URL came from ``--database-url``: the advice repeats it.

    Raises:
        DeployError: the database is unreachable, missing or behind the migrations.
    """
    from bot.storage.db import schema_problem

    problem = database_call(lambda: schema_problem(engine), url)
    if problem is not None:
        flag = f" --database-url '{redact_url(url)}'" if given else ""
        raise DeployError(f"{problem}: run `deploybot db upgrade{flag}` first")


def open_runtime(config: Path | None, database_url: str | None) -> Runtime:
    """The config and database a command reads, both checked (see :func:`require_schema`).

    Raises:
        DeployError: the config is invalid, or the database can't be used as it is.
    """
    from bot.runtime import build_runtime

    runtime = build_runtime(config_path=config, database_url=database_url)
    require_schema(runtime.engine, runtime.database_url, given=database_url is not None)
    return runtime


def redact_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
