"""The transactional outbox: every mail warrantyd sends is first a row, then an SMTP delivery.

:func:`queue_mail` composes the complete message and adds it to the *caller's* session, so the
mail is committed together with the state change that causes it, or not at all.  A crash
between that commit and the delivery only delays the mail: :class:`OutboxSender` finds the
row on its next pass.  Because the stored bytes (and their Message-ID) are what gets sent, a
retry sends the very same message, and a reply to it threads however late it was sent.

:class:`OutboxSender` claims due rows (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several
daemons share one queue), sends them over one SMTP connection per pass, and records the
outcome on the row and in the history: sent, retried later with exponential backoff, failed
for good (the server's words are kept), or deferred by the per-recipient rate cap.

SMTP cannot promise exactly-once delivery: a connection lost after the server accepted the
data but before it said so looks like a failure.  The window is kept as small as it can be
(each row is marked sent the moment the server answers), and the stable Message-ID lets the
receiving side recognise the rare duplicate.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.policy
import email.utils
import logging
import os
import random
import re
import secrets
import socket
import ssl
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import errors
from email.headerregistry import Address
from email.parser import BytesHeaderParser
from typing import Any

import aiosmtplib
from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, defer

from warrantyd.daemon.config import SmtpConfig
from warrantyd.daemon.oauth import TokenError, provider_for
from warrantyd.storage.db import Database, savepoint_unless_locked
from warrantyd.storage.models import HistoryEvent, OutboundMessage, utcnow

log = logging.getLogger("warrantyd.outbox")

KIND_HEADER = "X-Warrantyd-Kind"
"""Names the kind of every mail we send, so our own mail is recognised if it loops back."""

#: Headers :func:`queue_mail` owns; ``extra_headers`` may not replace them, because the row
#: (message_id, to_addr) must describe exactly the bytes that are sent.
PROTECTED_HEADERS = frozenset({"message-id", "from", "to", "date", "mime-version",
                               "content-type", "content-transfer-encoding",
                               KIND_HEADER.lower()})

_POLICY = email.policy.SMTP.clone(cte_type="7bit")
"""CRLF line ends and 7-bit bodies (quoted-printable/base64 as needed): any relay accepts it."""
_POLICY_UTF8 = email.policy.SMTPUTF8
"""Only for a non-ASCII address, which cannot be written any other way."""

_MACHINE_LOCAL_PART = re.compile(
    r"^(?:(?:mailer-daemon|postmaster)(?:\+.*)?"
    r"|(?:bounces?|no[-_.]?reply|do[-_.]?not[-_.]?reply)(?:[-_.+].*)?)$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class OutgoingAttachment:
    """One file to attach; with ``inline_cid`` it is an image the HTML shows as ``cid:...``."""

    filename: str
    content_type: str
    content: bytes
    inline_cid: str | None = None


# --- composing and queueing ----------------------------------------------------------------

def bare_message_id(value: str) -> str:
    """A Message-ID without angle brackets or surrounding space (the form stored on rows)."""
    return value.strip().strip("<>").strip()


def suppression_reason(address: str, our_address: str) -> str | None:
    """Why mail to ``address`` must never be sent, or None when it may be.

    Our own address (and its plus-variants) would make a mail loop; mailer-daemon,
    postmaster and no-reply addresses are machines that either cannot read mail or answer
    it with more automated mail.
    """
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or "." not in domain or re.search(r"[\s<>,;]", address):
        return f"{address!r} is not a usable email address"
    our_local, _, our_domain = our_address.lower().rpartition("@")
    base_local = local.lower().split("+", 1)[0]
    if domain.lower() == our_domain and base_local == our_local.split("+", 1)[0]:
        return f"{address} is our own address; sending to it would make a mail loop"
    if _MACHINE_LOCAL_PART.match(local):
        return f"{address} is an automated address (mailer-daemon, postmaster or no-reply)"
    return None


def _header_text(value: str) -> str:
    """One header line's worth of text: folding is the policy's job, line breaks are not ours."""
    return " ".join(value.split())


def _message_id_atom(kind: str) -> str:
    atom = re.sub(r"[^A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+", "-", kind).strip("-")
    return atom or "mail"


def new_message_id(kind: str, our_address: str) -> str:
    """A fresh, globally unique Message-ID (without brackets) in our own domain."""
    domain = our_address.rpartition("@")[2] or socket.getfqdn()
    return f"{_message_id_atom(kind)}.{secrets.token_hex(12)}@{domain}"


def build_message(*, message_id: str, our_address: str, from_name: str, kind: str, to: str,
                  subject: str, text: str, html: str | None = None,
                  reply_to: str | None = None, in_reply_to: str | None = None,
                  references: Sequence[str] = (),
                  attachments: Sequence[OutgoingAttachment] = (),
                  auto_submitted: bool | str = True,
                  extra_headers: Mapping[str, str] | None = None,
                  date: datetime | None = None) -> bytes:
    """The complete MIME message as the bytes to send; see :func:`queue_mail` for what each
    argument means.

    Structure, from the outside in: ``multipart/mixed`` (only with attachments) →
    ``multipart/alternative`` (only with HTML) → text part and ``multipart/related`` (only
    with inline images) → HTML and the images it shows by Content-ID.  An attachment with
    ``inline_cid`` in a mail without HTML has nothing to show it, so it is attached normally.

    The bytes are written here rather than by ``EmailMessage``, whose header parsing and
    content managers cost several milliseconds per mail, twice per service request: every
    header that is not plain short ASCII is still folded and encoded by the email package's
    SMTP policy, so what is written is what ``EmailMessage`` would write, only sooner.
    """
    addresses = [our_address, email.utils.parseaddr(to)[1],
                 email.utils.parseaddr(reply_to or "")[1]]
    writer = _MimeWriter(utf8=not all(a.isascii() for a in addresses))
    headers: list[tuple[str, str | Address]] = [
        ("Message-ID", f"<{bare_message_id(message_id)}>"),
        ("Date", email.utils.format_datetime(date or utcnow())),
        ("From", _address(_header_text(from_name), our_address)),
    ]
    to_name, to_addr = email.utils.parseaddr(to)
    try:
        headers.append(("To", _address(_header_text(to_name), to_addr)))
    except (ValueError, IndexError, errors.HeaderParseError):
        headers.append(("To", _header_text(to)))  # unusable; such a row is suppressed, never sent
    if reply_to:
        headers.append(("Reply-To", _header_text(reply_to)))
    headers.append(("Subject", _header_text(subject)))
    refs = [bare_message_id(r) for r in references if bare_message_id(r)]
    if in_reply_to and bare_message_id(in_reply_to):
        parent = bare_message_id(in_reply_to)
        headers.append(("In-Reply-To", f"<{parent}>"))
        if parent not in refs:
            refs.append(parent)
    if refs:
        headers.append(("References", " ".join(f"<{r}>" for r in refs)))
    if auto_submitted:
        headers.append(("Auto-Submitted",
                        "auto-generated" if auto_submitted is True else auto_submitted))
    headers.append(("X-Auto-Response-Suppress", "All"))
    headers.append((KIND_HEADER, kind))
    for name, value in (extra_headers or {}).items():
        if name.lower() in PROTECTED_HEADERS:
            raise ValueError(f"extra_headers may not set {name}: queue_mail writes it itself")
        headers = [h for h in headers if h[0].lower() != name.lower()]
        headers.append((name, _header_text(value)))

    inline = [a for a in attachments if a.inline_cid and html is not None]
    files = [a for a in attachments if a not in inline]
    body = writer.text(text, "plain")
    if html is not None:
        shown = writer.text(html, "html")
        if inline:
            shown = writer.multipart("related", [shown, *(
                writer.attachment(image, "inline") for image in inline)])
        body = writer.multipart("alternative", [body, shown])
    if files:
        body = writer.multipart("mixed", [body, *(
            writer.attachment(item, "attachment") for item in files)])
    head = b"".join(writer.header(name, value) for name, value in headers)
    return head + b"MIME-Version: 1.0\r\n" + body


_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_SIMPLE_ADDR_SPEC = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")
"""A dot-atom address, which ``Address`` would write exactly as it is."""
_PLAIN_TEXT = re.compile(r"[ -~]*")
"""Printable ASCII: what may be written into a header or a parameter as it is."""
_QUOTED_SPECIALS = frozenset('()<>@,:;."[]\\')


def _address(display_name: str, addr_spec: str) -> str | Address:
    """``Name <addr>``: as text when both parts are plain ASCII (the common case, written
    the way ``Address`` writes it), else an ``Address`` for the policy to encode; raises
    what ``Address`` raises for an address it cannot represent."""
    if (_SIMPLE_ADDR_SPEC.fullmatch(addr_spec) and _PLAIN_TEXT.fullmatch(display_name)
            and "=?" not in display_name):
        if not display_name:
            return addr_spec
        if not _QUOTED_SPECIALS.isdisjoint(display_name):
            display_name = '"{}"'.format(display_name.replace("\\", "\\\\").replace('"', '\\"'))
        return f"{display_name} <{addr_spec}>"
    return Address(display_name=display_name, addr_spec=addr_spec)


class _MimeWriter:
    """Writes headers and parts with CRLF line ends, 7-bit safe unless ``utf8`` (a non-ASCII
    address, which needs SMTPUTF8 anyway)."""

    MAX_LINE = 78

    def __init__(self, *, utf8: bool) -> None:
        self.utf8 = utf8
        self.policy = _POLICY_UTF8 if utf8 else _POLICY

    def header(self, name: str, value: str | Address) -> bytes:
        """One header field, folded.  Plain short ASCII is written as it is; plain long
        ASCII text is folded at spaces; anything else is the policy's to encode and fold."""
        if isinstance(value, str) and _PLAIN_TEXT.fullmatch(value) and "=?" not in value:
            line = f"{name}: {value}"
            if len(line) <= self.MAX_LINE:
                return line.encode("ascii") + b"\r\n"
            if name.lower() in _UNSTRUCTURED:
                return _fold_words(line, self.MAX_LINE).encode("ascii")
        if isinstance(value, str) and ("\r" in value or "\n" in value):
            raise ValueError("Header values may not contain linefeed or carriage return "
                             "characters")
        folded = self.policy.header_factory(name, value).fold(policy=self.policy)
        return folded.encode("utf-8" if self.utf8 else "ascii", "surrogateescape")

    def text(self, content: str, subtype: str) -> bytes:
        """A ``text/*`` part in UTF-8: as it is when it is short-lined ASCII (or, with
        ``utf8``, any short-lined text), else quoted-printable or base64, whichever is
        shorter — the choice ``EmailMessage.set_content`` makes."""
        lines = content.encode("utf-8", "surrogateescape").splitlines()
        data = b"\r\n".join(lines) + b"\r\n"
        if max(map(len, lines), default=0) <= self.MAX_LINE and (self.utf8 or data.isascii()):
            cte, payload = ("7bit" if data.isascii() else "8bit"), data
        else:
            qp = binascii.b2a_qp(data, istext=True)
            b64 = _base64_lines(data)
            cte, payload = ("quoted-printable", qp) if len(qp) <= len(b64) else ("base64", b64)
        return (f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
                f"Content-Transfer-Encoding: {cte}\r\n\r\n").encode("ascii") + payload

    def attachment(self, item: OutgoingAttachment, disposition: str) -> bytes:
        """A base64 part with its file name (and Content-ID when the HTML shows it)."""
        maintype, _, subtype = item.content_type.partition("/")
        head = [self.header("Content-Type", f"{maintype}/{subtype or 'octet-stream'}"),
                self._disposition(disposition, item.filename),
                b"Content-Transfer-Encoding: base64\r\n"]
        if item.inline_cid is not None:
            head.append(self.header("Content-ID", f"<{bare_message_id(item.inline_cid)}>"))
        return b"".join(head) + b"\r\n" + _base64_lines(item.content)

    def _disposition(self, disposition: str, filename: str) -> bytes:
        # A non-ASCII or long name is the policy's to write (RFC 2231, continuations).
        return self.header("Content-Disposition",
                           f'{disposition}; filename="{email.utils.quote(filename)}"')

    def multipart(self, subtype: str, parts: list[bytes]) -> bytes:
        boundary = _boundary(parts)
        delimiter = b"--" + boundary.encode("ascii")
        out = [f'Content-Type: multipart/{subtype};\r\n boundary="{boundary}"\r\n\r\n'
               .encode("ascii")]
        for index, part in enumerate(parts):
            # The CRLF before a delimiter belongs to the delimiter (RFC 2046 5.1.1).
            out += [b"\r\n" if index else b"", delimiter, b"\r\n", part]
        out += [b"\r\n", delimiter, b"--\r\n"]
        return b"".join(out)


_UNSTRUCTURED = frozenset({"subject", "in-reply-to", "references", "auto-submitted",
                           "x-auto-response-suppress", KIND_HEADER.lower(), "importance",
                           "x-priority"})
"""Headers of free text, which may be folded at any space."""


def _fold_words(line: str, width: int) -> str:
    """Fold a plain ASCII header line at spaces so that lines stay within ``width`` where a
    word allows it (RFC 5322 2.2.3); the result ends with CRLF."""
    out: list[str] = []
    current = ""
    for word in line.split(" "):
        if current and len(current) + 1 + len(word) > width:
            out.append(current)
            current = " " + word
        else:
            current = f"{current} {word}" if current else word
    out.append(current)
    return "\r\n".join(out) + "\r\n"


def _base64_lines(data: bytes) -> bytes:
    """Base64 in lines of 76 characters, CRLF-terminated."""
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def _boundary(parts: list[bytes]) -> str:
    """A multipart boundary that none of ``parts`` contains."""
    while True:
        boundary = f"==============={secrets.randbelow(10 ** 19):019d}=="
        needle = boundary.encode("ascii")
        if not any(needle in part for part in parts):
            return boundary


def queue_mail(session: Session, *, our_address: str, from_name: str, kind: str, to: str,
               subject: str, text: str, html: str | None = None, dedupe_key: str,
               reply_to: str | None = None, in_reply_to: str | None = None,
               references: Sequence[str] = (),
               attachments: Sequence[OutgoingAttachment] = (),
               service_request_id: int | None = None, work_order_id: int | None = None,
               auto_submitted: bool | str = True,
               extra_headers: Mapping[str, str] | None = None,
               now: datetime | None = None, fresh: bool = False) -> OutboundMessage:
    """Add one outgoing mail to ``session`` (the caller's transaction) and return its row.

    ``dedupe_key`` names what the mail is about ("ack:SR-3"): when a row with that key
    exists, it is returned unchanged and nothing is added, so processing the same event twice
    never sends two mails.  ``fresh`` says the key names something made in this very
    transaction (a new request's acknowledgement, a new digest): no row can hold it yet, so
    it is not looked up, and the row is inserted with the transaction's next flush, together
    with the others.  ``to`` is an address, optionally with a display name.
    ``in_reply_to``/``references`` take Message-IDs with or without angle brackets.
    ``auto_submitted`` is True for ``auto-generated``, or the RFC 3834 keyword to use
    (``"auto-replied"``), or False to leave the header out.

    Mail to our own address or to a machine (mailer-daemon, postmaster, no-reply) is stored
    with status ``suppressed``, the reason in ``last_error`` and an ``email_suppressed``
    history event: visible, never sent.  The Message-ID on the row is stored without angle
    brackets (as :class:`~warrantyd.parsers.message.ParsedMessage` gives them).
    """
    existing = None if fresh else _by_dedupe_key(session, dedupe_key)
    if existing is not None:
        return existing
    now = now or utcnow()
    to_addr = (email.utils.parseaddr(to)[1] or to).strip().lower()
    message_id = new_message_id(kind, our_address)
    raw = build_message(
        message_id=message_id, our_address=our_address, from_name=from_name, kind=kind,
        to=to,
        subject=subject, text=text, html=html, reply_to=reply_to, in_reply_to=in_reply_to,
        references=references, attachments=attachments, auto_submitted=auto_submitted,
        extra_headers=extra_headers, date=now)
    reason = suppression_reason(to_addr, our_address)
    row = OutboundMessage(
        dedupe_key=dedupe_key, message_id=message_id, kind=kind, to_addr=to_addr,
        subject=_header_text(subject), raw=raw,
        status="suppressed" if reason else "queued", attempts=0, next_attempt_at=None,
        last_error=reason, created_at=now, service_request_id=service_request_id,
        work_order_id=work_order_id, from_addr=our_address)
    if fresh:
        session.add(row)
        if reason:
            session.flush()  # the history event names the row
    else:
        try:
            with savepoint_unless_locked(session):
                session.add(row)
                session.flush()
        except IntegrityError:
            # Another transaction queued the same mail between our SELECT and INSERT.
            found = _by_dedupe_key(session, dedupe_key)
            if found is None:
                raise
            return found
    if reason:
        log.warning("not sending %s mail to %s: %s", kind, to_addr, reason)
        # A plain INSERT, as actions.record makes them: events keep the order they happen in.
        session.execute(_ADD_HISTORY, {
            "at": now, "service_request_id": service_request_id,
            "work_order_id": work_order_id, "event": "email_suppressed", "actor": "system",
            "outbound_message_id": row.id,
            "detail": f"{kind} mail to {to_addr} not sent: {reason}"})
    return row


_BY_DEDUPE_KEY = select(OutboundMessage).where(OutboundMessage.dedupe_key == bindparam("key"))
"""Built once: building an ORM statement costs more than running it (one per queued mail)."""


def _by_dedupe_key(session: Session, dedupe_key: str) -> OutboundMessage | None:
    return session.scalars(_BY_DEDUPE_KEY, {"key": dedupe_key}).first()


# --- sending -------------------------------------------------------------------------------

# The sender's statements for each mail, built once: with several per mail, building and
# compiling ORM statements cost more than running them.  Columns: see OutboundMessage.
_OUT = OutboundMessage.__table__.c
_RENEW_LEASE = (
    update(OutboundMessage.__table__)
    .where(_OUT.id == bindparam("row_id"), _OUT.status == "queued",
           _OUT.claimed_by == bindparam("worker"))
    .values(claimed_until=bindparam("until")))
_MARK_SENT = (
    update(OutboundMessage.__table__)
    .where(_OUT.id == bindparam("row_id"), _OUT.status == "queued",
           _OUT.claimed_by == bindparam("worker"))
    .values(status="sent", sent_at=bindparam("now"), attempts=_OUT.attempts + 1,
            last_error=None, claimed_by=None, claimed_until=None)
    .returning(_OUT.service_request_id, _OUT.work_order_id))
_SENT_LAST_HOUR = (
    select(func.count(), func.min(_OUT.sent_at))
    .where(_OUT.to_addr == bindparam("to_addr"), _OUT.status == "sent",
           _OUT.sent_at > bindparam("since")))
_ADD_HISTORY = insert(HistoryEvent.__table__)


class _SendQueue:
    """The rows of one pass, handed to the connections that send them: the first row whose
    recipient has no mail in flight (nor one sent and not yet recorded)."""

    def __init__(self, rows: Sequence[_Claimed]) -> None:
        self.pending = list(rows)
        self._busy: set[str] = set()
        self.down: _Outcome | None = None
        """Set when the server could not be reached: nothing more is taken."""

    def take(self) -> _Claimed | None:
        for index, row in enumerate(self.pending):
            if row.to_addr not in self._busy:
                self._busy.add(row.to_addr)
                return self.pending.pop(index)
        return None

    def done(self, row: _Claimed) -> None:
        self._busy.discard(row.to_addr)

    def take_rest(self) -> list[_Claimed]:
        rest, self.pending = self.pending, []
        return rest


@dataclass(frozen=True)
class _Claimed:
    """What a pass needs of one claimed row, detached from any session."""

    id: int
    message_id: str
    kind: str
    to_addr: str
    raw: bytes
    attempts: int
    envelope_from: str


@dataclass(frozen=True)
class _Outcome:
    sent: bool = False
    permanent: bool = False
    connection_down: bool = False
    error: str = ""


class _ConnectionDown(Exception):
    """The SMTP server could not be reached or would not let us in; no row is to blame."""


def envelope_sender(raw: bytes) -> str:
    """The address in the From header of ``raw``: our address, where bounces must return."""
    headers = BytesHeaderParser(policy=email.policy.default).parsebytes(raw)
    return email.utils.parseaddr(str(headers.get("From", "")))[1]


class OutboxSender:
    """Sends queued rows over SMTP; one instance per daemon, several daemons per database.

    ``clock`` returns the current UTC time (tests pass a fake one).  The SMTP envelope
    sender is the row's ``from_addr`` (the mailbox of the division the mail is about, where
    its bounces must come back); ``envelope_from`` stands in for rows written before that
    column existed, which otherwise use the From address in their bytes.
    ``rate_exempt`` addresses (the staff's own) are not held to the per-recipient cap, which
    exists to protect homeowners and vendors from a loop or a flood, not to delay digests.
    """

    def __init__(self, db: Database, smtp: SmtpConfig, *, worker_id: str | None = None,
                 tls_context: ssl.SSLContext | None = None, backoff_base: float = 30.0,
                 backoff_max: float = 3600.0, max_attempts: int = 10,
                 lease_seconds: float = 120.0, idle_seconds: float = 5.0,
                 batch_size: int = 50, envelope_from: str | None = None,
                 rate_exempt: Collection[str] = (),
                 clock: Callable[[], datetime] = utcnow,
                 rng: random.Random | None = None) -> None:
        self.db = db
        self.smtp = smtp
        self.rate_exempt = frozenset(a.lower() for a in rate_exempt)
        self.worker_id = (worker_id
                          or f"{socket.gethostname()[:60]}:{os.getpid()}:{secrets.token_hex(3)}")
        self.tls_context = tls_context
        self.token_provider = (provider_for(smtp.oauth_token_command, smtp.oauth_token_file)
                               if smtp.auth == "xoauth2" else None)
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_attempts = max_attempts
        self.lease_seconds = lease_seconds
        self.idle_seconds = idle_seconds
        self.batch_size = batch_size
        self.envelope_from = envelope_from
        self.clock = clock
        self.rng = rng or random.Random()
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._running = False
        self._pending: int | None = None
        self._sent_total = 0
        self._last_error: str | None = None
        self._last_error_at: datetime | None = None
        self._last_pass_at: datetime | None = None
        self._batch_was_full = False
        self._kept: list[aiosmtplib.SMTP] = []
        """Connections kept open between the passes of :meth:`run` while mail keeps coming
        (a request makes an acknowledgement, then a digest, a moment apart): a new
        connection costs a handshake, EHLO and login each time.  Closed when the sender has
        been idle for ``idle_seconds``."""
        if lease_seconds < 4 * smtp.timeout_seconds:
            log.warning("outbox lease_seconds (%s) is short for an SMTP timeout of %ss: a slow "
                        "send could outlive its lease and be sent twice by another worker",
                        lease_seconds, smtp.timeout_seconds)

    # -- control ----------------------------------------------------------------------------

    def wake(self) -> None:
        """New rows were committed: send now rather than at the next tick (thread-safe)."""
        loop = self._loop
        if loop is not None and loop.is_running():
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is not loop:
                loop.call_soon_threadsafe(self._wake.set)
                return
        self._wake.set()

    def stop(self) -> None:
        """Finish the current pass, then make :meth:`run` return."""
        self._stopping = True
        self.wake()

    @property
    def status(self) -> dict[str, Any]:
        """For health checks: queue length after the last pass and the last SMTP problem."""
        return {
            "worker_id": self.worker_id,
            "running": self._running,
            "pending": self._pending,
            "sent": self._sent_total,
            "last_pass_at": self._last_pass_at.isoformat() if self._last_pass_at else None,
            "last_error": self._last_error,
            "last_error_at": self._last_error_at.isoformat() if self._last_error_at else None,
        }

    def release_dead_claims(self) -> int:
        """Give back rows claimed by a sender of this host whose process is gone.

        After a crash the rows the dead process had claimed would otherwise wait out their
        lease; a worker id is ``host:pid:nonce``, so a process on the same host can tell.
        Claims of other hosts are left to expire.
        """
        host = socket.gethostname()[:60]
        with self.db.session() as session:
            claims = session.execute(
                select(OutboundMessage.claimed_by).where(
                    OutboundMessage.status == "queued",
                    OutboundMessage.claimed_by.like(f"{host}:%")).distinct()).scalars().all()
            dead = [c for c in claims if c != self.worker_id and not _process_alive(c)]
            if not dead:
                return 0
            result = session.execute(
                update(OutboundMessage)
                .where(OutboundMessage.status == "queued", OutboundMessage.claimed_by.in_(dead))
                .values(claimed_by=None, claimed_until=None)
                .execution_options(synchronize_session=False))
        count = int(getattr(result, "rowcount", 0) or 0)
        log.info("released %d outbound mail(s) claimed by stopped process(es) %s", count,
                 ", ".join(dead))
        return count

    async def run(self) -> None:
        """Send what is due until :meth:`stop`; SMTP and database trouble is logged, not raised."""
        self._loop = asyncio.get_running_loop()
        self._running = True
        self._stopping = False
        try:
            await asyncio.to_thread(self.release_dead_claims)
        except Exception:
            log.exception("could not release claims of stopped senders; they expire on their own")
        try:
            while not self._stopping:
                self._wake.clear()
                try:
                    await self.send_due(keep_connections=True)
                except Exception as exc:  # keep the daemon alive; the rows stay queued
                    log.exception("outbox pass failed; will try again in %ss", self.idle_seconds)
                    self._note_error(f"outbox pass failed: {exc}")
                    self._batch_was_full = False  # a failing pass waits, never spins
                if self._stopping:
                    break
                if self._batch_was_full:
                    continue  # more rows may be due right now: no idle wait between batches
                try:
                    await asyncio.wait_for(self._wake.wait(), self.idle_seconds)
                except TimeoutError:
                    await self._close_kept()  # idle: no need to hold the server's slots
        finally:
            self._running = False
            await self._close_kept()

    # -- one pass ---------------------------------------------------------------------------

    async def _close_kept(self) -> None:
        kept, self._kept = self._kept, []
        for smtp in kept:
            await _close(smtp)

    async def send_due(self, *, keep_connections: bool = False) -> int:
        """Claim what is due, send it over ``[smtp] connections`` connections at once, record
        each outcome; return #sent.

        Mail to one recipient goes out in the order it was queued, one at a time: it is
        never in flight on two connections, and the next one is taken only after the last
        is recorded (so the per-recipient rate cap counts it).  While a connection talks to
        the server, the others do, or record what they sent.
        """
        self._batch_was_full = False
        batch = await asyncio.to_thread(self._claim)
        self._batch_was_full = len(batch) >= self.batch_size
        queue = _SendQueue(batch)
        lanes = max(1, min(self.smtp.connections, len(batch)))
        try:
            results = await asyncio.gather(
                *(self._send_lane(queue, keep_connections) for _ in range(lanes)),
                return_exceptions=True)
        finally:
            self._last_pass_at = self.clock()
        if queue.down is not None:
            # The server is unreachable or refuses us: every remaining row waits.
            for rest in queue.take_rest():
                await asyncio.to_thread(self._record_failure, rest, queue.down)
        elif queue.pending:
            await asyncio.to_thread(self._release, queue.take_rest())
        problems = [r for r in results if isinstance(r, BaseException)]
        if problems:
            raise problems[0]
        self._pending = await asyncio.to_thread(self._count_pending)
        return sum(r for r in results if isinstance(r, int))

    async def _send_lane(self, queue: _SendQueue, keep_connection: bool = False) -> int:
        """One connection's share of a pass: take, send, record, until nothing is left to
        take (what is left belongs to recipients in flight on other connections).  The
        connection is a kept one when there is one, and is kept afterwards if asked."""
        sent = 0
        smtp: aiosmtplib.SMTP | None = self._kept.pop() if self._kept else None
        # Taken by the server, not recorded yet: it is recorded in the transaction that
        # renews the lease of the next row (one transaction per mail, not two), right away.
        answered: _Claimed | None = None
        try:
            while True:
                item = self._next(queue)
                if item is None and answered is not None:
                    # The rest may be this recipient's next mail: record, then look again.
                    await asyncio.to_thread(self._settle, answered, None)
                    queue.done(answered)
                    answered = None
                    item = self._next(queue)
                if item is None:
                    break
                ready = await asyncio.to_thread(self._settle, answered, item)
                if answered is not None:
                    queue.done(answered)
                    answered = None
                if not ready:
                    queue.done(item)
                    continue
                outcome, smtp = await self._deliver(item, smtp)
                if outcome.connection_down:
                    queue.down = outcome
                    await asyncio.to_thread(self._record_failure, item, outcome)
                    queue.done(item)
                    break
                if outcome.sent:
                    answered = item
                    sent += 1
                else:
                    await asyncio.to_thread(self._record_failure, item, outcome)
                    queue.done(item)
        finally:
            try:
                if answered is not None:
                    await asyncio.to_thread(self._settle, answered, None)
                    queue.done(answered)
            finally:
                if smtp is not None:
                    if keep_connection and not self._stopping and smtp.is_connected:
                        self._kept.append(smtp)
                    else:
                        await _close(smtp)
                self._sent_total += sent
        return sent

    def _next(self, queue: _SendQueue) -> _Claimed | None:
        return None if self._stopping or queue.down is not None else queue.take()

    async def _deliver(self, item: _Claimed,
                       smtp: aiosmtplib.SMTP | None) -> tuple[_Outcome, aiosmtplib.SMTP | None]:
        """Send one row, reusing ``smtp`` when it is still open; return the outcome and the
        connection to reuse for the next row (None when it is gone).

        A reused connection that turns out to be gone (idle timeout, "421 closing") is
        replaced once; a fresh one that fails makes this row wait for the next attempt.
        """
        for _ in range(2):
            fresh = smtp is None or not smtp.is_connected
            if fresh:
                try:
                    smtp = await self._connect()
                except _ConnectionDown as exc:
                    return _Outcome(connection_down=True, error=str(exc)), None
            assert smtp is not None
            options = [] if (item.envelope_from + item.to_addr).isascii() else ["SMTPUTF8"]
            try:
                await smtp.sendmail(item.envelope_from, [item.to_addr], item.raw,
                                    mail_options=options)
                return _Outcome(sent=True), smtp
            except Exception as exc:
                outcome = _smtp_outcome(exc)
                if outcome is None:
                    raise
            if smtp.is_connected:
                return outcome, smtp
            await _close(smtp)
            smtp = None
            if fresh:
                return outcome, None
            log.info("SMTP connection went away (%s); reconnecting", outcome.error)
        return outcome, None

    async def _connect(self) -> aiosmtplib.SMTP:
        cfg = self.smtp
        if not cfg.host:
            raise _ConnectionDown("no SMTP host configured; set [smtp] host in the config file")
        if self.token_provider is not None:
            client = await self._xoauth2_client()
        else:
            password = cfg.password()
            if cfg.user and not password:
                raise _ConnectionDown(f"[smtp] user is set but the password environment "
                                      f"variable {cfg.password_env or '(password_env)'} is empty")
            client = aiosmtplib.SMTP(
                hostname=cfg.host, port=cfg.port, timeout=cfg.timeout_seconds,
                use_tls=cfg.security == "tls", start_tls=cfg.security == "starttls",
                tls_context=self.tls_context,
                username=cfg.user or None, password=password if cfg.user else None)
        try:
            await client.connect()
        except aiosmtplib.SMTPAuthenticationError as exc:
            await _close(client)
            if self.token_provider is not None:
                self.token_provider.invalidate()  # the next connect fetches a fresh token
                raise _ConnectionDown(f"SMTP XOAUTH2 login as {cfg.user} refused: {exc.code} "
                                      f"{exc.message}; the access token is expired, revoked or "
                                      f"lacks the mail scope — check the token source "
                                      f"({self.token_provider.source})") from exc
            raise _ConnectionDown(f"SMTP login as {cfg.user} refused: {exc.code} {exc.message}; "
                                  f"check [smtp] user and ${cfg.password_env}") from exc
        except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
            await _close(client)
            raise _ConnectionDown(f"cannot reach SMTP server {cfg.host}:{cfg.port} "
                                  f"({cfg.security}): {_describe(exc)}") from exc
        return client

    async def check_connection(self) -> None:
        """Connect and log in exactly as sending would, then quit (``warrantyd check``)."""
        try:
            client = await self._connect()
        except _ConnectionDown as exc:
            raise ConnectionError(str(exc)) from None
        await _close(client)

    async def _xoauth2_client(self) -> aiosmtplib.SMTP:
        """A client that logs in with AUTH XOAUTH2 and a token fetched before connecting."""
        cfg = self.smtp
        assert self.token_provider is not None
        if not cfg.user:
            raise _ConnectionDown("[smtp] auth is \"xoauth2\" but user is empty; set it to the "
                                  "mailbox the token was issued for")
        try:
            token = await self.token_provider.token()
        except TokenError as exc:
            raise _ConnectionDown(f"no SMTP access token for {cfg.user}: {exc}") from exc

        async def current_token() -> str:
            return token

        return aiosmtplib.SMTP(
            hostname=cfg.host, port=cfg.port, timeout=cfg.timeout_seconds,
            use_tls=cfg.security == "tls", start_tls=cfg.security == "starttls",
            tls_context=self.tls_context, username=cfg.user,
            oauth_token_generator=current_token)

    # -- database steps (run in a worker thread so the event loop never waits on a lock) ---

    def _claim(self) -> list[_Claimed]:
        """Lease up to ``batch_size`` due rows to this worker and commit, so other workers
        skip them; a lease that runs out (the worker died) makes the row due again."""
        now = self.clock()
        until = now + timedelta(seconds=self.lease_seconds)
        due = (
            select(OutboundMessage.id)
            .where(OutboundMessage.status == "queued")
            .where(OutboundMessage.next_attempt_at.is_(None)
                   | (OutboundMessage.next_attempt_at <= now))
            .where(OutboundMessage.claimed_until.is_(None)
                   | (OutboundMessage.claimed_until < now))
            .order_by(OutboundMessage.id)
            .limit(self.batch_size)
        )
        with self.db.session() as session:
            if self.db.is_postgresql:
                ids = list(session.scalars(due.with_for_update(skip_locked=True)))
                if not ids:
                    return []
                session.execute(
                    update(OutboundMessage).where(OutboundMessage.id.in_(ids))
                    .values(claimed_by=self.worker_id, claimed_until=until))
            else:
                # SQLite has one writer at a time: a single UPDATE both picks and claims, so
                # two senders cannot claim the same row between a SELECT and an UPDATE.
                session.execute(
                    update(OutboundMessage).where(OutboundMessage.id.in_(due.scalar_subquery()))
                    .values(claimed_by=self.worker_id, claimed_until=until)
                    .execution_options(synchronize_session=False))
            rows = session.scalars(
                select(OutboundMessage)
                .where(OutboundMessage.claimed_by == self.worker_id,
                       OutboundMessage.claimed_until == until,
                       OutboundMessage.status == "queued")
                .order_by(OutboundMessage.id)
            ).all()
            return [
                _Claimed(id=r.id, message_id=r.message_id, kind=r.kind, to_addr=r.to_addr,
                         raw=r.raw, attempts=r.attempts,
                         envelope_from=r.from_addr or self.envelope_from
                         or envelope_sender(r.raw))
                for r in rows
            ]

    def _settle(self, answered: _Claimed | None, item: _Claimed | None) -> bool:
        """Record ``answered`` as sent and get ``item`` ready to send, in one transaction;
        False when ``item`` is not to be sent now (see :meth:`_ready_to_send`)."""
        with self.db.session() as session:
            if answered is not None:
                self._record_sent(session, answered)
            return item is not None and self._ready_to_send(session, item)

    def _ready_to_send(self, session: Session, item: _Claimed) -> bool:
        """Renew our lease on ``item`` and apply the rate cap; False when it is not to be sent
        now (another worker took it over, it was sent meanwhile, or it is deferred).

        Renewing right before each send means a row is only ever sent under a live lease,
        however long the earlier rows of a slow pass took.
        """
        now = self.clock()
        renewed = session.connection().execute(_RENEW_LEASE, {
            "row_id": item.id, "worker": self.worker_id,
            "until": now + timedelta(seconds=self.lease_seconds)})
        if renewed.rowcount != 1:
            log.warning("outbound mail %s is no longer ours to send (lease lost or already "
                        "handled); skipping it", item.id)
            return False
        deferral = self._rate_deferral(session, item, now)
        if deferral is None:
            return True
        after, why = deferral
        log.warning("deferring %s mail <%s>: %s", item.kind, item.message_id, why)
        session.execute(
            update(OutboundMessage).where(OutboundMessage.id == item.id)
            .values(next_attempt_at=after, last_error=why, claimed_by=None,
                    claimed_until=None)
            .execution_options(synchronize_session=False))
        return False

    def _rate_deferral(self, session: Session, item: _Claimed,
                       now: datetime) -> tuple[datetime, str] | None:
        """When ``item`` would exceed the per-recipient hourly cap: (send after, why)."""
        cap = self.smtp.rate_per_recipient_per_hour
        if cap <= 0 or item.to_addr.lower() in self.rate_exempt:
            return None
        count, oldest = session.connection().execute(_SENT_LAST_HOUR, {
            "to_addr": item.to_addr, "since": now - timedelta(hours=1)}).one()
        if count < cap:
            return None
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=UTC)
        after = max(now, (oldest or now) + timedelta(hours=1)) + timedelta(seconds=1)
        return after, (f"rate cap: {count} mails sent to {item.to_addr} in the last hour "
                       f"(limit {cap}); deferred until {after.isoformat(timespec='seconds')}")

    def _release(self, items: Sequence[_Claimed]) -> None:
        """Give back claimed rows we will not get to (stopping), for any worker to take."""
        with self.db.session() as session:
            session.execute(
                update(OutboundMessage)
                .where(OutboundMessage.id.in_([i.id for i in items]),
                       OutboundMessage.claimed_by == self.worker_id)
                .values(claimed_by=None, claimed_until=None)
                .execution_options(synchronize_session=False))

    def _record_sent(self, session: Session, item: _Claimed) -> None:
        now = self.clock()
        # The usual case in one statement: the row is still queued under our lease.
        connection = session.connection()
        marked = connection.execute(_MARK_SENT, {
            "row_id": item.id, "worker": self.worker_id, "now": now}).first()
        if marked is not None:
            connection.execute(_ADD_HISTORY, {
                "at": now, "service_request_id": marked.service_request_id,
                "work_order_id": marked.work_order_id, "event": "email_sent",
                "actor": "system", "outbound_message_id": item.id, "internal": False,
                "inbound_message_id": None,
                "detail": f"{item.kind} mail to {item.to_addr}, Message-ID <{item.message_id}>"})
            log.info("sent %s mail <%s> to %s", item.kind, item.message_id, item.to_addr)
            return
        row = session.get(OutboundMessage, item.id, with_for_update=True,
                          options=[defer(OutboundMessage.raw)])  # sent already: not needed
        if row is None or row.status == "sent":
            return
        if row.claimed_by != self.worker_id:
            log.warning("lease on outbound mail %s expired while sending it; another worker "
                        "may send it again (raise lease_seconds above the SMTP timeout)",
                        item.id)
        row.status = "sent"
        row.sent_at = now
        row.attempts = row.attempts + 1
        row.last_error = None
        row.claimed_by = None
        row.claimed_until = None
        session.add(HistoryEvent(
            at=now, service_request_id=row.service_request_id,
            work_order_id=row.work_order_id, event="email_sent", actor="system",
            outbound_message_id=row.id,
            detail=f"{row.kind} mail to {row.to_addr}, Message-ID <{row.message_id}>"))
        log.info("sent %s mail <%s> to %s", item.kind, item.message_id, item.to_addr)

    def _record_failure(self, item: _Claimed, outcome: _Outcome) -> None:
        now = self.clock()
        self._note_error(outcome.error)
        with self.db.session() as session:
            row = session.get(OutboundMessage, item.id, with_for_update=True,
                              options=[defer(OutboundMessage.raw)])
            if row is None or row.status != "queued" or row.claimed_by != self.worker_id:
                return
            row.attempts = row.attempts + 1
            row.last_error = outcome.error
            row.claimed_by = None
            row.claimed_until = None
            # An unreachable server is not this mail's fault: it waits (backoff capped at
            # backoff_max) however long the outage lasts, and is never failed for it.
            gave_up = row.attempts >= self.max_attempts and not outcome.connection_down
            if outcome.permanent or gave_up:
                row.status = "failed"
                row.next_attempt_at = None
                why = ("refused for good" if outcome.permanent
                       else f"gave up after {row.attempts} attempts")
                session.add(HistoryEvent(
                    at=now, service_request_id=row.service_request_id,
                    work_order_id=row.work_order_id, event="email_failed", actor="system",
                    outbound_message_id=row.id,
                    detail=(f"{row.kind} mail to {row.to_addr} ({why}), Message-ID "
                            f"<{row.message_id}>: {outcome.error}")))
                log.error("%s mail <%s> to %s failed (%s): %s", row.kind, row.message_id,
                          row.to_addr, why, outcome.error)
            else:
                row.next_attempt_at = now + timedelta(seconds=self.backoff(row.attempts))
                log.warning("%s mail <%s> to %s not sent (attempt %d of %d), retry after %s: %s",
                            row.kind, row.message_id, row.to_addr, row.attempts,
                            self.max_attempts, row.next_attempt_at.isoformat(timespec="seconds"),
                            outcome.error)

    def _count_pending(self) -> int:
        with self.db.reading() as session:  # after every pass: no write turn for a count
            return int(session.scalar(
                select(func.count()).select_from(OutboundMessage)
                .where(OutboundMessage.status == "queued")) or 0)

    def backoff(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failure: doubling, capped, jittered so
        that many rows that failed together do not all retry in the same second."""
        delay = min(self.backoff_max, self.backoff_base * 2 ** max(0, attempts - 1))
        return delay / 2 + self.rng.uniform(0, delay / 2)

    def _note_error(self, error: str) -> None:
        self._last_error = error
        self._last_error_at = self.clock()


def _process_alive(worker_id: str) -> bool:
    """Whether the ``host:pid:nonce`` worker's process still runs (this host only)."""
    parts = worker_id.split(":")
    pid = parts[1] if len(parts) >= 2 else ""
    if not pid.isdigit() or int(pid) == os.getpid():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _smtp_outcome(exc: Exception) -> _Outcome | None:
    """What a failed ``sendmail`` means for the row: permanent only when the server refused
    this recipient or this message with a 5xx; None for exceptions that are bugs."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        refusal = exc.recipients[0] if exc.recipients else None
        if refusal is None:
            return _Outcome(error=f"recipient refused: {exc}")
        return _Outcome(permanent=refusal.code >= 500,
                        error=f"recipient refused: {refusal.code} {refusal.message}")
    if isinstance(exc, aiosmtplib.SMTPRecipientRefused | aiosmtplib.SMTPDataError):
        what = ("recipient refused" if isinstance(exc, aiosmtplib.SMTPRecipientRefused)
                else "message refused")
        return _Outcome(permanent=exc.code >= 500, error=f"{what}: {exc.code} {exc.message}")
    if isinstance(exc, aiosmtplib.SMTPSenderRefused) and exc.code != 421:
        # Not this mail's fault: the relay does not accept our envelope sender.
        error = (f"sender {exc.sender} refused: {exc.code} {exc.message}; check that the SMTP "
                 f"account may send as this address")
        log.error("%s", error)
        return _Outcome(error=error)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _Outcome(error=f"SMTP error: {exc.code} {exc.message}")
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected | aiosmtplib.SMTPTimeoutError
                  | ConnectionError | OSError):
        return _Outcome(error=f"connection lost while sending: {_describe(exc)}")
    if isinstance(exc, aiosmtplib.SMTPException | ValueError):
        # SMTPNotSupported (e.g. SMTPUTF8), or an address aiosmtplib will not send to.
        return _Outcome(error=f"cannot send: {_describe(exc)}")
    return None


async def _close(client: aiosmtplib.SMTP) -> None:
    """Say QUIT when the server is still listening; just drop the connection otherwise."""
    try:
        if client.is_connected:
            await client.quit()
    except (aiosmtplib.SMTPException, OSError):
        client.close()


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if type(exc).__name__ not in text else text
