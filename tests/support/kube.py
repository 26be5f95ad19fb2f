"""The fake Kubernetes API server (now :mod:`sandbox.kube`), and the real kubectl for tests."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sandbox.kube import (
    RESOURCES,
    SERVER_VERSION,
    ApiError,
    FakeKube,
    Request,
    Resource,
    json_patch,
    merge_patch,
    strategic_merge_patch,
)

__all__ = [
    "KUBECTL",
    "RESOURCES",
    "SERVER_VERSION",
    "ApiError",
    "FakeKube",
    "Kubectl",
    "Request",
    "Resource",
    "json_patch",
    "merge_patch",
    "strategic_merge_patch",
]

KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"


@dataclass(frozen=True)
class Kubectl:
    """The real kubectl, pointed at a kubeconfig, with a private HOME (its discovery cache).

    Args:
        kubeconfig: The kubeconfig to use (``FakeKube.kubeconfig``).
        home: An empty directory for HOME.
    """

    kubeconfig: Path
    home: Path

    def _argv(self, args: tuple[str, ...]) -> tuple[list[str], dict[str, str]]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
        env["HOME"] = str(self.home)
        return [KUBECTL, "--kubeconfig", str(self.kubeconfig), *args], env

    def __call__(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run ``kubectl ARGS`` to completion; its exit status, stdout and stderr."""
        argv, env = self._argv(args)
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)

    def start(self, *args: str) -> subprocess.Popen[str]:
        """Start ``kubectl ARGS`` in the background (``rollout status`` that waits)."""
        argv, env = self._argv(args)
        return subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
