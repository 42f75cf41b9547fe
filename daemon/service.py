"""The long-running daemon: intake, processing and the outbox in one asyncio loop.

Shutdown on SIGTERM/SIGINT is orderly: intake stops taking new mail, the mail in hand is
finished (its transaction commits or rolls back as a whole), the outbox sender finishes the
send in hand, and the process exits 0.  Anything not finished is still a row and is picked up
by the next start.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from typing import Any

from warrantyd.daemon.config import Config
from warrantyd.daemon.directory import sync_config_records
from warrantyd.daemon.drafting import make_drafter
from warrantyd.daemon.intake import ImapIntake
from warrantyd.daemon.outbox import OutboxSender
from warrantyd.daemon.process import Processor
from warrantyd.storage.db import Database

log = logging.getLogger("warrantyd.service")


class Service:
    def __init__(self, config: Config, *, import_existing: bool = False,
                 imap_ssl_context: ssl.SSLContext | None = None,
                 smtp_tls_context: ssl.SSLContext | None = None) -> None:
        self.config = config
        self.db = Database(config.database.url)
        self.import_existing = import_existing
        self.imap_ssl_context = imap_ssl_context
        self.smtp_tls_context = smtp_tls_context
        self.intake: ImapIntake | None = None
        self.sender: OutboxSender | None = None
        self.processor: Processor | None = None
        self._stopping = asyncio.Event()

    def prepare(self) -> None:
        """Schema upgrade and config records; run before the loop starts."""
        self.db.upgrade()
        self.config.storage.data_dir.mkdir(parents=True, exist_ok=True)
        with self.db.session() as session:
            sync_config_records(session, self.config)

    def stop(self) -> None:
        if self._stopping.is_set():
            return
        log.info("stopping: finishing the mail in hand")
        self._stopping.set()
        if self.intake is not None:
            self.intake.stop()
        if self.sender is not None:
            self.sender.stop()

    async def run(self) -> None:
        self.prepare()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        self.sender = OutboxSender(self.db, self.config.smtp,
                                   envelope_from=self.config.mailbox.address,
                                   rate_exempt=self.config.staff.addresses,
                                   tls_context=self.smtp_tls_context)
        self.processor = Processor(self.config, self.db, make_drafter(self.config),
                                   on_outbound=self.sender.wake)
        self.intake = ImapIntake(self.config.mailbox, self.db,
                                 process=self.processor.process_pending,
                                 import_existing=self.import_existing,
                                 ssl_context=self.imap_ssl_context)
        from warrantyd.daemon.web import WebServer  # aiohttp: imported after the schema is up

        web = WebServer(self.config, self.db)
        try:
            try:
                await web.start()
            except OSError as exc:  # mail matters more than the page: keep handling it
                log.error("%s; running without the vendor details pages", exc)
            log.info("warrantyd running for %s", self.config.mailbox.address)
            await asyncio.gather(self.intake.run(), self.sender.run())
        finally:
            await web.stop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            self.db.dispose()
            log.info("warrantyd stopped")

    @property
    def status(self) -> dict[str, Any]:
        return {
            "intake": self.intake.status if self.intake else None,
            "outbox": self.sender.status if self.sender else None,
        }
