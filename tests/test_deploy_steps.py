"""Deploy steps: the step state table, the config, the Kubernetes step against the API
stand-in (compared with what the real ``kubectl set image`` leaves), a command's output
redacted, and pauses that end by a click or by their timeout (on an injected clock)."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from bot.app.deploy_plan import plan_steps
from bot.app.deploy_steps import DeploySteps, continue_pause, pause_outcome
from bot.app.sessions import DeployService
from bot.config.deploy_specs import DeployPlan, PauseStep, check_version
from bot.config.loader import load_config
from bot.domain import SYSTEM, Actor, DeploySession, SessionState, apply
from bot.domain.checklist import Checklist, ChecklistItem, Section
from bot.domain.commands import StartDeployment
from bot.domain.errors import DomainError, PermissionDenied
from bot.domain.policy import SessionPolicy
from bot.domain.step_progress import StepProgress, StepState
from bot.domain.steps import (
    STEP_TRANSITIONS,
    ContinueStep,
    RetryStep,
    StartStep,
    StepApplied,
    StepDone,
    StepFailed,
)
from bot.integrations.deploy_steps import (
    CHANGE_CAUSE,
    KubeTarget,
    StepError,
    rollout_progress,
    run_command,
    set_image_patch,
    set_images,
)
from bot.ops.redact import step_environment
from bot.storage.outbox import Defer
from tests.support.kube import KUBECTL, FakeKube, Kubectl

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
NS = "prod"
STRATEGIC_MERGE = "application/strategic-merge-patch+json"

# --- the step state table ------------------------------------------------------------------

STEP_COMMANDS: list[Any] = [
    StartStep(1),
    StepApplied(1, "image updated"),
    StepDone(1, "rolled out"),
    StepFailed(1, "exit 1"),
    ContinueStep(1, ("oncall",)),
    RetryStep(1),
]
# The session state each step command needs (the session's own table).
SESSION_STATE = {RetryStep: SessionState.FAILED}


def session_with(*steps: StepProgress, state: SessionState = SessionState.DEPLOYING) -> Any:
    checklist = Checklist(sections=(Section(title="Go", items=(ChecklistItem(text="a"),)),))
    session = DeploySession(
        environment="prod",
        requester="U0REQ",
        checklist=checklist.numbered(),
        policy=SessionPolicy(oncall=("oncall",), operators=("ops",)),
        opened_at=NOW,
        id=3,
        steps=steps,
    )
    session.state = state
    return session


ONCALL = Actor("U0ONCALL", frozenset({"oncall"}))


@pytest.mark.parametrize("before", list(StepState))
@pytest.mark.parametrize("command", STEP_COMMANDS, ids=lambda c: type(c).__name__)
def test_every_step_state_and_command(before: StepState, command: Any) -> None:
    state = SESSION_STATE.get(type(command), SessionState.DEPLOYING)
    session = session_with(StepProgress("step", "pause", before), state=state)
    actor = ONCALL if isinstance(command, ContinueStep | RetryStep) else SYSTEM
    target = STEP_TRANSITIONS.get((before, type(command)))
    if target is None:
        with pytest.raises(DomainError, match=f"is {before.value}"):
            apply(session, command, actor, NOW)
        return
    outcome = apply(session, command, actor, NOW)
    assert outcome.session.steps[0].state is target
    assert session.steps[0].state is before, "apply must not mutate its input"


def test_a_step_runs_pending_running_waiting_done_and_counts_its_attempts() -> None:
    s = session_with(StepProgress("kubectl", "kubernetes"), StepProgress("smoke", "command"))
    with pytest.raises(DomainError, match="Step 2 is not next: step 1 is"):
        apply(s, StartStep(2), SYSTEM, NOW)
    s = apply(s, StartStep(1), SYSTEM, NOW).session
    s = apply(s, StepApplied(1, "deployment/api image updated"), SYSTEM, NOW).session
    done = apply(s, StepDone(1, "rolled out"), SYSTEM, NOW + timedelta(seconds=5))
    step = done.session.steps[0]
    assert (step.state, step.attempt, step.detail, step.since) == (
        StepState.DONE,
        1,
        "rolled out",
        NOW + timedelta(seconds=5),
    )
    assert [e.kind for e in done.events] == ["deploy_step_done"]
    assert done.session.state is SessionState.DEPLOYING


def test_a_failed_step_fails_the_session_opens_an_incident_and_a_retry_resolves_it() -> None:
    s = session_with(StepProgress("smoke", "command", StepState.RUNNING, attempt=1))
    failed = apply(s, StepFailed(1, "exit 3: boom"), SYSTEM, NOW)
    assert failed.session.state is SessionState.FAILED
    assert [e.kind for e in failed.events] == [
        "deploy_step_failed",
        "session_failed",
        "incident_opened",
        "state_changed",
    ]
    incident = failed.session.incident
    assert incident is not None
    assert (incident.probe, incident.summary) == ("deploy step 1", "exit 3: boom")
    assert failed.session.outcome_reason == "step 1 (smoke) failed: exit 3: boom"
    # Resolving would skip the step: refused; a retry deploys again.
    with pytest.raises(DomainError, match="Step 1 of the deploy failed: retry it or roll back"):
        from bot.domain.commands import Resolve

        apply(failed.session, Resolve("fine"), ONCALL, NOW)
    with pytest.raises(PermissionDenied):
        apply(failed.session, RetryStep(1), Actor("U0OUTSIDER"), NOW)
    retried = apply(failed.session, RetryStep(1), ONCALL, NOW)
    assert retried.session.state is SessionState.DEPLOYING
    assert retried.session.steps[0].state is StepState.PENDING
    assert retried.session.open_incident is None
    again = apply(retried.session, StartStep(1), SYSTEM, NOW).session
    assert again.steps[0].attempt == 2


def test_continue_takes_a_member_of_the_pause_roles_once() -> None:
    s = session_with(StepProgress("judge", "pause", StepState.WAITING, attempt=1, since=NOW))
    with pytest.raises(PermissionDenied, match="only members of sre can"):
        apply(s, ContinueStep(1, ("sre",)), ONCALL, NOW)
    sre = Actor("U0SRE", frozenset({"sre"}))
    first = apply(s, ContinueStep(1, ("sre",)), sre, NOW + timedelta(minutes=1))
    assert first.session.steps[0].continued_by == "U0SRE"
    assert first.session.steps[0].since == NOW  # still waiting since the pause began
    assert apply(first.session, ContinueStep(1, ("sre",)), sre, NOW).events == ()


def test_people_may_not_finish_a_deploy_the_bot_runs() -> None:
    from bot.domain.commands import FinishDeployment

    s = session_with(StepProgress("kubectl", "kubernetes", StepState.RUNNING, attempt=1))
    operator = Actor("U0OPS", frozenset({"ops"}))
    with pytest.raises(DomainError, match="deploybot runs this deploy's steps"):
        apply(s, FinishDeployment(), operator, NOW)
    assert apply(s, FinishDeployment(), SYSTEM, NOW).session.state is SessionState.VERIFYING


def test_steps_survive_storage_as_json() -> None:
    step = StepProgress("judge", "pause", StepState.WAITING, 2, NOW, "waiting", "U0SRE")
    assert StepProgress.from_json(step.to_json()) == step


# --- config --------------------------------------------------------------------------------


def test_a_plan_is_a_list_or_a_mapping_and_templates_only_known_values() -> None:
    listed = DeployPlan.model_validate([{"kind": "command", "argv": ["deploy", "{version}"]}])
    assert listed.on_failure == "rollback"
    with pytest.raises(ValidationError, match=r"unknown placeholder '\{token\}'"):
        DeployPlan.model_validate([{"kind": "command", "argv": ["x", "{token}"]}])
    with pytest.raises(ValidationError, match="either 'duration' or 'continue_by'"):
        PauseStep.model_validate({"duration": "1m", "continue_by": ["sre"]})
    with pytest.raises(DomainError, match="need a version"):
        check_version(listed, "prod", "api", "")
    with pytest.raises(DomainError, match="must be an image tag"):
        check_version(listed, "prod", "api", "v1;rm")
    check_version(listed, "prod", "api", "v1.4.2")


def write_config(tmp_path: Path, deploy: Any, **environment: Any) -> Path:
    (tmp_path / "checklist.yaml").write_text(
        yaml.safe_dump({"sections": [{"title": "Go", "items": [{"text": "ready"}]}]})
    )
    config = {
        "roles": {"deployers": ["U0DEPLOYER"], "sre": ["U0SRE"]},
        "environments": {
            "prod": {
                "channel": "#deploys",
                "checklist": "checklist.yaml",
                "starters": ["deployers"],
                "deploy": deploy,
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
    "timeout": "5m",
}


def test_the_plan_says_what_each_step_would_send_and_run(tmp_path: Path) -> None:
    config = load_config(
        write_config(
            tmp_path,
            {
                "on_failure": "ask",
                "steps": [
                    KUBE_STEP,
                    {"kind": "command", "argv": ["./smoke", "{service}", "{previous_version}"]},
                    {"kind": "pause", "continue_by": ["sre"], "timeout": "30m"},
                ],
            },
        )
    )
    on_failure, steps = plan_steps(config, "prod", "v2", service="api", previous="v1")
    assert on_failure == "on failure: page and ask (Roll back, Retry step)"
    assert [s.name for s in steps] == [
        "kubernetes: set image api -n prod",
        "command: ./smoke {service} {previous_version}",
        "pause until sre continue",
    ]
    assert '"image": "registry.example/api:v2"' in steps[0].does[1]
    assert steps[1].does == ('run ["./smoke", "api", "v1"] (timeout 10m)',)
    assert steps[2].does == ("wait up to 30m for sre to click Continue; then fail",)


def test_deploybot_deploy_plan_prints_the_steps_without_doing_them(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from bot.cli import app

    config = write_config(
        tmp_path, [KUBE_STEP, {"kind": "command", "argv": ["./smoke", "{version}"]}]
    )
    result = CliRunner().invoke(app, ["deploy", "plan", "prod", "v9", "--config", str(config)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "1. kubernetes: set image api -n prod"
    assert '"image": "registry.example/api:v9",' in result.output
    assert "2. command: ./smoke {version}" in lines
    assert '   run ["./smoke", "v9"] (timeout 10m)' in lines
    assert lines[-1] == "on failure: page and ask (Roll back, Retry step)"  # no rollback here
    refused = CliRunner().invoke(app, ["deploy", "plan", "prod", "v9;x", "--config", str(config)])
    assert refused.exit_code == 1
    assert "must be an image tag" in refused.output


# --- Kubernetes ----------------------------------------------------------------------------


def kubectl_for(server: FakeKube, directory: Path) -> Kubectl:
    if not os.access(KUBECTL, os.X_OK):
        if os.environ.get("CI") == "true":
            pytest.fail(f"kubectl is not installed at {KUBECTL} (never skipped in CI)")
        pytest.skip(f"kubectl is not installed at {KUBECTL}")
    (directory / "home").mkdir(parents=True, exist_ok=True)
    return Kubectl(server.kubeconfig(directory / "kubeconfig"), directory / "home")


def two_containers(server: FakeKube) -> None:
    """api (v1) with a log sidecar, rolled out."""
    server.create_deployment(NS, "api", image="registry.example/api:v1", replicas=2)
    deployment = server.get("deployments", NS, "api")
    containers = deployment["spec"]["template"]["spec"]["containers"]
    containers.append({"name": "logs", "image": "registry.example/fluent-bit:3"})
    server.patch(
        "deployments",
        NS,
        "api",
        {"spec": {"template": {"spec": deployment["spec"]["template"]["spec"]}}},
    )
    server.reconcile(NS, "api")


def test_the_kubernetes_step_leaves_what_kubectl_set_image_leaves(tmp_path: Path) -> None:
    cause = "deploybot: deploy #3 prod api v2 by U0DEPLOYER"
    target = KubeTarget(("api",), {"api": "registry.example/api:v2"}, NS, None)
    with FakeKube(seed=11) as ours, FakeKube(seed=11) as theirs:
        two_containers(ours)
        two_containers(theirs)
        env = {"KUBECONFIG": str(ours.kubeconfig(tmp_path / "ours.kubeconfig"))}
        said = set_images(target, cause, environ=env)
        assert said == "deployment/api image updated (api=registry.example/api:v2 -n prod)"

        kubectl = kubectl_for(theirs, tmp_path / "theirs")
        done = kubectl("set", "image", "deployment/api", "api=registry.example/api:v2", "-n", NS)
        assert done.returncode == 0, done.stderr
        annotate = kubectl("annotate", "deployment/api", f"{CHANGE_CAUSE}={cause}", "-n", NS)
        assert annotate.returncode == 0, annotate.stderr

        (sent,) = [r for r in ours.requests if r.method == "PATCH"][-1:]
        (set_image,) = [
            r for r in theirs.requests if r.method == "PATCH" and r.user_agent.startswith("kubectl")
        ][:1]
        assert sent.content_type == set_image.content_type == STRATEGIC_MERGE
        # The same spec patch as kubectl's, with the change-cause in the same request.
        assert sent.body["spec"] == set_image.body["spec"]
        assert sent.body["metadata"] == {"annotations": {CHANGE_CAUSE: cause}}

        after, expected = ours.reconcile(NS, "api"), theirs.reconcile(NS, "api")
        assert after["spec"] == expected["spec"]
        assert after["metadata"]["annotations"] == expected["metadata"]["annotations"]
        # Deployments count annotation changes too: one PATCH here, kubectl's two there.
        assert after["metadata"]["generation"] == expected["metadata"]["generation"] - 1
        assert after["status"]["observedGeneration"] == after["metadata"]["generation"]
        containers = after["spec"]["template"]["spec"]["containers"]
        assert [(c["name"], c["image"]) for c in containers] == [
            ("api", "registry.example/api:v2"),
            ("logs", "registry.example/fluent-bit:3"),
        ]


def test_the_rollout_is_judged_as_kubectl_rollout_status_does(tmp_path: Path) -> None:
    target = KubeTarget(("api",), {"api": "registry.example/api:v2"}, NS, None)
    with FakeKube(seed=5) as kube:
        kube.create_deployment(NS, "api", replicas=2)
        kube.reconcile(NS, "api")
        env = {"KUBECONFIG": str(kube.kubeconfig(tmp_path / "kubeconfig"))}
        set_images(target, "deploy #1", environ=env)
        kube.reconcile(NS, "api", ready=False)
        done, status = rollout_progress(target, environ=env)
        assert not done
        assert status.startswith('Waiting for deployment "api" rollout to finish')
        kube.reconcile(NS, "api", ready=True)
        assert rollout_progress(target, environ=env) == (
            True,
            'deployment "api" successfully rolled out',
        )
        kube.stall(NS, "api")
        with pytest.raises(StepError, match="exceeded its progress deadline"):
            rollout_progress(target, environ=env)


def test_a_container_the_template_lacks_is_refused_as_kubectl_does() -> None:
    deployment = {
        "metadata": {"name": "api"},
        "spec": {"template": {"spec": {"containers": [{"name": "api", "image": "a:1"}]}}},
    }
    with pytest.raises(StepError, match='unable to find container named "web"'):
        set_image_patch(deployment, {"web": "a:2"}, "x")
    assert set_image_patch(deployment, {"api": "a:1"}, "x") is None


# --- commands ------------------------------------------------------------------------------


def test_a_command_streams_its_output_redacted_a_few_lines_at_a_time() -> None:
    env = step_environment(["DEPLOY_TOKEN"], {"DEPLOY_TOKEN": "s3cr3t-value-123", "HOME": "/"})
    script = (
        "for i in 1 2 3 4 5 6 7; do echo line $i $DEPLOY_TOKEN; done; echo xoxb-1234-5678-abcdefgh"
    )
    said: list[list[str]] = []
    result = run_command(
        [sys.executable, "-c", f"import os; os.system({script!r})"], env, 30, said.append
    )
    assert [len(chunk) for chunk in said] == [5, 3]
    text = "\n".join(line for chunk in said for line in chunk)
    assert "s3cr3t-value-123" not in text and "xoxb-1234" not in text
    assert said[0][0].startswith("line 1 ") and said[0][0] != "line 1 "
    assert result.startswith(f"{sys.executable} -c")
    with pytest.raises(StepError, match="exit 3: failed here"):
        run_command(
            [sys.executable, "-c", "print('failed here'); raise SystemExit(3)"],
            env,
            30,
            said.append,
        )


# --- pauses, on an injected clock ------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def runner_for(
    tmp_path: Path, factory: sessionmaker[Session], deploy: Any, **environment: Any
) -> tuple[DeploySteps, DeployService, Clock, int]:
    config = load_config(write_config(tmp_path, deploy, **environment))
    clock = Clock()
    service = DeployService(config=config, session_factory=factory, clock=clock)
    session = service.open(environment="prod", user_id="U0DEPLOYER", version="v2")
    assert session.id is not None
    service.act(session.id, StartDeployment(), "U0DEPLOYER")
    return DeploySteps(config=config, service=service, poll=5.0), service, clock, session.id


def test_a_pause_ends_when_someone_clicks_continue(
    tmp_path: Path, session_factory: sessionmaker[Session]
) -> None:
    pause = {"kind": "pause", "continue_by": ["sre"], "timeout": "1h"}
    runner, service, clock, sid = runner_for(
        tmp_path, session_factory, {"on_failure": "ask", "steps": [pause]}
    )
    with pytest.raises(Defer):
        runner.execute(sid)
    assert service.get(sid).steps[0].state is StepState.WAITING
    with pytest.raises(PermissionDenied):
        continue_pause(service, sid, 1, "U0DEPLOYER", request=None)
    clock.now += timedelta(minutes=59)
    continue_pause(service, sid, 1, "U0SRE", request=None)
    runner.execute(sid)
    session = service.get(sid)
    assert session.state is SessionState.VERIFYING
    assert session.steps[0].detail == "<@U0SRE> continued"
    kinds = [e.kind for e in service.history(sid) if e.kind.startswith("deploy")]
    assert kinds == [
        "deployment_started",
        "deploy_step_started",
        "deploy_step_applied",
        "deploy_step_continued",
        "deploy_step_done",
        "deployment_finished",
    ]


def test_a_pause_nobody_continues_fails_at_its_timeout(
    tmp_path: Path, session_factory: sessionmaker[Session]
) -> None:
    pause = {"kind": "pause", "continue_by": ["sre"], "timeout": "30m"}
    runner, service, clock, sid = runner_for(
        tmp_path, session_factory, {"on_failure": "ask", "steps": [pause]}
    )
    with pytest.raises(Defer):
        runner.execute(sid)
    clock.now += timedelta(minutes=29, seconds=59)
    with pytest.raises(Defer):
        runner.execute(sid)
    clock.now += timedelta(seconds=1)
    runner.execute(sid)
    session = service.get(sid)
    assert session.state is SessionState.FAILED
    assert session.steps[0].state is StepState.FAILED
    assert session.outcome_reason == (
        "step 1 (pause until sre continue) failed: nobody clicked Continue in 30m"
    )


def test_a_timed_pause_and_one_that_goes_on_at_its_timeout() -> None:
    waiting = StepProgress("p", "pause", StepState.WAITING, 1, NOW)
    timed = PauseStep(duration=timedelta(minutes=10))
    assert pause_outcome(timed, waiting, NOW + timedelta(minutes=9)).waits
    assert pause_outcome(timed, waiting, NOW + timedelta(minutes=10)).detail == "paused 10m"
    going = PauseStep(continue_by=("sre",), timeout=timedelta(minutes=5), on_timeout="continue")
    late = pause_outcome(going, waiting, NOW + timedelta(minutes=5))
    assert (late.waits, late.detail) == (False, "nobody clicked Continue in 5m; going on")


def test_a_step_claimed_before_a_crash_is_reported_interrupted_not_run_again(
    tmp_path: Path, session_factory: sessionmaker[Session]
) -> None:
    runs: list[list[str]] = []

    def command(argv: list[str], env: Any, timeout: float, emit: Any) -> str:
        runs.append(argv)
        raise KeyboardInterrupt  # the process dies mid-step

    step = {"kind": "command", "argv": ["./migrate", "{version}"]}
    runner, service, _, sid = runner_for(
        tmp_path, session_factory, {"on_failure": "ask", "steps": [step]}
    )
    runner.command = command
    with pytest.raises(KeyboardInterrupt):
        runner.execute(sid)
    assert service.get(sid).steps[0].state is StepState.RUNNING
    runner.execute(sid)  # another replica takes the row over
    assert runs == [["./migrate", "v2"]]
    session = service.get(sid)
    assert session.state is SessionState.FAILED
    assert session.steps[0].detail is not None
    assert session.steps[0].detail.startswith("interrupted by a restart")
