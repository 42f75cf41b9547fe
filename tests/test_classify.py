"""Classification order and threading evidence, with an in-memory thread lookup."""

from __future__ import annotations

from dataclasses import dataclass, field

from warrantyd.parsers.classify import (
    AUTO_REPLY,
    BOUNCE,
    HOMEOWNER_REPLY,
    NEW_REQUEST,
    OWN_MAIL,
    STAFF_MAIL,
    STAFF_REPLY,
    VENDOR_REPLY,
    ThreadRef,
    classify,
    plus_tokens,
    strip_subject_prefix,
)
from warrantyd.parsers.message import parse_message

US = "warranty@acme-homes.example"


@dataclass
class FakeLookup:
    tokens: dict[str, ThreadRef] = field(default_factory=dict)
    message_ids: dict[str, ThreadRef] = field(default_factory=dict)
    participants: dict[tuple[str, int], set[str]] = field(default_factory=dict)
    staff: set[str] = field(default_factory=lambda: {"pat@acme-homes.example"})
    vendors: set[str] = field(default_factory=lambda: {"dispatch@plumber.example.net"})

    def by_token(self, token: str) -> ThreadRef | None:
        return self.tokens.get(token)

    def by_message_id(self, message_id: str) -> ThreadRef | None:
        return self.message_ids.get(message_id)

    def by_subject_tag(self, kind: str, number: int, sender: str) -> ThreadRef | None:
        if sender in self.participants.get((kind, number), set()):
            return ThreadRef(kind=kind.lower(), evidence="subject", service_request_id=number)
        return None

    def is_staff(self, address: str) -> bool:
        return address in self.staff

    def is_vendor(self, address: str) -> bool:
        return address in self.vendors


def mail(headers: str, body: str = "Hello\n") -> bytes:
    return (headers.strip() + "\nMessage-ID: <m1@example.com>\n\n" + body).encode()


def test_new_mail_from_a_homeowner_is_a_new_request() -> None:
    msg = parse_message(mail(f"From: Dana <dana@example.com>\nTo: {US}\nSubject: Leak"))
    verdict = classify(msg, FakeLookup(), US)
    assert verdict.kind == NEW_REQUEST and verdict.reason


def test_our_own_mail_is_recognised_first() -> None:
    msg = parse_message(mail(f"From: {US}\nTo: {US}\nSubject: [SR-1] hi\nX-Warrantyd-Kind: ack"))
    assert classify(msg, FakeLookup(), US).kind == OWN_MAIL


def test_token_threads_a_staff_reply() -> None:
    ref = ThreadRef(kind="digest", evidence="token", token="abc", digest_id=3,
                    token_address="pat@acme-homes.example")
    msg = parse_message(mail("From: Pat <pat@acme-homes.example>\n"
                             "To: warranty+abc@acme-homes.example\nSubject: Re: digest"))
    verdict = classify(msg, FakeLookup(tokens={"abc": ref}), US)
    assert verdict.kind == STAFF_REPLY and verdict.thread == ref


def test_message_id_threads_a_vendor_reply() -> None:
    ref = ThreadRef(kind="wo", evidence="message-id", work_order_id=9)
    msg = parse_message(mail(f"From: dispatch@plumber.example.net\nTo: {US}\n"
                             "Subject: Re: job\nIn-Reply-To: <wo-9.x@acme-homes.example>"))
    verdict = classify(msg, FakeLookup(message_ids={"wo-9.x@acme-homes.example": ref}), US)
    assert verdict.kind == VENDOR_REPLY and verdict.thread == ref


def test_subject_tag_only_counts_for_a_participant() -> None:
    lookup = FakeLookup(participants={("SR", 4): {"dana@example.com"}})
    owner = parse_message(mail(f"From: dana@example.com\nTo: {US}\nSubject: Re: [SR-4] leak"))
    assert classify(owner, lookup, US).kind == HOMEOWNER_REPLY
    stranger = parse_message(mail(f"From: eve@example.org\nTo: {US}\nSubject: [SR-4] leak"))
    assert classify(stranger, lookup, US).kind == NEW_REQUEST


def test_auto_reply_on_our_thread_is_automated_not_a_reply() -> None:
    ref = ThreadRef(kind="wo", evidence="message-id", work_order_id=9)
    msg = parse_message(mail(
        f"From: dispatch@plumber.example.net\nTo: {US}\nSubject: Out of Office: [WO-9] job\n"
        "Auto-Submitted: auto-replied\nIn-Reply-To: <wo-9.x@acme-homes.example>"))
    verdict = classify(msg, FakeLookup(message_ids={"wo-9.x@acme-homes.example": ref}), US)
    assert verdict.kind == AUTO_REPLY and verdict.thread == ref and verdict.is_automated


def test_bounce_comes_before_auto_reply() -> None:
    msg = parse_message(mail(
        f"From: MAILER-DAEMON@mx.example.net\nTo: {US}\nSubject: Undelivered Mail Returned "
        "to Sender\nAuto-Submitted: auto-replied\nContent-Type: multipart/report; "
        'report-type=delivery-status; boundary="b"',
        "--b\nContent-Type: text/plain\n\nfailed\n--b\nContent-Type: message/delivery-status\n\n"
        "Reporting-MTA: dns; mx.example.net\n\nFinal-Recipient: rfc822; x@example.org\n"
        "Action: failed\nStatus: 5.1.1\n--b--\n"))
    assert classify(msg, FakeLookup(), US).kind == BOUNCE


def test_staff_writing_fresh_mail_is_staff_mail() -> None:
    msg = parse_message(mail(f"From: pat@acme-homes.example\nTo: {US}\nSubject: Fwd: leak"))
    assert classify(msg, FakeLookup(), US).kind == STAFF_MAIL


def test_plus_tokens_only_for_our_address() -> None:
    found = plus_tokens(("warranty+abc@acme-homes.example", "warranty+x@other.example",
                         "sales+abc@acme-homes.example"), US)
    assert found == ["abc"]


def test_strip_subject_prefix() -> None:
    assert strip_subject_prefix("RE: Fwd: AW: Leak in kitchen") == "Leak in kitchen"
    assert strip_subject_prefix("Re[2]: hi") == "hi"
    assert strip_subject_prefix("Recall notice") == "Recall notice"


def test_mail_from_another_warrantyd_is_never_a_request() -> None:
    msg = parse_message(mail("From: warranty@other-builder.example\nTo: " + US +
                             "\nSubject: [SR-4] We received your request\nX-Warrantyd-Kind: ack"))
    verdict = classify(msg, FakeLookup(), US)
    assert verdict.kind == OWN_MAIL and "another warrantyd" in verdict.reason
