"""work order listing indexes

Indexes behind ``wo list`` at archive scale: trigram indexes on the home's address and
community (staff type any part of either; PostgreSQL only, with the ``pg_trgm`` extension,
SQLite gets plain indexes of the same names), and a partial index over the active work
orders, newest first, which ``--needs-followup`` reads instead of the archive.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 00:51:57.990538
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACTIVE = sa.text("status IN ('draft', 'in_progress')")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # Trusted since PostgreSQL 13: the database owner may create it.
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    # The PostgreSQL-only arguments are ignored on SQLite, which gets plain indexes.
    with op.batch_alter_table('home', schema=None) as batch_op:
        batch_op.create_index('ix_home_address_trgm', ['address'], unique=False,
                              postgresql_using='gin', postgresql_ops={'address': 'gin_trgm_ops'})
        batch_op.create_index('ix_home_community_trgm', ['community'], unique=False,
                              postgresql_using='gin',
                              postgresql_ops={'community': 'gin_trgm_ops'})

    with op.batch_alter_table('work_order', schema=None) as batch_op:
        batch_op.create_index('ix_work_order_active_created_at', ['created_at', 'id'],
                              unique=False, postgresql_where=ACTIVE, sqlite_where=ACTIVE)


def downgrade() -> None:
    with op.batch_alter_table('work_order', schema=None) as batch_op:
        batch_op.drop_index('ix_work_order_active_created_at')

    with op.batch_alter_table('home', schema=None) as batch_op:
        batch_op.drop_index('ix_home_community_trgm')
        batch_op.drop_index('ix_home_address_trgm')
    # pg_trgm stays: other objects of the database may use it.
