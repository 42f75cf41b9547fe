"""Divisions: each mailbox's mail is filed, drafted and answered in its own division.

The fast tests drive the processor, the drafter's inputs, threading and /healthz on both
databases; the slow ones run the real daemon against one Dovecot holding two division
mailboxes (two users) and an SMTP sink.
"""

from __future__ import annotations

import json
import re
import tomllib
import urllib.error
import urllib.request
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from config_builder import ELM_STREET, NORA, NORTH, PAT, US, build_config
from sqlalchemy import select
from vendor_jobs import FakeDrafter

from warrantyd.daemon.config import Config
from warrantyd.daemon.drafters.llm import build_static_prompt
from warrantyd.daemon.drafting import (
    draft_request_for,
    find_home,
    locate_home,
    vendor_infos,
)
from warrantyd.daemon.explain import explain_mail
from warrantyd.daemon.health import take_snapshot
from warrantyd.daemon.intake import mailbox_key
from warrantyd.daemon.process import Processor
from warrantyd.daemon.threads import DbThreadLookup
from warrantyd.daemon.tokens import installation_secret
from warrantyd.parsers.classify import NEW_REQUEST, Classification
from warrantyd.parsers.message import parse_message
from warrantyd.parsers.trim import extract_reply
from warrantyd.storage.db import Database
from warrantyd.storage.inbound import store_inbound
from warrantyd.storage.models import (
    Feedback,
    HistoryEvent,
    Home,
    Homeowner,
    InboundMessage,
    MailboxState,
    OutboundMessage,
    ServiceRequest,
    Vendor,
    utcnow,
)

pytest_plugins = ("e2e_fixtures",)

NICK = "nick@example.com"
MAIN_VENDOR = "ace@plumb.example.net"
NORTH_VENDOR = "dispatch@north-plumbing.example.net"
NORTH_FROM_NAME = "Acme Homes North Warranty"


# --- fast: the processor and what the drafter sees ----------------------------------------

@pytest.fixture
def config(tmp_path: Path, database: Database) -> Config:
    """Main (warranty@, staff Pat, vendor Ace, Dana's home) and north (north@, staff Nora).

    North's vendor and home are written as rows here, so these tests do not depend on how
    the config's division records reach the database.
    """
    cfg = build_config(
        tmp_path, database, homes=[ELM_STREET],
        vendors=[{"name": "Ace Plumbing", "email": MAIN_VENDOR, "trades": ["plumbing"]}],
        divisions=[{"name": "north", "from_name": NORTH_FROM_NAME,
                    "mailbox": {"address": NORTH, "imap_user": "north", "max_attempts": 1},
                    "staff": {"addresses": [NORA]}}])
    with database.session() as s:
        if s.scalars(select(Vendor).where(Vendor.division == "north")).first() is None:
            s.add(Vendor(division="north", name="North Plumbing", email=NORTH_VENDOR,
                         trades=["plumbing"], communities=[], aliases=[], active=True))
            s.add(Vendor(division="north", name="Retired Rooter", email="old@rooter.example",
                         trades=["plumbing"], communities=[], aliases=[], active=False))
            home = Home(division="north", address="77 Spruce Ct", community="Pines",
                        closing_date=date(2025, 6, 13))
            s.add(home)
            s.flush()
            s.add(Homeowner(home_id=home.id, name="Nick North", email=NICK))
    return cfg


def _mail(sender: str, body: str, *, to: str = US, subject: str = "Problems") -> bytes:
    return (f"From: Someone <{sender}>\nTo: {to}\nSubject: {subject}\n"
            f"Message-ID: <{abs(hash(body + sender + to))}@example.com>\n"
            f"Content-Type: text/plain; charset=utf-8\n\n{body}\n").encode()


def _store(database: Database, config: Config, raw: bytes, uid: int,
           division: str = "main") -> int:
    with database.session() as s:
        row, _ = store_inbound(s, mailbox=mailbox_key(config.division(division).mailbox),
                               uidvalidity=1, uid=uid, raw=raw)
        return row.id


def test_a_row_belongs_to_the_division_of_its_mailbox(config: Config) -> None:
    north = config.division("north")
    assert config.division_of_inbound(mailbox_key(north.mailbox)).name == "north"
    assert config.division_of_inbound(mailbox_key(config.mailbox)).name == "main"
    assert config.division_of_inbound(f"{NORTH}/Renamed").name == "north", "known by address"
    assert config.division_of_inbound("").name == "main", "a file given on the command line"
    assert config.division_of_inbound("gone@acme-homes.example/INBOX").name == "main"


def test_a_home_is_looked_up_in_the_arrival_division_first(
        database: Database, config: Config) -> None:
    with database.session() as s:
        match = locate_home(s, NICK, "north", configured=config.division_names)
        assert (match.division, match.routed_from) == ("north", None)
        assert match.home is not None and match.home.address == "77 Spruce Ct"
        # Nick writes to the main mailbox: his only home is north's, so north it is.
        match = locate_home(s, NICK, "main", configured=config.division_names)
        assert (match.division, match.routed_from) == ("north", "main")
        assert match.home is not None and match.home.address == "77 Spruce Ct"
        assert find_home(s, NICK, "main") == (None, None)
        # A stranger stays where the mail came.
        match = locate_home(s, "stranger@example.org", "north", configured=config.division_names)
        assert (match.division, match.home, match.routed_from) == ("north", None, None)


def test_a_homeowner_of_two_other_divisions_is_not_routed(
        database: Database, config: Config) -> None:
    with database.session() as s:
        for division in ("north", "south"):
            home = Home(division=division, address=f"9 {division} Way", community="")
            s.add(home)
            s.flush()
            s.add(Homeowner(home_id=home.id, name="Two Homes", email="two@example.com"))
        s.flush()
        match = locate_home(s, "two@example.com", "main",
                            configured=("main", "north", "south"))
        assert (match.division, match.home, match.routed_from) == ("main", None, None)
        # South removed from the config: its homes no longer route anything there.
        match = locate_home(s, "two@example.com", "main", configured=config.division_names)
        assert (match.division, match.routed_from) == ("north", "main")
        s.rollback()


def test_the_drafter_sees_only_the_divisions_active_vendors(
        database: Database, config: Config) -> None:
    with database.session() as s:
        assert [v.email for v in vendor_infos(s, "north")] == [NORTH_VENDOR]
        assert [v.email for v in vendor_infos(s)] == [MAIN_VENDOR]


def test_the_cached_prompt_prefix_is_the_same_for_every_mail_of_one_division(
        database: Database, config: Config) -> None:
    def prefix(sender: str, body: str, division: str) -> str:
        msg = parse_message(_mail(sender, body))
        request = draft_request_for(s, config, msg, extract_reply(msg),
                                    Classification(NEW_REQUEST, "test"), division)
        return build_static_prompt(request)

    with database.session() as s:
        one = prefix("a@example.org", "The faucet drips day and night", "north")
        two = prefix("b@example.org", "A crack runs across the garage floor", "north")
        main = prefix("c@example.org", "The faucet drips day and night", "main")
    assert one == two, "requests of one division share the cached prefix byte for byte"
    assert "North Plumbing" in one and "Ace Plumbing" not in one
    assert "Ace Plumbing" in main and "North Plumbing" not in main


async def test_mail_to_a_division_mailbox_is_filed_and_answered_there(
        database: Database, config: Config) -> None:
    drafter = FakeDrafter(suggest=NORTH_VENDOR)
    processor = Processor(config, database, drafter)
    _store(database, config, _mail("stranger@example.org", "The kitchen sink is leaking badly",
                                   to=NORTH), 1, "north")
    await processor.process_pending()
    assert [v.email for v in drafter.requests[0].vendors] == [NORTH_VENDOR]
    with database.session() as s:
        sr = s.scalars(select(ServiceRequest)).one()
        assert sr.division == "north"
        [wo] = sr.work_orders
        assert wo.suggested_vendor is not None and wo.suggested_vendor.email == NORTH_VENDOR
        ack = s.scalars(select(OutboundMessage).where(OutboundMessage.kind == "ack")).one()
        assert ack.from_addr == NORTH, "the envelope sender: bounces come back to north"
        head = ack.raw.split(b"\r\n\r\n", 1)[0].decode()
        assert re.search(rf"^From: {NORTH_FROM_NAME} <{NORTH}>", head, re.M), head
        assert re.search(r"^Reply-To: north\+\w+@acme-homes\.example", head, re.M), head


async def test_one_mail_to_two_division_mailboxes_acts_once(
        database: Database, config: Config) -> None:
    """To: north, Cc: main — each server copy has its own Delivered-To (other bytes, one
    Message-ID): one request, one ack, one digest; the other copy is filed as a duplicate."""
    body = (f"From: Stan <stranger@example.org>\nTo: {NORTH}\nCc: {US}\n"
            f"Subject: Furnace out\nMessage-ID: <furnace-1@example.org>\n"
            f"Content-Type: text/plain\n\nThe furnace does not start at all.\n")
    ids = [_store(database, config, f"Delivered-To: {to}\n{body}".encode(), 1, division)
           for to, division in ((NORTH, "north"), (US, "main"))]
    await Processor(config, database, FakeDrafter()).process_pending()
    with database.session() as s:
        srs = s.scalars(select(ServiceRequest)).all()
        assert [sr.division for sr in srs] == ["north"]
        kinds = [m.kind for m in s.scalars(select(OutboundMessage))]
        assert kinds.count("ack") == 1 and kinds.count("digest") == 1, kinds
        second = s.get(InboundMessage, ids[1])
        assert second is not None and second.status == "ignored"
        assert second.classification == "duplicate" and f"inbound {ids[0]}" in second.reason


async def test_a_repeat_in_the_same_mailbox_is_left_to_its_own_handling(
        database: Database, config: Config) -> None:
    """Only a copy in another mailbox is a duplicate: the same Message-ID twice in one
    mailbox still reaches the handlers (which answer a repeated staff reply themselves)."""
    raw = _mail("stranger@example.org", "The kitchen sink is leaking badly")
    _store(database, config, raw, 1)
    _store(database, config, b"X-Resent: yes\n" + raw, 2)
    await Processor(config, database, FakeDrafter()).process_pending()
    with database.session() as s:
        assert "duplicate" not in {r.classification for r in s.scalars(select(InboundMessage))}


async def test_another_divisions_vendor_is_never_suggested(
        database: Database, config: Config) -> None:
    """Learning is shared: a past decision may name main's vendor, but a north draft only
    ever points at one of north's."""
    with database.session() as s:
        s.add(Feedback(decision="accept", source_text="sink leaking", draft_trade="plumbing",
                       draft_description="sink", final_trade="plumbing",
                       final_description="sink", vendor_email=MAIN_VENDOR))
    processor = Processor(config, database, FakeDrafter(suggest=MAIN_VENDOR))
    _store(database, config, _mail("stranger@example.org", "The kitchen sink is leaking badly",
                                   to=NORTH), 1, "north")
    await processor.process_pending()
    with database.session() as s:
        [wo] = s.scalars(select(ServiceRequest)).one().work_orders
        assert wo.suggested_vendor_id is None


async def test_a_north_homeowner_writing_to_the_main_mailbox_is_routed_to_north(
        database: Database, config: Config) -> None:
    drafter = FakeDrafter()
    processor = Processor(config, database, drafter)
    _store(database, config, _mail(NICK, "We smell gas near the water heater!!"), 1)
    await processor.process_pending()
    assert drafter.requests[0].property_address == "77 Spruce Ct"
    assert [v.email for v in drafter.requests[0].vendors] == [NORTH_VENDOR]
    with database.session() as s:
        sr = s.scalars(select(ServiceRequest)).one()
        assert sr.division == "north" and sr.home is not None
        events = {e.event: e.detail for e in s.scalars(
            select(HistoryEvent).where(HistoryEvent.service_request_id == sr.id))}
        assert events["routed_to_division"].startswith("routed to division north: the home "
                                                       "is there")
        mails = sorted((m.kind, m.to_addr, m.from_addr) for m in s.scalars(
            select(OutboundMessage).where(OutboundMessage.kind.in_(("ack", "alert")))))
    assert mails == [("ack", NICK, NORTH), ("alert", NORA, NORTH)], \
        "the emergency alert goes to north's staff only, from north"


async def test_main_mail_stays_in_main(database: Database, config: Config) -> None:
    processor = Processor(config, database, FakeDrafter(suggest=NORTH_VENDOR))
    _store(database, config, _mail("dana@example.com", "We smell gas near the water heater!!"), 1)
    await processor.process_pending()
    with database.session() as s:
        sr = s.scalars(select(ServiceRequest)).one()
        assert sr.division == "main" and sr.home is not None and sr.home.address == "1 Elm St"
        assert sr.work_orders[0].suggested_vendor_id is None, "north's vendor is not main's"
        mails = sorted((m.kind, m.to_addr, m.from_addr) for m in s.scalars(
            select(OutboundMessage).where(OutboundMessage.kind.in_(("ack", "alert")))))
    assert mails == [("ack", "dana@example.com", US), ("alert", PAT, US)]


async def test_quarantine_counts_the_attempts_of_the_mailbox_it_came_from(
        database: Database, config: Config) -> None:
    clock = [utcnow()]
    processor = Processor(config, database, FakeDrafter(), clock=lambda: clock[0])
    north_id = _store(database, config, _mail("x@example.org", "boom boom boom boom boom",
                                              to=NORTH), 1, "north")
    main_id = _store(database, config, _mail("y@example.org", "boom boom boom boom boom boom"),
                     2)
    await processor.process_pending()
    with database.session() as s:
        assert s.get(InboundMessage, north_id).status == "quarantined"  # type: ignore[union-attr]
        main_row = s.get(InboundMessage, main_id)
        assert main_row is not None and main_row.status == "new" and main_row.attempts == 1


def test_a_subject_tag_counts_only_for_staff_of_the_requests_division(
        database: Database, config: Config) -> None:
    with database.session() as s:
        sr = ServiceRequest(division="north", status="open", requester_email=NICK,
                            subject="Leak", body="", created_at=utcnow(), updated_at=utcnow())
        s.add(sr)
        s.flush()
        lookup = DbThreadLookup(s, config, installation_secret(s))
        assert lookup.by_subject_tag("SR", sr.id, NORA) is not None
        assert lookup.by_subject_tag("SR", sr.id, PAT) is None, "Pat is main's staff only"
        assert lookup.by_subject_tag("SR", sr.id, NICK) is not None


def test_explain_names_the_division_a_mail_would_go_to(
        database: Database, config: Config) -> None:
    def explain(raw: bytes) -> dict[str, Any]:
        with database.session() as s:  # explain rolls its session back
            return explain_mail(s, config, raw)

    routed = explain(_mail(NICK, "The faucet drips day and night"))
    north = explain(_mail("z@example.org", "The faucet drips", to=NORTH))
    main = explain(_mail("z@example.org", "The faucet drips"))
    assert routed["division"] == "north" and "routed to division north" in \
        routed["division_reason"]
    assert north["division"] == "north" and NORTH in north["division_reason"]
    assert main["division"] == "main"


def test_healthz_reports_every_mailbox_and_names_the_division_in_trouble(
        database: Database, config: Config) -> None:
    now = utcnow()
    live = {"intake": {"connected": True, "last_poll_at": now.isoformat(), "backlog": 1},
            "intakes": {"north": None}}
    with database.session() as s:
        s.add(MailboxState(mailbox=mailbox_key(config.division("north").mailbox),
                           connected=False, last_poll_at=now - timedelta(hours=1), last_uid=0))
    with database.session() as s:
        snap = take_snapshot(s, config, now=now, started_at=now - timedelta(hours=2), live=live)
    boxes = {m.division: m for m in snap.mailboxes}
    assert boxes["main"].connected and boxes["main"].live and boxes["main"].address == US
    assert not boxes["north"].connected and not boxes["north"].live
    assert snap.intake_connected is False, "the aggregate: connected only when all are"
    [problem] = snap.problems
    assert problem.startswith(f"division north: mailbox {NORTH}: not connected"), problem


def test_each_mailbox_has_its_own_reader_lock(database: Database) -> None:
    """One daemon reads every division's mailbox (on SQLite the readers share the daemon's
    file lock); a second reader of the same mailbox is refused, as a second daemon is."""
    from warrantyd.daemon.leader import mailbox_lock_for

    main = mailbox_lock_for(database, f"{US}/INBOX")
    north = mailbox_lock_for(database, f"{NORTH}/INBOX")
    again = mailbox_lock_for(database, f"{NORTH}/INBOX")
    try:
        assert main.try_acquire() and north.try_acquire()
        assert not again.try_acquire()
        north.release()
        assert again.try_acquire(), "the mailbox is free once its reader let go"
    finally:
        for lock in (main, north, again):
            lock.release()


# --- slow: the real daemon, one Dovecot with two division mailboxes ------------------------

MAIN_VENDOR_E2E = "dispatch@frontrange-plumbing.example.net"


def _e2e_config(tmp_path: Path, dovecot: Any, sink: Any, db_url: str, main_user: str,
                north_user: str) -> Path:
    from daemon_harness import division_config, write_config

    north = division_config(
        "north", address=NORTH, imap_user=north_user, staff=[NORA], from_name=NORTH_FROM_NAME,
        vendors=[{"name": "North Plumbing", "email": NORTH_VENDOR, "trades": ["plumbing"]}],
        homes=[{"address": "77 Spruce Ct", "community": "Pines", "closing_date": "2025-06-13",
                "homeowners": [{"name": "Nick North", "email": NICK}]}])
    return write_config(tmp_path, dovecot=dovecot, smtp_port=sink.port, db_url=db_url,
                        imap_user=main_user, extra=north)


def _healthz(config_path: Path) -> tuple[int, dict[str, Any]]:
    base = tomllib.loads(config_path.read_text())["web"]["base_url"]
    try:
        with urllib.request.urlopen(f"{base}/healthz", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError:
        return 0, {}


def _kind(message: Any) -> str:
    return str(message.message["X-Warrantyd-Kind"] or "")


@pytest.mark.slow
def test_two_division_mailboxes_in_one_daemon(
        tmp_path: Path, dovecot: Any, sink: Any, db_url: str, mailbox_user: str) -> None:
    from daemon_harness import DaemonProcess, homeowner_mail, wait_for

    north_user = "n" + mailbox_user
    dovecot.add_user(north_user)
    config = _e2e_config(tmp_path, dovecot, sink, db_url, mailbox_user, north_user)
    db = Database(db_url)
    try:
        with DaemonProcess(config) as daemon:
            wait_for(lambda: daemon.log().count("connected to") >= 2, 30,
                     "both mailboxes connected", daemon)

            def both_connected() -> bool:
                status, doc = _healthz(config)
                boxes = {m["division"]: m for m in doc.get("mailboxes", [])}
                return (status == 200 and set(boxes) == {"main", "north"}
                        and all(m["connected"] for m in boxes.values()))

            wait_for(both_connected, 30, "/healthz to report both mailboxes connected", daemon)
            _, doc = _healthz(config)
            assert {m["division"]: m["address"] for m in doc["mailboxes"]} == {
                "main": US, "north": NORTH}

            # A stranger writes to north; Dana to main; Nick (north's) to main.
            dovecot.append(north_user, homeowner_mail(1, sender="stranger@example.org"))
            dovecot.append(mailbox_user, homeowner_mail(2, sender="dana@example.com"))
            dovecot.append(mailbox_user, homeowner_mail(3, sender=NICK))
            for who in ("stranger@example.org", "dana@example.com", NICK):
                wait_for(lambda who=who: sink.received_by(who), 30, f"the ack to {who}", daemon)
            wait_for(lambda: len(dovecot.list_uids(north_user, "Processed")) == 1
                     and len(dovecot.list_uids(mailbox_user, "Processed")) == 2, 30,
                     "each mailbox's mail filed in its own Processed folder", daemon)
            wait_for(lambda: [m for m in sink.received_by(NORA) if _kind(m) == "digest"]
                     and [m for m in sink.received_by(PAT) if _kind(m) == "digest"], 30,
                     "the digests", daemon)
            assert daemon.terminate() == 0

        def ack(who: str) -> Any:
            [mail] = [m for m in sink.received_by(who) if _kind(m) == "ack"]
            return mail

        for who, address, name in (("stranger@example.org", NORTH, NORTH_FROM_NAME),
                                   (NICK, NORTH, NORTH_FROM_NAME),
                                   ("dana@example.com", US, "Acme Homes Warranty")):
            mail = ack(who)
            assert mail.message["From"].addresses[0].addr_spec == address, who
            assert mail.message["From"].addresses[0].display_name == name, who
            assert mail.mail_from == address, "the envelope sender is the division's mailbox"
            local = address.split("@")[0]
            assert str(mail.message["Reply-To"]).startswith(f"{local}+"), who

        with db.session() as s:
            by_requester = {sr.requester_email: sr for sr in s.scalars(select(ServiceRequest))}
            assert {k: v.division for k, v in by_requester.items()} == {
                "stranger@example.org": "north", "dana@example.com": "main", NICK: "north"}
            assert by_requester[NICK].home is not None
            assert by_requester[NICK].home.address == "77 Spruce Ct"
            assert "routed_to_division" in {e.event for e in s.scalars(select(HistoryEvent).where(
                HistoryEvent.service_request_id == by_requester[NICK].id))}
            refs = {sr.division: set() for sr in by_requester.values()}
            for sr in by_requester.values():
                refs[sr.division].add(sr.ref)
                suggested = {wo.suggested_vendor.email for wo in sr.work_orders
                             if wo.suggested_vendor is not None}
                expected = NORTH_VENDOR if sr.division == "north" else MAIN_VENDOR_E2E
                assert suggested == {expected}, (sr.ref, suggested)

        # Each division's digests go to its own staff only, and name only its requests.
        for staff, division, other in ((NORA, "north", "main"), (PAT, "main", "north")):
            digests = [m for m in sink.received_by(staff) if _kind(m) == "digest"]
            assert digests, staff
            text = " ".join(m.message.get_body(("plain",)).get_content() for m in digests)
            assert all(ref in text for ref in refs[division]), (staff, text)
            assert not any(re.search(rf"\b{ref}\b", text) for ref in refs[other]), (staff, text)
    finally:
        db.dispose()
