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
        self._tasks: queue.SimpleQueue[_Task] = queue.SimpleQueue()
        self._waiting = threading.Semaphore(0)  # idle threads no task is promised to yet
        self._names = itertools.count(1)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Run ``fn(*args, **kwargs)`` on an idle thread, or a new one; its future."""
        future: Future[Any] = Future()
        task: _Task = (future, fn, args, kwargs)
        if self._waiting.acquire(blocking=False):
            self._tasks.put(task)  # one idle thread will take it
        else:
            name = f"probe-{next(self._names)}"
            threading.Thread(target=self._work, args=(task,), name=name, daemon=True).start()
        return future

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
            self._waiting.release()
            while True:
                try:
                    task = self._tasks.get(timeout=self.idle)
                    break
                except queue.Empty:
                    if self._waiting.acquire(blocking=False):
                        return  # no task was promised to an idle thread: this one ends
