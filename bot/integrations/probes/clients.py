"""What the checks of a process share: one HTTP client per TLS setting, a bound on how
many requests go to one target at a time, and the threads the checks run on.

``httpx.Client`` is thread-safe and pools connections: one client (and so one TLS context,
whose CA bundle costs about 100 ms of CPU to load) serves every HTTP and Prometheus check,
instead of one client per check. Its cookie jar refuses every cookie, so that a probe never
sends what an earlier probe's answer set: each check stays what it was alone.

A target is a ``host:port`` (for DNS, the nameserver asked). At most ``per_host`` checks talk
to one target at once; the others wait for a slot *before* their timeout starts, so that a
round with many checks of one target takes longer but never fails a check for waiting. A
metric probe holds the slot only while a query is in flight, never while it sleeps between
its measurements.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

from bot.integrations.probes.threads import CheckThreads

if TYPE_CHECKING:
    import httpx

T = TypeVar("T")
PER_HOST = 16
KEEP_ALIVE = 32  # idle connections kept between rounds, per client


def target_of_url(url: str) -> str:
    """``host:port`` of a URL (the scheme's default port when it names none)."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return url
    return f"{(parts.hostname or '').lower()}:{port}"


class ProbeClients:
    """The HTTP clients and per-target slots of the checks that share them.

    Made once per process by whoever runs rounds (the bot, ``probes run``) and passed in
    through :class:`~bot.integrations.probes.base.ProbeContext`; the runner makes one for a
    round that was given none, and closes it after.
    """

    def __init__(self, *, per_host: int = PER_HOST) -> None:
        self.per_host = max(1, per_host)
        self._start()

    def _start(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._building = threading.Lock()
        self._http: dict[bool, httpx.Client] = {}
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        self._made: dict[Hashable, object] = {}
        self._threads = CheckThreads()  # kept between rounds: starting 200 threads is slow

    def _forked(self) -> None:
        """A forked child starts afresh: its parent's pooled sockets are not its own, and
        the parent's threads (and lock holders) did not come along."""
        if self._pid != os.getpid():
            self._start()

    @property
    def threads(self) -> CheckThreads:
        """The threads the checks run on."""
        self._forked()
        return self._threads

    def http(self, *, verify: bool) -> httpx.Client:
        """The shared client; ``verify`` False skips the certificate check. Timeouts,
        redirects, headers and auth are given per request."""
        self._forked()
        with self._lock:
            client = self._http.get(verify)
            if client is None:
                import httpx

                # No limit on connections: the runner bounds the checks in flight, and a
                # check waiting for a pooled connection would spend its timeout waiting.
                limits = httpx.Limits(max_connections=None, max_keepalive_connections=KEEP_ALIVE)
                jar = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
                client = httpx.Client(
                    verify=httpx.create_ssl_context(verify=verify), limits=limits, cookies=jar
                )
                self._http[verify] = client
            return client

    def made(self, key: Hashable, build: Callable[[], T]) -> T:
        """What ``build`` returns, built once per ``key`` (a TLS context: loading the CA
        bundle costs about 100 ms of CPU); an exception is raised each time, not kept."""
        with self._lock:
            if key in self._made:
                return self._made[key]  # type: ignore[return-value]
        with self._building:  # 32 checks starting at once build it once, not 32 times
            with self._lock:
                if key in self._made:
                    return self._made[key]  # type: ignore[return-value]
            built = build()
            with self._lock:
                self._made[key] = built
            return built

    @contextmanager
    def slot(self, target: str) -> Iterator[None]:
        """Hold one of ``target``'s ``per_host`` slots while the block runs."""
        with self._lock:
            slots = self._slots.get(target)
            if slots is None:
                slots = self._slots[target] = threading.BoundedSemaphore(self.per_host)
        with slots:
            yield

    def close(self) -> None:
        """Close the clients' pooled connections and end the idle threads (a later check
        opens new ones, and starts a thread)."""
        self._forked()
        with self._lock:
            clients, self._http = list(self._http.values()), {}
        for client in clients:
            client.close()
        self._threads.close()


def target_of(spec: object) -> str | None:
    """The target a probe talks to, as :meth:`ProbeClients.slot` names it; None for kinds
    that reach their service through an SDK (AWS, Kubernetes, Datadog) or run a command."""
    kind = getattr(spec, "kind", "")
    if kind in ("http", "prometheus"):
        return target_of_url(str(getattr(spec, "url", "")))
    if kind in ("tcp", "tls"):
        return f"{str(getattr(spec, 'host', '')).lower()}:{getattr(spec, 'port', '')}"
    if kind == "dns":
        nameserver = getattr(spec, "nameserver", None)
        return f"dns:{nameserver}:{getattr(spec, 'port', 53)}" if nameserver else "dns:system"
    return None
