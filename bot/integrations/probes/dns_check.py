"""DNS probe: resolve a name's records; optionally require an answer containing a substring."""

from __future__ import annotations

import time

import dns.exception
import dns.resolver

from bot.config.probe_specs import DnsProbe
from bot.integrations.probes.base import ProbeConfigError, ProbeContext, ProbeOutcome

SHOWN_ANSWERS = 20


def check(spec: DnsProbe, ctx: ProbeContext) -> ProbeOutcome:
    """Ask for ``spec.record_type`` records of ``spec.name``.

    With ``nameserver`` the question goes to that server (and ``port``) alone; otherwise
    to the system's resolvers. The whole resolution, retries included, is bounded by
    ``spec.timeout``. ``contains`` is matched against each answer as DNS writes it
    (``10 mail.example.com.``, ``"v=spf1 ..."``), ignoring case except in TXT records.

    Args:
        spec: The probe as configured.
        ctx: Where the resolver's slot comes from (a DNS probe reads no variables).

    Returns:
        Passed when there are answers and, if asked, one contains ``contains``;
        NXDOMAIN, no answer and timeouts fail with a summary that says which.

    Raises:
        ProbeConfigError: ``nameserver`` is not an IP address, or the system has no
            resolver configuration.
    """
    timeout = spec.timeout.total_seconds()
    resolver = _resolver(spec, timeout)
    where = f"@{spec.nameserver}:{spec.port}" if spec.nameserver else "system resolver"
    question = f"{spec.record_type} {spec.name}"
    target = f"dns:{spec.nameserver}:{spec.port}" if spec.nameserver else "dns:system"
    try:
        with ctx.shared.slot(target):  # the resolver asked is the target
            started = time.monotonic()
            answer = resolver.resolve(spec.name, spec.record_type, lifetime=timeout)
    except dns.resolver.NXDOMAIN:
        return ProbeOutcome(False, f"NXDOMAIN: {spec.name} does not exist", f"{question} {where}")
    except dns.resolver.NoAnswer:
        summary = f"no {spec.record_type} record for {spec.name}"
        return ProbeOutcome(False, summary, f"{question} {where}")
    except dns.exception.Timeout:
        summary = f"timed out after {timeout:g}s asking {where}"
        return ProbeOutcome(False, summary, f"{question} {where}")
    except dns.resolver.NoNameservers as error:
        summary = f"no nameserver answered {question}"
        return ProbeOutcome(False, summary, f"{question} {where}\n{error}")
    elapsed = time.monotonic() - started
    records = sorted(rdata.to_text() for rdata in answer)
    detail = "\n".join(
        [f"{question} {where} (TTL {answer.rrset.ttl if answer.rrset else '?'})"]
        + records[:SHOWN_ANSWERS]
        + ([f"… {len(records) - SHOWN_ANSWERS} more"] if len(records) > SHOWN_ANSWERS else [])
    )
    count = f"{len(records)} {spec.record_type} record{'s' if len(records) != 1 else ''}"
    if spec.contains is None:
        return ProbeOutcome(True, f"{count} in {elapsed * 1000:.0f} ms: {records[0]}", detail)
    found = next((r for r in records if _contains(r, spec.contains, spec.record_type)), None)
    if found is None:
        return ProbeOutcome(False, f"{count}, none contains {spec.contains!r}", detail)
    return ProbeOutcome(True, f"{count} in {elapsed * 1000:.0f} ms: {found}", detail)


def _resolver(spec: DnsProbe, timeout: float) -> dns.resolver.Resolver:
    try:
        if spec.nameserver is None:
            resolver = dns.resolver.Resolver()
        else:
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers = [spec.nameserver]
            resolver.port = spec.port
    except dns.resolver.NoResolverConfiguration as error:
        raise ProbeConfigError(f"no system DNS resolver configured: {error}") from None
    except ValueError:
        raise ProbeConfigError(f"nameserver {spec.nameserver!r} is not an IP address") from None
    resolver.timeout = timeout
    resolver.lifetime = timeout
    return resolver


def _contains(record: str, wanted: str, record_type: str) -> bool:
    if record_type == "TXT":
        return wanted in record
    return wanted.lower() in record.lower()
