"""The sandbox's Kubernetes cluster: the API server stand-in with its controllers on a timer.

:class:`~sandbox.kube.FakeKube` moves only when told to; here a thread runs its
deployment controller every ``interval`` seconds, so a ``rollout undo`` the bot sends
completes by itself as it would on a real cluster, and the bot's rollout probe sees it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot.integrations.kubernetes import rollout_status
from sandbox.demo import next_release, seed_cluster, set_image
from sandbox.kube import FakeKube

log = logging.getLogger(__name__)
REVISION = "deployment.kubernetes.io/revision"


class Cluster:
    """The demo cluster; starts reconciling when constructed, ``close()`` stops it all."""

    def __init__(
        self, *, interval: float = 0.5, on_change: Callable[[], None] = lambda: None
    ) -> None:
        self.kube = FakeKube()
        self.deployments = seed_cluster(self.kube)
        self.on_change = on_change
        self._interval = interval
        self._versions: dict[tuple[str, str], str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sandbox-cluster", daemon=True)
        self._thread.start()

    def kubeconfig(self, path: Path) -> Path:
        """Write a kubeconfig for the API server at ``path`` (context ``sandbox``)."""
        return self.kube.kubeconfig(path, context="sandbox")

    def roll_out(self, namespace: str, name: str) -> str:
        """Roll the Deployment to its next patch release (``kubectl set image``); the image.

        Raises:
            KeyError: no such Deployment.
        """
        if (namespace, name) not in self.deployments:
            raise KeyError(f"{namespace}/{name}")
        image = self._image(self.kube.get("deployments", namespace, name))
        new = next_release(image)
        set_image(self.kube, namespace, name, new)
        self.reconcile()
        return new

    def reconcile(self) -> None:
        """Run the controllers once for every Deployment; tell ``on_change`` if one moved."""
        moved = False
        for namespace, name in self.deployments:
            deployment = self.kube.reconcile(namespace, name)
            version = str(deployment["metadata"].get("resourceVersion"))
            if self._versions.get((namespace, name)) != version:
                self._versions[(namespace, name)] = version
                moved = True
        if moved:
            self.on_change()

    def describe(self) -> list[dict[str, Any]]:
        """Each Deployment as the page shows it: image, revision, replicas, rollout status."""
        rows = []
        for namespace, name in self.deployments:
            deployment = self.kube.get("deployments", namespace, name)
            status = deployment.get("status") or {}
            done, sentence = rollout_status(deployment)
            rows.append(
                {
                    "namespace": namespace,
                    "name": name,
                    "image": self._image(deployment),
                    "revision": deployment["metadata"].get("annotations", {}).get(REVISION, ""),
                    "replicas": deployment["spec"].get("replicas", 0),
                    "ready": status.get("readyReplicas", 0),
                    "rolled_out": done,
                    "status": sentence,
                }
            )
        return rows

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.kube.close()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.reconcile()
            except Exception:  # a controller hiccup must not stop the cluster for good
                log.exception("sandbox cluster: reconcile failed")

    @staticmethod
    def _image(deployment: dict[str, Any]) -> str:
        return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])
