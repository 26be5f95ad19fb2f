"""Structured logs: one JSON object per line, redacted, with the session being worked on."""

from __future__ import annotations

import inspect
import io
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.config.probe_specs import HttpProbe
from bot.integrations.probes import ProbeContext, ProbeOutcome, run_probes
from bot.ops import logs
from bot.ops.logs import JsonFormatter, TextFormatter, configure_logging, session_context
from tests.test_redact import FORMS

TOKEN = "xoxb-123456789012-abcdefABCDEF"


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger writing JSON lines into a buffer."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)
    logger.propagate = True


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_line_in_a_session_context_is_json_with_the_session_id(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    with session_context(42):
        logger.info("probe %s passed", "api", extra={"why": "verification", "failed": 0})
    logger.info("no session here")

    first, second = lines(stream)
    assert first["message"] == "probe api passed"
    assert first["session_id"] == 42
    assert first["level"] == "INFO"
    assert first["logger"] == "tests.logs"
    assert first["time"].endswith("+00:00") and "T" in first["time"]
    assert first["why"] == "verification" and first["failed"] == 0
    assert second["session_id"] is None


def test_an_explicit_session_id_wins_over_the_context(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    with session_context(1):
        logger.warning("rollback crashed", extra={"session_id": 7})
    assert lines(stream)[0]["session_id"] == 7


def test_secrets_are_redacted_in_messages_fields_and_tracebacks(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    try:
        raise RuntimeError(f"Slack refused {TOKEN}")
    except RuntimeError:
        logger.exception(
            "posting with %s failed; url=postgresql://bot:hunter2@db/deploybot",
            TOKEN,
            extra={"api_token": "s3cr3t-value", "detail": f"Authorization: Bearer {TOKEN}"},
        )
    line = lines(stream)[0]
    text = json.dumps(line)
    assert TOKEN not in text and "hunter2" not in text and "s3cr3t-value" not in text
    assert "[REDACTED]" in line["message"]
    assert line["message"].startswith("posting with [REDACTED] failed")
    assert line["api_token"] == "[REDACTED]"
    assert "RuntimeError: Slack refused [REDACTED]" in line["exception"]


def test_values_json_cannot_hold_are_written_as_text(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    logger.info("odd", extra={"config": Path("/etc/deploybot.yaml"), "nested": {"n": [1, 2]}})
    line = lines(stream)[0]
    assert line["config"] == "/etc/deploybot.yaml"
    assert line["nested"] == {"n": [1, 2]}


def test_probe_checks_on_the_pool_log_with_the_callers_session(
    captured: tuple[logging.Logger, io.StringIO], monkeypatch: pytest.MonkeyPatch
) -> None:
    logger, stream = captured
    threads: list[str] = []

    def check(spec: object, ctx: ProbeContext) -> ProbeOutcome:
        threads.append(threading.current_thread().name)
        logger.info("checking")
        return ProbeOutcome(True, "ok")

    monkeypatch.setattr("bot.integrations.probes.base.check_for", lambda kind: check)
    spec = HttpProbe(url="http://127.0.0.1:9/health")
    with session_context(5):
        results = run_probes({"a": spec, "b": spec}, concurrency=2)
    assert [r.ok for r in results] == [True, True]
    assert threading.current_thread().name not in threads
    assert [line["session_id"] for line in lines(stream)] == [5, 5]


def test_session_scoped_reads_the_session_id_argument(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured

    class Worker:
        @logs.session_scoped
        def work(self, session_id: int, *, why: str = "") -> int:
            logger.info("working %s", why)
            return session_id * 2

    assert Worker().work(3, why="a") == 6
    assert Worker().work(session_id=4) == 8
    assert [line["session_id"] for line in lines(stream)] == [3, 4]
    assert logs.current_session.get() is None

    with pytest.raises(TypeError, match="no session_id parameter"):
        logs.session_scoped(lambda other: other)


@pytest.mark.parametrize(
    "target",
    [
        "bot.app.sessions:DeployService.handle",
        "bot.app.probe_rounds:SessionProbes.run",
        "bot.app.rollback:Rollbacks.execute",
        "bot.workers.jobs:Jobs.monitor",
        "bot.workers.jobs:Jobs.remind",
        "bot.workers.jobs:Jobs.expire",
    ],
)
def test_work_on_one_session_runs_in_its_context(target: str) -> None:
    import importlib

    module_name, _, path = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in path.split("."):
        obj = getattr(obj, part)
    assert inspect.unwrap(obj) is not obj, f"{target} is not @session_scoped"
    assert obj.__qualname__ == path  # APScheduler finds jobs by this name


def test_text_format_shows_the_session_and_redacts() -> None:
    record = logging.LogRecord("bot.x", logging.INFO, __file__, 1, "token=%s", (TOKEN,), None)
    with session_context(9):
        text = TextFormatter().format(record)
    assert text.endswith(" INFO bot.x [session 9] token=[REDACTED]")


def test_configure_logging_replaces_only_its_own_handler() -> None:
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    try:
        configure_logging("text")
        configure_logging("json")
        ours = [h for h in root.handlers if h not in before]
        assert len(ours) == 1 and isinstance(ours[0].formatter, JsonFormatter)
        assert all(h in root.handlers for h in before)
        with pytest.raises(ValueError):
            configure_logging("xml")
    finally:
        for handler in root.handlers[:]:
            if handler not in before:
                root.removeHandler(handler)
        root.setLevel(level)


@pytest.mark.parametrize(("text", "secrets"), FORMS)
def test_every_known_form_is_masked_in_log_lines_of_both_formats(
    captured: tuple[logging.Logger, io.StringIO], text: str, secrets: list[str]
) -> None:
    logger, stream = captured
    logger.warning("probe said: %s", text, extra={"output": text, "lines": [text]})
    record = logging.LogRecord("bot.x", logging.INFO, __file__, 1, "%s", (text,), None)
    written = stream.getvalue() + TextFormatter().format(record)
    for secret in secrets:
        assert secret not in written
        assert json.dumps(secret)[1:-1] not in written  # nor as JSON escapes it


def test_a_huge_unhandled_action_id_is_logged_whole_and_redacted(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    # A 10 KB action_id once held a log line for 15 s (quadratic redaction); see
    # benchmarks/redact.py for the time it takes now.
    action_id = "a" * 10_000 + " password=hunter2"
    logger, stream = captured
    logger.warning("unhandled action %s", action_id)
    assert lines(stream)[0]["message"] == f"unhandled action {'a' * 10_000} password=[REDACTED]"


@pytest.mark.parametrize("level", [logging.INFO, logging.DEBUG])
def test_routine_library_lines_are_debug_and_held_back_lines_are_replayed(
    level: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """APScheduler's job runs (every sync) are DEBUG; what start-up held back comes out
    formatted once logging is configured."""
    root = logging.getLogger()
    before, root_level = list(root.handlers), root.level
    try:
        with logs.held_back() as early:
            logging.getLogger("slack_bolt.App").warning("said while starting")
        assert capsys.readouterr().err == ""
        configure_logging("json", level=level)
        logs.replay(early)
        logging.getLogger("apscheduler.executors.default").info('Running job "sync"')
        logging.getLogger("apscheduler.scheduler").warning("a real problem")
        logging.getLogger("bot.workers.scheduler").info("became the scheduler leader")
        written = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    finally:
        for handler in root.handlers[:]:
            if handler not in before:
                root.removeHandler(handler)
        root.setLevel(root_level)
    said = [(r["level"], r["message"]) for r in written]
    routine = [("DEBUG", 'Running job "sync"')] if level == logging.DEBUG else []
    assert said == [
        ("WARNING", "said while starting"),
        *routine,
        ("WARNING", "a real problem"),
        ("INFO", "became the scheduler leader"),
    ]
