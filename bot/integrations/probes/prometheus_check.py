"""Prometheus probe: PromQL queries measured ``count`` times (see :mod:`.analysis`).

Each measurement queries the HTTP API (``/api/v1/query``, or ``/api/v1/query_range`` over a
``window`` reduced per series): one ``query`` whose every series must meet the condition, or
a ``baseline`` and a ``canary`` query of one series each, compared. Prometheus refusing a
query, or a server that cannot be reached, is an error that ends the probe.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import httpx

from bot.config.probe_specs import PrometheusProbe
from bot.integrations.probes.analysis import QueryError, Series, analyse
from bot.integrations.probes.analysis import reduce as reduce_values
from bot.integrations.probes.base import ProbeConfigError, ProbeContext, ProbeOutcome
from bot.integrations.probes.clients import target_of_url


def check(spec: PrometheusProbe, ctx: ProbeContext) -> ProbeOutcome:
    """Take the measurements and give the verdict.

    Raises:
        ProbeConfigError: An auth variable is unset or malformed, the URL is unusable, or a
            query names a value the session does not have.
    """
    headers, auth = _auth(spec, ctx)
    client, target = ctx.shared.http(verify=spec.verify_tls), target_of_url(spec.url)

    def fetch(promql: str, timeout: float) -> list[Series]:
        # The target's slot is held while a query is in flight, not between measurements.
        with ctx.shared.slot(target):
            return query(client, spec, promql, timeout=timeout, headers=headers, auth=auth)

    return analyse(spec, ctx, fetch, texts(spec))


def texts(spec: PrometheusProbe) -> dict[str, str]:
    """The probe's queries by the name the condition reads them as."""
    if spec.baseline is not None and spec.canary is not None:
        return {"baseline": spec.baseline, "canary": spec.canary}
    assert spec.query is not None  # the config requires one or the other
    return {"result": spec.query}


def query(
    client: httpx.Client,
    spec: PrometheusProbe,
    promql: str,
    *,
    timeout: float,
    headers: dict[str, str] | None = None,
    auth: Any = None,
) -> list[Series]:
    """The series the query returns now, each as one value; sorted by their labels."""
    base = spec.url.rstrip("/")
    params: dict[str, str | float]
    if spec.window is None:
        path, params = "/api/v1/query", {"query": promql}
    else:
        end = time.time()
        step = spec.step or max(timedelta(seconds=1), spec.window / 30)
        path = "/api/v1/query_range"
        params = {
            "query": promql,
            "start": end - spec.window.total_seconds(),
            "end": end,
            "step": step.total_seconds(),
        }
    try:
        response = client.get(
            base + path, params=params, headers=headers, auth=auth, timeout=timeout
        )
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as error:
        raise ProbeConfigError(f"bad URL {spec.url}: {error}") from None
    except httpx.TimeoutException:
        raise QueryError(f"timed out after {timeout:.3g}s") from None
    except httpx.ConnectError as error:
        raise QueryError(f"cannot connect to {base}: {error}") from None
    except httpx.HTTPError as error:
        raise QueryError(f"request failed: {error or type(error).__name__}") from None
    return series_of(response, spec.reduce)


def series_of(response: httpx.Response, reduce: str = "last") -> list[Series]:
    """Read an API answer: its series, each reduced to one value.

    Raises:
        QueryError: Prometheus said ``status: error``, or the answer is not its API's.
    """
    try:
        body: Any = response.json()
    except ValueError:
        raise QueryError(f"HTTP {response.status_code} from Prometheus, not JSON") from None
    if not isinstance(body, dict):
        raise QueryError(f"HTTP {response.status_code}: not a Prometheus API answer")
    if body.get("status") == "error":
        kind = body.get("errorType") or "error"
        raise QueryError(f"Prometheus error ({kind}): {body.get('error') or 'no message'}")
    data = body.get("data")
    if body.get("status") != "success" or not isinstance(data, dict):
        raise QueryError(f"HTTP {response.status_code}: not a Prometheus API answer")
    kind = data.get("resultType")
    result: Any = data.get("result")
    try:
        if kind == "scalar":
            return [Series("scalar", float(result[1]))]
        if kind == "vector":
            found = [Series(_labels(r["metric"]), float(r["value"][1])) for r in result]
        elif kind == "matrix":
            found = [
                Series(
                    _labels(r["metric"]), reduce_values([float(v[1]) for v in r["values"]], reduce)
                )
                for r in result
            ]
        else:
            raise QueryError(f"the query returns a {kind}, not numbers")
    except (AttributeError, KeyError, IndexError, TypeError, ValueError):
        raise QueryError("a malformed answer from Prometheus") from None
    return sorted(found, key=lambda s: s.labels)


def _labels(metric: dict[str, str]) -> str:
    name = metric.get("__name__", "")
    pairs = ", ".join(f'{k}="{v}"' for k, v in sorted(metric.items()) if k != "__name__")
    return f"{name}{{{pairs}}}" if pairs or not name else name


def _auth(spec: PrometheusProbe, ctx: ProbeContext) -> tuple[dict[str, str], Any]:
    if spec.bearer_token_env:
        return {"Authorization": f"Bearer {ctx.env(spec.bearer_token_env)}"}, None
    if spec.basic_auth_env:
        user, colon, password = ctx.env(spec.basic_auth_env).partition(":")
        if not colon:
            raise ProbeConfigError(f"{spec.basic_auth_env} must hold user:password")
        ctx.secrets.append(password)  # the pair is redacted already; the password alone too
        return {}, httpx.BasicAuth(user, password)
    return {}, None
