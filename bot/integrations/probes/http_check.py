"""HTTP probe: one request; its status, body, a JSON field and its latency are checked."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from bot.config.probe_specs import HttpProbe
from bot.domain.conditions import ConditionError
from bot.domain.conditions import parse as parse_condition
from bot.integrations.probes.base import ProbeConfigError, ProbeContext, ProbeOutcome
from bot.integrations.probes.clients import target_of_url

BODY_LIMIT = 1 << 20  # a health endpoint's body is small; never hold more than this
BODY_SHOWN = 1000
SHOWN_HEADERS = (
    "content-type",
    "content-length",
    "location",
    "retry-after",
    "cache-control",
    "server",
    "date",
)
_MISSING = object()


def check(spec: HttpProbe, ctx: ProbeContext) -> ProbeOutcome:
    """Send the request and check what comes back.

    Every network step (connect, write, each read) is bounded by ``spec.timeout``, and so
    is reading the body as a whole. Header values come from the environment through
    ``ctx.env`` so that they are redacted from the result.

    Args:
        spec: The probe as configured.
        ctx: Where the header values come from.

    Returns:
        Passed when the status is expected and every configured condition holds; the
        summary names the first problems, the detail shows the response.

    Raises:
        ProbeConfigError: A header variable is unset, or the URL cannot be requested.
    """
    headers = {name: ctx.env(var) for name, var in spec.headers_from_env.items()}
    timeout = spec.timeout.total_seconds()
    client = ctx.shared.http(verify=spec.verify_tls)
    with ctx.shared.slot(target_of_url(spec.url)):  # waiting for it is not the target's time
        started = time.monotonic()
        try:
            with client.stream(
                spec.method,
                spec.url,
                headers=headers,
                timeout=timeout,
                follow_redirects=spec.follow_redirects,
            ) as response:
                body, complete = _read_body(response, deadline=started + timeout)
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as error:
            raise ProbeConfigError(f"bad URL {spec.url}: {error}") from None
        except httpx.TimeoutException as error:
            return ProbeOutcome(False, f"timed out after {timeout:g}s", _describe(error, spec))
        except httpx.ConnectError as error:
            return ProbeOutcome(False, f"cannot connect: {error}", _describe(error, spec))
        except httpx.HTTPError as error:
            reason = str(error) or type(error).__name__
            return ProbeOutcome(False, f"request failed: {reason}", _describe(error, spec))
    latency = time.monotonic() - started
    if not complete:
        return ProbeOutcome(False, f"timed out after {timeout:g}s reading the body")
    text = body.decode(response.encoding or "utf-8", errors="replace")
    problems = _problems(spec, response.status_code, text, latency)
    summary = "; ".join(problems) or f"HTTP {response.status_code} in {latency * 1000:.0f} ms"
    if not problems and spec.condition is not None:
        summary += f"; {spec.json_path}: {_judged(text, spec)}"
    return ProbeOutcome(not problems, summary, _detail(response, text, latency))


def _read_body(response: httpx.Response, *, deadline: float) -> tuple[bytes, bool]:
    """The body, at most ``BODY_LIMIT`` bytes; False when the deadline passed first."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= BODY_LIMIT:
            break
        if time.monotonic() > deadline:
            return b"", False
    return b"".join(chunks)[:BODY_LIMIT], True


def _problems(spec: HttpProbe, status: int, text: str, latency: float) -> list[str]:
    if status not in spec.expect_status:
        expected = ", ".join(str(s) for s in spec.expect_status)
        return [f"HTTP {status} (expected {expected})"]
    problems = []
    if spec.body_contains is not None and spec.body_contains not in text:
        problems.append(f"body lacks {spec.body_contains!r}")
    if spec.json_path is not None and spec.condition is not None:
        problem = _condition_problem(text, spec)
        if problem:
            problems.append(problem)
    elif spec.json_path is not None:
        problem = _json_problem(text, spec.json_path, spec.json_value)
        if problem:
            problems.append(problem)
    limit = spec.max_latency.total_seconds() if spec.max_latency else None
    if limit is not None and latency > limit:
        problems.append(f"latency {latency * 1000:.0f} ms > {limit * 1000:.0f} ms")
    return problems


def _json_value(text: str, path: str) -> Any:
    """The value at ``path``; a problem (a string) when there is none."""
    try:
        value: Any = json.loads(text)
    except ValueError:
        return _Problem("body is not JSON")
    for key in path.split("."):
        if isinstance(value, dict):
            value = value.get(key, _MISSING)
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            value = _MISSING
        if value is _MISSING:
            return _Problem(f"JSON has no {path}")
    return value


class _Problem(str):
    """What went wrong reading a JSON value (a str, so that it can be reported as it is)."""


def _numbers(value: Any) -> float | list[float] | None:
    """A JSON number, or a list of numbers, as a condition reads it; None for anything else."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, list) and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in value
    ):
        return [float(v) for v in value]
    return None


def _condition_problem(text: str, spec: HttpProbe) -> str | None:
    assert spec.json_path is not None and spec.condition is not None
    value = _json_value(text, spec.json_path)
    if isinstance(value, _Problem):
        return str(value)
    numbers = _numbers(value)
    if numbers is None:
        return f"JSON {spec.json_path} is {json.dumps(value)[:80]}, not a number"
    condition = parse_condition(spec.condition, names=("result",))
    try:
        if condition.evaluate({"result": numbers}):
            return None
    except ConditionError as error:
        return f"JSON {spec.json_path}: condition: {error}"
    return f"JSON {spec.json_path}: {condition.show({'result': numbers})} ✗"


def _judged(text: str, spec: HttpProbe) -> str:
    """The passing condition with the value in: ``0.004 < 0.01 ✓``."""
    assert spec.json_path is not None and spec.condition is not None
    numbers = _numbers(_json_value(text, spec.json_path))
    assert numbers is not None  # it passed
    shown = parse_condition(spec.condition, names=("result",)).show({"result": numbers})
    return f"{shown} ✓"


def _json_problem(text: str, path: str, expected: object) -> str | None:
    value = _json_value(text, path)
    if isinstance(value, _Problem):
        return str(value)
    if expected is None or _same(value, expected):
        return None
    return f"JSON {path} is {json.dumps(value)[:80]} (expected {json.dumps(expected)})"


def _same(actual: object, expected: object) -> bool:
    """JSON equality that keeps ``true`` apart from ``1``; ``"1"`` in YAML matches ``1``."""
    if isinstance(actual, bool) or isinstance(expected, bool):
        return actual is expected
    if actual == expected:
        return True
    scalar = isinstance(actual, str | int | float) or actual is None
    return isinstance(expected, str) and scalar and json.dumps(actual).strip('"') == expected


def _detail(response: httpx.Response, text: str, latency: float) -> str:
    lines = [
        f"{response.request.method} {response.request.url}",
        f"{response.http_version} {response.status_code} {response.reason_phrase}"
        f" ({latency * 1000:.0f} ms)",
    ]
    lines += [
        f"{name}: {response.headers[name]}" for name in SHOWN_HEADERS if name in response.headers
    ]
    shown = text[:BODY_SHOWN] + ("…" if len(text) > BODY_SHOWN else "")
    return "\n".join(lines) + ("\n\n" + shown if shown else "")


def _describe(error: httpx.HTTPError, spec: HttpProbe) -> str:
    return f"{spec.method} {spec.url}\n{type(error).__name__}: {error}"
