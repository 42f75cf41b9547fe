"""One IMAP connection as the intake needs it, on top of aioimaplib.

aioimaplib speaks the protocol; this module makes it safe to build a long-running reader on:

* every command has a deadline and is raced against the connection's loss, because a
  dropped connection does not raise in aioimaplib (later commands would just hang);
* STARTTLS, which aioimaplib lacks, is done here: the command, then ``loop.start_tls`` on the
  same transport, then CAPABILITY again (the pre-TLS list must not be trusted);
* mailbox names are quoted (and encoded to modified UTF-7) here, because aioimaplib sends
  arguments as they are (``CREATE Needs Review`` would create ``Needs``);
* the raw FETCH/SEARCH/SELECT lines are parsed by small pure functions below.

Anything that goes wrong with the server or the network is raised as :class:`ImapTrouble`
(or its subclasses), so the caller has one thing to catch before it reconnects.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
import ssl
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import aioimaplib

from warrantyd.daemon.config import MailboxConfig
from warrantyd.daemon.oauth import TokenError, TokenProvider

log = logging.getLogger("warrantyd.intake")

T = TypeVar("T")

IDLE_RENEW_SECONDS = 25 * 60.0
"""Servers may drop a client idle for 30 minutes (RFC 2177): re-issue IDLE before that."""


class ImapTrouble(Exception):
    """The server or the network failed us; the connection is no longer usable."""


class ConnectionLost(ImapTrouble):
    """The server closed the connection (BYE, restart, network cut)."""


class CommandFailed(ImapTrouble):
    """The server refused a command the intake cannot do without (NO/BAD)."""


class AuthenticationRefused(CommandFailed):
    """The server refused our credentials (a password or an OAuth access token)."""


class _SaslCommand(aioimaplib.Command):
    """AUTHENTICATE that answers the server's continuations itself.

    The first empty continuation asks for the initial response (servers without SASL-IR);
    any other continuation is an error challenge, answered with an empty line so the server
    finishes with NO instead of waiting.
    """

    def __init__(self, *args: Any, transport: Any, initial: str | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._transport = transport
        self._initial = initial
        self.error_challenge: bytes | None = None
        self._answered = 0

    def flush(self) -> None:
        # aioimaplib calls flush after every chunk it reads: act once per new continuation.
        if len(self._resp_lines) <= self._answered:
            return
        self._answered = len(self._resp_lines)
        line = bytes(self._resp_lines[-1])
        if not line.startswith(b"+"):
            return
        challenge = line[1:].strip()
        if self._initial is not None and not challenge:
            self._transport.write(self._initial.encode("ascii") + b"\r\n")
            self._initial = None
            return
        self.error_challenge = challenge
        self._transport.write(b"\r\n")


# --- pure helpers: names and response lines -------------------------------------------------


def encode_mailbox_name(name: str) -> str:
    """Encode a folder name as IMAP modified UTF-7 (RFC 3501 section 5.1.3)."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            utf16 = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(utf16).decode("ascii").rstrip("=")
                       .replace("/", ",") + "-")
            pending.clear()

    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    return "".join(out)


def quote_mailbox(name: str) -> str:
    """A folder name ready to put on the wire: modified UTF-7, as an RFC 3501 quoted string."""
    encoded = encode_mailbox_name(name)
    return '"' + encoded.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class SelectInfo:
    """What SELECT told us about the folder."""

    uidvalidity: int
    uidnext: int
    exists: int


_UIDVALIDITY_RE = re.compile(rb"\[UIDVALIDITY (\d+)\]")
_UIDNEXT_RE = re.compile(rb"\[UIDNEXT (\d+)\]")
_EXISTS_RE = re.compile(rb"^(\d+) EXISTS")
_FETCH_START_RE = re.compile(rb"^\d+ FETCH \(")
_UID_RE = re.compile(rb"\bUID (\d+)")
_LITERAL_RE = re.compile(rb"\{(\d+)\}$")
_INTERNALDATE_RE = re.compile(rb'INTERNALDATE "([^"]+)"')


def _byte_lines(lines: Iterable[Any]) -> list[bytes]:
    return [bytes(line) for line in lines if isinstance(line, bytes)]


def parse_select(lines: Iterable[Any]) -> tuple[int | None, int | None, int]:
    """(UIDVALIDITY, UIDNEXT, EXISTS) from the lines of a SELECT answer."""
    uidvalidity = uidnext = None
    exists = 0
    for line in _byte_lines(lines):
        if match := _UIDVALIDITY_RE.search(line):
            uidvalidity = int(match.group(1))
        if match := _UIDNEXT_RE.search(line):
            uidnext = int(match.group(1))
        if match := _EXISTS_RE.match(line):
            exists = int(match.group(1))
    return uidvalidity, uidnext, exists


def parse_search(lines: list[Any]) -> list[int]:
    """UIDs from the untagged SEARCH lines (the last line is the tagged status text)."""
    uids: set[int] = set()
    for line in _byte_lines(lines[:-1]):
        text = line[len(b"SEARCH"):] if line.startswith(b"SEARCH") else line
        uids.update(int(tok) for tok in text.split() if tok.isdigit())
    return sorted(uids)


def parse_fetch_bodies(lines: list[Any]) -> dict[int, bytes]:
    """Message bytes by UID from a ``UID FETCH ... (UID BODY.PEEK[])`` answer.

    aioimaplib hands back a FETCH line ending in ``{size}``, then the literal as a
    ``bytearray``, then the rest of the response (``)`` or `` FLAGS (...))``).  The UID may
    come before or after the literal, depending on the server.  Unsolicited FETCH lines
    (flag changes by other clients) have no literal and are skipped.
    """
    bodies: dict[int, bytes] = {}
    index = 0
    while index < len(lines):
        line = lines[index]
        if isinstance(line, bytes) and _FETCH_START_RE.match(line):
            size_match = _LITERAL_RE.search(line)
            if size_match and index + 1 < len(lines) and isinstance(lines[index + 1], bytearray):
                literal = bytes(lines[index + 1])
                uid_match = _UID_RE.search(line)
                tail = lines[index + 2] if index + 2 < len(lines) else b""
                if uid_match is None and isinstance(tail, bytes):
                    uid_match = _UID_RE.search(tail)
                if uid_match is not None and len(literal) == int(size_match.group(1)):
                    bodies[int(uid_match.group(1))] = literal
                index += 2
                continue
        index += 1
    return bodies


def parse_internaldates(lines: list[Any]) -> dict[int, datetime]:
    """INTERNALDATE by UID from a ``UID FETCH ... (UID INTERNALDATE)`` answer."""
    dates: dict[int, datetime] = {}
    for line in _byte_lines(lines):
        uid_match, date_match = _UID_RE.search(line), _INTERNALDATE_RE.search(line)
        if uid_match and date_match:
            text = date_match.group(1).decode("ascii").strip()
            try:
                dates[int(uid_match.group(1))] = datetime.strptime(text, "%d-%b-%Y %H:%M:%S %z")
            except ValueError:
                log.warning("ignoring an INTERNALDATE the server sent that cannot be read: %r",
                            text)
    return dates


def response_text(response: aioimaplib.Response) -> str:
    """The server's own words from a response, for log lines and error messages."""
    lines = _byte_lines(response.lines)
    return lines[-1].decode("utf-8", "replace") if lines else ""


def announces_new_mail(lines: Iterable[Any]) -> bool:
    """True if pushed untagged lines say that mail arrived (EXISTS or RECENT)."""
    return any(re.match(rb"^\d+ (EXISTS|RECENT)\b", line) for line in _byte_lines(lines))


def says_bye(lines: Iterable[Any]) -> bool:
    return any(line.startswith(b"BYE") for line in _byte_lines(lines))


# --- the connection -------------------------------------------------------------------------


def uid_set(uids: Iterable[int]) -> str:
    """An IMAP sequence set of UIDs, runs written as ranges: ``3:7,9``."""
    ordered = sorted(set(uids))
    if not ordered:
        raise ValueError("an empty UID set")
    runs: list[list[int]] = []
    for uid in ordered:
        if runs and uid == runs[-1][1] + 1:
            runs[-1][1] = uid
        else:
            runs.append([uid, uid])
    return ",".join(str(a) if a == b else f"{a}:{b}" for a, b in runs)


class ImapSession:
    """A logged-in (or about to be) IMAP connection with deadlines on every command."""

    def __init__(self, client: aioimaplib.IMAP4, lost: asyncio.Future[Any], host: str,
                 timeout: float) -> None:
        self.client = client
        self.lost = lost
        self.host = host
        self.timeout = timeout

    # connecting

    @classmethod
    async def connect(cls, host: str, port: int, security: str, *,
                      ssl_context: ssl.SSLContext | None = None,
                      timeout: float = 30.0) -> ImapSession:
        """Open a connection and read the greeting; ``security`` is tls, starttls or none."""
        loop = asyncio.get_running_loop()
        lost: asyncio.Future[Any] = loop.create_future()

        def on_lost(exc: Exception | None) -> None:
            if not lost.done():
                lost.set_result(exc)

        client: aioimaplib.IMAP4
        if security == "tls":
            client = aioimaplib.IMAP4_SSL(host, port, timeout=timeout,
                                          ssl_context=ssl_context or ssl.create_default_context())
            # IMAP4_SSL takes no conn_lost_cb; the protocol object does.
            client.protocol.conn_lost_cb = on_lost
        else:
            client = aioimaplib.IMAP4(host, port, timeout=timeout, conn_lost_cb=on_lost)
        session = cls(client, lost, host, timeout)
        try:
            await client.wait_hello_from_server()
        except (TimeoutError, OSError, ssl.SSLError, aioimaplib.AioImapException) as exc:
            session.close()
            raise ImapTrouble(f"cannot connect to {host}:{port} ({security}): "
                              f"{_describe(exc)}") from exc
        if security == "starttls":
            try:
                await session.starttls(ssl_context or ssl.create_default_context())
            except BaseException:
                session.close()
                raise
        return session

    async def starttls(self, context: ssl.SSLContext) -> None:
        """Upgrade the plain connection to TLS (RFC 3501 6.2.1), then re-read CAPABILITY."""
        protocol = self.client.protocol
        if "STARTTLS" not in protocol.capabilities:
            raise CommandFailed(f"{self.host} does not offer STARTTLS; set imap_security to "
                                "\"tls\" (port 993) or ask the mail provider")
        command = aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop)
        response = await self._run(protocol.execute(command), "STARTTLS")
        if response.result != "OK":
            raise CommandFailed(f"{self.host} refused STARTTLS: {response_text(response)}")
        loop = asyncio.get_running_loop()
        try:
            transport = await loop.start_tls(protocol.transport, protocol, context,
                                             server_hostname=self.host,
                                             ssl_handshake_timeout=self.timeout)
        except (TimeoutError, OSError, ssl.SSLError, ConnectionError) as exc:
            raise ImapTrouble(f"TLS handshake with {self.host} after STARTTLS failed: "
                              f"{_describe(exc)}") from exc
        if transport is None:
            raise ImapTrouble(f"TLS handshake with {self.host} after STARTTLS failed")
        protocol.transport = transport
        await self._run(protocol.capability(), "CAPABILITY after STARTTLS")

    async def login(self, user: str, password: str) -> None:
        response = await self._run(self.client.login(user, password), "LOGIN")
        if response.result != "OK":
            raise CommandFailed(f"the server refused the login of {user!r}: "
                                f"{response_text(response)}; check imap_user and the password "
                                "in the environment variable named by imap_password_env")
        # Capabilities can change after login; ask rather than trust the pre-login list.
        await self._run(self.client.protocol.capability(), "CAPABILITY")

    async def authenticate_xoauth2(self, user: str, token: str) -> None:
        """``AUTHENTICATE XOAUTH2`` (Gmail, Microsoft 365) with an OAuth 2.0 access token.

        aioimaplib's own ``xoauth2`` waits forever when the token is refused: the server
        sends its error as a continuation and waits for the client's (empty) answer before
        it says NO.  This command answers that continuation, so a bad token is a prompt
        :class:`AuthenticationRefused` that quotes the server's reason.
        """
        from warrantyd.daemon.oauth import xoauth2_initial_response

        protocol = self.client.protocol
        initial = xoauth2_initial_response(user, token)
        inline = self.has("SASL-IR")
        command = _SaslCommand("AUTHENTICATE", protocol.new_tag(), "XOAUTH2",
                               *((initial,) if inline else ()), loop=protocol.loop,
                               transport=protocol.transport,
                               initial=None if inline else initial)
        response = await self._run(protocol.execute(command, scrub=initial),
                                   "AUTHENTICATE XOAUTH2")
        if response.result != "OK":
            from warrantyd.daemon.oauth import describe_xoauth2_challenge

            reason = response_text(response)
            if command.error_challenge:
                reason += f" ({describe_xoauth2_challenge(command.error_challenge)})"
            raise AuthenticationRefused(
                f"the server refused the XOAUTH2 login of {user!r}: {reason}; the access "
                "token is expired, revoked or lacks the mail scope — check the token source "
                "(oauth_token_command / oauth_token_file)")
        protocol.state = aioimaplib.AUTH
        await self._run(protocol.capability(), "CAPABILITY")

    # capabilities

    def has(self, capability: str) -> bool:
        return capability.upper() in {c.upper() for c in self.client.protocol.capabilities}

    # folders

    async def select(self, folder: str) -> SelectInfo:
        response = await self._run(self.client.select(quote_mailbox(folder)), f"SELECT {folder}")
        if response.result != "OK":
            raise CommandFailed(f"cannot open folder {folder!r}: {response_text(response)}; "
                                "check [mailbox] folder")
        uidvalidity, uidnext, exists = parse_select(response.lines)
        if uidvalidity is None:
            raise CommandFailed(f"the server gave no UIDVALIDITY for {folder!r}; without it "
                                "mail cannot be tracked safely")
        if uidnext is None:
            uidnext = await self._status_uidnext(folder)
        if uidnext is None:
            # Without UIDNEXT a first connect could not tell old mail from new: derive it.
            uidnext = await self._highest_uid() + 1
        return SelectInfo(uidvalidity=uidvalidity, uidnext=uidnext, exists=exists)

    async def _highest_uid(self) -> int:
        response = await self._run(self.client.uid_search("UID *", charset=None), "UID SEARCH")
        if response.result != "OK":
            raise CommandFailed(f"UID SEARCH failed: {response_text(response)}")
        return max(parse_search(response.lines), default=0)

    async def _status_uidnext(self, folder: str) -> int | None:
        response = await self._run(self.client.status(quote_mailbox(folder), "(UIDNEXT)"),
                                   "STATUS")
        match = re.search(rb"UIDNEXT (\d+)", b" ".join(_byte_lines(response.lines)))
        return int(match.group(1)) if match else None

    async def folder_exists(self, folder: str) -> bool:
        response = await self._run(self.client.list('""', quote_mailbox(folder)), "LIST")
        return response.result == "OK" and any(
            line.startswith(b"(") for line in _byte_lines(response.lines))

    async def ensure_folder(self, folder: str) -> bool:
        """Create ``folder`` unless it exists; True if it was created."""
        if await self.folder_exists(folder):
            return False
        response = await self._run(self.client.create(quote_mailbox(folder)), "CREATE")
        if response.result == "OK":
            return True
        if await self.folder_exists(folder):  # created meanwhile by someone else
            return False
        raise CommandFailed(f"cannot create folder {folder!r}: {response_text(response)}; "
                            "create it in the mail client or change the folder name in config")

    # messages

    async def search_uids_from(self, first_uid: int) -> list[int]:
        """UIDs >= ``first_uid`` in the selected folder.

        ``UID n:*`` always matches the highest message even when its UID is below n
        (``*`` means "the largest UID"), so the answer is filtered.
        """
        response = await self._run(
            self.client.uid_search(f"UID {max(first_uid, 1)}:*", charset=None), "UID SEARCH")
        if response.result != "OK":
            raise CommandFailed(f"UID SEARCH failed: {response_text(response)}")
        return [uid for uid in parse_search(response.lines) if uid >= first_uid]

    async def present_uids(self, uids: Iterable[int]) -> set[int]:
        """Which of ``uids`` are still in the selected folder."""
        wanted = sorted(set(uids))
        if not wanted:
            return set()
        response = await self._run(
            self.client.uid_search("UID " + ",".join(map(str, wanted)), charset=None),
            "UID SEARCH")
        if response.result != "OK":
            raise CommandFailed(f"UID SEARCH failed: {response_text(response)}")
        return set(parse_search(response.lines)) & set(wanted)

    async def fetch_message(self, uid: int) -> bytes | None:
        """The raw bytes of one message, without setting \\Seen; None if it is gone."""
        return (await self.fetch_messages([uid])).get(uid)

    async def fetch_messages(self, uids: Sequence[int]) -> dict[int, bytes]:
        """The raw bytes of several messages by UID in one command, without setting
        \\Seen; a UID that is gone is missing from the answer."""
        wanted = uid_set(uids)
        response = await self._run(
            self.client.uid("fetch", wanted, "(UID BODY.PEEK[])"), f"UID FETCH {wanted}")
        if response.result != "OK":
            raise CommandFailed(f"UID FETCH {wanted} failed: {response_text(response)}")
        bodies = parse_fetch_bodies(response.lines)
        return {uid: bodies[uid] for uid in uids if uid in bodies}

    async def fetch_internaldates(self, first_uid: int = 1) -> dict[int, datetime]:
        response = await self._run(
            self.client.uid("fetch", f"{max(first_uid, 1)}:*", "(UID INTERNALDATE)"),
            "UID FETCH INTERNALDATE")
        if response.result != "OK":
            raise CommandFailed(f"UID FETCH INTERNALDATE failed: {response_text(response)}")
        return {uid: when for uid, when in parse_internaldates(response.lines).items()
                if uid >= first_uid}

    async def move(self, uids: int | Sequence[int], folder: str) -> bool:
        """Move messages by UID (one, or several in one command); True once the server
        confirmed it.

        MOVE when the server has it; otherwise COPY, flag \\Deleted and UID EXPUNGE of those
        UIDs (UIDPLUS).  Without UIDPLUS a plain EXPUNGE would also remove every other
        message someone flagged \\Deleted, so the originals are only flagged and left for the
        mail client to expunge: the mail is never deleted by us beyond what we copied.
        """
        target = quote_mailbox(folder)
        wanted = uid_set([uids] if isinstance(uids, int) else uids)
        if self.has("MOVE"):
            response = await self._run(self.client.uid("move", wanted, target), "UID MOVE")
            return self._confirmed(response, f"UID MOVE {wanted} to {folder!r}")
        response = await self._run(self.client.uid("copy", wanted, target), "UID COPY")
        if not self._confirmed(response, f"UID COPY {wanted} to {folder!r}"):
            return False
        response = await self._run(
            self.client.uid("store", wanted, "+FLAGS.SILENT", "(\\Deleted)"), "UID STORE")
        if not self._confirmed(response, f"flagging UID {wanted} \\Deleted"):
            return True  # the copy is filed; the original merely stays
        if self.has("UIDPLUS"):
            response = await self._run(self.client.uid("expunge", wanted), "UID EXPUNGE")
            self._confirmed(response, f"UID EXPUNGE {wanted}")
        return True

    @staticmethod
    def _confirmed(response: aioimaplib.Response, what: str) -> bool:
        if response.result == "OK":
            return True
        log.warning("%s was refused by the server: %s; it stays where it is and is tried "
                    "again on the next pass", what, response_text(response))
        return False

    # waiting for mail

    async def idle_until_new_mail(self, seconds: float, stop: asyncio.Event) -> bool:
        """IDLE for up to ``seconds``; True if the server pushed EXISTS/RECENT.

        Returns early (False) when ``stop`` is set; raises :class:`ConnectionLost` when the
        connection drops or the server says BYE while idling.
        """
        client = self.client
        idle_task = await self._run(client.idle_start(timeout=seconds + 3600), "IDLE")
        new_mail = False
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + seconds
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                push = asyncio.ensure_future(client.wait_server_push(timeout=remaining))
                stopper = asyncio.ensure_future(stop.wait())
                done, _ = await asyncio.wait({push, stopper, self.lost},
                                             return_when=asyncio.FIRST_COMPLETED)
                for task in (push, stopper):
                    if task not in done:
                        task.cancel()
                if push in done and not push.cancelled() and push.exception() is None:
                    lines = push.result()
                    if says_bye(lines):
                        raise ConnectionLost(f"{self.host} said BYE while idling: "
                                             f"{_byte_lines(lines)[0].decode(errors='replace')}")
                    if announces_new_mail(lines):
                        new_mail = True
                        break
                    if lines == aioimaplib.STOP_WAIT_SERVER_PUSH:
                        break
                    continue
                if self.lost.done():
                    raise ConnectionLost(f"{self.host} closed the connection while idling")
                if stopper in done:
                    break
                if push in done:  # the wait timed out: time to renew
                    break
        finally:
            if not self.lost.done() and client.has_pending_idle():
                client.idle_done()
                with contextlib.suppress(ImapTrouble):
                    await self._run(idle_task, "IDLE DONE")
        # Lines pushed while DONE was on its way are still queued.
        queue = client.protocol.idle_queue
        while not queue.empty():
            lines = queue.get_nowait()
            if says_bye(lines):
                raise ConnectionLost(f"{self.host} said BYE")
            new_mail = new_mail or announces_new_mail(lines)
        if self.lost.done():
            raise ConnectionLost(f"{self.host} closed the connection while idling")
        return new_mail

    # leaving

    async def logout(self) -> None:
        """Say goodbye politely if the connection still works, then close it."""
        if not self.lost.done():
            with contextlib.suppress(ImapTrouble):
                await self._run(self.client.logout(), "LOGOUT", timeout=min(self.timeout, 5.0))
        self.close()

    def close(self) -> None:
        transport = self.client.protocol.transport
        if transport is not None:
            transport.close()
        connecting = getattr(self.client, "_client_task", None)  # a connect still under way
        if connecting is not None and not connecting.done():
            connecting.cancel()

    # the one place commands are awaited

    async def _run(self, awaitable: Awaitable[T], what: str, *,
                   timeout: float | None = None) -> T:
        """Await one command, but give up if the connection drops or time runs out."""
        if self.lost.done():
            if asyncio.iscoroutine(awaitable):
                awaitable.close()  # never started: say so, not "never awaited"
            raise ConnectionLost(f"{what}: the connection to {self.host} is closed")
        task = asyncio.ensure_future(awaitable)
        limit = self.timeout if timeout is None else timeout
        done, _ = await asyncio.wait({task, self.lost}, timeout=limit,
                                     return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            try:
                return task.result()
            except (TimeoutError, aioimaplib.AioImapException, OSError) as exc:
                raise ImapTrouble(f"{what} failed: {_describe(exc)}") from exc
        task.cancel()
        if self.lost.done():
            raise ConnectionLost(f"{what}: {self.host} closed the connection")
        raise ImapTrouble(f"{what}: no answer from {self.host} within {limit:g} s")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, aioimaplib.CommandTimeout):
        return "timed out"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def log_in(session: ImapSession, mailbox: MailboxConfig,
                 tokens: TokenProvider | None) -> None:
    """Password LOGIN, or XOAUTH2 with a token from the configured source.

    A refused token is thrown away, so the next attempt fetches a fresh one.  Used by the
    intake and by ``warrantyd check``, so both log in the same way.
    """
    if tokens is None:
        await session.login(mailbox.imap_user, mailbox.password())
        return
    try:
        token = await tokens.token()
    except TokenError as exc:
        raise ImapTrouble(f"no access token for {mailbox.imap_user}: {exc}") from exc
    try:
        await session.authenticate_xoauth2(mailbox.imap_user, token)
    except AuthenticationRefused:
        tokens.invalidate()
        raise
