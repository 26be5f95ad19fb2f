"""Cheap reads, on SQLite and PostgreSQL: summary columns kept by every save and filled by
migration 0006, `/deploy list` and `/deploy status` without parsing every checklist, and
the per-process cache of parsed checklists."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import Engine, event
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session, sessionmaker

from bot.app.sessions import DeployService
from bot.config.loader import load_config
from bot.domain import SYSTEM, DeploySession, SessionState, apply
from bot.domain import commands as c
from bot.domain.errors import DeployError, NotFound
from bot.domain.summary import summary_of
from bot.storage.db import alembic_config, make_engine, make_sessionmaker, upgrade
from bot.storage.frozen_parts import CHECKLISTS, ParsedByDigest, digest_of
from bot.storage.models import SessionRow
from bot.storage.summaries import count_open_query, open_page_query
from bot.storage.uow import UnitOfWork
from commands import deploy
from commands.deps import Deps
from tests.test_storage import APPROVER, DEPLOYER, NOW, add, change, make_session

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
# The JSON documents of a session row, as a statement names them (not their digests).
WHOLE_SESSION = re.compile(r"deploy_sessions\.(checklist|policy|progress)\b")


def stored_summary(factory: sessionmaker[Session], session_id: int) -> Any:
    with UnitOfWork(factory) as uow:
        return uow.summaries.get(session_id)


def loaded(factory: sessionmaker[Session], session_id: int) -> DeploySession:
    with UnitOfWork(factory) as uow:
        return uow.sessions.get(session_id)


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    """Every SQL statement sent on ``engine`` inside the block."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


# The columns follow every save


def test_summary_columns_follow_every_change(session_factory: sessionmaker[Session]) -> None:
    session_id = add(session_factory, make_session(items=3))

    def check(**expected: Any) -> None:
        summary = stored_summary(session_factory, session_id)
        assert summary == summary_of(loaded(session_factory, session_id))
        assert {k: getattr(summary, k) for k in expected} == expected

    check(settled=0, total=5, failing=0, missing_signoffs=1, state=SessionState.OPEN)
    change(session_factory, session_id, c.TickItem("1.1"))
    check(settled=1, total=5)
    change(session_factory, session_id, c.SkipItem("1.2", "done by hand"))
    check(settled=2)
    change(session_factory, session_id, c.UntickItem("1.1"))
    check(settled=1)
    change(session_factory, session_id, c.RecordProbeResult("2.1", False, "HTTP 503"), SYSTEM)
    check(settled=1, failing=1)
    change(session_factory, session_id, c.SignOff("qa-lead"), APPROVER)
    check(missing_signoffs=0)
    change(session_factory, session_id, c.RecordProbeResult("2.1", True, "HTTP 200"), SYSTEM)
    check(settled=2, failing=0)
    change(session_factory, session_id, c.Abort("bad build"))
    check(state=SessionState.ABORTED, closed_at=NOW)
    with UnitOfWork(session_factory) as uow:
        page = uow.summaries.open_page(1, per_page=20)
    assert (page.total, page.summaries) == (0, ())


def test_open_page_pages_oldest_first_and_counts_all(
    session_factory: sessionmaker[Session],
) -> None:
    ids = [add(session_factory, make_session(service=f"svc{n}")) for n in range(7)]
    change(session_factory, ids[2], c.Abort("never mind"))
    open_ids = [i for i in ids if i != ids[2]]
    with UnitOfWork(session_factory) as uow:
        pages = [uow.summaries.open_page(n, per_page=4) for n in (1, 2, 3)]
        assert uow.summaries.open_page(1, per_page=4, environment="staging").total == 0
    assert [[s.id for s in p.summaries] for p in pages] == [open_ids[:4], open_ids[4:], []]
    assert [(p.total, p.pages, p.has_next) for p in pages] == [(6, 2, True), (6, 2, False)] + [
        (6, 2, False)
    ]


def test_sqlite_pages_and_counts_through_the_partial_index(tmp_path: Path) -> None:
    """SQLite takes a partial index only when the query's WHERE says the index's own.
    (PostgreSQL's planner picks by statistics: benchmarks/list_at_scale.py shows its plans.)"""
    url = f"sqlite:///{tmp_path / 'plans.db'}"
    upgrade(url)
    engine = make_engine(url)
    with engine.connect() as connection:
        for query in (open_page_query(40, 20), count_open_query()):
            sql = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
            plan = connection.execute(sa.text("EXPLAIN QUERY PLAN " + sql)).all()
            assert "USING INDEX ix_deploy_sessions_open_id" in str(plan), plan


# Migration 0006 fills the rows written before it


def test_migration_fills_existing_rows(database_url: str) -> None:
    command.upgrade(alembic_config(database_url), "2026_12_01_0005")
    session = make_session(items=3)
    session = apply(session, c.TickItem("1.1"), DEPLOYER, NOW).session
    session = apply(session, c.SkipItem("1.2", "by hand"), DEPLOYER, NOW).session
    session = apply(session, c.RecordProbeResult("2.1", False, "HTTP 503"), SYSTEM, NOW).session
    closed = apply(session, c.Abort("bad build"), DEPLOYER, NOW + timedelta(hours=1)).session
    json_type = sa.JSON().with_variant(JSONB(), "postgresql")
    old_rows = sa.table(
        "deploy_sessions",
        *(sa.column(n) for n in ("id", "environment", "service", "version", "requester")),
        *(sa.column(n) for n in ("state", "is_open", "opened_at", "updated_at", "closed_at")),
        sa.column("revision"),
        *(sa.column(n, json_type) for n in ("checklist", "policy", "progress")),
    )
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            for row_id, each in ((1, session), (2, closed)):
                connection.execute(
                    sa.insert(old_rows).values(
                        id=row_id, environment="prod", service=f"api{row_id}", version="v1",
                        requester="U1", state=each.state.value, is_open=not each.state.is_closed,
                        opened_at=NOW, updated_at=NOW, closed_at=each.closed_at, revision=1,
                        checklist=each.checklist.model_dump(mode="json"),
                        policy=each.policy_to_json(), progress=each.state_to_json(),
                    )
                )  # fmt: skip
        upgrade(database_url)
        factory = make_sessionmaker(engine)
        for row_id, each in ((1, session), (2, closed)):
            expected = summary_of(each)
            summary = stored_summary(factory, row_id)
            figures = (summary.settled, summary.total, summary.failing)
            assert figures == (expected.settled, expected.total, expected.failing) == (2, 5, 1)
            assert summary.missing_signoffs == expected.missing_signoffs == 1
            assert summary.state is each.state
        with engine.connect() as connection:
            digests = connection.execute(
                sa.select(SessionRow.checklist_digest, SessionRow.policy_digest)
            ).all()
        # The same digests a save computes today, so the cache serves old and new rows alike.
        assert set(digests) == {
            (
                digest_of(session.checklist.model_dump(mode="json")),
                digest_of(session.policy_to_json()),
            )
        }
        assert loaded(factory, 1).checklist == session.checklist
    finally:
        engine.dispose()


# Reads that parse no checklist


@pytest.fixture
def service(session_factory: sessionmaker[Session]) -> DeployService:
    return DeployService(
        config=load_config(EXAMPLES / "minimal.yaml"),
        session_factory=session_factory,
        clock=lambda: NOW,
    )


class Replies:
    """A ``respond`` that keeps what it was asked to send."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def __call__(self, **kwargs: Any) -> None:
        self.sent.append(kwargs)

    @property
    def text(self) -> str:
        last = self.sent[-1]
        return str(last.get("blocks") or last["text"])


def deps_with(service: DeployService) -> Deps:
    return cast(Deps, SimpleNamespace(service=service))  # the listeners here use no more


def listed(service: DeployService, *args: str) -> Replies:
    replies = Replies()
    deploy.list_open(deps_with(service), deploy.Invocation("U0DEPLOYER", list(args), replies))
    return replies


def test_list_reads_summaries_only_and_pages(service: DeployService, engine: Engine) -> None:
    for n in range(25):
        service.open(environment="staging", user_id="U0DEPLOYER", service=f"svc{n:02}")

    with statements(engine) as seen:
        first = listed(service)
    assert len(seen) <= 3, seen  # the page and the count (and SQLite's BEGIN)
    assert not [s for s in seen if WHOLE_SESSION.search(s)]
    assert "Open deploys (25) · page 1 of 2" in first.text
    assert "svc19" in first.text and "svc20" not in first.text
    assert "`/deploy list 2` for more" in first.text

    second = listed(service, "2")
    assert "svc20" in second.text and "svc24" in second.text and "svc19" not in second.text
    assert "There is no page 3" in listed(service, "3").text
    for wrong in (["0"], ["two"], ["1", "2"]):
        with pytest.raises(DeployError, match="page"):
            listed(service, *wrong)


def test_status_without_an_id_loads_no_session_but_the_one(
    service: DeployService, engine: Engine
) -> None:
    deps = deps_with(service)
    replies = Replies()
    with pytest.raises(NotFound, match="There is no open deploy"):
        deploy.status(deps, deploy.Invocation("U0DEPLOYER", [], replies))

    only = service.open(environment="staging", user_id="U0DEPLOYER", service="api")
    deploy.status(deps, deploy.Invocation("U0DEPLOYER", [], replies))
    assert f"Deploy #{only.id}" in replies.sent[-1]["text"]

    for n in range(7):
        service.open(environment="staging", user_id="U0DEPLOYER", service=f"svc{n}")
    with statements(engine) as seen, pytest.raises(NotFound) as several:
        deploy.status(deps, deploy.Invocation("U0DEPLOYER", [], replies))
    assert not [s for s in seen if WHOLE_SESSION.search(s)]
    assert str(several.value).startswith(f"Several deploys are open: #{only.id} (staging api)")
    assert "and 3 more (`/deploy list`)" in str(several.value)


# The parsed checklist is shared by digest


def test_a_loaded_session_takes_its_checklist_from_the_cache(
    session_factory: sessionmaker[Session], engine: Engine
) -> None:
    first = add(session_factory, make_session(service="api"))
    second = add(session_factory, make_session(service="web"))  # the same checklist
    CHECKLISTS.clear()
    with statements(engine) as cold:
        one = loaded(session_factory, first)
    with statements(engine) as warm:
        other = loaded(session_factory, second)
    assert any(re.search(r"deploy_sessions\.checklist\b", s) for s in cold)
    assert not [s for s in warm if re.search(r"deploy_sessions\.(checklist|policy)\b", s)]
    assert other.checklist is one.checklist
    assert CHECKLISTS.hits >= 1


def test_the_cache_is_bounded_and_keeps_the_recently_used() -> None:
    cache: ParsedByDigest[str] = ParsedByDigest(maxsize=2)
    parsed: list[str] = []

    def parse(value: str) -> Any:
        return lambda: parsed.append(value) or value

    assert [cache.get(d, parse(d)) for d in ("a", "b", "a", "c", "a", "b")] == list("abacab")
    assert parsed == ["a", "b", "c", "b"]  # "b" was the least recently used when "c" came
    assert len(cache) == 2
    assert cache.get(None, parse("x")) == "x" and len(cache) == 2


def test_a_home_loads_only_the_sessions_that_concern_its_person(
    session_factory: sessionmaker[Session],
) -> None:
    """Theirs; open for sign-off where they sign; failed where they are on call; nothing
    else, and no more than the limit (newest first)."""

    def opened(env: str, requester: str, state: SessionState, service: str) -> int:
        session = make_session(service=service)
        session.environment, session.requester, session.state = env, requester, state
        return add(session_factory, session)

    mine = opened("dev", "U0ME", SessionState.DEPLOYING, "a")
    to_sign = opened("prod", "U0OTHER", SessionState.OPEN, "b")
    deploying = opened("prod", "U0OTHER", SessionState.DEPLOYING, "c")  # nothing to sign
    failed = opened("staging", "U0OTHER", SessionState.FAILED, "d")
    elsewhere = opened("dev", "U0OTHER", SessionState.OPEN, "e")  # they sign only in prod
    closed = opened("prod", "U0ME", SessionState.COMPLETED, "f")

    with UnitOfWork(session_factory) as uow:
        found = uow.summaries.home_candidates(
            "U0ME", signing=frozenset({"prod"}), oncall=frozenset({"staging"}), limit=10
        )
        newest = uow.summaries.home_candidates(
            "U0ME", signing=frozenset({"prod"}), oncall=frozenset({"staging"}), limit=2
        )
    assert found == [failed, to_sign, mine]
    assert newest == [failed, to_sign]
    assert not {deploying, elsewhere, closed} & set(found)
