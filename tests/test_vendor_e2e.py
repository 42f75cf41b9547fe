"""The vendor loop through the real daemon, a real Dovecot and an SMTP sink (both databases).

Accepting a work order is staff-command wiring that lives elsewhere, so the test sets the
accepted state in the database and queues the notice in one transaction, exactly as the
command will; everything after that goes through mail and HTTP only.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from email.message import EmailMessage
from io import BytesIO
from pathlib import Path

import pytest
from daemon_harness import MAILBOX, DaemonProcess, wait_for, write_config
from dovecot import Dovecot
from PIL import Image
from smtp_sink import SmtpSink
from sqlalchemy import select

from warrantyd.daemon.config import load_config
from warrantyd.daemon.vendors import complete_work_order, queue_vendor_notice
from warrantyd.storage.db import Database
from warrantyd.storage.models import (
    Attachment,
    HistoryEvent,
    InboundMessage,
    ServiceRequest,
    Vendor,
    WorkOrder,
    utcnow,
)

pytestmark = pytest.mark.slow
pytest_plugins = ("e2e_fixtures",)

PLUMBER = "dispatch@frontrange-plumbing.example.net"
OTHER_VENDOR = "crew@peak-drywall.example.org"
DANA = "dana@example.com"


def _photo() -> bytes:
    out = BytesIO()
    Image.new("RGB", (64, 48), (30, 90, 160)).save(out, "JPEG")
    return out.getvalue()


def _homeowner_mail() -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Dana Whitfield <{DANA}>"
    msg["To"] = MAILBOX
    msg["Subject"] = "Leak and a nail pop"
    msg["Message-ID"] = f"<dana-{time.time_ns()}@example.com>"
    msg["Date"] = "Mon, 30 Nov 2026 10:00:00 -0700"
    msg.set_content("Hi,\n\nThe kitchen faucet drips all the time.\n"
                    "Also there is a nail pop in the upstairs hallway ceiling.\n\n"
                    "Thanks,\nDana\n303-555-0142\n")
    msg.add_attachment(_photo(), maintype="image", subtype="jpeg", filename="faucet.jpg")
    return msg.as_bytes()


def _reply(sender: str, to: str, in_reply_to: str, subject: str, body: str,
           auto: bool = False) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = ("Automatic reply: " if auto else "Re: ") + subject
    msg["Message-ID"] = f"<r-{time.time_ns()}@example.net>"
    msg["In-Reply-To"] = f"<{in_reply_to}>"
    msg["References"] = f"<{in_reply_to}>"
    msg["Date"] = "Tue, 01 Dec 2026 09:00:00 -0700"
    if auto:
        msg["Auto-Submitted"] = "auto-replied"
    msg.set_content(f"{body}\n\nOn Mon, Nov 30, 2026 Acme Homes Warranty wrote:\n> {subject}\n")
    return msg.as_bytes()


def _get(url: str) -> tuple[int, bytes, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def _processed(db: Database, n: int) -> bool:
    with db.session() as s:
        return len([r for r in s.scalars(select(InboundMessage)) if r.status != "new"]) >= n


def _wo(db: Database, trade: str) -> WorkOrder:
    with db.session() as s:
        wo = s.scalars(select(WorkOrder).where(WorkOrder.trade == trade)).one()
        s.expunge(wo)
        return wo


def _events(db: Database, wo_id: int) -> list[HistoryEvent]:
    with db.session() as s:
        rows = list(s.scalars(select(HistoryEvent).where(HistoryEvent.work_order_id == wo_id)
                              .order_by(HistoryEvent.id)))
        s.expunge_all()
        return rows


def test_vendor_loop_from_notice_to_resolution(
        tmp_path: Path, dovecot: Dovecot, sink: SmtpSink, db_url: str, mailbox_user: str) -> None:
    extra = (f'\n[[vendors]]\nname = "Peak Drywall"\nemail = "{OTHER_VENDOR}"\n'
             f'trades = ["drywall"]\n')
    path = write_config(tmp_path, dovecot=dovecot, smtp_port=sink.port, db_url=db_url,
                        extra=extra, imap_user=mailbox_user)
    config = load_config(path)
    assert config.web.base_url.startswith("http://127.0.0.1:"), "the harness serves the pages"
    db = Database(db_url)
    with DaemonProcess(path) as daemon:
        daemon.wait_ready()
        dovecot.append(mailbox_user, _homeowner_mail())
        wait_for(lambda: sink.received_by(DANA), 30, "the acknowledgement", daemon)

        # Staff accept the plumbing job for the plumber (state set as the command would).
        with db.session() as s:
            wo = s.scalars(select(WorkOrder).where(WorkOrder.trade == "plumbing")).one()
            photo = s.scalars(select(Attachment).where(Attachment.filename == "faucet.jpg")).one()
            wo.photos = [photo.id]
            wo.vendor = s.scalars(select(Vendor).where(Vendor.email == PLUMBER)).one()
            wo.status = "in_progress"
            queue_vendor_notice(s, config, wo, utcnow(), "pat@acme-homes.example")
            wo_id = wo.id
        wait_for(lambda: sink.received_by(PLUMBER), 30, "the vendor notice", daemon)
        notice = sink.received_by(PLUMBER)[0].message
        subject = str(notice["Subject"]).strip()
        assert subject.startswith(f"[WO-{wo_id}] Plumbing: ") and "1412 Aspen Ridge Dr" in subject
        assert [p.get_filename() for p in notice.iter_attachments()] == ["faucet.jpg"]
        text = notice.get_body(("plain",)).get_content()
        assert "303-555-0142" in text and DANA in text
        link = next(w for w in text.split() if w.startswith(f"{config.web.base_url}/v/"))
        reply_to = str(notice["Reply-To"]).strip()
        notice_id = str(notice["Message-ID"]).strip().strip("<>")

        # The link opens the page and its photo; a tampered link is refused.
        status, page, headers = _get(link)
        assert status == 200 and b"faucet" in page.lower()
        assert headers["X-Frame-Options"] == "DENY"
        assert _get(link + "/photo/1")[0] == 200
        assert _get(link[:-3] + ("xyz" if not link.endswith("xyz") else "abc"))[0] == 403

        # The vendor confirms "Thursday at 9".
        dovecot.append(mailbox_user, _reply(PLUMBER, reply_to, notice_id, subject,
                                            "Thursday at 9 works for us."))
        wait_for(lambda: _wo(db, "plumbing").scheduled_for is not None, 30,
                 "the visit to be scheduled", daemon)
        assert _wo(db, "plumbing").scheduled_for == datetime(2026, 12, 3, 16, 0, tzinfo=UTC)
        assert "scheduled" in [e.event for e in _events(db, wo_id)]
        wait_for(lambda: any("Visit scheduled" in str(m.message["Subject"])
                             for m in sink.received_by(DANA)), 30, "the homeowner told", daemon)

        # Out of office: recorded, never answered.
        dovecot.append(mailbox_user, _reply(PLUMBER, reply_to, notice_id, subject,
                                            "I am out of the office until Monday.", auto=True))
        wait_for(lambda: _processed(db, 3), 30, "the auto-reply processed", daemon)
        assert "auto_reply_received" in [e.event for e in _events(db, wo_id)]

        # Another vendor tries to close this job: refused, nothing changes.
        dovecot.append(mailbox_user, _reply(OTHER_VENDOR, MAILBOX, notice_id, subject,
                                            "Done, all fixed."))
        wait_for(lambda: _processed(db, 4), 30, "the intruder's mail processed", daemon)
        assert _wo(db, "plumbing").status == "in_progress"
        assert "vendor_reply_refused" in [e.event for e in _events(db, wo_id)]

        # The vendor reports the work done.
        dovecot.append(mailbox_user, _reply(PLUMBER, reply_to, notice_id, subject,
                                            "All done, replaced the cartridge. No more drip."))
        wait_for(lambda: _wo(db, "plumbing").status == "completed", 30, "completion", daemon)
        with db.session() as s:
            sr = s.scalars(select(ServiceRequest)).one()
            assert sr.status != "resolved", "the drywall job is still open"

        # The other work order is completed by staff: the request resolves.
        with db.session() as s:
            other = s.scalars(select(WorkOrder).where(WorkOrder.trade == "drywall")).one()
            complete_work_order(s, config, other, "pat@acme-homes.example", utcnow())
        wait_for(lambda: any("resolved" in str(m.message["Subject"])
                             for m in sink.received_by(DANA)), 30, "the homeowner told", daemon)
        assert len(sink.received_by(PLUMBER)) == 1, "the vendor got the notice and nothing else"
        assert sink.received_by(OTHER_VENDOR) == []
        assert daemon.terminate() == 0

    with db.session() as s:
        sr = s.scalars(select(ServiceRequest)).one()
        assert sr.status == "resolved" and sr.resolved_at is not None
    sent = [e for e in _events(db, wo_id) if e.event == "email_sent"]
    assert any(f"<{notice_id}>" in e.detail for e in sent), "the notice shows as sent"
    db.dispose()
