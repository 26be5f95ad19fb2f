"""Session summaries and digests of the frozen checklist and policy.

``/deploy list`` read every open session whole, parsing each one's checklist. The figures it
shows (items settled and in all, failing items, missing sign-offs) become columns that every
save keeps, with a partial index for the open sessions in id order; the checklist and policy
get a SHA-256 digest each, so a process parses each distinct one once.

Existing rows are filled here, from their stored JSON, by code of this migration's own (the
application's classes may change after it is written; this must not).

Revision ID: 2026_12_02_0006
Revises: 2026_12_01_0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "2026_12_02_0006"
down_revision: str | None = "2026_12_01_0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COUNTS = ("items_settled", "items_total", "items_failing", "signoffs_missing")
DIGESTS = ("checklist_digest", "policy_digest")
BATCH = 500
JSON = sa.JSON().with_variant(JSONB(), "postgresql")

sessions = sa.table(
    "deploy_sessions",
    sa.column("id", sa.Integer()),
    sa.column("checklist", JSON),
    sa.column("policy", JSON),
    sa.column("progress", JSON),
    *(sa.column(name, sa.Integer()) for name in COUNTS),
    *(sa.column(name, sa.String(64)) for name in DIGESTS),
)


def upgrade() -> None:
    for name in COUNTS:
        op.add_column(
            "deploy_sessions",
            sa.Column(name, sa.Integer(), nullable=False, server_default="0"),
        )
    for name in DIGESTS:
        op.add_column("deploy_sessions", sa.Column(name, sa.String(64), nullable=True))
    op.create_index(
        "ix_deploy_sessions_open_id",
        "deploy_sessions",
        ["id"],
        # As SQLAlchemy writes the flag on SQLite: there, a partial index serves only a
        # query whose WHERE says the index's own.
        sqlite_where=sa.text("is_open = 1"),
        postgresql_where=sa.text("is_open"),
    )
    _fill_existing_rows()


def downgrade() -> None:
    op.drop_index("ix_deploy_sessions_open_id", table_name="deploy_sessions")
    for name in (*DIGESTS, *COUNTS):
        op.drop_column("deploy_sessions", name)


def _fill_existing_rows() -> None:
    connection = op.get_bind()
    after = 0
    while True:
        rows = connection.execute(
            sa.select(sessions.c.id, sessions.c.checklist, sessions.c.policy, sessions.c.progress)
            .where(sessions.c.id > after)
            .order_by(sessions.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        connection.execute(
            sa.update(sessions)
            .where(sessions.c.id == sa.bindparam("row_id"))
            .values({name: sa.bindparam(name) for name in (*COUNTS, *DIGESTS)}),
            [_summary(row.id, row.checklist, row.policy, row.progress) for row in rows],
        )
        after = rows[-1].id


def _summary(
    row_id: int, checklist: dict[str, Any], policy: dict[str, Any], progress: dict[str, Any]
) -> dict[str, Any]:
    """The columns for one row, as ``bot.domain.summary.summary_of`` and
    ``bot.storage.frozen_parts.digest_of`` compute them for a session saved today."""
    items = (progress or {}).get("items") or {}
    statuses = [(items.get(item_id) or {}).get("status") for item_id in _item_ids(checklist)]
    signed = set((progress or {}).get("signoffs") or {})
    wanted = [rule.get("key") for rule in (policy or {}).get("signoffs") or ()]
    return {
        "row_id": row_id,
        "items_settled": sum(status in ("done", "skipped") for status in statuses),
        "items_total": len(statuses),
        "items_failing": sum(status == "failed" for status in statuses),
        "signoffs_missing": sum(key not in signed for key in wanted),
        "checklist_digest": _digest(checklist),
        "policy_digest": _digest(policy),
    }


def _item_ids(checklist: dict[str, Any]) -> Iterator[str]:
    def walk(item: dict[str, Any]) -> Iterator[str]:
        yield item.get("id") or ""
        for child in item.get("children") or ():
            yield from walk(child)

    for section in (checklist or {}).get("sections") or ():
        for item in section.get("items") or ():
            yield from walk(item)


def _digest(document: dict[str, Any]) -> str:
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()
