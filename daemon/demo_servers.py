"""The demo's own mail system: a real IMAP server and a real SMTP server on loopback.

Nothing here is a mock: the daemon and a person's mail client (Thunderbird, mutt, ...) talk
the ordinary protocols to these servers.

* IMAP is pymap's Maildir backend (an asyncio IMAP4rev1 server with UIDPLUS, MOVE and
  IDLE), run inside this process.  Every demo person has an account with a Maildir.
* SMTP is aiosmtpd.  It delivers: mail to any demo address lands in that person's INBOX,
  so mail the daemon sends to staff, vendors and homeowners can be read in their mailboxes,
  and mail they send to the warranty address (including its ``+token`` reply addresses)
  lands in the warranty INBOX.  Mail to anyone else is refused with 550.

Both listen on 127.0.0.1 only, without TLS and without SMTP AUTH: it is a sandbox on the
operator's own machine.  Passwords are kept in clear in the sandbox directory for the same
reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mailbox
import socket
from argparse import Namespace
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("warrantyd.demo")

LOOPBACK = "127.0.0.1"


class DemoServerError(Exception):
    """The sandbox mail servers cannot start; the message says what to install or free."""


def port_or_free(preferred: int, host: str = LOOPBACK) -> int:
    """``preferred`` if nothing listens there, else a free port (the demo must still start)."""
    for candidate in (preferred, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, candidate))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise DemoServerError(f"no free TCP port on {host}")


def mailbox_user(address: str) -> str:
    """The account an address delivers to: ``warranty+token@x`` is ``warranty@x``."""
    local, _, domain = address.strip().strip("<>").lower().rpartition("@")
    return f"{local.split('+', 1)[0]}@{domain}"


@dataclass(frozen=True)
class Account:
    address: str
    password: str

    @property
    def maildir_name(self) -> str:
        return self.address.replace("@", "_at_")


class MaildirStore:
    """The sandbox's accounts: pymap's passwd/shadow files and one Maildir per person."""

    def __init__(self, base_dir: Path, accounts: Mapping[str, str]) -> None:
        self.base_dir = base_dir
        self.accounts = {a.lower(): Account(a.lower(), p) for a, p in accounts.items()}

    def write_account_files(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        passwd = "".join(f"{a.address}:x::::{a.maildir_name}:\n"
                         for a in self.accounts.values())
        shadow = "".join(f"{a.address}:{a.password}\n" for a in self.accounts.values())
        (self.base_dir / "pymap-etc-passwd").write_text(passwd, encoding="utf-8")
        shadow_path = self.base_dir / "pymap-etc-shadow"
        shadow_path.write_text(shadow, encoding="utf-8")
        shadow_path.chmod(0o600)
        for account in self.accounts.values():
            self._maildir(account)

    def _maildir(self, account: Account) -> mailbox.Maildir:
        return mailbox.Maildir(self.base_dir / account.maildir_name, create=True)

    def knows(self, address: str) -> bool:
        return mailbox_user(address) in self.accounts

    def deliver(self, address: str, raw: bytes, *, envelope_from: str) -> None:
        """Put one mail in the INBOX of the account ``address`` belongs to.

        A ``Return-Path`` is added as a delivering MTA does, so bounces (null sender) look
        to the daemon as they would on a real server.
        """
        account = self.accounts[mailbox_user(address)]
        head = f"Return-Path: <{envelope_from}>\r\nDelivered-To: {address}\r\n".encode()
        self._maildir(account).add(head + raw)


class _DeliveringHandler:
    """aiosmtpd handler: accept demo recipients, deliver to their Maildirs."""

    def __init__(self, store: MaildirStore) -> None:
        self.store = store

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any,
                          address: str, rcpt_options: list[str]) -> str:
        if not self.store.knows(address):
            return f"550 5.1.1 <{address}>: no such mailbox in the demo sandbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        for rcpt in envelope.rcpt_tos:
            await asyncio.to_thread(self.store.deliver, rcpt, raw,
                                    envelope_from=envelope.mail_from or "")
        log.debug("delivered mail from %s to %s", envelope.mail_from, envelope.rcpt_tos)
        return "250 Message accepted for delivery"


class DemoMailServers:
    """pymap (IMAP) and aiosmtpd (SMTP) on loopback, started and stopped in the caller's loop."""

    def __init__(self, base_dir: Path, accounts: Mapping[str, str], *,
                 imap_port: int = 1143, smtp_port: int = 2525, host: str = LOOPBACK) -> None:
        self.store = MaildirStore(base_dir, accounts)
        self.host = host
        self.preferred = (imap_port, smtp_port)
        self.imap_port = 0
        self.smtp_port = 0
        self._stack: AsyncExitStack | None = None

    async def start(self) -> None:
        try:
            from aiosmtpd.smtp import SMTP
            from pymap.backend.maildir import Config as MaildirConfig
            from pymap.backend.maildir import Login as MaildirLogin
            from pymap.backend.maildir import MaildirBackend
            from pymap.imap import IMAPService
            from pysasl.hashing import Cleartext
        except ImportError as exc:
            raise DemoServerError(f"the demo needs the packages pymap and aiosmtpd ({exc}); "
                                  "install them with: .venv/bin/pip install pymap aiosmtpd"
                                  ) from None
        self.store.write_account_files()
        self.imap_port = port_or_free(self.preferred[0], self.host)
        self.smtp_port = port_or_free(self.preferred[1], self.host)
        stack = AsyncExitStack()
        try:
            args = Namespace(host=[self.host], port=str(self.imap_port), debug=False, cert=None,
                             key=None, tls=False, passlib_cfg=None, proxy_protocol=None,
                             inherited_sockets=None, base_dir=str(self.store.base_dir),
                             concurrency=4, layout="++", colon=None)
            config = MaildirConfig.from_args(args, hash_context=Cleartext(),
                                             reject_dnsbl=False, invalid_user_sleep=0.0)
            backend = MaildirBackend(MaildirLogin(config), config)
            config.apply_context()
            await backend.start(stack)
            await IMAPService(backend, config).start(stack)

            loop = asyncio.get_running_loop()
            handler = _DeliveringHandler(self.store)
            smtp_server = await loop.create_server(
                lambda: SMTP(handler, hostname="sandbox.localhost", decode_data=False,
                             enable_SMTPUTF8=True, ident="warrantyd demo SMTP"),
                self.host, self.smtp_port)
            stack.push_async_callback(self._close_server, smtp_server)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        log.info("demo IMAP on %s:%d, SMTP on %s:%d", self.host, self.imap_port, self.host,
                 self.smtp_port)

    @staticmethod
    async def _close_server(server: asyncio.base_events.Server) -> None:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 5)

    async def stop(self) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()
