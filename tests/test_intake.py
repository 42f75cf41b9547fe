"""The IMAP intake against a real Dovecot, on SQLite and on PostgreSQL.

Each test uses its own mail user on a Dovecot shared by the module, so tests cannot see
each other's mail; the reconnect test gets a server of its own because it stops it.
Waiting is done by polling for the expected state with a generous limit: the tests assert
what happens, never how fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from dovecot import PASSWORD, Dovecot, dovecot_fixture
from sqlalchemy import event, func, select

from warrantyd.daemon import imap as imap_module
from warrantyd.daemon import intake as intake_module
from warrantyd.daemon.config import MailboxConfig
from warrantyd.daemon.imap import (
    ImapSession,
    encode_mailbox_name,
    parse_fetch_bodies,
    parse_search,
    quote_mailbox,
    uid_set,
)
from warrantyd.daemon.intake import FETCH_BATCH, ImapIntake, mailbox_key
from warrantyd.storage.db import Database
from warrantyd.storage.models import InboundMessage, MailboxState

PASSWORD_ENV = "WARRANTYD_TEST_IMAP_PASSWORD"
PROCESSED = "Processed Mail"
FAILED = "Needs Review"
WAIT_LIMIT = 20.0

dovecot = dovecot_fixture("module")
_user_numbers = itertools.count(1)


# --- helpers --------------------------------------------------------------------------------


def mail(subject: str, body: str = "The garage door is off its track.") -> bytes:
    number = next(_user_numbers)
    return (f"From: Pat Homeowner <pat@example.net>\r\n"
            f"To: warranty@acme-homes.example\r\n"
            f"Subject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '-')}-{number}@example.net>\r\n"
            f"Date: Thu, 27 Nov 2025 10:00:00 +0000\r\n"
            f"\r\n{body}\r\n").encode()


@pytest.fixture
def user(dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    return dovecot.add_user(f"warranty{next(_user_numbers)}@acme-homes.example")


def config_for(server: Dovecot, user: str, **overrides: object) -> MailboxConfig:
    values: dict[str, object] = dict(
        address=user, imap_host=server.host, imap_port=server.port, imap_security="none",
        imap_user=user, imap_password_env=PASSWORD_ENV, folder="INBOX",
        processed_folder=PROCESSED, failed_folder=FAILED, idle=True, poll_seconds=0.2)
    values.update(overrides)
    return MailboxConfig(**values)  # type: ignore[arg-type]


def marking_processor(db: Database) -> Callable[[], Awaitable[None]]:
    """Stands in for the real processor: marks new rows done, or quarantined on request."""

    async def process() -> None:
        with db.session() as session:
            new = select(InboundMessage).where(InboundMessage.status == "new")
            for row in session.scalars(new):
                row.status = "quarantined" if b"QUARANTINE" in row.raw else "done"

    return process


async def idle_processor() -> None:
    """A processor that leaves every row new (so the mail stays in the folder)."""


def rows(db: Database, user: str) -> list[InboundMessage]:
    with db.session() as session:
        return list(session.scalars(
            select(InboundMessage).where(InboundMessage.mailbox == f"{user}/INBOX")
            .order_by(InboundMessage.id)))


def row_count(db: Database) -> int:
    with db.session() as session:
        return int(session.scalar(select(func.count()).select_from(InboundMessage)) or 0)


async def wait_until(predicate: Callable[[], object], what: str,
                     limit: float = WAIT_LIMIT) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not await asyncio.to_thread(predicate):
        if loop.time() > deadline:
            pytest.fail(f"gave up waiting for: {what}")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running(intake: ImapIntake) -> AsyncIterator[ImapIntake]:
    task = asyncio.create_task(intake.run())
    try:
        await wait_until(lambda: intake.status["last_poll_at"] is not None or task.done(),
                         "the intake's first pass")
        if task.done():
            task.result()
            pytest.fail("the intake returned before stop()")
        yield intake
    finally:
        intake.stop()
        await asyncio.wait_for(task, WAIT_LIMIT)


def filed_everything(db: Database, user: str, count: int) -> Callable[[], bool]:
    def check() -> bool:
        found = rows(db, user)
        return len(found) == count and all(r.moved for r in found)
    return check


# --- pure parts -----------------------------------------------------------------------------


def test_mailbox_names_are_quoted_and_encoded() -> None:
    assert quote_mailbox("Needs Review") == '"Needs Review"'
    assert quote_mailbox('odd "name"\\') == '"odd \\"name\\"\\\\"'
    assert encode_mailbox_name("Büro") == "B&APw-ro"
    assert encode_mailbox_name("R&D") == "R&-D"
    assert encode_mailbox_name("日本語") == "&ZeVnLIqe-"


def test_fetch_lines_are_parsed_whatever_the_order() -> None:
    lines = [
        b"3 FETCH (FLAGS (\\Seen))",  # an unsolicited flag update: no literal
        b"4 FETCH (UID 17 BODY[] {5}", bytearray(b"hello"), b")",
        b"5 FETCH (BODY[] {3}", bytearray(b"abc"), b" UID 18 FLAGS (\\Seen))",
        b"Fetch completed.",
    ]
    assert parse_fetch_bodies(lines) == {17: b"hello", 18: b"abc"}


def test_search_lines_are_parsed() -> None:
    assert parse_search([b"4 9 12", b"Search completed."]) == [4, 9, 12]
    assert parse_search([b"", b"Search completed."]) == []


# --- against Dovecot ------------------------------------------------------------------------


async def test_idle_mail_is_stored_processed_and_filed(dovecot: Dovecot, user: str,
                                                       database: Database) -> None:
    intake = ImapIntake(config_for(dovecot, user), database,
                        process=marking_processor(database), full_poll_seconds=300)
    async with running(intake):
        assert intake.status["connected"] is True
        assert intake.status["idle_supported"] is True
        raw = mail("Garage door")
        await asyncio.to_thread(dovecot.append, user, raw)
        await wait_until(filed_everything(database, user, 1), "the mail filed after IDLE push")
        assert dovecot.list_uids(user, "INBOX") == []
        assert list(dovecot.fetch(user, PROCESSED).values()) == [raw]
        assert {PROCESSED, FAILED} <= set(dovecot.folders(user))
        [row] = rows(database, user)
        assert row.raw == raw and row.status == "done"
        assert row.message_id and row.message_id.startswith("<Garage-door-")
        with database.session() as session:
            state = session.get(MailboxState, mailbox_key(intake.mailbox))
            assert state is not None and state.connected and state.last_poll_at is not None
            assert state.uidvalidity == dovecot.uidvalidity(user)
    with database.session() as session:
        state = session.get(MailboxState, mailbox_key(intake.mailbox))
        assert state is not None and not state.connected


async def test_polling_without_idle(dovecot: Dovecot, user: str, database: Database) -> None:
    intake = ImapIntake(config_for(dovecot, user, idle=False, poll_seconds=0.2), database,
                        process=marking_processor(database))
    async with running(intake):
        await asyncio.to_thread(dovecot.append, user, mail("Polled mail"))
        await wait_until(filed_everything(database, user, 1), "the mail filed after a poll")
    assert dovecot.list_uids(user, "INBOX") == []
    assert len(dovecot.list_uids(user, PROCESSED)) == 1


async def test_mail_present_at_first_start_is_left_alone(dovecot: Dovecot, user: str,
                                                         database: Database) -> None:
    old_uid = dovecot.append(user, mail("Old mail"))
    intake = ImapIntake(config_for(dovecot, user), database, process=marking_processor(database))
    async with running(intake):
        await asyncio.to_thread(dovecot.append, user, mail("New mail"))
        await wait_until(filed_everything(database, user, 1), "the new mail filed")
    assert [b"New mail" in r.raw for r in rows(database, user)] == [True]
    assert dovecot.list_uids(user, "INBOX") == [old_uid]
    # A restart does not import it either.
    async with running(ImapIntake(config_for(dovecot, user), database,
                                  process=marking_processor(database))):
        pass
    assert len(rows(database, user)) == 1


async def test_import_existing_imports_mail_already_there(dovecot: Dovecot, user: str,
                                                          database: Database) -> None:
    for n in range(3):
        dovecot.append(user, mail(f"Existing {n}"))
    intake = ImapIntake(config_for(dovecot, user), database, process=marking_processor(database),
                        import_existing=True)
    async with running(intake):
        await wait_until(filed_everything(database, user, 3), "three existing mails filed")
    assert dovecot.list_uids(user, "INBOX") == []


async def test_a_backlog_is_announced_batch_by_batch_while_it_is_fetched(
        dovecot: Dovecot, user: str, database: Database) -> None:
    """The processing worker starts on the first stored batch of a large backlog while the
    rest is fetched; processing is still awaited once the pass has stored everything."""
    total = 2 * FETCH_BATCH + 3
    for n in range(total):
        dovecot.append(user, mail(f"Backlog {n}"))
    stored_when_told: list[int] = []
    process = marking_processor(database)
    processed_after: list[int] = []

    async def process_and_note() -> None:
        processed_after.append(len(stored_when_told))
        await process()

    intake = ImapIntake(config_for(dovecot, user), database, process=process_and_note,
                        stored=lambda: stored_when_told.append(row_count(database)),
                        import_existing=True)
    async with running(intake):
        await wait_until(filed_everything(database, user, total), "the backlog filed")
    assert stored_when_told[:3] == [FETCH_BATCH, 2 * FETCH_BATCH, total]
    # Awaited before the pass (what an earlier run left) and after all three batches.
    assert 3 in processed_after and set(processed_after) <= {0, 3}, processed_after


async def test_restart_fetches_nothing_twice(dovecot: Dovecot, user: str,
                                             database: Database) -> None:
    dovecot.append(user, mail("Kept in inbox"))
    config = config_for(dovecot, user)
    async with running(ImapIntake(config, database, process=idle_processor,
                                  import_existing=True)):
        await wait_until(lambda: len(rows(database, user)) == 1, "the mail stored")
    assert dovecot.list_uids(user, "INBOX") != []  # not processed: still there
    for import_existing in (False, True):
        async with running(ImapIntake(config, database, process=idle_processor,
                                      import_existing=import_existing)):
            pass
    assert row_count(database) == 1
    # Processing it later files it; still one row.
    async with running(ImapIntake(config, database, process=marking_processor(database))):
        await wait_until(filed_everything(database, user, 1), "the mail filed")
    assert row_count(database) == 1
    assert dovecot.list_uids(user, "INBOX") == []


async def test_quarantined_mail_goes_to_failed_folder(dovecot: Dovecot, user: str,
                                                      database: Database) -> None:
    intake = ImapIntake(config_for(dovecot, user), database, process=marking_processor(database))
    async with running(intake):
        await asyncio.to_thread(dovecot.append, user, mail("Bad one", "QUARANTINE me"))
        await asyncio.to_thread(dovecot.append, user, mail("Good one"))
        await wait_until(filed_everything(database, user, 2), "both mails filed")
    assert sorted(r.status for r in rows(database, user)) == ["done", "quarantined"]
    assert [b"QUARANTINE" in raw for raw in dovecot.fetch(user, FAILED).values()] == [True]
    assert len(dovecot.list_uids(user, PROCESSED)) == 1
    assert dovecot.list_uids(user, "INBOX") == []


async def test_filing_without_move_uses_copy_and_uid_expunge(
        dovecot: Dovecot, user: str, database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    real_has = ImapSession.has
    monkeypatch.setattr(ImapSession, "has",
                        lambda self, cap: cap.upper() != "MOVE" and real_has(self, cap))
    bystander = dovecot.append(user, mail("Someone else's deleted mail"))
    with dovecot.client(user) as client:  # flagged \Deleted by another client: must survive
        client.select("INBOX")
        client.uid("STORE", str(bystander), "+FLAGS", "(\\Deleted)")
    intake = ImapIntake(config_for(dovecot, user), database, process=marking_processor(database))
    async with running(intake):
        await asyncio.to_thread(dovecot.append, user, mail("Copied"))
        await wait_until(filed_everything(database, user, 1), "the mail filed by COPY")
    assert dovecot.list_uids(user, "INBOX") == [bystander]
    assert len(dovecot.list_uids(user, PROCESSED)) == 1


async def test_a_mail_that_cannot_be_stored_does_not_stop_the_rest(
        dovecot: Dovecot, user: str, database: Database, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    real_store = intake_module.store_inbound

    def failing_store(session, **kwargs):  # type: ignore[no-untyped-def]
        if b"POISON" in kwargs["raw"]:
            raise RuntimeError("disk full")
        return real_store(session, **kwargs)

    monkeypatch.setattr(intake_module, "store_inbound", failing_store)
    intake = ImapIntake(config_for(dovecot, user), database, process=marking_processor(database))
    with caplog.at_level(logging.ERROR, logger="warrantyd.intake"):
        async with running(intake):
            poison = await asyncio.to_thread(dovecot.append, user, mail("Poison", "POISON"))
            await asyncio.to_thread(dovecot.append, user, mail("Fine"))
            await wait_until(filed_everything(database, user, 1), "the good mail filed")
            # The backlog is counted at the end of the pass that filed the good mail.
            await wait_until(lambda: intake.status["backlog"] >= 1,
                             "the mail that could not be stored counted in the backlog")
    assert dovecot.list_uids(user, "INBOX") == [poison]
    assert "could not store UID" in caplog.text


async def test_a_mail_that_cannot_be_stored_costs_the_rest_of_its_batch_nothing(
        dovecot: Dovecot, user: str, database: Database, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    # A fetched batch is stored in one transaction: the failure (with a row already added
    # for it) is rolled back alone, the mails before and after it are kept.
    real_store = intake_module.store_inbound

    def failing_store(session, **kwargs):  # type: ignore[no-untyped-def]
        row, created = real_store(session, **kwargs)
        if b"POISON" in kwargs["raw"]:
            session.flush()
            raise RuntimeError("disk full")
        return row, created

    monkeypatch.setattr(intake_module, "store_inbound", failing_store)
    before = dovecot.append(user, mail("Before"))
    poison = dovecot.append(user, mail("Poison", "POISON"))
    after = dovecot.append(user, mail("After"))
    intake = ImapIntake(config_for(dovecot, user), database, process=marking_processor(database),
                        import_existing=True)
    with caplog.at_level(logging.ERROR, logger="warrantyd.intake"):
        async with running(intake):
            await wait_until(filed_everything(database, user, 2), "the two good mails filed")
    assert dovecot.list_uids(user, "INBOX") == [poison]
    with database.session() as s:
        stored = s.scalars(select(InboundMessage.uid).order_by(InboundMessage.uid)).all()
    assert stored == [before, after]
    assert f"could not store UID {poison}" in caplog.text


def test_a_fetched_batch_is_stored_in_one_transaction(dovecot: Dovecot, user: str,
                                                     database: Database) -> None:
    # Each commit is a turn at SQLite's write lock that the processing worker waits for.
    intake = ImapIntake(config_for(dovecot, user), database, process=idle_processor)
    intake._uidvalidity = 7
    commits: list[object] = []
    count = commits.append
    event.listen(database.engine, "commit", count)
    try:
        results = intake._store_each({uid: mail(f"Batch {uid}") for uid in range(1, 6)})
    finally:
        event.remove(database.engine, "commit", count)
    assert results == dict.fromkeys(range(1, 6), True)
    assert len(commits) == 1
    assert [r.uid for r in rows(database, user)] == [1, 2, 3, 4, 5]


async def test_mail_that_arrives_while_the_pass_is_processing_is_not_left_for_the_full_poll(
        dovecot: Dovecot, user: str, database: Database) -> None:
    # The pass searches, stores, then processes and files; a mail delivered after its last
    # search (a vendor answering an acknowledgement at once) must be taken at once, not
    # left until the next full poll (5 minutes) because the server told of it before IDLE.
    marking = marking_processor(database)
    delivered: list[int] = []

    async def process() -> None:
        await marking()
        # Delivered while the pass has a mail in hand, which it then files (UID MOVE): the
        # server may tell of the new mail in that command's answer rather than in IDLE.
        if not delivered and await asyncio.to_thread(rows, database, user):
            delivered.append(await asyncio.to_thread(dovecot.append, user, mail("Quick reply")))

    intake = ImapIntake(config_for(dovecot, user), database, process=process,
                        full_poll_seconds=300)
    async with running(intake):
        await asyncio.to_thread(dovecot.append, user, mail("First"))
        await wait_until(filed_everything(database, user, 2), "the quick reply filed too",
                         limit=15)


async def test_full_poll_while_idling_retries_what_failed(
        dovecot: Dovecot, user: str, database: Database,
        monkeypatch: pytest.MonkeyPatch) -> None:
    real_store = intake_module.store_inbound
    failures = []

    def flaky_store(session, **kwargs):  # type: ignore[no-untyped-def]
        if not failures:
            failures.append(kwargs["uid"])
            raise RuntimeError("database briefly unavailable")
        return real_store(session, **kwargs)

    monkeypatch.setattr(intake_module, "store_inbound", flaky_store)
    intake = ImapIntake(config_for(dovecot, user), database, process=marking_processor(database),
                        full_poll_seconds=0.5)
    async with running(intake):
        await asyncio.to_thread(dovecot.append, user, mail("Retried"))
        await wait_until(filed_everything(database, user, 1), "the mail stored on a full poll")
    assert len(failures) == 1
    assert dovecot.list_uids(user, "INBOX") == []


async def test_uidvalidity_change_creates_no_duplicates(dovecot: Dovecot, user: str,
                                                        database: Database) -> None:
    long_ago = datetime.now(UTC) - timedelta(days=3)
    dovecot.append(user, mail("Before our time"), date=long_ago)
    config = config_for(dovecot, user)
    async with running(ImapIntake(config, database, process=idle_processor)):
        await asyncio.to_thread(dovecot.append, user, mail("First"))
        await asyncio.to_thread(dovecot.append, user, mail("Second"))
        await wait_until(lambda: len(rows(database, user)) == 2, "two mails stored")
    old_validity = dovecot.uidvalidity(user)
    new_validity = dovecot.change_uidvalidity(user)
    assert new_validity != old_validity
    intake = ImapIntake(config, database, process=marking_processor(database))
    async with running(intake):
        await wait_until(filed_everything(database, user, 2), "the renumbered mail filed")
        await asyncio.to_thread(dovecot.append, user, mail("Third"))
        await wait_until(filed_everything(database, user, 3), "new mail after renumbering")
    found = rows(database, user)
    assert row_count(database) == 3
    assert {r.uidvalidity for r in found} == {new_validity}
    # The mail that was there before the first start is still not imported.
    assert [b"Before our time" in raw for raw in dovecot.fetch(user, "INBOX").values()] == [True]
    assert len(dovecot.list_uids(user, PROCESSED)) == 3


@pytest.fixture
def own_dovecot() -> Iterator[Dovecot]:
    with Dovecot() as server:
        yield server


async def test_reconnects_after_server_restart(own_dovecot: Dovecot, database: Database,
                                               monkeypatch: pytest.MonkeyPatch,
                                               caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    user = own_dovecot.add_user("warranty@acme-homes.example")
    intake = ImapIntake(config_for(own_dovecot, user), database,
                        process=marking_processor(database), reconnect_max_seconds=0.5,
                        command_timeout=5)
    with caplog.at_level(logging.INFO, logger="warrantyd.intake"):
        async with running(intake):
            await asyncio.to_thread(own_dovecot.append, user, mail("Before restart"))
            await wait_until(filed_everything(database, user, 1), "first mail filed")
            await asyncio.to_thread(own_dovecot.stop)
            await wait_until(lambda: not intake.status["connected"], "the loss noticed")
            await asyncio.sleep(1)  # a few refused reconnects
            await asyncio.to_thread(own_dovecot.start)
            await wait_until(lambda: intake.status["connected"], "reconnected")
            await asyncio.to_thread(own_dovecot.append, user, mail("After restart"))
            await wait_until(filed_everything(database, user, 2), "mail after restart filed")
    assert "reconnecting in" in caplog.text
    assert row_count(database) == 2


async def test_bad_password_is_reported_and_retried_not_raised(
        dovecot: Dovecot, user: str, database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "wrong")
    intake = ImapIntake(config_for(dovecot, user), database, process=idle_processor,
                        reconnect_max_seconds=0.2)
    task = asyncio.create_task(intake.run())
    await wait_until(lambda: intake.status["last_error"] is not None, "the login failure")
    assert "refused the login" in intake.status["last_error"]
    assert not task.done() and intake.status["connected"] is False
    intake.stop()
    await asyncio.wait_for(task, WAIT_LIMIT)


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_tls_and_starttls_with_self_signed_certificate(
        dovecot: Dovecot, user: str, database: Database, security: str) -> None:
    port = dovecot.tls_port if security == "tls" else dovecot.port
    config = config_for(dovecot, user, imap_security=security, imap_port=port)
    intake = ImapIntake(config, database, process=marking_processor(database),
                        ssl_context=dovecot.ssl_context())
    async with running(intake):
        await asyncio.to_thread(dovecot.append, user, mail(f"Over {security}"))
        await wait_until(filed_everything(database, user, 1), f"mail filed over {security}")
    assert dovecot.list_uids(user, "INBOX") == []


async def test_untrusted_certificate_is_refused(dovecot: Dovecot, user: str,
                                                database: Database) -> None:
    config = config_for(dovecot, user, imap_security="tls", imap_port=dovecot.tls_port)
    intake = ImapIntake(config, database, process=idle_processor,
                        ssl_context=ssl.create_default_context(), reconnect_max_seconds=0.2)
    task = asyncio.create_task(intake.run())
    await wait_until(lambda: intake.status["last_error"] is not None, "the TLS failure")
    assert "CERTIFICATE_VERIFY_FAILED" in intake.status["last_error"]
    intake.stop()
    await asyncio.wait_for(task, WAIT_LIMIT)
    assert rows(database, user) == []


def test_imap_module_logs_under_the_intake_logger() -> None:
    assert imap_module.log.name == intake_module.log.name == "warrantyd.intake"


def test_uid_sets_write_runs_as_ranges() -> None:
    assert uid_set([7]) == "7"
    assert uid_set([9, 3, 4, 5, 7, 10, 4]) == "3:5,7,9:10"
    with pytest.raises(ValueError):
        uid_set([])
