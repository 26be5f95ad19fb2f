"""Schedules on SQLite and PostgreSQL: leader locks, job sync, slots that fire once."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from bot.app.probe_rounds import SessionProbes
from bot.app.sessions import DeployService
from bot.config.loader import load_config
from bot.domain import SYSTEM, SessionState
from bot.domain.commands import FinishDeployment, SignOff, StartDeployment, StartMonitoring
from bot.ops.settings import Settings
from bot.storage.db import make_engine, make_sessionmaker, upgrade
from bot.storage.schedule_slots import claim_slot
from bot.storage.uow import UnitOfWork
from bot.workers.jobs import JobContext, Jobs
from bot.workers.leader import AdvisoryLock, FileLock, advisory_key, leader_lock_for
from bot.workers.outbox import OutboxWorker
from bot.workers.scheduler import ScheduleRunner


def write_config(
    tmp_path: Path, *, monitoring: str = "every 1s for 4s", expire_after: str = "2h"
) -> Path:
    (tmp_path / "checklist.yaml").write_text(
        "title: T\nsections:\n  - title: Pre\n    items:\n      - text: Ready\n",
        encoding="utf-8",
    )
    config = tmp_path / "deploybot.yaml"
    config.write_text(
        f"""
roles:
  deployers: [U0DEPLOYER]
  approvers: [U0APPROVER]
probes:
  smoke:
    kind: command
    argv: ["{sys.executable}", "-c", "print('ok')"]
    timeout: 10s
    description: Smoke test answers
environments:
  staging:
    channel: "#deploys"
    checklist: checklist.yaml
    starters: [deployers]
    signoffs:
      - role: QA Lead
        by: [approvers]
    probes: [smoke]
    monitoring: {monitoring}
    reminders: {{after: 1h}}
    expire_after: {expire_after}
""",
        encoding="utf-8",
    )
    return config


def monitoring_session(service: DeployService) -> int:
    session = service.open(environment="staging", user_id="U0DEPLOYER")
    assert session.id is not None
    sid = session.id
    service.act(sid, SignOff("qa-lead"), "U0APPROVER")
    service.act(sid, StartDeployment(), "U0DEPLOYER")
    service.act(sid, FinishDeployment(), "U0DEPLOYER")
    service.act_as(sid, StartMonitoring(), SYSTEM)
    return sid


def make_context(
    config_path: Path, session_factory: sessionmaker[Session]
) -> tuple[DeployService, JobContext]:
    config = load_config(config_path)
    service = DeployService(config=config, session_factory=session_factory)
    probes = SessionProbes(config=config, service=service)
    context = JobContext(
        config=config, service=service, probes=probes, session_factory=session_factory
    )
    return service, context


def schedule_worker(context: JobContext, *, poll: float = 0.1) -> OutboxWorker:
    """A replica's worker for the sessions' scheduled rows, as ``serve`` composes it."""
    return OutboxWorker(
        context.session_factory,
        {"schedule": Jobs(context).deliver},
        poll_interval=poll,
        backoff_base=0.1,
        backoff_cap=0.5,
        drains=False,
    )


def pending_schedule(factory: sessionmaker[Session], sid: int) -> list[tuple[str, datetime]]:
    """The session's armed, undelivered schedule rows: (key, due), soonest first."""
    from sqlalchemy import select

    from bot.storage.models import OutboxRow

    with factory() as db:
        rows = db.execute(
            select(OutboxRow.idempotency_key, OutboxRow.next_attempt_at)
            .where(
                OutboxRow.topic == "schedule",
                OutboxRow.session_id == sid,
                OutboxRow.delivered_at.is_(None),
            )
            .order_by(OutboxRow.next_attempt_at)
        ).all()
    return [(key, due) for key, due in rows]


postgres_only = pytest.mark.parametrize(
    "database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)


@pytest.fixture
def other_schema_url(database_url: str) -> Iterator[str]:
    """A second installation on the same PostgreSQL server and database: its own schema."""
    schema = f"test_{uuid.uuid4().hex}"
    url = make_url(database_url).update_query_dict({"options": f"-csearch_path={schema}"})
    admin = create_engine(url)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@postgres_only
def test_advisory_lock_has_one_holder_until_its_connection_dies(engine: Engine) -> None:
    url = engine.url.render_as_string(hide_password=False)
    first, second = AdvisoryLock(url), AdvisoryLock(url)
    try:
        assert first.try_acquire() is True
        assert second.try_acquire() is False
        assert first.still_held() is True
        assert first.key is not None
        # The holder dies: its backend is terminated, as when a pod is killed. A bigint
        # advisory key shows in pg_locks as classid (high half) and objid (low half).
        with create_engine(url).connect() as admin:
            admin.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
                    "AND classid = :high AND objid = :low AND objsubid = 1 AND granted"
                ),
                {"high": (first.key >> 32) & 0xFFFFFFFF, "low": first.key & 0xFFFFFFFF},
            )
        assert first.still_held() is False
        assert second.try_acquire() is True
    finally:
        first.release()
        second.release()


@postgres_only
def test_the_advisory_key_is_derived_from_the_database_and_schema(
    database_url: str, other_schema_url: str
) -> None:
    here, there = AdvisoryLock(database_url), AdvisoryLock(other_schema_url)
    try:
        assert here.try_acquire() is True
        assert there.try_acquire() is True  # another installation: a leader of its own
        schema = make_url(database_url).query["options"].removeprefix("-csearch_path=")
        assert here.installation == f"{make_url(database_url).database}/{schema}"
        assert here.key == advisory_key(f"test/{schema}")
        assert here.key != there.key
        assert -(2**63) <= here.key < 2**63  # a bigint, as pg_try_advisory_lock takes
    finally:
        here.release()
        there.release()


@postgres_only
def test_two_installations_on_one_server_each_have_a_leader(
    database_url: str, session_factory: sessionmaker[Session], other_schema_url: str, tmp_path: Path
) -> None:
    upgrade(other_schema_url)
    other_engine = make_engine(other_schema_url)
    config = write_config(tmp_path)
    installations = [(database_url, session_factory)] * 2
    installations += [(other_schema_url, make_sessionmaker(other_engine))] * 2
    runners = [
        ScheduleRunner(
            context=make_context(config, factory)[1], lock=leader_lock_for(url), poll=0.1
        )
        for url, factory in installations
    ]
    try:
        for runner in runners:
            runner.start()
        time.sleep(0.5)  # several polls (every 0.1 s): anyone who could lead does by now
        assert [r.leading for r in runners[:2]].count(True) == 1  # one leader per installation
        assert [r.leading for r in runners[2:]].count(True) == 1
    finally:
        for runner in runners:
            runner.stop()
        other_engine.dispose()


@postgres_only
def test_a_configured_installation_name_overrides_the_schema(
    database_url: str, other_schema_url: str
) -> None:
    here = leader_lock_for(database_url, installation="payments-prod")
    there = leader_lock_for(other_schema_url, installation="payments-prod")
    assert isinstance(here, AdvisoryLock) and isinstance(there, AdvisoryLock)
    try:
        assert here.key == there.key == advisory_key("payments-prod")
        assert here.try_acquire() is True
        assert there.try_acquire() is False  # named alike: one installation, one leader
    finally:
        here.release()
        there.release()


def test_the_installation_setting_is_optional(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEPLOYBOT_INSTALLATION", raising=False)
    assert Settings(_env_file=None).installation is None
    monkeypatch.setenv("DEPLOYBOT_INSTALLATION", "payments-prod")
    assert Settings(_env_file=None).installation == "payments-prod"


def test_the_sqlite_lock_file_sits_beside_the_database(tmp_path: Path) -> None:
    lock = leader_lock_for(f"sqlite:///{tmp_path / 'one' / 'deploybot.db'}")
    assert isinstance(lock, FileLock)
    assert lock.path == tmp_path / "one" / "deploybot.db.scheduler.lock"


def test_file_lock_has_one_holder(tmp_path: Path) -> None:
    first, second = FileLock(tmp_path / "x.lock"), FileLock(tmp_path / "x.lock")
    assert first.try_acquire() is True
    assert second.try_acquire() is False
    first.release()
    assert second.try_acquire() is True
    second.release()


def test_in_memory_sqlite_cannot_hold_schedules() -> None:
    with pytest.raises(ValueError, match="in-memory database cannot keep schedules"):
        leader_lock_for("sqlite://")


def test_a_slot_fires_once(
    database_url: str, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    service, _ = make_context(write_config(tmp_path), session_factory)
    sid = monitoring_session(service)
    at = datetime.now(UTC)
    assert claim_slot(session_factory, sid, "monitor", 1, at=at) is True
    assert claim_slot(session_factory, sid, "monitor", 1, at=at) is False
    assert claim_slot(session_factory, sid, "monitor", 2, at=at) is True
    with UnitOfWork(session_factory) as uow:  # a duplicate leaves the transaction usable
        assert uow.schedule_slots.claim(sid, "remind", 1, at=at) is True
        assert uow.schedule_slots.claim(sid, "remind", 1, at=at) is False
        assert uow.schedule_slots.claim(sid, "expire", 1, at=at) is True
        uow.commit()
    with UnitOfWork(session_factory) as uow:
        assert uow.schedule_slots.latest([sid, sid + 1]) == {
            (sid, "monitor"): 2,
            (sid, "remind"): 1,
            (sid, "expire"): 1,
        }


def test_monitoring_runs_probes_then_completes(
    database_url: str, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    service, context = make_context(write_config(tmp_path), session_factory)
    sid = monitoring_session(service)
    since = datetime.now(UTC)
    now = [since + timedelta(seconds=1)]
    jobs = Jobs(replace(context, clock=lambda: now[0]))
    every, window = timedelta(seconds=1), timedelta(seconds=4)
    jobs.monitor(sid, since, every, window)  # slot 1
    jobs.monitor(sid, since, every, window)  # slot 1 again: skipped
    with UnitOfWork(session_factory) as uow:
        runs = uow.probe_runs.for_session(sid)
    assert [(r.probe, r.ok) for r in runs] == [("smoke", True)]
    assert service.get(sid).state is SessionState.MONITORING
    now[0] = since + timedelta(seconds=4)
    jobs.monitor(sid, since, every, window)  # slot 4: the last one
    assert service.get(sid).state is SessionState.COMPLETED


def test_expire_aborts_and_frees_the_environment(
    database_url: str, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    service, context = make_context(write_config(tmp_path), session_factory)
    session = service.open(environment="staging", user_id="U0DEPLOYER")
    assert session.id is not None
    Jobs(context).expire(session.id, timedelta(hours=2))
    expired = service.get(session.id)
    assert expired.state is SessionState.ABORTED
    assert expired.outcome_reason == "expired: open longer than 2:00:00"
    assert service.open(environment="staging", user_id="U0DEPLOYER").id is not None


def test_scheduled_rows_run_monitoring_to_completion(
    database_url: str, engine: Engine, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    service, context = make_context(
        write_config(tmp_path, monitoring="every 300ms for 900ms"), session_factory
    )
    worker = schedule_worker(context)
    worker.start()
    try:
        sid = monitoring_session(service)  # arms round 1 with the change; no leader needed
        deadline = time.monotonic() + 15
        while service.get(sid).state is not SessionState.COMPLETED:
            assert time.monotonic() < deadline, "monitoring did not run to completion"
            time.sleep(0.1)
        with UnitOfWork(session_factory) as uow:
            runs = uow.probe_runs.for_session(sid)
        assert 1 <= len(runs) <= 3
        time.sleep(0.2)
        # The watch's chain ended with it; the expiry and the next reminder stay armed and
        # end themselves when due (the session is closed by then).
        left = sorted(key for key, _ in pending_schedule(session_factory, sid))
        assert left == [f"expire:{sid}:1", f"remind:{sid}:1"]
    finally:
        worker.stop()


def test_the_leader_reconciles_sessions_whose_rows_are_missing(
    database_url: str, engine: Engine, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    """Sessions opened before schedules were outbox rows get theirs from the leader."""
    from sqlalchemy import delete

    from bot.storage.models import OutboxRow

    service, context = make_context(write_config(tmp_path), session_factory)
    session = service.open(environment="staging", user_id="U0DEPLOYER")
    assert session.id is not None
    armed = pending_schedule(session_factory, session.id)
    opened = session.opened_at
    assert armed == [
        (f"remind:{session.id}:1", opened + timedelta(hours=1)),
        (f"expire:{session.id}:1", opened + timedelta(hours=2)),
    ]
    with session_factory() as db:
        db.execute(delete(OutboxRow).where(OutboxRow.topic == "schedule"))
        db.commit()
    lock = (
        leader_lock_for(database_url)
        if engine.dialect.name == "postgresql"
        else FileLock(tmp_path / "leader.lock")
    )
    runner = ScheduleRunner(context=context, lock=lock, poll=0.1)
    runner.start()
    try:
        deadline = time.monotonic() + 10
        while pending_schedule(session_factory, session.id) != armed:
            assert time.monotonic() < deadline, "the leader re-arms the session's schedule"
            time.sleep(0.1)
        assert runner.reconcile() == 2  # again: the same rows, nothing doubled
        assert pending_schedule(session_factory, session.id) == armed
    finally:
        runner.stop()


def test_reminder_names_the_missing_signoffs_in_the_thread(
    database_url: str, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    from sqlalchemy import select

    from bot.storage.models import OutboxRow

    service, context = make_context(write_config(tmp_path), session_factory)
    session = service.open(environment="staging", user_id="U0DEPLOYER")
    assert session.id is not None

    def nudges() -> list[dict[str, object]]:
        """The thread replies the reminders wrote to the outbox, in order."""
        with session_factory() as db:
            payloads = db.scalars(
                select(OutboxRow.payload).where(OutboxRow.topic == "slack").order_by(OutboxRow.id)
            ).all()
        return [p for p in payloads if p.get("kind") == "reply"]

    opened = session.opened_at
    jobs = Jobs(replace(context, clock=lambda: opened + timedelta(hours=1)))
    jobs.remind(session.id, opened, timedelta(hours=1))
    jobs.remind(session.id, opened, timedelta(hours=1))  # the same slot: once only
    assert [(n["purpose"], n["text"]) for n in nudges()] == [
        (
            "summary",
            f":bell: Deploy #{session.id} has waited 1:00:00 for sign-offs:\n"
            "• *QA Lead*: <@U0APPROVER>",
        )
    ]
    assert [e.kind for e in service.history(session.id)].count("reminder") == 1
    service.act(session.id, SignOff("qa-lead"), "U0APPROVER")
    jobs = Jobs(replace(context, clock=lambda: opened + timedelta(hours=2)))
    jobs.remind(session.id, opened, timedelta(hours=1))  # nothing missing: no nudge
    assert len(nudges()) == 1


def test_housekeeping_drops_old_request_keys_and_delivered_outbox_rows(
    database_url: str, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    from sqlalchemy import insert, select

    from bot.storage.models import InboxRow, OutboxRow

    _, context = make_context(write_config(tmp_path), session_factory)
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    jobs = Jobs(replace(context, clock=lambda: now))
    with session_factory() as db:
        db.execute(
            insert(InboxRow),
            [
                {"key": key, "body": {}, "received_at": at, "claimed_until": at, "done_at": at}
                for key, at in (("old", now - timedelta(days=2)), ("new", now - timedelta(hours=1)))
            ],
        )
        rows = [
            ("sent-long-ago", now - timedelta(days=40)),
            ("sent-lately", now - timedelta(days=1)),
            ("never-sent", None),
        ]
        for key, delivered in rows:
            db.execute(
                insert(OutboxRow).values(
                    topic="slack",
                    idempotency_key=key,
                    payload={},
                    created_at=now - timedelta(days=41),
                    attempts=1,
                    next_attempt_at=now,
                    delivered_at=delivered,
                )
            )
        db.commit()
    assert jobs.housekeeping() == (1, 1)
    with session_factory() as db:
        assert db.scalars(select(InboxRow.key)).all() == ["new"]
        kept = db.scalars(select(OutboxRow.idempotency_key).order_by(OutboxRow.id)).all()
        assert kept == ["sent-lately", "never-sent"]
