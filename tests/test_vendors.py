"""The vendor loop on both databases: notice, withdrawal, replies, completion, resolution."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from io import BytesIO
from pathlib import Path

import aiohttp
import pytest
from fake_anthropic import FakeAnthropic, tool_reply
from PIL import Image
from smtp_sink import SmtpSink
from sqlalchemy import select
from vendor_jobs import (
    ACE,
    BOB,
    DANA,
    STAFF,
    US,
    make_config,
    make_job,
    process_mail,
    send_to,
)

from warrantyd.daemon.config import Config, SmtpConfig
from warrantyd.daemon.outbox import OutboxSender
from warrantyd.daemon.vendor_reader import read_reply
from warrantyd.daemon.vendors import (
    WorkOrderStateError,
    alert_staff_vendor_bounce,
    complete_work_order,
    queue_vendor_notice,
    reopen_work_order,
)
from warrantyd.daemon.web import WebServer
from warrantyd.storage.db import Database
from warrantyd.storage.models import (
    HistoryEvent,
    InboundMessage,
    OutboundMessage,
    ReplyToken,
    ServiceRequest,
    Vendor,
    WorkOrder,
    utcnow,
)

REPLY_DATE = "Tue, 01 Dec 2026 09:00:00 -0700"
SECRETS = ("INTERNAL-SECRET", "COVERAGE-SECRET", "FLAG-SECRET", "OTHER-JOB-SECRET",
           "0.42", "EMERGENCY-REASON-SECRET")


@pytest.fixture
def config(tmp_path: Path, database: Database) -> Config:
    return make_config(tmp_path, database)


def outbound(database: Database, kind: str, to: str | None = None) -> list[OutboundMessage]:
    with database.session() as s:
        stmt = select(OutboundMessage).where(OutboundMessage.kind == kind)
        if to is not None:
            stmt = stmt.where(OutboundMessage.to_addr == to)
        rows = list(s.scalars(stmt.order_by(OutboundMessage.id)))
        s.expunge_all()
        return rows


def parsed(row: OutboundMessage) -> EmailMessage:
    return email.message_from_bytes(row.raw, policy=email.policy.default)  # type: ignore[return-value]


def bodies(msg: EmailMessage) -> str:
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    return text + "\n" + html


def events(database: Database, wo_id: int | None = None, sr_id: int | None = None
           ) -> list[HistoryEvent]:
    with database.session() as s:
        stmt = select(HistoryEvent).order_by(HistoryEvent.id)
        if wo_id is not None:
            stmt = stmt.where(HistoryEvent.work_order_id == wo_id)
        if sr_id is not None:
            stmt = stmt.where(HistoryEvent.service_request_id == sr_id)
        rows = list(s.scalars(stmt))
        s.expunge_all()
        return rows


def get_wo(database: Database, wo_id: int) -> WorkOrder:
    with database.session() as s:
        wo = s.get(WorkOrder, wo_id)
        assert wo is not None
        s.expunge(wo)
        return wo


_uid = iter(range(1, 10_000))


def vendor_mail(sender: str, body: str, *, to: str = US, subject: str = "Re: job",
                in_reply_to: str | None = None, extra: str = "") -> bytes:
    n = next(_uid)
    refs = f"In-Reply-To: <{in_reply_to}>\nReferences: <{in_reply_to}>\n" if in_reply_to else ""
    return (f"From: Someone <{sender}>\nTo: {to}\nSubject: {subject}\nDate: {REPLY_DATE}\n"
            f"Message-ID: <reply-{n}@example.net>\n{refs}{extra}"
            f"Content-Type: text/plain; charset=utf-8\n\n{body}\n").encode()


async def deliver(database: Database, config: Config, raw: bytes) -> InboundMessage:
    return await process_mail(database, config, raw, mailbox="m/INBOX")


def notice_of(database: Database, vendor_email: str = ACE) -> tuple[OutboundMessage, str]:
    row = outbound(database, "vendor_notice", vendor_email)[-1]
    return row, str(parsed(row)["Reply-To"])


# --- the notice ----------------------------------------------------------------------------

def test_notice_has_the_job_the_contacts_the_photos_a_link_and_a_vendor_token(
        database: Database, config: Config) -> None:
    job = make_job(database, config)
    send_to(database, config, job.wo_id, ACE)
    row, reply_to = notice_of(database)
    msg = parsed(row)
    assert msg["Subject"] == f"[WO-{job.wo_id}] Plumbing: Leak under kitchen sink - 1 Elm St"
    assert row.work_order_id == job.wo_id and row.status == "queued"
    text = bodies(msg)
    for expected in ("Water drips from the P-trap", "1 Elm St", "Oaks", "Dana Whitfield", DANA,
                     "303-555-0142", "Dog in the back yard", "kitchen",
                     "https://warranty.acme-homes.example/v/"):
        assert expected in text, expected
    assert reply_to.startswith("warranty+") and reply_to.endswith("@acme-homes.example")
    token = reply_to.split("+", 1)[1].split("@")[0]
    with database.session() as s:
        tok = s.scalars(select(ReplyToken).where(ReplyToken.token == token)).one()
        assert (tok.kind, tok.address, tok.work_order_id) == ("vendor", ACE, job.wo_id)
    files = {p.get_filename(): p for p in msg.iter_attachments()}
    assert set(files) == {"sink.png", "wide.jpg"}
    assert files["sink.png"].get_content_type() == "image/png"
    with Image.open(BytesIO(files["wide.jpg"].get_content())) as shrunk:
        assert max(shrunk.size) <= 2000, "a photo over 2000 px is scaled down for mail"
    notified = [e for e in events(database, job.wo_id) if e.event == "vendor_notified"]
    assert len(notified) == 1 and notified[0].outbound_message_id == row.id
    assert "queued" in notified[0].detail


async def test_the_notice_shows_as_sent_with_its_message_id_once_delivered(
        database: Database, config: Config) -> None:
    job = make_job(database, config)
    send_to(database, config, job.wo_id, ACE)
    with SmtpSink() as sink:
        sender = OutboxSender(database, SmtpConfig(host="127.0.0.1", port=sink.port,
                                                   security="none"))
        assert await sender.send_due() == 1
        assert sink.received_by(ACE)
    row, _ = notice_of(database)
    sent = [e for e in events(database, job.wo_id) if e.event == "email_sent"]
    assert len(sent) == 1 and f"<{row.message_id}>" in sent[0].detail


def test_sending_the_same_assignment_twice_sends_one_mail(
        database: Database, config: Config) -> None:
    job = make_job(database, config)
    send_to(database, config, job.wo_id, ACE)
    with database.session() as s:
        wo = s.get(WorkOrder, job.wo_id)
        assert wo is not None
        queue_vendor_notice(s, config, wo, utcnow(), STAFF)
    assert len(outbound(database, "vendor_notice")) == 1


async def test_internal_notes_other_jobs_and_staff_fields_never_reach_the_vendor(
        database: Database, config: Config) -> None:
    job = make_job(database, config)
    send_to(database, config, job.wo_id, ACE)
    send_to(database, config, job.other_wo_id, BOB)
    row, _ = notice_of(database, ACE)
    msg = parsed(row)
    text = bodies(msg)
    for secret in SECRETS:
        assert secret not in text, secret
    assert "hall.png" not in {p.get_filename() for p in msg.iter_attachments()}
    link = next(w for w in text.split() if w.startswith("https://warranty.acme-homes.example/v/"))
    server = WebServer(config, database)
    await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            path = link.removeprefix("https://warranty.acme-homes.example")
            async with http.get(server.url + path) as resp:
                assert resp.status == 200
                page = await resp.text()
    finally:
        await server.stop()
    assert "Water drips from the P-trap" in page and "Dog in the back yard" in page
    for secret in (*SECRETS, "Nail pop in hallway", BOB, "Bob"):
        assert secret not in page, secret


# --- re-assignment ---------------------------------------------------------------------------

async def test_reassigning_tells_the_old_vendor_and_closes_their_link_and_token(
        database: Database, config: Config) -> None:
    job = make_job(database, config)
    send_to(database, config, job.wo_id, ACE)
    old_row, old_reply_to = notice_of(database, ACE)
    send_to(database, config, job.wo_id, BOB)
    withdrawn = outbound(database, "vendor_withdrawn", ACE)
    assert len(withdrawn) == 1 and "Withdrawn" in withdrawn[0].subject
    assert "do not schedule" in bodies(parsed(withdrawn[0]))
    assert outbound(database, "vendor_notice", BOB), "the new vendor is notified"
    assert get_wo(database, job.wo_id).vendor_id is not None
    # The old vendor's answer through the old token changes nothing.
    await deliver(database, config, vendor_mail(ACE, "Thursday at 9 works.", to=old_reply_to,
                                                in_reply_to=old_row.message_id))
    wo = get_wo(database, job.wo_id)
    assert wo.scheduled_for is None and wo.status == "in_progress"
    assert "vendor_reply_refused" in [e.event for e in events(database, job.wo_id)]
    # And the old link is closed.
    link = next(w for w in bodies(parsed(old_row)).split() if "/v/" in w)
    server = WebServer(config, database)
    await server.start()
    try:
        async with aiohttp.ClientSession() as http, http.get(
                server.url + link.removeprefix("https://warranty.acme-homes.example")) as resp:
            assert resp.status == 410
    finally:
        await server.stop()


# --- replies ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "flag_start", "status"), [
    ("We can do Tue 8-10 or Wed 1-3, which is better for the homeowner?",
     "vendor proposed times", "in_progress"),
    ("What's the lockbox code for the garage?", "vendor question: What's the lockbox",
     "in_progress"),
    ("Sorry, we don't do drywall. Please send this to someone else.", "vendor decline: Sorry",
     "in_progress"),
    ("Parts are on order, it will be another week before we can come out.",
     "vendor delay: Parts are on order", "in_progress"),
    ("Quote is $450 to replace the valve, please approve before we proceed.",
     "vendor quote $450", "in_progress"),
    ("Got it, thanks. We will call the homeowner.", None, "in_progress"),
    ("Done. Replaced the trap and tested, no leaks.", None, "completed"),
])
async def test_every_intent_has_its_effect(database: Database, config: Config, body: str,
                                           flag_start: str | None, status: str) -> None:
    job = make_job(database, config)
    send_to(database, config, job.wo_id, ACE)
    row, reply_to = notice_of(database)
    await deliver(database, config, vendor_mail(ACE, body, to=reply_to,
                                                in_reply_to=row.message_id))
    wo = get_wo(database, job.wo_id)
    assert wo.status == status
    assert wo.last_vendor_reply_at is not None
    assert wo.scheduled_for is None
    new_flags = [f for f in wo.flags if f != "FLAG-SECRET"]
    if flag_start is None:
        assert new_flags == []
    else:
        assert len(new_flags) == 1 and new_flags[0].startswith(flag_start), new_flags
    reply = [e for e in events(database, job.wo_id) if e.event == "vendor_reply"]
    assert len(reply) == 1 and reply[0].actor == ACE and body.split(".")[0] in reply[0].detail
    assert outbound(database, "homeowner_scheduled") == []


async def test_a_confirmed_date_schedules_the_visit_and_tells_the_homeowner(
        database: Database, config: Config) -> None:
    job = make_job(database, config)
    send_to(database, config, job.wo_id, ACE)
    row, reply_to = notice_of(database)
    await deliver(database, config, vendor_mail(
        ACE, "Thursday at 9 works. Tell her the tech is named Carl, cash only lol.",
        to=reply_to, in_reply_to=row.message_id))
    wo = get_wo(database, job.wo_id)
    assert wo.scheduled_for == datetime(2026, 12, 3, 16, 0, tzinfo=UTC)
    history = events(database, job.wo_id)
    scheduled = [e for e in history if e.event == "scheduled"]
    assert len(scheduled) == 1 and "Thursday, December 3, 2026, 9:00 AM" in scheduled[0].detail
    told = outbound(database, "homeowner_scheduled", DANA)
    assert len(told) == 1
    text = bodies(parsed(told[0]))
    assert "Thursday, December 3, 2026, 9:00 AM" in text and "Ace Plumbing" in text
    assert "Carl" not in text and "cash" not in text, "never the vendor's own words"
    assert str(parsed(told[0])["Reply-To"]).startswith("warranty+")


async def test_a_reply_by_message_id_from_the_vendor_counts_but_not_from_anyone_else(
        database: Database, config: Config) -> None:
    job = make_job(database, config)
    send_to(database, config, job.wo_id, ACE)
    send_to(database, config, job.other_wo_id, BOB)
    row, _ = notice_of(database, ACE)
    # Another vendor (and a stranger) answer the plumber's thread: nothing changes.
    for intruder in (BOB, "mallory@example.org"):
        result = await deliver(database, config, vendor_mail(
            intruder, "Done, all fixed.", subject=f"Re: [WO-{job.wo_id}] Plumbing",
            in_reply_to=row.message_id))
        assert result.classification == "vendor_reply"
        wo = get_wo(database, job.wo_id)
        assert wo.status == "in_progress" and wo.last_vendor_reply_at is None
        assert any(intruder in f and "not applied" in f for f in wo.flags)
    refused = [e for e in events(database, job.wo_id) if e.event == "vendor_reply_refused"]
    assert len(refused) == 2 and all(e.internal for e in refused)
    # A subject tag alone from another vendor does not even thread.
    await deliver(database, config, vendor_mail(BOB, "Done.",
                                                subject=f"Re: [WO-{job.wo_id}] Plumbing"))
    assert get_wo(database, job.wo_id).status == "in_progress"
    # The real vendor, by Message-ID only (no token), is heard.
    await deliver(database, config, vendor_mail(ACE, "Done.", in_reply_to=row.message_id))
    assert get_wo(database, job.wo_id).status == "completed"


async def test_a_vendor_heard_from_after_a_bounce_is_reachable_again(
        database: Database, config: Config) -> None:
    """Mail to Ace bounced; then Ace writes from that address: new jobs may go to Ace again.
    A colleague answering on the thread, or a reply written before the bounce, proves
    nothing about Ace's mailbox."""
    job = make_job(database, config)
    send_to(database, config, job.wo_id, ACE)
    row, reply_to = notice_of(database)
    bounced = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)  # an hour before REPLY_DATE

    def mark_bounced() -> None:
        with database.session() as s:
            vendor = s.scalars(select(Vendor).where(Vendor.email == ACE)).one()
            vendor.bounced_at = bounced
            wo = s.get(WorkOrder, job.wo_id)
            assert wo is not None
            wo.flags = [*wo.flags, "vendor email bounced"]

    def ace_bounced_at() -> datetime | None:
        with database.session() as s:
            return s.scalars(select(Vendor.bounced_at).where(Vendor.email == ACE)).one()

    mark_bounced()
    old = vendor_mail(ACE, "Got it, thanks.", to=reply_to, in_reply_to=row.message_id)
    await deliver(database, config, old.replace(REPLY_DATE.encode(),
                                                b"Tue, 01 Dec 2026 00:30:00 -0700"))
    assert ace_bounced_at() is not None, "written before the bounce"
    await deliver(database, config, vendor_mail("dispatch@plumb.example.net", "Got it.",
                                                to=reply_to, in_reply_to=row.message_id))
    assert ace_bounced_at() is not None, "a colleague's address says nothing about Ace's"
    await deliver(database, config, vendor_mail(ACE, "Got it, thanks.", to=reply_to,
                                                in_reply_to=row.message_id))
    assert ace_bounced_at() is None
    assert "vendor email bounced" not in get_wo(database, job.wo_id).flags
    [event] = [e for e in events(database, job.wo_id) if e.event == "vendor_reachable"]
    assert "2026-12-01" in event.detail and "new jobs may be sent" in event.detail


async def test_a_forged_vendor_from_with_only_the_subject_tag_changes_nothing(
        database: Database, config: Config) -> None:
    """Anyone can write the vendor's From and "[WO-n]": that is a flag, never a completion."""
    job = make_job(database, config)
    send_to(database, config, job.wo_id, ACE)
    before = len(outbound(database, "homeowner_scheduled")) + len(
        outbound(database, "homeowner_resolved"))
    for body in ("All done, job finished.", "Confirmed for Thursday at 8am."):
        await deliver(database, config, vendor_mail(
            ACE, body, subject=f"[WO-{job.wo_id}] Plumbing"))
    wo = get_wo(database, job.wo_id)
    assert wo.status == "in_progress" and wo.scheduled_for is None
    assert after_mails(database) == before
    assert any("not applied" in f for f in wo.flags)


def after_mails(database: Database) -> int:
    return len(outbound(database, "homeowner_scheduled")) + len(
        outbound(database, "homeowner_resolved"))


async def test_an_unthreaded_mail_from_a_vendor_is_recorded_for_staff_only(
        database: Database, config: Config) -> None:
    job = make_job(database, config)
    send_to(database, config, job.wo_id, ACE)
    result = await deliver(database, config, vendor_mail(ACE, "Done with the Elm St job.",
                                                         subject="Elm St"))
    assert result.status == "done" and result.classification == "vendor_reply"
    assert get_wo(database, job.wo_id).status == "in_progress"
    recorded = [e for e in events(database) if e.event == "vendor_mail"]
    assert len(recorded) == 1 and "Done with the Elm St job" in recorded[0].detail


async def test_vendor_out_of_office_is_recorded_and_never_answered(
        database: Database, config: Config) -> None:
    job = make_job(database, config)
    send_to(database, config, job.wo_id, ACE)
    row, reply_to = notice_of(database)
    before = len(outbound(database, "vendor_link")) + len(outbound(database, "vendor_notice"))
    result = await deliver(database, config, vendor_mail(
        ACE, "I am out of the office until Monday.", to=reply_to, in_reply_to=row.message_id,
        subject="Automatic reply: job", extra="Auto-Submitted: auto-replied\n"))
    assert result.classification == "auto_reply"
    assert get_wo(database, job.wo_id).last_vendor_reply_at is None
    assert "auto_reply_received" in [e.event for e in events(database, job.wo_id)]
    after = len(outbound(database, "vendor_link")) + len(outbound(database, "vendor_notice"))
    assert after == before


async def test_a_vendor_writing_when_the_link_has_run_out_gets_a_fresh_one(
        database: Database, config: Config) -> None:
    job = make_job(database, config)
    send_to(database, config, job.wo_id, ACE)
    with database.session() as s:
        row = s.scalars(select(OutboundMessage).where(
            OutboundMessage.kind == "vendor_notice")).one()
        row.created_at = utcnow() - timedelta(days=44)
    row, reply_to = notice_of(database)
    await deliver(database, config, vendor_mail(ACE, "Got it, will call her.", to=reply_to,
                                                in_reply_to=row.message_id))
    fresh = outbound(database, "vendor_link", ACE)
    assert len(fresh) == 1 and "/v/" in bodies(parsed(fresh[0]))


# --- completion, resolution, reopening ------------------------------------------------------

def test_resolution_needs_every_job_done_or_rejected_and_one_done(
        database: Database, config: Config) -> None:
    job = make_job(database, config)
    send_to(database, config, job.wo_id, ACE)
    now = utcnow()
    with database.session() as s:
        wo = s.get(WorkOrder, job.wo_id)
        assert wo is not None
        assert complete_work_order(s, config, wo, STAFF, now) == []
        assert wo.completed_at is not None
        sr = s.get(ServiceRequest, job.sr_id)
        assert sr is not None and sr.status != "resolved", "the drywall job is still a draft"
    with database.session() as s:
        other = s.get(WorkOrder, job.other_wo_id)
        assert other is not None
        other.status = "rejected"
        wo = s.get(WorkOrder, job.wo_id)
        assert wo is not None
        assert complete_work_order(s, config, wo, STAFF, now) == [], "completing twice: no-op"
    with database.session() as s:
        other = s.get(WorkOrder, job.other_wo_id)
        assert other is not None
        other.status = "in_progress"
        other_vendor = s.scalars(select(Vendor).where(Vendor.email == BOB)).one()
        other.vendor = other_vendor
        mails = complete_work_order(s, config, other, STAFF, now)
        assert [m.kind for m in mails] == ["homeowner_resolved"]
        sr = s.get(ServiceRequest, job.sr_id)
        assert sr is not None and sr.status == "resolved" and sr.resolved_at is not None
    told = outbound(database, "homeowner_resolved", DANA)
    assert len(told) == 1
    text = bodies(parsed(told[0]))
    assert "Leak under kitchen sink" in text and "Nail pop in hallway" in text
    assert "request_resolved" in [e.event for e in events(database, sr_id=job.sr_id)]


def test_all_rejected_is_not_resolved_and_reopen_undoes_resolution(
        database: Database, config: Config) -> None:
    job = make_job(database, config)
    send_to(database, config, job.wo_id, ACE)
    now = utcnow()
    with database.session() as s:
        for wo_id in (job.wo_id, job.other_wo_id):
            wo = s.get(WorkOrder, wo_id)
            assert wo is not None
            wo.status = "rejected"
        wo = s.get(WorkOrder, job.wo_id)
        assert wo is not None
        with pytest.raises(WorkOrderStateError):
            complete_work_order(s, config, wo, STAFF, now)
        sr = s.get(ServiceRequest, job.sr_id)
        assert sr is not None and sr.status == "open"
    with database.session() as s:
        wo = s.get(WorkOrder, job.wo_id)
        assert wo is not None
        wo.status = "in_progress"
        complete_work_order(s, config, wo, STAFF, now)
        sr = s.get(ServiceRequest, job.sr_id)
        assert sr is not None and sr.status == "resolved"
    with database.session() as s:
        wo = s.get(WorkOrder, job.wo_id)
        assert wo is not None
        mails = reopen_work_order(s, config, wo, STAFF, now)
        assert [m.kind for m in mails] == ["vendor_reopened"]
        assert wo.status == "in_progress" and wo.completed_at is None
        sr = s.get(ServiceRequest, job.sr_id)
        assert sr is not None and sr.status == "in_progress" and sr.resolved_at is None
        with pytest.raises(WorkOrderStateError):
            reopen_work_order(s, config, wo, STAFF, now)


def test_a_vendor_bounce_alerts_every_staff_member_once(
        database: Database, config: Config) -> None:
    job = make_job(database, config)
    send_to(database, config, job.wo_id, ACE)
    for _ in range(2):
        with database.session() as s:
            wo = s.get(WorkOrder, job.wo_id)
            assert wo is not None
            alert_staff_vendor_bounce(s, config, wo, "550 5.1.1 no such user", utcnow())
    alerts = outbound(database, "alert_vendor_bounce")
    assert [a.to_addr for a in alerts] == [STAFF]
    text = bodies(parsed(alerts[0]))
    assert "550 5.1.1" in text and f"assign WO-{job.wo_id}" in text


# --- the language-model reader ----------------------------------------------------------------

def test_the_model_reads_the_reply_and_bad_answers_fall_back_offline(
        tmp_path: Path, database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    sent = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    with FakeAnthropic(api_key=None) as fake:
        monkeypatch.setenv("TEST_ANTHROPIC_KEY", "sk-test")
        config = make_config(tmp_path, database, engine="anthropic", base_url=fake.base_url,
                             api_key_env="TEST_ANTHROPIC_KEY", max_retries=0)
        fake.enqueue(tool_reply({"intent": "confirm_schedule",
                                 "scheduled_for": "2026-12-04T13:00:00-07:00",
                                 "window_end": "2026-12-04T15:00:00-07:00", "options": [],
                                 "amount": None}, name="record_vendor_reading"))
        reading = read_reply(config, new_text="Friday 1-3 then", sent_at=sent)
        assert reading.intent == "confirm_schedule"
        assert reading.scheduled_for == datetime(2026, 12, 4, 20, 0, tzinfo=UTC)
        assert reading.reason == "read by the language model"
        body = fake.message_requests[0].body
        assert body["tool_choice"] == {"type": "tool", "name": "record_vendor_reading"}
        assert "<vendor_reply>\nFriday 1-3 then\n</vendor_reply>" in body["messages"][0]["content"]
        # A confirm without a date, a date years away: the offline reader answers instead.
        for bad in ({"intent": "confirm_schedule", "scheduled_for": None, "window_end": None,
                     "options": [], "amount": None},
                    {"intent": "confirm_schedule", "scheduled_for": "2031-01-01T09:00:00-07:00",
                     "window_end": None, "options": [], "amount": None},
                    {"intent": "take_over", "scheduled_for": None, "window_end": None,
                     "options": [], "amount": None}):
            fake.enqueue(tool_reply(bad, name="record_vendor_reading"))
            reading = read_reply(config, new_text="Thursday at 9 works", sent_at=sent)
            assert reading.intent == "confirm_schedule"
            assert reading.scheduled_for == datetime(2026, 12, 3, 16, 0, tzinfo=UTC)
            assert "offline reader" in reading.reason
    # The API unreachable: offline too.
    reading = read_reply(config, new_text="Done, all fixed.", sent_at=sent)
    assert reading.intent == "completed" and "offline reader" in reading.reason
