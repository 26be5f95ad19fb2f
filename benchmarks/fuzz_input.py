"""Malformed signed input, the full figures of issue 10: hostile requests to the running bot.

Per database (SQLite, then PostgreSQL): 3,000 random slash texts from someone with no role,
500 from a deployer, 150 garbled interaction payloads, 20 garbled modal submissions and 30
raw bodies, all signed, all sent through the bot's HTTP edge (in process, the WSGI adapter's
path; ``--http`` sends them over loopback HTTP instead). Prints, per kind, how many got a 5xx,
no answer (or one later than Slack's 3 seconds), or "Something went wrong": all must be 0.

    .venv/bin/python benchmarks/fuzz_input.py [--http] [--scale 0.1] [--only sqlite|postgresql]

Exits non-zero when any count is not 0.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bot.storage.db import make_engine, upgrade
from tests.e2e import RunningBot, running_bot
from tests.support.hostile import (
    ACTION_IDS,
    DEPLOYER,
    DROP,
    GARBLED,
    OUTSIDER,
    VIEW_IDS,
    Hostile,
    Tally,
    action_values,
    click_payload,
    content_types,
    garble,
    json_values,
    modal_values,
    raw_bodies,
    slash_texts,
    submit_payload,
    timestamps,
)

POSTGRES = os.environ.get("TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
FIGURES = {"outsider texts": 3000, "deployer texts": 500, "clicks": 150, "modals": 20, "raw": 30}


def fuzz(count: int, strategy: st.SearchStrategy[Any], send: Callable[[Any], None]) -> None:
    """Run ``send`` on ``count`` examples of ``strategy`` (generation only: no shrinking)."""

    @settings(
        max_examples=count,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def case(example: Any) -> None:
        send(example)

    case()


def run(bot: RunningBot, *, http: bool, scale: float) -> dict[str, Tally]:
    hostile = Hostile(bot, http=http)
    tallies = {kind: Tally() for kind in FIGURES}
    figures = {kind: max(1, round(n * scale)) for kind, n in FIGURES.items()}

    def texts(kind: str, user: str) -> None:
        fuzz(
            figures[kind],
            slash_texts,
            lambda t: tallies[kind].add(t, hostile.command(t, user)),
        )

    texts("outsider texts", OUTSIDER)
    texts("deployer texts", DEPLOYER)

    def click(example: tuple[str, str, Any, str]) -> None:
        action_id, value, garbled, user = example
        name = hostile.name()
        payload = click_payload(user, action_id, value, bot.fake.response_url(name), name)
        if garbled is not None:
            payload = garble(payload, *garbled)
        tallies["clicks"].add(json.dumps(payload), hostile.payload(payload, reply=name))

    fuzz(
        figures["clicks"],
        st.tuples(
            st.sampled_from(ACTION_IDS) | st.text(max_size=10),
            action_values,
            st.none() | st.tuples(st.sampled_from(GARBLED), json_values | st.just(DROP)),
            st.sampled_from([OUTSIDER, DEPLOYER]),
        ),
        click,
    )

    def modal(example: tuple[str, Any, Any]) -> None:
        callback_id, metadata, values = example
        payload = submit_payload(DEPLOYER, callback_id, metadata, values, hostile.name())
        tallies["modals"].add(json.dumps(payload, default=str), hostile.payload(payload))

    fuzz(
        figures["modals"],
        st.tuples(st.sampled_from(VIEW_IDS), action_values | json_values, modal_values),
        modal,
    )

    def raw(example: tuple[bytes, str, str | None]) -> None:
        body, content_type, timestamp = example
        outcome = hostile.send(body, content_type=content_type, timestamp=timestamp)
        tallies["raw"].add(repr(body), outcome)

    fuzz(figures["raw"], st.tuples(raw_bodies, content_types, timestamps), raw)
    return tallies


@contextmanager
def database(kind: str) -> Iterator[str]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as directory:
            yield f"sqlite:///{directory}/fuzz.db"
        return
    schema = f"fuzz_{uuid.uuid4().hex}"
    admin = make_engine(POSTGRES)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(POSTGRES).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http", action="store_true", help="send over loopback HTTP")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the figures")
    parser.add_argument("--only", choices=["sqlite", "postgresql"], help="one database")
    args = parser.parse_args()
    # Refusals log warnings; only a listener's failure (what "Something went wrong" hides)
    # is worth showing next to the counts.
    logging.basicConfig(level=logging.CRITICAL, format="%(name)s: %(message)s")
    logging.getLogger("deploybot.commands").setLevel(logging.ERROR)
    clean = True
    print(
        f"{'database':<11}{'kind':<16}{'sent':>6}{'5xx':>6}{'unanswered':>12}"
        f"{'went wrong':>12}   statuses   seconds"
    )
    for kind in (args.only,) if args.only else ("sqlite", "postgresql"):
        with database(kind) as url:
            upgrade(url)
            with running_bot(url) as bot:
                started = time.monotonic()
                tallies = run(bot, http=args.http, scale=args.scale)
                took = time.monotonic() - started
        for what, tally in tallies.items():
            clean &= tally.clean
            statuses = ",".join(f"{s}:{n}" for s, n in sorted(tally.statuses.items()))
            print(
                f"{kind:<11}{what:<16}{tally.sent:>6}{tally.server_errors:>6}"
                f"{tally.unanswered:>12}{tally.went_wrong:>12}   {statuses}"
            )
            for example, outcome in tally.bad[:3]:
                print(f"    failed: {example[:160]!r} -> {outcome}")
        print(f"{kind:<11}{'(all)':<16}{'':>6}{'':>6}{'':>12}{'':>12}   {'':<10} {took:.1f}")
    print("clean" if clean else "NOT CLEAN")
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
