"""The bot runs the deploy, end to end through the real Bolt app, on SQLite and PostgreSQL.

Signed Slack requests open a deploy, sign it off and click *Start deployment*; the bot then
sets the image on the Kubernetes API stand-in, waits for the rollout as ``kubectl rollout
status`` judges it, runs a command whose output reaches the thread redacted, and goes on to
verification by itself. A failing step pages once, and ``on_failure: rollback`` runs the
configured rollback exactly once.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.domain import ItemStatus, SessionState
from bot.domain.step_progress import StepState
from bot.rendering.ids import ActionId
from bot.storage.db import upgrade
from tests.e2e import RunningBot, running_bot
from tests.support.kube import FakeKube
from tests.support.pagerduty import FakePagerDuty
from tests.test_rollback_e2e import DEDUP_KEY, ROUTING_KEY, pd_client, wait

NS = "prod"
TOKEN = "tok-5f3a9c1e77d24b"  # a deploy token the command prints (it must not reach Slack)
CHANGE_CAUSE = "kubernetes.io/change-cause"


@pytest.fixture
def pagerduty(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePagerDuty]:
    monkeypatch.setenv("PD_KEY_PROD", ROUTING_KEY)
    monkeypatch.setenv("DEPLOY_TOKEN", TOKEN)
    with FakePagerDuty() as fake:
        yield fake


class Controllers:
    """The cluster's controllers: reconcile the Deployment every 0.1 s while the test runs."""

    def __init__(self, kube: FakeKube) -> None:
        self.kube = kube
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="controllers", daemon=True)

    def _run(self) -> None:
        while not self.stopping.wait(0.1):
            self.kube.reconcile(NS, "api", ready=True)

    def __enter__(self) -> Controllers:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def write_config(tmp_path: Path, steps: list[dict[str, Any]], **environment: Any) -> Path:
    checklist = {"sections": [{"title": "Verify", "items": [{"text": "api", "probe": "api"}]}]}
    (tmp_path / "checklist.yaml").write_text(yaml.safe_dump(checklist))
    config = {
        "roles": {
            "deployers": ["U0DEPLOYER"],
            "approvers": ["U0APPROVER"],
            "oncall": ["U0ONCALL"],
        },
        "probes": {
            "api": {
                "kind": "kubernetes",
                "check": "rollout",
                "deployment": "api",
                "namespace": NS,
                "timeout": "5s",
            }
        },
        "environments": {
            "prod": {
                "channel": "#deploys",
                "incident_channel": "#incidents",
                "checklist": "checklist.yaml",
                "starters": ["deployers"],
                "oncall": ["oncall"],
                "signoffs": [{"role": "QA Lead", "by": ["approvers"]}],
                "pagerduty": {"routing_key_env": "PD_KEY_PROD"},
                "services": {"api": {"deploy": {"steps": steps}}},
                **environment,
            }
        },
    }
    path = tmp_path / "deploybot.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


KUBE_STEP = {
    "kind": "kubernetes",
    "deployments": ["api"],
    "containers": {"api": "registry.example/api:{version}"},
    "namespace": NS,
    "timeout": "1m",
}


def start(bot: RunningBot) -> None:
    """Open deploy #1 of api v2, sign it off, and click Start deployment."""
    bot.command("start prod api v2", user="U0DEPLOYER", reply="start")
    assert "Opened deploy #1" in bot.reply("start")["text"]
    buttons = [e["text"]["text"] for e in actions(bot)]
    assert "Deployed: verify" not in buttons  # the bot deploys here
    bot.click("U0APPROVER", ActionId.SIGN_OFF, "1|qa-lead", reply="sign")
    bot.wait_signed(1, "qa-lead")
    bot.click("U0DEPLOYER", ActionId.START_DEPLOYMENT, "1", reply="deploy")


def actions(bot: RunningBot) -> list[dict[str, Any]]:
    summary = bot.summary()
    return [e for b in summary.blocks if b["type"] == "actions" for e in b["elements"]]


def thread_texts(bot: RunningBot, channel: str = "#deploys") -> list[str]:
    roots = bot.fake.messages(channel)
    if not roots:
        return []
    return [m.text for m in bot.fake.thread(roots[0].channel, roots[0].ts)[1:]]


def slack_text(bot: RunningBot) -> str:
    return json.dumps([c.params for c in bot.fake.calls()])


def test_start_deployment_runs_the_steps_and_goes_on_to_verification(
    database_url: str, tmp_path: Path, pagerduty: FakePagerDuty, monkeypatch: pytest.MonkeyPatch
) -> None:
    upgrade(database_url)
    printing = (
        "import os\n"
        "for i in range(1, 8): print('migrating', i)\n"
        "print('token', os.environ['DEPLOY_TOKEN'])"
    )
    steps = [
        KUBE_STEP,
        {"kind": "command", "argv": python(printing), "env": ["DEPLOY_TOKEN"], "name": "migrate"},
    ]
    with FakeKube(seed=3) as kube:
        kube.create_deployment(NS, "api", image="registry.example/api:v1", replicas=2)
        kube.reconcile(NS, "api")
        monkeypatch.setenv("KUBECONFIG", str(kube.kubeconfig(tmp_path / "kubeconfig")))
        config = write_config(tmp_path, steps, rollback=[{"kind": "command", "argv": ["true"]}])
        with (
            running_bot(database_url, config=config, pagerduty=pd_client(pagerduty)) as bot,
            Controllers(kube),
        ):
            start(bot)
            bot.wait_state(1, SessionState.VERIFYING)
            bot.wait_item(1, "1.1", ItemStatus.DONE)
            session = bot.session(1)
            deployment = kube.get("deployments", NS, "api")
            wait(
                lambda: any("migrate" in t and "done" in t for t in thread_texts(bot)),
                lambda: f"the thread says step 2 is done: {thread_texts(bot)}",
            )
            replies = thread_texts(bot)
            summary = bot.summary()

    assert [s.state for s in session.steps] == [StepState.DONE, StepState.DONE]
    assert session.steps[0].detail == 'deployment "api" successfully rolled out'
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "registry.example/api:v2"
    assert deployment["metadata"]["annotations"][CHANGE_CAUSE] == (
        "deploybot: deploy #1 prod api v2 by U0DEPLOYER"
    )
    kinds = [e.kind for e in bot.session_history(1) if e.kind.startswith(("deploy", "state"))]
    assert kinds[: kinds.index("deployment_finished") + 1] == [
        "deployment_started",
        "state_changed",
        "deploy_step_started",
        "deploy_step_applied",
        "deploy_step_done",
        "deploy_step_started",
        "deploy_step_output",
        "deploy_step_output",
        "deploy_step_done",
        "deployment_finished",
    ]
    # A line per step in the session's thread; the output a few lines at a time, redacted.
    steps_said = [t for t in replies if "Step " in t or ":rocket:" in t]
    assert steps_said[0] == ":rocket: <@U0DEPLOYER> started the deployment: deploybot runs 2 steps."
    assert steps_said[1] == ":arrow_forward: Step 1 (kubernetes: set image api -n prod) started"
    assert steps_said[2].startswith(
        ":hourglass_flowing_sand: Step 1 (kubernetes: set image api -n prod) applied, waiting: "
        "deployment/api image updated (api=registry.example/api:v2 -n prod)"
    )
    assert steps_said[3] == (
        ':white_check_mark: Step 1 (kubernetes: set image api -n prod) done: deployment "api" '
        "successfully rolled out"
    )
    output = [t for t in replies if t.startswith("Step 2:\n```")]
    assert output == [
        "Step 2:\n```migrating 1\nmigrating 2\nmigrating 3\nmigrating 4\nmigrating 5```",
        "Step 2:\n```migrating 6\nmigrating 7\ntoken [REDACTED]```",
    ]
    assert TOKEN not in slack_text(bot)
    (steps_block,) = [
        b["text"]["text"]
        for b in summary.blocks
        if "text" in b and b["text"]["text"].startswith("*Deploy steps*")
    ]
    assert steps_block == (
        "*Deploy steps*\n"
        '✅ 1. kubernetes: set image api -n prod: done · deployment "api" successfully '
        "rolled out\n"
        "✅ 2. migrate: done · " + " ".join(steps[1]["argv"])[:119] + "…"
    )
    assert pagerduty.events() == []  # nothing failed: nobody paged


def test_a_failing_step_pages_once_and_rolls_back_once(
    database_url: str, tmp_path: Path, pagerduty: FakePagerDuty
) -> None:
    upgrade(database_url)
    ran = tmp_path / "rollback-runs"
    failing = python("print('applying'); print('error: schema lock held'); raise SystemExit(3)")
    rollback = python(f"open({str(ran)!r}, 'a').write('rolled back\\n'); print('restored v1')")
    later = tmp_path / "later"
    steps = [
        {"kind": "command", "argv": failing, "name": "migrate"},
        {"kind": "command", "argv": python(f"open({str(later)!r}, 'w')"), "name": "later"},
    ]
    config = write_config(
        tmp_path,
        steps,
        probes=[],
        rollback=[{"kind": "command", "argv": rollback}],
        rollback_verify="every 1s for 1s",
    )
    # The checklist's probe needs a cluster: verification here runs without it.
    (tmp_path / "checklist.yaml").write_text(
        yaml.safe_dump({"sections": [{"title": "Verify", "items": [{"text": "api"}]}]})
    )
    with running_bot(database_url, config=config, pagerduty=pd_client(pagerduty)) as bot:
        start(bot)
        bot.wait_state(1, SessionState.ROLLED_BACK, timeout=30)
        paged = pagerduty.wait_for_events(2, timeout=20)
        wait(
            lambda: len(thread_texts(bot, "#incidents")) >= 3,
            lambda: f"the incident thread: {thread_texts(bot, '#incidents')}",
        )
        incident = thread_texts(bot, "#incidents")
        session = bot.session(1)
        history = bot.session_history(1)

    assert [s.state for s in session.steps] == [StepState.FAILED, StepState.PENDING]
    assert session.steps[0].detail is not None
    assert session.steps[0].detail.endswith("exit 3: error: schema lock held")
    assert not later.exists()  # the remaining steps never ran
    assert ran.read_text() == "rolled back\n"  # exactly once
    step_key = DEDUP_KEY.replace("/api", "/deploy step 1")
    assert [(e["event_action"], e["dedup_key"]) for e in paged] == [
        ("trigger", step_key),
        ("resolve", step_key),  # rolled back: the step's page resolves
    ]
    assert pagerduty.alert_count(step_key) == 1
    assert paged[0]["payload"]["summary"].startswith("prod api v2: deploy step 1 failed: migrate: ")
    kinds = [e.kind for e in history]
    assert kinds.count("rollback_started") == 1
    assert [e.actor for e in history if e.kind == "rollback_started"] == ["deploybot"]
    assert kinds.count("rollback_step_done") == 1
    assert incident[0] == ":rewind: deploybot started a rollback:\n• command: " + " ".join(rollback)
    assert incident[1].startswith(":white_check_mark: Step 1: ")
    assert incident[-1] == ":white_check_mark: Rolled back, and the probes pass."


def test_a_pause_is_continued_by_a_click_and_a_failed_step_retried_by_a_click(
    database_url: str, tmp_path: Path, pagerduty: FakePagerDuty
) -> None:
    """``on_failure: ask``: the page offers Retry step; the retried step runs again."""
    upgrade(database_url)
    flag = tmp_path / "fixed"
    flaky = python(
        f"import os, sys\nif not os.path.exists({str(flag)!r}): sys.exit('not yet')\nprint('ok')"
    )
    steps = [
        {"kind": "pause", "continue_by": ["oncall"], "timeout": "1h", "name": "judge"},
        {"kind": "command", "argv": flaky, "name": "smoke"},
    ]
    config = write_config(tmp_path, steps, probes=[])
    (tmp_path / "checklist.yaml").write_text(
        yaml.safe_dump({"sections": [{"title": "Verify", "items": [{"text": "api"}]}]})
    )
    config_data = yaml.safe_load(config.read_text())
    config_data["environments"]["prod"]["services"]["api"]["deploy"]["on_failure"] = "ask"
    config.write_text(yaml.safe_dump(config_data, sort_keys=False))
    with running_bot(database_url, config=config, pagerduty=pd_client(pagerduty)) as bot:
        start(bot)
        wait(
            lambda: "Continue step 1" in [e["text"]["text"] for e in actions(bot)],
            lambda: f"a Continue button: {[e['text']['text'] for e in actions(bot)]}",
        )
        bot.click("U0DEPLOYER", ActionId.CONTINUE_STEP, "1|1", reply="not-mine")
        assert "only members of oncall can" in bot.reply("not-mine")["text"]
        bot.click("U0ONCALL", ActionId.CONTINUE_STEP, "1|1", reply="go")
        bot.wait_state(1, SessionState.FAILED)
        paged = pagerduty.wait_for_events(1, timeout=20)
        wait(lambda: bot.fake.messages("#incidents"), "the incident message")
        incident = bot.fake.messages("#incidents")[0]
        buttons = [
            e["text"]["text"]
            for b in incident.blocks
            if b["type"] == "actions"
            for e in b["elements"]
        ]
        flag.touch()
        bot.click("U0ONCALL", ActionId.RETRY_STEP, "1|2", reply="retry")
        bot.wait_state(1, SessionState.VERIFYING)
        session = bot.session(1)
        history = bot.session_history(1)
        resolved = pagerduty.wait_for_events(2, timeout=20)

    assert "Retry step 2" in buttons and "Roll back" in buttons and "Resolve" not in buttons
    assert [s.state for s in session.steps] == [StepState.DONE, StepState.DONE]
    assert session.steps[0].continued_by == "U0ONCALL"
    assert session.steps[1].attempt == 2
    step_key = DEDUP_KEY.replace("/api", "/deploy step 2")
    assert [(e["event_action"], e["dedup_key"]) for e in resolved] == [
        ("trigger", step_key),
        ("resolve", step_key),
    ]
    assert paged[0]["payload"]["summary"] == "prod api v2: deploy step 2 failed: smoke: " + (
        " ".join(flaky) + ": exit 1: not yet"
    )
    refused = [e.data["command"] for e in history if e.kind == "refused"]
    assert refused == ["ContinueStep"]
    assert [e.kind for e in history if e.kind.startswith("rollback")] == []
