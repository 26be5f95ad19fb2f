"""Recognise read-only checks and rollback steps in the shell commands of a Markdown runbook.

The runbook importer (:mod:`bot.runbook.parser`) hands every fenced code block and every piece of
inline code in a checklist item to :func:`scan_script`. Each command line is tokenised with
:mod:`shlex` (never run by a shell) and matched against a few well-known tools: ``curl``,
``kubectl rollout status|undo``, ``aws dynamodb describe-continuous-backups``, ``nc``, ``dig``,
``openssl s_client``, ``psql -c "SELECT 1"`` and ``redis-cli PING``; deploy steps from
``kubectl set image``, ``aws ecs update-service`` and ``aws lambda update-alias``. Whatever a
command leaves to the shell (``$VAR``, ``${VAR}``, ``$(...)``) is kept as written and reported
as unresolved.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from bot.domain.checklist import slugify
from bot.runbook.recognisers import (
    Finding,
    FoundProbe,
    FoundRollback,
    FoundStep,
    Skipped,
    recognise,
)
from bot.runbook.shell import Command, Pipeline, closing, find_variables, wordset


@dataclass(frozen=True)
class SuggestedProbe:
    """A probe suggested from a command in the runbook; not active until copied into the config.

    Attributes:
        kind: ``"http"``, ``"tcp"``, ``"dns"``, ``"tls"``, ``"sql"``, ``"kubernetes"`` or ``"aws"``.
        target: What it checks, for people ("mail.yourdomain.com:25", "MX yourdomain.com").
        source_line: 1-based line of the command in the Markdown.
        spec: The probe definition in the configuration's schema.
        unresolved: Shell variables and command substitutions kept as written, to fill in.
        command: The command line as written, joined over backslash continuations.
        name: Its name in the import's ``suggested_probes`` (and in items' ``probe`` links).
    """

    kind: str
    target: str
    source_line: int
    spec: dict[str, Any]
    unresolved: tuple[str, ...]
    command: str
    name: str = ""


@dataclass(frozen=True)
class SuggestedRollback:
    """A rollback target suggested from a ``kubectl rollout undo`` in the runbook."""

    kind: str
    spec: dict[str, Any]
    source_line: int

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "spec": copy.deepcopy(self.spec),
            "source_line": self.source_line,
        }


@dataclass(frozen=True)
class SuggestedStep(SuggestedRollback):
    """A deploy step suggested from ``kubectl set image``, ``aws ecs update-service`` or
    ``aws lambda update-alias`` in the runbook (for a ``deploy:`` plan)."""


@dataclass
class Findings:
    """What a script yielded: probes, rollbacks and (line, note) pairs for what was skipped."""

    probes: list[SuggestedProbe] = field(default_factory=list)
    rollback: list[SuggestedRollback] = field(default_factory=list)
    notes: list[tuple[int, str]] = field(default_factory=list)
    steps: list[SuggestedStep] = field(default_factory=list)

    def extend(self, other: Findings) -> None:
        self.probes += other.probes
        self.rollback += other.rollback
        self.notes += other.notes
        self.steps += other.steps

    @property
    def recognised(self) -> bool:
        return bool(self.probes or self.rollback or self.steps)


def name_probes(probes: list[SuggestedProbe]) -> list[tuple[SuggestedProbe, SuggestedProbe]]:
    """Each probe with a copy named after what it checks (``http-api-example-com-health``).

    What the shell would fill in is left out of the name; a repeated name gets ``-2``, ``-3``.
    """
    seen: set[str] = set()
    named = []
    for probe in probes:
        target = probe.target
        for variable in find_variables(target):
            target = target.replace(variable, " ")
        target = re.sub(r"^[a-z]+://", "", target)
        base = slugify(f"{probe.kind} {target}")[:60].rstrip("-")
        name, n = base, 2
        while name in seen:
            name, n = f"{base}-{n}", n + 1
        seen.add(name)
        named.append((probe, dataclasses.replace(probe, name=name)))
    return named


_OPERATOR_CHARS = "|&;<>"
_REDIRECTIONS = wordset("> >> < >& <& &> &>> <> >| <<<")
_PIPES = wordset("| |&")
# Words that may precede the command proper on a line ("if curl ...; then", "sudo kubectl ...").
_PREFIX_WORDS = wordset("if then else elif do while until ! { time sudo")
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
_PLACEHOLDER = re.compile("\x00(\\d+)\x00")
# Command substitutions are scanned for commands too, but only this deep: nesting costs a
# re-scan per level, and a pathological "$($($(..." line must stay linear.
_MAX_SUBSTITUTION_DEPTH = 3


def scan_script(code: str, first_line: int) -> Findings:
    """Find suggested probes and rollbacks in a shell script.

    Args:
        code: The script (a fenced block's content, or one inline code span).
        first_line: The 1-based Markdown line of the script's first line.

    Returns:
        The probes, rollbacks and skipped-command notes, in line order.
    """
    findings = Findings()
    # Not splitlines(): "\x0c" and friends must not shift the line numbers.
    lines = code.replace("\x00", "\ufffd").split("\n")
    i = 0
    while i < len(lines):
        line_no = first_line + i
        command, i = _join_continuations(lines, i)
        if command.startswith("$ "):  # a console prompt
            command = command[2:].lstrip()
        if not command or command.startswith("#"):
            continue
        words, substitutions = _tokenise(command)
        findings.extend(_scan_words(words, substitutions, command, line_no, depth=0))
        delimiter = _heredoc_delimiter(words)
        if delimiter is not None:  # the heredoc's body is data, not commands
            while i < len(lines) and lines[i].strip() != delimiter:
                i += 1
            i += 1
    return findings


def _join_continuations(lines: list[str], i: int) -> tuple[str, int]:
    """The command starting at ``lines[i]`` over its continuation lines, and the next index."""
    parts = [lines[i].strip()]
    while _continues(parts[-1]) and i + 1 < len(lines):
        if parts[-1].endswith("\\"):
            parts[-1] = parts[-1][:-1].rstrip()
        i += 1
        parts.append(lines[i].strip())
    return " ".join(p for p in parts if p), i + 1


def _continues(line: str) -> bool:
    if line.startswith("#"):
        return False
    trailing_backslashes = len(line) - len(line.rstrip("\\"))
    return trailing_backslashes % 2 == 1 or line.endswith(("|", "&&"))


def _heredoc_delimiter(words: list[str]) -> str | None:
    for op, word in itertools.pairwise(words):
        if op in ("<<", "<<-") and word:
            return word.lstrip("-")
    return None


def _scan_words(
    words: list[str], substitutions: list[str], command: str, line_no: int, depth: int
) -> Findings:
    findings = Findings()
    for pipeline in _pipelines(words):
        for index, words_of_command in enumerate(pipeline):
            result = recognise(words_of_command, pipeline[index + 1 :], pipeline)
            _record(findings, result, line_no, command)
    if depth < _MAX_SUBSTITUTION_DEPTH:
        for substitution in substitutions:  # "response=$(curl ...)" runs curl too
            if substitution.startswith("$("):
                inner = substitution[2:].removesuffix(")")
            else:
                inner = substitution[1:].removesuffix("`")
            # Recorded against the whole line: that is the command the reader finds.
            findings.extend(_scan_words(*_tokenise(inner), command, line_no, depth + 1))
    return findings


def _record(findings: Findings, result: Finding, line_no: int, command: str) -> None:
    if isinstance(result, FoundProbe):
        texts = [result.target, *_strings(result.spec)]
        unresolved = tuple(dict.fromkeys(v for t in texts for v in find_variables(t)))
        findings.probes.append(
            SuggestedProbe(result.kind, result.target, line_no, result.spec, unresolved, command)
        )
        if result.note:
            findings.notes.append((line_no, result.note))
    elif isinstance(result, FoundRollback):
        findings.rollback.append(SuggestedRollback("kubernetes", result.spec, line_no))
    elif isinstance(result, FoundStep):
        findings.steps.append(SuggestedStep(result.spec["kind"], result.spec, line_no))
        if result.note:
            findings.notes.append((line_no, f"{result.spec['kind']} deploy step: {result.note}"))
    elif isinstance(result, Skipped):
        findings.notes.append((line_no, result.reason))


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for each in value.values():
            yield from _strings(each)
    elif isinstance(value, list):
        for each in value:
            yield from _strings(each)


# --- tokenising -------------------------------------------------------------------------


def _tokenise(command: str) -> tuple[list[str], list[str]]:
    """Shell words and operators of one line, plus its top-level command substitutions.

    Substitutions are swapped for placeholders before :mod:`shlex` sees the line, so that
    ``https://$(cd infra && pulumi stack output apiUrl)/api`` stays one word, then put back.
    """
    masked, substitutions = _mask(command)
    lexer = shlex.shlex(masked, posix=True, punctuation_chars=_OPERATOR_CHARS)
    lexer.whitespace_split = True
    lexer.commenters = ""  # _mask already cut the comment, without breaking "url#anchor"
    try:
        words = list(lexer)
    except ValueError:  # an unbalanced quote: read the words as they stand
        words = masked.split()

    def restore(match: re.Match[str]) -> str:
        index = int(match.group(1))
        return substitutions[index] if index < len(substitutions) else ""

    return [_PLACEHOLDER.sub(restore, word) for word in words], substitutions


def _mask(line: str) -> tuple[str, list[str]]:
    """Replace command substitutions by placeholders, drop a trailing comment and fd numbers."""
    out: list[str] = []
    substitutions: list[str] = []
    quote = ""
    i = 0
    while i < len(line):
        char = line[i]
        at_word_start = i == 0 or line[i - 1].isspace()
        if quote == "'":
            quote = "" if char == "'" else quote
        elif char == "\\":
            out.append(line[i : i + 2])
            i += 2
            continue
        elif line.startswith("$(", i) or char == "`":
            end = closing(line, i)
            out.append(f"\x00{len(substitutions)}\x00")
            substitutions.append(line[i:end])
            i = end
            continue
        elif char in "\"'":
            quote = "" if quote == char else (quote or char)
        elif not quote and char == "#" and at_word_start:
            break
        elif not quote and char.isdigit() and at_word_start:
            digits = len(line[i:]) - len(line[i:].lstrip("0123456789"))
            if line.startswith((">", "<"), i + digits):  # "2>/dev/null": the 2 is no argument
                i += digits
                continue
        out.append(char)
        i += 1
    return "".join(out), substitutions


def _pipelines(words: list[str]) -> Iterator[Pipeline]:
    """Split words into pipelines of simple commands, dropping redirections and heredocs."""
    pipeline: Pipeline = []
    command: Command = []
    skip_next = False
    for word in words:
        if skip_next:
            skip_next = False
        elif word in _REDIRECTIONS or word.startswith("<<"):
            skip_next = True
        elif word in _PIPES:
            pipeline.append(command)
            command = []
        elif word and all(c in _OPERATOR_CHARS for c in word):  # || && ; & and the like
            pipeline.append(command)
            yield [_command_proper(c) for c in pipeline]
            pipeline, command = [], []
        else:
            command.append(word)
    pipeline.append(command)
    yield [_command_proper(c) for c in pipeline]


def _command_proper(words: Command) -> Command:
    i = 0
    while i < len(words) and (words[i] in _PREFIX_WORDS or _ASSIGNMENT.match(words[i])):
        i += 1
    return words[i:]
