"""Fixtures shared by the whole suite.

Test-support modules (fake servers, fixtures that start Dovecot, SMTP sinks) live in
``tests/support`` and are imported by their bare names.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from warrantyd.storage.db import Database

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
SHARED_DIR = REPO_ROOT.parent / "shared"
sys.path.insert(0, str(TESTS_DIR / "support"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared folder beside the checkout (corpus, eval); read-only."""
    if not SHARED_DIR.is_dir():
        pytest.fail(f"{SHARED_DIR} is missing: the corpus and eval mail must sit beside the repo")
    return SHARED_DIR


# --- databases: every test that asks for ``database`` runs on SQLite and on PostgreSQL ------

import os  # noqa: E402
import uuid  # noqa: E402

from sqlalchemy import create_engine, text  # noqa: E402

PG_ADMIN_URL = os.environ.get("WARRANTYD_TEST_POSTGRES",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PG_REQUIRED = bool(os.environ.get("WARRANTYD_TEST_POSTGRES"))


def _postgres_reachable() -> str | None:
    try:
        engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:
        return str(exc).splitlines()[0]


_PG_PROBLEM = _postgres_reachable()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    if _PG_PROBLEM is not None:
        if PG_REQUIRED:
            pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is required but unreachable: {_PG_PROBLEM}")
        pytest.skip(f"PostgreSQL unreachable ({_PG_PROBLEM}); "
                    "set WARRANTYD_TEST_POSTGRES to require it")
    name = f"wtest_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL for an empty database, once per backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'warrantyd.sqlite3'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def database(db_url: str) -> Iterator[Database]:
    """A migrated :class:`Database` on each backend."""
    db = Database(db_url)
    db.upgrade()
    yield db
    db.dispose()
