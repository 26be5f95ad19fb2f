"""Storage on SQLite and PostgreSQL: migrations, repositories, the unit of work, races."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, func, insert, inspect, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bot.domain import SYSTEM, Actor, DeploySession, Event, SessionPolicy, SignOffRule, apply
from bot.domain import commands as c
from bot.domain.checklist import Checklist, ChecklistItem, Gate, Section, Severity
from bot.domain.errors import ConcurrencyConflict, DomainError, NotFound
from bot.storage.db import alembic_config, make_engine, migrations_current, upgrade
from bot.storage.models import Base, SessionRow
from bot.storage.repositories import SlackMessage
from bot.storage.uow import UnitOfWork, run_in_transaction

CEST = timezone(timedelta(hours=2))
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
DEPLOYER = Actor("U1", frozenset({"deployers"}))
APPROVER = Actor("U2", frozenset({"approvers"}))


def make_session(
    *, service: str = "api", items: int = 2, opened_at: datetime = NOW
) -> DeploySession:
    checklist = Checklist(
        title="Release",
        sections=(
            Section(
                title="Pre-Deployment",
                items=tuple(ChecklistItem(text=f"Step {n}") for n in range(1, items + 1)),
            ),
            Section(
                title="Post-Deployment",
                gate=Gate(after=("pre-deployment",), signoffs=("qa-lead",)),
                items=(
                    ChecklistItem(
                        text="Smoke test",
                        probe="api-health",
                        severity=Severity.CRITICAL,
                        children=(ChecklistItem(text="Check the dashboard"),),
                    ),
                ),
            ),
        ),
    ).numbered()
    policy = SessionPolicy(
        signoffs=(SignOffRule("qa-lead", "QA Lead", ("approvers",)),),
        operators=("deployers",),
        oncall=("oncall",),
        deploy_gate=Gate(signoffs=("qa-lead",)),
        complete_gate=Gate(after=("post-deployment",), signoffs=("qa-lead",)),
    )
    return DeploySession(
        environment="prod",
        requester=DEPLOYER.user_id,
        checklist=checklist,
        policy=policy,
        opened_at=opened_at,
        service=service,
        version="v1.4.2",
    )


def add(factory: sessionmaker[Session], session: DeploySession) -> int:
    with UnitOfWork(factory) as uow:
        session_id = uow.sessions.add(session)
        uow.commit()
    return session_id


def change(
    factory: sessionmaker[Session], session_id: int, command: c.Command, actor: Actor = DEPLOYER
) -> DeploySession:
    with UnitOfWork(factory) as uow:
        outcome = apply(uow.sessions.get(session_id), command, actor, NOW)
        uow.sessions.save(outcome.session)
        uow.commit()
    return outcome.session


def revision_of(engine: Engine, session_id: int) -> int:
    with engine.connect() as connection:
        query = select(SessionRow.revision).where(SessionRow.id == session_id)
        return int(connection.execute(query).scalar_one())


# Migrations


def test_upgrade_is_idempotent_and_current_only_after_it(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        assert migrations_current(engine) is False
        head = upgrade(database_url)
        newest = ScriptDirectory.from_config(alembic_config()).get_current_head()
        assert upgrade(database_url) == head == newest
        assert migrations_current(engine) is True
    finally:
        engine.dispose()


def test_downgrade_to_base_and_back(database_url: str) -> None:
    upgrade(database_url)
    command.downgrade(alembic_config(database_url), "base")
    engine = make_engine(database_url)
    try:
        assert migrations_current(engine) is False
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        upgrade(database_url)
        assert migrations_current(engine) is True
    finally:
        engine.dispose()


def test_models_match_the_migrations(engine: Engine) -> None:
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []


# Sessions


def test_round_trip_keeps_items_signoffs_gates_and_aware_timestamps(
    session_factory: sessionmaker[Session],
) -> None:
    session = make_session(opened_at=datetime(2026, 11, 23, 14, 0, tzinfo=CEST))
    session = apply(session, c.TickItem("1.1"), DEPLOYER, NOW).session
    session = apply(session, c.SkipItem("1.2", "done by hand"), DEPLOYER, NOW).session
    session = apply(session, c.SignOff("qa-lead"), APPROVER, NOW.astimezone(CEST)).session
    session = apply(session, c.RecordProbeResult("2.1", False, "HTTP 503"), SYSTEM, NOW).session
    session = apply(session, c.Abort("bad build"), DEPLOYER, NOW + timedelta(hours=1)).session

    session.id = add(session_factory, session)
    with UnitOfWork(session_factory) as uow:
        loaded = uow.sessions.get(session.id)

    assert loaded == session
    assert loaded.opened_at.utcoffset() == timedelta(0)
    assert loaded.closed_at == NOW + timedelta(hours=1)
    assert loaded.checklist.sections[1].gate == Gate(
        after=("pre-deployment",), signoffs=("qa-lead",)
    )
    assert loaded.checklist.sections[1].items[0].children[0].id == "2.1.1"


def test_get_unknown_session_says_what_to_do(session_factory: sessionmaker[Session]) -> None:
    with UnitOfWork(session_factory) as uow, pytest.raises(NotFound) as raised:
        uow.sessions.get(42)
    assert str(raised.value) == "No deploy session #42. Try /deploy list."


def test_one_open_session_per_environment_and_service(
    session_factory: sessionmaker[Session],
) -> None:
    first = add(session_factory, make_session())

    with UnitOfWork(session_factory) as uow, pytest.raises(DomainError) as raised:
        uow.sessions.add(make_session())
    assert str(raised.value).startswith(f"A deploy of prod api is already open: #{first}.")

    other = add(session_factory, make_session(service="web"))
    change(session_factory, first, c.Abort("wrong version"))
    again = add(session_factory, make_session())

    with UnitOfWork(session_factory) as uow:
        assert uow.sessions.find_open("prod", "api") == uow.sessions.get(again)
        assert [s.id for s in uow.sessions.list_open()] == [other, again]
        assert uow.sessions.list_open("staging") == []
        assert uow.sessions.environment_of(first) == "prod"
        assert uow.sessions.environment_of(999) is None


def test_the_database_itself_refuses_a_second_open_session(engine: Engine) -> None:
    row: dict[str, Any] = {
        "environment": "prod", "service": "", "version": "", "requester": "U1",
        "state": "open", "is_open": True, "checklist": {}, "policy": {}, "progress": {},
        "opened_at": NOW, "updated_at": NOW, "revision": 1,
    }  # fmt: skip
    with engine.begin() as connection:
        connection.execute(insert(SessionRow), [row, {**row, "is_open": False}])
    with engine.begin() as connection, pytest.raises(IntegrityError):
        connection.execute(insert(SessionRow), [row])


def test_a_refused_add_changes_nothing(session_factory: sessionmaker[Session]) -> None:
    add(session_factory, make_session())
    with UnitOfWork(session_factory) as uow, pytest.raises(DomainError):
        uow.audit.append([Event("session_opened", "U1", NOW)], session_id=None, environment="prod")
        uow.sessions.add(make_session())
    with session_factory() as db:
        assert db.scalar(select(func.count()).select_from(SessionRow)) == 1
        assert db.scalar(text("SELECT count(*) FROM audit_events")) == 0


# Audit log


def test_audit_log_appends_and_reads_in_order(session_factory: sessionmaker[Session]) -> None:
    session_id = add(session_factory, make_session())
    events = [
        Event("session_opened", "U1", NOW, {"service": "api"}),
        Event("item_ticked", "U1", NOW.astimezone(CEST), {"item": "1.1"}),
        Event("state_changed", "U1", NOW, {"from": "open", "to": "aborted"}),
    ]
    with UnitOfWork(session_factory) as uow:
        uow.audit.append(events[:2], session_id=session_id, environment="prod")
        uow.audit.append(events[2:], session_id=session_id, environment="prod")
        uow.audit.append(
            [Event("environment_locked", "U1", NOW)], session_id=None, environment="prod"
        )
        uow.commit()
    with UnitOfWork(session_factory) as uow:
        entries = uow.audit.for_session(session_id)
    assert [(e.kind, e.actor, e.data, e.at) for e in entries] == [
        (e.kind, e.actor, e.data, e.at) for e in events
    ]
    assert [e.id for e in entries] == sorted(e.id for e in entries)
    assert all(e.session_id == session_id and e.environment == "prod" for e in entries)
    assert all(e.at.tzinfo is not None for e in entries)


@pytest.mark.parametrize(
    "statement", ["UPDATE audit_events SET kind = 'forged'", "DELETE FROM audit_events"]
)
def test_audit_log_is_append_only_in_the_database(
    engine: Engine, session_factory: sessionmaker[Session], statement: str
) -> None:
    with UnitOfWork(session_factory) as uow:
        uow.audit.append([Event("session_opened", "U1", NOW)], session_id=None, environment="prod")
        uow.commit()
    with engine.begin() as connection, pytest.raises(IntegrityError, match="append-only"):
        connection.execute(text(statement))
    with engine.connect() as connection:
        assert connection.execute(text("SELECT kind FROM audit_events")).scalars().all() == [
            "session_opened"
        ]


# Locks and Slack messages


def test_lock_and_unlock(session_factory: sessionmaker[Session]) -> None:
    with UnitOfWork(session_factory) as uow:
        assert uow.locks.get("prod") is None
        lock = uow.locks.lock(environment="prod", reason="freeze", by="U1", at=NOW)
        uow.commit()
    with UnitOfWork(session_factory) as uow:
        assert uow.locks.get("prod") == lock
        assert lock.locked_at == NOW and lock.locked_at.tzinfo is not None
        with pytest.raises(DomainError) as raised:
            uow.locks.lock(environment="prod", reason="mine", by="U2", at=NOW)
    assert "<@U1>" in str(raised.value) and "freeze" in str(raised.value)
    assert "2026-11-23 12:00 UTC" in str(raised.value)

    with UnitOfWork(session_factory) as uow:
        assert uow.locks.unlock("prod") == lock
        uow.commit()
    with UnitOfWork(session_factory) as uow:
        assert uow.locks.get("prod") is None
        with pytest.raises(DomainError, match="prod is not locked"):
            uow.locks.unlock("prod")


def test_slack_messages_are_remembered_by_purpose(session_factory: sessionmaker[Session]) -> None:
    session_id = add(session_factory, make_session())
    with UnitOfWork(session_factory) as uow:
        uow.slack_messages.put(session_id, "summary", "C1", "1.0")
        uow.slack_messages.put(session_id, "section:pre-deployment", "C1", "2.0")
        uow.commit()
    with UnitOfWork(session_factory) as uow:
        uow.slack_messages.put(session_id, "summary", "C1", "3.0")  # reposted: replaces
        uow.commit()
    with UnitOfWork(session_factory) as uow:
        assert uow.slack_messages.get(session_id, "summary") == ("C1", "3.0")
        assert uow.slack_messages.get(session_id, "incident") is None
        assert uow.slack_messages.for_session(session_id) == {
            "summary": SlackMessage("C1", "3.0"),
            "section:pre-deployment": SlackMessage("C1", "2.0"),
        }


def test_a_message_record_never_goes_back_to_an_older_revision(
    session_factory: sessionmaker[Session],
) -> None:
    session_id = add(session_factory, make_session())
    at = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    with UnitOfWork(session_factory) as uow:
        uow.slack_messages.put(session_id, "summary", "C1", "1.0", version=5, digest="five")
        uow.slack_messages.shown(session_id, "summary", version=3, digest="three", sent_at=at)
        uow.slack_messages.shown(session_id, "summary", version=7, digest="seven", sent_at=at)
        uow.slack_messages.shown(session_id, "summary", version=6, digest="six", sent_at=None)
        uow.commit()
    with UnitOfWork(session_factory) as uow:
        assert uow.slack_messages.for_session(session_id)["summary"] == SlackMessage(
            "C1", "1.0", 7, "seven", at
        )


# Concurrency


def test_second_writer_of_a_stale_session_gets_a_conflict(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    session_id = add(session_factory, make_session())
    with UnitOfWork(session_factory) as first, UnitOfWork(session_factory) as second:
        mine = apply(first.sessions.get(session_id), c.TickItem("1.1"), DEPLOYER, NOW)
        theirs = apply(second.sessions.get(session_id), c.TickItem("1.2"), DEPLOYER, NOW)
        first.sessions.save(mine.session)
        first.commit()
        with pytest.raises(ConcurrencyConflict):
            second.sessions.save(theirs.session)
            second.commit()
    with UnitOfWork(session_factory) as uow:
        assert set(uow.sessions.get(session_id).items) == {"1.1"}
    assert revision_of(engine, session_id) == 2


def test_save_needs_the_session_loaded_in_the_same_unit_of_work(
    session_factory: sessionmaker[Session],
) -> None:
    session = make_session()
    session.id = add(session_factory, session)
    with UnitOfWork(session_factory) as uow, pytest.raises(ValueError):
        uow.sessions.save(session)


def test_run_in_transaction_gives_up_when_its_time_is_up(
    session_factory: sessionmaker[Session],
) -> None:
    calls = []

    def always_conflicts(uow: UnitOfWork) -> None:
        calls.append(uow)
        raise ConcurrencyConflict("again")

    with pytest.raises(ConcurrencyConflict):
        run_in_transaction(session_factory, always_conflicts, within=0.05)
    assert len(calls) >= 2  # it tried again, then gave up


def test_racing_ticks_lose_no_update(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    threads, ticks = 8, 10
    session_id = add(session_factory, make_session(items=threads * ticks))
    start = threading.Barrier(threads)
    attempts: list[int] = []

    def tick_all(worker: int) -> int:
        start.wait()
        written = 0
        for n in range(ticks):
            item = f"1.{worker * ticks + n + 1}"

            def attempt(uow: UnitOfWork, item: str = item) -> None:
                attempts.append(1)
                outcome = apply(uow.sessions.get(session_id), c.TickItem(item), DEPLOYER, NOW)
                uow.sessions.save(outcome.session)
                uow.audit.append(outcome.events, session_id=session_id, environment="prod")
                uow.commit()

            run_in_transaction(session_factory, attempt)
            written += 1
        return written

    with ThreadPoolExecutor(threads) as pool:
        writes = sum(pool.map(tick_all, range(threads)))

    with UnitOfWork(session_factory) as uow:
        session = uow.sessions.get(session_id)
        ticked = [e for e in uow.audit.for_session(session_id) if e.kind == "item_ticked"]
    assert writes == threads * ticks
    assert {i for i, p in session.items.items() if p.status == "done"} == {
        f"1.{n}" for n in range(1, threads * ticks + 1)
    }
    assert len(ticked) == writes
    assert revision_of(engine, session_id) == 1 + writes  # the insert, then one per tick
    assert len(attempts) >= writes
