"""What the sandbox puts in front of the bot: its people, its cluster and its configuration.

The demo (``sandbox/demo_config/``, package data) has five people, the checkout service's
Deployment in a ``staging`` and a ``prod`` namespace (two revisions each, so a rollback has
somewhere to go) and health endpoints that follow what the cluster runs. A team's own configuration
(``--config``) gets the people its roles name, plus one who is in none.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from bot.config.schema import Config
from bot.domain.errors import DeployError
from sandbox.kube import FakeKube
from sandbox.services import DEFAULT_ORIGIN, DemoService

# Package data (pyproject's [tool.setuptools.package-data]): found in a wheel install too.
DEMO_DIR: Traversable = resources.files("sandbox") / "demo_config"
DEMO_FILES = ("deploybot.yaml", "runbook.md")
OUTSIDER = "U0OUTSIDER"
IMAGE = "registry.example/checkout"
RELEASES = ("v1.4.1", "v1.4.2")  # what each namespace ran before, and runs now


@dataclass(frozen=True)
class DemoUser:
    """Someone the page lets you act as.

    Attributes:
        id: The Slack user ID the bot sees.
        name: The name shown for them.
        title: What they are in the demo ("deployer", "QA lead").
    """

    id: str
    name: str
    title: str


DEMO_USERS = (
    DemoUser("U0DEPLOYER", "Dana Deployer", "deployer"),
    DemoUser("U0QALEAD", "Priya Shah", "approver: QA Lead"),
    DemoUser("U0OPSLEAD", "Marcus Webb", "approver: DevOps Lead"),
    DemoUser(OUTSIDER, "Olly Outsider", "in no role"),
    DemoUser("U0ONCALL", "Casey Oncall", "on-call"),
)

DEMO_SERVICES = (
    ("staging", "checkout", True),
    ("staging", "web", False),
    ("prod", "checkout", True),
    ("prod", "web", False),
)


def demo_services() -> list[DemoService]:
    """The services the demo config probes; checkout runs as ``deployment/checkout``."""
    return [
        DemoService(env, name, (env, name) if in_cluster else None)
        for env, name, in_cluster in DEMO_SERVICES
    ]


def seed_cluster(kube: FakeKube) -> list[tuple[str, str]]:
    """Create ``deployment/checkout`` in both namespaces, rolled from v1.4.1 to v1.4.2.

    Returns:
        ``(namespace, name)`` of the Deployments, for the sandbox to keep reconciling.
    """
    kube.add_node("sandbox-node-1")
    deployments = []
    for namespace in ("staging", "prod"):
        first, current = (f"{IMAGE}:{tag}" for tag in RELEASES)
        kube.create_deployment(namespace, "checkout", image=first, replicas=2)
        kube.reconcile(namespace, "checkout")
        set_image(kube, namespace, "checkout", current)
        kube.reconcile(namespace, "checkout")
        deployments.append((namespace, "checkout"))
    return deployments


def set_image(kube: FakeKube, namespace: str, name: str, image: str) -> None:
    """``kubectl set image deployment/NAME NAME=IMAGE``: a strategic merge patch."""
    patch = {"spec": {"template": {"spec": {"containers": [{"name": name, "image": image}]}}}}
    kube.patch("deployments", namespace, name, patch)


def next_release(image: str) -> str:
    """``registry/checkout:v1.4.2`` -> ``registry/checkout:v1.4.3`` (the page's "roll out")."""
    repository, _, tag = image.rpartition(":")
    head, _, patch = tag.rpartition(".")
    if not patch.isdigit():
        return f"{image}-next"
    return f"{repository}:{head}.{int(patch) + 1}"


def default_directory() -> Path:
    """Where the sandbox keeps its data between runs: ``$XDG_DATA_HOME/deploybot/sandbox``
    (``~/.local/share/deploybot/sandbox`` when XDG_DATA_HOME is not set)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "deploybot" / "sandbox"


def write_demo_config(
    directory: Path, origin: str, *, source: Traversable | Path = DEMO_DIR
) -> Path:
    """Copy the demo config and runbook into ``directory``, the services at ``origin``.

    Raises:
        DeployError: the demo files are not there (an install without its package data).
    """
    missing = [name for name in DEMO_FILES if not source.joinpath(name).is_file()]
    if missing:
        raise DeployError(
            f"the sandbox demo is missing ({source}): reinstall deploybot, or run a "
            "configuration of your own with `deploybot sandbox --config FILE`."
        )
    for name in DEMO_FILES:
        text = source.joinpath(name).read_text(encoding="utf-8")
        if name.endswith(".yaml"):
            text = text.replace(DEFAULT_ORIGIN, origin)
        (directory / name).write_text(text, encoding="utf-8")
    return directory / "deploybot.yaml"


def users_for(config: Config) -> list[DemoUser]:
    """The people a team's config names (user IDs in its roles), and one in no role."""
    people: dict[str, list[str]] = {}
    for role, members in config.roles.items():
        for member in members:
            if member[:1] in ("U", "W") and member.isalnum():
                people.setdefault(member, []).append(role)
    users = [DemoUser(uid, uid, ", ".join(roles)) for uid, roles in people.items()]
    outsider = OUTSIDER if OUTSIDER not in people else "U0NOROLE"
    return [*users, DemoUser(outsider, "Olly Outsider", "in no role")]


def user_groups(config: Config) -> dict[str, str]:
    """``@handle`` user groups the config names, as ``{group ID: handle}`` (no members)."""
    handles = sorted(
        {m.removeprefix("@") for members in config.roles.values() for m in members if m[:1] == "@"}
    )
    return {f"S0{i:04d}SANDBOX": handle for i, handle in enumerate(handles, start=1)}


def channels_of(config: Config) -> list[str]:
    """The channels the environments post in, deploy channels first, without duplicates."""
    names = [env.channel for env in config.environments.values()]
    names += [env.incident_channel for env in config.environments.values()]
    return list(dict.fromkeys(name.removeprefix("#") for name in names))


def clear_directory(directory: Path) -> None:
    """Remove what a previous sandbox run left in ``directory`` (its own files only)."""
    for name in ("sandbox.db", "sandbox.db-wal", "sandbox.db-shm", "sandbox.db.scheduler.lock"):
        (directory / name).unlink(missing_ok=True)
    for name in ("kubeconfig", *DEMO_FILES):
        (directory / name).unlink(missing_ok=True)
