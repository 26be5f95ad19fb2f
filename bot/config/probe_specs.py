"""Probe definitions as written in the config file, and the value types the config shares.

A probe is a read-only check the bot runs (HTTP health, TCP banner, DNS record, TLS expiry,
SQL query, Kubernetes and AWS checks, a command). ``ProbeSpec`` is the union of all kinds,
told apart by ``kind``. Secrets are never written here: fields ending in ``_env`` (and
``headers_from_env`` values) name the environment variable that holds them.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from bot.domain.checklist import Severity
from bot.domain.conditions import ConditionError
from bot.domain.conditions import parse as parse_condition

_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?")
_DURATION_HINT = "use e.g. 30s, 5m, 1h30m"
_ENV_VAR = re.compile(r"[A-Z_][A-Z0-9_]*")


def parse_duration(value: object) -> timedelta:
    """Read a duration: ``"30s"``, ``"5m"``, ``"1h30m"``, ``"2d"``, ``"500ms"`` or whole seconds.

    Args:
        value: A string in the short form, an integer number of seconds, or a timedelta.

    Returns:
        The positive duration.

    Raises:
        PydanticCustomError: The value is zero, negative or not a duration (pydantic turns
            this into a located validation error).
    """
    if isinstance(value, timedelta):
        result = value
    elif isinstance(value, int) and not isinstance(value, bool):
        result = timedelta(seconds=value)
    elif isinstance(value, str) and value.strip().isdigit():
        result = timedelta(seconds=int(value.strip()))
    elif isinstance(value, str) and value.strip() and (m := _DURATION.fullmatch(value.strip())):
        days, hours, minutes, seconds, millis = (int(part or 0) for part in m.groups())
        result = timedelta(
            days=days, hours=hours, minutes=minutes, seconds=seconds, milliseconds=millis
        )
    else:
        result = timedelta(0)
    if result <= timedelta(0):
        raise PydanticCustomError(
            "duration", "bad duration '{value}': " + _DURATION_HINT, {"value": str(value)}
        )
    return result


def format_duration(value: timedelta) -> str:
    """The short form of a duration, as ``parse_duration`` reads it (``1h30m``, ``2d``)."""
    millis = value // timedelta(milliseconds=1)
    parts = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        count, millis = divmod(millis, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
]
"""A positive ``timedelta`` written as ``30s``, ``5m``, ``1h30m``, ``2d``, ``250ms`` or seconds."""


def looks_like_secret(value: str) -> str | None:
    """What kind of secret ``value`` looks like (``"a Slack token"``), or None.

    Args:
        value: Any string from the configuration.

    Returns:
        A short description of the secret it looks like, or None when it looks harmless.
    """
    if value.startswith(("xoxb-", "xoxp-", "xapp-")):
        return "a Slack token"
    if re.search(r"\bAKIA[0-9A-Z]{16}\b", value):
        return "an AWS access key"
    if re.search(r"[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@", value):
        return "a URL with a password"
    return None


SECRET_ADVICE = "secrets belong in the environment: name the variable instead"


def _env_var_name(value: str) -> str:
    if _ENV_VAR.fullmatch(value):
        return value
    secret = looks_like_secret(value)
    if secret:
        # Never echo a secret back into logs or Slack; same words as the file scan's.
        raise PydanticCustomError("secret", f"this looks like {secret}; {SECRET_ADVICE}")
    raise PydanticCustomError(
        "env_var_name",
        "'{value}' is not an environment variable name (use e.g. DATABASE_URL)",
        {"value": value},
    )


EnvVarName = Annotated[str, AfterValidator(_env_var_name)]
"""The NAME of an environment variable (``[A-Z_][A-Z0-9_]*``), never its value."""

Port = Annotated[int, Field(ge=1, le=65535)]


def _http_url(value: str) -> str:
    if not re.fullmatch(r"https?://[^\s/]+\S*", value):
        raise PydanticCustomError("url", "'{value}' is not an http(s) URL", {"value": value})
    return value


def _json_path(value: str) -> str:
    if not re.fullmatch(r"[^.\s]+(\.[^.\s]+)*", value):
        raise PydanticCustomError(
            "json_path", "'{value}' is not a dotted path like 'checks.db'", {"value": value}
        )
    return value


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProbeBase(_Spec):
    """Fields every probe kind has."""

    timeout: Duration = timedelta(seconds=10)
    severity: Severity = Severity.CRITICAL
    description: str | None = None


class HttpProbe(ProbeBase):
    """An HTTP(S) request whose status, body, JSON field or latency is checked."""

    kind: Literal["http"] = "http"
    url: Annotated[str, AfterValidator(_http_url)]
    method: Literal["GET", "HEAD", "POST", "OPTIONS"] = "GET"
    headers_from_env: dict[str, EnvVarName] = Field(default_factory=dict)
    expect_status: tuple[Annotated[int, Field(ge=100, le=599)], ...] = Field(
        default=(200,), min_length=1
    )
    body_contains: str | None = None
    json_path: Annotated[str, AfterValidator(_json_path)] | None = None
    json_value: str | int | float | bool | None = None
    max_latency: Duration | None = None
    follow_redirects: bool = False
    verify_tls: bool = True

    @model_validator(mode="after")
    def _json_value_needs_path(self) -> HttpProbe:
        if self.json_value is not None and self.json_path is None:
            raise PydanticCustomError("json_path", "json_value needs json_path")
        return self


class TcpProbe(ProbeBase):
    """Connect to ``host:port``; optionally send a line and expect the reply to start so."""

    kind: Literal["tcp"] = "tcp"
    host: str = Field(min_length=1)
    port: Port
    send: str | None = None
    expect_banner: str | None = None


class DnsProbe(ProbeBase):
    """Resolve ``name``; optionally require an answer containing ``contains``."""

    kind: Literal["dns"] = "dns"
    name: str = Field(min_length=1)
    record_type: Literal["A", "AAAA", "CNAME", "MX", "NS", "TXT", "SRV", "CAA", "SOA", "PTR"] = "A"
    contains: str | None = None
    nameserver: str | None = None
    port: Port = 53


class TlsProbe(ProbeBase):
    """The certificate at ``host:port`` is valid for at least ``min_days`` more days."""

    kind: Literal["tls"] = "tls"
    host: str = Field(min_length=1)
    port: Port = 443
    server_name: str | None = None
    min_days: int = Field(default=14, ge=0)
    ca_file: str | None = None


class SqlProbe(ProbeBase):
    """Run ``query`` on the database whose URL is in ``$url_env``; optionally compare the result."""

    kind: Literal["sql"] = "sql"
    url_env: EnvVarName
    query: str = Field(default="SELECT 1", min_length=1)
    expect: str | int | float | bool | None = None


class KubernetesProbe(ProbeBase):
    """A Deployment's rollout, the pods matching a selector, or the cluster's nodes are healthy."""

    kind: Literal["kubernetes"] = "kubernetes"
    check: Literal["rollout", "pods", "nodes"]
    deployment: str | None = None
    namespace: str = "default"
    selector: str | None = None
    context: str | None = None

    @model_validator(mode="after")
    def _check_has_target(self) -> KubernetesProbe:
        if self.check == "rollout" and not self.deployment:
            raise PydanticCustomError("probe_check", "check 'rollout' needs 'deployment'")
        if self.check == "pods" and not self.selector:
            raise PydanticCustomError("probe_check", "check 'pods' needs 'selector'")
        return self


# Per AWS check: the fields it needs (any one of each group) and the fields it may use.
_AWS_CHECKS: dict[str, tuple[tuple[tuple[str, ...], ...], frozenset[str]]] = {
    "cloudwatch_alarms": ((("alarm_prefix",),), frozenset({"alarm_prefix"})),
    "sqs_depth": (
        (("queue_name", "queue_url"),),
        frozenset({"queue_name", "queue_url", "max_depth"}),
    ),
    "dynamodb_pitr": ((("table",),), frozenset({"table"})),
    "ses_identity": ((("identity",),), frozenset({"identity"})),
    "lambda_invoke": ((("function",),), frozenset({"function", "payload"})),
}
_AWS_TARGET_FIELDS = frozenset(
    {"alarm_prefix", "queue_name", "queue_url", "max_depth", "table", "identity", "function"}
)


class AwsProbe(ProbeBase):
    """One AWS check; ``check`` says which, and which of the optional fields it needs.

    ``cloudwatch_alarms`` (``alarm_prefix``): no alarm with that prefix is in ALARM.
    ``sqs_depth`` (``queue_name`` or ``queue_url``): at most ``max_depth`` messages waiting.
    ``dynamodb_pitr`` (``table``): point-in-time recovery is enabled.
    ``ses_identity`` (``identity``): the domain or address is verified.
    ``lambda_invoke`` (``function``, ``payload``): the function runs without error.
    """

    kind: Literal["aws"] = "aws"
    check: Literal[
        "cloudwatch_alarms", "sqs_depth", "dynamodb_pitr", "ses_identity", "lambda_invoke"
    ]
    region: str | None = None
    alarm_prefix: str | None = None
    queue_name: str | None = None
    queue_url: str | None = None
    max_depth: int = Field(default=0, ge=0)
    table: str | None = None
    identity: str | None = None
    function: str | None = None
    payload: str = "{}"

    @model_validator(mode="after")
    def _fields_fit_check(self) -> AwsProbe:
        needs, allowed = _AWS_CHECKS[self.check]
        for group in needs:
            if not any(getattr(self, name) for name in group):
                wanted = " or ".join(f"'{name}'" for name in group)
                raise PydanticCustomError(
                    "probe_check",
                    "check '{check}' needs {wanted}",
                    {"check": self.check, "wanted": wanted},
                )
        stray = sorted((self.model_fields_set & _AWS_TARGET_FIELDS) - allowed)
        if stray:
            raise PydanticCustomError(
                "probe_check",
                "check '{check}' does not use {stray}",
                {"check": self.check, "stray": ", ".join(f"'{name}'" for name in stray)},
            )
        return self


class CommandProbe(ProbeBase):
    """Run ``argv`` (no shell); it passes on ``expect_exit`` and a matching output."""

    kind: Literal["command"] = "command"
    argv: tuple[str, ...] = Field(min_length=1)
    expect_exit: int = 0
    output_pattern: str | None = None
    env: tuple[EnvVarName, ...] = ()

    @model_validator(mode="after")
    def _pattern_compiles(self) -> CommandProbe:
        if self.output_pattern is not None:
            try:
                re.compile(self.output_pattern)
            except re.error as error:
                raise PydanticCustomError(
                    "regex",
                    "output_pattern is not a regular expression: {error}",
                    {"error": str(error)},
                ) from None
        return self


def _result_condition(value: str) -> str:
    try:
        parse_condition(value, names=("result",))
    except ConditionError as error:
        raise PydanticCustomError("condition", "{error}", {"error": str(error)}) from None
    return value


class PrometheusProbe(ProbeBase):
    """A PromQL query whose value meets ``condition``, measured ``count`` times (Argo-style).

    Without ``window``, an instant query (``/api/v1/query``); with it, a range query over the
    last ``window`` (``/api/v1/query_range``), each series reduced to one value by ``reduce``.
    Every series must meet the condition; no data and NaN are inconclusive.
    """

    kind: Literal["prometheus"] = "prometheus"
    url: Annotated[str, AfterValidator(_http_url)]
    query: str = Field(min_length=1)
    condition: Annotated[str, AfterValidator(_result_condition)]
    window: Duration | None = None
    step: Duration | None = None
    reduce: Literal["avg", "max", "min", "last"] = "last"
    bearer_token_env: EnvVarName | None = None
    basic_auth_env: EnvVarName | None = None
    verify_tls: bool = True
    count: int = Field(default=1, ge=1, le=1000)
    interval: Duration | None = Field(default=None, validate_default=True)
    failure_limit: int = Field(default=0, ge=0)
    inconclusive_limit: int = Field(default=0, ge=0)
    initial_delay: Duration | None = None

    @field_validator("step", "reduce")
    @classmethod
    def _needs_window(cls, value: object, info: ValidationInfo) -> object:
        if "window" in info.data and info.data["window"] is None:  # set, and not invalid
            raise PydanticCustomError("window", "needs window (a range query)")
        return value

    @field_validator("interval")
    @classmethod
    def _needed_for_count(cls, value: timedelta | None, info: ValidationInfo) -> object:
        if value is None and info.data.get("count", 1) > 1:
            raise PydanticCustomError("interval", "needed when count is above 1")
        return value

    @model_validator(mode="after")
    def _fits(self) -> PrometheusProbe:
        if self.bearer_token_env and self.basic_auth_env:
            raise PydanticCustomError("auth", "use bearer_token_env or basic_auth_env, not both")
        delay = self.initial_delay or timedelta(0)
        needed = delay + self.count * (self.interval or timedelta(0))
        if self.timeout < needed or self.timeout <= delay:
            shown = format_duration(max(needed, delay + timedelta(seconds=1)))
            raise PydanticCustomError(
                "timeout",
                "timeout {timeout} does not cover initial_delay + count x interval: "
                "make it at least {needed}",
                {"timeout": format_duration(self.timeout), "needed": shown},
            )
        return self


ProbeSpec = Annotated[
    HttpProbe
    | TcpProbe
    | DnsProbe
    | TlsProbe
    | SqlProbe
    | KubernetesProbe
    | AwsProbe
    | CommandProbe
    | PrometheusProbe,
    Field(discriminator="kind"),
]
"""Any probe definition, told apart by its ``kind``."""

PROBE_KINDS: tuple[str, ...] = (
    "http",
    "tcp",
    "dns",
    "tls",
    "sql",
    "kubernetes",
    "aws",
    "command",
    "prometheus",
)
