"""Re-exports the HTTPS Events v2 receiver, now :mod:`bot.sandbox.pagerduty`, for tests."""

from bot.sandbox.pagerduty import Alert, FakePagerDuty, Request, validate_event

__all__ = ["Alert", "FakePagerDuty", "Request", "validate_event"]
