"""divisions

Several mailboxes in one config, each with its own staff, vendors and homes: a ``division``
column on service requests, homes, vendors and digests (existing rows belong to "main", the
top-level ``[mailbox]``), vendor and home uniqueness per division (one company may serve two
divisions), and the envelope sender of each outbound mail.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 02:00:44.727191
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('digest', schema=None) as batch_op:
        batch_op.add_column(sa.Column('division', sa.String(length=100), server_default='main', nullable=False))
        batch_op.create_index(batch_op.f('ix_digest_division'), ['division'], unique=False)

    with op.batch_alter_table('home', schema=None) as batch_op:
        batch_op.add_column(sa.Column('division', sa.String(length=100), server_default='main', nullable=False))
        batch_op.drop_constraint(batch_op.f('uq_home_address'), type_='unique')
        batch_op.create_index(batch_op.f('ix_home_division'), ['division'], unique=False)
        batch_op.create_unique_constraint(batch_op.f('uq_home_division_address'), ['division', 'address'])

    with op.batch_alter_table('outbound_message', schema=None) as batch_op:
        batch_op.add_column(sa.Column('from_addr', sa.String(length=320), nullable=True))

    with op.batch_alter_table('service_request', schema=None) as batch_op:
        batch_op.add_column(sa.Column('division', sa.String(length=100), server_default='main', nullable=False))
        batch_op.create_index(batch_op.f('ix_service_request_division'), ['division'], unique=False)

    with op.batch_alter_table('vendor', schema=None) as batch_op:
        batch_op.add_column(sa.Column('division', sa.String(length=100), server_default='main', nullable=False))
        batch_op.drop_constraint(batch_op.f('uq_vendor_email'), type_='unique')
        batch_op.create_index(batch_op.f('ix_vendor_division'), ['division'], unique=False)
        batch_op.create_index(batch_op.f('ix_vendor_email'), ['email'], unique=False)
        batch_op.create_unique_constraint(batch_op.f('uq_vendor_division_email'), ['division', 'email'])



def downgrade() -> None:
    with op.batch_alter_table('vendor', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_vendor_division_email'), type_='unique')
        batch_op.drop_index(batch_op.f('ix_vendor_email'))
        batch_op.drop_index(batch_op.f('ix_vendor_division'))
        batch_op.create_unique_constraint(batch_op.f('uq_vendor_email'), ['email'])
        batch_op.drop_column('division')

    with op.batch_alter_table('service_request', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_service_request_division'))
        batch_op.drop_column('division')

    with op.batch_alter_table('outbound_message', schema=None) as batch_op:
        batch_op.drop_column('from_addr')

    with op.batch_alter_table('home', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_home_division_address'), type_='unique')
        batch_op.drop_index(batch_op.f('ix_home_division'))
        batch_op.create_unique_constraint(batch_op.f('uq_home_address'), ['address'])
        batch_op.drop_column('division')

    with op.batch_alter_table('digest', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_digest_division'))
        batch_op.drop_column('division')

