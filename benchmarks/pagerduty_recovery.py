"""How soon pages go out once PagerDuty recovers from an outage.

For each failure kind and outage length, this script starts, in one process:

- the local PagerDuty Events v2 receiver (``tests.support.pagerduty.FakePagerDuty``, HTTPS)
  behind a TCP forwarder (``tests.support.tcp_proxy.TcpProxy``, for refused connections),
- the real pages worker: an ``OutboxWorker`` over the ``pagerduty`` topic with deploybot's
  default settings (``DEPLOYBOT_OUTBOX_BACKOFF``, ``DEPLOYBOT_PAGERDUTY_BACKOFF_CAP``, lease,
  poll) and the real ``PagerDuty`` handler (the official client, default timeout), on a
  fresh migrated SQLite database.

The outage starts; a trigger is recorded at once, its acknowledge a third of the way in and
its resolve two thirds in (responders clicking in Slack meanwhile); at the end the receiver
recovers. Failure kinds: ``500`` (server errors), ``429`` (rate limited, no Retry-After),
``timeout`` (requests hang until the client gives up), ``refused`` (nothing listens).

It prints, per run, the attempts made, the delay from recovery to the first delivered page
and to the last event, and whether trigger, acknowledge and resolve arrived once each and in
that order. The scenarios run side by side (threads), so the wall time is about the longest
outage plus the recovery.

Run from the repository root::

    .venv/bin/python benchmarks/pagerduty_recovery.py [--outage 10 60] [--kind 500 429 ...]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bot.integrations.pagerduty import PagerDuty, page_payload  # noqa: E402
from bot.ops.settings import Settings  # noqa: E402
from bot.storage.db import make_engine, make_sessionmaker, upgrade  # noqa: E402
from bot.storage.models import OutboxRow  # noqa: E402
from bot.storage.outbox import Outbox  # noqa: E402
from bot.workers.outbox import OutboxWorker  # noqa: E402
from tests.support.pagerduty import FakePagerDuty  # noqa: E402
from tests.support.tcp_proxy import TcpProxy  # noqa: E402

ROUTING_KEY_ENV = "PAGERDUTY_ROUTING_KEY_BENCH"
ROUTING_KEY = "0123456789abcdef0123456789abcdef"
KINDS = ("500", "429", "timeout", "refused")


@dataclass
class Result:
    kind: str
    outage: float
    attempts: int
    first_page: float | None
    last_event: float | None
    actions: list[str]

    @property
    def in_order_once(self) -> bool:
        return self.actions == ["trigger", "acknowledge", "resolve"]


def run(kind: str, outage: float, directory: Path) -> Result:
    settings = Settings()
    url = database(kind, outage, directory)
    engine = make_engine(url)
    factory = make_sessionmaker(engine)
    with FakePagerDuty() as receiver:
        host, port = receiver.url.removeprefix("https://").split(":")
        proxy = TcpProxy((host, int(port)))
        paging = PagerDuty(
            events_url=f"https://127.0.0.1:{proxy.port}",
            verify=receiver.client_ssl_context(),
            environ={ROUTING_KEY_ENV: ROUTING_KEY},
        )
        cap = settings.pagerduty_backoff_cap
        worker = OutboxWorker(
            factory,
            {"pagerduty": paging.deliver},
            backoff_base=min(settings.outbox_backoff, cap),
            backoff_cap=cap,
            lease=settings.outbox_lease,
            max_attempts=5000,
            poll_interval=settings.outbox_poll,
        )
        {
            "500": lambda: receiver.outage(500),
            "429": lambda: receiver.outage(429),
            "timeout": lambda: receiver.outage(None),
            "refused": proxy.down,
        }[kind]()
        worker.start()
        try:
            for action in ("trigger", "acknowledge", "resolve"):
                enqueue(factory, action)
                time.sleep(outage / 3)
            receiver.recover()
            proxy.up()
            recovered = time.monotonic()
            events = receiver.wait_for_events(3, timeout=120)
        finally:
            worker.stop()
            proxy.close()
        accepted = [r for r in receiver.requests() if r.status == 202]
        with factory() as db:
            attempts = sum(row.attempts for row in db.query(OutboxRow))
    engine.dispose()
    return Result(
        kind,
        outage,
        attempts,
        accepted[0].at - recovered if accepted else None,
        accepted[-1].at - recovered if accepted else None,
        [e["event_action"] for e in events],
    )


def database(kind: str, outage: float, directory: Path) -> str:
    return f"sqlite:///{directory / f'{kind}-{outage:g}.db'}"


def enqueue(factory: object, action: str) -> None:
    payload = page_payload(
        action=action,  # type: ignore[arg-type]
        env_name="prod",
        routing_key_env=ROUTING_KEY_ENV,
        session_id=1,
        probe="api-health",
        summary="api-health failed: HTTP 503",
        severity="critical",
        details={},
        link=None,
    )
    with factory() as db, db.begin():  # type: ignore[operator]
        Outbox().enqueue(
            db,
            topic="pagerduty",
            key=f"{payload['dedup_key']}/{action}/{uuid.uuid4().hex}",
            payload=payload,
            at=datetime.now(UTC),
            ordering_key=payload["dedup_key"],
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outage", type=float, nargs="+", default=[10.0, 60.0])
    parser.add_argument("--kind", nargs="+", choices=KINDS, default=list(KINDS))
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the worker's retry warnings are expected here
    settings = Settings()
    print(
        f"pages worker: backoff {settings.outbox_backoff:g} s, "
        f"cap {settings.pagerduty_backoff_cap:g} s, poll {settings.outbox_poll:g} s; "
        f"PagerDuty client timeout {PagerDuty()._timeout:g} s",
        flush=True,
    )
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp:
        for outage in args.outage:  # one at a time: Alembic's context is process-wide
            for kind in args.kind:
                upgrade(database(kind, outage, Path(tmp)))
        threads = [
            threading.Thread(
                target=lambda k=kind, o=outage: results.append(run(k, o, Path(tmp))),
            )
            for outage in args.outage
            for kind in args.kind
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    print(f"{'kind':<8} {'outage':>7} {'attempts':>8} {'first page':>11} {'last event':>11}  "
          "order/once  first page <= 30 s")  # fmt: skip
    for r in sorted(results, key=lambda r: (r.outage, KINDS.index(r.kind))):
        first = f"{r.first_page:.1f} s" if r.first_page is not None else "-"
        last = f"{r.last_event:.1f} s" if r.last_event is not None else "-"
        within = r.first_page is not None and r.first_page <= 30
        print(
            f"{r.kind:<8} {r.outage:>6g}s {r.attempts:>8} {first:>11} {last:>11}  "
            f"{'ok' if r.in_order_once else 'WRONG ' + ','.join(r.actions):<10}  "
            f"{'yes' if within else 'NO'}"
        )


if __name__ == "__main__":
    main()
