"""How long ``bot.ops.redact.redact`` takes on 1 KB, 100 KB and 1 MB of text.

Redaction runs on every log line, probe result, rollback step and page, so it must take time
linear in the text whatever the text holds: one long word, thousands of near misses
(``password`` with no value, ``eyJ`` with no dot, ``://`` with no ``@``), real secrets, and
ordinary output. Each workload is built at each size by repeating its unit; the ratio of the
1 MB time to the 100 KB time is about 10 for a linear redactor (100 for a quadratic one).

Run from the repository root::

    .venv/bin/python benchmarks/redact.py [--repeat 3]

It prints figures (the best of ``--repeat`` runs) and asserts nothing.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from bot.ops.redact import redact

KB = 1000

ORDINARY = (
    "2026-11-23T12:00:00Z INFO probe api-health: HTTP 200 in 34 ms from "
    'https://api.example.com/v1/health {"status": "ok", "version": "1.4.2"} '
    "commit 3f9a2c1e8b7d6054a1b2c3d4e5f60718293a4b5c pod api-7d9f8c6b5-x2k4p "
    "request 123e4567-e89b-12d3-a456-426614174000\n"
)
SECRETS = (
    "Authorization: Bearer dpl.7f3a9c2e41b8d6f0 password=hunter2 "
    "ghp_R8kzQ2mVx7LpA9sWc4TnB6yHd1uJe3fG5oIq wJalrXUtnFEMI/K7MDENG/bPxRfiCYzq8Kf3Tb1x "
    "postgresql://app:p@ss/w0rd@db:5432/app eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln\n"
)
NEAR_MISSES = (
    "password passwordpassword token: eyJeyJ. ://:// ://a:b ghp_ github_pat_ sk_live_ "
    "-----BEGIN PRIVATE KEY AKIA sig= Cookie Authorization xoxb- AccountKey= SG. glpat- "
    '"password\\"  \\"token\\": \\"  aws_secret_access_key pypi- npm_ Bearer \n'
)

WORKLOADS: dict[str, Callable[[int], str]] = {
    "one long word": lambda size: "x" * size,
    "one long base64 word": lambda size: ("Ab3+/9zQ" * (size // 8 + 1))[:size],
    "repeated keyword, no value": lambda size: ("password" * (size // 8 + 1))[:size],
    "near-miss patterns": lambda size: (NEAR_MISSES * (size // len(NEAR_MISSES) + 1))[:size],
    "ordinary probe output": lambda size: (ORDINARY * (size // len(ORDINARY) + 1))[:size],
    "output full of secrets": lambda size: (SECRETS * (size // len(SECRETS) + 1))[:size],
}
SIZES = {"1 KB": KB, "100 KB": 100 * KB, "1 MB": 1000 * KB}


def best_time(text: str, repeat: int) -> float:
    """The fastest of ``repeat`` runs, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        redact(text)
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    redact("warm up: compile the patterns")
    header = f"{'workload':<28}" + "".join(f"{size:>11}" for size in SIZES) + "  1 MB/100 KB"
    print(header)
    print("-" * len(header))
    for name, build in WORKLOADS.items():
        times = {label: best_time(build(size), args.repeat) for label, size in SIZES.items()}
        figures = "".join(f"{t * 1000:>8.1f} ms" for t in times.values())
        print(f"{name:<28}{figures}  {times['1 MB'] / times['100 KB']:>11.1f}")


if __name__ == "__main__":
    main()
