"""The schema, its migrations and store-first intake, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select

from warrantyd.storage.blobs import BlobNotFound, BlobStore
from warrantyd.storage.db import Database
from warrantyd.storage.inbound import store_inbound
from warrantyd.storage.models import Base, InboundMessage

RAW = b"From: a@example.com\r\nSubject: hi\r\nMessage-ID: <x@example.com>\r\n\r\nbody\r\n"


def test_migrations_match_models(database: Database) -> None:
    with database.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], f"models and migrations differ; add a revision: {diff}"


def test_upgrade_twice_is_harmless(database: Database) -> None:
    database.upgrade()


def test_store_inbound_is_idempotent_on_position_and_content(database: Database) -> None:
    with database.session() as s:
        row, created = store_inbound(s, mailbox="m/INBOX", uidvalidity=7, uid=1, raw=RAW)
        assert created
    with database.session() as s:
        again, created = store_inbound(s, mailbox="m/INBOX", uidvalidity=7, uid=1, raw=RAW)
        assert not created and again.id == row.id
    # The server renumbered its UIDs: same bytes, new position -> same row, new position.
    with database.session() as s:
        moved, created = store_inbound(s, mailbox="m/INBOX", uidvalidity=8, uid=1, raw=RAW)
        assert not created and moved.id == row.id
    with database.session() as s:
        rows = s.scalars(select(InboundMessage)).all()
        assert [(r.uidvalidity, r.uid) for r in rows] == [(8, 1)]


def test_blob_store_is_content_addressed(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    digest = store.put(b"photo")
    assert store.put(b"photo") == digest
    assert store.get(digest) == b"photo"
    try:
        store.get("0" * 64)
    except BlobNotFound as exc:
        assert "missing" in str(exc)
    else:
        raise AssertionError("a missing blob must raise BlobNotFound")


def test_a_rolled_back_savepoint_taken_first_leaves_nothing(database: Database) -> None:
    """A SAVEPOINT that is a transaction's first write must roll back with it (SQLite too)."""
    from warrantyd.storage.models import Setting

    class Boom(Exception):
        pass

    try:
        with database.session() as s:
            with s.begin_nested():
                s.add(Setting(key="claimed", value="1"))
            raise Boom
    except Boom:
        pass
    with database.session() as s:
        assert s.get(Setting, "claimed") is None
