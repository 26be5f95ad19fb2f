"""Probe definitions as written in the config file, and the value types the config shares.

A probe is a read-only check the bot runs (HTTP health, TCP banner, DNS record, TLS expiry,
SQL query, Kubernetes and AWS checks, a command). ``ProbeSpec`` is the union of all kinds,
told apart by ``kind``. Secrets are never written here: fields ending in ``_env`` (and
``headers_from_env`` values) name the environment variable that holds them.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    Field,
    model_validator,
)
from pydantic_core import PydanticCustomError

from bot.config.fields import SECRET_ADVICE as SECRET_ADVICE
from bot.config.fields import Duration as Duration
from bot.config.fields import EnvVarName as EnvVarName
from bot.config.fields import Port as Port
from bot.config.fields import ProbeBase as ProbeBase
from bot.config.fields import dotted_path, http_url
from bot.config.fields import format_duration as format_duration
from bot.config.fields import looks_like_secret as looks_like_secret
from bot.config.fields import parse_duration as parse_duration
from bot.config.metric_specs import CloudWatchMetricProbe as CloudWatchMetricProbe
from bot.config.metric_specs import DatadogProbe as DatadogProbe
from bot.config.metric_specs import MetricProbe as MetricProbe
from bot.config.metric_specs import PrometheusProbe as PrometheusProbe
from bot.config.metric_specs import result_condition


class HttpProbe(ProbeBase):
    """An HTTP(S) request whose status, body, JSON field or latency is checked."""

    kind: Literal["http"] = "http"
    url: Annotated[str, AfterValidator(http_url)]
    method: Literal["GET", "HEAD", "POST", "OPTIONS"] = "GET"
    headers_from_env: dict[str, EnvVarName] = Field(default_factory=dict)
    expect_status: tuple[Annotated[int, Field(ge=100, le=599)], ...] = Field(
        default=(200,), min_length=1
    )
    body_contains: str | None = None
    json_path: Annotated[str, AfterValidator(dotted_path)] | None = None
    json_value: str | int | float | bool | None = None
    condition: Annotated[str, AfterValidator(result_condition)] | None = None
    max_latency: Duration | None = None
    follow_redirects: bool = False
    verify_tls: bool = True

    @model_validator(mode="after")
    def _json_value_needs_path(self) -> HttpProbe:
        if self.json_value is not None and self.json_path is None:
            raise PydanticCustomError("json_path", "json_value needs json_path")
        if self.condition is not None and self.json_path is None:
            raise PydanticCustomError("json_path", "condition needs json_path")
        if self.condition is not None and self.json_value is not None:
            raise PydanticCustomError(
                "json_value", "use json_value (equality) or condition, not both"
            )
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


ProbeSpec = Annotated[
    HttpProbe
    | TcpProbe
    | DnsProbe
    | TlsProbe
    | SqlProbe
    | KubernetesProbe
    | AwsProbe
    | CommandProbe
    | PrometheusProbe
    | CloudWatchMetricProbe
    | DatadogProbe,
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
    "cloudwatch_metric",
    "datadog",
)
