"""The outbox: mail is a row in the caller's transaction, then sent exactly once over SMTP."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from smtp_sink import SmtpSink, free_port
from sqlalchemy import select

from warrantyd.daemon.config import SmtpConfig
from warrantyd.daemon.outbox import (
    KIND_HEADER,
    OutboxSender,
    OutgoingAttachment,
    queue_mail,
    suppression_reason,
)
from warrantyd.storage.db import Database
from warrantyd.storage.models import HistoryEvent, OutboundMessage, ServiceRequest, WorkOrder

OUR = "warranty@acme-homes.example"
HOMEOWNER = "pat.homeowner@example.com"
VENDOR = "dispatch@ace-plumbing.example"
PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00"
       b"\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N"
       b"\x00\x00\x00\x00IEND\xaeB`\x82")


class FakeClock:
    """The sender's idea of now; tests move it instead of sleeping."""

    def __init__(self) -> None:
        self.now = datetime(2025, 6, 2, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as running:
        yield running


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def smtp_config(sink: SmtpSink, **overrides: Any) -> SmtpConfig:
    values: dict[str, Any] = dict(host=sink.host, port=sink.port, security="none",
                                  from_name="Acme Homes Warranty",
                                  rate_per_recipient_per_hour=100, timeout_seconds=5.0)
    values.update(overrides)
    return SmtpConfig(**values)


def make_sender(database: Database, sink: SmtpSink, clock: FakeClock, **kwargs: Any
                ) -> OutboxSender:
    smtp = smtp_config(sink, **kwargs.pop("smtp", {}))
    kwargs.setdefault("backoff_base", 1.0)
    kwargs.setdefault("backoff_max", 8.0)
    return OutboxSender(database, smtp, clock=clock, **kwargs)


def queue(database: Database, **kwargs: Any) -> OutboundMessage:
    """Queue one mail in its own committed transaction."""
    values: dict[str, Any] = dict(our_address=OUR, from_name="Acme Homes Warranty", kind="ack",
                                  to=HOMEOWNER, subject="[SR-1] We got your request",
                                  text="Thank you, we are on it.")
    values.update(kwargs)
    values.setdefault("dedupe_key", f"test:{values['kind']}:{values['to']}:{values['subject']}")
    with database.session() as session:
        return queue_mail(session, **values)


def row(database: Database, row_id: int) -> OutboundMessage:
    with database.session() as session:
        found = session.get(OutboundMessage, row_id)
        assert found is not None
        return found


def history(database: Database, event: str) -> list[HistoryEvent]:
    with database.session() as session:
        return list(session.scalars(select(HistoryEvent).where(HistoryEvent.event == event)
                                    .order_by(HistoryEvent.id)))


def make_work_order(database: Database) -> tuple[int, int]:
    with database.session() as session:
        sr = ServiceRequest(requester_email=HOMEOWNER, subject="Leak under sink")
        session.add(sr)
        session.flush()
        wo = WorkOrder(service_request_id=sr.id, trade="plumbing",
                       description="Leak under the kitchen sink")
        session.add(wo)
        session.flush()
        return sr.id, wo.id


# --- composing ---------------------------------------------------------------------------

async def test_headers_as_sent(database: Database, sink: SmtpSink, clock: FakeClock) -> None:
    queued = queue(database, kind="vendor_notice", to=f"Ace Plumbing <{VENDOR}>",
                   subject="[WO-7] Leak under the kitchen sink — 12 Elm Street",
                   reply_to="warranty+tok123@acme-homes.example",
                   in_reply_to="<parent.1@mail.example>",
                   references=["root.0@mail.example", "<parent.1@mail.example>"])
    assert queued.status == "queued"
    assert not queued.message_id.startswith("<")
    assert queued.message_id.startswith("vendor_notice.")
    assert queued.message_id.endswith("@acme-homes.example")
    assert queued.to_addr == VENDOR

    assert await make_sender(database, sink, clock).send_due() == 1
    [got] = sink.messages
    assert got.mail_from == OUR
    assert got.rcpt_tos == (VENDOR,)
    assert got.raw == queued.raw  # the stored bytes are what is sent
    msg = got.message
    assert msg["Message-ID"] == f"<{queued.message_id}>"
    assert msg["From"].addresses[0].display_name == "Acme Homes Warranty"
    assert msg["From"].addresses[0].addr_spec == OUR
    assert msg["To"].addresses[0].addr_spec == VENDOR
    assert msg["To"].addresses[0].display_name == "Ace Plumbing"
    assert msg["Reply-To"] == "warranty+tok123@acme-homes.example"
    assert msg["Subject"] == "[WO-7] Leak under the kitchen sink — 12 Elm Street"
    assert msg["In-Reply-To"] == "<parent.1@mail.example>"
    assert msg["References"].split() == ["<root.0@mail.example>", "<parent.1@mail.example>"]
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["X-Auto-Response-Suppress"] == "All"
    assert msg[KIND_HEADER] == "vendor_notice"
    assert msg["Date"].datetime is not None
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content().strip() == "Thank you, we are on it."
    assert got.raw.isascii(), "headers and bodies must be 7-bit safe for any relay"


async def test_in_reply_to_is_added_to_references(database: Database, sink: SmtpSink,
                                                  clock: FakeClock) -> None:
    queue(database, in_reply_to="only-parent@mail.example", auto_submitted="auto-replied")
    await make_sender(database, sink, clock).send_due()
    msg = sink.messages[0].message
    assert msg["In-Reply-To"] == "<only-parent@mail.example>"
    assert msg["References"] == "<only-parent@mail.example>"
    assert msg["Auto-Submitted"] == "auto-replied"


async def test_multipart_with_inline_image_and_attachment(database: Database, sink: SmtpSink,
                                                          clock: FakeClock) -> None:
    queue(database, kind="vendor_notice", to=VENDOR,
          text="See the photo.", html='<p>See the photo:</p><img src="cid:photo1@acme">',
          attachments=[
              OutgoingAttachment("leak.png", "image/png", PNG, inline_cid="photo1@acme"),
              OutgoingAttachment("Übersicht.pdf", "application/pdf", b"%PDF-1.4 fake"),
          ])
    await make_sender(database, sink, clock).send_due()
    msg = sink.messages[0].message
    assert msg.get_content_type() == "multipart/mixed"
    alternative = msg.get_payload()[0]
    assert alternative.get_content_type() == "multipart/alternative"
    plain, related = alternative.get_payload()
    assert plain.get_content_type() == "text/plain"
    assert plain.get_content().strip() == "See the photo."
    assert related.get_content_type() == "multipart/related"
    html_part, image = related.get_payload()
    assert 'src="cid:photo1@acme"' in html_part.get_content()
    assert image["Content-ID"] == "<photo1@acme>"
    assert image.get_content_type() == "image/png"
    assert image.get_content() == PNG
    [attachment] = list(msg.iter_attachments())
    assert attachment.get_filename() == "Übersicht.pdf"
    assert attachment.get_content() == b"%PDF-1.4 fake"
    assert msg.get_body(("html",)) is html_part


def test_extra_headers_cannot_replace_the_message_id(database: Database) -> None:
    with pytest.raises(ValueError, match="Message-ID"), database.session() as session:
        queue_mail(session, our_address=OUR, from_name="W", kind="ack", to=HOMEOWNER,
                   subject="s", text="t", dedupe_key="x", extra_headers={"Message-ID": "<a@b>"})


# --- queueing ----------------------------------------------------------------------------

async def test_dedupe_key_returns_the_first_row(database: Database, sink: SmtpSink,
                                                clock: FakeClock) -> None:
    first = queue(database, dedupe_key="ack:SR-1")
    again = queue(database, dedupe_key="ack:SR-1", subject="something else")
    assert again.id == first.id
    assert again.message_id == first.message_id
    assert again.subject == first.subject
    with database.session() as session:
        a = queue_mail(session, our_address=OUR, from_name="W", kind="ack", to=HOMEOWNER,
                       subject="s", text="t", dedupe_key="ack:SR-2")
        b = queue_mail(session, our_address=OUR, from_name="W", kind="ack", to=HOMEOWNER,
                       subject="s", text="t", dedupe_key="ack:SR-2")
        assert a is b
    with database.session() as session:
        assert len(session.scalars(select(OutboundMessage)).all()) == 2
    assert await make_sender(database, sink, clock).send_due() == 2
    assert len(sink.messages) == 2


@pytest.mark.parametrize("address", [
    OUR, "Warranty@ACME-homes.example", "warranty+tok99@acme-homes.example",
    "MAILER-DAEMON@mx.example.com", "postmaster@example.com", "no-reply@builder.example",
    "noreply@example.com", "do-not-reply@example.com", "not an address",
])
def test_machine_and_own_addresses_are_suppressed(address: str) -> None:
    assert suppression_reason(address, OUR) is not None


@pytest.mark.parametrize("address", [HOMEOWNER, VENDOR, "warranty@other-builder.example",
                                     "noreen@example.com", "postmaster.general@example.com"])
def test_people_are_not_suppressed(address: str) -> None:
    assert suppression_reason(address, OUR) is None


async def test_suppressed_rows_are_visible_and_never_sent(database: Database, sink: SmtpSink,
                                                          clock: FakeClock) -> None:
    sr_id, _ = make_work_order(database)
    own = queue(database, to=f"Acme Warranty <{OUR.upper()}>", service_request_id=sr_id)
    daemon = queue(database, to="mailer-daemon@mx.example.com")
    for suppressed in (own, daemon):
        assert suppressed.status == "suppressed"
        assert suppressed.last_error
    assert "mail loop" in (own.last_error or "")
    assert await make_sender(database, sink, clock).send_due() == 0
    assert sink.messages == []
    assert row(database, own.id).status == "suppressed"
    events = history(database, "email_suppressed")
    assert [e.outbound_message_id for e in events] == [own.id, daemon.id]
    assert events[0].service_request_id == sr_id


async def test_rolled_back_transaction_sends_nothing(database: Database, sink: SmtpSink,
                                                     clock: FakeClock) -> None:
    with pytest.raises(RuntimeError), database.session() as session:
        session.add(ServiceRequest(requester_email=HOMEOWNER))
        queue_mail(session, our_address=OUR, from_name="W", kind="ack", to=HOMEOWNER,
                   subject="s", text="t", dedupe_key="ack:rolled-back")
        raise RuntimeError("the state change failed")
    with database.session() as session:
        assert session.scalars(select(OutboundMessage)).all() == []
    assert await make_sender(database, sink, clock).send_due() == 0
    assert sink.messages == []


# --- sending -----------------------------------------------------------------------------

async def test_sent_once_with_history_event(database: Database, sink: SmtpSink,
                                            clock: FakeClock) -> None:
    sr_id, wo_id = make_work_order(database)
    queued = queue(database, kind="vendor_notice", to=VENDOR, service_request_id=sr_id,
                   work_order_id=wo_id)
    sender = make_sender(database, sink, clock)
    assert await sender.send_due() == 1
    assert await sender.send_due() == 0
    clock.advance(10_000)
    assert await sender.send_due() == 0
    assert len(sink.messages) == 1
    sent = row(database, queued.id)
    assert sent.status == "sent"
    assert sent.sent_at == clock.now - timedelta(seconds=10_000)
    assert sent.claimed_by is None
    [event] = history(database, "email_sent")
    assert event.outbound_message_id == queued.id
    assert event.work_order_id == wo_id and event.service_request_id == sr_id
    assert event.actor == "system"
    assert f"<{queued.message_id}>" in event.detail
    assert VENDOR in event.detail and "vendor_notice" in event.detail
    assert sender.status["pending"] == 0
    assert sender.status["sent"] == 1


async def test_one_connection_per_pass(database: Database, sink: SmtpSink,
                                       clock: FakeClock) -> None:
    for n in range(4):
        queue(database, to=f"owner{n}@example.com")
    assert await make_sender(database, sink, clock, smtp={"connections": 1}).send_due() == 4
    assert len({m.peer for m in sink.messages}) == 1


async def test_several_connections_keep_each_recipients_mail_in_order(
        database: Database, sink: SmtpSink, clock: FakeClock) -> None:
    order = [("a", 1), ("a", 2), ("b", 1), ("a", 3), ("c", 1), ("b", 2), ("d", 1), ("a", 4)]
    for who, n in order:
        queue(database, to=f"{who}@example.com", subject=f"{who} mail {n}")
    sender = make_sender(database, sink, clock, smtp={"connections": 3})
    assert await sender.send_due() == len(order)
    assert len({m.peer for m in sink.messages}) == 3, "three connections at once"
    for who in "abcd":
        got = [m.message["Subject"] for m in sink.received_by(f"{who}@example.com")]
        assert got == [f"{w} mail {n}" for w, n in order if w == who], who
    assert sender.status["pending"] == 0
    assert len(history(database, "email_sent")) == len(order)


async def test_a_recipients_next_mail_waits_until_the_last_is_recorded(
        database: Database, sink: SmtpSink, clock: FakeClock) -> None:
    """The rate cap counts sent mail: with several connections, a recipient's next mail is
    taken only once the last one is recorded as sent, so the cap holds exactly."""
    for n in range(4):
        queue(database, to=HOMEOWNER, subject=f"mail {n}")
    sender = make_sender(database, sink, clock,
                         smtp={"connections": 4, "rate_per_recipient_per_hour": 2})
    assert await sender.send_due() == 2
    assert [m.message["Subject"] for m in sink.received_by(HOMEOWNER)] == ["mail 0", "mail 1"]


async def test_reconnects_when_the_server_closes_the_connection(
        database: Database, clock: FakeClock) -> None:
    with SmtpSink(messages_per_connection=2) as sink:
        ids = [queue(database, to=f"owner{n}@example.com").id for n in range(5)]
        assert await make_sender(database, sink, clock).send_due() == 5
        assert len({m.peer for m in sink.messages}) == 3
        assert all(row(database, i).attempts == 1 for i in ids)


async def test_smtp_down_for_a_while(database: Database, sink: SmtpSink,
                                     clock: FakeClock) -> None:
    sender = make_sender(database, sink, clock)
    sink.stop()
    ids = [queue(database, to=f"owner{n}@example.com").id for n in range(3)]
    assert await sender.send_due() == 0
    for i in ids:
        waiting = row(database, i)
        assert waiting.status == "queued"
        assert waiting.attempts == 1
        assert waiting.next_attempt_at is not None and waiting.next_attempt_at > clock.now
        assert "cannot reach SMTP server" in (waiting.last_error or "")
        assert waiting.claimed_by is None
    assert "cannot reach" in sender.status["last_error"]
    assert sender.status["pending"] == 3
    # Not due yet: nothing is tried, nothing counted.
    assert await sender.send_due() == 0
    assert [row(database, i).attempts for i in ids] == [1, 1, 1]

    sink.start()
    clock.advance(60)
    assert await sender.send_due() == 3
    clock.advance(3600)
    assert await sender.send_due() == 0
    received = [m.message_id for m in sink.messages]
    assert sorted(received) == sorted(row(database, i).message_id for i in ids)
    assert all(row(database, i).status == "sent" for i in ids)


async def test_temporary_refusal_is_retried(database: Database, sink: SmtpSink,
                                            clock: FakeClock) -> None:
    sink.reject(VENDOR, "451 4.3.0 Mailbox temporarily unavailable", times=1)
    queued = queue(database, to=VENDOR)
    other = queue(database, to=HOMEOWNER)
    sender = make_sender(database, sink, clock)
    assert await sender.send_due() == 1  # the other row still goes out on the same pass
    waiting = row(database, queued.id)
    assert waiting.status == "queued" and waiting.attempts == 1
    assert "451" in (waiting.last_error or "")
    assert row(database, other.id).status == "sent"
    clock.advance(60)
    assert await sender.send_due() == 1
    assert row(database, queued.id).status == "sent"
    assert len(sink.received_by(VENDOR)) == 1


async def test_permanent_refusal_fails_with_history(database: Database, sink: SmtpSink,
                                                    clock: FakeClock) -> None:
    sr_id, wo_id = make_work_order(database)
    sink.reject(VENDOR, "550 5.1.1 No such user here")
    queued = queue(database, to=VENDOR, service_request_id=sr_id, work_order_id=wo_id)
    sender = make_sender(database, sink, clock)
    assert await sender.send_due() == 0
    failed = row(database, queued.id)
    assert failed.status == "failed"
    assert "550" in (failed.last_error or "") and "No such user here" in (failed.last_error or "")
    [event] = history(database, "email_failed")
    assert event.work_order_id == wo_id and event.outbound_message_id == queued.id
    assert "No such user here" in event.detail
    clock.advance(10_000)
    sink.accept(VENDOR)
    assert await sender.send_due() == 0
    assert sink.messages == []


async def test_gives_up_after_max_attempts(database: Database, sink: SmtpSink,
                                           clock: FakeClock) -> None:
    sink.reject(VENDOR, "452 4.2.2 Mailbox full")
    queued = queue(database, to=VENDOR)
    sender = make_sender(database, sink, clock, max_attempts=3)
    for _ in range(3):
        assert row(database, queued.id).status == "queued"
        await sender.send_due()
        clock.advance(60)
    final = row(database, queued.id)
    assert final.status == "failed" and final.attempts == 3
    assert "Mailbox full" in (final.last_error or "")
    assert len(history(database, "email_failed")) == 1


async def test_a_long_outage_never_fails_mail(database: Database, sink: SmtpSink,
                                             clock: FakeClock) -> None:
    queued = queue(database, to=VENDOR)
    sender = make_sender(database, sink, clock, max_attempts=3)
    sink.stop()
    for _ in range(6):
        await sender.send_due()
        clock.advance(10_000)
    waiting = row(database, queued.id)
    assert waiting.status == "queued" and waiting.attempts == 6
    sink.start()
    assert await sender.send_due() == 1
    assert row(database, queued.id).status == "sent" and len(sink.messages) == 1


def test_backoff_grows_and_is_capped(database: Database, sink: SmtpSink,
                                     clock: FakeClock) -> None:
    sender = make_sender(database, sink, clock, backoff_base=10.0, backoff_max=100.0)
    for attempts, full in [(1, 10), (2, 20), (3, 40), (4, 80), (5, 100), (12, 100)]:
        delay = sender.backoff(attempts)
        assert full / 2 <= delay <= full


async def test_rate_cap_defers_instead_of_failing(database: Database, sink: SmtpSink,
                                                  clock: FakeClock) -> None:
    ids = [queue(database, to=HOMEOWNER, subject=f"mail {n}").id for n in range(3)]
    other = queue(database, to=VENDOR)
    sender = make_sender(database, sink, clock, smtp={"rate_per_recipient_per_hour": 2})
    assert await sender.send_due() == 3
    held = row(database, ids[2])
    assert held.status == "queued"
    assert held.attempts == 0
    assert "rate cap" in (held.last_error or "")
    assert held.next_attempt_at is not None and held.next_attempt_at > clock.now
    assert row(database, other.id).status == "sent"
    clock.advance(600)
    assert await sender.send_due() == 0
    clock.advance(3600)
    assert await sender.send_due() == 1
    assert len(sink.received_by(HOMEOWNER)) == 3


async def test_staff_addresses_are_exempt_from_the_rate_cap(
        database: Database, sink: SmtpSink, clock: FakeClock) -> None:
    for n in range(3):
        queue(database, to="pat@acme-homes.example", subject=f"digest {n}")
    sender = make_sender(database, sink, clock, smtp={"rate_per_recipient_per_hour": 2},
                         rate_exempt=["Pat@acme-homes.example"])
    assert await sender.send_due() == 3


async def test_auth_and_starttls(database: Database, clock: FakeClock,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "s3cret")
    with SmtpSink(users={"acme": "s3cret"}, tls="starttls") as sink:
        queued = queue(database)
        sender = make_sender(database, sink, clock, tls_context=sink.client_tls_context(),
                             smtp={"security": "starttls", "user": "acme",
                                   "password_env": "TEST_SMTP_PASSWORD"})
        assert await sender.send_due() == 1
        assert sink.auth_attempts == [("acme", True)]
        assert row(database, queued.id).status == "sent"


async def test_implicit_tls(database: Database, clock: FakeClock) -> None:
    with SmtpSink(tls="implicit") as sink:
        queue(database)
        sender = make_sender(database, sink, clock, tls_context=sink.client_tls_context(),
                             smtp={"security": "tls"})
        assert await sender.send_due() == 1


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_refused_login_keeps_the_mail(database: Database, clock: FakeClock,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "wrong")
    with SmtpSink(users={"acme": "s3cret"}) as sink:
        queued = queue(database)
        sender = make_sender(database, sink, clock,
                             smtp={"user": "acme", "password_env": "TEST_SMTP_PASSWORD"})
        assert await sender.send_due() == 0
        waiting = row(database, queued.id)
        assert waiting.status == "queued"
        assert "535" in (waiting.last_error or "")
        assert "TEST_SMTP_PASSWORD" in (waiting.last_error or "")
        assert sink.messages == []


# --- several senders ---------------------------------------------------------------------

async def test_two_senders_send_each_row_once(database: Database, sink: SmtpSink,
                                              clock: FakeClock) -> None:
    ids = [queue(database, to=f"owner{n}@example.com").id for n in range(30)]
    a = make_sender(database, sink, clock, worker_id="a", batch_size=4)
    b = make_sender(database, sink, clock, worker_id="b", batch_size=4)
    total = 0
    for _ in range(30):
        sent_a, sent_b = await asyncio.gather(a.send_due(), b.send_due())
        total += sent_a + sent_b
        if sent_a == sent_b == 0:
            break
    assert total == 30
    received = sorted(m.message_id for m in sink.messages)
    assert received == sorted(row(database, i).message_id for i in ids)
    assert len(history(database, "email_sent")) == 30


async def test_rows_claimed_by_a_live_worker_are_left_alone(
        database: Database, sink: SmtpSink, clock: FakeClock) -> None:
    queued = queue(database)
    with database.session() as session:
        claimed = session.get(OutboundMessage, queued.id)
        assert claimed is not None
        claimed.claimed_by = "crashed-worker"
        claimed.claimed_until = clock.now + timedelta(seconds=120)
    sender = make_sender(database, sink, clock)
    assert await sender.send_due() == 0
    clock.advance(121)  # the lease ran out: the worker died between claim and send
    assert await sender.send_due() == 1
    assert len(sink.messages) == 1


async def test_a_row_taken_over_mid_pass_is_not_sent_again(
        database: Database, sink: SmtpSink, clock: FakeClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    first = queue(database, to="owner1@example.com")
    second = queue(database, to="owner2@example.com")
    sender = make_sender(database, sink, clock)
    claim = sender._claim

    def claim_then_lose_the_second() -> Any:
        batch = claim()
        with database.session() as session:  # another worker took it over after a lease ran out
            taken = session.get(OutboundMessage, second.id)
            assert taken is not None
            taken.claimed_by = "other-worker"
        return batch

    monkeypatch.setattr(sender, "_claim", claim_then_lose_the_second)
    assert await sender.send_due() == 1
    assert [m.message_id for m in sink.messages] == [first.message_id]
    assert row(database, second.id).status == "queued"
    assert row(database, second.id).attempts == 0


async def test_locked_rows_are_skipped_on_postgresql(database: Database, sink: SmtpSink,
                                                     clock: FakeClock) -> None:
    if not database.is_postgresql:
        pytest.skip("SKIP LOCKED is PostgreSQL's; SQLite serialises writers instead")
    locked = queue(database, to="owner1@example.com")
    free = queue(database, to="owner2@example.com")
    with database.sessions() as other, other.begin():
        other.get(OutboundMessage, locked.id, with_for_update=True)
        sender = make_sender(database, sink, clock)
        assert await asyncio.wait_for(sender.send_due(), 30) == 1
    assert [m.message_id for m in sink.messages] == [free.message_id]
    assert await sender.send_due() == 1


# --- the loop ----------------------------------------------------------------------------

async def test_run_sends_on_wake_and_stops(database: Database, sink: SmtpSink,
                                           clock: FakeClock) -> None:
    sender = make_sender(database, sink, clock, idle_seconds=3600)
    task = asyncio.create_task(sender.run())
    try:
        queued = queue(database)
        sender.wake()
        for _ in range(500):
            if row(database, queued.id).status == "sent":
                break
            await asyncio.sleep(0.01)
        assert row(database, queued.id).status == "sent"
        assert sender.status["running"] is True
    finally:
        sender.stop()
        await asyncio.wait_for(task, 30)
    assert sender.status["running"] is False


async def test_run_keeps_its_connection_while_mail_keeps_coming(
        database: Database, sink: SmtpSink, clock: FakeClock) -> None:
    sender = make_sender(database, sink, clock, idle_seconds=0.5, smtp={"connections": 1})

    async def send(to: str) -> None:
        queued = queue(database, to=to)
        sender.wake()
        for _ in range(500):
            if row(database, queued.id).status == "sent":
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"mail to {to} was not sent")

    task = asyncio.create_task(sender.run())
    try:
        for n in range(3):  # three passes, a moment apart
            await send(f"owner{n}@example.com")
        assert len({m.peer for m in sink.messages}) == 1, "one connection for all three"
        await asyncio.sleep(1.5)  # idle for longer than idle_seconds: it is closed
        await send("late@example.com")
        late = sink.received_by("late@example.com")[0]
        assert late.peer != sink.messages[0].peer, "a new connection after the idle time"
    finally:
        sender.stop()
        await asyncio.wait_for(task, 30)


async def test_run_survives_smtp_trouble(database: Database, sink: SmtpSink,
                                         clock: FakeClock) -> None:
    sink.stop()
    sender = make_sender(database, sink, clock, idle_seconds=3600)
    queued = queue(database)
    task = asyncio.create_task(sender.run())
    try:
        for _ in range(500):
            if row(database, queued.id).attempts:
                break
            await asyncio.sleep(0.01)
        assert not task.done()
        assert row(database, queued.id).status == "queued"
    finally:
        sender.stop()
        await asyncio.wait_for(task, 30)


# --- the sink as a process ---------------------------------------------------------------

async def test_sink_process_writes_a_maildir(database: Database, clock: FakeClock,
                                             tmp_path: Path) -> None:
    port = free_port()
    script = Path(__file__).resolve().parent / "support" / "smtp_sink.py"
    proc = subprocess.Popen([sys.executable, str(script), "--port", str(port),
                             "--maildir", str(tmp_path / "mail")],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == f"READY {port}"
        queued = queue(database)
        smtp = SmtpConfig(host="127.0.0.1", port=port, security="none", from_name="W")
        assert await OutboxSender(database, smtp, clock=clock).send_due() == 1
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(30) == 0
    files = list((tmp_path / "mail" / "new").iterdir())
    assert [f.read_bytes() for f in files] == [queued.raw]
    envelopes = (tmp_path / "mail" / "envelopes.jsonl").read_text().splitlines()
    assert len(envelopes) == 1 and queued.message_id in envelopes[0]


async def test_claims_of_a_dead_sender_on_this_host_are_released_at_start(
        database: Database, sink: SmtpSink, clock: FakeClock) -> None:
    import socket
    import subprocess

    queued = queue(database, to=VENDOR)
    gone = subprocess.Popen(["true"])
    gone.wait()
    host = socket.gethostname()[:60]
    with database.session() as s:
        stored = s.get(OutboundMessage, queued.id)
        assert stored is not None
        stored.claimed_by = f"{host}:{gone.pid}:abc123"
        stored.claimed_until = clock() + timedelta(hours=1)
    other = queue(database, to=HOMEOWNER, subject="other host")
    with database.session() as s:
        foreign = s.get(OutboundMessage, other.id)
        assert foreign is not None
        foreign.claimed_by = "elsewhere.example:1:abc"
        foreign.claimed_until = clock() + timedelta(hours=1)
    sender = make_sender(database, sink, clock)
    assert sender.release_dead_claims() == 1
    assert await sender.send_due() == 1
    assert [m.rcpt_tos for m in sink.messages] == [(VENDOR,)]


async def test_composed_bytes_read_back_as_written(database: Database, sink: SmtpSink,
                                                   clock: FakeClock) -> None:
    """Long and non-ASCII headers are folded and encoded, long lines quoted-printable, and a
    body that contains what looks like a boundary does not break the multipart."""
    subject = ("[SR-12] Approval digest #40: 3 drafts to approve - water is coming in under "
               "the back door every time it rains hard")
    text = ("--===============0000000000000000001==\n" + "A line that is much longer than "
            "seventy-eight characters, so that it cannot be sent as it is = or it breaks.\n")
    queue(database, to='"Müller, Jürgen" <jm@example.com>', subject=subject, text=text,
          html="<p>Grüße</p>", from_name="Acme Homes (Warranty)",
          references=[f"ref.{n}.{'x' * 20}@mail.example" for n in range(6)])
    await make_sender(database, sink, clock).send_due()
    [got] = sink.messages
    assert got.raw.isascii()
    assert all(len(line) <= 78 for line in got.raw.split(b"\r\n")), "folded to 78 columns"
    msg = got.message
    assert msg["Subject"] == subject
    assert msg["To"].addresses[0].display_name == "Müller, Jürgen"
    assert msg["From"].addresses[0].display_name == "Acme Homes (Warranty)"
    assert len(msg["References"].split()) == 6
    assert msg.get_body(("plain",)).get_content().replace("\r\n", "\n") == text
    assert "Grüße" in msg.get_body(("html",)).get_content()
    assert not msg.defects and not any(part.defects for part in msg.walk())
