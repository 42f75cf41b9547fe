"""The schema, its migrations and store-first intake, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from warrantyd.storage.blobs import BlobNotFound, BlobStore
from warrantyd.storage.db import (
    SQLITE_BUSY_SECONDS,
    Database,
    head_revision,
    schema_is_current,
    upgrade,
)
from warrantyd.storage.inbound import store_inbound
from warrantyd.storage.models import Base, InboundMessage

RAW = b"From: a@example.com\r\nSubject: hi\r\nMessage-ID: <x@example.com>\r\n\r\nbody\r\n"


def test_migrations_match_models(database: Database) -> None:
    with database.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], f"models and migrations differ; add a revision: {diff}"


def test_upgrade_twice_is_harmless(database: Database) -> None:
    database.upgrade()


def test_the_newest_revision_is_read_without_alembic_and_agrees_with_it() -> None:
    from alembic.script import ScriptDirectory

    from warrantyd.storage.db import alembic_config

    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert head_revision() == script.get_current_head()


def test_a_database_is_current_only_at_the_newest_revision(db_url: str) -> None:
    db = Database(db_url)
    try:
        assert not schema_is_current(db.engine), "a new database"
        upgrade(db.engine, "0005")
        assert not schema_is_current(db.engine), "an older revision"
        db.upgrade()
        assert schema_is_current(db.engine)
    finally:
        db.dispose()


def test_the_daemon_migrates_in_a_child_and_never_loads_alembic(db_url: str,
                                                                tmp_path: Path) -> None:
    """Alembic and the revisions (~11 MiB) stay out of the long-running process: the daemon's
    start-up (``Service.prepare``) migrates a new database in a child, and recognises a
    current one without them."""
    script = ("import sys\n"
              "from warrantyd.daemon.config import parse_config\n"
              "from warrantyd.daemon.service import Service\n"
              "from warrantyd.storage.db import schema_is_current\n"
              "config = parse_config({'company': {'name': 'Acme', 'timezone': 'UTC'},\n"
              "    'mailbox': {'address': 'w@acme.example', 'imap_host': 'x',\n"
              "                'imap_user': 'x'},\n"
              "    'smtp': {'host': 'x'}, 'database': {'url': sys.argv[1]},\n"
              "    'storage': {'data_dir': sys.argv[2]},\n"
              "    'staff': {'addresses': ['pat@acme.example']}})\n"
              "Service(config).prepare()\n"
              "service = Service(config)\n"
              "service.prepare()\n"
              "print(schema_is_current(service.db.engine), any(m.split('.')[0] == 'alembic' "
              "for m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", script, db_url, str(tmp_path / "data")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["True", "False"]


def test_a_current_database_is_recognised_while_another_process_writes(
        tmp_path: Path) -> None:
    """The check reads: a CLI command beside a daemon in a write does not wait for it."""
    db = Database(f"sqlite:///{tmp_path / 'w.sqlite3'}")
    db.upgrade()
    writer = sqlite3.connect(tmp_path / "w.sqlite3")
    try:
        writer.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        assert schema_is_current(db.engine)
        assert time.monotonic() - started < SQLITE_BUSY_SECONDS
    finally:
        writer.rollback()
        writer.close()
        db.dispose()


def test_a_failed_upgrade_in_a_child_says_why(db_url: str) -> None:
    db = Database(db_url)
    try:
        with db.engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE alembic_version "
                                       "(version_num VARCHAR(32) NOT NULL)")
            connection.exec_driver_sql("INSERT INTO alembic_version VALUES ('zz99')")
        with pytest.raises(RuntimeError, match=r"schema upgrade failed: .*zz99"):
            db.upgrade(in_child=True)
    finally:
        db.dispose()


def test_divisions_migration_keeps_existing_rows_and_their_links(db_url: str) -> None:
    """0004 on a database in use: homes and vendors that rows point at are rebuilt with a
    new unique key (per division) without losing a link, and everything is "main"."""
    db = Database(db_url)
    upgrade(db.engine, "0003")
    with db.engine.begin() as c:
        c.execute(text("INSERT INTO home (id, address, community) VALUES (7, '1 Elm St', 'Oak')"))
        c.execute(text("INSERT INTO homeowner (id, home_id, email, name) "
                       "VALUES (8, 7, 'dee@example.com', 'Dee')"))
        c.execute(text("INSERT INTO vendor (id, name, email, trades, communities, aliases, "
                       "active) VALUES (9, 'Ace', 'ace@example.com', '[]', '[]', '[]', true)"))
        c.execute(text("INSERT INTO service_request (id, status, requester_email, "
                       "requester_name, subject, body, home_id, homeowner_id, usage, "
                       "created_at, updated_at) VALUES (1, 'open', 'dee@example.com', 'Dee', "
                       "'s', 'b', 7, 8, '{}', '2026-01-01 00:00:00', '2026-01-01 00:00:00')"))
        c.execute(text("INSERT INTO work_order (id, service_request_id, status, trade, "
                       "priority, title, description, vendor_id, needs_vendor, photos, flags, "
                       "created_at, updated_at) VALUES (2, 1, 'in_progress', 'plumbing', "
                       "'routine', 't', 'd', 9, false, '[]', '[]', '2026-01-01 00:00:00', "
                       "'2026-01-01 00:00:00')"))
    db.upgrade()
    with db.engine.begin() as c:
        for table in ("home", "vendor", "service_request"):
            assert c.execute(text(f"SELECT division FROM {table}")).scalar_one() == "main"
        assert c.execute(text("SELECT vendor_id FROM work_order")).scalar_one() == 9
        assert c.execute(text("SELECT home_id FROM homeowner")).scalar_one() == 7
        # The same company and address may now be in another division, not twice in one.
        c.execute(text("INSERT INTO vendor (name, email, trades, communities, aliases, "
                       "active, division) VALUES ('Ace', 'ace@example.com', '[]', '[]', "
                       "'[]', true, 'north')"))
        c.execute(text("INSERT INTO home (address, community, division) "
                       "VALUES ('1 Elm St', 'Oak', 'north')"))
    with pytest.raises(IntegrityError), db.engine.begin() as c:
        c.execute(text("INSERT INTO vendor (name, email, trades, communities, aliases, active) "
                       "VALUES ('Ace 2', 'ace@example.com', '[]', '[]', '[]', true)"))
    if db.engine.dialect.name == "sqlite":  # enforced again after the upgrade
        with pytest.raises(IntegrityError), db.engine.begin() as c:
            c.execute(text("INSERT INTO homeowner (home_id, email, name) "
                           "VALUES (999, 'x@example.com', 'X')"))
    db.dispose()


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
