"""Parsed checklists and policies, shared by every session that carries the same one.

A session's checklist and policy never change after it opens, and most sessions of an
environment carry the same ones. Rows store a digest of each beside the JSON; loading a
session looks the digest up here first, so the JSON is neither read nor validated again.
The cache is bounded (least recently used entries go first) and safe across threads.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from bot.domain.checklist import Checklist
from bot.domain.policy import SessionPolicy

T = TypeVar("T")
CACHED_PER_KIND = 128  # distinct checklists (policies) kept; an installation has a few dozen


def digest_of(document: dict[str, Any]) -> str:
    """A SHA-256 of the document's canonical JSON (sorted keys, no spaces), in hex.

    Migration 0006 computes the same for the rows it fills; keep the two in step.
    """
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


class ParsedByDigest(Generic[T]):
    """A least-recently-used map of digest to parsed, immutable value."""

    def __init__(self, maxsize: int = CACHED_PER_KIND) -> None:
        self.maxsize = maxsize
        self._values: OrderedDict[str, T] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, digest: str | None, parse: Callable[[], T]) -> T:
        """The value for ``digest``; ``parse()`` makes it (and it is kept) when not known.

        A row without a digest (none should be left after migration 0006) is parsed each time.
        """
        if digest is None:
            return parse()
        with self._lock:
            value = self._values.get(digest)
            if value is not None:
                self._values.move_to_end(digest)
                self.hits += 1
                return value
            self.misses += 1
        value = parse()  # outside the lock: parsing a big checklist takes milliseconds
        self.put(digest, value)
        return value

    def put(self, digest: str, value: T) -> None:
        with self._lock:
            self._values[digest] = value
            self._values.move_to_end(digest)
            while len(self._values) > self.maxsize:
                self._values.popitem(last=False)

    def __len__(self) -> int:
        return len(self._values)

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
            self.hits = self.misses = 0


CHECKLISTS: ParsedByDigest[Checklist] = ParsedByDigest()
POLICIES: ParsedByDigest[SessionPolicy] = ParsedByDigest()
