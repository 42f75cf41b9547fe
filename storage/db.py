"""Engines, sessions and schema upgrades for SQLite and PostgreSQL.

SQLite is the embedded default; it gets WAL, foreign keys and a busy timeout so that the
daemon and a CLI command can use one file at the same time.  PostgreSQL is the way to run
several daemons on one database.  The schema is only ever changed by Alembic revisions,
applied by :func:`upgrade` (``warrantyd db upgrade``, and automatically by ``run``/``check``).

Whether a database is current is read without Alembic (:func:`schema_is_current`): a CLI
command on a current database never loads it, and the daemon migrates in a child process
(``python -m warrantyd.storage.db``), so Alembic and the revisions (~11 MiB) are never part
of the long-running process.
"""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:  # Alembic is imported by the upgrade only: a worker never migrates
    from alembic.config import Config as AlembicConfig

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_SECONDS = 30
"""How long a transaction waits for SQLite's write lock before it fails."""
READING = "warrantyd_reading"
"""The execution option of :meth:`Database.reading` sessions (SQLite: no write lock)."""


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
            # busy_timeout.  Readers are not blocked (WAL), so a session only for reading
            # (Database.reading) takes no lock at all.
            if conn.get_execution_options().get(READING):
                conn.exec_driver_sql("BEGIN DEFERRED")
            else:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


_REVISION_LINE = re.compile(
    r"^(revision|down_revision)\s*(?::[^=\n]*)?=\s*(?:'([^']*)'|\"([^\"]*)\"|None)", re.M)


@cache
def head_revision(versions: Path = MIGRATIONS_DIR / "versions") -> str:
    """The newest revision, read from the revision files (``revision = '0006'``,
    ``down_revision = '0005'``): the one no other revision builds on."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in versions.glob("*.py"):
        found = {m.group(1): m.group(2) or m.group(3) for m in
                 _REVISION_LINE.finditer(path.read_text(encoding="utf-8"))}
        if found.get("revision"):
            revisions.add(found["revision"])
            if found.get("down_revision"):
                parents.add(found["down_revision"])
    heads = sorted(revisions - parents)
    if len(heads) != 1:
        raise RuntimeError(f"the schema revisions in {versions} have {len(heads)} heads "
                           f"({', '.join(heads) or 'none'}); the package is damaged, reinstall it")
    return heads[0]


def schema_is_current(engine: Engine) -> bool:
    """Whether the database is at :func:`head_revision` (a new database is not).  A reading
    connection: on SQLite it waits for no writer (a CLI command beside a busy daemon)."""
    try:
        with engine.execution_options(**{READING: True}).connect() as connection:
            found = connection.exec_driver_sql(
                "SELECT version_num FROM alembic_version").scalars().all()
    except DBAPIError:  # no alembic_version table: nothing was ever migrated
        return False
    return list(found) == [head_revision()]


def upgrade_in_child(url: str, timeout: float = 3600.0) -> None:
    """:func:`upgrade` to the newest revision in a child process, for the daemon: Alembic is
    loaded, used once, and leaves with the child.  The URL (it may carry a password) goes
    over stdin, not the command line.  A failure raises with the child's own reason."""
    child = subprocess.run([sys.executable, "-m", "warrantyd.storage.db"], input=url,
                           capture_output=True, text=True, timeout=timeout, check=False)
    if child.returncode != 0:
        lines = [line for line in child.stderr.splitlines() if line.strip()]
        raise RuntimeError(f"the schema upgrade failed: {lines[-1] if lines else 'no output'}")


def alembic_config(url: str) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

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
    from alembic import command

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


class SqliteWriterTurn:
    """Whose turn it is to write to one SQLite database: threads of this process, and the
    processes of the daemon (its processing worker, a CLI command) between each other.

    Every transaction on SQLite takes the write lock (``BEGIN IMMEDIATE``), and whoever finds
    it taken waits in SQLite's busy handler, which sleeps 1, 2, 5, 10, 15 ms ... between
    tries: the sender, waiting behind processing, slept through most of the gaps between
    its transactions.  Here a thread waits on a lock that wakes it as soon as it is free, and
    a process on a lock file next to the database (``<file>-writer``) that it tries every
    fraction of a millisecond, so the writers take turns at the pace of their transactions.
    A program that does not take the turn (the ``sqlite3`` shell) still meets SQLite's own
    lock and busy handler.  Re-entrant within a thread.
    """

    POLL_SECONDS = (0.0001, 0.0002, 0.0005, 0.001)
    """Waits between tries of the lock file: short at first, 1 ms at most."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._threads = threading.RLock()
        self._depth = 0  # changed only by the thread holding _threads
        self._fd: int | None = None

    @contextmanager
    def __call__(self, timeout: float) -> Iterator[None]:
        if not self._threads.acquire(timeout=timeout):
            raise TimeoutError(f"the SQLite database {self.path} stayed locked by another "
                               f"thread of this process for {timeout:g} s")
        try:
            self._depth += 1
            if self._depth == 1 and self.path is not None:
                self._lock_file(time.monotonic() + timeout, timeout)
            try:
                yield
            finally:
                if self._depth == 1 and self._fd is not None:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._depth -= 1
            self._threads.release()

    def close(self) -> None:
        """Close the lock file (its database was disposed of); it opens again when needed."""
        with self._threads:
            if self._fd is not None and self._depth == 0:
                os.close(self._fd)
                self._fd = None

    def _lock_file(self, deadline: float, timeout: float) -> None:
        if self._fd is None:
            self._fd = os.open(f"{self.path}-writer", os.O_RDWR | os.O_CREAT, 0o600)
        tries = 0
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the SQLite database {self.path} stayed locked by another process for "
                    f"{timeout:g} s; is a warrantyd command or a second daemon stuck on it?")
            time.sleep(self.POLL_SECONDS[min(tries, len(self.POLL_SECONDS) - 1)])
            tries += 1


_SQLITE_TURNS: dict[str, SqliteWriterTurn] = {}
_SQLITE_TURNS_GUARD = threading.Lock()


def _sqlite_writer_turn(url: str, path: str | None) -> SqliteWriterTurn:
    """The one turn per SQLite database in this process (every Database on it shares it)."""
    with _SQLITE_TURNS_GUARD:
        return _SQLITE_TURNS.setdefault(url, SqliteWriterTurn(path))


def _sqlite_file(engine: Engine) -> str | None:
    """The file of a SQLite database; None for an in-memory one."""
    path = engine.url.database
    return str(Path(path).resolve()) if path and path != ":memory:" else None


class Database:
    """One engine and its session factory; the daemon keeps one, each CLI call makes one."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._reading_sessions = sessionmaker(self.engine.execution_options(**{READING: True}),
                                              expire_on_commit=False)
        self._writers = (_sqlite_writer_turn(self.engine.url.render_as_string(hide_password=False),
                                             _sqlite_file(self.engine))
                         if self.engine.dialect.name == "sqlite" else None)

    @property
    def is_postgresql(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def upgrade(self, *, in_child: bool = False) -> None:
        """Bring the schema to the newest revision, unless it is there already; ``in_child``
        migrates in a child process (see :func:`upgrade_in_child`)."""
        if schema_is_current(self.engine):
            return
        if in_child:
            upgrade_in_child(self.url)
        else:
            upgrade(self.engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in a transaction: committed on success, rolled back on any error."""
        with self._turn(), self.sessions() as session, session.begin():
            yield session

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A session for reading: one consistent snapshot, and on SQLite no write lock, so
        the daemon's other process (and this one's other threads) write meanwhile.

        Meant for reads; a write in it still works (SQLite takes the write lock at that
        statement, and fails at once if the snapshot is stale by then), so keep writes to
        :meth:`session`.  Committed at the end like any session.
        """
        if self._writers is None:
            with self.session() as session:
                yield session
            return
        with self._reading_sessions() as session, session.begin():
            yield session

    @contextmanager
    def _turn(self) -> Iterator[None]:
        """On SQLite, this transaction's turn to write (see :class:`SqliteWriterTurn`)."""
        if self._writers is None:
            yield
            return
        with self._writers(SQLITE_BUSY_SECONDS):
            yield

    def dispose(self) -> None:
        self.engine.dispose()
        if self._writers is not None:
            self._writers.close()


if __name__ == "__main__":  # upgrade_in_child: the URL comes on stdin
    _engine = make_engine(sys.stdin.read().strip())
    try:
        upgrade(_engine)
    finally:
        _engine.dispose()
