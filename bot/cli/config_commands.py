"""``deploybot config`` and ``deploybot checklist``: the YAML configuration and checklists."""

from __future__ import annotations

import json
import os
import sys
from contextlib import suppress
from pathlib import Path
from typing import Annotated

import typer
from rich.tree import Tree

from bot.cli.common import (
    ConfigOption,
    checklist_app,
    config_app,
    err,
    escape,
    out,
    read_text,
    user_errors,
    write_text,
)
from bot.domain.errors import DeployError

CHECK_HELP = (
    "Validate a config file; print every error with its location.\n\n"
    "It checks FILE, else the file $DEPLOYBOT_CONFIG names, else ./deploybot.yaml.\n\n"
    "Environment variables the config names (routing_key_env, url_env, headers_from_env, "
    "env lists) that are not set are listed as warnings: the check still passes."
)


@config_app.command("check", help=CHECK_HELP)
def config_check(
    file: Annotated[
        Path | None,
        typer.Argument(
            help="Config file (default: $DEPLOYBOT_CONFIG, else ./deploybot.yaml).",
            show_default=False,
        ),
    ] = None,
    env_file: Annotated[
        Path | None,
        typer.Option(
            "--env-file",
            help="A dotenv file (NAME=value lines) whose variables count as set, besides "
            "this process's environment.",
        ),
    ] = None,
) -> None:
    """Validate a config file, warn of the environment variables it names that are unset."""
    from bot.config.env_refs import unset_env_warnings
    from bot.config.loader import check_config, load_config, summarize

    environ = dict(os.environ)
    if env_file is not None:
        with user_errors():
            environ.update(_dotenv(env_file))
    problems = check_config(file)
    if problems:
        for problem in problems:
            err.print(problem, highlight=False, markup=False)
        err.print(f"{len(problems)} error(s).", style="red")
        raise typer.Exit(1)
    config = load_config(file)
    for warning in [*config.warnings, *unset_env_warnings(config, environ)]:
        err.print(f"warning: {warning}", highlight=False, markup=False)
    out.print(summarize(config), highlight=False)


def _dotenv(path: Path) -> dict[str, str]:
    """The variables a dotenv file sets (``NAME=value``; a bare ``NAME`` sets nothing).

    Raises:
        DeployError: the file can't be read.
    """
    from io import StringIO

    from dotenv import dotenv_values

    text = read_text(path)
    return {k: v for k, v in dotenv_values(stream=StringIO(text)).items() if v is not None}


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
        text = read_text(runbook)
        _refuse_yaml(runbook, text)
    result = import_runbook(text)
    for line in result.summary_lines():
        err.print(line, highlight=False, markup=False)
    if not result.checklist.item_count:
        err.print(
            f"[red]error:[/red] no checklist items found in {escape(str(runbook))}: "
            "an item is a Markdown task line, like '- [ ] Run the migrations'.",
            highlight=False,
        )
        raise typer.Exit(1)
    rendered = json.dumps(result.to_json(), indent=2) + "\n" if as_json else result.to_yaml()
    if output is None:
        sys.stdout.write(rendered)
    else:
        with user_errors():
            write_text(output, rendered)
        err.print(f"Wrote {escape(str(output))}.", highlight=False)


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
        child = node.add(f"☐ [dim]{item.id}[/dim] {escape(item.text)}{probe}")
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
        node = tree.add(f"[bold]{escape(section.title)}[/bold]{gate}")
        for item in section.items:
            add(node, item)
    out.print(tree)
    if environment.signoffs:
        roles = ", ".join(s.role for s in environment.signoffs)
        out.print(f"Sign-offs required: {roles}", highlight=False)
    for warning in warnings:
        err.print(f"warning: {warning}", highlight=False, markup=False)


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
