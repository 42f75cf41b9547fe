"""work order homeowner_title

The title of a work order in the homeowner's language (the language model writes titles in
English for staff and, for mail in another language, a second one for the homeowner's own
mails).  NULL for every existing row: their mails keep the staff title.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 09:45:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('work_order', schema=None) as batch_op:
        batch_op.add_column(sa.Column('homeowner_title', sa.String(length=300), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('work_order', schema=None) as batch_op:
        batch_op.drop_column('homeowner_title')
