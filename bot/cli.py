"""The ``deploybot`` command line. Each command prints one clear line on error, no traceback."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.tree import Tree

from bot.domain.errors import DeployError
from bot.ops.logs import LogFormat

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
db_app = typer.Typer(no_args_is_help=True, help="The database: migrations.")
config_app = typer.Typer(no_args_is_help=True, help="The YAML configuration.")
checklist_app = typer.Typer(no_args_is_help=True, help="Checklists and Markdown runbooks.")
probes_app = typer.Typer(no_args_is_help=True, help="Probes: an environment's read-only checks.")
app.add_typer(db_app, name="db")
app.add_typer(config_app, name="config")
app.add_typer(checklist_app, name="checklist")
app.add_typer(probes_app, name="probes")

T = TypeVar("T")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="Config file (default: $DEPLOYBOT_CONFIG or deploybot.yaml)."
    ),
]
DatabaseOption = Annotated[
    str | None,
    typer.Option("--database-url", help="Database URL (default: $DATABASE_URL or SQLite)."),
]


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn errors written for people into one red line and exit status 1."""
    try:
        yield
    except DeployError as error:
        err.print(f"[red]error:[/red] {error}", highlight=False, markup=True)
        raise typer.Exit(1) from None


@db_app.command("upgrade")
def db_upgrade(database_url: DatabaseOption = None) -> None:
    """Create or migrate the database schema to the latest version."""
    from bot.ops.settings import get_settings
    from bot.storage.db import upgrade

    url = database_url or get_settings().database_url
    with user_errors():
        head = _database_call(lambda: upgrade(url), url)
    out.print(f"Database is at revision {head}.")


@config_app.command("check")
def config_check(file: Annotated[Path | None, typer.Argument(help="Config file.")] = None) -> None:
    """Validate a config file; print every error with its location."""
    from bot.config.loader import check_config, load_config, summarize

    problems = check_config(file)
    if problems:
        for problem in problems:
            err.print(problem, highlight=False, markup=False)
        err.print(f"{len(problems)} error(s).", style="red")
        raise typer.Exit(1)
    config = load_config(file)
    for warning in config.warnings:
        err.print(f"warning: {warning}", highlight=False, markup=False)
    out.print(summarize(config), highlight=False)


@config_app.command("reference")
def config_reference() -> None:
    """Print the reference of every config and checklist key (Markdown), from the schema."""
    from bot.config.reference import config_reference as reference

    sys.stdout.write(reference())


@checklist_app.command("import")
def checklist_import(
    runbook: Annotated[Path, typer.Argument(help="A Markdown runbook.")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of YAML.")] = False,
) -> None:
    """Turn a Markdown runbook into a checklist (YAML, or JSON with --json).

    Exits 1, writing nothing, when the runbook holds no checklist item or is a YAML file.
    """
    from bot.runbook.parser import import_runbook

    with user_errors():
        text = _read(runbook)
        _refuse_yaml(runbook, text)
    result = import_runbook(text)
    for line in result.summary_lines():
        err.print(line, highlight=False, markup=False)
    if not result.checklist.item_count:
        err.print(
            f"[red]error:[/red] no checklist items found in {_escape(str(runbook))}: "
            "an item is a Markdown task line, like '- [ ] Run the migrations'.",
            highlight=False,
        )
        raise typer.Exit(1)
    rendered = json.dumps(result.to_json(), indent=2) + "\n" if as_json else result.to_yaml()
    if output is None:
        sys.stdout.write(rendered)
    else:
        output.write_text(rendered, encoding="utf-8")
        err.print(f"Wrote {output}.")


@checklist_app.command("show")
def checklist_show(
    env: Annotated[str, typer.Argument(help="Environment.")], config: ConfigOption = None
) -> None:
    """Show an environment's checklist in the terminal, exactly as a deploy session posts it."""
    from bot.app.sessions import session_checklist
    from bot.config.loader import checklist_warnings, load_config
    from bot.domain.checklist import ChecklistItem

    with user_errors():
        cfg = load_config(config)
        environment = cfg.environment(env)
        checklist = session_checklist(cfg, env)
        warnings = checklist_warnings(cfg, env)
    tree = Tree(f"[bold]{checklist.title}[/bold] ({env}, {checklist.item_count} items)")

    def add(node: Tree, item: ChecklistItem) -> None:
        probe = f" [cyan]\\[probe: {item.probe}][/cyan]" if item.probe else ""
        child = node.add(f"☐ [dim]{item.id}[/dim] {_escape(item.text)}{probe}")
        for each in item.children:
            add(child, each)

    for section in checklist.sections:
        gate = ""
        if section.gate and not section.gate.is_open_always:
            gate = (
                " [yellow](gated: "
                + ", ".join(section.gate.after + section.gate.signoffs)
                + ")[/yellow]"
            )
        node = tree.add(f"[bold]{_escape(section.title)}[/bold]{gate}")
        for item in section.items:
            add(node, item)
    out.print(tree)
    if environment.signoffs:
        roles = ", ".join(s.role for s in environment.signoffs)
        out.print(f"Sign-offs required: {roles}", highlight=False)
    for warning in warnings:
        err.print(f"warning: {warning}", highlight=False, markup=False)


@app.command("report")
def report(
    session_id: Annotated[int, typer.Argument(help="Deploy session id.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="md or json.")] = "md",
    config: ConfigOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Print a deploy session's report (Markdown or JSON)."""
    from bot.app.report import report_json, report_markdown
    from bot.runtime import build_runtime

    if fmt not in ("md", "json"):
        err.print("error: --format is md or json.", style="red")
        raise typer.Exit(2)
    with user_errors():
        runtime = build_runtime(config_path=config, database_url=database_url)
        service = runtime.service
        session = _database_call(lambda: service.get(session_id), runtime.database_url)
        history, runs = service.history(session_id), service.probe_runs(session_id)
    if fmt == "json":
        sys.stdout.write(json.dumps(report_json(session, history, runs), indent=2) + "\n")
    else:
        sys.stdout.write(report_markdown(session, history, runs))


@probes_app.command("run")
def probes_run(
    env: Annotated[str, typer.Argument(help="Environment.")],
    config: ConfigOption = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-j", min=1, max=256, help="Probes run at a time.")
    ] = 32,
) -> None:
    """Run an environment's probes now; exit 1 when a critical one fails, 2 when it has none."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from bot.config.loader import load_config
    from bot.domain.checklist import Severity
    from bot.integrations.probes import ProbeResult, run_probes
    from bot.integrations.probes.select import environment_probes

    with user_errors():
        probes = environment_probes(load_config(config), env)
    if not probes:
        err.print(
            f"Environment '{env}' has no probes: list some under its 'probes' "
            "or link them from checklist items.",
            highlight=False,
        )
        raise typer.Exit(2)

    def mark(result: ProbeResult) -> str:
        if result.ok:
            return "[green]passed[/green]"
        colour = "red" if result.severity is Severity.CRITICAL else "yellow"
        return f"[{colour}]failed[/{colour}]"

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
    )

    def landed(result: ProbeResult) -> None:
        progress.console.print(
            f"{mark(result)} {_escape(result.name)}: {_escape(result.summary)}", highlight=False
        )
        progress.advance(task)

    with progress:
        task = progress.add_task(f"Probing {_escape(env)}", total=len(probes))
        results = run_probes(probes, concurrency=concurrency, on_result=landed)

    table = Table(title=f"Probes of {_escape(env)}", title_justify="left")
    for column in ("probe", "kind", "result", "summary", "duration", "severity"):
        table.add_column(column, overflow="fold")
    for result in results:
        table.add_row(
            _escape(result.name),
            result.kind,
            mark(result),
            _escape(result.summary),
            f"{result.duration * 1000:.0f} ms",
            result.severity.value,
        )
    out.print(table)
    failed = [r for r in results if not r.ok]
    critical = [r for r in failed if r.severity is Severity.CRITICAL]
    err.print(
        f"{len(results) - len(failed)} passed, {len(failed)} failed ({len(critical)} critical).",
        highlight=False,
    )
    if critical:
        raise typer.Exit(1)


@app.command("serve")
def serve(
    config: ConfigOption = None,
    log_format: Annotated[
        LogFormat,
        typer.Option(
            "--log-format",
            envvar="DEPLOYBOT_LOG_FORMAT",
            help="json: one JSON object per line, with the session id; text: for a terminal.",
        ),
    ] = LogFormat.JSON,
) -> None:
    """Run the bot: Socket Mode when SLACK_APP_TOKEN is set, else HTTP on $PORT."""
    import logging
    import os
    import signal
    import time
    from typing import Any

    from bot.domain.errors import ConfigError
    from bot.ops.logs import configure_logging
    from bot.ops.settings import get_settings
    from bot.server import HttpServing, create_bot, serve_http, serve_socket_mode

    settings = get_settings()
    try:
        bot = create_bot(settings, config_path=config)
    except ConfigError as error:
        for problem in error.problems:
            err.print(problem, highlight=False, markup=False)
        err.print("error: the config is invalid; deploybot will not start.", style="red")
        raise typer.Exit(1) from None
    except DeployError as error:
        err.print(f"[red]error:[/red] {error}", highlight=False)
        raise typer.Exit(1) from None
    # Formatted logs from here on; a refusal to start above stays one line for a person.
    configure_logging(log_format)
    log = logging.getLogger("deploybot")
    # SIGTERM (Kubernetes stopping the pod) stops it as Ctrl-C does: gracefully.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    bot.start()
    http: HttpServing | None = None
    socket_mode: Any = None
    try:
        if settings.slack_app_token:
            log.info("deploybot: Socket Mode")
            socket_mode = serve_socket_mode(
                bot, app_token=settings.slack_app_token, health_port=settings.port, block=False
            )
        else:
            http = HttpServing(serve_http(bot, host=settings.host, port=settings.port))
            log.info(
                "deploybot: listening on %s:%s (/slack/events, /healthz, /readyz, /metrics)",
                settings.host,
                http.port,
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
        typer.Option("--dir", help="Keep the database here (default: a temporary directory)."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log the bot's work.")] = False,
) -> None:
    """Try deploybot without Slack: the bot, a local Slack with a page, PagerDuty, Kubernetes."""
    import gc
    import logging
    import signal
    import time

    from bot.domain.errors import ConfigError

    try:
        from sandbox.app import Sandbox, SandboxOptions
    except ImportError as missing:  # installed without the extra, or from the Docker image
        err.print(
            f"error: the sandbox is not installed ({missing.name} is missing): "
            "pip install -e '.[sandbox]' from deploybot's source tree.",
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
    options = SandboxOptions(config=config, port=port, directory=directory)
    try:
        running = Sandbox(options).start()
    except ConfigError as error:
        for problem in error.problems:
            err.print(problem, highlight=False, markup=False)
        err.print("error: the config is invalid; the sandbox will not start.", style="red")
        raise typer.Exit(1) from None
    except DeployError as error:
        err.print(f"[red]error:[/red] {error}", highlight=False)
        raise typer.Exit(1) from None
    what = f"config {config}" if config else "the demo (examples/sandbox)"
    try:  # from here on, a Ctrl-C (even during the prints) stops every part
        out.print(f"deploybot sandbox: running {what}; open {running.url}", highlight=False)
        out.print("Press Ctrl-C to stop.", highlight=False)
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
    # Everything is closed; what is left is the interpreter's teardown, whose collections walk
    # the ~130,000 objects the imports made: over a second of CPU, many seconds on a loaded
    # machine. Frozen objects are left out of those collections.
    gc.freeze()


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _refuse_yaml(path: Path, text: str) -> None:
    """A YAML checklist is no runbook to import: it is used as it is."""
    import yaml

    is_yaml = path.suffix.lower() in (".yaml", ".yml")
    with suppress(yaml.YAMLError):  # a runbook is seldom valid YAML, never one with sections
        data = yaml.safe_load(text)
        is_yaml = is_yaml or (isinstance(data, dict) and "sections" in data)
    if is_yaml:
        raise DeployError(
            f"{path} is a YAML checklist, not a Markdown runbook: point an environment's "
            "'checklist' at it as it is (deploybot config check tells whether it loads)."
        )


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        raise DeployError(f"can't read {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise DeployError(f"{path} is not UTF-8 text") from None


def _database_call(call: Callable[[], T], url: str) -> T:
    """Run ``call``; an unreachable database becomes one line saying which and what to do."""
    from sqlalchemy.exc import OperationalError

    try:
        return call()
    except OperationalError as error:
        reason = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
        raise DeployError(
            f"can't reach the database ({_redact_url(url)}): {reason}. "
            "Check DATABASE_URL and that the server is up."
        ) from None


def _redact_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
