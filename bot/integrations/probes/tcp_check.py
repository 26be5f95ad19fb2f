"""TCP probe: connect; optionally send a line and look for a substring in what comes back."""

from __future__ import annotations

import socket
import time

from bot.config.probe_specs import TcpProbe
from bot.integrations.probes.base import ProbeContext, ProbeOutcome

READ_LIMIT = 64 * 1024  # a banner or a one-line reply; never hold more than this
SHOWN = 500


def check(spec: TcpProbe, ctx: ProbeContext) -> ProbeOutcome:
    """Connect to ``host:port``, send ``spec.send`` if given, read until ``expect_banner``.

    A ``send`` without a line ending gets ``\\r\\n`` (it is a line: Redis and SMTP wait for
    the end of the line). Without ``expect_banner`` nothing is read: connecting (and
    sending) is the check. Connecting and reading share one deadline, ``spec.timeout``.

    Args:
        spec: The probe as configured.
        ctx: Where the target's slot comes from (a TCP probe reads no variables).

    Returns:
        Passed when the connection opens and the reply contains ``expect_banner``.
    """
    timeout = spec.timeout.total_seconds()
    target = f"{spec.host}:{spec.port}"
    with ctx.shared.slot(f"{spec.host.lower()}:{spec.port}"):  # not counted in the timeout
        started = time.monotonic()
        deadline = started + timeout
        step = "connecting"
        try:
            with socket.create_connection((spec.host, spec.port), timeout=timeout) as sock:
                connected = time.monotonic() - started
                if spec.send is not None:
                    step = "sending"
                    line = spec.send if spec.send.endswith("\n") else spec.send + "\r\n"
                    sock.settimeout(max(0.001, deadline - time.monotonic()))
                    sock.sendall(line.encode())
                if spec.expect_banner is None:
                    return ProbeOutcome(True, f"connected in {connected * 1000:.0f} ms", target)
                step = f"waiting for {spec.expect_banner!r}"
                received, complete = _read_until(sock, spec.expect_banner.encode(), deadline)
                if not complete:
                    summary = f"timed out after {timeout:g}s {step}"
                    return ProbeOutcome(False, summary, _detail(target, received))
        except TimeoutError:
            return ProbeOutcome(False, f"timed out after {timeout:g}s {step}", target)
        except socket.gaierror as error:
            return ProbeOutcome(False, f"cannot resolve {spec.host}: {error.strerror}", target)
        except OSError as error:
            reason = error.strerror or str(error)
            return ProbeOutcome(False, f"{step} to {target} failed: {reason}", target)
    elapsed = time.monotonic() - started
    reply = received.decode(errors="replace")
    if spec.expect_banner not in reply:
        first = reply.strip().splitlines()[0][:80] if reply.strip() else "nothing"
        summary = f"reply lacks {spec.expect_banner!r}: got {first!r}"
        return ProbeOutcome(False, summary, _detail(target, received))
    lines = (ln for ln in reply.splitlines() if spec.expect_banner in ln)
    line = next(lines, reply).strip()
    return ProbeOutcome(
        True, f"{line[:80]!r} in {elapsed * 1000:.0f} ms", _detail(target, received)
    )


def _read_until(sock: socket.socket, wanted: bytes, deadline: float) -> tuple[bytes, bool]:
    """What arrives until ``wanted`` is in it, the peer closes, or the limit is reached;
    False when the deadline passed first."""
    received = b""
    while wanted not in received and len(received) < READ_LIMIT:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return received, False
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            return received, False
        if not chunk:
            break
        received += chunk
    return received, True


def _detail(target: str, received: bytes) -> str:
    reply = received.decode(errors="replace")
    shown = reply[:SHOWN] + ("…" if len(reply) > SHOWN else "")
    return f"{target}\n{shown}" if shown else target
