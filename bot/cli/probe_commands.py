"""``deploybot probes run``: an environment's probes, now, in the terminal."""

from __future__ import annotations

from typing import Annotated

import typer

from bot.cli.common import ConfigOption, err, escape, out, probes_app, user_errors


@probes_app.command("run")
def probes_run(
    env: Annotated[str, typer.Argument(help="Environment.")],
    config: ConfigOption = None,
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency",
            "-j",
            min=1,
            envvar="DEPLOYBOT_PROBE_CONCURRENCY",
            help="Most probes run at a time (all of them, up to this).",
        ),
    ] = 256,
    per_host: Annotated[
        int,
        typer.Option(
            "--per-host",
            min=1,
            envvar="DEPLOYBOT_PROBE_PER_HOST",
            help="Most probes talking to one host:port at a time.",
        ),
    ] = 16,
) -> None:
    """Run an environment's probes now; exit 1 when a critical one fails, 2 when it has none."""
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from bot.config.loader import load_config
    from bot.domain.checklist import Severity
    from bot.integrations.probes import ProbeContext, ProbeResult, run_probes
    from bot.integrations.probes.clients import ProbeClients
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

    # Each print under the progress display redraws it: results that land together are
    # printed together, at most ten times a second (200 single prints cost 0.2-0.4 s).
    landed_lines: list[str] = []
    printed = [0.0]

    def print_landed() -> None:
        if landed_lines:
            progress.console.print("\n".join(landed_lines), highlight=False)
            landed_lines.clear()
        printed[0] = time.monotonic()

    def landed(result: ProbeResult) -> None:
        landed_lines.append(f"{mark(result)} {escape(result.name)}: {escape(result.summary)}")
        progress.advance(task)
        if time.monotonic() - printed[0] >= 0.1:
            print_landed()

    with progress:
        task = progress.add_task(f"Probing {escape(env)}", total=len(probes))
        clients = ProbeClients(per_host=per_host)  # one HTTP client and TLS context for all
        try:
            ctx = ProbeContext(clients=clients)
            results = run_probes(probes, ctx=ctx, concurrency=concurrency, on_result=landed)
        finally:
            clients.close()
            print_landed()

    table = Table(title=f"Probes of {escape(env)}", title_justify="left")
    for column in ("probe", "kind", "result", "summary", "duration", "severity"):
        table.add_column(column, overflow="fold")
    for result in results:
        table.add_row(
            escape(result.name),
            result.kind,
            mark(result),
            escape(result.summary),
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
