"""Probe targets for the benchmarks, in a process of their own: HTTP servers on loopback that
answer every request after a fixed delay (``/health`` -> ``{"status": "ok"}``).

One asyncio loop serves every port, so thousands of concurrent connections cost the target
almost no CPU (which would otherwise be counted against the bot on a 2-core machine).

Run: ``python benchmarks/slow_targets.py PORTS DELAY_MS``; it prints the ports it listens
on, one line, space-separated, then serves until its standard input closes.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

BODY = b'{"status": "ok"}'


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            await asyncio.sleep(delay)
            close = b"connection: close" in head.lower()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(BODY)}\r\n".encode()
                + (b"Connection: close\r\n" if close else b"")
                + b"\r\n"
                + BODY
            )
            await writer.drain()
            if close:
                break
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def _serve(count: int, delay: float) -> None:
    servers = [
        await asyncio.start_server(lambda r, w: _answer(r, w, delay), "127.0.0.1", 0, backlog=4096)
        for _ in range(count)
    ]
    ports = [s.sockets[0].getsockname()[1] for s in servers]
    print(" ".join(str(p) for p in ports), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes our stdin


@contextmanager
def slow_targets(count: int, delay: float) -> Iterator[tuple[int, list[int]]]:
    """Start the targets in their own process; yields its pid and the ports."""
    import resource

    def more_files() -> None:
        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    process = subprocess.Popen(
        [sys.executable, __file__, str(count), str(int(delay * 1000))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=more_files,
    )
    try:
        assert process.stdout is not None
        ports = [int(p) for p in process.stdout.readline().split()]
        yield process.pid, ports
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


if __name__ == "__main__":
    asyncio.run(_serve(int(sys.argv[1]), int(sys.argv[2]) / 1000))
