"""How fast deploybot acknowledges Slack requests under load, next to a bare Bolt app.

Slack gives an app 3 seconds to answer a slash command or an interaction with HTTP 200 (the
"ack"); what the app does after that does not count against the deadline. This script starts,
in one process and one run:

- a fake Slack Web API on loopback (``tests.support.slack.FakeSlack``),
- the real deploybot (``create_bot`` + ``serve_http``: waitress) on a fresh, migrated SQLite
  database in a temporary directory, with ``examples/minimal.yaml``,
- a bare Bolt app whose listeners only ``ack()``, on the same kind of waitress server with the
  same thread count,

then sends the same signed requests to both from ``--clients`` concurrent clients (one
keep-alive HTTP connection each) and prints the time from sending each request to receiving
its HTTP response: p50, p99, max, and non-200 answers.

Workloads (each client alternates the two kinds of its workload):

1. slash commands: ``/deploy status <id>`` and ``/deploy help`` from the deployer;
2. clicks: checkbox ticks that toggle checklist items, and "Sign off" clicks by someone who
   holds no approver role (refused: the refusal path).

Run from the repository root::

    .venv/bin/python benchmarks/ack_latency.py [--clients 50] [--requests 20] [--warmup 2]

It prints figures and asserts nothing. Progress goes to stderr, the results to stdout.
"""

from __future__ import annotations

import argparse
import http.client
import inspect
import itertools
import logging
import os
import platform
import random
import re
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import waitress
from slack_bolt import Ack, App, BoltResponse
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_bolt.request import BoltRequest
from slack_sdk import WebClient

from bot.ops.settings import Settings
from bot.rendering.ids import ActionId
from bot.server import Bot, create_bot, serve_http
from bot.slack.inbox import SlackInbox
from bot.storage.db import upgrade

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # ``tests`` is not installed: it is found from the repo root
    sys.path.insert(0, str(ROOT))

from tests.support.slack import FakeSlack, Message, Response, SlackRequests  # noqa: E402

SECRET = "bench-signing-secret"
TOKEN = "xoxb-test"
CONFIG = ROOT / "examples" / "minimal.yaml"
DEPLOYER = "U0DEPLOYER"
OUTSIDER = "U0OUTSIDER"  # in no role of the config: every sign-off click is refused
SERVER_THREADS: int = inspect.signature(serve_http).parameters["threads"].default
ACK_DEADLINE_MS = 3000.0

_action_ts = itertools.count(1)


# -- clients ---------------------------------------------------------------------------------


class TimedRequests(SlackRequests):
    """Slack's signed requests over one keep-alive connection, timing each exchange.

    ``last_ms`` is the time from sending the request to having read the whole response.
    """

    def __init__(self, url: str, *, fake: FakeSlack, timeout: float = 10.0) -> None:
        super().__init__(SECRET, url, fake=fake, timeout=timeout)
        parts = urlsplit(url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 80
        self._path = parts.path or "/"
        self._connection: http.client.HTTPConnection | None = None
        self.last_ms = 0.0

    def post(
        self,
        body: str,
        *,
        content_type: str = "application/x-www-form-urlencoded",
        retry_num: int | None = None,
        timestamp: int | None = None,
        signature: str | None = None,
    ) -> Response:
        headers = self.signed_headers(
            body,
            content_type=content_type,
            retry_num=retry_num,
            timestamp=timestamp,
            signature=signature,
        )
        data = body.encode("utf-8")
        if self._connection is None:
            self._connection = http.client.HTTPConnection(
                self._host, self._port, timeout=self.timeout
            )
            self._connection.connect()  # not part of the measured exchange
        started = time.perf_counter()
        try:
            self._connection.request("POST", self._path, body=data, headers=headers)
            reply = self._connection.getresponse()
            text = reply.read()
        except (OSError, http.client.HTTPException):
            self.last_ms = (time.perf_counter() - started) * 1000
            self.close()
            raise
        self.last_ms = (time.perf_counter() - started) * 1000
        if reply.will_close:
            self.close()
        return Response(
            status=reply.status,
            body=text.decode("utf-8", "replace"),
            headers=dict(reply.getheaders()),
            request_body=body,
        )

    def _send_payload(
        self,
        payload: Mapping[str, Any],
        retry_num: int | None,
        timestamp: int | None,
        signature: str | None,
    ) -> Response:
        # deploybot de-duplicates clicks by (user, action_id, action_ts): make every click's
        # action_ts unique, as Slack's are, so no click of the run is taken for a retry.
        payload = dict(payload)
        if payload.get("actions"):
            action = dict(payload["actions"][0])
            action["action_ts"] = f"{int(time.time())}.{next(_action_ts):06d}"
            payload["actions"] = [action]
        return super()._send_payload(payload, retry_num, timestamp, signature)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


# -- workloads -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkboxes:
    """One checkboxes element of the posted checklist, as a click on it needs it."""

    channel: str
    message_ts: str
    block_id: str
    options: list[dict[str, Any]]


@dataclass(frozen=True)
class Target:
    """What the requests refer to: the open session and its posted messages."""

    session_id: int
    summary: Message
    checkboxes: list[Checkboxes]
    sign_off_values: list[str]


# A request kind: sends one request with the client's connection (client index, request index).
Send = Callable[[TimedRequests, int, int], Response]


@dataclass(frozen=True)
class Workload:
    name: str
    short: str  # prefix of its rows in the table
    kinds: list[tuple[str, Send]]


@dataclass(frozen=True)
class Sample:
    kind: str
    ms: float
    status: int  # 0: no HTTP answer (connection error or timeout)


def slash_workload(target: Target, fake: FakeSlack) -> Workload:
    def status(client: TimedRequests, c: int, i: int) -> Response:
        return client.command(
            f"status {target.session_id}",
            user_id=DEPLOYER,
            response_url=fake.response_url(f"status-{c}-{i}"),
        )

    def show_help(client: TimedRequests, c: int, i: int) -> Response:
        return client.command(
            "help", user_id=DEPLOYER, response_url=fake.response_url(f"help-{c}-{i}")
        )

    return Workload(
        "slash commands",
        "slash",
        [(f"/deploy status {target.session_id}", status), ("/deploy help", show_help)],
    )


def click_workload(target: Target, fake: FakeSlack) -> Workload:
    rngs: dict[int, random.Random] = {}

    def tick(client: TimedRequests, c: int, i: int) -> Response:
        rng = rngs.setdefault(c, random.Random(c))
        box = target.checkboxes[(c + i) % len(target.checkboxes)]
        # Slack sends the element's whole selection; a random one ticks some items and
        # unticks others.
        selected = [o for o in box.options if rng.random() < 0.5]
        return client.block_action(
            user_id=DEPLOYER,
            action_id=ActionId.TICK,
            block_id=box.block_id,
            selected_options=selected,
            channel_id=box.channel,
            message_ts=box.message_ts,
            response_url=fake.response_url(f"tick-{c}-{i}"),
        )

    def sign_off(client: TimedRequests, c: int, i: int) -> Response:
        return client.block_action(
            user_id=OUTSIDER,
            action_id=ActionId.SIGN_OFF,
            value=target.sign_off_values[(c + i) % len(target.sign_off_values)],
            message=target.summary,
            channel_id=target.summary.channel,
            message_ts=target.summary.ts,
            response_url=fake.response_url(f"signoff-{c}-{i}"),
        )

    return Workload(
        "button clicks", "click", [("checkbox tick", tick), ("sign off (refused)", sign_off)]
    )


def run_workload(
    url: str, fake: FakeSlack, workload: Workload, *, clients: int, requests: int, warmup: int
) -> list[Sample]:
    """``clients`` concurrent clients; each warms up, waits for the others, then measures."""
    barrier = threading.Barrier(clients)

    def client(c: int) -> list[Sample]:
        http_client = TimedRequests(url, fake=fake)
        samples: list[Sample] = []
        try:
            for i in range(warmup + requests):
                if i == warmup:
                    barrier.wait(timeout=120)
                kind, send = workload.kinds[(c + i) % len(workload.kinds)]
                try:
                    status = send(http_client, c, i).status
                except (OSError, http.client.HTTPException):
                    status = 0
                if i >= warmup:
                    samples.append(Sample(kind, http_client.last_ms, status))
        finally:
            http_client.close()
        return samples

    with ThreadPoolExecutor(max_workers=clients, thread_name_prefix="client") as pool:
        results = list(pool.map(client, range(clients)))
    return [s for samples in results for s in samples]


# -- the two apps ----------------------------------------------------------------------------


@dataclass
class Served:
    url: str  # the /slack/events URL
    server: Any
    thread: threading.Thread

    def close(self) -> None:
        self.server.close()
        self.thread.join(timeout=5)


def serve(server: Any, name: str) -> Served:
    thread = threading.Thread(target=server.run, name=name, daemon=True)
    thread.start()
    return Served(f"http://127.0.0.1:{server.effective_port}/slack/events", server, thread)


def bare_bolt_app(fake: FakeSlack) -> App:
    """The baseline: Bolt with listeners for the same command and actions that only ack."""
    app = App(
        signing_secret=SECRET,
        client=WebClient(base_url=fake.base_url, token=TOKEN),
        token_verification_enabled=False,
    )

    def ack_only(ack: Ack) -> None:
        ack()

    app.command("/deploy")(ack_only)
    for action_id in ActionId:
        app.action(action_id)(ack_only)
    return app


@contextmanager
def running() -> Iterator[tuple[FakeSlack, Bot, Served, Served]]:
    with tempfile.TemporaryDirectory(prefix="deploybot-bench-") as tmp, FakeSlack() as fake:
        fake.usergroups = {"S0RELEASE": [DEPLOYER]}
        fake.usergroup_handles = {"S0RELEASE": "release-managers"}
        database_url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        upgrade(database_url)
        settings = Settings(
            SLACK_BOT_TOKEN=TOKEN,
            SLACK_SIGNING_SECRET=SECRET,
            SLACK_API_URL=fake.base_url,
            DATABASE_URL=database_url,
            DEPLOYBOT_CONFIG=str(CONFIG),
        )
        bot = create_bot(settings)
        bot.start(scheduler=False)  # the outbox workers post and update the messages
        deploybot = serve(serve_http(bot, host="127.0.0.1", port=0), "waitress-deploybot")
        bare = serve(
            waitress.create_server(
                SlackRequestHandler(bare_bolt_app(fake)),
                host="127.0.0.1",
                port=0,
                threads=SERVER_THREADS,
            ),
            "waitress-bare",
        )
        try:
            yield fake, bot, deploybot, bare
        finally:
            deploybot.close()
            bare.close()
            bot.close()


def open_session(fake: FakeSlack, url: str) -> Target:
    """``/deploy start staging`` as the deployer; the session and its posted messages."""
    slack = SlackRequests(SECRET, url, fake=fake)
    answer = slack.command(
        "start staging", user_id=DEPLOYER, response_url=fake.response_url("open")
    )
    if answer.status != 200:
        raise SystemExit(f"/deploy start staging answered HTTP {answer.status}: {answer.body}")
    text = ""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not text:
        text = next(
            (
                str(c.params.get("text"))
                for c in fake.calls("response_url")
                if c.path.endswith("/open")
            ),
            "",
        )
        time.sleep(0.02)
    found = re.search(r"#(\d+)", text)
    if not found:
        raise SystemExit(f"no session opened; the bot replied: {text or 'nothing'}")
    channel = str(fake.calls("chat.postMessage")[0].params["channel"])
    summary = fake.messages(channel)[-1]
    thread = fake.thread(summary.channel, summary.ts)[1:]
    boxes = [
        Checkboxes(message.channel, message.ts, block["block_id"], element["options"])
        for message in thread
        for block in message.blocks
        for element in block.get("elements") or []
        if element.get("type") == "checkboxes"
    ]
    sign_offs = [
        str(element["value"])
        for block in summary.blocks
        for element in block.get("elements") or []
        if element.get("action_id") == ActionId.SIGN_OFF
    ]
    if not boxes or not sign_offs:
        raise SystemExit("the posted session shows no checkboxes or no sign-off buttons")
    return Target(int(found.group(1)), summary, boxes, sign_offs)


def settle(bot: Bot, fake: FakeSlack, *, quiet: float = 0.5, limit: float = 60.0) -> float:
    """Wait until the bot stops calling Slack (its post-ack work is done); seconds waited."""
    started = time.monotonic()
    last, still_since = len(fake.calls()), started
    while time.monotonic() - started < limit:
        bot.publisher.flush()
        time.sleep(0.05)
        count = len(fake.calls())
        if count != last:
            last, still_since = count, time.monotonic()
        elif time.monotonic() - still_since >= quiet:
            break
    return time.monotonic() - started - quiet


# -- figures ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    requests: int
    p50: float
    p99: float
    max: float
    errors: int
    over_deadline: int


def inbox_insert_cost(bot: Bot, count: int = 300) -> str:
    """What recording a request before its ack costs: ``count`` inbox inserts, one
    transaction each, on the benchmark's database, with no other load."""
    inbox = SlackInbox(bot.runtime.session_factory)
    body = {"trigger_id": "", "user_id": DEPLOYER, "text": "status 1", "command": "/deploy"}
    took = []
    for n in range(count):
        request = BoltRequest(body={**body, "trigger_id": f"bench-inbox-{n}"}, mode="socket_mode")
        t0 = time.perf_counter()
        inbox.middleware(request, BoltResponse(status=200), lambda: None)
        took.append((time.perf_counter() - t0) * 1000)
    took.sort()
    p50, p99 = took[len(took) // 2], took[int(len(took) * 0.99) - 1]
    return (
        f"inbox insert before the ack (alone, {count} requests): p50 {p50:.2f} ms, p99 {p99:.2f} ms"
    )


def figures(samples: Sequence[Sample]) -> Figures:
    times = sorted(s.ms for s in samples)
    if len(times) >= 2:
        cuts = statistics.quantiles(times, n=100, method="inclusive")
        p50, p99 = cuts[49], cuts[98]
    else:
        p50 = p99 = times[0] if times else float("nan")
    return Figures(
        requests=len(times),
        p50=p50,
        p99=p99,
        max=times[-1] if times else float("nan"),
        errors=sum(1 for s in samples if s.status != 200),
        over_deadline=sum(1 for s in samples if s.ms >= ACK_DEADLINE_MS),
    )


def table(rows: list[tuple[str, dict[str, list[Sample]]]]) -> str:
    header = (
        f"{'workload':<28} {'app':<10} {'requests':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'max ms':>8} {'errors':>6} {'>=3s':>5}  {'p50 ratio':>9} {'p99 ratio':>9}"
    )
    lines = [header, "-" * len(header)]
    for name, by_app in rows:
        bare = figures(by_app["bare bolt"])
        for app in ("deploybot", "bare bolt"):
            f = figures(by_app[app])
            ratios = (
                f"{f.p50 / bare.p50:>8.1f}x {f.p99 / bare.p99:>8.1f}x"
                if app == "deploybot" and bare.p50 > 0 and bare.p99 > 0
                else f"{'':>9} {'':>9}"
            )
            lines.append(
                f"{name:<28} {app:<10} {f.requests:>8} {f.p50:>8.1f} {f.p99:>8.1f} "
                f"{f.max:>8.1f} {f.errors:>6} {f.over_deadline:>5}  {ratios}"
            )
    return "\n".join(lines)


class CountingHandler(logging.Handler):
    """Counts warnings and errors by logger instead of printing each (a load test logs a lot)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: Counter[tuple[str, str]] = Counter()
        self.first: dict[tuple[str, str], str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        key = (record.name, record.levelname)
        self.counts[key] += 1
        self.first.setdefault(key, record.getMessage()[:160])


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- main ------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients (50)")
    parser.add_argument(
        "--requests", type=int, default=20, help="measured requests per client per workload (20)"
    )
    parser.add_argument(
        "--warmup", type=int, default=2, help="unmeasured requests per client first (2)"
    )
    args = parser.parse_args(argv)

    logs = CountingHandler()
    logging.basicConfig(level=logging.WARNING, handlers=[logs], force=True)

    began = time.monotonic()
    results: list[tuple[str, dict[str, list[Sample]]]] = []
    notes: list[str] = []
    with running() as (fake, bot, deploybot, bare):
        target = open_session(fake, deploybot.url)
        settle(bot, fake)
        notes.append(inbox_insert_cost(bot))
        progress(f"session #{target.session_id} open; {len(target.checkboxes)} checkbox groups")
        for workload in (slash_workload(target, fake), click_workload(target, fake)):
            by_app: dict[str, list[Sample]] = {}
            # The bare app first, then deploybot, then wait for deploybot's post-ack work to
            # finish: the work one app leaves behind never runs during the other's turn.
            for app, url in (("bare bolt", bare.url), ("deploybot", deploybot.url)):
                updates_before = len(fake.calls("chat.update"))
                t0 = time.monotonic()
                by_app[app] = run_workload(
                    url,
                    fake,
                    workload,
                    clients=args.clients,
                    requests=args.requests,
                    warmup=args.warmup,
                )
                elapsed = time.monotonic() - t0
                progress(f"{workload.name}: {app}: {len(by_app[app])} requests in {elapsed:.1f}s")
                if app == "deploybot":
                    drained = settle(bot, fake)
                    progress(
                        f"{workload.name}: deploybot's post-ack work done {drained:.1f}s later"
                    )
                    notes.append(
                        f"{workload.name}: deploybot finished its post-ack work (replies, "
                        f"message updates) {drained:.1f}s after the last ack"
                    )
                    if workload.name == "button clicks":
                        updates = len(fake.calls("chat.update")) - updates_before
                        sent = (args.warmup + args.requests) * args.clients
                        notes.append(
                            f"button clicks: fake Slack received {updates} chat.update calls for "
                            f"{sent} clicks (about {sent // 2} ticks, warm-up included): "
                            "coalesced by the publisher"
                        )
            for kind, _ in workload.kinds:
                results.append(
                    (
                        f"{workload.short}: {kind}",
                        {a: [s for s in v if s.kind == kind] for a, v in by_app.items()},
                    )
                )
            results.append((f"{workload.name} (all)", by_app))
    total = time.monotonic() - began

    print()
    print(
        f"Ack latency: {args.clients} concurrent clients x {args.requests} measured requests per "
        f"workload and app ({args.warmup} warm-up each, not counted); one keep-alive connection "
        "per client; time from sending the request to the full HTTP response."
    )
    print(
        f"Machine: {os.cpu_count()} CPUs, {platform.system()} {platform.machine()}, "
        f"{platform.python_implementation()} {platform.python_version()}. Same-run comparison: "
        f"both apps on waitress ({SERVER_THREADS} threads) in this process, same clients, same "
        "fake Slack, deploybot on SQLite."
    )
    print()
    print(table(results))
    print()
    print("errors: answers other than HTTP 200 (or no answer).")
    print(">=3s: acks at or past Slack's 3 s deadline. ratio: deploybot / bare bolt.")
    for note in notes:
        print(note)
    if logs.counts:
        print("log warnings/errors during the run:")
        for (name, level), count in logs.counts.most_common():
            print(f"  {count:>5} x {level} {name}: {logs.first[(name, level)]}")
    print(f"total run time: {total:.1f}s")


if __name__ == "__main__":
    main()
