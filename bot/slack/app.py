"""Builds the Bolt app: verified requests, de-duplicated retries, our listeners."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from slack_bolt import App, BoltResponse
from slack_bolt.request import BoltRequest
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
)

from bot.ops.metrics import SlackCallCounter, time_acks
from bot.slack.dedupe import RequestLedger
from commands import Deps, register

log = logging.getLogger(__name__)


def make_client(token: str, *, base_url: str | None = None) -> WebClient:
    """A Web API client that honours Slack's 429 ``Retry-After`` and retries dropped connections."""
    client = WebClient(token=token, base_url=base_url or WebClient.BASE_URL, timeout=10)
    client.retry_handlers.insert(0, SlackCallCounter())  # first: it sees every attempt
    client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=3))
    client.retry_handlers.append(ConnectionErrorRetryHandler(max_retry_count=2))
    return client


def build_app(*, deps: Deps, client: WebClient, signing_secret: str, ledger: RequestLedger) -> App:
    """The Bolt app with every listener registered.

    Bolt verifies each request's signature and timestamp (requests older than five minutes
    are refused) before any listener runs.
    """
    app = App(
        client=client,
        signing_secret=signing_secret,
        token_verification_enabled=False,  # checked once at start-up by ``check_credentials``
        process_before_response=False,
        # Listeners ack first, then work on this pool; Bolt's default of 5 threads made
        # acknowledgements queue behind that work under load (benchmarks/ack_latency.py).
        listener_executor=ThreadPoolExecutor(max_workers=32, thread_name_prefix="bolt"),
    )

    def skip_retries(req: BoltRequest, resp: BoltResponse, next: Callable[[], Any]) -> Any:
        """A request Slack sends again (retry or double delivery) is acknowledged, not redone."""
        key = request_key(req.body)
        is_retry = bool(req.headers.get("x-slack-retry-num"))
        if key and not ledger.first_time(key, is_retry=is_retry):
            log.info("duplicate Slack request ignored", extra={"request_key": key})
            return BoltResponse(status=200, body="")
        return next()

    app.middleware(time_acks)  # first of ours: the time it measures includes de-duplication
    app.middleware(skip_retries)
    register(app, deps)
    return app


def request_key(body: dict[str, Any]) -> str | None:
    """What identifies one user gesture across Slack's retries.

    Slack gives every command and interaction a fresh ``trigger_id``; a retry carries the
    same one. Block actions also carry ``action_ts``, distinct per click.
    """
    actions = body.get("actions") or []
    if actions:
        first, user = actions[0], body.get("user", {}).get("id")
        return f"action:{user}:{first.get('action_id')}:{first.get('action_ts')}"
    trigger = body.get("trigger_id")
    if trigger:
        return f"trigger:{trigger}"
    view = body.get("view") or {}
    if view.get("id") and view.get("hash"):
        return f"view:{view['id']}:{view['hash']}"
    return None


def check_credentials(client: WebClient) -> str:
    """Call ``auth.test``; returns the workspace URL (for permalinks) or raises SlackApiError."""
    return str(client.auth_test().get("url") or "https://slack.com/")
