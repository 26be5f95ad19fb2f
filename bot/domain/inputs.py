"""What people type, checked once where it comes in: session ids, names, free text.

The limits are the columns' (``bot/storage/models.py`` sizes its columns from here) and the
``/deploy help`` text states them, so SQLite and PostgreSQL refuse the same input with the
same words, before anything is stored: SQLite would keep a 300-character service name that
PostgreSQL refuses, and neither takes an id beyond a 32-bit integer or a NUL character.
"""

from __future__ import annotations

import unicodedata

from bot.domain.errors import DeployError

ID_MAX = 2_147_483_647  # the id columns are 32-bit integers (PostgreSQL's ``integer``)
NAME_MAX = 100  # environment and service names
VERSION_MAX = 200
REASON_MAX = 1_000  # abort, skip and lock reasons
SLACK_ID_MAX = 100  # a person's Slack id, as the audit log's ``actor`` column keeps it

LIMITS = (
    f"Ids are numbers; environment and service names take up to {NAME_MAX} characters, "
    f"versions up to {VERSION_MAX}, reasons up to {REASON_MAX:,}."
)
"""The limits, as ``/deploy help`` states them."""


class InputError(DeployError):
    """Input people typed (or a client sent) that deploybot cannot take; nothing changed."""


def session_id(text: str, what: str = "deploy id") -> int:
    """A session id as people type it (``12``, ``#12``) or as a button carries it.

    Raises:
        InputError: not a plain ASCII decimal number from 1 to :data:`ID_MAX`.
    """
    digits = text.strip().removeprefix("#")
    number = int(digits) if digits.isascii() and digits.isdigit() and len(digits) <= 10 else 0
    if not 0 < number <= ID_MAX:
        raise InputError(f"`{shown(text)}` is not a {what}: give a number such as `12`.")
    return number


def name(text: str, what: str) -> str:
    """An environment or service name: one word of printable characters, at most
    :data:`NAME_MAX` of them.

    Raises:
        InputError: empty, too long, or with spaces or control characters.
    """
    return _word(text, what, NAME_MAX)


def version(text: str) -> str:
    """A version as people write it (``v1.4.2``, a commit, an image tag)."""
    return _word(text, "version", VERSION_MAX)


def free_text(text: str, what: str = "reason", limit: int = REASON_MAX) -> str:
    """Free text such as a reason: stripped, at most ``limit`` characters, no control
    characters other than line breaks and tabs.

    Raises:
        InputError: too long, or with a control character.
    """
    text = text.strip()
    if len(text) > limit:
        raise InputError(f"The {what} is {len(text):,} characters long; the limit is {limit:,}.")
    bad = next((c for c in text if c not in "\n\t" and _control(c)), None)
    if bad is not None:
        raise InputError(f"The {what} contains a control character ({_codepoint(bad)}).")
    return text


def _word(text: str, what: str, limit: int) -> str:
    if not text:
        raise InputError(f"Give a {what}.")
    if len(text) > limit:
        raise InputError(
            f"The {what} `{shown(text)}…` is {len(text):,} characters long; the limit is {limit:,}."
        )
    bad = next((c for c in text if c.isspace() or _control(c)), None)
    if bad is not None:
        raise InputError(f"The {what} `{shown(text)}` contains {_codepoint(bad)}.")
    return text


def _control(char: str) -> bool:
    # Cc: C0/C1 controls (NUL among them); Cs: lone surrogates, which no database can encode.
    return unicodedata.category(char) in ("Cc", "Cs")


def _codepoint(char: str) -> str:
    return f"U+{ord(char):04X}"


def shown(text: str) -> str:
    """Text quoted back to people: short, one line, no control characters, no backticks."""
    cut = "".join(c if not (_control(c) or c.isspace()) else " " for c in text[:40])
    return cut.replace("`", "'")
