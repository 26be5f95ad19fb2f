"""Re-exports :mod:`sandbox.kube_controller` (the fake cluster's controllers) for tests."""

from sandbox.kube_controller import *  # noqa: F403
from sandbox.kube_controller import compute_hash, parse_label_selector

__all__ = ["compute_hash", "parse_label_selector"]
