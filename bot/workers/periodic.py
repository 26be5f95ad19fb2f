"""A task run at start-up and then every few seconds, in a daemon thread of its own."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Periodic:
    """Calls ``task`` at once, then every ``interval`` seconds, until stopped; a failing call
    is logged and tried again at the next interval (the database may be briefly away).

    Args:
        task: what to run; its return value is ignored.
        interval: seconds between the end of one call and the start of the next.
        name: the thread's name, and the logs'.
    """

    def __init__(self, task: Callable[[], object], *, interval: float, name: str) -> None:
        if interval <= 0:
            raise ValueError("the interval must be positive")
        self.task = task
        self.interval = interval
        self.name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while True:
            try:
                self.task()
            except Exception:
                log.exception("%s failed; trying again in %g s", self.name, self.interval)
            if self._stop.wait(self.interval):
                return
