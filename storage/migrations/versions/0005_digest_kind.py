"""digest kind

Follow-up digests are answered by reply like approval digests, so they are ``digest`` rows
too; ``kind`` tells them apart ("approval" for every existing row), because "since the last
digest" counts from the last approval digest only.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 03:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('digest', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=20), server_default='approval',
                                      nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('digest', schema=None) as batch_op:
        batch_op.drop_column('kind')
