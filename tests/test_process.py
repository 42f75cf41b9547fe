"""Processing stored mail: effects, exactly-once, retries and quarantine (SQLite + PostgreSQL)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from config_builder import ELM_STREET, US, build_config
from sqlalchemy import select, update
from vendor_jobs import FakeDrafter

from warrantyd.daemon.config import Config
from warrantyd.daemon.drafters.base import DraftRequest, DraftResult
from warrantyd.daemon.drafting import DirectoryCache
from warrantyd.daemon.process import Processor
from warrantyd.daemon.tokens import installation_secret, issue_token, plus_address
from warrantyd.storage.db import Database
from warrantyd.storage.inbound import reprocess, store_inbound
from warrantyd.storage.models import (
    MAIN_DIVISION,
    Attachment,
    Feedback,
    HistoryEvent,
    InboundMessage,
    OutboundMessage,
    ServiceRequest,
    Vendor,
    WorkOrder,
    utcnow,
)


@pytest.fixture
def config(tmp_path: Path, database: Database) -> Config:
    return build_config(tmp_path, database, homes=[ELM_STREET], vendors=[
        {"name": "Ace Plumbing", "email": "ace@plumb.example.net", "trades": ["plumbing"]}])


def _store(database: Database, raw: bytes, uid: int) -> int:
    with database.session() as s:
        row, _ = store_inbound(s, mailbox="m/INBOX", uidvalidity=1, uid=uid, raw=raw)
        return row.id


def _mail(sender: str, body: str, *, subject: str = "Problems", to: str = US,
          extra: str = "") -> bytes:
    return (f"From: Someone <{sender}>\nTo: {to}\nSubject: {subject}\n"
            f"Message-ID: <{abs(hash(body + sender + extra))}@example.com>\n{extra}"
            f"Content-Type: text/plain; charset=utf-8\n\n{body}\n").encode()


async def test_new_mail_makes_a_request_drafts_and_one_acknowledgement(
        database: Database, config: Config) -> None:
    drafter = FakeDrafter()
    woke: list[int] = []
    processor = Processor(config, database, drafter, on_outbound=lambda: woke.append(1))
    _store(database, _mail("dana@example.com", "The kitchen sink is leaking badly\n"
                                               "The hallway ceiling has a nail pop"), 1)
    assert await processor.process_pending() == 1
    assert await processor.process_pending() == 0, "a processed mail is never processed again"
    with database.session() as s:
        sr = s.scalars(select(ServiceRequest)).one()
        assert sr.home is not None and sr.home.address == "1 Elm St"
        assert sr.usage == {"input_tokens": 5} and sr.engine == "fake"
        assert [wo.status for wo in sr.work_orders] == ["draft", "draft"]
        assert all(wo.coverage_hint for wo in sr.work_orders)
        ack = s.scalars(select(OutboundMessage).where(OutboundMessage.kind == "ack")).one()
        assert ack.kind == "ack" and ack.to_addr == "dana@example.com"
        assert ack.subject.startswith(f"[SR-{sr.id}]")
        assert s.scalars(select(InboundMessage)).one().status == "done"
        events = [e.event for e in s.scalars(select(HistoryEvent).order_by(HistoryEvent.id))]
        assert events[0] == "request_received" and events.count("drafted") == 2
    assert woke == [1]
    assert drafter.requests[0].property_address == "1 Elm St"


async def test_unknown_sender_gets_a_request_flagged_property_unknown(
        database: Database, config: Config) -> None:
    processor = Processor(config, database, FakeDrafter())
    _store(database, _mail("stranger@example.org", "Our garage door will not close at all"), 1)
    await processor.process_pending()
    with database.session() as s:
        sr = s.scalars(select(ServiceRequest)).one()
        assert sr.home is None
        assert "property_unknown" in [e.event for e in s.scalars(select(HistoryEvent))]


async def test_emergency_alerts_every_staff_member_at_once(
        database: Database, config: Config) -> None:
    processor = Processor(config, database, FakeDrafter())
    _store(database, _mail("dana@example.com", "We smell gas near the water heater!!"), 1)
    await processor.process_pending()
    with database.session() as s:
        kinds = sorted((m.kind, m.to_addr) for m in s.scalars(select(OutboundMessage)))
    assert kinds == [("ack", "dana@example.com"), ("alert", "pat@acme-homes.example"),
                     ("digest", "pat@acme-homes.example")]


async def test_failures_are_retried_then_quarantined_and_can_be_reprocessed(
        database: Database, config: Config) -> None:
    now = [utcnow()]
    processor = Processor(config, database, FakeDrafter(), clock=lambda: now[0])
    inbound_id = _store(database, _mail("dana@example.com", "boom goes the drafter today"), 1)
    for attempt in range(1, 4):
        await processor.process_pending()
        with database.session() as s:
            row = s.get(InboundMessage, inbound_id)
            assert row is not None and row.attempts == attempt
            assert "drafter exploded" in (row.last_error or "")
        now[0] += timedelta(hours=1)
    with database.session() as s:
        row = s.get(InboundMessage, inbound_id)
        assert row is not None and row.status == "quarantined"
        assert s.scalars(select(ServiceRequest)).all() == []
        assert s.scalars(select(OutboundMessage)).all() == [], "a failed mail sends nothing"
    with database.session() as s:
        reprocess(s, inbound_id)
    with database.session() as s:
        row = s.get(InboundMessage, inbound_id)
        assert row is not None and (row.status, row.attempts) == ("new", 0)


async def _one_request(database: Database, config: Config) -> tuple[int, str, str]:
    processor = Processor(config, database, FakeDrafter())
    _store(database, _mail("dana@example.com", "The kitchen sink is leaking badly"), 1)
    await processor.process_pending()
    with database.session() as s:
        sr = s.scalars(select(ServiceRequest)).one()
        ack = s.scalars(select(OutboundMessage).where(OutboundMessage.kind == "ack")).one()
        token = issue_token(s, installation_secret(s), kind="homeowner",
                            address="dana@example.com", days=30, service_request_id=sr.id)
        return sr.id, ack.message_id, plus_address(US, token.token)


async def test_auto_reply_on_our_thread_is_recorded_and_never_answered(
        database: Database, config: Config) -> None:
    sr_id, ack_id, _ = await _one_request(database, config)
    processor = Processor(config, database, FakeDrafter())
    _store(database, _mail("dana@example.com", "I am away until Monday.",
                           subject=f"Automatic reply: [SR-{sr_id}] We received your request",
                           extra=f"Auto-Submitted: auto-replied\nIn-Reply-To: <{ack_id}>\n"), 2)
    await processor.process_pending()
    with database.session() as s:
        assert len(s.scalars(select(OutboundMessage)).all()) == 2, "nothing is sent back"
        events = [e.event for e in s.scalars(select(HistoryEvent).where(
            HistoryEvent.service_request_id == sr_id))]
        assert "auto_reply_received" in events
        assert s.scalars(select(InboundMessage).where(InboundMessage.uid == 2)).one(
        ).classification == "auto_reply"


async def test_homeowner_reply_by_token_adds_history_and_new_drafts(
        database: Database, config: Config) -> None:
    sr_id, _, reply_to = await _one_request(database, config)
    processor = Processor(config, database, FakeDrafter())
    _store(database, _mail("dana@example.com", "Also the back door sticks when it rains",
                           subject="Re: your request", to=reply_to), 2)
    await processor.process_pending()
    with database.session() as s:
        sr = s.get(ServiceRequest, sr_id)
        assert sr is not None and len(sr.work_orders) == 2
        assert s.scalars(select(ServiceRequest)).all() == [sr], "no second request"
        events = [e.event for e in s.scalars(select(HistoryEvent).where(
            HistoryEvent.service_request_id == sr_id))]
        assert "homeowner_reply" in events



async def test_a_homeowner_reply_with_only_the_photo_asked_for_is_filed_with_it(
        database: Database, config: Config) -> None:
    """The offline drafter finds no new issue in "here is the photo": the photo goes on the
    request and the mail is done (drafting used to fail on it until it was quarantined)."""
    from warrantyd.daemon.drafters.offline import OfflineDrafter

    sr_id, _, reply_to = await _one_request(database, config)
    raw = (f"From: Dana <dana@example.com>\nTo: {reply_to}\nSubject: Re: your request\n"
           "Message-ID: <photo-reply@example.com>\nMIME-Version: 1.0\n"
           'Content-Type: multipart/mixed; boundary="b"\n\n--b\n'
           "Content-Type: text/plain; charset=utf-8\n\nHere is the photo you asked for.\n"
           "--b\nContent-Type: image/jpeg\nContent-Disposition: attachment; "
           'filename="sink.jpg"\nContent-Transfer-Encoding: base64\n\n/9j/4AAQSkZJRg==\n'
           "--b--\n").encode()
    inbound_id = _store(database, raw, 2)
    await Processor(config, database, OfflineDrafter()).process_pending()
    with database.session() as s:
        row = s.get(InboundMessage, inbound_id)
        assert row is not None and (row.status, row.attempts) == ("done", 0), row.last_error
        sr = s.get(ServiceRequest, sr_id)
        assert sr is not None and len(sr.work_orders) == 1, "no draft from a photo alone"
        assert s.scalars(select(Attachment.filename).where(
            Attachment.service_request_id == sr_id)).all() == ["sink.jpg"]

async def test_permanent_bounce_of_a_vendor_mail_flags_the_work_order(
        database: Database, config: Config) -> None:
    from warrantyd.daemon.outbox import queue_mail

    await _one_request(database, config)
    with database.session() as s:
        wo = s.scalars(select(WorkOrder)).first()
        assert wo is not None
        vendor = s.scalars(select(Vendor)).one()
        wo.vendor_id, wo.status = vendor.id, "in_progress"
        notice = queue_mail(s, our_address=US, from_name="Acme", kind="vendor_notice",
                            to=vendor.email, subject=f"[WO-{wo.id}] job", text="job",
                            dedupe_key=f"vendor:{wo.id}", work_order_id=wo.id,
                            service_request_id=wo.service_request_id)
        notice_id, wo_id = notice.message_id, wo.id
    dsn = (f"From: MAILER-DAEMON@mx.example.net\nTo: {US}\nSubject: Undelivered Mail Returned "
           "to Sender\nMessage-ID: <dsn1@mx.example.net>\nContent-Type: multipart/report; "
           'report-type=delivery-status; boundary="b"\n\n--b\nContent-Type: text/plain\n\n'
           "could not deliver\n--b\nContent-Type: message/delivery-status\n\n"
           "Reporting-MTA: dns; mx.example.net\n\nFinal-Recipient: rfc822; ace@plumb.example.net\n"
           "Action: failed\nStatus: 5.1.1\n\n--b\nContent-Type: text/rfc822-headers\n\n"
           f"Message-ID: <{notice_id}>\nTo: ace@plumb.example.net\n--b--\n").encode()
    _store(database, dsn, 9)
    await Processor(config, database, FakeDrafter()).process_pending()
    with database.session() as s:
        wo = s.get(WorkOrder, wo_id)
        assert wo is not None and "vendor email bounced" in wo.flags
        assert s.scalars(select(InboundMessage).where(InboundMessage.uid == 9)).one(
        ).classification == "bounce"


async def test_staff_forwarding_a_homeowner_mail_opens_the_request_for_the_homeowner(
        database: Database, config: Config) -> None:
    body = ("Pat here, can you log this one?\n\n"
            "---------- Forwarded message ---------\n"
            "From: Dana <dana@example.com>\nDate: Thu, 26 Nov 2026 09:00:00 -0700\n"
            "Subject: Sink leak\nTo: Pat <pat@acme-homes.example>\n\n"
            "The kitchen sink is leaking into the cabinet below.\n")
    drafter = FakeDrafter()
    _store(database, _mail("pat@acme-homes.example", body, subject="Fwd: Sink leak"), 1)
    await Processor(config, database, drafter).process_pending()
    with database.session() as s:
        sr = s.scalars(select(ServiceRequest)).one()
        assert sr.requester_email == "dana@example.com"
        assert sr.home is not None and sr.home.address == "1 Elm St"
        assert [wo.description for wo in sr.work_orders] == [
            "The kitchen sink is leaking into the cabinet below."]
        ack = s.scalars(select(OutboundMessage).where(OutboundMessage.kind == "ack")).one()
        assert ack.to_addr == "dana@example.com"
        received = s.scalars(select(HistoryEvent).where(
            HistoryEvent.event == "request_received")).one()
        assert received.actor == "pat@acme-homes.example"
        assert received.detail.startswith("forwarded by pat@acme-homes.example")
    assert "Pat here" not in drafter.requests[0].text


async def test_staff_mail_without_a_forward_opens_nothing(
        database: Database, config: Config) -> None:
    _store(database, _mail("pat@acme-homes.example", "Reminder: team meeting at 3 today"), 1)
    await Processor(config, database, FakeDrafter()).process_pending()
    with database.session() as s:
        assert s.scalars(select(ServiceRequest)).all() == []
        assert s.scalars(select(OutboundMessage)).all() == []


async def test_a_spanish_mail_is_acknowledged_in_spanish(
        database: Database, config: Config) -> None:
    import email

    from warrantyd.daemon.drafters.offline import OfflineDrafter

    _store(database, _mail("dana@example.com", "Hola, el lavabo del baño principal gotea "
                                               "mucho y el agua sale por debajo del mueble."), 1)
    await Processor(config, database, OfflineDrafter()).process_pending()
    with database.session() as s:
        ack = s.scalars(select(OutboundMessage).where(OutboundMessage.kind == "ack")).one()
        assert "Recibimos su solicitud" in ack.subject
        sent = email.message_from_bytes(ack.raw, policy=email.policy.default)
        assert "Gracias por escribir" in sent.get_body(("plain",)).get_content()


async def test_the_daily_token_budget_sends_drafting_offline(
        database: Database, config: Config) -> None:
    from dataclasses import replace

    capped = replace(config, drafter=replace(config.drafter, engine="anthropic",
                                             daily_token_budget=100))

    class CountingModel(FakeDrafter):
        engine = "anthropic"

        async def draft(self, request: DraftRequest) -> DraftResult:
            result = await super().draft(request)
            result.usage = {"input_tokens": 80, "output_tokens": 30}
            return result

    model = CountingModel()
    processor = Processor(capped, database, model)
    _store(database, _mail("dana@example.com", "The kitchen sink is leaking badly"), 1)
    _store(database, _mail("dana@example.com", "The garage door will not close now"), 2)
    await processor.process_pending()
    assert len(model.requests) == 1, "the second mail must not reach the model"
    with database.session() as s:
        engines = [sr.engine for sr in s.scalars(select(ServiceRequest).order_by(
            ServiceRequest.id))]
    assert engines == ["anthropic", "offline (fallback: daily token budget)"]


def test_cached_vendors_and_decisions_see_this_process_at_once_and_others_after_the_ttl(
        database: Database) -> None:
    """The processor reads vendors and staff decisions once per TTL, not once per mail: a
    commit of this process that changes them is seen by the next mail; a change it cannot
    see (another daemon's) within the TTL."""
    now = [0.0]
    cache = DirectoryCache(ttl=2.0, clock=lambda: now[0])
    with database.session() as s:
        assert cache.vendor_infos(s, MAIN_DIVISION) == ()
        assert cache.vendor_emails(s) == frozenset()
        assert cache.feedback_examples(s) == ()
    with database.session() as s:
        s.add(Vendor(name="Ace Plumbing", email="ace@plumbing.example", trades=["plumbing"]))
        s.add(Feedback(decision="accepted", source_text="The faucet drips"))
    with database.session() as s:
        assert [v.email for v in cache.vendor_infos(s, MAIN_DIVISION)] == ["ace@plumbing.example"]
        assert cache.vendor_emails(s) == {"ace@plumbing.example"}
        assert [f.source_text for f in cache.feedback_examples(s)] == ["The faucet drips"]
    with database.session() as s:  # as another process would: no ORM object changes here
        s.execute(update(Vendor.__table__).values(active=False))
    with database.session() as s:
        assert len(cache.vendor_infos(s, MAIN_DIVISION)) == 1, "within the TTL: cached"
    now[0] = 2.5
    with database.session() as s:
        assert cache.vendor_infos(s, MAIN_DIVISION) == (), "after the TTL: read again"
    with pytest.raises(RuntimeError), database.session() as s:  # rolled back: not seen
        s.add(Vendor(name="Gone", email="gone@example.com", trades=[]))
        s.flush()
        raise RuntimeError("rolled back")
    with database.session() as s:
        assert cache.vendor_emails(s) == {"ace@plumbing.example"}


_FIRST_MAIL = """
import asyncio, sys
from pathlib import Path
from config_builder import ELM_STREET, build_config
from warrantyd.daemon.drafting import make_drafter
from warrantyd.daemon.process import Processor
from warrantyd.daemon.render import environment
from warrantyd.storage.db import Database
from warrantyd.storage.inbound import store_inbound

tmp = Path(sys.argv[1])
db = Database(f"sqlite:///{tmp / 'w.sqlite3'}")
db.upgrade()
config = build_config(tmp, db, homes=[ELM_STREET])
with db.session() as s:
    store_inbound(s, mailbox="m/INBOX", uidvalidity=1, uid=1, raw=sys.argv[2].encode())
processor = Processor(config, db, make_drafter(config, in_line=True), in_thread=False)
processor.warm_up()
modules, templates = set(sys.modules), len(environment().cache)
handled = asyncio.run(processor.process_pending())
print(handled, sorted(set(sys.modules) - modules), len(environment().cache) - templates)
"""


def test_warming_up_leaves_nothing_for_the_first_mail_to_load(tmp_path: Path) -> None:
    # The processing worker warms up while the daemon connects: the first mail of a start
    # (a backlog's first acknowledgement) then costs what any other mail costs.
    mail = _mail("dana@example.com", "The kitchen sink is leaking badly.\n"
                                     "The garage door grinds and stops halfway.")
    support = Path(__file__).parent / "support"
    proc = subprocess.run([sys.executable, "-c", _FIRST_MAIL, str(tmp_path), mail.decode()],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(support)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1", "[]", "0"], "loaded by the first mail: " + proc.stdout
