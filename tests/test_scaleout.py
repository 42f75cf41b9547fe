"""Several daemons on one PostgreSQL database and one mailbox.

The promises: exactly one daemon reads the mailbox at a time, and another takes over
within seconds when it dies; every daemon processes and sends, so the work spreads; no
mail is processed twice and no mail sent twice (beyond the mail in flight at a
SIGKILL, see ``test_daemon_e2e``); attachments stored by one daemon are readable by the
others (``[storage] blobs = "database"``, each daemon with its own data directory).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from daemon_harness import (
    IN_FLIGHT,
    MAILBOX,
    DaemonProcess,
    count_rows,
    log_problems,
    reader_pid,
    wait_for,
    write_config,
)
from dovecot import Dovecot
from smtp_sink import SmtpSink
from sqlalchemy import select

from warrantyd.daemon.leader import MailboxReader, RowClaims, lock_key
from warrantyd.storage.blob_db import DatabaseBlobStore, blob_store_for
from warrantyd.storage.blobs import BlobNotFound, BlobStore
from warrantyd.storage.db import Database
from warrantyd.storage.models import (
    Attachment,
    Blob,
    InboundMessage,
    OutboundMessage,
    ServiceRequest,
)

pytestmark = pytest.mark.slow

TOTAL = 200
PHOTO_EVERY = 5


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    with Dovecot() as server:
        yield server


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as server:
        yield server


def _mail(n: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Owner {n} <owner{n}@example.com>"
    msg["To"] = MAILBOX
    msg["Subject"] = f"Warranty items #{n}"
    msg["Message-ID"] = f"<scale-{n}-{time.time_ns()}@example.com>"
    msg.set_content(f"Hi,\n\nThe kitchen faucet drips all the time (request {n}).\n"
                    "There is also a nail pop in the hallway ceiling.\n\nThanks\n")
    if n % PHOTO_EVERY == 0:
        msg.add_attachment(f"photo of request {n} ".encode() * 200, maintype="image",
                           subtype="jpeg", filename=f"faucet-{n}.jpg")
    return msg.as_bytes()


def _config(tmp: Path, dovecot: Dovecot, sink: SmtpSink, db_url: str, user: str) -> Path:
    tmp.mkdir()
    path = write_config(tmp, dovecot=dovecot, smtp_port=sink.port, db_url=db_url,
                        idle=True)
    text = path.read_text().replace(f'imap_user = "{MAILBOX}"', f'imap_user = "{user}"')
    path.write_text(text.replace("[storage]\n", '[storage]\nblobs = "database"\n', 1))
    return path


def test_three_daemons_share_one_mailbox_and_survive_losing_the_reader(
        tmp_path: Path, dovecot: Dovecot, sink: SmtpSink, postgres_url: str) -> None:
    user = "scale@acme-homes.example"
    dovecot.add_user(user)
    mailbox = f"{MAILBOX}/INBOX"
    db = Database(postgres_url)
    db.upgrade()
    daemons = [DaemonProcess(_config(tmp_path / f"d{i}", dovecot, sink, postgres_url, user),
                             import_existing=True).start() for i in range(3)]
    try:
        # Every daemon is up before the mail arrives: from then on each one looks for stored
        # mail every second and claims at most one row at a time, so while more rows wait
        # than the others hold, each poll of each daemon takes one.  A backlog of 200 mails
        # lasts many polls, so every daemon that lives through it does some of the work.
        wait_for(lambda: all("warrantyd running for" in d.log() for d in daemons), 60,
                 "all three daemons to start", daemons[0])
        wait_for(lambda: reader_pid(db, mailbox), 30, "a daemon to take the mailbox",
                 daemons[0])
        with dovecot.client(user) as imap:
            for n in range(TOTAL):
                assert imap.append("INBOX", "", None, _mail(n))[0] == "OK"
        wait_for(lambda: count_rows(db, InboundMessage, InboundMessage.status == "done") >= 40,
                 60, "forty mails processed", daemons[0])
        first_reader = reader_pid(db, mailbox)
        victim = next(d for d in daemons if d.proc is not None and d.proc.pid == first_reader)
        victim.kill()
        assert count_rows(db, InboundMessage, InboundMessage.status == "done") < TOTAL, \
            "the backlog finished before the kill: make it larger"
        survivors = [d for d in daemons if d is not victim]
        wait_for(lambda: reader_pid(db, mailbox) not in (None, first_reader), 20,
                 "another daemon to take over the mailbox", survivors[0])
        wait_for(lambda: count_rows(db, InboundMessage, InboundMessage.status == "done") == TOTAL,
                 90, "every mail processed", survivors[0])
        wait_for(lambda: count_rows(db, OutboundMessage, OutboundMessage.status != "sent") == 0,
                 60, "every mail sent", survivors[0])
        wait_for(lambda: len(dovecot.list_uids(user, "Processed")) == TOTAL, 30,
                 "every mail filed", survivors[0])
        # Read before shutdown: a survivor stopped first hands the mailbox to the other,
        # which may take it for the moment before its own SIGTERM lands.
        logs = [d.log() for d in daemons]
        for daemon in survivors:
            assert daemon.terminate() == 0, log_problems(daemon.log())
    finally:
        for daemon in daemons:
            if daemon.alive():
                daemon.kill()

    readers = [log for log in logs if "now reads" in log]
    assert len(readers) == 2, "exactly the first reader and one successor read the mailbox"
    assert sum("another daemon reads" in log for log in logs) >= 2
    assert dovecot.list_uids(user, "INBOX") == []

    # Exactly once: one row, one request, one acknowledgement per mail.
    assert count_rows(db, InboundMessage) == TOTAL
    assert count_rows(db, ServiceRequest) == TOTAL
    with db.session() as s:
        workers = Counter(s.scalars(select(InboundMessage.claimed_by)))
    # Each survivor was polling for the whole backlog, so each did some of it.  The victim
    # may have none: it dies when forty mails are done, whoever did them, possibly still on
    # its first mail (the offline drafter fits its model then, which takes seconds).
    names = {d: f"{socket.gethostname()}:{d.proc.pid}" for d in daemons if d.proc is not None}
    assert None not in workers and set(workers) <= set(names.values()), workers
    assert all(workers[names[d]] > 0 for d in survivors), (
        f"the work did not spread: {workers}\n" + "\n".join(
            f"--- daemon {d.proc.pid if d.proc else '?'} ---\n{log_problems(log)}"
            for d, log in zip(daemons, logs, strict=True)))
    ids = Counter(m.message_id for m in sink.messages)
    assert len(ids) == count_rows(db, OutboundMessage), "a queued mail was lost"
    # At most the mail in flight at the SIGKILL (one per SMTP connection) goes out twice,
    # whatever its kind.
    doubled = [mid for mid, n in ids.items() if n > 1]
    assert len(doubled) <= IN_FLIGHT and all(ids[mid] == 2 for mid in doubled), doubled
    acks = {m.message_id: m.rcpt_tos[0] for m in sink.messages
            if m.message["X-Warrantyd-Kind"] == "ack"}
    assert len(acks) == TOTAL and set(acks.values()) == {
        f"owner{n}@example.com" for n in range(TOTAL)}

    # Photos are in the shared blob table, none in any daemon's own data directory.
    with db.session() as s:
        photos = set(s.scalars(select(Attachment.sha256)))
        blobs = set(s.scalars(select(Blob.sha256)))
    assert len(photos) == TOTAL // PHOTO_EVERY and photos <= blobs
    assert not any((tmp_path / f"d{i}" / "data" / "blobs").exists() for i in range(3))
    db.dispose()


# --- the pieces, without IMAP -------------------------------------------------------------

def _eventually(predicate: Callable[[], bool], what: str, timeout: float = 30) -> None:
    """Ask until ``predicate`` holds: waits for a state, so a loaded machine is only slower."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.02)


def test_only_one_holder_of_the_mailbox_lock_and_it_is_freed_when_the_holder_goes(
        postgres_url: str) -> None:
    first, second = Database(postgres_url), Database(postgres_url)
    try:
        from warrantyd.daemon.leader import PostgresMailboxLock

        a = PostgresMailboxLock(first, "box/INBOX")
        b = PostgresMailboxLock(second, "box/INBOX")
        other = PostgresMailboxLock(second, "other/INBOX")
        assert a.try_acquire() and a.still_held()
        assert not b.try_acquire()
        assert other.try_acquire(), "another mailbox has its own lock"
        a.connection.close()  # as a dying process's connection would
        assert not a.still_held()
        # The server frees the lock when its backend sees the connection gone: soon, not at
        # once, which is why waiting daemons keep asking.
        _eventually(b.try_acquire, "the lock of a closed connection to be freed")
        b.release()
        other.release()
        assert a.try_acquire()
        a.release()
    finally:
        first.dispose()
        second.dispose()


def test_a_row_claimed_by_one_daemon_is_skipped_by_another(postgres_url: str) -> None:
    first, second = Database(postgres_url), Database(postgres_url)
    try:
        a, b = RowClaims(first), RowClaims(second)
        assert a.try_claim(7)
        assert not b.try_claim(7)
        assert b.try_claim(8)
        a.release(7)
        assert b.try_claim(7)
        b.close()
        _eventually(lambda: a.try_claim(8), "a claim to die with its connection")
        a.close()
    finally:
        first.dispose()
        second.dispose()


def test_lock_keys_are_stable_and_distinct() -> None:
    assert lock_key("a/INBOX") == lock_key("a/INBOX")
    assert lock_key("a/INBOX") != lock_key("b/INBOX")
    assert -(2**63) <= lock_key("a/INBOX") < 2**63


def test_a_second_daemon_on_one_sqlite_file_does_not_read_the_mailbox(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'w.sqlite3'}")
    db.upgrade()
    runs: list[str] = []

    class FakeIntake:
        def __init__(self, name: str) -> None:
            self.name = name
            self.stopped = asyncio.Event()

        async def run(self) -> None:
            runs.append(self.name)
            await self.stopped.wait()

        def stop(self) -> None:
            self.stopped.set()

    async def until(predicate: Callable[[], bool], what: str) -> None:
        """Wait for a state, not for a time: a loaded machine only makes it slower."""
        deadline = asyncio.get_running_loop().time() + 30
        while not predicate():
            assert asyncio.get_running_loop().time() < deadline, f"never happened: {what}"
            await asyncio.sleep(0.01)

    async def scenario() -> None:
        one = MailboxReader(db, "box/INBOX", lambda: FakeIntake("one"), retry_seconds=0.05)
        two = MailboxReader(db, "box/INBOX", lambda: FakeIntake("two"), retry_seconds=0.05)
        refused = 0
        ask_for_lock = two.lock.try_acquire

        def counting_try_acquire() -> bool:
            nonlocal refused
            got = ask_for_lock()
            refused += not got
            return got

        two.lock.try_acquire = counting_try_acquire  # type: ignore[method-assign]
        tasks = [asyncio.ensure_future(one.run())]
        await until(lambda: one.holding, "the first daemon takes the mailbox")
        tasks.append(asyncio.ensure_future(two.run()))
        await until(lambda: refused >= 3, "the second daemon asks for the mailbox again")
        assert runs == ["one"] and one.holding and not two.holding
        one.stop()
        await tasks[0]
        await until(lambda: two.holding and runs == ["one", "two"],
                    "the second daemon takes over when the first stops")
        two.stop()
        await tasks[1]

    asyncio.run(scenario())
    db.dispose()


def test_database_blob_store_round_trip_and_shared_between_processes(
        database: Database, tmp_path: Path) -> None:
    store = blob_store_for("database", tmp_path, database)
    assert isinstance(store, DatabaseBlobStore)
    digest = store.put(b"photo bytes")
    assert store.put(b"photo bytes") == digest, "storing twice is a no-op"
    other = DatabaseBlobStore(Database(database.url))
    assert other.get(digest) == b"photo bytes" and other.exists(digest)
    assert not other.exists("0" * 64)
    with pytest.raises(BlobNotFound):
        other.get("0" * 64)
    other.db.dispose()
    assert isinstance(blob_store_for("files", tmp_path, database), BlobStore)
    with pytest.raises(ValueError):
        blob_store_for("s3", tmp_path, database)
    assert count_rows(database, Blob) == 1
    assert not (tmp_path / "blobs").exists()
