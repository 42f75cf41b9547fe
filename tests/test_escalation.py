"""Emergency escalation: an emergency still a draft after ``emergency_ack_minutes`` is mailed
to its division's staff once more, once per work order, through the scheduler's slots.

Runs on SQLite and PostgreSQL (the ``database`` fixture), on a fake clock: every slot is run
with an explicit time, by two daemons.
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
from config_builder import LEE, NORA, NORTH, PAT, US, build_config
from sqlalchemy import select
from vendor_jobs import process_mail

from warrantyd.daemon.config import Config
from warrantyd.daemon.digests import queue_digests_for_request
from warrantyd.daemon.followup import ESCALATION_EVENT, queue_emergency_escalations
from warrantyd.daemon.intake import mailbox_key
from warrantyd.daemon.scheduler import (
    EMERGENCY_ESCALATION_JOB,
    JobScheduler,
    ScheduledJob,
    jobs_from_config,
)
from warrantyd.storage.db import Database
from warrantyd.storage.models import (
    HistoryEvent,
    Home,
    OutboundMessage,
    ServiceRequest,
    Vendor,
    WorkOrder,
)

ACE = "office@ace.example"
T0 = (datetime.now(UTC) - timedelta(days=1)).replace(hour=15, minute=0, second=0,
                                                     microsecond=0)
"""When the emergency came in: recent (reply tokens live from here), on a 5-minute slot."""
_uids = itertools.count(700)


def make_config(tmp_path: Path, database: Database, **followup: Any) -> Config:
    """Main: Pat and Lee, Ace Plumbing, 123 Main St.  North: Nora."""
    return build_config(
        tmp_path, database, staff={"addresses": [PAT, LEE]}, followup=followup,
        web={"listen": "127.0.0.1:0", "base_url": "https://warranty.acme-homes.example"},
        vendors=[{"name": "Ace Plumbing", "email": ACE, "trades": ["plumbing"]}],
        homes=[{"address": "123 Main St", "homeowners": [
            {"name": "Dana Whitfield", "email": "dana@example.com"}]}],
        divisions=[{"name": "north", "from_name": "Acme Homes North Warranty",
                    "mailbox": {"address": NORTH, "imap_user": NORTH},
                    "staff": {"addresses": [NORA]}}])


@pytest.fixture
def config(tmp_path: Path, database: Database) -> Config:
    return make_config(tmp_path, database)


def emergency(database: Database, config: Config, *, division: str = "main",
              at: datetime = T0, digest: bool = False, **fields: Any) -> int:
    """An emergency draft of ``division`` that came in at ``at``."""
    with database.session() as s:
        home = s.scalars(select(Home).where(Home.division == division)).first()
        sr = ServiceRequest(status="open", division=division, home=home,
                            requester_email="dana@example.com", requester_name="Dana Whitfield",
                            subject="Gas!", body="Gas smell in the kitchen. Call 303-555-0142.",
                            created_at=at, updated_at=at)
        s.add(sr)
        s.flush()
        ace = s.scalars(select(Vendor).where(Vendor.division == division)).first()
        wo = WorkOrder(service_request_id=sr.id, status="draft", trade="plumbing",
                       priority="emergency", title="Gas smell in kitchen",
                       description="Strong gas smell near the range since this morning.",
                       emergency_reason="gas leak", created_at=at, updated_at=at,
                       suggested_vendor_id=ace.id if ace else None, **fields)
        s.add(wo)
        s.flush()
        if digest:
            queue_digests_for_request(s, config, sr, [wo], at)
        return wo.id


def escalations(database: Database) -> list[OutboundMessage]:
    with database.session() as s:
        rows = list(s.scalars(select(OutboundMessage).where(
            OutboundMessage.kind == "escalation").order_by(OutboundMessage.id)))
        for row in rows:
            s.expunge(row)
        return rows


def events(database: Database, wo_id: int) -> list[HistoryEvent]:
    with database.session() as s:
        return list(s.scalars(select(HistoryEvent).where(
            HistoryEvent.work_order_id == wo_id, HistoryEvent.event == ESCALATION_EVENT)))


def as_email(row: OutboundMessage) -> EmailMessage:
    msg = email.message_from_bytes(row.raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def text_of(row: OutboundMessage) -> str:
    part = as_email(row).get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def the_job(config: Config) -> ScheduledJob:
    return next(j for j in jobs_from_config(config) if j.name == EMERGENCY_ESCALATION_JOB)


class Daemons:
    """Two daemons running the escalation job's slots on a fake clock."""

    def __init__(self, database: Database, config: Config) -> None:
        self.job = the_job(config)
        self.daemons = [JobScheduler(database, config, [self.job], worker_id=w)
                        for w in ("a", "b")]

    def at(self, minutes: int, late: timedelta = timedelta(0)) -> list[str]:
        """Both daemons run the slot ``minutes`` after T0, ``late`` after its time; each
        run's status."""
        slot = T0 + timedelta(minutes=minutes)
        return [d.run_slot(self.job, slot, slot + late).status for d in self.daemons]


def test_the_job_is_on_every_five_minutes_and_off_when_empty(tmp_path: Path,
                                                             database: Database) -> None:
    assert the_job(make_config(tmp_path, database)).cron == "*/5 * * * *"
    off = make_config(tmp_path, database, escalation_cron="")
    assert EMERGENCY_ESCALATION_JOB not in [j.name for j in jobs_from_config(off)]


def test_escalated_once_after_the_threshold_never_before(database: Database,
                                                         config: Config) -> None:
    wo_id = emergency(database, config)
    daemons = Daemons(database, config)
    for minutes in (0, 5, 10, 15, 20, 25, 30):
        assert daemons.at(minutes) == ["ran", "taken"]
    assert escalations(database) == [], "not before emergency_ack_minutes (30) have passed"
    assert daemons.at(35, late=timedelta(seconds=20)) == ["ran", "taken"]
    rows = escalations(database)
    assert sorted(r.to_addr for r in rows) == [LEE, PAT]
    for minutes in (40, 45, 60, 24 * 60):
        daemons.at(minutes)
    with database.session() as s:
        assert queue_emergency_escalations(s, config, T0 + timedelta(hours=2)) == []
    assert [r.id for r in escalations(database)] == [r.id for r in rows], "exactly once"
    [event] = events(database, wo_id)
    assert event.actor == "system" and "still a draft after 35 minutes" in event.detail
    assert PAT in event.detail and LEE in event.detail

    row = next(r for r in rows if r.to_addr == PAT)
    msg = as_email(row)
    assert msg["Subject"] == (f"[WO-{wo_id}] EMERGENCY not yet handled (35 minutes): "
                              "Gas smell in kitchen - 123 Main St")
    assert msg["Importance"] == "high" and row.from_addr == US
    assert row.work_order_id == wo_id
    text = text_of(row)
    assert "EMERGENCY NOT YET HANDLED" in text and "35 minutes ago" in text
    assert "Dana Whitfield <dana@example.com>" in text and "303-555-0142" in text
    assert "Why emergency: gas leak" in text and "Suggested vendor: Ace Plumbing" in text
    assert f"https://warranty.acme-homes.example/staff/wo/{wo_id}" in text
    assert "in no approval digest yet" in text and msg["Reply-To"] is None


@pytest.mark.parametrize("handled", [
    {"status": "in_progress"}, {"status": "rejected"}, {"needs_vendor": True},
    {"assign": True}])
def test_nothing_once_someone_acted(database: Database, config: Config,
                                    handled: dict[str, Any]) -> None:
    wo_id = emergency(database, config)
    with database.session() as s:
        wo = s.get(WorkOrder, wo_id)
        assert wo is not None
        for key, value in handled.items():
            if key == "assign":
                wo.vendor_id = wo.suggested_vendor_id
            else:
                setattr(wo, key, value)
    daemons = Daemons(database, config)
    for minutes in (35, 60, 120):
        daemons.at(minutes)
    assert escalations(database) == [] and events(database, wo_id) == []


def test_each_division_escalates_to_its_own_staff(database: Database, config: Config) -> None:
    north_wo = emergency(database, config, division="north")
    main_wo = emergency(database, config, at=T0 + timedelta(minutes=20))
    daemons = Daemons(database, config)
    daemons.at(35)
    [north] = escalations(database)
    assert (north.to_addr, north.from_addr, north.work_order_id) == (NORA, NORTH, north_wo)
    assert as_email(north)["From"].addresses[0].display_name == "Acme Homes North Warranty"
    daemons.at(55)
    main = [r for r in escalations(database) if r.work_order_id == main_wo]
    assert sorted(r.to_addr for r in main) == [LEE, PAT]
    assert {r.from_addr for r in main} == {US}
    assert len(escalations(database)) == 3


def test_an_old_emergency_is_left_to_the_followup_digest(database: Database,
                                                         config: Config) -> None:
    emergency(database, config, at=T0 - timedelta(days=3))
    Daemons(database, config).at(0)
    assert escalations(database) == []


async def test_the_escalation_answers_the_approval_digest(database: Database,
                                                          config: Config) -> None:
    """In immediate mode the emergency is in its approval digest: the escalation says which
    item, and replying to the escalation itself acts on that digest."""
    wo_id = emergency(database, config, digest=True)
    Daemons(database, config).at(35)
    row = next(r for r in escalations(database) if r.to_addr == PAT)
    assert "It is item 1 of approval digest #" in text_of(row)
    reply_to = str(as_email(row)["Reply-To"])
    assert reply_to.startswith("warranty+")
    raw = (f"From: Pat <{PAT}>\nTo: {reply_to}\nSubject: Re: {as_email(row)['Subject']}\n"
           f"Message-ID: <e{next(_uids)}@mail.example>\n"
           "Content-Type: text/plain; charset=utf-8\n\naccept 1\n").encode()
    inbound = await process_mail(database, config, raw, mailbox=mailbox_key(config.mailbox),
                                 clock=lambda: T0 + timedelta(minutes=40))
    assert inbound.status == "done"
    with database.session() as s:
        wo = s.get(WorkOrder, wo_id)
        assert wo is not None and wo.status == "in_progress" and wo.vendor is not None
        assert wo.vendor.email == ACE
