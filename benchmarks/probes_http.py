"""How a probe round scales: one HTTP probe, then 200 and 1,000 at once, against targets in
a process of their own that answer every request after 200 ms.

The targets (``slow_targets.py``) listen on 25 loopback ports, so 200 probes are 8 per
target, within the default bound of 16 per ``host:port``; 200 probes of one single target
are shown too, to show that bound at work (about 200 / 16 waves). The old pool of 32
threads is shown as ``concurrency 32``. CPU per probe is this process's user + system time
over the round, divided by its probes. Each figure is the range over ``RUNS`` runs. The
1,000-probe round reports the most file descriptors the process held while it ran, next
to its open-file limit. Prints a table; asserts nothing; exits 0.

Run: ``.venv/bin/python benchmarks/probes_http.py``
"""

from __future__ import annotations

import os
import resource
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from slow_targets import slow_targets

from bot.config.probe_specs import HttpProbe
from bot.integrations.probes import ProbeContext, run_probes
from bot.integrations.probes.base import MAX_CONCURRENCY
from bot.integrations.probes.clients import ProbeClients

DELAY = 0.2
TARGETS = 25
RUNS = 3


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@contextmanager
def fd_peak() -> Iterator[list[int]]:
    """The most file descriptors this process holds while the block runs (sampled)."""
    peak, stop = [0], threading.Event()

    def watch() -> None:
        while not stop.wait(0.005):
            peak[0] = max(peak[0], len(os.listdir("/proc/self/fd")))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield peak
    finally:
        stop.set()
        watcher.join()


def measure(round_: Callable[[], int], count: int) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds per probe, and how many passed."""
    cpu0, wall0 = cpu(), time.perf_counter()
    passed = round_()
    return time.perf_counter() - wall0, (cpu() - cpu0) / count, passed


def spread(values: list[float], scale: float = 1.0, fmt: str = "{:.0f}") -> str:
    low, high = min(values) * scale, max(values) * scale
    return (
        fmt.format(low)
        if fmt.format(low) == fmt.format(high)
        else f"{fmt.format(low)}-{fmt.format(high)}"
    )


def main() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    clients = ProbeClients()  # one per process, as the bot and `probes run` have
    ctx = ProbeContext(clients=clients)
    with slow_targets(TARGETS, DELAY) as (_, ports):
        urls = [f"http://127.0.0.1:{port}/health" for port in ports]
        specs = [HttpProbe(url=url, timeout="30s") for url in urls]

        def round_of(count: int, *, one_target: bool = False, concurrency: int = MAX_CONCURRENCY):
            probes = [(f"p{n}", specs[0 if one_target else n % TARGETS]) for n in range(count)]

            def run() -> int:
                results = run_probes(probes, ctx=ctx, concurrency=concurrency)
                return sum(r.ok for r in results)

            return run

        run_probes([(f"warm{n}", s) for n, s in enumerate(specs)], ctx=ctx)  # imports, TLS
        rows: list[tuple[str, int, Callable[[], int]]] = [
            ("1 probe", 1, round_of(1)),
            (f"200 probes, {TARGETS} targets", 200, round_of(200)),
            ("200 probes, concurrency 32 (the old pool)", 200, round_of(200, concurrency=32)),
            (
                f"200 probes, 1 target (bound {clients.per_host} per host)",
                200,
                round_of(200, one_target=True),
            ),
            (f"1000 probes, {TARGETS} targets", 1000, round_of(1000)),
        ]
        figures: dict[str, list[tuple[float, float, int]]] = {label: [] for label, _, _ in rows}
        peaks: list[int] = []
        for _ in range(RUNS):
            for label, count, run in rows:
                if count == 1000:
                    with fd_peak() as peak:
                        figures[label].append(measure(run, count))
                    peaks.append(peak[0])
                else:
                    figures[label].append(measure(run, count))
        clients.close()

    one = min(wall for wall, _, _ in figures["1 probe"])
    load = os.getloadavg()
    print(f"Probe rounds: targets answer after {DELAY * 1000:.0f} ms, in their own process;")
    print(f"{RUNS} runs; {os.cpu_count()} cores, load average", " ".join(f"{x:.1f}" for x in load))
    print()
    head = ("round", "wall (ms)", "x one probe", "CPU/probe (ms)")
    print(f"| {head[0]:<44} | {head[1]:>11} | {head[2]:>11} | {head[3]:>14} | passed |")
    print(f"|{'-' * 46}|{'-' * 13}|{'-' * 13}|{'-' * 16}|--------|")
    for label, count, _ in rows:
        walls = [w for w, _, _ in figures[label]]
        cpus = [c for _, c, _ in figures[label]]
        passed = min(p for _, _, p in figures[label])
        ratio = spread([w / one for w in walls], fmt="{:.2f}")
        print(
            f"| {label:<44} | {spread(walls, 1000):>11} | {ratio:>11} "
            f"| {spread(cpus, 1000, '{:.2f}'):>14} | {passed:>4}/{count} |"
        )
    print()
    print(f"1000 probes: at most {max(peaks)} file descriptors open (limit {soft}).")


if __name__ == "__main__":
    main()
