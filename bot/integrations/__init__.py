"""The outside world behind small interfaces: probes, Kubernetes, AWS, PagerDuty, rollback
targets. Each call has a timeout."""
