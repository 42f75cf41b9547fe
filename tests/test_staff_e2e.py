"""Staff approval end to end: the real daemon, Dovecot and an SMTP sink (SQLite + PostgreSQL).

A homeowner's mail becomes a digest at the sink; staff answer it the way real clients do
(Gmail quoting with ``>``, Outlook with a header block and the digest unquoted below),
addressed to the Reply-To of the digest they received; receipts and state follow.  Forged
and spoofed command mail changes nothing and gets no answer, and the same reply twice is
applied once.
"""

from __future__ import annotations

import time
from email.message import EmailMessage
from pathlib import Path

import pytest
from daemon_harness import (
    MAILBOX,
    STAFF,
    DaemonProcess,
    homeowner_mail,
    wait_for,
    write_config,
)
from dovecot import Dovecot
from smtp_sink import ReceivedMessage, SmtpSink
from sqlalchemy import func, select

from warrantyd.storage.db import Database
from warrantyd.storage.models import HistoryEvent, InboundMessage, WorkOrder

pytestmark = pytest.mark.slow
pytest_plugins = ("e2e_fixtures",)

LEE = "lee@acme-homes.example"
VENDOR = "dispatch@frontrange-plumbing.example.net"


def _config(tmp_path: Path, dovecot: Dovecot, sink: SmtpSink, db_url: str, user: str) -> Path:
    return write_config(tmp_path, dovecot=dovecot, smtp_port=sink.port, db_url=db_url,
                        imap_user=user, staff=(STAFF, LEE))


def _kind(received: ReceivedMessage) -> str:
    return str(received.message.get("X-Warrantyd-Kind", ""))


def _mails(sink: SmtpSink, to: str, kind: str) -> list[ReceivedMessage]:
    return [m for m in sink.received_by(to) if _kind(m) == kind]


def _plain(msg: EmailMessage) -> str:
    part = msg.get_body(("plain",))
    assert part is not None
    return part.get_content()


def _staff_mail(*, sender: str, to: str, subject: str, body: str, in_reply_to: str | None,
                message_id: str, extra: str = "") -> bytes:
    threading = (f"In-Reply-To: <{in_reply_to}>\r\nReferences: <{in_reply_to}>\r\n"
                 if in_reply_to else "")
    head = (f"{extra}From: Staff <{sender}>\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{message_id}>\r\n{threading}"
            "Date: Fri, 27 Nov 2026 10:05:00 -0700\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\n")
    return (head + body.replace("\r\n", "\n").replace("\n", "\r\n")).encode()


def gmail_reply(digest: ReceivedMessage, sender: str, commands: str, message_id: str,
                extra: str = "") -> bytes:
    msg = digest.message
    quoted = "\n".join(f"> {line}" if line else ">" for line in _plain(msg).splitlines())
    body = (f"{commands}\n\nOn Fri, Nov 27, 2026 at 10:00 AM Acme Homes Warranty <\n"
            f"{MAILBOX}> wrote:\n{quoted}\n")
    return _staff_mail(sender=sender, to=str(msg["Reply-To"]),
                       subject=f"Re: {str(msg['Subject']).strip()}", body=body,
                       in_reply_to=digest.message_id, message_id=message_id, extra=extra)


def outlook_reply(digest: ReceivedMessage, sender: str, commands: str,
                  message_id: str) -> bytes:
    msg = digest.message
    body = (f"{commands}\n\n________________________________\n"
            f"From: Acme Homes Warranty <{MAILBOX}>\nSent: Friday, November 27, 2026 10:00 AM\n"
            f"To: Staff <{sender}>\nSubject: {str(msg['Subject']).strip()}\n\n"
            f"{_plain(msg)}\n")
    return _staff_mail(sender=sender, to=str(msg["Reply-To"]),
                       subject=f"RE: {str(msg['Subject']).strip()}", body=body,
                       in_reply_to=digest.message_id, message_id=message_id)


def _statuses(db: Database) -> list[str]:
    with db.session() as s:
        return [wo.status for wo in s.scalars(select(WorkOrder).order_by(WorkOrder.id))]


def _settled(db: Database, count: int) -> bool:
    with db.session() as s:
        done = s.scalar(select(func.count()).select_from(InboundMessage).where(
            InboundMessage.status.in_(("done", "ignored"))))
        return (done or 0) >= count


def test_staff_approve_by_replying_to_the_digest(
        tmp_path: Path, dovecot: Dovecot, sink: SmtpSink, db_url: str, mailbox_user: str) -> None:
    config = _config(tmp_path, dovecot, sink, db_url, mailbox_user)
    db = Database(db_url)
    with DaemonProcess(config) as daemon:
        daemon.wait_ready()
        dovecot.append(mailbox_user, homeowner_mail(1, sender="dana@example.com"))
        wait_for(lambda: _mails(sink, STAFF, "digest") and _mails(sink, LEE, "digest"), 30,
                 "a digest for each staff member", daemon)
        digest = _mails(sink, STAFF, "digest")[0]
        lee_digest = _mails(sink, LEE, "digest")[0]
        assert str(digest.message["Subject"]).strip().startswith("[SR-1]")
        assert str(digest.message["Reply-To"]) != str(lee_digest.message["Reply-To"])
        text = _plain(digest.message)
        assert "1412 Aspen Ridge Dr" in text and "Plumbing" in text and "Drywall" in text
        assert _statuses(db) == ["draft", "draft"]
        plumbing_item = "1" if text.index("Plumbing") < text.index("Drywall") else "2"
        drywall_item = "2" if plumbing_item == "1" else "1"

        # Gmail: commands on top, the digest quoted with ">" below (its example commands too).
        dovecot.append(mailbox_user, gmail_reply(digest, STAFF, f"Accept {plumbing_item}.",
                                                 "gmail-1@mail.example"))
        wait_for(lambda: _mails(sink, STAFF, "receipt"), 30, "the first receipt", daemon)
        receipt = _mails(sink, STAFF, "receipt")[0]
        assert receipt.message["In-Reply-To"] == "<gmail-1@mail.example>"
        assert "accepted" in _plain(receipt.message)
        wait_for(lambda: sink.received_by(VENDOR), 30, "the vendor notice", daemon)
        with db.session() as s:
            plumbing = s.scalars(select(WorkOrder).where(WorkOrder.trade == "plumbing")).one()
            assert plumbing.status == "in_progress"
            assert plumbing.vendor is not None and plumbing.vendor.email == VENDOR

        # Outlook: a header block, then the digest unquoted.
        dovecot.append(mailbox_user, outlook_reply(
            lee_digest, LEE, f"reject {drywall_item}: homeowner maintenance",
            "outlook-1@mail.example"))
        wait_for(lambda: _mails(sink, LEE, "receipt"), 30, "Lee's receipt", daemon)
        assert "rejected (homeowner maintenance)" in " ".join(
            _plain(_mails(sink, LEE, "receipt")[0].message).split())
        assert sorted(_statuses(db)) == ["in_progress", "rejected"]

        # Forged and spoofed command mail: nothing changes, no sender is answered.
        before = len(list(sink))
        forged = [
            _staff_mail(sender=STAFF, to=MAILBOX, subject="Re: [SR-1] digest",
                        body="reopen WO-2\n", in_reply_to=None, message_id="forged-1@x"),
            _staff_mail(sender=STAFF, to=str(lee_digest.message["Reply-To"]),
                        subject="Re: digest", body="reopen WO-2\n", in_reply_to=None,
                        message_id="forged-2@x"),
            _staff_mail(sender=VENDOR, to=str(digest.message["Reply-To"]),
                        subject="Re: digest", body="reopen WO-2\n", in_reply_to=None,
                        message_id="forged-3@x"),
        ]
        for raw in forged:
            dovecot.append(mailbox_user, raw)
        wait_for(lambda: _settled(db, 6), 30, "the forged mail to be handled", daemon)
        # The same Gmail reply again, as a second copy with other bytes: applied once.
        dovecot.append(mailbox_user, gmail_reply(digest, STAFF, f"Accept {plumbing_item}.",
                                                 "gmail-1@mail.example",
                                                 extra="X-Copy: second\r\n"))
        wait_for(lambda: _settled(db, 7), 30, "the repeated reply to be handled", daemon)
        time.sleep(1.5)  # give a (wrong) answer the time to reach the sink
        # Only the impersonated staff member hears of it (one notice a day, to the configured
        # address); the vendor and whoever forged the mail are not answered.
        new = [(_kind(m), m.rcpt_tos) for m in list(sink)[before:]]
        assert new == [("receipt", (STAFF,))], new
        assert "NOT applied" in _plain(list(sink)[-1].message)
        assert sorted(_statuses(db)) == ["in_progress", "rejected"]
        with db.session() as s:
            refused = s.scalar(select(func.count()).select_from(HistoryEvent).where(
                HistoryEvent.event == "command_refused"))
            assert refused == 3
        assert len(sink.received_by(VENDOR)) == 1
        assert daemon.terminate() == 0
    db.dispose()
