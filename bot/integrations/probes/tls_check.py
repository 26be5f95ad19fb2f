"""TLS probe: a verified handshake, and a certificate that stays valid for ``min_days``."""

from __future__ import annotations

import socket
import ssl
import time
from datetime import UTC, datetime
from pathlib import Path

from bot.config.probe_specs import TlsProbe
from bot.integrations.probes.base import ProbeConfigError, ProbeContext, ProbeOutcome


def check(spec: TlsProbe, ctx: ProbeContext) -> ProbeOutcome:
    """Handshake with ``host:port`` and read the certificate's expiry.

    SNI and the hostname check use ``server_name`` (default: ``host``); the chain is
    verified against ``ca_file`` when given, else the system's trust store. Connecting
    and the handshake share one deadline, ``spec.timeout``.

    Args:
        spec: The probe as configured.
        ctx: Shares the TLS context and the target's slot (a TLS probe reads no variables).

    Returns:
        Passed when the handshake verifies and at least ``min_days`` remain before the
        certificate's notAfter; a failed verification fails with its reason.

    Raises:
        ProbeConfigError: ``ca_file`` is missing or is not a certificate bundle.
    """
    timeout = spec.timeout.total_seconds()
    server_name = spec.server_name or spec.host
    target = f"{spec.host}:{spec.port} (SNI {server_name})"
    context = ctx.shared.made(_context_key(spec.ca_file), lambda: _context(spec.ca_file))
    step = "connecting"
    with ctx.shared.slot(f"{spec.host.lower()}:{spec.port}"):
        started = time.monotonic()  # waiting for the slot is not the target's time
        try:
            with socket.create_connection((spec.host, spec.port), timeout=timeout) as raw:
                step = "in the handshake"
                raw.settimeout(max(0.001, started + timeout - time.monotonic()))
                with context.wrap_socket(raw, server_hostname=server_name) as tls:
                    cert = tls.getpeercert()
                    version = tls.version()
        except ssl.SSLCertVerificationError as error:
            reason = error.verify_message or error.reason or str(error)
            return ProbeOutcome(False, f"certificate verification failed: {reason}", target)
        except ssl.SSLError as error:
            return ProbeOutcome(False, f"TLS handshake failed: {error.reason or error}", target)
        except TimeoutError:
            return ProbeOutcome(False, f"timed out after {timeout:g}s {step}", target)
        except OSError as error:
            return ProbeOutcome(False, f"{step} failed: {error.strerror or error}", target)
    if not cert or "notAfter" not in cert:
        return ProbeOutcome(False, "the server sent no certificate", target)
    not_after = datetime.fromtimestamp(ssl.cert_time_to_seconds(str(cert["notAfter"])), UTC)
    days = (not_after - datetime.now(UTC)).total_seconds() / 86400
    detail = "\n".join(
        [target, f"{version}, notAfter {not_after:%Y-%m-%d %H:%M:%S} UTC"]
        + [f"subject: {_name(cert.get('subject', ()))}", f"issuer: {_name(cert.get('issuer', ()))}"]
    )
    until = f"{not_after:%Y-%m-%d}"
    if days < spec.min_days:
        summary = f"certificate expires in {int(days)} days ({until}), fewer than {spec.min_days}"
        return ProbeOutcome(False, summary, detail)
    return ProbeOutcome(
        True, f"certificate valid for {int(days)} more days (until {until})", detail
    )


def _context_key(ca_file: str | None) -> tuple[str, str | None, int]:
    """One context per CA file as it is now: a replaced bundle is read again."""
    try:
        changed = Path(ca_file).stat().st_mtime_ns if ca_file else 0
    except OSError:
        changed = -1
    return ("tls", ca_file, changed)


def _context(ca_file: str | None) -> ssl.SSLContext:
    if ca_file is None:
        return ssl.create_default_context()
    if not Path(ca_file).is_file():
        raise ProbeConfigError(f"ca_file {ca_file} not found")
    try:
        return ssl.create_default_context(cafile=ca_file)
    except ssl.SSLError as error:
        raise ProbeConfigError(f"ca_file {ca_file} is not a CA bundle: {error}") from None


def _name(rdns: object) -> str:
    """``CN=api.example.com, O=Example`` from ``getpeercert()``'s nested tuples."""
    if not isinstance(rdns, tuple):
        return str(rdns)
    parts = [f"{key}={value}" for rdn in rdns for key, value in rdn]
    return ", ".join(parts)
