"""Paging through the outbox with the real ``pagerduty`` client against an HTTPS receiver."""

from __future__ import annotations

import logging
import socket
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pagerduty
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.integrations.pagerduty import PagerDuty, page_payload
from bot.storage.models import OutboxRow
from bot.storage.outbox import OUTBOX_ID, Outbox, PermanentFailure, RetryAfter
from bot.workers.outbox import OutboxWorker
from tests.support.pagerduty import FakePagerDuty

ROUTING_KEY = "0123456789abcdef0123456789abcdef"
ROUTING_KEY_ENV = "PAGERDUTY_ROUTING_KEY_PROD"
DETECTED = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
LINK = "https://example.slack.com/archives/C1/p1700000000000100"


@pytest.fixture
def receiver() -> Iterator[FakePagerDuty]:
    with FakePagerDuty() as fake:
        yield fake


def make_pagerduty(receiver: FakePagerDuty, environ: dict[str, str] | None = None) -> PagerDuty:
    return PagerDuty(
        events_url=receiver.url,
        verify=receiver.client_ssl_context(),
        environ={ROUTING_KEY_ENV: ROUTING_KEY} if environ is None else environ,
        rate_limit_delay=0.02,
    )


def make_worker(factory: sessionmaker[Session], paging: PagerDuty) -> OutboxWorker:
    return OutboxWorker(factory, {"pagerduty": paging.deliver}, backoff_base=0.01, backoff_cap=0.05)


def page(
    action: str = "trigger",
    *,
    probe: str = "api-health",
    summary: str = "api-health failed: HTTP 503 from https://api.example.com/health",
    severity: str = "critical",
) -> dict[str, Any]:
    return page_payload(
        action=action,  # type: ignore[arg-type]
        env_name="prod",
        routing_key_env=ROUTING_KEY_ENV,
        session_id=42,
        probe=probe,
        summary=summary,
        severity=severity,  # type: ignore[arg-type]
        details={"status": 503, "url": "https://api.example.com/health"},
        link=LINK,
        at=DETECTED,
    )


def enqueue(factory: sessionmaker[Session], payload: dict[str, Any]) -> int:
    with factory() as db, db.begin():
        key = f"{payload['dedup_key']}/{payload['action']}/{uuid.uuid4().hex}"
        assert Outbox().enqueue(
            db,
            topic="pagerduty",
            key=key,
            payload=payload,
            at=datetime.now(UTC),
            ordering_key=payload["dedup_key"],
        )
        row_id = db.scalars(select(OutboxRow.id).where(OutboxRow.idempotency_key == key)).one()
    return row_id


def outbox_row(factory: sessionmaker[Session], row_id: int) -> OutboxRow:
    with factory() as db:
        row = db.get(OutboxRow, row_id)
        assert row is not None
        return row


def drain(worker: OutboxWorker, factory: sessionmaker[Session], timeout: float = 10.0) -> None:
    """Run passes until no row is pending (delivered or given up)."""
    deadline = time.monotonic() + timeout
    while True:
        worker.deliver_due()
        with factory() as db:
            pending = db.scalars(
                select(OutboxRow.id).where(
                    OutboxRow.delivered_at.is_(None), OutboxRow.failed_at.is_(None)
                )
            ).all()
        if not pending:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"rows still pending after {timeout} s: {pending}")
        time.sleep(0.005)


# The payload


def test_page_payload_has_a_stable_dedup_key_and_the_schema() -> None:
    payload = page()
    assert payload == {
        "action": "trigger",
        "routing_key_env": ROUTING_KEY_ENV,
        "dedup_key": "deploybot/prod/session-42/api-health",
        "summary": "api-health failed: HTTP 503 from https://api.example.com/health",
        "source": "prod",
        "severity": "critical",
        "component": "api-health",
        "custom_details": {
            "status": 503,
            "url": "https://api.example.com/health",
            "environment": "prod",
            "session_id": 42,
            "probe": "api-health",
        },
        "links": [{"href": LINK, "text": "Deploy session #42"}],
        "timestamp": "2026-11-23T12:00:00+00:00",
    }
    assert page("resolve")["dedup_key"] == payload["dedup_key"]
    assert ROUTING_KEY not in str(payload)


def test_page_payload_truncates_the_summary_and_refuses_bad_values() -> None:
    summary = page(summary="x" * 5000)["summary"]
    assert len(summary) == 1024 and summary.endswith("…")
    assert page(summary="y" * 1024)["summary"] == "y" * 1024
    with pytest.raises(ValueError, match="severity"):
        page(severity="fatal")
    with pytest.raises(ValueError, match="action"):
        page("escalate")
    with pytest.raises(ValueError, match="255"):
        page(probe="p" * 300)


def test_the_events_url_must_be_https_and_may_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PAGERDUTY_EVENTS_URL", "https://events.eu.pagerduty.com/v2/enqueue")
    assert PagerDuty().events_url == "https://events.eu.pagerduty.com"
    monkeypatch.setenv("PAGERDUTY_EVENTS_URL", "http://127.0.0.1:8080")
    with pytest.raises(ValueError, match="https"):
        PagerDuty()
    monkeypatch.delenv("PAGERDUTY_EVENTS_URL")
    assert PagerDuty().events_url is None  # the client's default, https://events.pagerduty.com


# End to end through the outbox


def test_a_trigger_opens_one_alert_with_exactly_these_fields(
    session_factory: sessionmaker[Session], receiver: FakePagerDuty
) -> None:
    row_id = enqueue(session_factory, page())
    drain(make_worker(session_factory, make_pagerduty(receiver)), session_factory)

    assert receiver.events() == [
        {
            "routing_key": ROUTING_KEY,
            "event_action": "trigger",
            "dedup_key": "deploybot/prod/session-42/api-health",
            "payload": {
                "summary": "api-health failed: HTTP 503 from https://api.example.com/health",
                "source": "prod",
                "severity": "critical",
                "timestamp": "2026-11-23T12:00:00+00:00",
                "component": "api-health",
                "custom_details": {
                    "status": 503,
                    "url": "https://api.example.com/health",
                    "environment": "prod",
                    "session_id": 42,
                    "probe": "api-health",
                    OUTBOX_ID: row_id,
                },
            },
            "links": [{"href": LINK, "text": "Deploy session #42"}],
        }
    ]
    alert = receiver.alert("deploybot/prod/session-42/api-health")
    assert alert.status == "triggered"
    assert receiver.alert_count(alert.dedup_key) == 1
    row = outbox_row(session_factory, row_id)
    assert (row.attempts, row.last_error) == (1, None) and row.delivered_at is not None


def test_a_second_trigger_updates_the_same_alert(
    session_factory: sessionmaker[Session], receiver: FakePagerDuty
) -> None:
    worker = make_worker(session_factory, make_pagerduty(receiver))
    enqueue(session_factory, page(summary="api-health failed: HTTP 503"))
    drain(worker, session_factory)
    enqueue(session_factory, page(summary="api-health still failing: timeout", severity="error"))
    drain(worker, session_factory)

    alerts = receiver.alerts()
    assert list(alerts) == ["deploybot/prod/session-42/api-health"]
    alert = alerts["deploybot/prod/session-42/api-health"]
    assert receiver.alert_count(alert.dedup_key) == 1
    assert len(alert.events) == 2
    assert (alert.status, alert.payload["summary"], alert.payload["severity"]) == (
        "triggered", "api-health still failing: timeout", "error",
    )  # fmt: skip


def test_acknowledge_and_resolve_move_the_alert(
    session_factory: sessionmaker[Session], receiver: FakePagerDuty
) -> None:
    worker = make_worker(session_factory, make_pagerduty(receiver))
    dedup_key = page()["dedup_key"]
    enqueue(session_factory, page())
    drain(worker, session_factory)

    enqueue(session_factory, page("acknowledge"))
    drain(worker, session_factory)
    assert receiver.alert(dedup_key).status == "acknowledged"
    assert receiver.events()[-1] == {
        "routing_key": ROUTING_KEY,
        "event_action": "acknowledge",
        "dedup_key": dedup_key,
    }

    enqueue(session_factory, page("resolve"))
    drain(worker, session_factory)
    assert receiver.alert(dedup_key).status == "resolved"
    assert receiver.alert_count(dedup_key) == 1
    assert [e["event_action"] for e in receiver.alert(dedup_key).events] == [
        "trigger", "acknowledge", "resolve",
    ]  # fmt: skip


def test_a_resolve_does_not_overtake_a_trigger_being_retried(
    session_factory: sessionmaker[Session], receiver: FakePagerDuty
) -> None:
    receiver.fail(status=503, times=2)
    enqueue(session_factory, page())
    enqueue(session_factory, page("resolve"))
    drain(make_worker(session_factory, make_pagerduty(receiver)), session_factory)

    assert [e["event_action"] for e in receiver.events()] == ["trigger", "resolve"]
    assert receiver.alert(page()["dedup_key"]).status == "resolved"


def test_server_errors_are_retried_and_the_event_arrives_once(
    session_factory: sessionmaker[Session], receiver: FakePagerDuty
) -> None:
    receiver.fail(status=500, times=3)
    row_id = enqueue(session_factory, page())
    drain(make_worker(session_factory, make_pagerduty(receiver)), session_factory)

    assert [r.status for r in receiver.requests()] == [500, 500, 500, 202]
    assert len(receiver.events()) == 1
    assert receiver.alert_count(page()["dedup_key"]) == 1
    row = outbox_row(session_factory, row_id)
    assert (row.attempts, row.failed_at, row.last_error) == (4, None, None)
    assert row.delivered_at is not None


def test_rate_limited_events_each_arrive_exactly_once(
    session_factory: sessionmaker[Session], receiver: FakePagerDuty
) -> None:
    receiver.rate_limit(times=15)
    row_ids = [enqueue(session_factory, page(probe=f"probe-{n}")) for n in range(10)]
    drain(make_worker(session_factory, make_pagerduty(receiver)), session_factory)

    statuses = Counter(r.status for r in receiver.requests())
    assert statuses == {429: 15, 202: 10}
    arrived = Counter(e["payload"]["custom_details"][OUTBOX_ID] for e in receiver.events())
    assert arrived == dict.fromkeys(row_ids, 1)
    alerts = receiver.alerts()
    assert len(alerts) == 10
    assert all(receiver.alert_count(key) == 1 for key in alerts)


def test_retry_after_from_pagerduty_is_honoured(
    session_factory: sessionmaker[Session], receiver: FakePagerDuty
) -> None:
    receiver.rate_limit(times=1, retry_after=120)
    row_id = enqueue(session_factory, page())
    before = datetime.now(UTC)
    make_worker(session_factory, make_pagerduty(receiver)).deliver_due()

    row = outbox_row(session_factory, row_id)
    wait = row.next_attempt_at - before
    assert timedelta(seconds=120) <= wait <= timedelta(seconds=125)
    assert row.last_error == (
        "PagerDuty rate limit (HTTP 429) for deploybot/prod/session-42/api-health"
    )
    assert (row.attempts, row.delivered_at, row.failed_at) == (1, None, None)
    assert receiver.events() == []


def test_a_missing_routing_key_variable_fails_at_once_and_says_so(
    session_factory: sessionmaker[Session],
    receiver: FakePagerDuty,
    caplog: pytest.LogCaptureFixture,
) -> None:
    row_id = enqueue(session_factory, page())
    worker = make_worker(session_factory, make_pagerduty(receiver, environ={}))
    with caplog.at_level(logging.ERROR, logger="bot.workers.outbox"):
        drain(worker, session_factory)
        worker.deliver_due()

    row = outbox_row(session_factory, row_id)
    assert (row.attempts, row.delivered_at, row.last_error) == (
        1, None, "PAGERDUTY_ROUTING_KEY_PROD is not set",
    )  # fmt: skip
    assert row.failed_at is not None
    assert receiver.requests() == []
    assert any("PAGERDUTY_ROUTING_KEY_PROD is not set" in r.getMessage() for r in caplog.records)


def test_an_event_pagerduty_refuses_fails_at_once_with_its_errors(
    session_factory: sessionmaker[Session], receiver: FakePagerDuty
) -> None:
    row_id = enqueue(session_factory, page())
    paging = make_pagerduty(receiver, environ={ROUTING_KEY_ENV: ROUTING_KEY[:31]})
    drain(make_worker(session_factory, paging), session_factory)

    row = outbox_row(session_factory, row_id)
    assert row.attempts == 1 and row.failed_at is not None
    assert row.last_error == (
        "PagerDuty refused the trigger for deploybot/prod/session-42/api-health (HTTP 400): "
        "Length of 'routing_key' is incorrect (should be 32 characters)"
    )
    assert [r.status for r in receiver.requests()] == [400]


def test_a_summary_over_1024_characters_is_truncated_on_the_wire(
    session_factory: sessionmaker[Session], receiver: FakePagerDuty
) -> None:
    payload = {**page(), "summary": "z" * 3000}  # not built by page_payload: deliver cuts it
    enqueue(session_factory, payload)
    drain(make_worker(session_factory, make_pagerduty(receiver)), session_factory)

    (event,) = receiver.events()
    assert event["payload"]["summary"] == "z" * 1023 + "…"


# The handler on its own


def test_network_errors_are_left_to_the_outbox_to_retry(receiver: FakePagerDuty) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again when the block ends: nobody listens
    paging = PagerDuty(
        events_url=f"https://127.0.0.1:{port}", environ={ROUTING_KEY_ENV: ROUTING_KEY}
    )
    started = time.monotonic()
    with pytest.raises(pagerduty.Error) as raised:
        paging.deliver(page())
    assert not isinstance(raised.value, PermanentFailure)
    assert time.monotonic() - started < 2  # no retries with sleeps inside the client


def test_rate_limit_without_retry_after_waits_the_default(receiver: FakePagerDuty) -> None:
    receiver.rate_limit(times=1)
    with pytest.raises(RetryAfter) as raised:
        make_pagerduty(receiver).deliver(page())
    assert raised.value.seconds == 0.02


def test_a_malformed_payload_is_a_permanent_failure(receiver: FakePagerDuty) -> None:
    paging = make_pagerduty(receiver)
    with pytest.raises(PermanentFailure, match="unknown PagerDuty action 'page'"):
        paging.deliver({**page(), "action": "page"})
    with pytest.raises(PermanentFailure, match="needs 'source'"):
        paging.deliver({k: v for k, v in page().items() if k != "source"})
    with pytest.raises(PermanentFailure, match="names no routing_key_env"):
        paging.deliver({k: v for k, v in page().items() if k != "routing_key_env"})
    assert receiver.requests() == []


def test_the_receiver_checks_the_events_v2_schema(receiver: FakePagerDuty) -> None:
    paging = make_pagerduty(receiver)
    with pytest.raises(PermanentFailure) as raised:
        paging.deliver({**page(), "severity": "fatal", "links": [{"text": "no href"}]})
    assert "'payload.severity' is invalid" in str(raised.value)
    assert "'links[0].href' is missing" in str(raised.value)
    with pytest.raises(PermanentFailure, match="not an ISO 8601 date-time"):
        paging.deliver({**page(), "timestamp": "yesterday"})
    assert receiver.events() == []


# Outages


def wait_requests(receiver: FakePagerDuty, count: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while len(receiver.requests()) < count:
        assert time.monotonic() < deadline, f"{len(receiver.requests())} requests"
        time.sleep(0.01)


def test_after_an_outage_every_event_goes_out_once_and_in_order(
    session_factory: sessionmaker[Session], receiver: FakePagerDuty
) -> None:
    """Server errors, rate limits and hanging requests in turn; then PagerDuty recovers."""
    paging = PagerDuty(
        events_url=receiver.url,
        verify=receiver.client_ssl_context(),
        environ={ROUTING_KEY_ENV: ROUTING_KEY},
        timeout=1.0,  # short, yet long enough for a loaded machine's answers in time
    )
    worker = OutboxWorker(
        session_factory,
        {"pagerduty": paging.deliver},
        backoff_base=0.01,
        backoff_cap=0.05,
        poll_interval=0.05,
        max_attempts=1000,
    )
    receiver.outage(500)
    first, other = page(), page(probe="db-health")
    rows = [enqueue(session_factory, p) for p in (first, page("acknowledge"), other)]
    worker.start()
    try:
        wait_requests(receiver, 5)
        rows.append(enqueue(session_factory, page("resolve")))
        receiver.outage(429, retry_after=0.05)
        wait_requests(receiver, 10)
        receiver.outage(None)  # requests hang until the client's timeout
        tried = outbox_row(session_factory, rows[0]).attempts
        deadline = time.monotonic() + 10
        while outbox_row(session_factory, rows[0]).attempts < tried + 2:
            assert time.monotonic() < deadline, "no attempt timed out"
            time.sleep(0.01)
        receiver.recover()
        events = receiver.wait_for_events(4, timeout=10)
    finally:
        worker.stop()

    statuses = Counter(r.status for r in receiver.requests())
    assert statuses[500] >= 5 and statuses[429] >= 1 and statuses[202] == 4
    arrived = Counter(e["payload"]["custom_details"][OUTBOX_ID] for e in events if "payload" in e)
    assert arrived == {rows[0]: 1, rows[2]: 1}  # each trigger once
    assert [e["event_action"] for e in receiver.alert(first["dedup_key"]).events] == [
        "trigger", "acknowledge", "resolve",
    ]  # fmt: skip
    assert [e["event_action"] for e in receiver.alert(other["dedup_key"]).events] == ["trigger"]
    assert receiver.alert_count(first["dedup_key"]) == 1


def test_pages_have_a_worker_and_a_backoff_cap_of_their_own(
    database_url: str, receiver: FakePagerDuty
) -> None:
    """Slack effects may wait minutes between tries; a page never waits more than its cap."""
    from bot.ops.settings import Settings
    from bot.server import create_bot
    from bot.storage.db import upgrade
    from tests.support.slack import FakeSlack

    upgrade(database_url)
    with FakeSlack() as fake:
        settings = Settings(
            SLACK_BOT_TOKEN="xoxb-test",
            SLACK_SIGNING_SECRET="secret",
            SLACK_API_URL=fake.base_url,
            DATABASE_URL=database_url,
            DEPLOYBOT_CONFIG="examples/minimal.yaml",
            DEPLOYBOT_OUTBOX_BACKOFF_CAP=300,
            DEPLOYBOT_PAGERDUTY_BACKOFF_CAP=2,
        )
        bot = create_bot(settings, pagerduty=make_pagerduty(receiver))
        try:
            (pages,) = [w for w in bot.workers if "pagerduty" in w.topics]
            assert pages.topics == {"pagerduty"}  # a hanging PagerDuty holds up no Slack update
            factory = bot.runtime.session_factory
            receiver.outage(500)
            row_id = enqueue(factory, page())
            for _ in range(12):  # 2**11 s uncapped
                with factory() as db, db.begin():
                    row = db.get(OutboxRow, row_id)
                    assert row is not None
                    row.next_attempt_at = datetime.now(UTC)
                pages.deliver_due()
                row = outbox_row(factory, row_id)
                wait = row.next_attempt_at - datetime.now(UTC)
                assert wait <= timedelta(seconds=2)
            assert row.attempts == 12 and row.failed_at is None
        finally:
            bot.close()
