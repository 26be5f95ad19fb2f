"""The service layer on SQLite and PostgreSQL: open, act, refuse and audit, lock."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from bot.app.sessions import DeployService
from bot.config.loader import load_config
from bot.domain import SessionState
from bot.domain.commands import SignOff, TickItem
from bot.domain.errors import DomainError, NotFound, PermissionDenied

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.fixture
def service(session_factory: sessionmaker[Session]) -> DeployService:
    return DeployService(
        config=load_config(EXAMPLES / "minimal.yaml"),
        session_factory=session_factory,
        clock=lambda: NOW,
    )


def test_open_records_session_and_audit(service: DeployService) -> None:
    session = service.open(environment="staging", user_id="U0DEPLOYER", service="api")
    assert session.id is not None
    loaded = service.get(session.id)
    assert (loaded.environment, loaded.service, loaded.requester) == (
        "staging",
        "api",
        "U0DEPLOYER",
    )
    assert loaded.checklist.item_count == session.checklist.item_count > 0
    assert [e.kind for e in service.history(session.id)] == ["session_opened"]


def test_unknown_environment_names_the_known_ones(service: DeployService) -> None:
    with pytest.raises(NotFound, match="Known: staging"):
        service.open(environment="prod", user_id="U0DEPLOYER")
    assert service.list_open() == []


def test_outsider_may_not_start(service: DeployService) -> None:
    with pytest.raises(PermissionDenied, match="`deployers`"):
        service.open(environment="staging", user_id="U0OUTSIDER")
    assert service.list_open() == []


def test_second_open_session_is_refused_with_its_id(service: DeployService) -> None:
    first = service.open(environment="staging", user_id="U0DEPLOYER", service="api")
    with pytest.raises(DomainError, match=f"#{first.id}"):
        service.open(environment="staging", user_id="U0DEPLOYER", service="api")
    assert [s.id for s in service.list_open()] == [first.id]


def test_locked_environment_refuses_and_says_who_and_why(service: DeployService) -> None:
    service.lock(environment="staging", user_id="U0DEPLOYER", reason="db migration")
    with pytest.raises(DomainError, match=r"locked by <@U0DEPLOYER> .*db migration"):
        service.open(environment="staging", user_id="U0DEPLOYER")
    service.unlock(environment="staging", user_id="U0DEPLOYER")
    assert service.open(environment="staging", user_id="U0DEPLOYER").id is not None


def test_outsider_may_not_lock(service: DeployService) -> None:
    with pytest.raises(PermissionDenied):
        service.lock(environment="staging", user_id="U0OUTSIDER", reason="x")


def test_refusals_are_audited_and_change_nothing(service: DeployService) -> None:
    session = service.open(environment="staging", user_id="U0DEPLOYER")
    assert session.id is not None
    with pytest.raises(PermissionDenied, match="only members of `approvers`"):
        service.act(session.id, SignOff("qa-lead"), "U0DEPLOYER")
    with pytest.raises(PermissionDenied, match="only members"):
        service.act(session.id, SignOff("qa-lead"), "U0OUTSIDER")
    history = service.history(session.id)
    refused = [e for e in history if e.kind == "refused"]
    assert [e.actor for e in refused] == ["U0DEPLOYER", "U0OUTSIDER"]
    assert refused[0].data["command"] == "SignOff"
    assert service.get(session.id).signoffs == {}


def test_concurrent_clicks_all_land(service: DeployService) -> None:
    session = service.open(environment="staging", user_id="U0DEPLOYER")
    assert session.id is not None
    session_id = session.id
    items = [i.id for s, i in session.checklist.walk() if s.gate is None]
    barrier = threading.Barrier(len(items))

    def click(item_id: str, user: str) -> None:
        barrier.wait()
        service.act(session_id, TickItem(item_id), user)

    users = ["U0DEPLOYER", "U0APPROVER1", "U0APPROVER2"]
    threads = [
        threading.Thread(target=click, args=(item, users[n % len(users)]))
        for n, item in enumerate(items)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = service.get(session_id)
    assert all(final.progress(i).status.value == "done" for i in items)
    assert len([e for e in service.history(session_id) if e.kind == "item_ticked"]) == len(items)
    assert final.state is SessionState.OPEN
