"""Does `deploybot serve` hold its memory flat over many requests?

Starts a real ``deploybot serve`` (HTTP mode, a fresh SQLite database, ``examples/
minimal.yaml``) in a process of its own; the Slack stand-in (``FakeSlack``) runs in a
thread of this process, the load generator. One deploy is opened with ``/deploy start
staging``; then ``--clients`` keep-alive clients send ``--requests`` freshly signed requests,
the six kinds in turn: ``/deploy status``, ``/deploy help``, a checkbox tick, a refused
sign-off, ``/deploy list`` and ``/deploy report``. The serve process's resident memory
(VmRSS) is read every ``--every`` requests. Prints the series, the growth over the first and
the second half, and whether it plateaus; asserts nothing.

Diagnoses: ``--env SOAK_SQLITE_CACHE_KB=N`` sets SQLite's page cache per connection;
``--env SOAK_MALLOC_TRIM=S`` has serve give freed heap back to the system every S seconds
(``malloc_trim``): memory that then stays is held, memory that goes was only freed late.

``--trace N`` runs serve under ``tracemalloc`` (N frames; many times slower: run a few
thousand requests) and prints the allocation sites that grew most from the first sample
(past the warm-up) to the last.

Run from the repository root::

    .venv/bin/python benchmarks/memory_soak.py [--requests 20000] [--clients 8] [--trace 0]
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def child(trace_dir: str, frames: int) -> None:
    """Become `deploybot serve`; with ``frames``, under tracemalloc, writing a snapshot each
    time the parent asks (a file ``N.want`` appears: ``N.snap`` follows)."""
    if frames:
        import gc
        import json
        import tracemalloc
        from collections import Counter

        tracemalloc.start(frames)

        def snapshots() -> None:
            done: set[str] = set()
            while True:
                for want in sorted(Path(trace_dir).glob("*.want")):
                    if want.stem not in done:
                        done.add(want.stem)
                        tracemalloc.take_snapshot().dump(str(want.with_suffix(".snap")))
                        kinds = Counter(type(o).__qualname__ for o in gc.get_objects())
                        want.with_suffix(".types").write_text(json.dumps(kinds))
                time.sleep(0.2)

        threading.Thread(target=snapshots, name="snapshots", daemon=True).start()
    cache_kb = os.environ.get("SOAK_SQLITE_CACHE_KB")
    if cache_kb:  # a diagnosis: SQLite's page cache per connection (default 2,000 KiB)
        from sqlalchemy import Engine, event

        def small_cache(connection: Any, _record: Any) -> None:
            if type(connection).__module__.startswith("sqlite3"):
                connection.execute(f"PRAGMA cache_size=-{int(cache_kb)}")

        event.listen(Engine, "connect", small_cache)
    trim = os.environ.get("SOAK_MALLOC_TRIM")
    if trim:  # a diagnosis: give freed heap back to the system every N seconds
        import ctypes

        libc = ctypes.CDLL("libc.so.6")

        def trimming() -> None:
            while True:
                time.sleep(float(trim))
                libc.malloc_trim(0)

        threading.Thread(target=trimming, name="malloc-trim", daemon=True).start()
    sys.argv = ["deploybot", "serve"]
    from bot.cli import main

    main()


def threads_of(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_serve(
    folder: Path, fake_url: str, frames: int, extra: dict[str, str]
) -> tuple[subprocess.Popen[bytes], str]:
    from ack_latency import SECRET, TOKEN

    from bot.storage.db import upgrade

    url = f"sqlite:///{folder / 'deploybot.db'}"
    upgrade(url)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DEPLOYBOT_"))}
    env.update(
        SLACK_BOT_TOKEN=TOKEN,
        SLACK_SIGNING_SECRET=SECRET,
        SLACK_API_URL=fake_url,
        DATABASE_URL=url,
        DEPLOYBOT_CONFIG=str(REPO / "examples" / "minimal.yaml"),
        DEPLOYBOT_LOG_FORMAT="text",
        PORT="0",
        DEPLOYBOT_HOST="127.0.0.1",
    )
    env.update(extra)
    log = folder / "serve.log"
    process = subprocess.Popen(
        [sys.executable, __file__, "--child", str(folder), "--trace", str(frames)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        found = re.search(r"listening on [^:\s]+:(\d+)", log.read_text(errors="replace"))
        if found:
            return process, f"http://127.0.0.1:{found.group(1)}/slack/events"
        time.sleep(0.1)
    raise SystemExit(f"serve did not start:\n{log.read_text(errors='replace')[-3000:]}")


def requests_of(target: Any, fake: Any) -> list[tuple[str, Callable[[Any, int], Any]]]:
    """The six kinds of request, each a function of (client, request number)."""
    from ack_latency import DEPLOYER, OUTSIDER

    from bot.rendering.ids import ActionId

    def command(text: str, kind: str) -> Callable[[Any, int], Any]:
        def send(client: Any, n: int) -> Any:
            return client.command(
                text, user_id=DEPLOYER, response_url=fake.response_url(f"{kind}-{n}")
            )

        return send

    def tick(client: Any, n: int) -> Any:
        box = target.checkboxes[n % len(target.checkboxes)]
        selected = [o for i, o in enumerate(box.options) if (n >> i) & 1]
        return client.block_action(
            user_id=DEPLOYER,
            action_id=ActionId.TICK,
            block_id=box.block_id,
            selected_options=selected,
            channel_id=box.channel,
            message_ts=box.message_ts,
            response_url=fake.response_url(f"tick-{n}"),
        )

    def sign_off(client: Any, n: int) -> Any:
        return client.block_action(
            user_id=OUTSIDER,
            action_id=ActionId.SIGN_OFF,
            value=target.sign_off_values[n % len(target.sign_off_values)],
            message=target.summary,
            channel_id=target.summary.channel,
            message_ts=target.summary.ts,
            response_url=fake.response_url(f"signoff-{n}"),
        )

    sid = target.session_id
    return [
        ("status", command(f"status {sid}", "status")),
        ("help", command("help", "help")),
        ("tick", tick),
        ("sign-off refused", sign_off),
        ("list", command("list", "list")),
        ("report", command(f"report {sid}", "report")),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--every", type=int, default=1000)
    parser.add_argument("--trace", type=int, default=0, help="tracemalloc frames (0: off)")
    parser.add_argument(
        "--without", nargs="*", default=[], help="kinds of request left out (e.g. report)"
    )
    parser.add_argument(
        "--env", nargs="*", default=[], help="NAME=VALUE for serve (e.g. MALLOC_ARENA_MAX=2)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.trace)
        return

    from ack_latency import TimedRequests, open_session

    from tests.support.slack import FakeSlack

    with tempfile.TemporaryDirectory() as tmp, FakeSlack() as fake:
        folder = Path(tmp)
        extra = dict(pair.split("=", 1) for pair in args.env)
        process, url = start_serve(folder, fake.base_url, args.trace, extra)
        try:
            target = open_session(fake, url)
            kinds = [k for k in requests_of(target, fake) if k[0] not in args.without]
            numbers = itertools.count()
            lock = threading.Lock()
            statuses: dict[str, dict[int, int]] = {name: {} for name, _ in kinds}
            series: list[tuple[int, float, float]] = [(0, 0.0, rss_mb(process.pid))]
            started = time.monotonic()

            def client(c: int) -> None:
                slack = TimedRequests(url, fake=fake, timeout=60)
                while True:
                    with lock:
                        n = next(numbers)
                    if n >= args.requests:
                        break
                    name, send = kinds[n % len(kinds)]
                    try:
                        status = send(slack, n).status
                    except OSError:
                        status = 0
                    with lock:
                        statuses[name][status] = statuses[name].get(status, 0) + 1
                        done = sum(sum(s.values()) for s in statuses.values())
                        if done % args.every == 0:
                            elapsed = time.monotonic() - started
                            series.append((done, elapsed, rss_mb(process.pid)))
                            if args.trace and done == args.every:  # past the warm-up
                                (folder / "0.want").touch()
                            print(
                                f"{done:>6} requests, {elapsed:6.0f} s: RSS {series[-1][2]:.1f} MB"
                                f", {threads_of(process.pid)} threads",
                                file=sys.stderr,
                            )
                slack.close()

            threads = [threading.Thread(target=client, args=(c,)) for c in range(args.clients)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            time.sleep(5)  # the work the last requests left (Slack updates, reports)
            series.append((args.requests, time.monotonic() - started, rss_mb(process.pid)))
            if args.trace:
                (folder / "1.want").touch()
                while not (folder / "1.snap").exists():
                    time.sleep(0.2)
                time.sleep(1)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=60)
        db = sum(f.stat().st_size for f in folder.glob("deploybot.db*")) / 2**20
        report(args, series, statuses, fake)
        print(f"database file (with its WAL): {db:.1f} MB")
        if args.trace:
            growth(folder, args.trace)


def report(
    args: argparse.Namespace,
    series: list[tuple[int, float, float]],
    statuses: dict[str, dict[int, int]],
    fake: Any,
) -> None:
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"`deploybot serve` RSS over {args.requests} mixed requests, {args.clients} clients, "
        f"SQLite; {os.cpu_count()} cores, load average {load}"
        + (f"; under tracemalloc ({args.trace} frames)" if args.trace else "")
        + (f"; without {', '.join(args.without)}" if args.without else "")
        + (f"; serve's environment: {' '.join(args.env)}" if args.env else "")
    )
    print()
    print("| requests | seconds | RSS (MB) |")
    print("|---------:|--------:|---------:|")
    for done, elapsed, rss in series:
        print(f"| {done:>8} | {elapsed:>7.0f} | {rss:>8.1f} |")
    print()
    answered = ", ".join(
        f"{name}: " + " ".join(f"{count}x{status or 'none'}" for status, count in sorted(s.items()))
        for name, s in statuses.items()
    )
    print(f"answers (count x HTTP status): {answered}")
    print(f"Slack stand-in calls: {len(fake.calls())}")
    first, middle, last = series[1][2], series[len(series) // 2][2], series[-1][2]
    early, late = middle - first, last - middle
    print(
        f"growth after the first sample: {early:+.1f} MB over the first half, "
        f"{late:+.1f} MB over the second"
    )
    flat = late <= max(5.0, 0.25 * abs(early))
    print("plateaus" if flat else "still growing in the second half: does NOT plateau")


def growth(folder: Path, frames: int) -> None:
    import tracemalloc

    first = tracemalloc.Snapshot.load(str(folder / "0.snap"))
    last = tracemalloc.Snapshot.load(str(folder / "1.snap"))
    total = (
        sum(stat.size for stat in first.statistics("filename")),
        sum(stat.size for stat in last.statistics("filename")),
    )
    print()
    print(
        f"Python's heap (tracemalloc): {total[0] / 2**20:.1f} MB at the first sample, "
        f"{total[1] / 2**20:.1f} MB at the last"
    )
    import json

    before, after = (json.loads((folder / f"{n}.types").read_text()) for n in (0, 1))
    grown = sorted(((after[k] - before.get(k, 0), k) for k in after), reverse=True)[:10]
    print("objects the garbage collector tracks, that grew most in number:")
    print("    " + ", ".join(f"{name} {count:+d}" for count, name in grown))
    print("allocation sites that grew most (tracemalloc, first sample to last):")
    for stat in last.compare_to(first, "traceback")[:12]:
        print(f"{stat.size_diff / 1024:+9.0f} KiB {stat.count_diff:+7d} blocks")
        for line in stat.traceback.format()[-2 * min(frames, 6) :]:
            print(f"    {line}")


if __name__ == "__main__":
    main()
