"""Log lines: one JSON object per line, redacted, each carrying the deploy session it is about.

Code working on one deploy session (a listener's work, a probe round, a rollback, a
scheduled job) runs inside :func:`session_context` (or a function decorated with
:func:`session_scoped`); every line logged meanwhile, in that thread or in work it hands to a
pool with a copied context, carries ``session_id``. A record's own ``extra={"session_id": ...}``
wins over the context.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ParamSpec, TypeVar

from bot.ops.redact import MASK, redact

current_session: ContextVar[int | None] = ContextVar("deploybot_session_id", default=None)
"""The deploy session the current code is working on, if any."""

# The attributes every LogRecord has; anything else on a record came from ``extra``.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}

P = ParamSpec("P")
R = TypeVar("R")


class LogFormat(StrEnum):
    """How ``deploybot serve`` writes its log lines."""

    JSON = "json"
    TEXT = "text"


@contextmanager
def session_context(session_id: int | None) -> Iterator[None]:
    """Within the block, log lines carry ``session_id`` (None: no session)."""
    token = current_session.set(session_id)
    try:
        yield
    finally:
        current_session.reset(token)


def session_scoped(func: Callable[P, R]) -> Callable[P, R]:
    """Run ``func`` inside :func:`session_context` of its ``session_id`` argument.

    Raises:
        TypeError: ``func`` has no parameter called ``session_id``.
    """
    signature = inspect.signature(func)
    if "session_id" not in signature.parameters:
        raise TypeError(f"{func.__qualname__} has no session_id parameter")

    @functools.wraps(func)
    def scoped(*args: P.args, **kwargs: P.kwargs) -> R:
        session_id = signature.bind_partial(*args, **kwargs).arguments.get("session_id")
        with session_context(session_id if isinstance(session_id, int) else None):
            return func(*args, **kwargs)

    return scoped


def session_of(record: logging.LogRecord) -> int | None:
    """The session a record is about: its ``extra`` ``session_id``, else the context's."""
    explicit = getattr(record, "session_id", None)
    return explicit if explicit is not None else current_session.get()


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time``, ``level``, ``logger``, ``message``, ``session_id``,
    then the record's ``extra`` fields, and ``exception`` when there is one.

    The message, string fields and the traceback pass through :func:`bot.ops.redact.redact`; an
    ``extra`` field whose name says it holds a secret (``token``, ``password``...) is masked
    whole. Values JSON cannot hold are written as their ``str``.
    """

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            "session_id": session_of(record),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and key not in line:
                line[key] = _redacted(key, value)
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info))
        if record.stack_info:
            line["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``time level logger [session N] message``, redacted: for people reading a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        session_id = session_of(record)
        where = f" [session {session_id}]" if session_id is not None else ""
        return redact(f"{record.asctime} {record.levelname} {record.name}{where} {record.message}")

    def formatException(self, ei: Any) -> str:
        return redact(super().formatException(ei))


def configure_logging(fmt: LogFormat | str = LogFormat.JSON, *, level: int = logging.INFO) -> None:
    """Send every logger's records to stderr in ``fmt``.

    Calling it again replaces the handler it installed before; other handlers on the root
    logger (a test runner's) are left alone.

    Raises:
        ValueError: ``fmt`` is neither ``json`` nor ``text``.
    """
    formatter: logging.Formatter = (
        JsonFormatter() if LogFormat(fmt) is LogFormat.JSON else TextFormatter()
    )
    handler = _StderrHandler()
    handler.setFormatter(formatter)
    handler.addFilter(_RoutineAsDebug(level))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


@contextmanager
def held_back(level: int = logging.INFO) -> Iterator[list[logging.LogRecord]]:
    """Within the block, records of ``level`` and above are kept in the list it gives
    instead of being written. Start-up holds back what the libraries log while it checks
    the settings: a refusal to start stays one line for a person, and a start
    :func:`replay` s them in the format configured meanwhile.
    """
    held: list[logging.LogRecord] = []
    handler = _Holding(held)
    root = logging.getLogger()
    before = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield held
    finally:
        root.removeHandler(handler)
        root.setLevel(before)


def replay(records: list[logging.LogRecord]) -> None:
    """Write records held back by :func:`held_back` through the handler
    :func:`configure_logging` installed."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, _StderrHandler):
            for record in records:
                handler.handle(record)


class _Holding(logging.Handler):
    def __init__(self, held: list[logging.LogRecord]) -> None:
        super().__init__()
        self.held = held

    def emit(self, record: logging.LogRecord) -> None:
        self.held.append(record)


# Libraries' INFO lines that say nothing new: APScheduler's job runs and job adds (the
# scheduler's sync runs every few seconds, on every replica that leads), Alembic's
# migration context (every readiness check). Ours say when leadership changes.
_ROUTINE_LOGGERS = ("apscheduler", "alembic.runtime.migration")


class _RoutineAsDebug(logging.Filter):
    """Routine libraries' INFO records become DEBUG: shown only when logging at DEBUG."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO and record.name.startswith(_ROUTINE_LOGGERS):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return record.levelno >= self.level


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to ``sys.stderr`` as it is when a record comes (test runners swap it)."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> Any:
        return sys.stderr


def _redacted(key: str, value: Any) -> Any:
    """An ``extra`` value fit for a log line: secrets masked, nested values walked."""
    if isinstance(value, str):
        # Through redact as ``key=value``, so the same rules judge the field's name too.
        masked = redact(f"{key}={value}")
        return masked.removeprefix(f"{key}=") if masked.startswith(f"{key}=") else MASK
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {str(k): _redacted(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redacted(key, v) for v in value]
    return redact(str(value))
