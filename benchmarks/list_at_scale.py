"""What `/deploy list` and `/deploy status` cost as open sessions pile up, on SQLite and
PostgreSQL.

For 1, 100, 1,000 and 10,000 open sessions (and as many closed ones beside them), seeded by
bulk inserts of rows as the repository writes them (the 73-item prod checklist of
``examples/mailflow.yaml``, progress varied), it times:

- ``list``: ``DeployService.open_page(1)``, the service call behind `/deploy list`;
- ``list (last page)``: the deepest page (OFFSET grows with it);
- ``list listener``: the listener ``commands.deploy.list_open`` with rendering, page 1;
- ``status <id>``: ``DeployService.get`` of a random open session (one full load);
- ``status listener``: ``commands.deploy.status`` with rendering, for a random id;
- ``whole sessions``: ``DeployService.list_open()``, the full load of every open session
  that `/deploy list` made before it read summaries (workers still use it; it now takes
  parsed checklists from the cache, so it is cheaper than the old list was).

Each prints p50 and p99 of wall time, mean CPU time of this process (SQLite runs in it;
PostgreSQL's server does not), and p50 as a multiple of the 1-session p50. At the largest
size it prints the plans of the list and count queries (PostgreSQL: ``EXPLAIN ANALYZE``).

Run from the repository root (PostgreSQL at ``$TEST_DATABASE_URL``, default the local
``test`` database; a schema of its own is created and dropped)::

    .venv/bin/python benchmarks/list_at_scale.py [--sizes 1 100 1000 10000] [--calls 200]

It prints figures and asserts nothing. Progress goes to stderr, the results to stdout.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy import Engine, insert, text
from sqlalchemy.engine import make_url

from bot.app.environments import policy_for
from bot.app.sessions import DeployService, session_checklist
from bot.config.loader import load_config
from bot.domain import DeploySession, ItemProgress, ItemStatus, SessionState
from bot.domain.session import SignOffRecord
from bot.storage.db import make_engine, make_sessionmaker, upgrade
from bot.storage.frozen_parts import CHECKLISTS, POLICIES
from bot.storage.models import SessionRow
from bot.storage.repositories import apply_to_row
from bot.storage.summaries import count_open_query, open_page_query
from commands import deploy
from commands.deps import Deps

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "examples" / "mailflow.yaml"
ENVIRONMENT = "prod"
POSTGRES = os.environ.get("TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
CHUNK = 1_000
PAGE = deploy.LIST_PAGE_SIZE


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextmanager
def sqlite_database() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as folder:
        yield f"sqlite:///{folder}/bench.db"


@contextmanager
def postgres_database() -> Iterator[str]:
    schema = f"bench_{uuid.uuid4().hex[:12]}"
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


class Seeder:
    """Rows as the repository writes them, a few progress variants, inserted in bulk."""

    def __init__(self, service: DeployService) -> None:
        config = service.config
        checklist = session_checklist(config, ENVIRONMENT)
        session = DeploySession(
            environment=ENVIRONMENT,
            requester="U0DEPLOYER",
            checklist=checklist,
            policy=policy_for(config.environment(ENVIRONMENT)),
            opened_at=NOW,
            version="v1.4.2",
        )
        ids = [item.id for _, item in checklist.walk()]
        self.variants: list[dict[str, Any]] = []
        for done in range(0, len(ids) + 1, max(1, len(ids) // 7)):
            items = {i: ItemProgress(ItemStatus.DONE, "U0DEPLOYER", NOW) for i in ids[:done]}
            if done % 2:
                items[ids[-1]] = ItemProgress(ItemStatus.FAILED, "deploybot", NOW, "HTTP 503")
            signoffs = {}
            if done > len(ids) // 2 and session.policy.signoffs:
                rule = session.policy.signoffs[0]
                signoffs[rule.key] = SignOffRecord(rule.key, rule.role, "U0APPROVER1", NOW)
            row = SessionRow()
            apply_to_row(replace(session, items=items, signoffs=signoffs), row)
            self.variants.append(
                {c.key: getattr(row, c.key) for c in SessionRow.__table__.columns if c.key != "id"}
            )
        self.open = 0
        self.closed = 0

    def seed(self, engine: Engine, open_sessions: int) -> None:
        """Add open sessions up to ``open_sessions``, and as many closed ones."""
        rows: list[dict[str, Any]] = []
        for n in range(self.open, open_sessions):
            rows.append(self._row(f"svc{n:05}", n, SessionState.OPEN))
            rows.append(self._row(f"svc{n:05}", n, SessionState.COMPLETED))
        for start in range(0, len(rows), CHUNK):
            with engine.begin() as connection:
                connection.execute(insert(SessionRow), rows[start : start + CHUNK])
        self.open = self.closed = open_sessions
        # What autovacuum would have done by then: statistics and the visibility map.
        vacuum = (
            "VACUUM ANALYZE deploy_sessions" if engine.dialect.name == "postgresql" else "ANALYZE"
        )
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text(vacuum))

    def _row(self, service: str, n: int, state: SessionState) -> dict[str, Any]:
        opened = NOW - timedelta(minutes=n)
        closed = opened + timedelta(minutes=30) if state.is_closed else None
        return {
            **self.variants[n % len(self.variants)],
            "service": service,
            "state": state.value,
            "is_open": not state.is_closed,
            "opened_at": opened,
            "updated_at": opened,
            "closed_at": closed,
            "revision": 1,
        }


def timed(fn: Callable[[], object], calls: int) -> tuple[list[float], float]:
    """Wall times (ms) of ``calls`` calls after two warm-up calls, and mean CPU ms."""
    fn()
    fn()
    walls = []
    cpu_start = time.process_time()
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        walls.append((time.perf_counter() - start) * 1000)
    return walls, (time.process_time() - cpu_start) * 1000 / calls


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(name: str, url: str, sizes: list[int], calls: int) -> None:
    upgrade(url)
    engine = make_engine(url)
    try:
        service = DeployService(
            config=load_config(CONFIG), session_factory=make_sessionmaker(engine)
        )
        deps = cast(Deps, SimpleNamespace(service=service))
        seeder = Seeder(service)
        baseline: dict[str, float] = {}
        print(f"\n## {name}\n")
        print(f"{'open':>6} {'call':<18} {'p50 ms':>9} {'p99 ms':>9} {'cpu ms':>8} {'x p50@1':>8}")
        for size in sizes:
            log(f"{name}: seeding {size} open sessions and {size} closed ones")
            started = time.perf_counter()
            seeder.seed(engine, size)
            log(f"{name}: seeded in {time.perf_counter() - started:.1f} s")
            last_page = -(-size // PAGE)
            for label, fn, n in cases(engine, service, deps, size, calls):
                walls, cpu = timed(fn, n)
                p50 = statistics.median(walls)
                base = baseline.setdefault(label, p50)
                print(
                    f"{size:>6} {label:<18} {p50:>9.2f} {p(walls, 0.99):>9.2f} {cpu:>8.2f}"
                    f" {p50 / base:>7.1f}x",
                    flush=True,
                )
        log(f"{name}: checklist cache {CHECKLISTS.hits} hits, {CHECKLISTS.misses} misses")
        explain(engine, last_page)
    finally:
        engine.dispose()
        CHECKLISTS.clear()
        POLICIES.clear()


def respond(**_: Any) -> None:
    """The listeners' reply goes nowhere: rendering it is what is measured."""


def cases(
    engine: Engine, service: DeployService, deps: Deps, size: int, calls: int
) -> list[tuple[str, Callable[[], object], int]]:
    """What is timed at one size: (label, call, how many calls)."""
    with engine.connect() as connection:
        open_ids = list(connection.scalars(text("SELECT id FROM deploy_sessions WHERE is_open")))
    last_page = -(-size // PAGE)
    rng = random.Random(size)

    def status_listener() -> None:
        deploy.status(deps, deploy.Invocation("U0DEPLOYER", [str(rng.choice(open_ids))], respond))

    def list_listener() -> None:
        deploy.list_open(deps, deploy.Invocation("U0DEPLOYER", [], respond))

    return [
        ("list", lambda: service.open_page(1, per_page=PAGE), calls),
        ("list (last page)", lambda: service.open_page(last_page, per_page=PAGE), calls),
        ("list listener", list_listener, calls),
        ("status <id>", lambda: service.get(rng.choice(open_ids)), calls),
        ("status listener", status_listener, calls),
        ("whole sessions", service.list_open, max(3, min(calls, 2_000 // size))),
    ]


def explain(engine: Engine, last_page: int) -> None:
    postgres = engine.dialect.name == "postgresql"
    how = "EXPLAIN (ANALYZE, BUFFERS) " if postgres else "EXPLAIN QUERY PLAN "
    with engine.connect() as connection:
        for label, query in (
            ("list, page 1", open_page_query(0, PAGE)),
            (f"list, page {last_page}", open_page_query((last_page - 1) * PAGE, PAGE)),
            ("count of open sessions", count_open_query()),
        ):
            sql = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
            plan = connection.execute(text(how + sql)).all()
            print(f"\n{how.strip()} ({label}):")
            for line in plan:
                print("    " + (line[0] if postgres else str(line[-1])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 100, 1_000, 10_000])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    args = parser.parse_args()
    print(f"# /deploy list and status at scale ({CONFIG.name} {ENVIRONMENT}, page of {PAGE})")
    if args.only != "postgresql":
        with sqlite_database() as url:
            run("SQLite", url, args.sizes, args.calls)
    if args.only != "sqlite":
        with postgres_database() as url:
            run("PostgreSQL", url, args.sizes, args.calls)


if __name__ == "__main__":
    main()
