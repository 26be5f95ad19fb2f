"""Markdown runbooks turned into checklists, probe suggestions and rollback steps."""
