"""Shell words as the runbook importer reads them (never runs): ``$VAR`` and ``$(...)``
references, options and positional arguments, ports.
"""

from __future__ import annotations

import re
from collections.abc import Container

Command = list[str]  # one simple command's words, redirections removed
Pipeline = list[Command]  # commands joined by "|"


def wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


SIMPLE_VARIABLE = re.compile(r"\$(?:\{[^}]*\}?|[A-Za-z_][A-Za-z0-9_]*|[0-9!@#?*$-])")


def find_variables(text: str) -> tuple[str, ...]:
    """Every ``$VAR``, ``${VAR}``, ``$(...)`` and backquoted substitution in ``text``, in order."""
    found: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("$(", i) or text[i] == "`":
            end = closing(text, i)
        else:
            match = SIMPLE_VARIABLE.match(text, i)
            end = match.end() if match else i + 1
        if end > i + 1 and text[i:end] not in found:
            found.append(text[i:end])
        i = end
    return tuple(found)


def closing(text: str, start: int) -> int:
    """Index just past the ``$(...)`` or backquoted substitution at ``start`` (or the end)."""
    if text[start] == "`":
        end = text.find("`", start + 1)
        return len(text) if end < 0 else end + 1
    depth, quote, i = 0, "", start + 1
    while i < len(text):
        char = text[i]
        if quote:
            quote = "" if char == quote else quote
        elif char == "\\":
            i += 1
        elif char in "\"'":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return len(text)


def split_options(words: Command, with_value: Container[str]) -> tuple[dict[str, str], list[str]]:
    """Split ``words`` (without the program name) into options and positional arguments.

    Options listed in ``with_value`` take the next word (or ``--opt=value``); other words
    starting with ``-`` are flags, kept with the value ``""``.
    """
    options: dict[str, str] = {}
    positional: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        name, equals, value = word.partition("=")
        if equals and (word.startswith("--") or name in with_value):  # "--opt=v", "-n=v"
            options[name] = value
        elif word in with_value:
            options[word] = words[i + 1] if i + 1 < len(words) else ""
            i += 1
        elif word.startswith("-") and len(word) > 1:
            options[word] = ""
        else:
            positional.append(word)
        i += 1
    return options, positional


def first_of(options: dict[str, str], *names: str) -> str | None:
    return next((options[n] for n in names if options.get(n)), None)


def port_of(text: str) -> int | str | None:
    """A port number, or the ``$VAR`` it is written as; None when neither."""
    if text.isdigit() and 0 < int(text) < 65536:
        return int(text)
    return text if find_variables(text) else None
