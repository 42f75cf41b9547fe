"""Divisions and staff authority: digests, commands, vendors and follow-up stay within a
division.  Two divisions (main and "north"), each with its own staff, mailbox and vendors,
and a manager listed in both; mail goes through the real Processor.  SQLite and PostgreSQL.
"""

from __future__ import annotations

import email
import email.policy
import itertools
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from config_builder import ACE, DANA, ELM_STREET, NORA, NORTH, PAT, US, build_config
from sqlalchemy import select
from vendor_jobs import process_mail

from warrantyd.daemon.config import Config
from warrantyd.daemon.digests import queue_digests_for_request, queue_pending_digest
from warrantyd.daemon.followup import queue_followup_digest
from warrantyd.daemon.importer import import_vendors
from warrantyd.daemon.intake import mailbox_key
from warrantyd.daemon.scheduler import APPROVAL_DIGEST_JOB, jobs_from_config
from warrantyd.daemon.staff import VendorLookupError, resolve_vendor
from warrantyd.daemon.tokens import installation_secret, issue_token
from warrantyd.daemon.vendors import alert_staff_vendor_bounce
from warrantyd.storage.db import Database
from warrantyd.storage.models import (
    Digest,
    HistoryEvent,
    Home,
    OutboundMessage,
    ServiceRequest,
    Vendor,
    WorkOrder,
)

MAX = "max@acme-homes.example"
"""The manager: staff of both divisions."""
NICK = "nick@example.com"
NORTH_ACE = "Ace Plumbing North"
NOW = (datetime.now(UTC) - timedelta(days=2)).replace(hour=15, minute=0, second=0,
                                                      microsecond=0)
_uids = itertools.count(500)

PINE_ROAD: dict[str, Any] = {"address": "9 Pine Rd", "community": "Ridge",
                             "homeowners": [{"name": "Nick North", "email": NICK}]}


def make_config(tmp_path: Path, database: Database, *, digest: str = "immediate",
                north_digest: str | None = None) -> Config:
    """Main: Pat and Max, Ace Plumbing and Drywall Pros.  North: Nora and Max, its own
    "Ace Plumbing" (the same company and email: another row) and North Drywall."""
    return build_config(
        tmp_path, database,
        staff={"addresses": [PAT, MAX], "digest": digest},
        web={"listen": "127.0.0.1:0", "base_url": "https://warranty.acme-homes.example"},
        vendors=[{"name": "Ace Plumbing", "email": ACE, "trades": ["plumbing"]},
                 {"name": "Drywall Pros", "email": "jobs@drywallpros.example.net",
                  "trades": ["drywall"]}],
        homes=[ELM_STREET],
        divisions=[{
            "name": "north", "from_name": "Acme Homes North Warranty",
            "mailbox": {"address": NORTH, "imap_user": NORTH},
            "staff": {"addresses": [NORA, MAX],
                      **({"digest": north_digest} if north_digest else {})},
            "vendors": [{"name": "Ace Plumbing", "email": ACE, "trades": ["plumbing"],
                         "aliases": [NORTH_ACE]},
                        {"name": "North Drywall", "email": "crew@northdrywall.example.net",
                         "trades": ["drywall"]}],
            "homes": [PINE_ROAD],
        }])


@pytest.fixture
def config(tmp_path: Path, database: Database) -> Config:
    return make_config(tmp_path, database)


def file_request(database: Database, config: Config, division: str, *,
                 specs: tuple[tuple[str, str], ...], at: datetime = NOW,
                 digest: bool = True) -> tuple[int, list[int]]:
    """A request of ``division`` with one draft per (trade, description); its digest."""
    requester = DANA if division == "main" else NICK
    with database.session() as s:
        home = s.scalars(select(Home).where(Home.division == division)).one()
        sr = ServiceRequest(status="open", requester_email=requester, requester_name="Owner",
                            home=home, division=division, subject=f"Problems in {division}",
                            body="SECRET-" + division, created_at=at, updated_at=at)
        s.add(sr)
        s.flush()
        wos = []
        for trade, text in specs:
            suggested = s.scalars(select(Vendor).where(
                Vendor.division == division, Vendor.trades.isnot(None))).all()
            vendor = next((v for v in suggested if trade in v.trades), None)
            wo = WorkOrder(service_request_id=sr.id, status="draft", trade=trade,
                           priority="routine", title=text, description=text, draft_trade=trade,
                           draft_description=text,
                           suggested_vendor_id=vendor.id if vendor else None,
                           created_at=at, updated_at=at)
            s.add(wo)
            wos.append(wo)
        s.flush()
        if digest:
            queue_digests_for_request(s, config, sr, wos, at)
        return sr.id, [wo.id for wo in wos]


def digest_of(database: Database, sr_id: int) -> Digest:
    with database.session() as s:
        row = s.scalars(select(Digest).where(Digest.service_request_id == sr_id)).one()
        s.expunge(row)
        return row


def digest_mail(database: Database, digest_id: int, staff: str) -> OutboundMessage:
    with database.session() as s:
        row = s.scalars(select(OutboundMessage).where(
            OutboundMessage.kind == "digest", OutboundMessage.to_addr == staff,
            OutboundMessage.dedupe_key.startswith(f"digest:{digest_id}:"))).one()
        s.expunge(row)
        return row


def as_email(row: OutboundMessage) -> EmailMessage:
    msg = email.message_from_bytes(row.raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def text_of(row: OutboundMessage) -> str:
    part = as_email(row).get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def mails(database: Database, *where: object) -> list[OutboundMessage]:
    with database.session() as s:
        rows = list(s.scalars(select(OutboundMessage).where(*where).order_by(OutboundMessage.id)))
        for row in rows:
            s.expunge(row)
        return rows


def wo_status(database: Database, wo_id: int) -> tuple[str, int | None]:
    with database.session() as s:
        wo = s.get(WorkOrder, wo_id)
        assert wo is not None
        return wo.status, wo.vendor_id


async def deliver(database: Database, config: Config, *, sender: str, to: str, body: str,
                  mailbox: str, subject: str = "Re: Approval digest") -> int:
    """One mail fetched from ``mailbox`` (a division's), through the processor."""
    raw = (f"From: Someone <{sender}>\nTo: {to}\nSubject: {subject}\n"
           f"Message-ID: <m{next(_uids)}@mail.example>\n"
           f"Content-Type: text/plain; charset=utf-8\n\n{body}\n").encode()
    row = await process_mail(database, config, raw, mailbox=mailbox,
                             clock=lambda: NOW + timedelta(minutes=5))
    return row.id


def north_box(config: Config) -> str:
    return mailbox_key(config.division("north").mailbox)


def main_box(config: Config) -> str:
    return mailbox_key(config.mailbox)


def reply_to_of(row: OutboundMessage) -> str:
    return str(as_email(row)["Reply-To"])


# --- immediate digests ----------------------------------------------------------------------

def test_immediate_digest_goes_to_the_division_staff_from_its_mailbox(
        database: Database, config: Config) -> None:
    sr_id, _ = file_request(database, config, "north", specs=(("plumbing", "Sink leaks"),))
    digest = digest_of(database, sr_id)
    assert digest.division == "north"
    rows = mails(database, OutboundMessage.kind == "digest")
    assert sorted(r.to_addr for r in rows) == [MAX, NORA], "Pat is not north staff"
    for row in rows:
        msg = as_email(row)
        assert row.from_addr == NORTH
        assert msg["From"].addresses[0].addr_spec == NORTH
        assert msg["From"].addresses[0].display_name == "Acme Homes North Warranty"
        assert reply_to_of(row).startswith("north+")
        assert reply_to_of(row).endswith("@acme-homes.example")
    main_sr, _ = file_request(database, config, "main", specs=(("plumbing", "Tap drips"),))
    main_rows = mails(database, OutboundMessage.kind == "digest",
                      OutboundMessage.service_request_id == main_sr)
    assert sorted(r.to_addr for r in main_rows) == [MAX, PAT]
    assert {r.from_addr for r in main_rows} == {US}


# --- authority --------------------------------------------------------------------------------

async def test_staff_of_another_division_cannot_command_a_forwarded_digest(
        database: Database, config: Config) -> None:
    sr_id, wo_ids = file_request(database, config, "north",
                                 specs=(("plumbing", "Sink leaks"), ("drywall", "Crack")))
    digest = digest_of(database, sr_id)
    nora_reply_to = reply_to_of(digest_mail(database, digest.id, NORA))
    before = len(mails(database))
    for body in ("accept 1", "assign 2 to Drywall Pros", "edit 1: something else",
                 "merge 1 2", "reject 2: no"):
        await deliver(database, config, sender=PAT, to=nora_reply_to, body=body,
                      mailbox=north_box(config))
    assert wo_status(database, wo_ids[0]) == ("draft", None)
    assert wo_status(database, wo_ids[1]) == ("draft", None)
    with database.session() as s:
        texts = [w.description for w in s.scalars(select(WorkOrder))]
        refused = list(s.scalars(select(HistoryEvent).where(
            HistoryEvent.event == "command_refused")))
    assert "something else" not in texts
    assert len(refused) == 5 and all(e.actor == PAT for e in refused)
    assert len(mails(database)) == before, "no receipt, no notice: Pat is not staff there"


async def test_a_token_of_a_division_one_left_gives_no_rights(database: Database,
                                                               config: Config) -> None:
    """Pat once got a digest of north (was listed there) and is main staff now only."""
    sr_id, wo_ids = file_request(database, config, "north", specs=(("plumbing", "Sink"),))
    digest = digest_of(database, sr_id)
    with database.session() as s:
        token = issue_token(s, installation_secret(s, config.web.secret_env), kind="digest",
                            address=PAT, days=14, digest_id=digest.id, now=NOW)
        to = f"north+{token.token}@acme-homes.example"
    before = len(mails(database))
    await deliver(database, config, sender=PAT, to=to, body="accept 1",
                  mailbox=north_box(config))
    assert wo_status(database, wo_ids[0]) == ("draft", None)
    with database.session() as s:
        refused = s.scalars(select(HistoryEvent).where(
            HistoryEvent.event == "command_refused")).one()
    assert "not a staff address of division north" in refused.detail
    assert len(mails(database)) == before


async def test_wo_refs_of_another_division_are_answered_as_missing(
        database: Database, config: Config) -> None:
    _, north_wos = file_request(database, config, "north", specs=(("plumbing", "Leak"),))
    main_sr, _ = file_request(database, config, "main", specs=(("plumbing", "Tap drips"),))
    main_digest = digest_of(database, main_sr)
    pat_reply_to = reply_to_of(digest_mail(database, main_digest.id, PAT))
    assert pat_reply_to.startswith("warranty+")
    ref = f"WO-{north_wos[0]}"
    await deliver(database, config, sender=PAT, to=pat_reply_to,
                  body=f"complete {ref}\nnote {ref}: gate code 1234",
                  mailbox=main_box(config))
    assert wo_status(database, north_wos[0]) == ("draft", None)
    receipt = mails(database, OutboundMessage.kind == "receipt")[-1]
    assert receipt.to_addr == PAT and receipt.from_addr == US
    text = text_of(receipt)
    assert f"{ref} does not exist" in text
    assert "Leak" not in text and "SECRET-north" not in text and "north" not in text.lower()
    with database.session() as s:
        assert not s.scalars(select(HistoryEvent).where(
            HistoryEvent.event == "note", HistoryEvent.work_order_id == north_wos[0])).all()
    # The manager may: staff of both divisions.
    max_reply_to = reply_to_of(digest_mail(database, main_digest.id, MAX))
    await deliver(database, config, sender=MAX, to=max_reply_to,
                  body=f"note {ref}: gate code 1234", mailbox=main_box(config))
    with database.session() as s:
        assert s.scalars(select(HistoryEvent).where(
            HistoryEvent.event == "note", HistoryEvent.work_order_id == north_wos[0])).one()


async def test_the_manager_assigns_the_division_own_vendor_and_it_goes_out_from_there(
        database: Database, config: Config) -> None:
    sr_id, wo_ids = file_request(database, config, "north",
                                 specs=(("drywall", "Crack over the door"),))
    digest = digest_of(database, sr_id)
    to = reply_to_of(digest_mail(database, digest.id, MAX))
    await deliver(database, config, sender=MAX, to=to, body="assign 1 to Ace Plumbing\naccept 1",
                  mailbox=north_box(config))
    status, vendor_id = wo_status(database, wo_ids[0])
    with database.session() as s:
        vendor = s.get(Vendor, vendor_id)
        assert vendor is not None
        assert (vendor.division, vendor.email) == ("north", ACE), "the north row of Ace"
    assert status == "in_progress"
    notice = mails(database, OutboundMessage.kind == "vendor_notice")[-1]
    msg = as_email(notice)
    assert notice.to_addr == ACE and notice.from_addr == NORTH
    assert msg["From"].addresses[0].display_name == "Acme Homes North Warranty"
    assert reply_to_of(notice).startswith("north+")
    receipt = mails(database, OutboundMessage.kind == "receipt")[-1]
    assert receipt.to_addr == MAX and receipt.from_addr == NORTH
    assert reply_to_of(receipt).startswith("north+")


async def test_assign_names_only_vendors_of_the_division(database: Database,
                                                         config: Config) -> None:
    sr_id, wo_ids = file_request(database, config, "north", specs=(("drywall", "Crack"),))
    digest = digest_of(database, sr_id)
    to = reply_to_of(digest_mail(database, digest.id, NORA))
    await deliver(database, config, sender=NORA, to=to, body="assign 1 to Drywall Pros",
                  mailbox=north_box(config))
    assert wo_status(database, wo_ids[0]) == ("draft", None), "Drywall Pros is main's"
    receipt = text_of(mails(database, OutboundMessage.kind == "receipt")[-1])
    assert "no vendor is called 'Drywall Pros'" in receipt
    assert "drywallpros" not in receipt, "main's vendors are not listed to north"
    with database.session() as s:
        assert resolve_vendor(s, "Ace Plumbing", "north").division == "north"
        assert resolve_vendor(s, "Ace Plumbing", "main").division == "main"
        assert resolve_vendor(s, ACE, "north").division == "north"
        with pytest.raises(VendorLookupError) as caught:
            resolve_vendor(s, "Drywall Pros", "north")
        assert all(v.division == "north" for v in caught.value.candidates)
        assert resolve_vendor(s, "Drywall", "north").name == "North Drywall"
        assert resolve_vendor(s, "Drywall", "main").name == "Drywall Pros"


async def test_merge_across_divisions_is_refused(database: Database, config: Config) -> None:
    _, north_wos = file_request(database, config, "north", specs=(("plumbing", "Leak"),),
                                digest=False)
    _, main_wos = file_request(database, config, "main", specs=(("plumbing", "Drip"),),
                               digest=False)
    with database.session() as s:  # a digest listing both (as no digest of ours would)
        digest = Digest(created_at=NOW, division="main",
                        work_order_ids=[main_wos[0], north_wos[0]])
        s.add(digest)
        s.flush()
        token = issue_token(s, installation_secret(s, config.web.secret_env), kind="digest",
                            address=MAX, days=14, digest_id=digest.id, now=NOW)
        to = f"warranty+{token.token}@acme-homes.example"
    await deliver(database, config, sender=MAX, to=to, body="merge 1 2",
                  mailbox=main_box(config))
    assert wo_status(database, north_wos[0])[0] == "draft"
    assert wo_status(database, main_wos[0])[0] == "draft"
    receipt = text_of(mails(database, OutboundMessage.kind == "receipt")[-1])
    assert "different divisions" in receipt


# --- scheduled digests ------------------------------------------------------------------------

def test_scheduled_digests_per_division(tmp_path: Path, database: Database) -> None:
    config = make_config(tmp_path, database, digest="0 8 * * *", north_digest="0 9 * * *")
    jobs = {job.name: job.cron for job in jobs_from_config(config)}
    assert jobs[APPROVAL_DIGEST_JOB] == "0 8 * * *"
    assert jobs[f"{APPROVAL_DIGEST_JOB}:north"] == "0 9 * * *"
    _, north_wos = file_request(database, config, "north", specs=(("plumbing", "Leak N"),))
    _, main_wos = file_request(database, config, "main", specs=(("plumbing", "Drip M"),))
    assert mails(database) == [], "scheduled: nothing immediately"
    later = NOW + timedelta(hours=1)
    with database.session() as s:
        north_rows = queue_pending_digest(s, config, later, "north")
    assert sorted(r.to_addr for r in north_rows) == [MAX, NORA]
    assert {r.from_addr for r in north_rows} == {NORTH}
    with database.session() as s:
        digest = s.scalars(select(Digest)).one()
        assert (digest.division, digest.work_order_ids) == ("north", north_wos)
        assert queue_pending_digest(s, config, later, "north") == [], "slot sent already"
    text = text_of(north_rows[0])
    assert "Leak N" in text and "Drip M" not in text
    with database.session() as s:
        main_rows = queue_pending_digest(s, config, later, "main")
    assert sorted(r.to_addr for r in main_rows) == [MAX, PAT]
    assert {r.from_addr for r in main_rows} == {US}
    text = text_of(main_rows[0])
    assert "Drip M" in text and "Leak N" not in text
    with database.session() as s:
        digests = {d.division: d.work_order_ids for d in s.scalars(select(Digest))}
    assert digests == {"north": north_wos, "main": main_wos}


def test_digest_modes_may_differ_per_division(tmp_path: Path, database: Database) -> None:
    config = make_config(tmp_path, database, digest="immediate", north_digest="0 9 * * *")
    names = [job.name for job in jobs_from_config(config)]
    assert APPROVAL_DIGEST_JOB not in names and f"{APPROVAL_DIGEST_JOB}:north" in names
    file_request(database, config, "north", specs=(("plumbing", "Leak"),))
    assert mails(database) == []
    main_sr, _ = file_request(database, config, "main", specs=(("plumbing", "Drip"),))
    assert {r.service_request_id for r in mails(database)} == {main_sr}


# --- follow-up, bounces -----------------------------------------------------------------------

def test_followup_digest_per_division(database: Database, config: Config) -> None:
    old = NOW - timedelta(days=3)
    file_request(database, config, "north", specs=(("plumbing", "Leak N"),), at=old,
                 digest=False)
    file_request(database, config, "main", specs=(("plumbing", "Drip M"),), at=old,
                 digest=False)
    with database.session() as s:
        rows = queue_followup_digest(s, config, NOW)
    by = {(r.to_addr, r.from_addr): text_of(r) for r in rows}
    assert sorted(by) == sorted([(PAT, US), (MAX, US), (NORA, NORTH), (MAX, NORTH)])
    assert "Drip M" in by[(PAT, US)] and "Leak N" not in by[(PAT, US)]
    assert "Leak N" in by[(NORA, NORTH)] and "Drip M" not in by[(NORA, NORTH)]
    with database.session() as s:
        assert len(queue_followup_digest(s, config, NOW)) == 4
    assert len(mails(database)) == 4, "the same slot sends nothing twice"


def test_vendor_bounce_alert_goes_to_the_division_staff(database: Database,
                                                        config: Config) -> None:
    _, wo_ids = file_request(database, config, "north", specs=(("plumbing", "Leak"),),
                             digest=False)
    with database.session() as s:
        wo = s.get(WorkOrder, wo_ids[0])
        assert wo is not None
        wo.vendor = s.scalars(select(Vendor).where(Vendor.division == "north",
                                                   Vendor.email == ACE)).one()
        wo.status = "in_progress"
        rows = alert_staff_vendor_bounce(s, config, wo, "550 no such user", NOW)
    assert sorted(r.to_addr for r in rows) == [MAX, NORA]
    assert {r.from_addr for r in rows} == {NORTH}


# --- the directory ----------------------------------------------------------------------------

def test_config_sync_keeps_one_vendor_row_per_division(database: Database,
                                                      config: Config) -> None:
    with database.session() as s:
        aces = {v.division: v for v in s.scalars(select(Vendor).where(Vendor.email == ACE))}
        homes = {h.division: h.address for h in s.scalars(select(Home))}
    assert set(aces) == {"main", "north"}
    assert aces["north"].aliases == [NORTH_ACE] and aces["main"].aliases == []
    assert homes == {"main": "1 Elm St", "north": "9 Pine Rd"}
    report = import_vendors(database, "vendors.csv", division="north",
                            text="name,email,trades\nAce Plumbing,ace@plumb.example.net,hvac\n"
                                 "New North Co,new@north.example.net,paint\n")
    assert report.ok and (report.created, report.updated) == (1, 1)
    with database.session() as s:
        rows = {(v.division, v.email): v.trades for v in s.scalars(select(Vendor))}
    assert rows[("north", ACE)] == ["hvac"] and rows[("main", ACE)] == ["plumbing"]
    assert ("north", "new@north.example.net") in rows
    assert ("main", "new@north.example.net") not in rows
