"""Builds the Bolt app: verified requests, recorded once in the inbox before the ack."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from slack_bolt import App
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
)

from bot.ops.metrics import SlackCallCounter, time_acks
from bot.slack.inbox import SlackInbox

log = logging.getLogger(__name__)


def make_client(token: str, *, base_url: str | None = None) -> WebClient:
    """A Web API client that honours Slack's 429 ``Retry-After`` and retries dropped connections."""
    client = WebClient(token=token, base_url=base_url or WebClient.BASE_URL, timeout=10)
    client.retry_handlers.insert(0, SlackCallCounter())  # first: it sees every attempt
    client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=3))
    client.retry_handlers.append(ConnectionErrorRetryHandler(max_retry_count=2))
    return client


class _TokenUnusedWarning(logging.Filter):
    """Bolt warns at every start that SLACK_BOT_TOKEN goes unused beside the client we
    give it; that client holds that very token (``make_client``): nothing to warn about."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != warning_client_prioritized_and_token_skipped()


def build_app(
    *, client: WebClient, signing_secret: str, inbox: SlackInbox, worker: bool = False
) -> App:
    """The Bolt app with its middleware; the composition root registers the listeners.

    Bolt verifies each request's signature and timestamp (requests older than five minutes
    are refused) before any middleware of ours runs; then the inbox records the request.

    ``worker``: the app the inbox's workers dispatch recorded requests through
    (:mod:`bot.slack.inbox_workers`): each listener runs to its end in the worker's thread,
    and its acknowledgement goes nowhere (the web tier answered the request already).
    """
    bolt_log = logging.getLogger("slack_bolt.App")
    if not any(isinstance(f, _TokenUnusedWarning) for f in bolt_log.filters):
        bolt_log.addFilter(_TokenUnusedWarning())
    if worker:
        app = App(
            client=client,
            signing_secret=signing_secret or "unused",  # requests come from the database
            token_verification_enabled=False,
            request_verification_enabled=False,
            process_before_response=True,
            raise_error_for_unhandled_request=True,
        )
        app.middleware(inbox.middleware)
        return app
    app = App(
        client=client,
        signing_secret=signing_secret,
        token_verification_enabled=False,  # checked once at start-up by ``check_credentials``
        process_before_response=False,
        # A request no listener takes (an unknown command, a button of an older version) goes
        # to the error handler, which says so, instead of a silent 404.
        raise_error_for_unhandled_request=True,
        # Listeners ack first, then work on this pool; Bolt's default of 5 threads made
        # acknowledgements queue behind that work under load (benchmarks/ack_latency.py).
        listener_executor=ThreadPoolExecutor(max_workers=32, thread_name_prefix="bolt"),
    )
    app.middleware(time_acks)  # first of ours: the time it measures includes the inbox insert
    app.middleware(inbox.middleware)
    return app


def check_credentials(client: WebClient) -> str:
    """Call ``auth.test``; returns the workspace URL (for permalinks) or raises SlackApiError."""
    return str(client.auth_test().get("url") or "https://slack.com/")
