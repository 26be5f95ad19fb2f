"""A database outage under a running bot: people are told their click was not recorded.

The bot reaches PostgreSQL through a TCP forwarder (never the shared server stopped): the
forwarder going down cuts the bot's pooled connections and refuses new ones, as a database
that restarts or fails over does. Clicks and commands get a clear answer meanwhile (an HTTP
200, never a 500), and once the database is back the next click works, with no restart.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from slack_bolt import BoltContext
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError

from bot.domain import ItemStatus
from bot.domain.errors import DomainError
from bot.storage.db import database_unreachable, upgrade
from commands.deps import answer_error
from tests.e2e import running_bot
from tests.support.tcp_proxy import TcpProxy
from tests.test_clicks_e2e import click

CLICK_LOST = (
    ":warning: deploybot can't reach its database right now, so your click was not recorded. "
    "Click again in a minute."
)
COMMAND_LOST = (
    ":warning: deploybot can't reach its database right now, so your command was not "
    "recorded. Run it again in a minute."
)


@pytest.mark.parametrize(
    "database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
def test_clicks_during_an_outage_are_answered_and_the_bot_recovers(database_url: str) -> None:
    upgrade(database_url)
    real = make_url(database_url)
    with TcpProxy((real.host or "127.0.0.1", real.port or 5432)) as proxy:
        proxied = real.set(port=proxy.port).render_as_string(hide_password=False)
        with running_bot(proxied) as bot:
            bot.command("start staging", user="U0DEPLOYER", reply="start")
            assert "Opened deploy #1" in bot.reply("start")["text"]
            message = bot.checklist_messages()[0]

            proxy.down()
            answer = click(bot, "U0DEPLOYER", message, {"1.1"}, "lost-click")
            assert answer.status == 200
            assert bot.reply("lost-click")["text"] == CLICK_LOST
            answer = bot.command("status 1", user="U0DEPLOYER", reply="lost-status")
            assert (answer.status, answer.body) == (200, COMMAND_LOST)

            proxy.up()
            answer = click(bot, "U0DEPLOYER", message, {"1.1"}, "again")
            assert answer.status == 200
            bot.wait_item(1, "1.1", ItemStatus.DONE)
            ticks = [e.data["item"] for e in bot.session_history(1) if e.kind == "item_ticked"]
            assert ticks == ["1.1"]


def test_the_error_handler_says_the_database_is_unreachable(tmp_path: Path) -> None:
    """Whatever the listener was doing: a SQLite file that can't be opened is the same."""
    engine = create_engine(f"sqlite:///{tmp_path / 'gone' / 'deploybot.db'}")
    with pytest.raises(OperationalError) as raised:
        engine.connect()
    told: list[str] = []

    def respond(*, text: str, **_: object) -> None:
        told.append(text)

    context = BoltContext(response_url="https://hooks.slack.test/answer", respond=respond)
    answer_error(raised.value, context, {"actions": [{}]})
    answer_error(raised.value, context, {"command": "/deploy", "text": "status"})
    answer_error(RuntimeError("bug"), context, {"actions": [{}]})
    answer_error(DomainError("You can't do that."), context, None)
    assert told == [
        CLICK_LOST,
        COMMAND_LOST,
        ":x: Something went wrong inside deploybot (it is logged). "
        "Check `/deploy status` and try again.",
        ":warning: You can't do that.",
    ]


def test_only_connection_errors_count_as_unreachable() -> None:
    lost = OperationalError("SELECT 1", {}, Exception("server closed the connection"))
    assert database_unreachable(lost)
    assert database_unreachable(RuntimeError("wrapped")) is False
    try:
        raise RuntimeError("while saving") from lost
    except RuntimeError as wrapped:
        assert database_unreachable(wrapped)
    assert not database_unreachable(IntegrityError("INSERT", {}, Exception("duplicate key")))
