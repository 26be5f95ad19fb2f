"""``deploybot sandbox`` in-process on port 0, driven through its page's HTTP endpoints, and
as a subprocess that prints its URL and stops cleanly on SIGINT."""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import sandbox.app as sandbox_app
from bot.cli import app as cli_app
from bot.config.loader import load_config
from sandbox.app import Sandbox, SandboxOptions

Item = dict[str, Any]


class PageClient:
    """The page's JSON endpoints, and finders for what it shows."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def get(self, path: str) -> tuple[int, bytes, str]:
        try:
            with self._opener.open(self.url + path, timeout=30) as reply:
                return reply.status, reply.read(), reply.headers.get("Content-Type", "")
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.read(), error.headers.get("Content-Type", "")

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with self._opener.open(request, timeout=30) as reply:
                answer: dict[str, Any] = json.loads(reply.read())
        except urllib.error.HTTPError as error:
            with error:
                raise AssertionError(f"{path}: HTTP {error.code} {error.read()!r}") from None
        return answer

    def state(self, user: str, after: int = -1) -> dict[str, Any]:
        status, body, _ = self.get(f"/sandbox/state?user={user}&after={after}")
        assert status == 200, body
        state: dict[str, Any] = json.loads(body)
        return state

    def wait(
        self, user: str, check: Callable[[dict[str, Any]], Any], what: str, timeout: float = 30
    ) -> Any:
        """Poll the state (as the page does) until ``check`` returns something truthy."""
        deadline, revision = time.monotonic() + timeout, -1
        while True:
            state = self.state(user, revision if revision >= 0 else -1)
            found = check(state)
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"waited {timeout}s for {what}")
            revision = state["revision"]
            time.sleep(0.05)

    # -- finders -------------------------------------------------------------------------------

    @staticmethod
    def channel(state: dict[str, Any], name: str) -> dict[str, Any]:
        return next(c for c in state["channels"] if c["name"] == name)

    @staticmethod
    def items(state: dict[str, Any]) -> Iterator[Item]:
        for channel in state["channels"]:
            for item in channel["items"]:
                yield item
                yield from item.get("replies", [])

    @classmethod
    def texts(cls, state: dict[str, Any], kind: str = "ephemeral") -> list[str]:
        return [i["text"] for i in cls.items(state) if i["kind"] == kind]

    @classmethod
    def summary(cls, state: dict[str, Any], channel: str = "deploys") -> Item | None:
        return next(
            (i for i in cls.channel(state, channel)["items"] if i["text"].startswith("Deploy #")),
            None,
        )

    @staticmethod
    def elements(item: Item) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
        for block in item["blocks"]:
            for element in block.get("elements", []):
                if "action_id" in element:
                    yield block, element

    @classmethod
    def button(cls, item: Item, text: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        for block, element in cls.elements(item):
            if element["type"] == "button" and element["text"]["text"] == text:
                return block, element
        return None

    def click(self, user: str, item: Item, text: str) -> dict[str, Any]:
        found = self.button(item, text)
        assert found is not None, f"no button {text!r} in {item['text']!r}"
        block, element = found
        return self.post(
            "/sandbox/action",
            {
                "user": user,
                "channel": item["channel"],
                "ts": item["ts"],
                "action_id": element["action_id"],
                "block_id": block.get("block_id"),
            },
        )


DEPLOYER, QA, OPS, OUTSIDER, ONCALL = (
    "U0DEPLOYER",
    "U0QALEAD",
    "U0OPSLEAD",
    "U0OUTSIDER",
    "U0ONCALL",
)


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    with Sandbox(SandboxOptions(port=0, directory=tmp_path / "sandbox")).start() as running:
        yield running


def checklist_thread(page: PageClient, state: dict[str, Any]) -> list[dict[str, Any]]:
    summary = page.summary(state)
    assert summary is not None
    return [r for r in summary["replies"] if r["kind"] == "message"]


def test_page_and_static_files(sandbox: Sandbox) -> None:
    page = PageClient(sandbox.url)
    status, body, content_type = page.get("/")
    assert status == 200 and "text/html" in content_type
    assert b"/static/sandbox.js" in body
    for path in ("/static/sandbox.js", "/static/sandbox.css"):
        assert page.get(path)[0] == 200
    assert page.get("/nope")[0] == 404
    state = page.state(DEPLOYER)
    assert [c["name"] for c in state["channels"]] == ["deploys", "incidents", "Home"]
    assert {u["id"] for u in state["users"]} == {DEPLOYER, QA, OPS, OUTSIDER, ONCALL}
    assert [(d["namespace"], d["revision"]) for d in state["cluster"]] == [
        ("staging", "2"),
        ("prod", "2"),
    ]
    assert all(s["healthy"] for s in state["services"])


def test_the_whole_flow_through_the_page_endpoints(sandbox: Sandbox) -> None:
    page = PageClient(sandbox.url)
    deploys = page.channel(page.state(DEPLOYER), "deploys")["id"]
    page.post(
        "/sandbox/command", {"user": DEPLOYER, "channel": deploys, "text": "/deploy start staging"}
    )
    # The reply to the command comes once the summary is posted; its thread follows.
    state = page.wait(
        DEPLOYER,
        lambda s: any("Opened deploy #1" in t for t in page.texts(s)) and s,
        "the reply to /deploy start",
    )
    assert page.summary(state)
    state = page.wait(
        DEPLOYER, lambda s: len(checklist_thread(page, s)) >= 5 and s, "the checklist thread"
    )
    # Only the deployer sees that answer.
    assert not any("Opened deploy" in t for t in page.texts(page.state(QA)))

    # Tick the gated section's items in one checkbox change.
    thread = checklist_thread(page, state)
    readiness = next(m for m in thread if "Change readiness" in m["text"])
    block, element = next(page.elements(readiness))
    assert element["type"] == "checkboxes"
    values = [o["value"] for o in element["options"]]
    page.post(
        "/sandbox/action",
        {
            "user": DEPLOYER,
            "channel": readiness["channel"],
            "ts": readiness["ts"],
            "action_id": element["action_id"],
            "block_id": block["block_id"],
            "selected": values,
        },
    )
    page.wait(
        DEPLOYER,
        lambda s: (
            "4/4"
            in next(m for m in checklist_thread(page, s) if m["ts"] == readiness["ts"])["text"]
        ),
        "the ticks",
    )

    # A modal: skip an item; an empty reason is refused in the modal, then a reason is taken.
    environment = next(m for m in thread if "Environment" in m["text"])
    page.click(DEPLOYER, environment, "Skip an item…")
    view = page.wait(DEPLOYER, lambda s: s["views"] and s["views"][0], "the skip modal")
    assert view["title"]["text"] == "Skip an item"
    assert page.state(QA)["views"] == []  # shown to whoever clicked, only
    item = view["blocks"][1]["element"]["options"][0]["value"]
    answer = page.post(
        "/sandbox/submit",
        {"user": DEPLOYER, "view_id": view["id"], "values": {"skip_item": item}},
    )
    assert answer == {"errors": {"skip_reason": "Please complete this required field."}}
    answer = page.post(
        "/sandbox/submit",
        {
            "user": DEPLOYER,
            "view_id": view["id"],
            "values": {"skip_item": item, "skip_reason": "no incident tooling in the sandbox"},
        },
    )
    assert answer == {"closed": True}
    page.wait(
        DEPLOYER,
        lambda s: any("skipped by" in str(m["blocks"]) for m in checklist_thread(page, s)),
        "the skipped item",
    )

    # The outsider is refused; the approvers sign off.
    summary = page.summary(page.state(OUTSIDER))
    assert summary is not None
    page.click(OUTSIDER, summary, "Sign off as QA Lead")
    refusal = page.wait(
        OUTSIDER,
        lambda s: next((t for t in page.texts(s) if ":warning:" in t), None),
        "the refusal",
    )
    assert "qa-leads" in refusal
    assert not any(":warning:" in t for t in page.texts(page.state(DEPLOYER)))
    page.click(QA, summary, "Sign off as QA Lead")
    summary = page.wait(
        OPS,
        lambda s: page.button(page.summary(s), "Sign off as QA Lead") is None and page.summary(s),
        "QA sign-off",
    )
    page.click(OPS, summary, "Sign off as DevOps Lead")
    summary = page.wait(
        DEPLOYER,
        lambda s: page.button(page.summary(s), "Start deployment") and page.summary(s),
        "the deploy gate to open",
    )
    page.click(DEPLOYER, summary, "Start deployment")
    summary = page.wait(
        DEPLOYER,
        lambda s: page.button(page.summary(s), "Deployed: verify") and page.summary(s),
        "deploying",
    )
    page.click(DEPLOYER, summary, "Deployed: verify")
    summary = page.wait(
        DEPLOYER,
        lambda s: (
            "verifying" in str(page.summary(s)["blocks"])
            and page.button(page.summary(s), "Run probes")
            and "3/3" in str(checklist_thread(page, s)[-1]["text"])
            and page.summary(s)
        ),
        "the probes to pass",
    )

    # The service breaks: the next probe round fails, pages, opens the incident thread.
    page.post("/sandbox/service", {"key": "staging/checkout", "healthy": False})
    assert not next(s for s in page.state(DEPLOYER)["services"] if s["key"] == "staging/checkout")[
        "healthy"
    ]
    page.click(DEPLOYER, summary, "Run probes")
    # Once the session has failed, the incident message offers all three responses (its first
    # render may come while the failing round is still recording, with Roll back only).
    responses = ["Acknowledge", "Roll back", "Resolve"]
    incident = page.wait(
        ONCALL,
        lambda s: next(
            (
                m
                for m in page.channel(s, "incidents")["items"]
                if [e["text"]["text"] for _, e in page.elements(m)] == responses
            ),
            None,
        ),
        "the incident message offering every response",
    )
    assert "staging-checkout-health" in incident["text"]
    pages = page.wait(ONCALL, lambda s: s["pages"], "the page at PagerDuty")
    assert pages[0]["status"] == "triggered" and pages[0]["severity"] == "critical"

    # On-call rolls back: kubernetes undo, the rollout completes, the probes pass.
    page.click(ONCALL, incident, "Roll back")
    state = page.wait(
        ONCALL,
        lambda s: (
            "rolled back" in str(page.summary(s)["blocks"]).lower()
            and "↩️" in str(page.summary(s)["blocks"])
            and s
        ),
        "the session to end rolled back",
        timeout=60,
    )
    staging = next(d for d in state["cluster"] if d["namespace"] == "staging")
    assert staging["image"].endswith(":v1.4.1") and staging["revision"] == "3"
    assert staging["rolled_out"]
    assert next(s for s in state["services"] if s["key"] == "staging/checkout")["healthy"]
    page.wait(ONCALL, lambda s: s["pages"][0]["status"] == "resolved", "the page resolved")
    # The thread's last note is an effect of the final state change: it follows it closely.
    page.wait(
        ONCALL,
        lambda s: any(
            "Rolled back, and the probes pass" in r["text"]
            for r in page.channel(s, "incidents")["items"][0]["replies"]
        ),
        "the rollback's last note in the incident thread",
    )
    incident = page.channel(page.state(ONCALL), "incidents")["items"][0]
    assert "actions" not in str(incident["blocks"])  # its buttons are gone: rolled back


def test_the_home_tab_shows_the_published_view_and_its_buttons_work(sandbox: Sandbox) -> None:
    page = PageClient(sandbox.url)

    def home(user: str, containing: str, absent: str = "\0") -> Item:
        def shown(state: dict[str, Any]) -> Item | None:
            item: Item = page.channel(state, "Home")["items"][0]
            text = json.dumps(item["blocks"])
            return item if containing in text and absent not in text else None

        found: Item = page.wait(user, shown, f"{user}'s Home showing {containing!r}")
        return found

    assert page.post("/sandbox/home", {"user": QA}) == {"status": 200}
    home(QA, "Nothing waits for you.")
    deploys = page.channel(page.state(DEPLOYER), "deploys")["id"]
    page.post(
        "/sandbox/command", {"user": DEPLOYER, "channel": deploys, "text": "/deploy start staging"}
    )
    # Opening the deploy publishes the Homes of its signers again.
    item = home(QA, "Sign off as QA Lead")
    page.click(QA, item, "Sign off as QA Lead")
    # Signed: the Home no longer asks, and the summary shows who signed.
    home(QA, "Nothing waits for you.", absent="Sign off as QA Lead")
    page.wait(
        DEPLOYER,
        lambda s: "*QA Lead*: <@U0QALEAD>" in json.dumps(page.summary(s) or {}),
        "the summary showing the sign-off",
    )


def test_unknown_user_and_bad_requests(sandbox: Sandbox) -> None:
    page = PageClient(sandbox.url)
    with pytest.raises(AssertionError, match="HTTP 400"):
        page.post("/sandbox/command", {"user": "U0NOBODY", "channel": "C1", "text": "/deploy"})
    with pytest.raises(AssertionError, match="HTTP 400"):
        page.post("/sandbox/action", {"user": "U0DEPLOYER", "channel": "C1", "ts": "1.2"})
    # Another host name for loopback is another site's page (DNS rebinding): refused.
    request = urllib.request.Request(sandbox.url, headers={"Host": "rebind.example:80"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=10)
    assert refused.value.code == 403
    refused.value.close()


def test_command_line_prints_the_url_and_stops_on_sigint(tmp_path: Path) -> None:
    """It says where its data is, keeps it (by default in the XDG data folder) and prints
    the command that reads a session's report from it."""
    data = tmp_path / "xdg"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "XDG_DATA_HOME": str(data)}
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "sandbox", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "open http://127.0.0.1:" in line, line + (
            process.stderr.read() if process.stderr else ""
        )
        url = line.split("open ", 1)[1].strip()
        # The lines printed with the URL (read now: communicate() skips readline's buffer).
        head = [process.stdout.readline() for _ in range(2)]
        assert PageClient(url).get("/")[0] == 200
        process.send_signal(signal.SIGINT)  # at once: a Ctrl-C may come while it still prints
        time.sleep(0.2)
        process.send_signal(signal.SIGINT)  # an impatient second Ctrl-C: still a clean stop
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "stopped." in out
    assert "Traceback" not in err
    directory = data / "deploybot" / "sandbox"
    database = f"sqlite:///{directory / 'sandbox.db'}"
    assert head[0] == f"Its data: {database} (kept when it stops), in {directory}.\n"
    assert head[1] == "Press Ctrl-C to stop.\n"
    report = f"deploybot report N -c {directory / 'deploybot.yaml'} --database-url {database}"
    assert f"A session's report: {report}" in out
    # The data outlived the sandbox, and the printed flags open it.
    listed = CliRunner().invoke(cli_app, ["sessions", "--all", *report.split()[3:]])
    assert listed.exit_code == 0, listed.output
    assert "No deploys yet." in listed.stderr


def test_the_demo_config_ships_in_the_wheel(tmp_path: Path) -> None:
    """A non-editable install has no examples/: the demo is package data."""
    import shutil
    import zipfile

    from sandbox.demo import DEMO_FILES

    repo = Path(__file__).resolve().parent.parent
    source = tmp_path / "source"  # a copy: the build writes build/ and egg-info beside it
    for name in ("bot", "commands", "migrations", "sandbox"):
        shutil.copytree(repo / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(repo / name, source / name)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-q", "-w", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("deploybot-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in DEMO_FILES:
        assert f"sandbox/demo_config/{name}" in names


def test_ctrl_c_while_the_url_is_printed_still_stops_everything(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The window between start() and the wait: a Ctrl-C there used to skip close()."""
    closed: list[bool] = []

    class Started:
        kept = False

        @property
        def url(self) -> str:
            raise KeyboardInterrupt  # Ctrl-C as the line with the URL is being printed

        def close(self) -> None:
            closed.append(True)

    class Unstarted:
        def __init__(self, options: SandboxOptions) -> None:
            pass

        def start(self) -> Started:
            return Started()

    monkeypatch.setattr(sandbox_app, "Sandbox", Unstarted)
    # In-process: keep this process's signal handlers, collector and log levels as they are.
    monkeypatch.setattr(signal, "signal", lambda *args: None)
    monkeypatch.setattr(gc, "freeze", lambda: None)
    scheduler_log = logging.getLogger("bot.workers.scheduler")
    level = scheduler_log.level
    try:
        result = CliRunner().invoke(cli_app, ["sandbox", "--port", "0"])
    finally:
        scheduler_log.setLevel(level)  # setLevel, not setattr: it clears the loggers' caches

    assert closed == [True]
    assert result.exit_code == 0, result.output
    assert "stopped." in result.output


def test_a_teams_config_runs_with_its_people_and_channels(tmp_path: Path) -> None:
    """``--config``: the roles' people plus an outsider, the config's channels, real probes."""
    config = Path(__file__).resolve().parent.parent / "examples" / "minimal.yaml"
    options = SandboxOptions(config=config, port=0, directory=tmp_path / "sandbox")
    with Sandbox(options).start() as sandbox:
        assert sandbox.cluster is None and sandbox.services is None  # no demo parts
        # Rollbacks would act on the team's real systems: the sandbox only says what it would do.
        assert sandbox.bot is not None and sandbox.bot.rollbacks is not None
        target = load_config(config).environment("staging").rollback[0]
        said = sandbox.bot.rollbacks.run_step(target)
        assert said.startswith("sandbox: would run command: echo rolled back staging")
        page = PageClient(sandbox.url)
        state = page.state("U0DEPLOYER")
        assert [u["id"] for u in state["users"]] == [
            "U0DEPLOYER",
            "U0APPROVER1",
            "U0APPROVER2",
            "U0ONCALL",
            "U0OUTSIDER",
        ]
        assert [c["name"] for c in state["channels"]] == [
            "deploys-staging",
            "incidents-staging",
            "Home",
        ]
        assert "release-managers" in state["names"].values()  # a user group, no members
        channel = state["channels"][0]["id"]
        page.post(
            "/sandbox/command",
            {"user": "U0DEPLOYER", "channel": channel, "text": "/deploy start staging"},
        )
        page.wait(
            "U0DEPLOYER",
            lambda s: page.summary(s, "deploys-staging"),
            "the summary in the config's channel",
        )
        answer = page.post(
            "/sandbox/command", {"user": "U0DEPLOYER", "channel": channel, "text": "hello"}
        )
        assert answer == {"status": None}
        notice = page.wait(
            "U0DEPLOYER",
            lambda s: next((t for t in page.texts(s) if "sends `/deploy" in t), None),
            "the sandbox's notice",
        )
        assert "deploybot" in notice
