"""The long-running daemon: intake and the outbox in one asyncio loop, processing beside it.

Each division's mailbox has its own IMAP reader (a :class:`MailboxReader` around an
:class:`ImapIntake`), all in this one loop and all feeding the one processing worker (a
process of its own, see :mod:`warrantyd.daemon.worker`); each reader
holds its own mailbox lock, so with several daemons on PostgreSQL each mailbox may be read
by a different one.

Shutdown on SIGTERM/SIGINT is orderly: intake stops taking new mail, the mail in hand is
finished (its transaction commits or rolls back as a whole), the outbox sender finishes the
send in hand, and the process exits 0.  Anything not finished is still a row and is picked up
by the next start.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
import ssl
import sys
from typing import Any

from warrantyd.daemon.config import Config, DivisionConfig
from warrantyd.daemon.directory import sync_config_records
from warrantyd.daemon.intake import ImapIntake, mailbox_key
from warrantyd.daemon.leader import MailboxReader, poll_processing, run_every, startup_lock
from warrantyd.daemon.outbox import OutboxSender
from warrantyd.daemon.scheduler import JobScheduler
from warrantyd.daemon.tokens import installation_secret
from warrantyd.daemon.worker import ProcessingWorker, SpawnedWorker
from warrantyd.storage.db import Database

log = logging.getLogger("warrantyd.service")

PROCESS_POLL_SECONDS = 1.0
"""On PostgreSQL every daemon looks for stored mail this often, reader of the mailbox or not."""
RELEASE_DEAD_CLAIMS_SECONDS = 5.0
"""On PostgreSQL, how often outbound mail claimed by a dead daemon of this host is freed."""
GIL_SWITCH_SECONDS = 0.0005
"""How long a thread may keep the interpreter while another waits (Python's default: 5 ms).

The intake's and the sender's database steps run in threads; the event loop thread (SMTP
and IMAP conversations) needs the interpreter back after every network answer.  With the
default each answer could wait up to 5 ms.  (It was set when processing ran in this
process too, where it held sending to a crawl; processing has a process of its own now.)"""


class Service:
    def __init__(self, config: Config, *, import_existing: bool = False,
                 imap_ssl_context: ssl.SSLContext | None = None,
                 smtp_tls_context: ssl.SSLContext | None = None,
                 worker: SpawnedWorker | None = None) -> None:
        self.config = config
        self.spawned_worker = worker
        """The processing worker's process when it was started before the config was read
        (``warrantyd run``); otherwise :meth:`run` starts one."""
        self.db = Database(config.database.url)
        self.import_existing = import_existing
        self.imap_ssl_context = imap_ssl_context
        self.smtp_tls_context = smtp_tls_context
        self.intakes: dict[str, ImapIntake] = {}
        """The live intake of each division whose mailbox this daemon reads now."""
        self.readers: dict[str, MailboxReader] = {}
        """One mailbox reader per division, by division name (main first)."""
        self.sender: OutboxSender | None = None
        self.processor: ProcessingWorker | None = None
        self.scheduler: JobScheduler | None = None
        self._stopping = asyncio.Event()

    def prepare(self) -> None:
        """Schema upgrade and config records; run before the loop starts (one daemon at a
        time on a shared database: see ``leader.startup_lock``)."""
        with startup_lock(self.db):
            # In a child: Alembic and the revisions never stay in the daemon's memory.
            self.db.upgrade(in_child=True)
            self.config.storage.data_dir.mkdir(parents=True, exist_ok=True)
            with self.db.session() as session:
                sync_config_records(session, self.config)
                # Made now if new: processing reads it in sessions that do not write.
                installation_secret(session, self.config.web.secret_env)

    def stop(self) -> None:
        if self._stopping.is_set():
            return
        log.info("stopping: finishing the mail in hand")
        self._stopping.set()
        for reader in self.readers.values():
            reader.stop()
        for intake in self.intakes.values():
            intake.stop()
        if self.sender is not None:
            self.sender.stop()
        if self.scheduler is not None:
            self.scheduler.stop()

    async def run(self) -> None:
        sys.setswitchinterval(GIL_SWITCH_SECONDS)
        self.sender = OutboxSender(self.db, self.config.smtp,
                                   rate_exempt=self.config.all_staff_addresses,
                                   tls_context=self.smtp_tls_context)
        # Processing has a process of its own (the second core).  It loads its code and
        # drafter while the schema is brought up to date here, and touches the database
        # only when first asked to process.
        self.processor = ProcessingWorker(self.config, self.db, on_outbound=self.sender.wake,
                                          spawned=self.spawned_worker)
        self.processor.start()
        try:
            self.prepare()
        except BaseException:
            await self.processor.stop()
            raise
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        # Follow-up digest, vendor reminders, cron approval digests: one run per slot.
        self.scheduler = JobScheduler(self.db, self.config, on_mail=self.sender.wake)
        # Only the daemon holding a mailbox's lock reads it; every daemon processes and
        # sends (rows are claimed, so several daemons on PostgreSQL share the work).
        self.readers = {
            division.name: MailboxReader(self.db, mailbox_key(division.mailbox),
                                         functools.partial(self._new_intake, division))
            for division in self.config.divisions}
        tasks = [*(reader.run() for reader in self.readers.values()), self.sender.run()]
        if self.db.is_postgresql:
            tasks.append(poll_processing(self.processor.process_pending, self._stopping,
                                         PROCESS_POLL_SECONDS))
            tasks.append(run_every(RELEASE_DEAD_CLAIMS_SECONDS, self._release_dead_claims,
                                   self._stopping, "freeing dead daemons' outbound claims"))
        from warrantyd.daemon.web import WebServer  # aiohttp: imported after the schema is up

        # Live intake/outbox state for /healthz and /metrics; sign-in mail wakes the sender.
        web = WebServer(self.config, self.db, status=lambda: self.status,
                        on_outbound=self.sender.wake)
        try:
            try:
                await web.start()
            except OSError as exc:  # mail matters more than the page: keep handling it
                log.error("%s; running without the vendor details pages", exc)
            log.info("warrantyd running for %s", ", ".join(
                f"{d.mailbox.address} (division {d.name})" if len(self.config.divisions) > 1
                else d.mailbox.address for d in self.config.divisions))
            self.scheduler.start()
            await asyncio.gather(*tasks)
        finally:
            await self.processor.stop()
            await self.scheduler.aclose()
            await web.stop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            self.db.dispose()
            log.info("warrantyd stopped")

    async def _release_dead_claims(self) -> None:
        """Another daemon on this host died holding outbound mail: send it now rather than
        after its lease runs out."""
        assert self.sender is not None
        if await asyncio.to_thread(self.sender.release_dead_claims):
            self.sender.wake()

    def _new_intake(self, division: DivisionConfig) -> ImapIntake:
        assert self.processor is not None
        intake = self.intakes[division.name] = ImapIntake(
            division.mailbox, self.db, process=self.processor.process_pending,
            stored=self.processor.nudge,
            import_existing=self.import_existing, ssl_context=self.imap_ssl_context)
        return intake

    def _live_intake(self, division: str) -> dict[str, Any] | None:
        """The intake state of ``division`` while this daemon reads its mailbox, else None
        (then /healthz reads the reader's state from the database)."""
        reader, intake = self.readers.get(division), self.intakes.get(division)
        if reader is None or intake is None or not reader.holding:
            return None
        return intake.status

    @property
    def status(self) -> dict[str, Any]:
        return {
            # "intake" is the main mailbox's (as before divisions); "intakes" has every
            # division's, by name.
            "intake": self._live_intake(self.config.divisions[0].name),
            "intakes": {d.name: self._live_intake(d.name) for d in self.config.divisions},
            "outbox": self.sender.status if self.sender else None,
            "worker": self.processor.status if self.processor else None,
            "scheduler": self.scheduler.status if self.scheduler else None,
        }
