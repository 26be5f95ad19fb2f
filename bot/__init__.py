"""deploybot: production deployments as shared, audited Slack sessions."""
