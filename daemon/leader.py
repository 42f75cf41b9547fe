"""Who reads the mailbox: one IMAP reader per mailbox, however many daemons run.

Several ``warrantyd run`` processes may share one PostgreSQL database.  They all process
stored mail and send the outbox (rows are claimed, so work spreads), but only one may read
and file the IMAP folder: two readers would fetch every message twice and race to move it.

The reader is whoever holds the *mailbox lock*:

- on PostgreSQL, a session-level advisory lock held on a dedicated connection.  When the
  holder dies, its connection closes and the server releases the lock at once; the others
  try again every few seconds, so one of them takes over within seconds.  If the holder's
  own connection breaks, it can no longer be sure it holds the lock, so it stops reading
  before anyone else can start.  Each division's mailbox has a lock of its own (keyed by
  its ``address/folder``), so each may be read by a different daemon;
- on SQLite, an exclusive ``flock`` on a file beside the database.  SQLite supports one
  daemon only; a second one on the same file logs so and waits.

The same dedicated-connection advisory locks claim inbound rows for processing
(:class:`RowClaims`): a claim lasts exactly as long as the process that took it, and
serialise start-up (:func:`startup_lock`): daemons started together must not upgrade the
schema or upsert the config's records at the same time.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import IO, Any, ClassVar, Protocol

from sqlalchemy import Connection, func, select, text

from warrantyd.storage.db import Database
from warrantyd.storage.models import InboundMessage, MailboxState

log = logging.getLogger("warrantyd.leader")

RETRY_SECONDS = 3.0
"""How often a daemon that is not the reader asks for the mailbox again."""
UNFILED_RECHECK_SECONDS = 5.0
"""How soon a reader looks again at finished mail it has not filed though the count of it
did not change (it finished during the reader's own pass)."""
CHECK_SECONDS = 2.0
"""How often the reader makes sure its lock connection is still alive."""
FILED_STATUSES = ("done", "ignored", "quarantined")
"""Statuses the reader files out of the folder (see ``warrantyd.daemon.intake``)."""
ROW_CLAIM_SPACE = 0x57_4E_44_01
"""First key of the two-key advisory locks that claim inbound rows (``WND\\x01``)."""


STARTUP_LOCK_KEY = int.from_bytes(hashlib.sha256(b"warrantyd-startup").digest()[:8], "big",
                                  signed=True)
"""The advisory lock a daemon holds while it upgrades the schema and syncs config records."""


def worker_name() -> str:
    """How this process names itself in logs and in ``mailbox_state.holder``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``name``."""
    digest = hashlib.sha256(b"warrantyd-mailbox:" + name.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class Lock(Protocol):
    def try_acquire(self) -> bool: ...
    def still_held(self) -> bool: ...
    def release(self) -> None: ...


class _DedicatedConnection:
    """One autocommit connection kept out of the pool, so a lock lives as long as it does."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.conn: Connection | None = None
        self._guard = threading.Lock()

    def scalar(self, sql: str, *, connect: bool = True, **params: Any) -> Any:
        """Run ``sql`` on the connection; open one first only if ``connect`` (a lock held on
        a connection that was closed is gone: a new connection does not bring it back)."""
        with self._guard:
            if self.conn is None:
                if not connect:
                    raise ConnectionError("the connection holding the lock was closed")
                self.conn = self.db.engine.connect().execution_options(
                    isolation_level="AUTOCOMMIT")
            return self.conn.execute(text(sql), params).scalar()

    def close(self) -> None:
        with self._guard:
            if self.conn is not None:
                with contextlib.suppress(Exception):
                    self.conn.invalidate()  # never hand a lock-holding connection back
                    self.conn.close()
                self.conn = None


@contextlib.contextmanager
def startup_lock(db: Database) -> Iterator[None]:
    """Hold the start-up lock for the ``with`` block (PostgreSQL; SQLite has one daemon).

    Daemons started together would otherwise run the migrations side by side and insert the
    same config vendor twice: the loser's unique violation ends that process before it
    ever reads mail.  The lock is session-level on a dedicated connection, so a daemon that
    dies while starting frees it at once.
    """
    if not db.is_postgresql:
        yield
        return
    connection = _DedicatedConnection(db)
    try:
        if not connection.scalar("SELECT pg_try_advisory_lock(:k)", k=STARTUP_LOCK_KEY):
            log.info("another daemon is starting on this database; waiting for it to finish "
                     "upgrading the schema and syncing records")
            connection.scalar("SELECT pg_advisory_lock(:k)", k=STARTUP_LOCK_KEY)
        yield
    finally:
        with contextlib.suppress(Exception):
            connection.scalar("SELECT pg_advisory_unlock(:k)", connect=False,
                              k=STARTUP_LOCK_KEY)
        connection.close()


class PostgresMailboxLock:
    """``pg_try_advisory_lock`` on a dedicated connection."""

    def __init__(self, db: Database, name: str) -> None:
        self.key = lock_key(name)
        self.connection = _DedicatedConnection(db)
        self.held = False

    def try_acquire(self) -> bool:
        try:
            self.held = bool(self.connection.scalar("SELECT pg_try_advisory_lock(:k)",
                                                    k=self.key))
        except Exception as exc:
            log.warning("could not ask PostgreSQL for the mailbox lock: %s", exc)
            self.connection.close()
            self.held = False
        return self.held

    def still_held(self) -> bool:
        if not self.held:
            return False
        try:
            self.connection.scalar("SELECT 1", connect=False)
            return True
        except Exception as exc:
            log.error("lost the connection that holds the mailbox lock (%s); another daemon "
                      "may take over the mailbox now, so this one stops reading it", exc)
            self.held = False
            self.connection.close()
            return False

    def release(self) -> None:
        if self.held:
            with contextlib.suppress(Exception):
                self.connection.scalar("SELECT pg_advisory_unlock(:k)", k=self.key)
        self.held = False
        self.connection.close()


class FileMailboxLock:
    """An exclusive ``flock`` beside the SQLite file: one daemon per SQLite database.

    Every mailbox reader of the daemon (one per division) asks for the same file: the
    first takes the ``flock`` and readers of the other mailboxes share it, so one daemon
    reads all the mailboxes and a second daemon on the same file reads none of them (two
    ``flock`` calls from one process on two descriptors would exclude each other).  A
    second reader of the *same* mailbox is refused, as a second daemon would be.
    """

    _held: ClassVar[dict[Path, tuple[IO[bytes], set[str]]]] = {}
    """The ``flock`` this process holds per lock file, and the mailboxes sharing it."""
    _guard: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, path: Path | None, mailbox: str = "") -> None:
        self.path = path
        self.mailbox = mailbox
        self.handle: IO[bytes] | None = None

    def try_acquire(self) -> bool:
        if self.path is None:  # an in-memory database cannot be shared anyway
            return True
        if self.handle is not None:
            return True
        with self._guard:
            held = self._held.get(self.path)
            if held is not None:
                handle, readers = held
                if self.mailbox in readers:
                    return False
                readers.add(self.mailbox)
                self.handle = handle
                return True
            handle = self.path.open("ab")
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                return False
            self._held[self.path] = (handle, {self.mailbox})
            self.handle = handle
            return True

    def still_held(self) -> bool:
        return self.path is None or self.handle is not None

    def release(self) -> None:
        if self.handle is None or self.path is None:
            return
        with self._guard:
            handle, readers = self._held.get(self.path, (self.handle, set()))
            readers.discard(self.mailbox)
            if not readers:
                self._held.pop(self.path, None)
                with contextlib.suppress(OSError):
                    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
                handle.close()
            self.handle = None


def mailbox_lock_for(db: Database, mailbox: str) -> Lock:
    if db.is_postgresql:
        return PostgresMailboxLock(db, mailbox)
    database = db.engine.url.database
    if not database or database == ":memory:":
        return FileMailboxLock(None, mailbox)
    return FileMailboxLock(Path(database).with_name(Path(database).name + ".mailbox-lock"),
                           mailbox)


class MailboxReader:
    """Runs the IMAP intake only while this process holds the mailbox lock.

    ``make_intake`` builds a fresh intake for each term as reader (an intake that stopped
    is not restarted).  Returns from :meth:`run` when :meth:`stop` is called.
    """

    def __init__(self, db: Database, mailbox: str,
                 make_intake: Callable[[], Any], *,
                 retry_seconds: float = RETRY_SECONDS,
                 check_seconds: float = CHECK_SECONDS) -> None:
        self.db = db
        self.mailbox = mailbox
        self.make_intake = make_intake
        self.retry_seconds = retry_seconds
        self.check_seconds = check_seconds
        self.lock = mailbox_lock_for(db, mailbox)
        self.intake: Any = None
        self.holding = False
        self._unfiled_seen = 0
        self._woken_at = 0.0
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()
        if self.intake is not None:
            self.intake.stop()

    async def run(self) -> None:
        if not self.db.is_postgresql:
            log.info("SQLite database: only one daemon may run on it (a second one waits for "
                     "the mailbox lock); use PostgreSQL to run several daemons")
        waiting_logged = False
        try:
            while not self._stop.is_set():
                if await asyncio.to_thread(self.lock.try_acquire):
                    waiting_logged = False
                    await self._read_while_holding()
                    continue
                if not waiting_logged:
                    waiting_logged = True
                    log.info("another daemon reads %s; this one processes stored mail and "
                             "sends the outbox, and asks for the mailbox again every %g s",
                             self.mailbox, self.retry_seconds)
                await self._sleep(self.retry_seconds)
        finally:
            await asyncio.to_thread(self.lock.release)

    async def _read_while_holding(self) -> None:
        self.holding = True
        log.info("this daemon (%s) now reads %s", worker_name(), self.mailbox)
        recorded = await asyncio.to_thread(self._record_holder, worker_name())
        intake = self.intake = self.make_intake()
        reading = asyncio.ensure_future(intake.run())
        try:
            while not reading.done():
                await asyncio.wait({reading}, timeout=self.check_seconds)
                if reading.done() or self._stop.is_set():
                    break
                if not await asyncio.to_thread(self.lock.still_held):
                    intake.stop()
                    break
                if not recorded:  # the folder's row appears at the first connect
                    recorded = await asyncio.to_thread(self._record_holder, worker_name())
                if self.db.is_postgresql:
                    await self._wake_for_others_work(intake)
            await _finish(reading)
        finally:
            if not reading.done():
                intake.stop()
                await _finish(reading)
            self.holding = False
            await asyncio.to_thread(self.lock.release)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._record_holder, None)
        if not self._stop.is_set():
            await self._sleep(self.retry_seconds)

    async def _wake_for_others_work(self, intake: Any) -> None:
        """Other daemons finish mail between this reader's passes; with IDLE the next pass
        could be many minutes away, so a reader files their work as it appears."""
        try:
            unfiled = await asyncio.to_thread(self._count_unfiled)
        except Exception as exc:
            log.warning("could not count the finished mail waiting to be filed: %s", exc)
            return
        # A changed count is new work; an unchanged one may be work that finished while a
        # pass was already filing (that pass missed it): look again, but not every check.
        now = asyncio.get_running_loop().time()
        if unfiled and (unfiled != self._unfiled_seen
                        or now - self._woken_at >= UNFILED_RECHECK_SECONDS):
            intake.wake()
            self._woken_at = now
        self._unfiled_seen = unfiled

    def _count_unfiled(self) -> int:
        with self.db.session() as session:
            return int(session.scalar(
                select(func.count()).select_from(InboundMessage).where(
                    InboundMessage.mailbox == self.mailbox,
                    InboundMessage.uid.is_not(None),
                    InboundMessage.moved.is_(False),
                    InboundMessage.status.in_(FILED_STATUSES))) or 0)

    def _record_holder(self, holder: str | None) -> bool:
        """Name the reader in ``mailbox_state.holder`` (for status pages); False when the
        folder has no row yet."""
        with self.db.session() as session:
            state = session.get(MailboxState, self.mailbox)
            if state is None:
                return False
            if holder is not None or state.holder == worker_name():
                state.holder = holder
            return True

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)


async def _finish(task: asyncio.Future[Any]) -> None:
    try:
        await task
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("the mailbox reader stopped with an error")


class RowClaims:
    """Claims on inbound rows for processing, one advisory lock per row (PostgreSQL).

    A claim is held on a dedicated connection, so it lasts exactly as long as this process:
    a daemon killed mid-mail leaves nothing behind for the others to wait out.  The
    processor still re-checks the row's status under ``FOR UPDATE`` when it writes, so
    even a claim given up early can never make a mail take effect twice.
    """

    def __init__(self, db: Database) -> None:
        self.connection = _DedicatedConnection(db)

    def try_claim(self, row_id: int) -> bool:
        try:
            return bool(self.connection.scalar("SELECT pg_try_advisory_lock(:a, :b)",
                                               a=ROW_CLAIM_SPACE, b=row_id))
        except Exception as exc:
            log.warning("could not claim inbound message %s: %s", row_id, exc)
            self.connection.close()
            return False

    def release(self, row_id: int) -> None:
        try:
            self.connection.scalar("SELECT pg_advisory_unlock(:a, :b)",
                                   a=ROW_CLAIM_SPACE, b=row_id)
        except Exception as exc:  # the connection is gone, and the claim with it
            log.warning("could not release the claim on inbound message %s: %s", row_id, exc)
            self.connection.close()

    def close(self) -> None:
        self.connection.close()


def row_claims_for(db: Database) -> RowClaims | None:
    """Claims are only needed where several daemons can share the database."""
    return RowClaims(db) if db.is_postgresql else None


async def poll_processing(process: Callable[[], Awaitable[int]], stop: asyncio.Event,
                          seconds: float) -> None:
    """Process stored mail every ``seconds`` until ``stop``: how a daemon that does not read
    the mailbox still does its share (and how mail stored by a reader that died gets done)."""
    await run_every(seconds, process, stop, "processing stored mail")


async def run_every(seconds: float, step: Callable[[], Awaitable[object]], stop: asyncio.Event,
                    what: str) -> None:
    """Await ``step`` every ``seconds`` until ``stop``; a failure is logged and retried."""
    while not stop.is_set():
        try:
            await step()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s failed; trying again in %g s", what, seconds)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)
