"""Who may give commands: the Message-ID fallback is bound to its recipient and its age."""

from __future__ import annotations

from datetime import timedelta

from warrantyd.daemon.config import Config, parse_config
from warrantyd.daemon.staff_auth import authorize_staff_reply
from warrantyd.parsers.classify import STAFF_REPLY, Classification, ThreadRef
from warrantyd.parsers.message import parse_message
from warrantyd.storage.models import utcnow

PAT, LEE = "pat@acme-homes.example", "lee@acme-homes.example"


def config(**staff: object) -> Config:
    return parse_config({
        "company": {"name": "Acme", "timezone": "UTC"},
        "mailbox": {"address": "warranty@acme-homes.example"},
        "staff": {"addresses": [PAT, LEE], **staff},
        "database": {"url": "sqlite:///:memory:"},
    }, partial=True)


def check(sender: str, thread: ThreadRef, cfg: Config | None = None) -> tuple[bool, str]:
    msg = parse_message(f"From: {sender}\nTo: warranty@acme-homes.example\nSubject: Re: d\n\n"
                        "accept 1\n".encode())
    return authorize_staff_reply(msg, Classification(STAFF_REPLY, "test", thread=thread),
                                 cfg or config())


def by_message_id(to: str, age_days: float) -> ThreadRef:
    return ThreadRef(kind="digest", evidence="message-id", digest_id=1, token_address=to,
                     issued_at=utcnow() - timedelta(days=age_days))


def test_message_id_of_ones_own_recent_digest_is_enough() -> None:
    ok, why = check(PAT, by_message_id(PAT, 1))
    assert ok, why


def test_message_id_of_another_staff_members_digest_is_refused() -> None:
    ok, why = check(LEE, by_message_id(PAT, 1))
    assert not ok and "was sent to pat@" in why


def test_message_id_of_an_old_digest_is_refused_like_an_expired_token() -> None:
    ok, why = check(PAT, by_message_id(PAT, 30), config(token_days=14))
    assert not ok and "older than 14 days" in why


def test_token_of_another_staff_member_is_refused() -> None:
    thread = ThreadRef(kind="digest", evidence="token", token="t", token_address=PAT,
                       digest_id=1)
    ok, why = check(LEE, thread)
    assert not ok and "issued to pat@" in why
