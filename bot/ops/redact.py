"""Removes secrets from text before it is stored, posted to Slack or logged."""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "[REDACTED]"

# Each pattern keeps what identifies the secret (the header or key name) and masks the value.
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # Authorization / Proxy-Authorization headers, whatever the scheme.
    (re.compile(r"(?im)^(\s*(?:proxy-)?authorization\s*[:=]\s*).+$"), rf"\1{MASK}"),
    (re.compile(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9\-._~+/]{8,}=*"), rf"\1 {MASK}"),
    # Slack tokens (bot, user, app-level, refresh, config).
    (re.compile(r"\bx(?:ox[abposr]|app|oxe)-[A-Za-z0-9-]{6,}"), MASK),
    # AWS access key IDs and secret keys written as key=value.
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), MASK),
    # user:password@ in URLs.
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@]*):[^\s@/]+@"), rf"\1:{MASK}@"),
    # key=value, key: value, "key": "value" where the key names a secret.
    (
        re.compile(
            r"""(?ix)
            (["']?[\w.-]*(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|
            private[_-]?key|credential|session[_-]?key)[\w.-]*["']?\s*[:=]\s*)
            (?:"[^"]*"|'[^']*'|[^\s,;&}]+)
            """
        ),
        rf"\1{MASK}",
    ),
]


def redact(text: str, *, secrets: Iterable[str] = ()) -> str:
    """``text`` with secrets masked: known patterns, plus the exact ``secrets`` given.

    Pass the values the caller itself used (header values read from the environment, a
    database URL) in ``secrets``: those are masked wherever they appear, whatever their shape.
    """
    for value in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(value, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text
