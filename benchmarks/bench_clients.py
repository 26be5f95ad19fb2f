"""The load generator's clients: Slack's signed requests over one keep-alive connection each,
timed from sending the request to having read the whole response."""

from __future__ import annotations

import http.client
import itertools
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sandbox.slack_requests import Response, SlackRequests

ACK_DEADLINE_MS = 3000.0

_action_ts = itertools.count(1)


@dataclass(frozen=True)
class Sample:
    ms: float
    status: int  # 0: no HTTP answer (connection error or timeout)


@dataclass(frozen=True)
class Figures:
    requests: int
    p50: float
    p99: float
    max: float
    errors: int
    over_deadline: int


def figures(samples: Sequence[Sample]) -> Figures:
    times = sorted(s.ms for s in samples)
    if len(times) >= 2:
        cuts = statistics.quantiles(times, n=100, method="inclusive")
        p50, p99 = cuts[49], cuts[98]
    else:
        p50 = p99 = times[0] if times else float("nan")
    return Figures(
        requests=len(times),
        p50=p50,
        p99=p99,
        max=times[-1] if times else float("nan"),
        errors=sum(1 for s in samples if s.status != 200),
        over_deadline=sum(1 for s in samples if s.ms >= ACK_DEADLINE_MS),
    )


class TimedRequests(SlackRequests):
    """Signed requests over one keep-alive connection; ``last_ms`` times the last exchange.

    Every request is signed when it is sent, and unique: commands carry a fresh trigger_id,
    clicks a fresh ``action_ts`` (deploybot takes a repeated one for Slack's retry).
    """

    def __init__(self, secret: str, url: str, *, timeout: float = 10.0) -> None:
        super().__init__(secret, url, timeout=timeout)
        parts = urlsplit(url)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self._path = parts.path or "/"
        self._connection: http.client.HTTPConnection | None = None
        self.last_ms = 0.0

    def exchange(self, send: Callable[[], Response]) -> int:
        """Send one request; its HTTP status, or 0 when there was no answer."""
        try:
            return send().status
        except (OSError, http.client.HTTPException):
            return 0

    def post(
        self,
        body: str,
        *,
        content_type: str = "application/x-www-form-urlencoded",
        retry_num: int | None = None,
        timestamp: int | None = None,
        signature: str | None = None,
    ) -> Response:
        headers = self.signed_headers(
            body,
            content_type=content_type,
            retry_num=retry_num,
            timestamp=timestamp,
            signature=signature,
        )
        if self._connection is None:
            self._connection = http.client.HTTPConnection(
                self._host, self._port, timeout=self.timeout
            )
            self._connection.connect()  # not part of the measured exchange
        started = time.perf_counter()
        try:
            self._connection.request("POST", self._path, body=body.encode(), headers=headers)
            reply = self._connection.getresponse()
            text = reply.read()
        except (OSError, http.client.HTTPException):
            self.last_ms = (time.perf_counter() - started) * 1000
            self.close()
            raise
        self.last_ms = (time.perf_counter() - started) * 1000
        if reply.will_close:
            self.close()
        return Response(
            status=reply.status,
            body=text.decode("utf-8", "replace"),
            headers=dict(reply.getheaders()),
            request_body=body,
        )

    def _send_payload(
        self,
        payload: Mapping[str, Any],
        retry_num: int | None,
        timestamp: int | None,
        signature: str | None,
    ) -> Response:
        payload = dict(payload)
        if payload.get("actions"):
            action = dict(payload["actions"][0])
            action["action_ts"] = f"{int(time.time())}.{next(_action_ts):06d}"
            payload["actions"] = [action]
        return super()._send_payload(payload, retry_num, timestamp, signature)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
