"""Alembic migrations for deploybot's database (SQLite and PostgreSQL).

Configured in code by :func:`bot.storage.db.alembic_config`; run with ``deploybot db upgrade``.
"""
