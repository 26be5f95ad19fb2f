"""The value types the config's files share: durations, variable names, URLs, probe bases.

Secrets are never written in the config: an ``EnvVarName`` names the environment variable
that holds one, and ``looks_like_secret`` spots a value that should have been such a name.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer
from pydantic_core import PydanticCustomError

from bot.domain.checklist import Severity

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


def http_url(value: str) -> str:
    if not re.fullmatch(r"https?://[^\s/]+\S*", value):
        raise PydanticCustomError("url", "'{value}' is not an http(s) URL", {"value": value})
    return value


def dotted_path(value: str) -> str:
    if not re.fullmatch(r"[^.\s]+(\.[^.\s]+)*", value):
        raise PydanticCustomError(
            "json_path", "'{value}' is not a dotted path like 'checks.db'", {"value": value}
        )
    return value


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProbeBase(Spec):
    """Fields every probe kind has."""

    timeout: Duration = timedelta(seconds=10)
    severity: Severity = Severity.CRITICAL
    description: str | None = None
