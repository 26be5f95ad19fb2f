"""What the web tier hands to the workers, and how workers claim recorded requests.

The middleware answers a handed-off request right after its insert, without running its
listener; the few requests whose answer is the HTTP response run inline. Claims are safe
across processes: claimers on engines of their own never take one request twice.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from slack_bolt import BoltResponse
from slack_bolt.request import BoltRequest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.rendering.ids import ActionId, ViewId
from bot.slack.inbox import SlackInbox, handed_off
from bot.slack.inbox_workers import InboxWorkers
from bot.storage.db import make_engine, make_sessionmaker
from bot.storage.models import InboxRow
from bot.storage.uow import UnitOfWork

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def command(n: int) -> dict[str, Any]:
    return {"command": "/deploy", "text": "status", "trigger_id": f"t{n}", "user_id": "U1"}


def click(action_id: str, n: int = 1) -> dict[str, Any]:
    return {
        "type": "block_actions",
        "trigger_id": f"c{n}",
        "user": {"id": "U1"},
        "actions": [{"action_id": action_id, "action_ts": f"{n}.0"}],
    }


@pytest.mark.parametrize(
    ("body", "later"),
    [
        (command(1), True),
        (click(ActionId.TICK), True),
        (click(ActionId.SIGN_OFF), True),
        (click(ActionId.ROLL_BACK), True),
        (click(ActionId.SKIP), False),  # opens a modal: trigger_id good for 3 s
        (click(ActionId.ABORT), False),
        ({"type": "view_submission", "view": {"callback_id": ViewId.ABORT}}, False),
        ({"type": "shortcut", "callback_id": "x", "trigger_id": "t"}, False),
        ({"type": "event_callback", "event": {"type": "app_mention"}}, False),
        ({"type": "block_actions", "actions": []}, False),
        ("payload", False),
    ],
)
def test_what_the_web_tier_hands_off(body: Any, later: bool) -> None:
    assert handed_off(body) is later


class Next:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> BoltResponse:
        self.calls += 1
        return BoltResponse(status=200, body="ran inline")


def rows(factory: sessionmaker[Session]) -> dict[str, InboxRow]:
    with factory() as db:
        return {row.key: row for row in db.scalars(select(InboxRow))}


@pytest.mark.parametrize("shared", [False, True], ids=["all-in-one", "web-only"])
def test_a_handed_off_request_is_answered_after_its_insert(
    session_factory: sessionmaker[Session], shared: bool
) -> None:
    handed: list[str] = []
    inbox = SlackInbox(
        session_factory,
        claim=30,
        clock=lambda: T0,
        hand_off=lambda key, body: handed.append(key),
        shared=shared,
    )
    go_on = Next()
    answer = inbox.middleware(BoltRequest(body=command(1), mode="socket_mode"), None, go_on)  # type: ignore[arg-type]
    assert (answer.status, answer.body, go_on.calls) == (200, "", 0)
    assert handed == ["trigger:t1"]
    row = rows(session_factory)["trigger:t1"]
    # All in one process: this process holds it. Web only: due at once, for any worker.
    assert row.claimed_until == (T0 if shared else T0 + timedelta(seconds=30))

    # A modal's submit runs inline, held by this process whatever the role.
    submit = {"type": "view_submission", "view": {"id": "V1", "hash": "h1"}}
    answer = inbox.middleware(BoltRequest(body=submit, mode="socket_mode"), None, go_on)  # type: ignore[arg-type]
    assert (answer.body, go_on.calls, handed) == ("ran inline", 1, ["trigger:t1"])
    assert rows(session_factory)["view:V1:h1"].claimed_until == T0 + timedelta(seconds=30)

    # A retry is answered and changes nothing.
    answer = inbox.middleware(BoltRequest(body=command(1), mode="socket_mode"), None, go_on)  # type: ignore[arg-type]
    assert (answer.status, answer.body, go_on.calls, len(handed)) == (200, "", 1, 1)


def test_workers_claim_what_nobody_holds_oldest_first(
    session_factory: sessionmaker[Session],
) -> None:
    now = [T0]
    inbox = SlackInbox(session_factory, claim=10, clock=lambda: now[0])
    with UnitOfWork(session_factory) as uow:
        uow.inbox.receive("left", command(1), at=T0, claim=timedelta(0))  # web only
        uow.inbox.receive("held", command(2), at=T0, claim=timedelta(seconds=10))
        uow.inbox.receive("newer", command(3), at=T0 + timedelta(seconds=1), claim=timedelta(0))
        uow.inbox.receive("done", command(4), at=T0, claim=timedelta(0))
        uow.inbox.finish("done", at=T0)
        uow.commit()
    now[0] = T0 + timedelta(seconds=2)
    assert [key for key, _ in inbox.claim_due(1)] == ["left"]
    assert [key for key, _ in inbox.claim_due(5)] == ["newer"]
    assert inbox.claim_due(5) == []
    now[0] = T0 + timedelta(seconds=11)  # "held"'s holder stopped: its claim ran out
    assert [(key, body) for key, body in inbox.claim_due(5)] == [("held", command(2))]
    now[0] = T0 + timedelta(seconds=13)  # "left" was claimed at 2 s, for 10 s
    assert [key for key, _ in inbox.claim_due(5)] == ["left", "newer"]


def test_claimers_on_engines_of_their_own_never_take_one_request_twice(
    database_url: str, session_factory: sessionmaker[Session]
) -> None:
    """Four claimers, each with its own engine (its own connections, as a process has),
    race for 200 requests left to the workers: each request is claimed exactly once."""
    with UnitOfWork(session_factory) as uow:
        for n in range(200):
            uow.inbox.receive(f"r{n:03}", command(n), at=T0, claim=timedelta(0))
        uow.commit()
    engines = [make_engine(database_url) for _ in range(4)]
    claimed: list[list[str]] = [[] for _ in engines]
    start = threading.Barrier(len(engines))

    def claim(n: int) -> None:
        inbox = SlackInbox(make_sessionmaker(engines[n]), claim=60, clock=lambda: T0)
        start.wait()
        while batch := inbox.claim_due(7):
            claimed[n] += [key for key, _ in batch]

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(len(engines))]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for engine in engines:
            engine.dispose()
    everything = [key for keys in claimed for key in keys]
    assert sorted(everything) == [f"r{n:03}" for n in range(200)]  # none twice, none left


def test_a_request_waiting_here_past_its_claim_is_not_queued_twice(
    session_factory: sessionmaker[Session],
) -> None:
    """Under a backlog a request handed over at once may wait here longer than its claim:
    the poller claims it again, and it stays queued once."""
    now = [T0]
    inbox = SlackInbox(session_factory, claim=10, clock=lambda: now[0])
    workers = InboxWorkers(inbox, app=None, threads=4)  # type: ignore[arg-type]  # not started
    inbox.hand_off = workers.submit
    go_on = Next()
    for n in (1, 2):
        request = BoltRequest(body=command(n), mode="socket_mode")
        assert inbox.middleware(request, None, go_on).status == 200  # type: ignore[arg-type]
    assert (workers.queued, go_on.calls) == (2, 0)
    now[0] = T0 + timedelta(seconds=11)
    assert workers.take_due() == 2  # claimed again in the table...
    assert workers.queued == 2  # ...and queued once
