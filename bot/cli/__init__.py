"""The ``deploybot`` command line. Each command prints one clear line on error, no traceback.

One module per family of commands; importing them registers them on :data:`app`.
"""

from __future__ import annotations

from bot.cli import (  # noqa: F401  (registers the commands)
    audit_commands,
    config_commands,
    database_commands,
    deploy_commands,
    probe_commands,
    sandbox_command,
    serve,
)
from bot.cli.common import app


def main() -> None:
    app()


__all__ = ["app", "main"]
