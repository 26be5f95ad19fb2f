"""Read-only checks the bot runs itself: one module per kind, each with ``check(spec, ctx)``."""

from bot.integrations.probes.base import (
    ProbeContext,
    ProbeOutcome,
    ProbeResult,
    run_probe,
    run_probes,
)

__all__ = ["ProbeContext", "ProbeOutcome", "ProbeResult", "run_probe", "run_probes"]
