"""Command probe: run a configured argv (never a shell); check its exit status and output."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import time

from bot.config.probe_specs import CommandProbe
from bot.integrations.probes.base import ProbeContext, ProbeOutcome
from bot.ops.redact import redact

SHOWN = 1000


def check(spec: CommandProbe, ctx: ProbeContext) -> ProbeOutcome:
    """Run ``spec.argv`` with only the variables ``spec.env`` names, stdin closed.

    The argv comes from the configuration alone and runs without a shell. The command
    sees no other variable (not even ``PATH`` unless named; without it ``argv[0]`` is
    looked up in ``/bin:/usr/bin``). It runs in a process group of its own; when it
    outlives ``spec.timeout`` the whole group is killed. The variables' values are
    registered for redaction.

    Args:
        spec: The probe as configured.
        ctx: Where the variables come from.

    Returns:
        Passed when the exit status is ``expect_exit`` and, if given, ``output_pattern``
        matches stdout and stderr together.

    Raises:
        ProbeConfigError: A named variable is unset.
    """
    env = {name: ctx.env(name) for name in spec.env}
    timeout = spec.timeout.total_seconds()
    command = shlex.join(spec.argv)
    started = time.monotonic()
    try:
        process = subprocess.Popen(
            spec.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group: a timeout kills its children too
        )
    except OSError as error:
        return ProbeOutcome(False, f"cannot run {spec.argv[0]}: {error.strerror}", command)
    try:
        raw, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        raw = _kill_group(process)
        detail = _detail(command, None, raw, ctx.secrets)
        return ProbeOutcome(False, f"timed out after {timeout:g}s", detail)
    elapsed_ms = (time.monotonic() - started) * 1000
    output = raw.decode(errors="replace")
    detail = _detail(command, process.returncode, raw, ctx.secrets)
    if process.returncode != spec.expect_exit:
        summary = f"exit {process.returncode} (expected {spec.expect_exit})"
        return ProbeOutcome(False, summary, detail)
    if spec.output_pattern is not None and not re.search(spec.output_pattern, output, re.M):
        return ProbeOutcome(False, f"output does not match /{spec.output_pattern}/", detail)
    return ProbeOutcome(True, f"exit {process.returncode} in {elapsed_ms:.0f} ms", detail)


def _kill_group(process: subprocess.Popen[bytes]) -> bytes:
    """Kill the command's process group; what it wrote before."""
    with contextlib.suppress(ProcessLookupError):  # it ended on its own meanwhile
        os.killpg(process.pid, signal.SIGKILL)
    try:
        return process.communicate(timeout=1)[0]
    except subprocess.TimeoutExpired:  # a descendant left the group and holds the pipe open
        if process.stdout:
            process.stdout.close()
        process.wait()
        return b""


def _detail(command: str, status: int | None, raw: bytes, secrets: list[str]) -> str:
    output = raw.decode(errors="replace")
    # Redact before cutting: a cut through a secret would leave a part no pattern knows.
    # The tail read is far longer than what is shown, so a secret cut there is not shown.
    tail = redact(output[-64 * SHOWN :], secrets=secrets)
    shown = tail[-SHOWN:]  # the end of the output says why a command failed
    head = f"$ {command}" + (f"\nexit {status}" if status is not None else "")
    return head + ("\n" + ("…" if len(output) > SHOWN else "") + shown if shown else "")
