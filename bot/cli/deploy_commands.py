"""``deploybot deploy plan``: what a deploy's steps would do, without doing it."""

from __future__ import annotations

from typing import Annotated

import typer

from bot.cli.common import ConfigOption, deploy_app, escape, out, user_errors


@deploy_app.command("plan")
def deploy_plan(
    env: Annotated[str, typer.Argument(help="Environment.")],
    version: Annotated[str, typer.Argument(help="The version to deploy.")],
    service: Annotated[str, typer.Option("--service", "-s", help="The service.")] = "",
    config: ConfigOption = None,
) -> None:
    """Print each deploy step: the patch it would send, the command it would run."""
    from bot.app.deploy_plan import plan_steps
    from bot.config.loader import load_config

    with user_errors():
        on_failure, steps = plan_steps(load_config(config), env, version, service=service)
    for step in steps:
        out.print(f"{step.number}. {escape(step.name)}", highlight=False)
        for line in step.does:
            out.print("   " + escape(line).replace("\n", "\n   "), highlight=False)
    out.print(on_failure, highlight=False)
