"""Threads kept between probe rounds.

A round of 200 checks that starts 200 threads waits for each one to start, one after the
other (``Thread.start`` waits until the new thread runs): on a busy machine that alone adds
a large part of a probe's time to the round. These threads outlive the round that started
them and take the next round's checks; one idle for ``idle`` seconds ends.

There is no cap here: each round bounds the checks it hands over at once, so two rounds
running together never wait for each other's threads.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

IDLE = 60.0

_Task = tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class CheckThreads:
    """Runs callables on kept threads, starting one when none is idle."""

    def __init__(self, *, idle: float = IDLE) -> None:
        self.idle = idle
        self._tasks: queue.SimpleQueue[_Task | None] = queue.SimpleQueue()
        self._waiting = threading.Semaphore(0)  # idle threads no task is promised to yet
        self._names = itertools.count(1)
        self._started = 0
        self._closed = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Run ``fn(*args, **kwargs)`` on an idle thread, or a new one; its future."""
        future: Future[Any] = Future()
        task: _Task = (future, fn, args, kwargs)
        if not self._closed and self._waiting.acquire(blocking=False):
            self._tasks.put(task)  # one idle thread will take it
        else:
            self._started = next(self._names)
            name = f"probe-{self._started}"
            threading.Thread(target=self._work, args=(task,), name=name, daemon=True).start()
        return future

    @property
    def started(self) -> int:
        """How many threads it has started, all told."""
        return self._started

    def close(self) -> None:
        """Idle threads end now, busy ones when their task is done."""
        self._closed = True
        for _ in range(self._started):
            self._tasks.put(None)

    def _work(self, task: _Task | None) -> None:
        while True:
            if task is not None:
                future, fn, args, kwargs = task
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(fn(*args, **kwargs))
                    except BaseException as error:  # the caller reads it from the future
                        future.set_exception(error)
                del future, fn, args, kwargs, task  # hold nothing while idle
            if self._closed:
                return
            self._waiting.release()
            while True:
                try:
                    task = self._tasks.get(timeout=self.idle)
                except queue.Empty:
                    if self._waiting.acquire(blocking=False):
                        return  # no task was promised to an idle thread: this one ends
                    continue
                if task is None:  # closed
                    return
                break
