"""IMAP intake: the first step of the pipeline, store first and act second.

The intake owns one mailbox folder.  On each pass it

1. looks for UIDs it has not stored yet (a UID range search from the mailbox's first UID),
2. fetches each with ``BODY.PEEK[]`` and writes it as an ``inbound_message`` row, committed
   before anything else happens to it,
3. lets the processor work through the new rows,
4. files every row that is finished: ``done``/``ignored`` to ``processed_folder``,
   ``quarantined`` to ``failed_folder``, and marks it ``moved`` once the server confirmed.

Mail is never deleted, and mail is only moved after its row and the work it caused are
committed, so a crash at any point repeats work (which the row's uniqueness makes a no-op)
rather than losing it.

Waiting between passes is IDLE when the server has it (with a periodic full pass anyway,
because pushes can be missed) or polling.  The connection is supervised: aioimaplib does
not raise when a connection drops while idling, so every command has a deadline and is
raced against the connection's loss, and the intake reconnects with exponential backoff.

A first connect to a mailbox that already holds mail does not import it (the operator
asks with ``import_existing``): the mailbox's UIDNEXT at that moment is remembered as its
first UID, and the time as its cutoff.  If the server later renumbers the folder (a new
UIDVALIDITY), the cutoff says which of the renumbered messages are new to us; mail we
already stored is recognised by its content hash and only re-positioned.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.parser
import email.policy
import hashlib
import ipaddress
import logging
import re
import ssl
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update

from warrantyd.daemon.config import MailboxConfig
from warrantyd.daemon.imap import (
    IDLE_RENEW_SECONDS,
    ImapSession,
    ImapTrouble,
    SelectInfo,
    log_in,
)
from warrantyd.daemon.oauth import provider_for
from warrantyd.storage.db import Database
from warrantyd.storage.inbound import store_inbound
from warrantyd.storage.models import InboundMessage, MailboxState, Setting, utcnow

log = logging.getLogger("warrantyd.intake")

FILED_TO_PROCESSED = ("done", "ignored")
FILED_TO_FAILED = ("quarantined",)
MARK_MOVED_BATCH = 100
"""Filed rows marked ``moved`` per transaction, and moved per IMAP command."""
FETCH_BATCH = 20
"""Messages fetched per IMAP command: fewer round trips, a bounded amount of mail in hand."""
CUTOFF_SLACK = timedelta(seconds=1)
"""INTERNALDATE has one-second resolution: mail in the first-connect second counts as new."""


def mailbox_key(mailbox: MailboxConfig) -> str:
    """How rows name the folder they came from: ``address/folder``."""
    return f"{mailbox.address}/{mailbox.folder}"


def _cutoff_setting_key(key: str) -> str:
    name = f"intake.first_connect:{key}"
    if len(name) <= 100:
        return name
    return "intake.first_connect:" + hashlib.sha256(key.encode()).hexdigest()


_HEADER_END = re.compile(rb"\r?\n\r?\n")
"""The blank line after the header block."""


def _message_id(raw: bytes) -> str | None:
    """The Message-ID header, if any (headers only; the full parse is the processor's job)."""
    end = _HEADER_END.search(raw)  # the parser would split every line of a photo too
    try:
        headers = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(
            raw[:end.end()] if end else raw)
        value = headers.get("Message-ID")
    except Exception:
        return None
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text[:998] or None


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class ImapIntake:
    """Reads one IMAP folder into ``inbound_message`` rows and files finished mail."""

    def __init__(self, mailbox: MailboxConfig, db: Database, *,
                 process: Callable[[], Awaitable[object]],
                 stored: Callable[[], None] | None = None,
                 import_existing: bool = False,
                 ssl_context: ssl.SSLContext | None = None,
                 full_poll_seconds: float = 300.0,
                 reconnect_max_seconds: float = 60.0,
                 command_timeout: float = 30.0) -> None:
        self.mailbox = mailbox
        self.db = db
        self.process = process
        self.stored = stored
        """Told after each batch of a pass is stored: the processing worker starts on it
        while the rest of a backlog is fetched.  ``process`` is awaited at the end as ever."""
        self.import_existing = import_existing
        self.ssl_context = ssl_context
        self.full_poll_seconds = full_poll_seconds
        self.reconnect_max_seconds = reconnect_max_seconds
        self.command_timeout = command_timeout
        self.key = mailbox_key(mailbox)
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._stopping = False
        self._connected = False
        self._idle_supported: bool | None = None
        self._last_poll_at: datetime | None = None
        self._backlog = 0
        self._last_error: str | None = None
        self._uidvalidity: int | None = None
        self._first_uid = 1
        self._last_uid = 0
        self._store_failures: set[int] = set()
        self._warned_plaintext = False
        self.token_provider = (provider_for(mailbox.oauth_token_command,
                                            mailbox.oauth_token_file)
                               if mailbox.auth == "xoauth2" else None)

    # --- public ---------------------------------------------------------------------------

    @property
    def status(self) -> dict[str, Any]:
        """A snapshot for ``warrantyd status`` and ``/healthz``."""
        return {
            "mailbox": self.key,
            "connected": self._connected,
            "last_poll_at": self._last_poll_at.isoformat() if self._last_poll_at else None,
            "idle_supported": self._idle_supported,
            "backlog": self._backlog,
            "uidvalidity": self._uidvalidity,
            "last_error": self._last_error,
        }

    def stop(self) -> None:
        """Finish the mail in hand, log out and return from :meth:`run`."""
        self._stopping = True
        self._stop.set()
        self._wake.set()

    def wake(self) -> None:
        """End the current wait (IDLE or poll) and make a pass now: another daemon on the
        same database finished mail that this reader should file."""
        self._wake.set()

    async def run(self) -> None:
        """Read mail until :meth:`stop`; server and network trouble only cause reconnects."""
        first_delay = min(1.0, self.reconnect_max_seconds)
        delay = first_delay
        loop = asyncio.get_running_loop()
        while not self._stopping:
            session: ImapSession | None = None
            connected_at: float | None = None
            try:
                session = await self._open()
                connected_at = loop.time()
                self._last_error = None
                await self._serve(session)
            except ImapTrouble as exc:
                delay = self._backoff(delay, connected_at)
                self._last_error = str(exc)
                log.warning("IMAP %s: %s; %s", self.key, exc, self._next_step(delay))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = self._backoff(delay, connected_at)
                self._last_error = f"{type(exc).__name__}: {exc}"
                log.exception("intake of %s failed unexpectedly; the mail stays on the server; "
                              "%s", self.key, self._next_step(delay))
            finally:
                if session is not None:
                    await session.logout()
                await self._set_connected(False)
            if self._stopping:
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            delay = min(delay * 2, self.reconnect_max_seconds)
        log.info("intake of %s stopped", self.key)

    def _backoff(self, delay: float, connected_at: float | None) -> float:
        """The wait before the next connect.

        A connection that held for a while earns a quick retry; one that keeps failing
        right after login backs off like one that cannot connect at all.
        """
        now = asyncio.get_running_loop().time()
        if connected_at is not None and now - connected_at > max(self.reconnect_max_seconds, 1.0):
            return min(1.0, self.reconnect_max_seconds)
        return delay

    def _next_step(self, delay: float) -> str:
        return "stopping" if self._stopping else f"reconnecting in {delay:.1f} s"

    # --- connection -----------------------------------------------------------------------

    async def _open(self) -> ImapSession:
        mb = self.mailbox
        if (mb.imap_security == "none" and not _is_loopback(mb.imap_host)
                and not self._warned_plaintext):
            self._warned_plaintext = True
            log.warning("imap_security is \"none\": the password for %s crosses the network "
                        "unencrypted; use \"tls\" or \"starttls\"", mb.imap_user)
        session = await ImapSession.connect(mb.imap_host, mb.imap_port, mb.imap_security,
                                            ssl_context=self.ssl_context,
                                            timeout=self.command_timeout)
        try:
            await log_in(session, self.mailbox, self.token_provider)
            for folder in (mb.processed_folder, mb.failed_folder):
                if await session.ensure_folder(folder):
                    log.info("created folder %r in %s", folder, mb.address)
            info = await session.select(mb.folder)
            await self._sync_position(session, info)
        except BaseException:
            await session.logout()
            raise
        self._idle_supported = session.has("IDLE")
        await self._set_connected(True)
        log.info("connected to %s:%s (%s) as %s, folder %r, UIDVALIDITY %s, %s",
                 mb.imap_host, mb.imap_port, mb.imap_security, mb.imap_user, mb.folder,
                 info.uidvalidity,
                 "IDLE" if self._use_idle else f"polling every {mb.poll_seconds:g} s")
        return session

    @property
    def _use_idle(self) -> bool:
        return bool(self.mailbox.idle and self._idle_supported)

    async def _serve(self, session: ImapSession) -> None:
        """Passes and waits on one connection until stop or trouble."""
        loop = asyncio.get_running_loop()
        await self._pass(session, full=True, process_anyway=True)
        next_full = loop.time() + self.full_poll_seconds
        while not self._stopping:
            if self._use_idle:
                wait = max(0.0, min(IDLE_RENEW_SECONDS, next_full - loop.time()))
                self._wake.clear()
                await session.idle_until_new_mail(wait, self._wake)
            else:
                wait = max(0.0, min(self.mailbox.poll_seconds, next_full - loop.time()))
                self._wake.clear()
                await self._sleep_or_stop(session, wait)
            if self._stopping:
                break
            full = loop.time() >= next_full
            if full:
                next_full = loop.time() + self.full_poll_seconds
            await self._pass(session, full=full)

    async def _sleep_or_stop(self, session: ImapSession, seconds: float) -> None:
        stopper = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({stopper, session.lost}, timeout=seconds,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        if session.lost.done():
            raise ImapTrouble(f"{self.mailbox.imap_host} closed the connection")

    # --- position: UIDVALIDITY, first UID -------------------------------------------------

    async def _sync_position(self, session: ImapSession, info: SelectInfo) -> None:
        """Load or create this folder's MailboxState; handle a first connect and renumbering."""
        state = await asyncio.to_thread(self._load_state)
        uidnext = info.uidnext
        if state is None:
            first = 1 if self.import_existing else uidnext
            if first > 1:
                log.info("first connect to %s: %d message(s) already in %r are left alone "
                         "(start with --import-existing to import them)",
                         self.key, info.exists, self.mailbox.folder)
            await asyncio.to_thread(self._create_state, info.uidvalidity, first)
            self._uidvalidity, self._first_uid, self._last_uid = info.uidvalidity, first, first - 1
            return
        uidvalidity, first, last = state
        if uidvalidity == info.uidvalidity:
            if self.import_existing and first > 1:
                log.info("--import-existing: importing the mail of %s from UID 1", self.key)
                first = 1
                await asyncio.to_thread(self._save_position, info.uidvalidity, first, last)
            self._uidvalidity, self._first_uid, self._last_uid = uidvalidity, first, last
            return
        # The server renumbered the folder: old UIDs mean nothing any more.
        new_first = 1
        if first > 1 and not self.import_existing:
            cutoff = await asyncio.to_thread(self._load_cutoff)
            if cutoff is None:
                log.warning("%s: no first-connect time recorded; re-reading the whole folder",
                            self.key)
            else:
                dates = await session.fetch_internaldates(1)
                newer = [uid for uid, when in dates.items() if when >= cutoff - CUTOFF_SLACK]
                new_first = min(newer, default=uidnext)
        log.warning("UIDVALIDITY of %s changed from %s to %s (the server renumbered its mail): "
                    "re-reading from UID %d; mail already stored is recognised by its content "
                    "and not stored twice", self.key, uidvalidity, info.uidvalidity, new_first)
        await asyncio.to_thread(self._save_position, info.uidvalidity, new_first, new_first - 1)
        self._uidvalidity, self._first_uid, self._last_uid = (
            info.uidvalidity, new_first, new_first - 1)
        self._store_failures.clear()

    def _load_state(self) -> tuple[int | None, int, int] | None:
        with self.db.session() as session:
            state = session.get(MailboxState, self.key)
            if state is None:
                return None
            return state.uidvalidity, state.first_uid or 1, state.last_uid or 0

    def _create_state(self, uidvalidity: int, first_uid: int) -> None:
        with self.db.session() as session:
            session.add(MailboxState(mailbox=self.key, uidvalidity=uidvalidity,
                                     first_uid=first_uid, last_uid=first_uid - 1))
            setting_key = _cutoff_setting_key(self.key)
            if session.get(Setting, setting_key) is None:
                session.add(Setting(key=setting_key, value=utcnow().isoformat()))

    def _load_cutoff(self) -> datetime | None:
        with self.db.session() as session:
            setting = session.get(Setting, _cutoff_setting_key(self.key))
            if setting is None:
                return None
            try:
                return datetime.fromisoformat(setting.value)
            except ValueError:
                return None

    def _save_position(self, uidvalidity: int, first_uid: int, last_uid: int) -> None:
        with self.db.session() as session:
            state = session.get(MailboxState, self.key)
            if state is None:
                state = MailboxState(mailbox=self.key)
                session.add(state)
            state.uidvalidity, state.first_uid, state.last_uid = uidvalidity, first_uid, last_uid

    async def _set_connected(self, connected: bool) -> None:
        self._connected = connected
        try:
            await asyncio.to_thread(self._write_connected, connected)
        except Exception as exc:
            log.warning("could not record the connection state of %s: %s", self.key, exc)

    def _write_connected(self, connected: bool) -> None:
        with self.db.session() as session:
            state = session.get(MailboxState, self.key)
            if state is not None:
                state.connected = connected

    # --- one pass -------------------------------------------------------------------------

    async def _pass(self, session: ImapSession, *, full: bool,
                    process_anyway: bool = False) -> None:
        """Store what is new, let the processor run, file what is finished.

        Repeats until a search finds nothing new, so that the last command before the
        next IDLE is a search: mail arriving after it is reported by IDLE itself.
        """
        if full:
            info = await session.select(self.mailbox.folder)
            if info.uidvalidity != self._uidvalidity:
                await self._sync_position(session, info)
        failed_now: set[int] = set()
        lowest = self._first_uid if full else max(self._first_uid, self._last_uid + 1)
        if full:
            self._store_failures.clear()
        run_processor = process_anyway
        while True:
            if run_processor:
                await self._run_processor()
                run_processor = False
            await self._file_finished(session)
            if self._stopping:
                break
            uids = await session.search_uids_from(lowest)
            known = await asyncio.to_thread(self._stored_uids, uids)
            todo = [uid for uid in uids if uid not in known and uid not in failed_now
                    and uid not in self._store_failures]
            if not todo:
                break
            for start in range(0, len(todo), FETCH_BATCH):
                if self._stopping:
                    break
                chunk = todo[start:start + FETCH_BATCH]
                taken = await self._take(session, chunk)
                run_processor = run_processor or bool(taken)
                if taken and self.stored is not None:
                    self.stored()
                failed_now.update(uid for uid in chunk if uid not in taken)
            lowest = max(self._first_uid, self._last_uid + 1)
            if self._stopping and not run_processor:
                break
        if run_processor:  # stopping with mail in hand: finish it
            await self._run_processor()
            await self._file_finished(session)
        self._store_failures |= failed_now
        self._last_poll_at = utcnow()
        self._backlog = await asyncio.to_thread(self._count_backlog) + len(self._store_failures)
        await asyncio.to_thread(self._record_poll)

    async def _take(self, session: ImapSession, uids: list[int]) -> set[int]:
        """Fetch and store messages, each committed on its own; return the UIDs stored (the
        others could not be and stay put)."""
        bodies = await session.fetch_messages(uids)
        for uid in uids:
            if uid not in bodies:
                log.info("UID %d of %s gave no message body (expunged meanwhile?); skipped "
                         "until the next full poll", uid, self.key)
        results = await asyncio.to_thread(self._store_each, bodies)
        taken: set[int] = set()
        for uid, created in results.items():
            if created is None:
                continue
            self._last_uid = max(self._last_uid, uid)
            log.info("%s UID %d of %s (%d bytes)", "stored" if created else "already had",
                     uid, self.key, len(bodies[uid]))
            taken.add(uid)
        return taken

    def _store_each(self, bodies: dict[int, bytes]) -> dict[int, bool | None]:
        """Store a fetched batch in one transaction, each message under a savepoint of its
        own: created, already had, or None when it could not be stored.

        One commit per batch instead of per message: on SQLite each commit is a turn at the
        write lock that the processing worker waits for.  A message that fails is rolled
        back alone (its savepoint) and the others are kept; if the commit itself fails,
        none of the batch is stored and every message stays in the mailbox for the next
        full poll.
        """
        results: dict[int, bool | None] = {}
        try:
            with self.db.session() as session:
                for uid, raw in bodies.items():
                    try:
                        with session.begin_nested():
                            _row, results[uid] = store_inbound(
                                session, mailbox=self.key, uidvalidity=self._uidvalidity,
                                uid=uid, raw=raw, message_id=_message_id(raw))
                    except Exception:
                        log.exception("could not store UID %d of %s (%d bytes); it stays in "
                                      "%r and is tried again on the next full poll", uid,
                                      self.key, len(raw), self.mailbox.folder)
                        results[uid] = None
        except Exception:
            log.exception("could not store %d messages of %s; they stay in %r and are tried "
                          "again on the next full poll", len(bodies), self.key,
                          self.mailbox.folder)
            return dict.fromkeys(bodies)
        return results

    def _stored_uids(self, uids: list[int]) -> set[int]:
        if not uids:
            return set()
        found: set[int] = set()
        with self.db.reading() as session:
            for start in range(0, len(uids), 500):
                chunk = uids[start:start + 500]
                found.update(session.scalars(
                    select(InboundMessage.uid).where(
                        InboundMessage.mailbox == self.key,
                        InboundMessage.uidvalidity == self._uidvalidity,
                        InboundMessage.uid.in_(chunk))))
        return found

    async def _run_processor(self) -> None:
        try:
            await self.process()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("processing the mail of %s failed; the rows stay in the database "
                          "with status new and the mail stays in %r", self.key,
                          self.mailbox.folder)

    # --- filing ---------------------------------------------------------------------------

    def _finished_rows(self) -> list[tuple[int, int, str]]:
        with self.db.reading() as session:
            rows = session.execute(
                select(InboundMessage.id, InboundMessage.uid, InboundMessage.status).where(
                    InboundMessage.mailbox == self.key,
                    InboundMessage.uidvalidity == self._uidvalidity,
                    InboundMessage.uid.is_not(None),
                    InboundMessage.moved.is_(False),
                    InboundMessage.status.in_(FILED_TO_PROCESSED + FILED_TO_FAILED),
                ).order_by(InboundMessage.id))
            return [(row.id, row.uid, row.status) for row in rows]

    def _mark_moved(self, row_ids: list[int]) -> None:
        if not row_ids:
            return
        with self.db.session() as session:
            session.execute(update(InboundMessage).where(InboundMessage.id.in_(row_ids))
                            .values(moved=True).execution_options(synchronize_session=False))

    async def _file_finished(self, session: ImapSession) -> None:
        """Move finished mail out of the folder; mark each row once the server confirmed."""
        rows = await asyncio.to_thread(self._finished_rows)
        if not rows:
            return
        present = await session.present_uids(uid for _, uid, _ in rows)
        # Rows are marked in batches, one transaction each: a crash before the mark only
        # means the next pass finds the UID gone and marks it then.
        filed: list[int] = []
        try:
            for row_id, uid, status in rows:
                if uid not in present:
                    log.info("UID %d of %s (%s) is no longer in %r (moved by someone else?); "
                             "nothing to file", uid, self.key, status, self.mailbox.folder)
                    filed.append(row_id)
            for target, batch in self._filing_batches(rows, present):
                # One command per batch; when the server refuses it, one message at a time,
                # so that one message it will not move does not hold back the others.
                if await session.move([uid for _, uid in batch], target):
                    moved = batch
                else:
                    moved = [(row_id, uid) for row_id, uid in batch
                             if len(batch) > 1 and await session.move(uid, target)]
                for _row_id, uid in moved:
                    log.info("filed UID %d of %s to %r", uid, self.key, target)
                filed += [row_id for row_id, _ in moved]
                if len(filed) >= MARK_MOVED_BATCH:
                    await asyncio.to_thread(self._mark_moved, filed)
                    filed = []
        finally:
            if filed:
                await asyncio.to_thread(self._mark_moved, filed)

    def _filing_batches(self, rows: list[tuple[int, int, str]], present: set[int]
                        ) -> list[tuple[str, list[tuple[int, int]]]]:
        """(folder, [(row id, UID), ...]) in batches of at most ``MARK_MOVED_BATCH``."""
        by_target: dict[str, list[tuple[int, int]]] = {}
        for row_id, uid, status in rows:
            if uid in present:
                target = (self.mailbox.failed_folder if status in FILED_TO_FAILED
                          else self.mailbox.processed_folder)
                by_target.setdefault(target, []).append((row_id, uid))
        return [(target, items[start:start + MARK_MOVED_BATCH])
                for target, items in by_target.items()
                for start in range(0, len(items), MARK_MOVED_BATCH)]

    # --- bookkeeping ----------------------------------------------------------------------

    def _count_backlog(self) -> int:
        """Rows of this folder not filed yet (waiting to be processed or to be moved)."""
        with self.db.reading() as session:
            return int(session.scalar(
                select(func.count()).select_from(InboundMessage).where(
                    InboundMessage.mailbox == self.key,
                    InboundMessage.uidvalidity == self._uidvalidity,
                    InboundMessage.uid.is_not(None),
                    InboundMessage.moved.is_(False))) or 0)

    def _record_poll(self) -> None:
        with self.db.session() as session:
            state = session.get(MailboxState, self.key)
            if state is None:
                return
            state.last_poll_at = self._last_poll_at
            state.last_uid = max(state.last_uid or 0, self._last_uid)
            state.connected = self._connected
