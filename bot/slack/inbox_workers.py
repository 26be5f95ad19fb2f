"""The workers behind the web tier: recorded Slack requests, carried out on a pool of threads.

The web tier records a request and acknowledges it (:mod:`bot.slack.inbox`); here its
listener runs, dispatched through a Bolt app built to run listeners to the end in the
calling thread (``process_before_response``), with the :data:`~bot.slack.inbox.REDELIVERY`
context key so that the inbox does not record it again. Two ways in:

- :meth:`InboxWorkers.submit`: the web tier of this process hands over a request it has
  just recorded and claimed; a pool thread takes it from the queue at once.
- the poller: every ``poll`` seconds (at once when a thread frees up after a full batch) it
  claims the requests nobody holds, as many as it has idle threads: those a web-only
  process recorded for the workers, and those a stopped process left unfinished.
  :meth:`bot.storage.inbox.Inbox.claim_due` keeps two processes from claiming one request.

A listener marks its request done in the same transaction as the change it asks for, so
a request claimed again after a crash changes nothing twice.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from slack_bolt import App
from slack_bolt.request import BoltRequest

from bot.slack.inbox import REDELIVERY, SlackInbox

log = logging.getLogger(__name__)

_STOP: tuple[str, dict[str, Any]] = ("", {})  # one per thread: the end


class InboxWorkers:
    """A pool of ``threads`` threads running recorded requests' listeners through ``app``.

    Args:
        app: the worker app (:func:`bot.slack.app.build_app` with ``worker=True``).
        poll: seconds between looks at the table for requests nobody holds.
        threads: how many listeners run at once in this process.
    """

    def __init__(self, inbox: SlackInbox, app: App, *, poll: float = 0.2, threads: int = 8) -> None:
        self.inbox = inbox
        self.app = app
        self.poll = poll
        self.threads = max(1, threads)
        self._queue: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self._in_hand: set[str] = set()  # requests queued or running here
        self._busy_lock = threading.Lock()
        self._more = False  # the last claim was a full batch: look again when a thread frees
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._pool: list[threading.Thread] = []
        self._poller: threading.Thread | None = None

    @property
    def queued(self) -> int:
        """How many requests wait here for a thread."""
        return self._queue.qsize()

    def submit(self, key: str, body: dict[str, Any]) -> None:
        """Run a request this process recorded and claimed (the web tier's hand-off).

        A request already in hand is not queued again: one that waited here past its claim
        may come back from :meth:`take_due`.
        """
        with self._busy_lock:
            if key in self._in_hand:
                return
            self._in_hand.add(key)
        self._queue.put((key, body))

    def take_due(self) -> int:
        """Claim as many requests nobody holds as there are idle threads; queue them."""
        with self._busy_lock:
            idle = self.threads - len(self._in_hand)
        if idle <= 0:
            self._more = True
            return 0
        due = self.inbox.claim_due(idle)
        self._more = len(due) == idle
        for key, body in due:
            self.submit(key, body)
        return len(due)

    def run(self, key: str, body: dict[str, Any]) -> None:
        """Run one recorded request's listener to its end, in this thread."""
        # Socket Mode requests skip Bolt's signature check: this one was verified when it
        # arrived, and comes from our own database.
        request = BoltRequest(body=body, mode="socket_mode", context={REDELIVERY: key})
        try:
            self.app.dispatch(request)
        except Exception:  # the listener's own errors went to the error handler already
            log.exception("a recorded Slack request failed", extra={"request_key": key})

    def start(self) -> None:
        self._stop.clear()
        self._pool = [
            threading.Thread(target=self._work, name=f"inbox-{n}", daemon=True)
            for n in range(self.threads)
        ]
        self._poller = threading.Thread(target=self._look, name="inbox-poll", daemon=True)
        for thread in [*self._pool, self._poller]:
            thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking requests; wait up to ``timeout`` seconds for those running to finish.

        Requests still queued stay claimed by this process: :meth:`SlackInbox.release`
        hands them back (the drain calls it), or their claim runs out.
        """
        self._stop.set()
        self._wake.set()
        deadline = time.monotonic() + timeout
        for _ in self._pool:
            self._queue.put(_STOP)
        for thread in [*self._pool, *([self._poller] if self._poller else [])]:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._pool, self._poller = [], None

    def _work(self) -> None:
        while True:
            key, body = self._queue.get()
            if self._stop.is_set():
                return
            try:
                self.run(key, body)
            finally:
                with self._busy_lock:
                    self._in_hand.discard(key)
                if self._more:
                    self._wake.set()

    def _look(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.take_due()
            except Exception:  # the database may be briefly away: try again next poll
                log.exception("looking for recorded Slack requests failed")
