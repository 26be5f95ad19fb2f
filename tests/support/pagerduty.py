"""Re-exports the HTTPS Events v2 receiver, now :mod:`sandbox.pagerduty`, for tests."""

from sandbox.pagerduty import Alert, FakePagerDuty, Request, validate_event

__all__ = ["Alert", "FakePagerDuty", "Request", "validate_event"]
