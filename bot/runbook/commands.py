"""Recognise read-only checks and rollback steps in the shell commands of a Markdown runbook.

The runbook importer (:mod:`bot.runbook.parser`) hands every fenced code block and every piece of
inline code in a checklist item to :func:`scan_script`. Each command line is tokenised with
:mod:`shlex` (never run by a shell) and matched against a few well-known tools: ``curl``,
``kubectl rollout status|undo``, ``aws dynamodb describe-continuous-backups``, ``nc``, ``dig``,
``openssl s_client``, ``psql -c "SELECT 1"`` and ``redis-cli PING``. Whatever a command leaves to
the shell (``$VAR``, ``${VAR}``, ``$(...)``) is kept as written and reported as unresolved.
"""

from __future__ import annotations

import itertools
import re
import shlex
from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple


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
    """

    kind: str
    target: str
    source_line: int
    spec: dict[str, Any]
    unresolved: tuple[str, ...]
    command: str


@dataclass(frozen=True)
class SuggestedRollback:
    """A rollback target suggested from a ``kubectl rollout undo`` in the runbook."""

    kind: str
    spec: dict[str, Any]
    source_line: int


@dataclass
class Findings:
    """What a script yielded: probes, rollbacks and (line, note) pairs for what was skipped."""

    probes: list[SuggestedProbe] = field(default_factory=list)
    rollback: list[SuggestedRollback] = field(default_factory=list)
    notes: list[tuple[int, str]] = field(default_factory=list)

    def extend(self, other: Findings) -> None:
        self.probes += other.probes
        self.rollback += other.rollback
        self.notes += other.notes

    @property
    def recognised(self) -> bool:
        return bool(self.probes or self.rollback)


class _Probe(NamedTuple):
    kind: str
    target: str
    spec: dict[str, Any]
    note: str = ""  # what the probe leaves out, for the skipped notes


class _Rollback(NamedTuple):
    spec: dict[str, Any]


class _Skip(NamedTuple):
    reason: str


_Result = _Probe | _Rollback | _Skip | None
Command = list[str]  # one simple command's words, redirections removed
Pipeline = list[Command]  # commands joined by "|"


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_OPERATOR_CHARS = "|&;<>"
_REDIRECTIONS = _words("> >> < >& <& &> &>> <> >| <<<")
_PIPES = _words("| |&")
# Words that may precede the command proper on a line ("if curl ...; then", "sudo kubectl ...").
_PREFIX_WORDS = _words("if then else elif do while until ! { time sudo")
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
_PLACEHOLDER = re.compile("\x00(\\d+)\x00")
_SIMPLE_VARIABLE = re.compile(r"\$(?:\{[^}]*\}?|[A-Za-z_][A-Za-z0-9_]*|[0-9!@#?*$-])")
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


def find_variables(text: str) -> tuple[str, ...]:
    """Every ``$VAR``, ``${VAR}``, ``$(...)`` and backquoted substitution in ``text``, in order."""
    found: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("$(", i) or text[i] == "`":
            end = _closing(text, i)
        else:
            match = _SIMPLE_VARIABLE.match(text, i)
            end = match.end() if match else i + 1
        if end > i + 1 and text[i:end] not in found:
            found.append(text[i:end])
        i = end
    return tuple(found)


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
            result = _recognise(words_of_command, pipeline[index + 1 :], pipeline)
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


def _record(findings: Findings, result: _Result, line_no: int, command: str) -> None:
    if isinstance(result, _Probe):
        texts = [result.target, *_strings(result.spec)]
        unresolved = tuple(dict.fromkeys(v for t in texts for v in find_variables(t)))
        findings.probes.append(
            SuggestedProbe(result.kind, result.target, line_no, result.spec, unresolved, command)
        )
        if result.note:
            findings.notes.append((line_no, result.note))
    elif isinstance(result, _Rollback):
        findings.rollback.append(SuggestedRollback("kubernetes", result.spec, line_no))
    elif isinstance(result, _Skip):
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
            end = _closing(line, i)
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


def _closing(text: str, start: int) -> int:
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


def _options(words: Command, with_value: Container[str]) -> tuple[dict[str, str], list[str]]:
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


def _first(options: dict[str, str], *names: str) -> str | None:
    return next((options[n] for n in names if options.get(n)), None)


def _port(text: str) -> int | str | None:
    """A port number, or the ``$VAR`` it is written as; None when neither."""
    if text.isdigit() and 0 < int(text) < 65536:
        return int(text)
    return text if find_variables(text) else None


# --- recognisers --------------------------------------------------------------------------

_Recogniser = Callable[[Command, list[Command], Pipeline], _Result]


def _recognise(words: Command, after: list[Command], pipeline: Pipeline) -> _Result:
    if not words:
        return None
    program = words[0].rsplit("/", 1)[-1]
    recogniser = _RECOGNISERS.get(program)
    return recogniser(words[1:], after, pipeline) if recogniser else None


_CURL_VALUE_OPTIONS = _words(
    "-o -w -H -d -X -u -A -e -b -c -F -T -m -x -E -K -r -Y -y -z -C -Q --output "
    "--write-out --header --data --data-raw --data-binary --data-urlencode --request "
    "--user --user-agent --referer --cookie --cookie-jar --form --upload-file "
    "--max-time --connect-timeout --proxy --cert --key --cacert --resolve --retry "
    "--retry-delay --config --range --url"
)
_CURL_SENDS = _words(
    "-d -F -T --data --data-raw --data-binary --data-urlencode --form --upload-file"
)


def _curl(args: Command, after: list[Command], pipeline: Pipeline) -> _Result:
    options, positional = _options(args, _CURL_VALUE_OPTIONS)
    candidates = [u for u in (options.get("--url"), *positional) if u]
    url = next((u for u in candidates if _looks_like_url(u)), None)
    if url is None:
        return None
    method = (_first(options, "-X", "--request") or "GET").upper()
    if method not in ("GET", "HEAD"):
        return _Skip(f"curl -X {method} is not a read-only check")
    if _CURL_SENDS & options.keys():
        return _Skip("curl that sends data is not a read-only check")
    return _Probe("http", url, {"kind": "http", "url": url, "expect_status": [200]})


def _looks_like_url(word: str) -> bool:
    # "$API_URL/health" may well be an http URL; it is flagged as unresolved either way.
    return word.lower().startswith(("http://", "https://")) or word.startswith("$")


_KUBECTL_VALUE_OPTIONS = _words(
    "-n --namespace --context --cluster --kubeconfig --timeout -l --selector --revision "
    "--to-revision -o --output -s --server --user"
)
_DEPLOYMENT_WORDS = _words("deployment deployments deploy deployment.apps")


def _kubectl(args: Command, after: list[Command], pipeline: Pipeline) -> _Result:
    options, positional = _options(args, _KUBECTL_VALUE_OPTIONS)
    if positional[:1] != ["rollout"] or len(positional) < 3:
        return None
    action, resource = positional[1], positional[2]
    if action not in ("status", "undo"):
        return None
    kind, _, name = resource.partition("/")
    if not name and len(positional) > 3:  # "kubectl rollout status deployment auth"
        name = positional[3]
    if kind.lower() not in _DEPLOYMENT_WORDS or not name:
        return _Skip(f"kubectl rollout {action} of {resource}: only deployments are supported")
    namespace = _first(options, "-n", "--namespace") or "default"
    cluster = {"context": options["--context"]} if options.get("--context") else {}
    if action == "undo":
        return _Rollback(
            {"kind": "kubernetes", "deployment": name, "namespace": namespace, **cluster}
        )
    spec = {"kind": "kubernetes", "check": "rollout", "deployment": name, "namespace": namespace}
    return _Probe("kubernetes", f"deployment/{name} -n {namespace}", {**spec, **cluster})


def _aws(args: Command, after: list[Command], pipeline: Pipeline) -> _Result:
    options, positional = _options(args, {"--table-name", "--region", "--profile", "--output"})
    table = options.get("--table-name")
    if positional[:2] != ["dynamodb", "describe-continuous-backups"] or not table:
        return None
    spec = {"kind": "aws", "check": "dynamodb_pitr", "table": table}
    if options.get("--region"):
        spec["region"] = options["--region"]
    return _Probe("aws", f"{table} (DynamoDB point-in-time recovery)", spec)


_NC_VALUE_OPTIONS = _words("-w -i -p -s -q -x -X -O -I -T -V -M")


def _nc(args: Command, after: list[Command], pipeline: Pipeline) -> _Result:
    _, positional = _options(args, _NC_VALUE_OPTIONS)
    if len(positional) < 2 or (port := _port(positional[1])) is None:
        return None
    return _tcp(positional[0], port)


def _tcp(host: str, port: int | str) -> _Probe:
    spec: dict[str, Any] = {"kind": "tcp", "host": host, "port": port}
    if port == 25:  # an SMTP server greets with 220 before anything is sent
        spec["expect_banner"] = "220"
    return _Probe("tcp", f"{host}:{port}", spec)


_RECORD_TYPES = _words("A AAAA MX TXT CNAME NS SOA PTR SRV CAA DS DNSKEY ANY")
_PROBED_RECORD_TYPES = _words("A AAAA CNAME MX NS TXT SRV CAA SOA PTR")  # the dns probe's


def _dig(args: Command, after: list[Command], pipeline: Pipeline) -> _Result:
    options, positional = _options(args, _words("-t -p -b -f -k -q -c -y -x"))
    words = [w for w in positional if not w.startswith(("+", "@"))]
    types = [w.upper() for w in words if w.upper() in _RECORD_TYPES]
    names = [w for w in words if w.upper() not in _RECORD_TYPES]
    name = options.get("-q") or (names[0] if names else None)
    if not name:
        return None
    record_type = (options.get("-t") or (types[0] if types else "A")).upper()
    if record_type not in _PROBED_RECORD_TYPES:
        return _Skip(f"dig {record_type} {name}: the dns probe does not check {record_type}")
    spec: dict[str, Any] = {"kind": "dns", "name": name, "record_type": record_type}
    nameserver = next((w[1:] for w in positional if w.startswith("@") and len(w) > 1), None)
    if nameserver:
        spec["nameserver"] = nameserver
    if after and after[0][:1] == ["grep"]:
        grep_options, patterns = _options(after[0][1:], {"-e", "-m", "-A", "-B", "-C"})
        pattern = grep_options.get("-e") or (patterns[0] if patterns else None)
        if pattern and "-v" not in grep_options:
            spec["contains"] = pattern
    return _Probe("dns", f"{record_type} {name}", spec)


def _openssl(args: Command, after: list[Command], pipeline: Pipeline) -> _Result:
    options, positional = _options(args, {"-connect", "-servername", "-CAfile", "-cert", "-key"})
    connect = options.get("-connect")
    if positional[:1] != ["s_client"] or not connect:
        return None
    host, _, port_text = connect.rpartition(":") if ":" in connect else (connect, "", "443")
    port = _port(port_text)
    if not host or port is None:
        return None
    checkend = _checkend(pipeline)
    if checkend is None:  # a plain handshake, e.g. the IMAPS check: the port answers
        return _Probe("tcp", f"{host}:{port}", {"kind": "tcp", "host": host, "port": port})
    spec = {"kind": "tls", "host": host, "port": port, "min_days": checkend // 86400}
    if options.get("-servername", host) != host:  # SNI for a name other than the address
        spec["server_name"] = options["-servername"]
    return _Probe("tls", f"{host}:{port}", spec)


def _checkend(pipeline: Pipeline) -> int | None:
    for words in pipeline:
        for flag, value in itertools.pairwise(words):
            if flag == "-checkend" and value.isdigit():
                return int(value)
    return None


_PSQL_VALUE_OPTIONS = _words(
    "-h --host -d --dbname -U --username -p --port -c --command -f --file -o --output -v --set"
)
_SELECT_ONE = re.compile(r"\s*select\s+1\s*;?\s*", re.IGNORECASE)


def _psql(args: Command, after: list[Command], pipeline: Pipeline) -> _Result:
    options, positional = _options(args, _PSQL_VALUE_OPTIONS)
    query = _first(options, "-c", "--command")
    if query is None:
        return None  # an interactive session, not a check
    if not _SELECT_ONE.fullmatch(query):
        return _Skip(f"psql query {query!r} not suggested: only SELECT 1 is known to be read-only")
    where = [f"-h {host}" for host in [_first(options, "-h", "--host")] if host]
    where += [f"-d {db}" for db in [_first(options, "-d", "--dbname")] if db]
    where += positional[:1]  # a database name or connection URI
    target = "SELECT 1" + (f" ({' '.join(where)})" if where else "")
    return _Probe("sql", target, {"kind": "sql", "url_env": "DATABASE_URL", "query": "SELECT 1"})


_REDIS_VALUE_OPTIONS = _words("-h -p -a -n -u -s -r -i --user --pass --cacert --cert --key")


def _redis_cli(args: Command, after: list[Command], pipeline: Pipeline) -> _Result:
    options, positional = _options(args, _REDIS_VALUE_OPTIONS)
    if [w.upper() for w in positional] != ["PING"]:
        return None
    if "-u" in options:
        return _Skip("redis-cli -u URL not suggested: the URL may hold a password")
    host = options.get("-h") or "localhost"
    port = _port(options.get("-p") or "6379")
    if port is None:
        return None
    spec = {"kind": "tcp", "host": host, "port": port, "send": "PING\r\n", "expect_banner": "PONG"}
    note = ""
    if "-a" in options or "--pass" in options:  # never copied: secrets live in the environment
        note = (
            "redis-cli password (-a) not copied into the probe; a server that requires AUTH "
            "answers its PING with NOAUTH"
        )
    return _Probe("tcp", f"{host}:{port}", spec, note)


_RECOGNISERS: dict[str, _Recogniser] = {
    "curl": _curl,
    "kubectl": _kubectl,
    "aws": _aws,
    "nc": _nc,
    "ncat": _nc,
    "netcat": _nc,
    "dig": _dig,
    "openssl": _openssl,
    "psql": _psql,
    "redis-cli": _redis_cli,
}
