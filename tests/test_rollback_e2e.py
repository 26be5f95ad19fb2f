"""Rollbacks end to end through the real Bolt app, on SQLite and PostgreSQL.

A probe fails after the deploy, the page arrives at the HTTPS receiver, responders click
Roll back, and the configured targets run against real counterparts: the fake Kubernetes
API server (compared with what the real ``kubectl rollout undo`` leaves), moto's ECS and
Lambda, configured commands. PagerDuty trouble (5xx, 429) delays the pages but never
duplicates or reorders them. Finally the bot runs as a real process that is SIGKILLed in the
middle of a rollback: after a restart no step runs twice.
"""

from __future__ import annotations

import io
import itertools
import os
import re
import sys
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from sqlalchemy import select

from bot.app.sessions import DeployService
from bot.config.loader import load_config
from bot.domain import SYSTEM, SessionState
from bot.domain.commands import Fail, SignOff, StartDeployment, StartRollback
from bot.integrations.pagerduty import PagerDuty
from bot.rendering.ids import ActionId
from bot.storage.db import make_engine, make_sessionmaker, upgrade
from bot.storage.models import OutboxRow
from tests.e2e import RunningBot, running_bot
from tests.support.health import HealthEndpoint
from tests.support.kube import KUBECTL, FakeKube, Kubectl
from tests.support.moto import REGION, use_moto
from tests.support.pagerduty import FakePagerDuty
from tests.support.slack import FakeSlack
from tests.test_scheduler_processes import BotProcess, bot_env

ROUTING_KEY = "R" * 32
DEDUP_KEY = "deploybot/prod/session-1/api"
NS = "prod"
REVISION = "deployment.kubernetes.io/revision"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE = "application/strategic-merge-patch+json"
RESPONDERS = ("U0ONCALL", "U0APPROVER")


# --- helpers -------------------------------------------------------------------------------


def wait(
    predicate: Callable[[], object], what: str | Callable[[], str], timeout: float = 20.0
) -> None:
    """Wait until ``predicate()``; else fail saying ``what`` (a callable: evaluated then)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(what() if callable(what) else what)
        time.sleep(0.05)


@pytest.fixture
def pagerduty(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePagerDuty]:
    monkeypatch.setenv("PD_KEY_PROD", ROUTING_KEY)
    with FakePagerDuty() as fake:
        yield fake


def pd_client(fake: FakePagerDuty) -> PagerDuty:
    return PagerDuty(events_url=fake.url, verify=fake.client_ssl_context())


def write_config(
    tmp_path: Path,
    *,
    probe: dict[str, Any] | None,
    rollback: list[dict[str, Any]],
    **environment: Any,
) -> Path:
    """prod: one sign-off, on-call responders, PagerDuty, and one probe-linked item."""
    item: dict[str, Any] = {"text": "api is healthy"}
    if probe is not None:
        item["probe"] = "api"
    checklist = {"title": "Release", "sections": [{"title": "Verify", "items": [item]}]}
    (tmp_path / "checklist.yaml").write_text(yaml.safe_dump(checklist), encoding="utf-8")
    config = {
        "roles": {
            "deployers": ["U0DEPLOYER"],
            "approvers": ["U0APPROVER"],
            "oncall": ["U0ONCALL"],
        },
        "probes": {"api": probe} if probe is not None else {},
        "environments": {
            "prod": {
                "channel": "#deploys",
                "incident_channel": "#incidents",
                "checklist": "checklist.yaml",
                "starters": ["deployers"],
                "oncall": ["oncall"],
                "signoffs": [{"role": "QA Lead", "by": ["approvers"]}],
                "pagerduty": {"routing_key_env": "PD_KEY_PROD"},
                "rollback": rollback,
                **environment,
            }
        },
    }
    path = tmp_path / "deploybot.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def deploy_and_verify(bot: RunningBot) -> None:
    """Open deploy #1, sign it off, deploy it, and wait until its probe passed."""
    bot.command("start prod api v2", user="U0DEPLOYER", reply="start")
    assert "Opened deploy #1" in bot.reply("start")["text"]
    bot.click("U0APPROVER", ActionId.SIGN_OFF, "1|qa-lead", reply="sign")
    wait(lambda: "qa-lead" in bot.session(1).signoffs, "sign-off recorded")
    bot.click("U0DEPLOYER", ActionId.START_DEPLOYMENT, "1", reply="deploy")
    bot.wait_state(1, SessionState.DEPLOYING)
    bot.click("U0DEPLOYER", ActionId.FINISH_DEPLOYMENT, "1", reply="deployed")
    bot.wait_state(1, SessionState.VERIFYING)
    wait(lambda: bot.session(1).progress("1.1").status.value == "done", "verified")


def probe_until_failed(bot: RunningBot) -> None:
    bot.click("U0DEPLOYER", ActionId.RUN_PROBES, "1", reply="probe")
    bot.wait_state(1, SessionState.FAILED)


def roll_back_together(bot: RunningBot) -> dict[str, str]:
    """Both responders click Roll back at the same moment; what each was told."""
    barrier = threading.Barrier(len(RESPONDERS))

    def click(user: str) -> None:
        barrier.wait()
        bot.click(user, ActionId.ROLL_BACK, "1", reply=f"rb-{user}")

    clicks = [threading.Thread(target=click, args=(user,)) for user in RESPONDERS]
    for thread in clicks:
        thread.start()
    for thread in clicks:
        thread.join()
    return {user: str(bot.reply(f"rb-{user}")["text"]) for user in RESPONDERS}


def the_one_who_rolled_back(answers: dict[str, str]) -> str:
    """Exactly one clicker started the rollback, the other was told it is under way."""
    assert sorted(answers.values()) == [
        ":rewind: Rolling back deploy #1; progress follows here.",
        ":warning: A rollback of deploy #1 is already under way.",
    ], answers
    return next(user for user, said in answers.items() if said.startswith(":rewind:"))


def wait_settled(bot: RunningBot, state: SessionState, timeout: float = 40.0) -> None:
    try:
        bot.wait_state(1, state, timeout=timeout)
    except AssertionError:
        history = [(e.kind, e.data) for e in bot.bot.runtime.service.history(1)[-8:]]
        raise AssertionError(
            f"deploy #1 is {bot.session(1).state}: {bot.session(1).outcome_reason}; {history}"
        ) from None


def incident_replies(bot: RunningBot, count: int, timeout: float = 20.0) -> list[str]:
    """The texts of the first ``count`` replies in the incident thread (waits for them)."""
    fake = bot.fake

    def replies() -> list[str]:
        roots = fake.messages("#incidents")
        if not roots:
            return []
        return [m.text for m in fake.thread(roots[0].channel, roots[0].ts)[1:]]

    wait(
        lambda: len(replies()) >= count,
        lambda: f"{count} replies in the incident thread: {replies()}",
        timeout,
    )
    return replies()


def assert_rollback_history(
    bot: RunningBot, winner: str, *, steps: list[str], outcome: str, raced: bool = True
) -> None:
    """One rollback, started by ``winner``; the other click refused (when ``raced``); each
    step started then ``done`` or ``failed`` as listed; then ``outcome``."""
    history = bot.bot.runtime.service.history(1)
    started = [e for e in history if e.kind == "rollback_started"]
    assert [e.actor for e in started] == [winner]
    after = history[history.index(started[0]) :]
    refused = [e for e in after if e.kind == "refused"]
    losers = [u for u in RESPONDERS if u != winner] if raced else []
    assert [(e.actor, e.data["command"]) for e in refused] == [(u, "StartRollback") for u in losers]
    kinds = [e.kind for e in after if e.kind.startswith("rollback_")]
    expected = ["rollback_started"]
    for step in steps:
        expected += ["rollback_step_started", f"rollback_step_{step}"]
    assert kinds == [*expected, outcome]


# --- Kubernetes ----------------------------------------------------------------------------


def kubectl_for(server: FakeKube, directory: Path) -> Kubectl:
    if not os.access(KUBECTL, os.X_OK):
        if os.environ.get("CI") == "true":
            pytest.fail(f"kubectl is not installed at {KUBECTL} (never skipped in CI)")
        pytest.skip(f"kubectl is not installed at {KUBECTL}")
    (directory / "home").mkdir(parents=True, exist_ok=True)
    return Kubectl(server.kubeconfig(directory / "kubeconfig"), directory / "home")


def set_image(kubectl: Kubectl, image: str) -> None:
    done = kubectl("set", "image", "deployment/api", f"api={image}", "-n", NS)
    assert done.returncode == 0, done.stderr


def v1_v2(server: FakeKube, kubectl: Kubectl) -> None:
    """Revision 1 runs v1; ``kubectl set image`` makes revision 2 (v2), rolled out."""
    server.create_deployment(NS, "api", image="registry.example/api:v1", replicas=2)
    server.reconcile(NS, "api")
    set_image(kubectl, "registry.example/api:v2")
    server.reconcile(NS, "api")


def v3_unready(server: FakeKube, kubectl: Kubectl) -> None:
    """Revision 3 (v3) whose pods never become ready."""
    set_image(kubectl, "registry.example/api:v3")
    server.reconcile(NS, "api", ready=False)


def without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def json_patches(server: FakeKube) -> list[Any]:
    return [
        r
        for r in server.requests
        if r.method == "PATCH"
        and r.content_type == JSON_PATCH
        and r.path == f"/apis/apps/v1/namespaces/{NS}/deployments/api"
    ]


class Reconciler:
    """The cluster's controllers: once the undo PATCH has arrived, reconcile every 0.2 s."""

    def __init__(self, server: FakeKube) -> None:
        self.server = server
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="reconciler", daemon=True)

    def _run(self) -> None:
        while not self.stopping.wait(0.2):
            if json_patches(self.server):
                self.server.reconcile(NS, "api", ready=True)

    def __enter__(self) -> Reconciler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)


def replicaset_annotations(server: FakeKube) -> dict[str, dict[str, str]]:
    return {
        rs["metadata"]["name"]: rs["metadata"]["annotations"]
        for rs in server.list("replicasets", NS)
    }


def test_kubernetes_rollback_does_what_kubectl_rollout_undo_does(
    database_url: str,
    tmp_path: Path,
    pagerduty: FakePagerDuty,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    upgrade(database_url)
    with FakeKube(seed=7) as ours, FakeKube(seed=7) as theirs:
        kubectl = kubectl_for(ours, tmp_path / "ours")
        v1_v2(ours, kubectl)
        monkeypatch.setenv("KUBECONFIG", str(ours.kubeconfig(tmp_path / "bot-kubeconfig")))
        config = write_config(
            tmp_path,
            probe={
                "kind": "kubernetes",
                "check": "rollout",
                "deployment": "api",
                "namespace": NS,
                "timeout": "5s",
            },
            rollback=[
                {"kind": "kubernetes", "deployment": "api", "namespace": NS, "timeout": "30s"}
            ],
        )
        with running_bot(
            database_url, config=config, pagerduty=pd_client(pagerduty), background=True
        ) as bot:
            deploy_and_verify(bot)  # revision 2 is rolled out: the probe passes

            v3_unready(ours, kubectl)
            probe_until_failed(bot)
            status = kubectl("rollout", "status", "deployment/api", "-n", NS, "--watch=false")
            trigger = pagerduty.wait_for_events(1, timeout=20)[0]
            assert trigger["event_action"] == "trigger"
            assert trigger["dedup_key"] == DEDUP_KEY
            # The page says what kubectl says about the rollout.
            assert status.stdout.strip().startswith('Waiting for deployment "api" rollout')
            assert trigger["payload"]["summary"] == (
                f"prod api v2: api failed: {status.stdout.strip()}"
            )
            assert pagerduty.alert(DEDUP_KEY).status == "triggered"
            assert json_patches(ours) == []

            with Reconciler(ours):
                answers = roll_back_together(bot)
                wait_settled(bot, SessionState.ROLLED_BACK)
            winner = the_one_who_rolled_back(answers)
            events = pagerduty.wait_for_events(2, timeout=20)
            replies = incident_replies(bot, 4)
            assert_rollback_history(bot, winner, steps=["done"], outcome="rollback_succeeded")
            after = ours.reconcile(NS, "api")

        # The same history on a second server, rolled back by the real kubectl.
        their_kubectl = kubectl_for(theirs, tmp_path / "theirs")
        v1_v2(theirs, their_kubectl)
        v3_unready(theirs, their_kubectl)
        undo = their_kubectl("rollout", "undo", "deployment/api", "-n", NS)
        assert undo.returncode == 0, undo.stderr
        assert undo.stdout.strip() == "deployment.apps/api rolled back"
        expected = theirs.reconcile(NS, "api")

        writes = [
            (r.method, r.content_type, r.user_agent.split("/")[0])
            for r in ours.requests
            if r.method != "GET"
        ]
        assert writes == [
            ("PATCH", STRATEGIC_MERGE, "kubectl"),  # set image v2
            ("PATCH", STRATEGIC_MERGE, "kubectl"),  # set image v3
            ("PATCH", JSON_PATCH, "OpenAPI-Generator"),  # the bot's undo, once for two clicks
        ]
        (sent,) = json_patches(ours)
        (kubectls,) = json_patches(theirs)
        assert sent.body == without_nulls(kubectls.body)
        assert [op["path"] for op in sent.body] == ["/spec/template", "/metadata/annotations"]
        assert after["spec"]["template"] == expected["spec"]["template"]
        assert after["metadata"]["annotations"] == expected["metadata"]["annotations"]
        assert replicaset_annotations(ours) == replicaset_annotations(theirs)
        image = after["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image == "registry.example/api:v2"
        assert after["metadata"]["annotations"][REVISION] == "4"

    assert replies == [
        f":rewind: <@{winner}> started a rollback:\n"
        "• kubernetes: rollout undo deployment/api -n prod",
        ":white_check_mark: Step 1: deployment/api -n prod: rolled back to revision 2; "
        'deployment "api" successfully rolled out',
        ':white_check_mark: *api* passes again: deployment "api" successfully rolled out',
        ":white_check_mark: Rolled back, and the probes pass.",
    ]
    assert [(e["event_action"], e["dedup_key"]) for e in events] == [
        ("trigger", DEDUP_KEY),
        ("resolve", DEDUP_KEY),  # the probe passes again after the rollback
    ]
    assert pagerduty.alert(DEDUP_KEY).status == "resolved"
    assert pagerduty.alert_count(DEDUP_KEY) == 1


# --- ECS and Lambda ------------------------------------------------------------------------


@pytest.fixture
def aws(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """boto3 (the bot's and the test's) at moto; ECS services run one task, so are stable."""
    use_moto(monkeypatch, moto_endpoint, tmp_path)
    monkeypatch.setenv("MOTO_ECS_SERVICE_RUNNING", "1")
    return moto_endpoint


def client(service: str) -> Any:
    return boto3.client(service, region_name=REGION)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass
class AwsScene:
    """An ECS service on revision 2 of its task definition, a Lambda alias on a version."""

    family: str
    cluster: str
    service: str
    function: str

    @classmethod
    def build(cls, *, alias_at: str) -> AwsScene:
        scene = cls(unique("web"), unique("prod"), unique("api"), unique("checkout"))
        ecs = client("ecs")
        for n in (1, 2):
            ecs.register_task_definition(
                family=scene.family,
                containerDefinitions=[{"name": "web", "image": f"web:{n}", "memory": 128}],
            )
        ecs.create_cluster(clusterName=scene.cluster)
        ecs.create_service(
            cluster=scene.cluster,
            serviceName=scene.service,
            taskDefinition=f"{scene.family}:2",
            desiredCount=1,
        )
        lmb = client("lambda")
        role = client("iam").create_role(RoleName=unique("role"), AssumeRolePolicyDocument="{}")
        for n in (1, 2):
            archive = io.BytesIO()
            with zipfile.ZipFile(archive, "w") as bundle:
                bundle.writestr("lambda_function.py", f"def handler(e, c):\n    return {n}\n")
            if n == 1:
                lmb.create_function(
                    FunctionName=scene.function,
                    Runtime="python3.11",
                    Role=role["Role"]["Arn"],
                    Handler="lambda_function.handler",
                    Code={"ZipFile": archive.getvalue()},
                )
            else:
                lmb.update_function_code(FunctionName=scene.function, ZipFile=archive.getvalue())
            assert lmb.publish_version(FunctionName=scene.function)["Version"] == str(n)
        lmb.create_alias(FunctionName=scene.function, Name="live", FunctionVersion=alias_at)
        return scene

    def task_definition(self) -> str:
        described = client("ecs").describe_services(cluster=self.cluster, services=[self.service])
        return str(described["services"][0]["taskDefinition"].rsplit("/", 1)[-1])

    def alias_version(self) -> str:
        alias = client("lambda").get_alias(FunctionName=self.function, Name="live")
        return str(alias["FunctionVersion"])

    def ecs_target(self) -> dict[str, Any]:
        return {
            "kind": "ecs",
            "cluster": self.cluster,
            "service": self.service,
            "region": REGION,
            "timeout": "30s",
        }

    def lambda_target(self) -> dict[str, Any]:
        return {
            "kind": "lambda",
            "function": self.function,
            "alias": "live",
            "region": REGION,
            "timeout": "30s",
        }


class _Recovered:
    """Equal to the thread's "passes again" line of the HTTP probe (its latency varies)."""

    def __eq__(self, other: object) -> bool:
        pattern = r":white_check_mark: \*api\* passes again: HTTP 200 in \d+ ms"
        return isinstance(other, str) and re.fullmatch(pattern, other) is not None

    def __repr__(self) -> str:
        return "':white_check_mark: *api* passes again: HTTP 200 in <n> ms'"


RECOVERED = _Recovered()


def http_probe(health: HealthEndpoint) -> dict[str, Any]:
    return {"kind": "http", "url": f"{health.url}/health", "timeout": "3s"}


def pagerduty_rows(bot: RunningBot) -> list[OutboxRow]:
    """The PagerDuty events the bot has queued (its outbox rows), oldest first."""
    with bot.bot.runtime.session_factory() as db:
        query = select(OutboxRow).where(OutboxRow.topic == "pagerduty").order_by(OutboxRow.id)
        return list(db.scalars(query).all())


def paged_actions(bot: RunningBot) -> list[tuple[str, str]]:
    return [(r.payload["action"], r.payload["dedup_key"]) for r in pagerduty_rows(bot)]


@pytest.mark.usefixtures("aws")
def test_ecs_and_lambda_roll_back_to_the_previous_revision_and_version(
    database_url: str, tmp_path: Path, pagerduty: FakePagerDuty, health: HealthEndpoint
) -> None:
    upgrade(database_url)
    scene = AwsScene.build(alias_at="2")
    config = write_config(
        tmp_path,
        probe=http_probe(health),
        rollback=[scene.ecs_target(), scene.lambda_target()],
    )
    with running_bot(
        database_url, config=config, pagerduty=pd_client(pagerduty), background=True
    ) as bot:
        deploy_and_verify(bot)
        # Revision 2 and version 2 are broken: healthy again only on what ran before.
        health.check = lambda: (
            scene.task_definition() == f"{scene.family}:1" and scene.alias_version() == "1"
        )
        probe_until_failed(bot)
        assert pagerduty.wait_for_events(1, timeout=20)[0]["event_action"] == "trigger"

        bot.click("U0APPROVER", ActionId.ROLL_BACK, "1", reply="rb")
        assert bot.reply("rb")["text"] == ":rewind: Rolling back deploy #1; progress follows here."
        wait_settled(bot, SessionState.ROLLED_BACK)
        wait(lambda: pagerduty.alert(DEDUP_KEY).status == "resolved", "the alert is resolved")
        replies = incident_replies(bot, 5)
        assert_rollback_history(
            bot, "U0APPROVER", steps=["done", "done"], outcome="rollback_succeeded", raced=False
        )
        assert bot.session(1).outcome_reason == "rolled back"

    assert scene.task_definition() == f"{scene.family}:1"
    assert scene.alias_version() == "1"
    ecs, lmb = f"ECS service '{scene.service}' in cluster '{scene.cluster}'", scene.function
    assert replies == [
        ":rewind: <@U0APPROVER> started a rollback:\n"
        f"• ecs: service {scene.service} in {scene.cluster} to its previous task definition\n"
        f"• lambda: alias live of {scene.function} to its previous version",
        f":white_check_mark: Step 1: {ecs}: {scene.family}:2 -> {scene.family}:1, stable",
        f":white_check_mark: Step 2: Lambda alias '{lmb}:live': version 2 -> 1",
        RECOVERED,
        ":white_check_mark: Rolled back, and the probes pass.",
    ]


@pytest.mark.parametrize("heals", [True, False], ids=["takes-effect-late", "never-takes-effect"])
def test_a_rollback_is_verified_over_its_window(
    database_url: str,
    tmp_path: Path,
    pagerduty: FakePagerDuty,
    health: HealthEndpoint,
    heals: bool,
) -> None:
    upgrade(database_url)
    config = write_config(
        tmp_path,
        probe=http_probe(health),
        rollback=[{"kind": "command", "argv": ["true"], "timeout": "10s"}],
        rollback_verify="every 500ms for 2s",
    )
    with running_bot(
        database_url, config=config, pagerduty=pd_client(pagerduty), background=True
    ) as bot:
        deploy_and_verify(bot)
        health.check = lambda: False
        probe_until_failed(bot)
        bot.click("U0ONCALL", ActionId.ROLL_BACK, "1", reply="rb")
        service = bot.bot.runtime.service

        def verifying() -> bool:
            return any(e.kind == "rollback_verifying" for e in service.history(1))

        wait(verifying, "the rollback's verification began")
        if heals:  # the rollback takes effect a while after its steps are done
            wait(lambda: len(probe_runs(service)) >= 2, "a second failing round")
            health.check = lambda: True
        wait_settled(bot, SessionState.ROLLED_BACK if heals else SessionState.ROLLBACK_FAILED)
        runs = probe_runs(service)
        assert [r.ok for r in runs] == [False] * (len(runs) - heals) + [True] * heals
        if heals:
            assert len(runs) >= 3
        else:
            assert len(runs) in (3, 4, 5)  # every 0.5 s for 2 s, however late each round began
            reason = bot.session(1).outcome_reason or ""
            assert re.fullmatch(
                r"the probes still fail [1-9](\.[0-9])?s after the rollback: "
                r"api: HTTP 503 \(expected 200\)",
                reason,
            ), reason
        notes = incident_replies(bot, 3)
        assert (
            ":hourglass: Rolled back, but the probes still fail; trying again every 0.5s for "
            "up to 2s." in notes
        )


def probe_runs(service: DeployService) -> list[Any]:
    """The api probe's runs during the rollback verification (after the rollback started)."""
    started = next(e.at for e in service.history(1) if e.kind == "rollback_started")
    return [r for r in service.probe_runs(1) if r.at >= started]


@pytest.mark.usefixtures("aws")
def test_a_failing_step_fails_the_rollback_says_why_and_keeps_the_page_open(
    database_url: str, tmp_path: Path, pagerduty: FakePagerDuty, health: HealthEndpoint
) -> None:
    upgrade(database_url)
    scene = AwsScene.build(alias_at="1")  # nothing published before version 1
    config = write_config(
        tmp_path,
        probe=http_probe(health),
        rollback=[scene.lambda_target(), scene.ecs_target()],
    )
    with running_bot(
        database_url, config=config, pagerduty=pd_client(pagerduty), background=True
    ) as bot:
        deploy_and_verify(bot)
        health.check = lambda: False
        probe_until_failed(bot)
        pagerduty.wait_for_events(1, timeout=20)

        bot.click("U0ONCALL", ActionId.ROLL_BACK, "1", reply="rb")
        assert bot.reply("rb")["text"] == ":rewind: Rolling back deploy #1; progress follows here."
        wait_settled(bot, SessionState.ROLLBACK_FAILED)
        replies = incident_replies(bot, 2)
        assert_rollback_history(
            bot, "U0ONCALL", steps=["failed"], outcome="rollback_failed", raced=False
        )
        why = (
            f"Lambda alias '{scene.function}:live' is at version 1 and no earlier version "
            "is published: nothing to roll back to"
        )
        session = bot.session(1)
        assert session.outcome_reason == f"step 1 failed: {why}"
        # The failure is posted after anything it would page: no resolve was ever queued.
        assert paged_actions(bot) == [("trigger", DEDUP_KEY)]

    assert replies == [
        f":rewind: <@U0ONCALL> started a rollback:\n"
        f"• lambda: alias live of {scene.function} to its previous version\n"
        f"• ecs: service {scene.service} in {scene.cluster} to its previous task definition",
        f":fire: Rollback failed: step 1 failed: {why}",
    ]
    alert = pagerduty.alert(DEDUP_KEY)
    assert alert.status == "triggered"
    assert [e["event_action"] for e in pagerduty.events()] == ["trigger"]
    assert scene.alias_version() == "1"  # the failed step changed nothing
    assert scene.task_definition() == f"{scene.family}:2"  # and the next step never ran


# --- PagerDuty trouble ---------------------------------------------------------------------


def heal_command(tmp_path: Path, health: HealthEndpoint) -> dict[str, Any]:
    heal = tmp_path / "heal.py"
    heal.write_text(
        "import urllib.request\n"
        f"urllib.request.urlopen({health.url + '/heal'!r})\n"
        "print('healed')\n",
        encoding="utf-8",
    )
    return {"kind": "command", "argv": [sys.executable, str(heal)], "timeout": "30s"}


def delivered(bot: RunningBot, count: int) -> list[OutboxRow]:
    """The bot's ``count`` PagerDuty outbox rows, once all are marked delivered."""
    wait(
        lambda: len(rows := pagerduty_rows(bot)) == count and all(r.delivered_at for r in rows),
        lambda: f"{count} PagerDuty rows delivered: {paged_actions(bot)}",
    )
    return pagerduty_rows(bot)


EVERY_EVENT = [
    ("trigger", DEDUP_KEY),
    ("acknowledge", DEDUP_KEY),
    ("resolve", DEDUP_KEY),  # the probe passes again after the rollback
]


def acknowledge_then_roll_back(bot: RunningBot) -> None:
    bot.click("U0ONCALL", ActionId.ACKNOWLEDGE, "1", reply="ack")
    wait(
        lambda: any(e.kind == "incident_acknowledged" for e in bot.bot.runtime.service.history(1)),
        "acknowledged",
    )
    bot.click("U0ONCALL", ActionId.ROLL_BACK, "1", reply="rb")
    wait_settled(bot, SessionState.ROLLED_BACK)


def test_pagerduty_errors_delay_the_pages_but_each_arrives_once_and_in_order(
    database_url: str, tmp_path: Path, pagerduty: FakePagerDuty, health: HealthEndpoint
) -> None:
    upgrade(database_url)
    config = write_config(
        tmp_path, probe=http_probe(health), rollback=[heal_command(tmp_path, health)]
    )
    # Backoff from 0.25 s: the retries outlast the responders' clicks below.
    with running_bot(
        database_url, config=config, pagerduty=pd_client(pagerduty), background=True, backoff=0.25
    ) as bot:
        deploy_and_verify(bot)
        pagerduty.fail(status=500, times=3)
        health.check = lambda: False
        probe_until_failed(bot)
        # While the trigger is still being retried, on-call acknowledges and rolls back.
        acknowledge_then_roll_back(bot)
        events = pagerduty.wait_for_events(len(EVERY_EVENT), timeout=30)
        rows = delivered(bot, len(EVERY_EVENT))

    assert [(e["event_action"], e["dedup_key"]) for e in events] == EVERY_EVENT
    assert [(r.payload["action"], r.payload["dedup_key"]) for r in rows] == EVERY_EVENT
    assert all(r.delivered_at is not None and r.failed_at is None for r in rows)
    assert [r.attempts for r in rows] == [4, 1, 1]
    trigger_delivered = rows[0].delivered_at
    assert trigger_delivered is not None
    assert rows[1].created_at < trigger_delivered  # the acknowledge waited its turn
    requests = pagerduty.requests()
    assert [r.status for r in requests] == [500, 500, 500, 202, 202, 202]
    assert requests[0].body == requests[1].body == requests[2].body == requests[3].body
    assert requests[3].body == events[0]
    gaps = [b.at - a.at for a, b in itertools.pairwise(requests[:4])]
    # Exponential backoff from 0.25 s here, with jitter between half and all of each step
    # (the production default starts at 1 s).
    assert gaps[0] >= 0.12 and gaps[1] >= 0.24 and gaps[2] >= 0.49, gaps
    alert = pagerduty.alert(DEDUP_KEY)
    assert alert.status == "resolved"
    assert pagerduty.alert_count(DEDUP_KEY) == 1
    assert [e["event_action"] for e in alert.events] == ["trigger", "acknowledge", "resolve"]


def test_pagerduty_rate_limits_are_waited_out_and_nothing_overtakes(
    database_url: str, tmp_path: Path, pagerduty: FakePagerDuty, health: HealthEndpoint
) -> None:
    upgrade(database_url)
    config = write_config(
        tmp_path, probe=http_probe(health), rollback=[heal_command(tmp_path, health)]
    )
    with running_bot(
        database_url, config=config, pagerduty=pd_client(pagerduty), background=True
    ) as bot:
        deploy_and_verify(bot)
        health.check = lambda: False
        probe_until_failed(bot)
        pagerduty.wait_for_events(1, timeout=20)
        pagerduty.rate_limit(times=3, retry_after=0.3)
        acknowledge_then_roll_back(bot)
        events = pagerduty.wait_for_events(len(EVERY_EVENT), timeout=30)
        rows = delivered(bot, len(EVERY_EVENT))

    assert [(e["event_action"], e["dedup_key"]) for e in events] == EVERY_EVENT
    assert [(r.payload["action"], r.payload["dedup_key"]) for r in rows] == EVERY_EVENT
    assert all(r.delivered_at is not None and r.failed_at is None for r in rows)
    assert [r.attempts for r in rows] == [1, 4, 1]
    requests = pagerduty.requests()
    assert [r.status for r in requests] == [202, 429, 429, 429, 202, 202]
    assert [r.body["event_action"] for r in requests[1:5]] == ["acknowledge"] * 4
    gaps = [b.at - a.at for a, b in itertools.pairwise(requests[1:5])]
    assert min(gaps) >= 0.28, gaps  # Retry-After: 0.3 is honoured every time
    alert = pagerduty.alert(DEDUP_KEY)
    assert alert.status == "resolved"
    assert [e["event_action"] for e in alert.events] == ["trigger", "acknowledge", "resolve"]


# --- SIGKILL in the middle of a rollback ---------------------------------------------------

SLEEPER = """\
import sys, time
with open(sys.argv[1], "a") as mark:
    mark.write("started\\n")
time.sleep(30)
with open(sys.argv[1], "a") as mark:
    mark.write("finished\\n")
"""
NOTE = """\
import sys
with open(sys.argv[1], "a") as mark:
    mark.write(sys.argv[2] + "\\n")
print("noted", sys.argv[2])
"""


def sigkill_scene(tmp_path: Path, *, sleeper_step: int) -> tuple[Path, Path, list[str]]:
    """A config whose rollback has two command steps, one of them 30 s long.

    Returns:
        The config, the marks file both steps write to, and the sleeper's argv.
    """
    (tmp_path / "sleeper.py").write_text(SLEEPER, encoding="utf-8")
    (tmp_path / "note.py").write_text(NOTE, encoding="utf-8")
    marks = tmp_path / "marks.log"
    sleeper = [sys.executable, str(tmp_path / "sleeper.py"), str(marks)]
    note = [sys.executable, str(tmp_path / "note.py"), str(marks), "note ran"]
    steps = [sleeper, note] if sleeper_step == 1 else [note, sleeper]
    rollback = [{"kind": "command", "argv": argv, "timeout": "60s"} for argv in steps]
    return write_config(tmp_path, probe=None, rollback=rollback), marks, sleeper


def failed_deploy(config: Path, database_url: str) -> tuple[DeployService, int]:
    """Deploy #1, deployed then failed, driven in this process on the bot's database."""
    upgrade(database_url)
    factory = make_sessionmaker(make_engine(database_url))
    service = DeployService(config=load_config(config), session_factory=factory)
    sid = service.open(environment="prod", user_id="U0DEPLOYER").id
    assert sid is not None
    service.act(sid, SignOff("qa-lead"), "U0APPROVER")
    service.act(sid, StartDeployment(), "U0DEPLOYER")
    service.act_as(sid, Fail("smoke test failed after the deploy"), SYSTEM)
    return service, sid


@pytest.mark.parametrize("sleeper_step", [1, 2], ids=["during-step-1", "during-step-2"])
def test_a_restart_never_reruns_a_step_and_reports_the_one_it_interrupted(
    tmp_path: Path, sleeper_step: int
) -> None:
    database_url = f"sqlite:///{tmp_path / 'deploybot.db'}"
    config, marks, sleeper = sigkill_scene(tmp_path, sleeper_step=sleeper_step)
    service, sid = failed_deploy(config, database_url)
    with FakeSlack() as fake:
        env = bot_env(database_url, config, fake)
        bot = BotProcess("before", env, tmp_path)
        try:
            bot.wait_for("became the scheduler leader")
            service.act(sid, StartRollback(), "U0ONCALL")
            wait(
                lambda: marks.exists() and "started" in marks.read_text(encoding="utf-8"),
                lambda: f"the sleeper step starts:\n{bot.output()}",
            )
            bot.kill()  # the whole process group: the bot and the step's child
            before = marks.read_text(encoding="utf-8")
            bot = BotProcess("after", env, tmp_path)
            wait(
                lambda: service.get(sid).state is SessionState.ROLLBACK_FAILED,
                lambda: f"the restarted bot settles the rollback:\n{bot.output()}",
                timeout=30,
            )
            time.sleep(0.5)  # a step wrongly re-run would have written its mark by now
        finally:
            bot.kill()

    session = service.get(sid)
    assert session.outcome_reason == (
        f"step {sleeper_step} (command: {' '.join(sleeper)}) was interrupted by a restart; "
        "check it by hand, then roll back again or resolve"
    )
    expected_marks = "started\n" if sleeper_step == 1 else "note ran\nstarted\n"
    assert before == expected_marks
    assert marks.read_text(encoding="utf-8") == expected_marks  # nothing ran again
    steps = [
        (e.kind, e.data["step"], e.data["detail"])
        for e in service.history(sid)
        if e.kind.startswith("rollback_step_")
    ]
    started = ("rollback_step_started", sleeper_step, f"command: {' '.join(sleeper)}")
    if sleeper_step == 1:
        assert steps == [started]  # step 2 never started
    else:
        note = f"{sys.executable} {tmp_path / 'note.py'} {marks} note ran"
        assert steps == [
            ("rollback_step_started", 1, f"command: {note}"),
            ("rollback_step_done", 1, f"{note}: exit 0: noted note ran"),
            started,
        ]
    kinds = [e.kind for e in service.history(sid)]
    assert kinds.count("rollback_started") == 1
    assert kinds.count("rollback_failed") == 1
