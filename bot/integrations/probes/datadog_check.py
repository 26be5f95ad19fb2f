"""Datadog probe: a metrics query through Datadog's official client, measured ``count`` times.

Each measurement calls ``GET /api/v1/query`` (``MetricsApi.query_metrics``) over the last
``window`` and reduces each series' points to one value (``reduce``); the judging,
repetition and verdict are :mod:`.analysis`'s. The keys come from the variables the probe
names (``DD_API_KEY`` and ``DD_APP_KEY`` unless told otherwise); ``site`` picks Datadog's
region (``datadoghq.eu``) and ``url`` replaces the whole base URL.
"""

from __future__ import annotations

import json
import time
from typing import Any

from datadog_api_client import ApiClient, Configuration
from datadog_api_client.exceptions import ApiException, OpenApiException
from datadog_api_client.v1.api.metrics_api import MetricsApi
from urllib3.exceptions import HTTPError as Urllib3Error

from bot.config.probe_specs import DatadogProbe
from bot.integrations.probes.analysis import QueryError, Series, analyse, reduce
from bot.integrations.probes.base import ProbeContext, ProbeOutcome

MESSAGE_LIMIT = 200


def check(spec: DatadogProbe, ctx: ProbeContext) -> ProbeOutcome:
    """Take the measurements and give the verdict.

    Raises:
        ProbeConfigError: A key variable is unset, or a query names a value the session
            does not have.
    """
    configuration = Configuration(  # type: ignore[no-untyped-call]
        host=spec.url.rstrip("/") if spec.url else None,
        api_key={"apiKeyAuth": ctx.env(spec.api_key_env), "appKeyAuth": ctx.env(spec.app_key_env)},
        request_timeout=spec.timeout.total_seconds(),
    )
    if not spec.url:
        configuration.server_variables["site"] = spec.site
    configuration.enable_retry = False  # the probe's own count and interval are the retries
    with ApiClient(configuration) as client:
        api = MetricsApi(client)  # type: ignore[no-untyped-call]

        def fetch(query: str, timeout: float) -> list[Series]:
            return measure(api, spec, query)

        return analyse(spec, ctx, fetch, texts(spec))


def texts(spec: DatadogProbe) -> dict[str, str]:
    """The probe's queries by the name the condition reads them as."""
    if spec.baseline is not None and spec.canary is not None:
        return {"baseline": spec.baseline, "canary": spec.canary}
    assert spec.query is not None  # the config requires one or the other
    return {"result": spec.query}


def measure(api: MetricsApi, spec: DatadogProbe, query: str) -> list[Series]:
    """The series the query returns over the last ``window``, each reduced to one value.

    Raises:
        QueryError: Datadog refused the query, or could not be reached.
    """
    end = int(time.time())
    start = end - int(spec.window.total_seconds())
    try:
        answer: Any = api.query_metrics(_from=start, to=end, query=query)
    except ApiException as error:
        raise QueryError(f"Datadog answered HTTP {error.status}: {_message(error)}") from None
    except (OpenApiException, Urllib3Error, OSError) as error:
        raise QueryError(f"Datadog: {type(error).__name__}: {error}") from None
    if getattr(answer, "status", "ok") == "error":
        raise QueryError(f"Datadog error: {getattr(answer, 'error', '') or 'no message'}")
    found = []
    for series in getattr(answer, "series", None) or []:
        pairs = [getattr(p, "value", p) for p in getattr(series, "pointlist", None) or []]
        points = [p[1] for p in pairs if len(p) > 1 and p[1] is not None]
        if not points:
            continue
        name = f"{getattr(series, 'metric', '')}{{{getattr(series, 'scope', '')}}}"
        found.append(Series(name, reduce([float(p) for p in points], spec.reduce)))
    return sorted(found, key=lambda s: s.labels)


def _message(error: ApiException) -> str:
    body = error.body or error.reason or ""
    body = body if isinstance(body, str) else json.dumps(body)
    flat = " ".join(body.split())
    return flat[:MESSAGE_LIMIT] or "no message"
