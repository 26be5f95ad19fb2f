"""How fast deploybot acknowledges Slack requests under load, next to a bare Bolt app.

Slack gives an app 3 seconds to answer a slash command or an interaction with HTTP 200 (the
"ack"). Every party runs in a process of its own, on a fresh database per run (a SQLite file,
then a PostgreSQL schema):

- the Slack stand-in (``sandbox.slack_api.FakeSlack``), which also tells the load generator
  when a message was updated (``--party slack``);
- a bare Bolt app whose listeners only ``ack()``, on waitress with the thread count of
  ``deploybot serve`` (``--party bare``);
- deploybot's web tier (``deploybot serve --role web``) and one ``deploybot worker``;
- the load generator (this process): ``--clients`` concurrent clients, one keep-alive
  connection each, every request unique (its own trigger_id or action_ts) and freshly
  signed, each client sending its next request as soon as the last one is answered.

Workloads, one at a time, the bare app first, then deploybot: ``/deploy status <id>``,
``/deploy help``, checkbox ticks (random selections in the session's checklist), sign-off
clicks by someone who holds no approver role (refused). During deploybot's ticks one more
client ticks and unticks a reserved item, each time waiting until the Slack stand-in shows
its effect (a ``chat.update`` of the message with the item so): the time from sending the
click to then is "tick visible". After each deploybot workload the script waits until the
worker has finished the work (inbox and outbox drained) before the next one starts.

Run from the repository root (PostgreSQL as in the tests: 127.0.0.1:5432, database ``test``)::

    .venv/bin/python benchmarks/ack_latency.py [--clients 50] [--seconds 10] [--warmup 2]

It prints a table and asserts nothing. Progress goes to stderr, the results to stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit
from urllib.request import urlopen

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # ``tests`` and ``sandbox`` are found from the repo root
    sys.path.insert(0, str(ROOT))

from benchmarks.bench_clients import Sample, TimedRequests, figures  # noqa: E402

SECRET = "bench-signing-secret"
TOKEN = "xoxb-test"
CONFIG = ROOT / "examples" / "minimal.yaml"
DEPLOYER = "U0DEPLOYER"
OUTSIDER = "U0OUTSIDER"  # in no role of the config: every sign-off click is refused
POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
WORKLOADS = ("/deploy status", "/deploy help", "checkbox tick", "sign off (refused)")


# -- the parties run by this script ------------------------------------------------------------


def party_slack() -> None:
    """The Slack stand-in, and ``/updates?ts=&after=`` listing its ``chat.update`` calls."""
    from sandbox.slack_api import FakeSlack

    updates: list[dict[str, Any]] = []

    class StandIn(FakeSlack):
        def _update(self, params: dict[str, Any]) -> dict[str, Any]:
            answer = super()._update(params)
            blocks = params.get("blocks")
            blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
            updates.append({"at": time.monotonic(), "ts": params.get("ts"), "blocks": blocks})
            return answer

    class Inspect(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            if parts.path == "/updates":
                after = int(query.get("after", 0))
                found = [u for u in updates[after:] if u["ts"] == query.get("ts")]
                body: Any = {"next": len(updates), "updates": found}
            elif parts.path == "/calls":
                body = [
                    {"path": c.path, "params": c.params}
                    for c in fake.calls(query["method"])
                    if c.path.endswith(query.get("suffix", ""))
                ]
            elif parts.path == "/thread":
                body = [m.as_payload() for m in fake.thread(query["channel"], query["ts"])]
            else:
                body = {"calls": len(fake.calls())}
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    fake = StandIn()
    fake.usergroups = {"S0RELEASE": [DEPLOYER]}
    fake.usergroup_handles = {"S0RELEASE": "release-managers"}
    inspect = ThreadingHTTPServer(("127.0.0.1", 0), Inspect)
    threading.Thread(target=inspect.serve_forever, daemon=True).start()
    port = inspect.server_address[1]
    ready = {"api": fake.base_url, "url": fake.url, "inspect": f"http://127.0.0.1:{port}"}
    print(json.dumps(ready), flush=True)
    sys.stdin.read()  # until the load generator closes it


def party_bare(api_url: str) -> None:
    """The baseline: Bolt with listeners for the same command and actions that only ack, on
    waitress with ``deploybot serve``'s thread count."""
    import inspect

    import waitress
    from slack_bolt import Ack, App
    from slack_bolt.adapter.wsgi import SlackRequestHandler
    from slack_sdk import WebClient

    from bot.rendering.ids import ActionId
    from bot.server import serve_http

    threads = inspect.signature(serve_http).parameters["threads"].default
    # waitress warns of every request queued behind its threads: thousands of lines a run.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    app = App(
        signing_secret=SECRET,
        client=WebClient(base_url=api_url, token=TOKEN),
        token_verification_enabled=False,
    )

    def ack_only(ack: Ack) -> None:
        ack()

    app.command("/deploy")(ack_only)
    for action_id in ActionId:
        app.action(action_id)(ack_only)
    server = waitress.create_server(
        SlackRequestHandler(app), host="127.0.0.1", port=0, threads=threads
    )
    threading.Thread(target=server.run, daemon=True).start()
    print(json.dumps({"url": f"http://127.0.0.1:{server.effective_port}/slack/events"}), flush=True)
    sys.stdin.read()


# -- starting them -------------------------------------------------------------------------------


@dataclass
class Process:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path | None = None

    def cpu(self) -> float:
        """Seconds of CPU the process used so far (user and system)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def script_party(name: str, *args: str) -> tuple[Process, dict[str, str]]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--party", name, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise SystemExit(f"the {name} party did not start")
    return Process(name, proc), json.loads(line)


def deploybot(name: str, args: list[str], env: dict[str, str], tmp: Path, ready: str) -> Process:
    log = tmp / f"{name}.log"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    deadline = time.monotonic() + 60
    while ready not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{name} did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.05)
    return Process(name, proc, log)


def port_of(process: Process) -> int:
    assert process.log is not None
    found = re.search(r"(?:listening|health) on 127\.0\.0\.1:(\d+)", process.log.read_text())
    assert found, process.log.read_text()
    return int(found.group(1))


@contextmanager
def database(kind: str, postgres_url: str, tmp: Path) -> Iterator[str]:
    """A fresh, migrated database: a SQLite file, or a PostgreSQL schema dropped afterwards."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from bot.storage.db import make_engine, upgrade

    if kind == "sqlite":
        url = f"sqlite:///{tmp / 'bench.db'}"
        upgrade(url)
        yield url
        return
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = make_engine(postgres_url)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(postgres_url).update_query_dict({"options": f"-csearch_path={schema}"})
    rendered = url.render_as_string(hide_password=False)
    try:
        upgrade(rendered)
        yield rendered
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@dataclass
class Parties:
    slack: dict[str, str]
    bare_url: str
    bot_url: str
    database_url: str
    processes: dict[str, Process] = field(default_factory=dict)

    def get(self, path: str, **query: Any) -> Any:
        """What the Slack stand-in says (``/updates``, ``/calls``, ``/thread``)."""
        with urlopen(f"{self.slack['inspect']}{path}?{urlencode(query)}", timeout=10) as answer:
            return json.loads(answer.read())


@contextmanager
def parties(database_url: str, tmp: Path) -> Iterator[Parties]:
    with ExitStack() as stack:
        slack_process, slack = script_party("slack")
        stack.callback(slack_process.stop)
        bare_process, bare = script_party("bare", slack["api"])
        stack.callback(bare_process.stop)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DEPLOYBOT_"))}
        env.update(
            SLACK_BOT_TOKEN=TOKEN,
            SLACK_SIGNING_SECRET=SECRET,
            SLACK_API_URL=slack["api"],
            DATABASE_URL=database_url,
            DEPLOYBOT_CONFIG=str(CONFIG),
            DEPLOYBOT_HOST="127.0.0.1",
            DEPLOYBOT_LOG_FORMAT="json",
            PORT="0",
        )
        web = deploybot("web", ["serve", "--role", "web"], env, tmp, "listening on")
        stack.callback(web.stop)
        worker = deploybot("worker", ["worker"], env, tmp, "health on")
        stack.callback(worker.stop)
        found = Parties(
            slack, bare["url"], f"http://127.0.0.1:{port_of(web)}/slack/events", database_url
        )
        found.processes = {"bare": bare_process, "web": web, "worker": worker}
        yield found


# -- the session the requests refer to -----------------------------------------------------------


@dataclass(frozen=True)
class Box:
    """One checkboxes element of the posted checklist, as a click on it needs it."""

    channel: str
    message: dict[str, Any]
    block_id: str
    options: list[dict[str, Any]]


@dataclass(frozen=True)
class Target:
    session_id: int
    summary: dict[str, Any]
    channel: str
    boxes: list[Box]
    sign_offs: list[str]


def open_session(p: Parties) -> Target:
    """``/deploy start staging`` through the web tier; the session and its posted messages."""
    from sandbox.slack_requests import SlackRequests

    slack = SlackRequests(SECRET, p.bot_url)
    answer = slack.command(
        "start staging", user_id=DEPLOYER, response_url=f"{p.slack['url']}/response/open"
    )
    assert answer.status == 200, answer
    deadline = time.monotonic() + 30
    while not (said := p.get("/calls", method="response_url", suffix="/open")):
        if time.monotonic() > deadline:
            raise SystemExit("the session did not open")
        time.sleep(0.05)
    found = re.search(r"#(\d+)", str(said[0]["params"].get("text")))
    if not found:
        raise SystemExit(f"no session opened; the bot replied: {said[0]['params']}")
    channel = str(p.get("/calls", method="chat.postMessage")[0]["params"]["channel"])
    settle(p)
    messages = thread_of(p, channel)
    summary, rest = messages[0], messages[1:]
    boxes = [
        Box(channel, message, block["block_id"], element["options"])
        for message in rest
        for block in message["blocks"]
        for element in block.get("elements") or []
        if element.get("type") == "checkboxes"
    ]
    sign_offs = [
        str(element["value"])
        for block in summary["blocks"]
        for element in block.get("elements") or []
        if element.get("action_id") == "deploy.sign_off"
    ]
    return Target(int(found.group(1)), summary, channel, boxes, sign_offs)


def thread_of(p: Parties, channel: str) -> list[dict[str, Any]]:
    """The session's summary and the messages in its thread, as posted."""
    from sqlalchemy import select

    from bot.storage.db import make_engine
    from bot.storage.models import SlackMessageRow

    engine = make_engine(p.database_url)
    try:
        with engine.connect() as connection:
            ts = connection.execute(
                select(SlackMessageRow.ts).where(SlackMessageRow.purpose == "summary")
            ).scalar_one()
    finally:
        engine.dispose()
    return list(p.get("/thread", channel=channel, ts=ts))


def settle(p: Parties, limit: float = 300.0) -> float:
    """Wait until the worker finished the work (no request or effect pending, Slack quiet);
    returns the seconds waited."""
    from sqlalchemy import func, select

    from bot.storage.db import make_engine
    from bot.storage.models import InboxRow, OutboxRow

    engine = make_engine(p.database_url)
    started = time.monotonic()
    try:
        while time.monotonic() - started < limit:
            with engine.connect() as connection:
                pending = (
                    connection.execute(
                        select(func.count()).where(InboxRow.done_at.is_(None))
                    ).scalar_one()
                    + connection.execute(
                        select(func.count()).where(
                            OutboxRow.delivered_at.is_(None),
                            OutboxRow.failed_at.is_(None),
                            OutboxRow.topic != "schedule",
                        )
                    ).scalar_one()
                )
            if not pending:
                break
            if time.monotonic() - started > 30 and int(time.monotonic() - started) % 30 == 0:
                progress(f"still {pending} requests and effects pending")
            time.sleep(0.1)
    finally:
        engine.dispose()
    return time.monotonic() - started


# -- the run ------------------------------------------------------------------------------------


def sender(p: Parties, target: Target, workload: str) -> Callable[[TimedRequests, int], Any]:
    import random

    rngs: dict[int, random.Random] = {}
    respond = p.slack["url"] + "/response/"
    reserved = target.boxes[0].options[0]["value"]  # the visibility clicker's own item

    def send(client: TimedRequests, c: int) -> Any:
        if workload == "/deploy status":
            return client.command(
                f"status {target.session_id}", user_id=DEPLOYER, response_url=respond + "s"
            )
        if workload == "/deploy help":
            return client.command("help", user_id=DEPLOYER, response_url=respond + "h")
        rng = rngs.setdefault(c, random.Random(c))
        if workload == "checkbox tick":
            box = rng.choice(target.boxes)
            selected = [o for o in box.options if rng.random() < 0.5 and o["value"] != reserved]
            return client.block_action(
                user_id=DEPLOYER,
                action_id="deploy.tick",
                block_id=box.block_id,
                selected_options=selected,
                channel_id=box.channel,
                message_ts=box.message["ts"],
                response_url=respond + "t",
            )
        return client.block_action(
            user_id=OUTSIDER,
            action_id="deploy.sign_off",
            value=rng.choice(target.sign_offs),
            message=target.summary,
            channel_id=target.channel,
            message_ts=target.summary["ts"],
            response_url=respond + "o",
        )

    return send


def visibility(p: Parties, target: Target, until: float, samples: list[float]) -> None:
    """Tick and untick the reserved item, each time until the stand-in shows it so."""
    box = target.boxes[0]
    option = box.options[0]
    client = TimedRequests(SECRET, p.bot_url)
    ticked = False
    after = p.get("/updates", ts=box.message["ts"], after=0)["next"]
    try:
        while time.monotonic() < until:
            want = not ticked
            message = json.loads(json.dumps(box.message))
            for block in message["blocks"]:
                for element in block.get("elements") or []:
                    if block.get("block_id") == box.block_id and element["type"] == "checkboxes":
                        element.pop("initial_options", None)
                        if ticked:
                            element["initial_options"] = [option]
            sent = time.monotonic()
            client.block_action(
                user_id=DEPLOYER,
                action_id="deploy.tick",
                block_id=box.block_id,
                selected_options=[option] if want else [],
                channel_id=box.channel,
                message_ts=box.message["ts"],
                message=message,
                response_url=p.slack["url"] + "/response/v",
            )
            while time.monotonic() < sent + 30:
                found = p.get("/updates", ts=box.message["ts"], after=after)
                after = found["next"]
                hit = next(
                    (
                        u
                        for u in found["updates"]
                        if shows(u["blocks"], box.block_id, option["value"]) == want
                    ),
                    None,
                )
                if hit is not None:
                    samples.append((hit["at"] - sent) * 1000)
                    break
                time.sleep(0.02)
            ticked = want
    finally:
        client.close()


def shows(blocks: list[dict[str, Any]], block_id: str, value: str) -> bool:
    for block in blocks:
        if block.get("block_id") == block_id:
            for element in block.get("elements") or []:
                if element.get("type") == "checkboxes":
                    return value in {o["value"] for o in element.get("initial_options") or []}
    return False


def load(
    url: str, send: Callable[[TimedRequests, int], Any], clients: int, warmup: float, seconds: float
) -> list[Sample]:
    barrier = threading.Barrier(clients + 1)
    start: list[float] = []
    results: list[list[Sample]] = [[] for _ in range(clients)]

    def client(c: int) -> None:
        http = TimedRequests(SECRET, url)
        barrier.wait()
        measure, end = start[0] + warmup, start[0] + warmup + seconds
        try:
            while (now := time.monotonic()) < end:
                status = http.exchange(lambda: send(http, c))
                if now >= measure:
                    results[c].append(Sample(http.last_ms, status))
        finally:
            http.close()

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for thread in threads:
        thread.start()
    start.append(time.monotonic())
    barrier.wait()
    for thread in threads:
        thread.join()
    return [s for samples in results for s in samples]


@dataclass
class Row:
    database: str
    workload: str
    bare: list[Sample]
    bot: list[Sample]
    cpu: dict[str, float]  # CPU ms per request, by process
    drained: float = 0.0


def run_database(kind: str, args: argparse.Namespace, tmp: Path) -> tuple[list[Row], list[float]]:
    rows: list[Row] = []
    visible: list[float] = []
    with database(kind, args.postgres_url, tmp) as url, parties(url, tmp) as p:
        target = open_session(p)
        progress(f"{kind}: session #{target.session_id} open, {len(target.boxes)} checkbox groups")
        for workload in args.workloads.split(","):
            send = sender(p, target, workload)
            procs = p.processes
            before = {name: proc.cpu() for name, proc in procs.items()}
            bare = load(p.bare_url, send, args.clients, args.warmup, args.seconds)
            mid = {name: proc.cpu() for name, proc in procs.items()}
            watcher = None
            if workload == "checkbox tick":
                until = time.monotonic() + args.warmup + args.seconds
                watcher = threading.Thread(target=visibility, args=(p, target, until, visible))
                watcher.start()
            bot = load(p.bot_url, send, args.clients, args.warmup, args.seconds)
            if watcher is not None:
                watcher.join()
            drained = settle(p)
            after = {name: proc.cpu() for name, proc in procs.items()}
            sent_bare = len(bare) * (args.warmup + args.seconds) / args.seconds
            sent_bot = len(bot) * (args.warmup + args.seconds) / args.seconds
            cpu = {"bare": (mid["bare"] - before["bare"]) * 1000 / max(sent_bare, 1)}
            for name in ("web", "worker"):
                cpu[name] = (after[name] - mid[name]) * 1000 / max(sent_bot, 1)
            rows.append(Row(kind, workload, bare, bot, cpu, drained))
            progress(
                f"{kind}: {workload}: bare {len(bare)}, deploybot {len(bot)} requests; "
                f"work drained {drained:.1f}s after the last ack"
            )
    return rows, visible


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def report(rows: list[Row], visible: dict[str, list[float]], args: argparse.Namespace) -> None:
    print(
        f"\nAck latency: {args.clients} concurrent keep-alive clients, {args.seconds:g}s measured "
        f"per workload and app after {args.warmup:g}s of warm-up; every party in its own "
        f"process. Machine: {os.cpu_count()} CPUs, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}.\n"
    )
    header = (
        f"{'workload':<20} {'db':<10} {'bare p50':>8} {'bare p99':>8} {'bot p50':>8} "
        f"{'bot p99':>8} {'ratio':>6} {'req/s bare/bot':>15} {'errs':>4} {'>=3s':>4} "
        f"{'CPU ms/req bare/web/worker':>27} {'drain s':>7}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        b, d = figures(row.bare), figures(row.bot)
        rates = f"{len(row.bare) / args.seconds:.0f}/{len(row.bot) / args.seconds:.0f}"
        cpu = f"{row.cpu['bare']:.1f}/{row.cpu['web']:.1f}/{row.cpu['worker']:.1f}"
        print(
            f"{row.workload:<20} {row.database:<10} {b.p50:>8.1f} {b.p99:>8.1f} {d.p50:>8.1f} "
            f"{d.p99:>8.1f} {d.p99 / b.p99:>5.2f}x {rates:>15} {d.errors + b.errors:>4} "
            f"{d.over_deadline:>4} {cpu:>27} {row.drained:>7.1f}"
        )
    print("\nratio: deploybot p99 / bare p99 (ms). errs: answers other than 200, both apps.")
    print("drain s: how long after the last ack the worker finished the workload's work.")
    for kind, samples in visible.items():
        if samples:
            cuts = sorted(samples)
            p99 = figures([Sample(ms, 200) for ms in cuts]).p99
            print(
                f"tick visible in Slack ({kind}, {len(cuts)} ticks by one more client during "
                f"the tick load): p50 {statistics.median(cuts):.0f} ms, p99 {p99:.0f} ms, "
                f"max {cuts[-1]:.0f} ms"
            )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured, per workload/app")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds, not measured")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated")
    parser.add_argument("--postgres-url", default=os.environ.get("TEST_DATABASE_URL", POSTGRES))
    parser.add_argument("--party", choices=("slack", "bare"), help=argparse.SUPPRESS)
    parser.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.party == "slack":
        return party_slack()
    if args.party == "bare":
        return party_bare(args.rest[0])
    rows: list[Row] = []
    visible: dict[str, list[float]] = {}
    for kind in args.databases.split(","):
        with tempfile.TemporaryDirectory(prefix="deploybot-bench-") as tmp:
            found, visible[kind] = run_database(kind, args, Path(tmp))
            rows += found
    report(rows, visible, args)


if __name__ == "__main__":
    main()
