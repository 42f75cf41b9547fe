"""Engines, sessions and schema upgrades for SQLite and PostgreSQL.

SQLite is the embedded default; it gets WAL, foreign keys and a busy timeout so that the
daemon and a CLI command can use one file at the same time.  PostgreSQL is the way to run
several daemons on one database.  The schema is only ever changed by Alembic revisions,
applied by :func:`upgrade` (``warrantyd db upgrade``, and automatically by ``run``/``check``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, event, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_SECONDS = 30
"""How long a transaction waits for SQLite's write lock before it fails."""


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url`` with the settings warrantyd relies on."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_SECONDS}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # pysqlite opens a transaction only at the first INSERT/UPDATE, so a SAVEPOINT
            # taken before it would commit on release and survive a rollback.  We take the
            # transaction ourselves (see _sqlite_begin) and tell pysqlite to keep out.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_SECONDS * 1000}")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # IMMEDIATE takes the write lock up front: a transaction that reads and then
            # writes can never fail half-way on a lock upgrade; waits are bounded by
            # busy_timeout.  Readers are not blocked (WAL).
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


def alembic_config(url: str) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema of ``engine``'s database to ``revision`` (the newest by default).

    SQLite cannot change a constraint in place: a migration copies the table and drops the
    old one, which enforced foreign keys refuse while any row points at it.  So they are off
    while migrating (the PRAGMA only takes effect outside a transaction) and every row is
    checked against them before the upgrade commits.
    """
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as connection:
        raw = connection.connection.driver_connection
        if sqlite:
            raw.execute("PRAGMA foreign_keys=OFF")
        try:
            with connection.begin():
                cfg.attributes["connection"] = connection
                command.upgrade(cfg, revision)
                broken = (connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                          if sqlite else [])
                if broken:
                    raise RuntimeError(
                        f"the schema upgrade left {len(broken)} rows pointing at rows that do "
                        f"not exist (first: {tuple(broken[0])}); nothing was changed — restore "
                        f"the database from a backup or report this")
        finally:
            if sqlite:
                raw.execute("PRAGMA foreign_keys=ON")


def savepoint_unless_locked(session: Session) -> AbstractContextManager[Any]:
    """A SAVEPOINT to catch losing a race to insert the same key (then: read the winner's
    row), except on SQLite: there the transaction holds the write lock since its ``BEGIN
    IMMEDIATE``, so no one else can have inserted since our SELECT, and the savepoint would
    only cost two statements."""
    if session.get_bind().dialect.name == "sqlite":
        return nullcontext()
    return session.begin_nested()


def insert_if_absent(session: Session, model: Any, values: dict[str, Any]) -> bool:
    """INSERT one row of ``model`` unless its primary or a unique key is taken; return whether
    it was inserted.  A concurrent transaction inserting the same key makes this one wait
    for it and then insert nothing — one statement, where a SAVEPOINT around an ORM insert
    costs three and a rollback to it."""
    dialect, table = session.get_bind().dialect.name, model.__table__
    # What the INSERT returns tells: the row count is not reported by every driver.
    if dialect == "postgresql":
        stmt: Any = postgresql.insert(table).values(**values).on_conflict_do_nothing()
    elif dialect == "sqlite":
        stmt = sqlite.insert(table).values(**values).on_conflict_do_nothing()
    else:  # pragma: no cover - the two supported databases
        stmt = insert(table).values(**values)
    return session.execute(stmt.returning(*table.primary_key.columns)).first() is not None


_SQLITE_WRITERS: dict[str, threading.RLock] = {}
_SQLITE_WRITERS_GUARD = threading.Lock()


def _sqlite_writer_lock(url: str) -> threading.RLock:
    """The one lock per SQLite database that this process's transactions take in turn.

    Every transaction on SQLite takes the write lock (``BEGIN IMMEDIATE``), and a thread
    that finds it taken waits in SQLite's busy handler, which sleeps 1, 2, 5, 10, 15 ms ...
    between tries: a sender thread waiting behind a processing thread slept through most
    of the gaps between its transactions.  Waiting here instead wakes a thread as soon as
    the lock is free.  Other processes (a CLI command) still wait in the busy handler.
    """
    with _SQLITE_WRITERS_GUARD:
        return _SQLITE_WRITERS.setdefault(url, threading.RLock())


class Database:
    """One engine and its session factory; the daemon keeps one, each CLI call makes one."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._writers = (_sqlite_writer_lock(self.engine.url.render_as_string(hide_password=False))
                         if self.engine.dialect.name == "sqlite" else None)

    @property
    def is_postgresql(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def upgrade(self) -> None:
        upgrade(self.engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in a transaction: committed on success, rolled back on any error."""
        with self._turn(), self.sessions() as session, session.begin():
            yield session

    @contextmanager
    def _turn(self) -> Iterator[None]:
        """On SQLite, this process's turn to write (see :func:`_sqlite_writer_lock`)."""
        if self._writers is None:
            yield
            return
        if not self._writers.acquire(timeout=SQLITE_BUSY_SECONDS):
            raise TimeoutError(f"the SQLite database {self.url} stayed locked by another "
                               f"thread for {SQLITE_BUSY_SECONDS} s")
        try:
            yield
        finally:
            self._writers.release()

    def dispose(self) -> None:
        self.engine.dispose()
