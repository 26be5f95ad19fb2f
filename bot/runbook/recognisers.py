"""The tools the runbook importer recognises in a command, and what each suggests: a probe,
a rollback step, or a note saying why a command was skipped.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

from bot.runbook.shell import (
    Command,
    Pipeline,
    first_of,
    port_of,
    split_options,
    wordset,
)


class FoundProbe(NamedTuple):
    kind: str
    target: str
    spec: dict[str, Any]
    note: str = ""  # what the probe leaves out, for the skipped notes


class FoundRollback(NamedTuple):
    spec: dict[str, Any]


class Skipped(NamedTuple):
    reason: str


Finding = FoundProbe | FoundRollback | Skipped | None


# --- recognisers --------------------------------------------------------------------------

_Recogniser = Callable[[Command, list[Command], Pipeline], Finding]


def recognise(words: Command, after: list[Command], pipeline: Pipeline) -> Finding:
    if not words:
        return None
    program = words[0].rsplit("/", 1)[-1]
    recogniser = _RECOGNISERS.get(program)
    return recogniser(words[1:], after, pipeline) if recogniser else None


_CURL_VALUE_OPTIONS = wordset(
    "-o -w -H -d -X -u -A -e -b -c -F -T -m -x -E -K -r -Y -y -z -C -Q --output "
    "--write-out --header --data --data-raw --data-binary --data-urlencode --request "
    "--user --user-agent --referer --cookie --cookie-jar --form --upload-file "
    "--max-time --connect-timeout --proxy --cert --key --cacert --resolve --retry "
    "--retry-delay --config --range --url"
)
_CURL_SENDS = wordset(
    "-d -F -T --data --data-raw --data-binary --data-urlencode --form --upload-file"
)


def _curl(args: Command, after: list[Command], pipeline: Pipeline) -> Finding:
    options, positional = split_options(args, _CURL_VALUE_OPTIONS)
    candidates = [u for u in (options.get("--url"), *positional) if u]
    url = next((u for u in candidates if _looks_like_url(u)), None)
    if url is None:
        return None
    method = (first_of(options, "-X", "--request") or "GET").upper()
    prometheus = _prometheus_query(url, options, method)
    if prometheus is not None:
        return prometheus
    if method not in ("GET", "HEAD"):
        return Skipped(f"curl -X {method} is not a read-only check")
    if _CURL_SENDS & options.keys():
        return Skipped("curl that sends data is not a read-only check")
    return FoundProbe("http", url, {"kind": "http", "url": url, "expect_status": [200]})


# A metric probe suggested from a runbook: the runbook's command shows the query, rarely the
# threshold, so the suggested condition only asks for data and the note says to set one.
_PLACEHOLDER_CONDITION = "result >= 0"
_THRESHOLD_NOTE = (
    "{what}: condition {condition!r} only checks that there is data; set the threshold the "
    "runbook means (e.g. 'result < 0.01')"
)
_PROMETHEUS_API = re.compile(r"(?P<base>.*?)/api/v1/query(?P<range>_range)?/?")


def _prometheus_query(url: str, options: dict[str, str], method: str) -> Finding:
    """``curl …/api/v1/query?query=…`` (or ``-G --data-urlencode query=…``): a prometheus probe."""
    parts = urlsplit(url)
    api = _PROMETHEUS_API.fullmatch(parts.path)
    if api is None:
        return None
    query: str | None = (parse_qs(parts.query).get("query") or [""])[0] or None
    sent = first_of(options, "--data-urlencode", "-d", "--data")
    if query is None and sent and sent.startswith("query="):
        query = sent.removeprefix("query=")
    if not query:
        return None
    if method not in ("GET", "POST"):
        return Skipped(f"curl -X {method} to the Prometheus API is not a query")
    base = parts._replace(path=api["base"], query="", fragment="").geturl()
    return _prometheus(base, query, "curl", bool(api["range"]))


def _prometheus(server: str, query: str, tool: str, ranged: bool = False) -> FoundProbe:
    spec = {"kind": "prometheus", "url": server, "query": query}
    spec["condition"] = _PLACEHOLDER_CONDITION
    note = _THRESHOLD_NOTE.format(what=f"{tool} query {query!r}", condition=spec["condition"])
    if ranged:
        spec["window"] = "5m"
        note += "; a range query: the suggested window is 5m"
    return FoundProbe("prometheus", f"{query} ({server})", spec, note)


def _promtool(args: Command, after: list[Command], pipeline: Pipeline) -> Finding:
    options, positional = split_options(
        args, wordset("--time --start --end --step --format --http.config.file")
    )
    if positional[:1] != ["query"] or len(positional) < 4:
        return None
    action, server, query = positional[1], positional[2], positional[3]
    if action != "instant":
        return Skipped(f"promtool query {action}: only instant queries are suggested as probes")
    if not _looks_like_url(server):
        return None
    if options.get("--time"):
        return Skipped(
            f"promtool query instant --time: a probe queries now, not {options['--time']}"
        )
    return _prometheus(server, query, "promtool")


def _looks_like_url(word: str) -> bool:
    # "$API_URL/health" may well be an http URL; it is flagged as unresolved either way.
    return word.lower().startswith(("http://", "https://")) or word.startswith("$")


_KUBECTL_VALUE_OPTIONS = wordset(
    "-n --namespace --context --cluster --kubeconfig --timeout -l --selector --revision "
    "--to-revision -o --output -s --server --user"
)
_DEPLOYMENT_WORDS = wordset("deployment deployments deploy deployment.apps")


def _kubectl(args: Command, after: list[Command], pipeline: Pipeline) -> Finding:
    options, positional = split_options(args, _KUBECTL_VALUE_OPTIONS)
    if positional[:1] != ["rollout"] or len(positional) < 3:
        return None
    action, resource = positional[1], positional[2]
    if action not in ("status", "undo"):
        return None
    kind, _, name = resource.partition("/")
    if not name and len(positional) > 3:  # "kubectl rollout status deployment auth"
        name = positional[3]
    if kind.lower() not in _DEPLOYMENT_WORDS or not name:
        return Skipped(f"kubectl rollout {action} of {resource}: only deployments are supported")
    namespace = first_of(options, "-n", "--namespace") or "default"
    cluster = {"context": options["--context"]} if options.get("--context") else {}
    if action == "undo":
        return FoundRollback(
            {"kind": "kubernetes", "deployment": name, "namespace": namespace, **cluster}
        )
    spec = {"kind": "kubernetes", "check": "rollout", "deployment": name, "namespace": namespace}
    return FoundProbe("kubernetes", f"deployment/{name} -n {namespace}", {**spec, **cluster})


_AWS_VALUE_OPTIONS = wordset(
    "--table-name --region --profile --output --query --alarm-name-prefix --alarm-names "
    "--state-value --namespace --metric-name --dimensions --statistics --extended-statistics "
    "--period --start-time --end-time --unit"
)


def _aws(args: Command, after: list[Command], pipeline: Pipeline) -> Finding:
    options, positional = split_options(args, _AWS_VALUE_OPTIONS)
    if positional[:1] == ["cloudwatch"]:
        return _cloudwatch(positional[1:], options)
    table = options.get("--table-name")
    if positional[:2] != ["dynamodb", "describe-continuous-backups"] or not table:
        return None
    spec = {"kind": "aws", "check": "dynamodb_pitr", "table": table}
    if options.get("--region"):
        spec["region"] = options["--region"]
    return FoundProbe("aws", f"{table} (DynamoDB point-in-time recovery)", spec)


def _cloudwatch(positional: list[str], options: dict[str, str]) -> Finding:
    region = {"region": options["--region"]} if options.get("--region") else {}
    if positional[:1] == ["describe-alarms"]:
        prefix = options.get("--alarm-name-prefix") or options.get("--alarm-names")
        if not prefix:
            return Skipped(
                "aws cloudwatch describe-alarms without --alarm-name-prefix: name the alarms "
                "the probe watches (alarm_prefix)"
            )
        alarms = {"kind": "aws", "check": "cloudwatch_alarms", "alarm_prefix": prefix, **region}
        return FoundProbe("aws", f"alarms {prefix}* (none in ALARM)", alarms)
    if positional[:1] != ["get-metric-statistics"]:
        return None
    namespace, metric = options.get("--namespace"), options.get("--metric-name")
    if not namespace or not metric:
        return None
    dimensions = dict(
        pair
        for word in [options.get("--dimensions", ""), *positional[1:]]
        for pair in [_dimension(word)]
        if pair is not None
    )
    statistic = options.get("--statistics") or options.get("--extended-statistics") or ""
    spec: dict[str, Any] = {"kind": "cloudwatch_metric", "namespace": namespace, "metric": metric}
    if dimensions:
        spec["dimensions"] = dimensions
    if statistic:
        spec["statistic"] = statistic
    period = options.get("--period", "")
    if period.isdigit() and int(period) > 0:
        spec["period"] = f"{period}s" if int(period) % 60 else f"{int(period) // 60}m"
        spec["window"] = spec["period"] if int(period) >= 300 else "5m"
    spec["condition"] = _PLACEHOLDER_CONDITION
    note = _THRESHOLD_NOTE.format(
        what=f"CloudWatch {namespace} {metric}", condition=spec["condition"]
    )
    return FoundProbe("cloudwatch_metric", f"{namespace} {metric}", {**spec, **region}, note)


def _dimension(word: str) -> tuple[str, str] | None:
    """``Name=LoadBalancer,Value=app/x`` (the CLI's shorthand) as a pair."""
    fields = dict(part.partition("=")[::2] for part in word.split(","))
    if set(fields) == {"Name", "Value"} and fields["Name"] and fields["Value"]:
        return fields["Name"], fields["Value"]
    return None


_NC_VALUE_OPTIONS = wordset("-w -i -p -s -q -x -X -O -I -T -V -M")


def _nc(args: Command, after: list[Command], pipeline: Pipeline) -> Finding:
    _, positional = split_options(args, _NC_VALUE_OPTIONS)
    if len(positional) < 2 or (port := port_of(positional[1])) is None:
        return None
    return _tcp(positional[0], port)


def _tcp(host: str, port: int | str) -> FoundProbe:
    spec: dict[str, Any] = {"kind": "tcp", "host": host, "port": port}
    if port == 25:  # an SMTP server greets with 220 before anything is sent
        spec["expect_banner"] = "220"
    return FoundProbe("tcp", f"{host}:{port}", spec)


_RECORD_TYPES = wordset("A AAAA MX TXT CNAME NS SOA PTR SRV CAA DS DNSKEY ANY")
_PROBED_RECORD_TYPES = wordset("A AAAA CNAME MX NS TXT SRV CAA SOA PTR")  # the dns probe's


def _dig(args: Command, after: list[Command], pipeline: Pipeline) -> Finding:
    options, positional = split_options(args, wordset("-t -p -b -f -k -q -c -y -x"))
    words = [w for w in positional if not w.startswith(("+", "@"))]
    types = [w.upper() for w in words if w.upper() in _RECORD_TYPES]
    names = [w for w in words if w.upper() not in _RECORD_TYPES]
    name = options.get("-q") or (names[0] if names else None)
    if not name:
        return None
    record_type = (options.get("-t") or (types[0] if types else "A")).upper()
    if record_type not in _PROBED_RECORD_TYPES:
        return Skipped(f"dig {record_type} {name}: the dns probe does not check {record_type}")
    spec: dict[str, Any] = {"kind": "dns", "name": name, "record_type": record_type}
    nameserver = next((w[1:] for w in positional if w.startswith("@") and len(w) > 1), None)
    if nameserver:
        spec["nameserver"] = nameserver
    if after and after[0][:1] == ["grep"]:
        grep_options, patterns = split_options(after[0][1:], {"-e", "-m", "-A", "-B", "-C"})
        pattern = grep_options.get("-e") or (patterns[0] if patterns else None)
        if pattern and "-v" not in grep_options:
            spec["contains"] = pattern
    return FoundProbe("dns", f"{record_type} {name}", spec)


def _openssl(args: Command, after: list[Command], pipeline: Pipeline) -> Finding:
    options, positional = split_options(
        args, {"-connect", "-servername", "-CAfile", "-cert", "-key"}
    )
    connect = options.get("-connect")
    if positional[:1] != ["s_client"] or not connect:
        return None
    host, _, port_text = connect.rpartition(":") if ":" in connect else (connect, "", "443")
    port = port_of(port_text)
    if not host or port is None:
        return None
    checkend = _checkend(pipeline)
    if checkend is None:  # a plain handshake, e.g. the IMAPS check: the port answers
        return FoundProbe("tcp", f"{host}:{port}", {"kind": "tcp", "host": host, "port": port})
    spec = {"kind": "tls", "host": host, "port": port, "min_days": checkend // 86400}
    if options.get("-servername", host) != host:  # SNI for a name other than the address
        spec["server_name"] = options["-servername"]
    return FoundProbe("tls", f"{host}:{port}", spec)


def _checkend(pipeline: Pipeline) -> int | None:
    for words in pipeline:
        for flag, value in itertools.pairwise(words):
            if flag == "-checkend" and value.isdigit():
                return int(value)
    return None


_PSQL_VALUE_OPTIONS = wordset(
    "-h --host -d --dbname -U --username -p --port -c --command -f --file -o --output -v --set"
)
_SELECT_ONE = re.compile(r"\s*select\s+1\s*;?\s*", re.IGNORECASE)


def _psql(args: Command, after: list[Command], pipeline: Pipeline) -> Finding:
    options, positional = split_options(args, _PSQL_VALUE_OPTIONS)
    query = first_of(options, "-c", "--command")
    if query is None:
        return None  # an interactive session, not a check
    if not _SELECT_ONE.fullmatch(query):
        return Skipped(
            f"psql query {query!r} not suggested: only SELECT 1 is known to be read-only"
        )
    where = [f"-h {host}" for host in [first_of(options, "-h", "--host")] if host]
    where += [f"-d {db}" for db in [first_of(options, "-d", "--dbname")] if db]
    where += positional[:1]  # a database name or connection URI
    target = "SELECT 1" + (f" ({' '.join(where)})" if where else "")
    return FoundProbe(
        "sql", target, {"kind": "sql", "url_env": "DATABASE_URL", "query": "SELECT 1"}
    )


_REDIS_VALUE_OPTIONS = wordset("-h -p -a -n -u -s -r -i --user --pass --cacert --cert --key")


def _redis_cli(args: Command, after: list[Command], pipeline: Pipeline) -> Finding:
    options, positional = split_options(args, _REDIS_VALUE_OPTIONS)
    if [w.upper() for w in positional] != ["PING"]:
        return None
    if "-u" in options:
        return Skipped("redis-cli -u URL not suggested: the URL may hold a password")
    host = options.get("-h") or "localhost"
    port = port_of(options.get("-p") or "6379")
    if port is None:
        return None
    spec = {"kind": "tcp", "host": host, "port": port, "send": "PING\r\n", "expect_banner": "PONG"}
    note = ""
    if "-a" in options or "--pass" in options:  # never copied: secrets live in the environment
        note = (
            "redis-cli password (-a) not copied into the probe; a server that requires AUTH "
            "answers its PING with NOAUTH"
        )
    return FoundProbe("tcp", f"{host}:{port}", spec, note)


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
    "promtool": _promtool,
}
