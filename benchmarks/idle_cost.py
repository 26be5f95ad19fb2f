"""What an idle `deploybot serve` costs with 1, 1,000 and 10,000 open sessions.

For each count, on a PostgreSQL database of its own (created and dropped here), this script
seeds the open sessions (one opened through the service, the others copied from it in bulk
inserts, their expiries and reminders armed as opening them arms them), starts a real
``deploybot serve`` subprocess in HTTP mode against a fake Slack on loopback, waits for it to
lead and settle (the leader's start-up reconcile, the first session's Slack messages), then
measures over ``--seconds`` of no traffic:

- the process's CPU time (user + system, from ``/proc/<pid>/stat``), as a share of one core;
- the SQL statements it ran, counted inside the process by an SQLAlchemy
  ``before_cursor_execute`` listener on every engine (the leader lock's too) that this script
  installs before it hands over to the CLI (``--child``); nothing in ``bot/`` counts;
- as a cross-check from the server's side, the transactions PostgreSQL committed in the
  benchmark's database (``pg_stat_database.xact_commit``; its statistics are flushed with a
  delay of up to a few seconds, so this one is approximate).

Run from the repository root with PostgreSQL on 127.0.0.1:5432 (trust)::

    .venv/bin/python benchmarks/idle_cost.py [--sessions 1 1000 10000] [--seconds 30]

It prints a table with the 1-session run as the baseline and asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, insert, text, update
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parent.parent
ADMIN_URL = os.environ.get("TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
DATABASE = "deploybot_idle_bench"

CONFIG = """
roles:
  deployers: [U0DEPLOYER]
  approvers: [U0APPROVER]
environments:
  staging:
    channel: "#deploys"
    checklist: checklist.yaml
    starters: [deployers]
    signoffs:
      - role: QA Lead
        by: [approvers]
    monitoring: every 5m for 1h
    reminders: {after: 1h}
    expire_after: 2d
"""


def child(count_file: str) -> None:
    """Count every statement this process runs, then become `deploybot serve`."""
    from sqlalchemy import Engine, event

    counted = [0]

    def count(*_args: Any) -> None:
        counted[0] += 1

    event.listen(Engine, "before_cursor_execute", count)

    def report() -> None:
        while True:
            Path(count_file).write_text(str(counted[0]))
            time.sleep(0.5)

    threading.Thread(target=report, name="statement-count", daemon=True).start()
    sys.argv = ["deploybot", "serve"]
    from bot.cli import main

    main()


def database_url() -> str:
    return make_url(ADMIN_URL).set(database=DATABASE).render_as_string(hide_password=False)


def recreate_database() -> None:
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{DATABASE}"'))
    admin.dispose()


def drop_database() -> None:
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)'))
    admin.dispose()


def seed(url: str, config_path: Path, sessions: int) -> None:
    """``sessions`` open sessions with their schedules armed, and nothing else due."""
    from bot.app.schedules import schedule, timetable
    from bot.app.sessions import DeployService
    from bot.config.loader import load_config
    from bot.storage.db import make_engine, make_sessionmaker, upgrade
    from bot.storage.models import OutboxRow, SessionRow
    from bot.storage.uow import UnitOfWork

    upgrade(url)
    engine = make_engine(url)
    factory = make_sessionmaker(engine)
    config = load_config(config_path)
    service = DeployService(config=config, session_factory=factory)
    first = service.open(environment="staging", user_id="U0DEPLOYER", service="svc0")
    with factory() as db:
        row = db.get(SessionRow, first.id)
        assert row is not None
        template = {
            column.key: getattr(row, column.key)
            for column in SessionRow.__table__.columns
            if column.key != "id"
        }
        copies = [{**template, "service": f"svc{n}"} for n in range(1, sessions)]
        for start in range(0, len(copies), 1000):
            db.execute(insert(SessionRow), copies[start : start + 1000])
        db.commit()
    now = datetime.now(UTC)
    with UnitOfWork(factory) as uow:  # what opening each of them armed
        schedule(uow, timetable(config, uow.schedule_slots.open_sessions(), now), at=now)
        uow.commit()
    with factory() as db, db.begin():  # the first session's Slack messages: not idle work
        db.execute(update(OutboxRow).where(OutboxRow.topic != "schedule").values(delivered_at=now))
    engine.dispose()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def commits() -> int:
    admin = create_engine(ADMIN_URL)
    with admin.connect() as connection:
        value = connection.execute(
            text("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = :d"),
            {"d": DATABASE},
        ).scalar_one()
    admin.dispose()
    return int(value)


def wait_for(log: Path, proc: subprocess.Popen[bytes], needle: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while needle not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"serve did not say {needle!r}:\n{log.read_text(errors='replace')}")
        time.sleep(0.1)


def measure(sessions: int, seconds: float, settle: float) -> dict[str, float]:
    from tests.support.slack import FakeSlack

    url = database_url()
    with tempfile.TemporaryDirectory() as tmp, FakeSlack() as fake:
        folder = Path(tmp)
        (folder / "checklist.yaml").write_text(
            "title: T\nsections:\n  - title: Pre\n    items:\n      - text: Ready\n"
        )
        config = folder / "deploybot.yaml"
        config.write_text(CONFIG)
        recreate_database()
        print(f"seeding {sessions} open sessions", file=sys.stderr)
        seed(url, config, sessions)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DEPLOYBOT_"))}
        env.update(
            SLACK_BOT_TOKEN="xoxb-test",
            SLACK_SIGNING_SECRET="secret",
            SLACK_API_URL=fake.base_url,
            DATABASE_URL=url,
            DEPLOYBOT_CONFIG=str(config),
            PORT="0",
            DEPLOYBOT_HOST="127.0.0.1",
        )
        count_file, log = folder / "statements", folder / "serve.log"
        proc = subprocess.Popen(
            [sys.executable, __file__, "--child", str(count_file)],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log.open("wb"),
            start_new_session=True,
        )
        try:
            wait_for(log, proc, "became the scheduler leader", 60)
            time.sleep(settle)  # the start-up reconcile and first deliveries are not idle
            cpu0, count0, xact0 = cpu_seconds(proc.pid), int(count_file.read_text()), commits()
            time.sleep(seconds)
            time.sleep(0.6)  # one more write of the count file covers the window's end
            cpu1, count1 = cpu_seconds(proc.pid), int(count_file.read_text())
            time.sleep(2.0)  # let the backends flush their statistics
            xact1 = commits()
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=60)
        drop_database()
    minutes = seconds / 60
    return {
        "cpu": (cpu1 - cpu0) / seconds * 100,
        "statements": (count1 - count0) / minutes,
        "transactions": (xact1 - xact0) / minutes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 1000, 10000])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--settle", type=float, default=30.0)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    sys.path.insert(0, str(REPO))
    results = {n: measure(n, args.seconds, args.settle) for n in args.sessions}
    base = results[args.sessions[0]]
    print(f"idle `deploybot serve` on PostgreSQL, {args.seconds:g} s measured per run")
    print(
        f"{'open sessions':>13} | {'CPU % of a core':>15} | {'statements/min':>14} | "
        f"{'x baseline':>10} | {'PG xacts/min':>12}"
    )
    for n, r in results.items():
        ratio = r["statements"] / base["statements"] if base["statements"] else float("nan")
        print(
            f"{n:>13,} | {r['cpu']:>15.2f} | {r['statements']:>14.0f} | {ratio:>10.2f} | "
            f"{r['transactions']:>12.0f}"
        )


if __name__ == "__main__":
    main()
