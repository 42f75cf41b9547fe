"""Follow-up rules, the follow-up digest, vendor reminders and the ``[followup]`` table.

Runs on SQLite and PostgreSQL (the ``database`` fixture), on a fake clock: every rule and job
is driven with an explicit ``now``.
"""

from __future__ import annotations

import email
import email.policy
import itertools
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from config_builder import DANA, LEE, NORA, NORTH, PAT, build_config
from sqlalchemy import select
from vendor_jobs import process_mail

from warrantyd.daemon.config import Config, ConfigError
from warrantyd.daemon.digests import queue_pending_digest
from warrantyd.daemon.followup import (
    NO_VENDOR,
    UNKNOWN_PROPERTY,
    build_followup_digest,
    find_stuck,
    queue_followup_digest,
    queue_vendor_nudges,
)
from warrantyd.daemon.intake import mailbox_key
from warrantyd.daemon.reports import build_wo_filter, needs_followup, wo_list
from warrantyd.daemon.tokens import find_token, installation_secret
from warrantyd.storage.db import Database
from warrantyd.storage.models import (
    Digest,
    HistoryEvent,
    Home,
    OutboundMessage,
    ReplyToken,
    ServiceRequest,
    Vendor,
    WorkOrder,
)
from warrantyd.storage.queries import FollowupThresholds

NOW = (datetime.now(UTC) - timedelta(days=3)).replace(hour=16, minute=0, second=0,
                                                     microsecond=0)
"""Recent (reply tokens are issued for months from here), on a whole hour, in UTC."""


def ago(**kwargs: float) -> datetime:
    return NOW - timedelta(**kwargs)


def make_config(tmp_path: Path, database: Database, **followup: Any) -> Config:
    return build_config(tmp_path, database, sync=False, staff={"addresses": [PAT, LEE]},
                        followup=followup)


@dataclass
class World:
    vendors: dict[str, int]
    srs: dict[str, int]
    wo: dict[str, int]

    def ref(self, *names: str) -> list[str]:
        return [f"WO-{self.wo[n]}" for n in names]


def build(db: Database) -> World:
    """Two homes and an unknown one, three vendors, a work order stuck in every way."""
    with db.session() as s:
        ace = Vendor(name="Ace Plumbing", email="office@ace.example", trades=["plumbing"])
        volt = Vendor(name="Volt Electric", email="jobs@volt.example", trades=["electrical"])
        gone = Vendor(name="Gone Roofing", email="old@gone.example", trades=["roofing"],
                      bounced_at=ago(days=2))
        oak = Home(address="12 Oak Ridge Dr", community="Oak Ridge")
        elm = Home(address="7 Elm Ct", community="Elm Park")
        s.add_all([ace, volt, gone, oak, elm])
        s.flush()

        def sr(home: Home | None, who: str, status: str = "in_progress") -> ServiceRequest:
            row = ServiceRequest(status=status, home=home, requester_email=f"{who}@example.com",
                                 requester_name=who.title(), subject=f"{who}'s request",
                                 created_at=ago(days=6), updated_at=ago(days=6))
            s.add(row)
            return row

        srs = {"oak": sr(oak, "ann"), "elm": sr(elm, "cy"), "lost": sr(None, "zed", "open"),
               "done": sr(oak, "dee"), "resolved": sr(elm, "eve", "resolved")}
        s.flush()

        def wo(where: str, created: datetime, **fields: Any) -> WorkOrder:
            fields.setdefault("trade", "plumbing")
            fields.setdefault("description", "Fix it.")
            row = WorkOrder(service_request_id=srs[where].id, created_at=created,
                            updated_at=created, **fields)
            s.add(row)
            return row

        wos = {
            # emergency draft for 45 minutes: nobody sent anyone yet
            "gas": wo("lost", ago(minutes=45), status="draft", priority="emergency",
                      title="Gas smell in the kitchen"),
            # emergency draft 10 minutes old: not yet
            "fresh_gas": wo("lost", ago(minutes=10), status="draft", priority="emergency"),
            # routine draft waiting 30 hours
            "crack": wo("elm", ago(hours=30), status="draft", trade="drywall",
                        title="Crack over the door"),
            # sent to Ace 3 days ago, no reply
            "leak": wo("oak", ago(days=4), status="in_progress", vendor=ace,
                       priority="urgent", title="Kitchen sink leak"),
            # Volt proposed times 30 hours ago; nobody confirmed one
            "outlet": wo("oak", ago(days=4), status="in_progress", vendor=volt,
                         trade="electrical", last_vendor_reply_at=ago(hours=30),
                         flags=["vendor proposed times: Tuesday, 8:00 AM; Wednesday, 1:00 PM"]),
            # Volt proposed times 5 hours ago: still time
            "fan": wo("elm", ago(days=2), status="in_progress", vendor=volt,
                      trade="electrical", last_vendor_reply_at=ago(hours=5),
                      flags=["vendor proposed times: Friday, 9:00 AM"]),
            # Volt's visit was yesterday and nothing says it is done
            "panel": wo("elm", ago(days=3), status="in_progress", vendor=volt,
                        trade="electrical", scheduled_for=ago(days=1),
                        last_vendor_reply_at=ago(days=2)),
            # Gone Roofing's address bounced on another job; this one is unflagged
            "roof": wo("oak", ago(days=3), status="in_progress", vendor=gone, trade="roofing",
                       last_vendor_reply_at=ago(hours=1)),
            # a request whose every job is done, never resolved
            "done1": wo("done", ago(days=5), status="completed", vendor=ace,
                        completed_at=ago(days=2)),
            "done2": wo("done", ago(days=5), status="completed", vendor=volt,
                        trade="electrical", completed_at=ago(days=1)),
            "done3": wo("done", ago(days=5), status="rejected", trade="other"),
            # resolved: nothing to follow up
            "over": wo("resolved", ago(days=5), status="completed", vendor=ace,
                       completed_at=ago(days=3)),
        }
        s.flush()
        for name, at in (("leak", ago(days=3)), ("outlet", ago(days=3)), ("fan", ago(days=1)),
                         ("panel", ago(days=3)), ("roof", ago(days=2, hours=1))):
            s.add(HistoryEvent(work_order_id=wos[name].id, at=at, event="vendor_notified",
                               actor=PAT, detail="sent"))
        s.add(HistoryEvent(work_order_id=wos["outlet"].id, at=ago(hours=30),
                           event="vendor_reply", actor="jobs@volt.example",
                           detail="propose_times: two options\n\nTue 8 or Wed 1?"))
        s.add(HistoryEvent(work_order_id=wos["fan"].id, at=ago(hours=5), event="vendor_reply",
                           actor="jobs@volt.example", detail="propose_times: one\n\nFri 9?"))
        return World({"ace": ace.id, "volt": volt.id, "gone": gone.id},
                     {k: v.id for k, v in srs.items()}, {k: v.id for k, v in wos.items()})


@pytest.fixture
def world(database: Database) -> World:
    return build(database)


def codes(rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    return {r["id"]: [x["code"] for x in r["followup_reasons"]] for r in rows}


# --- the rules ------------------------------------------------------------------------------

def test_each_rule_says_why(database: Database, world: World) -> None:
    rows = needs_followup(database, now=NOW)
    w = world.wo
    assert codes(rows) == {
        f"WO-{w['gas']}": ["emergency_unacknowledged"],
        f"WO-{w['crack']}": ["draft_waiting"],
        f"WO-{w['leak']}": ["no_vendor_reply"],
        f"WO-{w['outlet']}": ["proposed_times"],
        f"WO-{w['panel']}": ["schedule_passed"],
        f"WO-{w['roof']}": ["vendor_bounced"],
        f"WO-{w['done2']}": ["request_unresolved"],
    }
    why = {r["id"]: r["followup_reason"] for r in rows}
    assert why[f"WO-{w['gas']}"] == "EMERGENCY not acknowledged: still a draft after 45 minutes"
    assert why[f"WO-{w['outlet']}"] == (
        "vendor proposed times 30 hours ago and none is confirmed "
        "(Tuesday, 8:00 AM; Wednesday, 1:00 PM)")
    assert "Gone Roofing <old@gone.example> bounced on" in why[f"WO-{w['roof']}"]
    assert why[f"WO-{w['done2']}"].startswith(
        f"every work order of SR-{world.srs['done']} is done but the request is still in "
        "progress")


def test_thresholds_move_the_lines(database: Database, world: World) -> None:
    later = FollowupThresholds(emergency_ack_minutes=60, draft_hours=48,
                               proposed_times_hours=36, vendor_reply_hours=24 * 5)
    listed = codes(needs_followup(database, now=NOW, thresholds=later))
    assert f"WO-{world.wo['gas']}" not in listed
    assert f"WO-{world.wo['crack']}" not in listed
    assert f"WO-{world.wo['outlet']}" not in listed, "30 h < 36 h, and no flag listed early"
    sooner = FollowupThresholds(emergency_ack_minutes=5, proposed_times_hours=4)
    listed = codes(needs_followup(database, now=NOW, thresholds=sooner))
    assert listed[f"WO-{world.wo['fresh_gas']}"] == ["emergency_unacknowledged"]
    assert "proposed_times" in listed[f"WO-{world.wo['fan']}"]
    # A day later the emergency is also an ordinary stale draft.
    listed = codes(needs_followup(database, now=NOW + timedelta(days=1)))
    assert listed[f"WO-{world.wo['gas']}"] == ["emergency_unacknowledged", "draft_waiting"]


def test_a_bounce_flag_is_listed_once_and_a_confirmed_date_ends_the_proposal(
        database: Database, world: World) -> None:
    with database.session() as s:
        roof = s.get(WorkOrder, world.wo["roof"])
        outlet = s.get(WorkOrder, world.wo["outlet"])
        assert roof is not None and outlet is not None
        roof.flags = ["vendor email bounced"]
        outlet.scheduled_for = NOW + timedelta(days=1)
        outlet.flags = []
    listed = codes(needs_followup(database, now=NOW))
    assert listed[f"WO-{world.wo['roof']}"] == ["flagged"]
    assert f"WO-{world.wo['outlet']}" not in listed


def test_unresolved_requests_through_wo_list(database: Database, world: World) -> None:
    done = f"WO-{world.wo['done2']}"

    def listed(**options: Any) -> list[str]:
        return [r["id"] for r in wo_list(database, build_wo_filter(needs_followup=True,
                                                                   **options), now=NOW)]

    assert done in listed()
    assert listed(status="completed") == [done]
    assert done not in listed(status="draft,in_progress")
    # Filtered by vendor, the request shows through that vendor's own job.
    assert listed(status="completed", vendor="ace") == [f"WO-{world.wo['done1']}"]
    assert listed(status="completed", vendor="gone") == []
    assert listed(status="completed", property="oak ridge") == [done]
    # Resolving it (or reopening a job) takes it off the list.
    with database.session() as s:
        sr = s.get(ServiceRequest, world.srs["done"])
        assert sr is not None
        sr.status = "resolved"
    assert listed(status="completed") == []


def test_config_thresholds_reach_the_rules(tmp_path: Path, database: Database,
                                           world: World) -> None:
    config = make_config(tmp_path, database, emergency_ack_minutes=60, draft_hours=12)
    assert config.followup.thresholds == FollowupThresholds(emergency_ack_minutes=60,
                                                            draft_hours=12)
    assert FollowupThresholds.from_mapping(config.extra["followup"]) == \
        config.followup.thresholds, "wo list reads the same thresholds"
    with database.session() as s:
        stuck = {f.work_order.ref for f in find_stuck(s, config, NOW)}
    assert f"WO-{world.wo['gas']}" not in stuck and f"WO-{world.wo['crack']}" in stuck


# --- the follow-up digest -------------------------------------------------------------------

def test_digest_puts_emergencies_first_and_groups_by_vendor_and_property(
        database: Database, world: World) -> None:
    with database.session() as s:
        digest = build_followup_digest(find_needing_followup_all(s))
    w = world.ref
    assert [i.ref for i in digest.emergencies] == w("gas")
    assert digest.items[0].ref == w("gas")[0], "emergencies first"
    assert digest.items[1].ref == w("leak")[0], "then urgent"
    # Then routine, the longest waiting first (bounced 2 days ago; 30 hours; a day), ties by
    # number.
    assert [i.ref for i in digest.items[2:]] == w("roof", "crack", "outlet", "panel", "done2")
    by_vendor = {g.label: [i.ref for i in g.items] for g in digest.by_vendor}
    # The group of the emergency first, then in the order of their most pressing item.
    assert list(by_vendor) == [NO_VENDOR, "Ace Plumbing", "Gone Roofing", "Volt Electric"]
    assert by_vendor[NO_VENDOR] == w("gas", "crack")
    assert by_vendor["Ace Plumbing"] == w("leak")
    assert by_vendor["Volt Electric"] == w("outlet", "panel", "done2")
    assert by_vendor["Gone Roofing"] == w("roof")
    by_property = {g.label: [i.ref for i in g.items] for g in digest.by_property}
    assert list(by_property) == [UNKNOWN_PROPERTY, "12 Oak Ridge Dr (Oak Ridge)",
                                 "7 Elm Ct (Elm Park)"]
    assert by_property["12 Oak Ridge Dr (Oak Ridge)"] == w("leak", "roof", "outlet", "done2")
    assert by_property["7 Elm Ct (Elm Park)"] == w("crack", "panel")
    assert sum(len(g.items) for g in digest.by_vendor) == len(digest.items)


def find_needing_followup_all(session: Any) -> list[Any]:
    from warrantyd.storage.queries import WorkOrderFilter, find_needing_followup

    return find_needing_followup(session, WorkOrderFilter(limit=None), now=NOW)


def as_email(row: OutboundMessage) -> EmailMessage:
    msg = email.message_from_bytes(row.raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def body(row: OutboundMessage, kind: str) -> str:
    part = as_email(row).get_body((kind,))
    assert part is not None
    return str(part.get_content())


def outbound(database: Database, *where: Any) -> list[OutboundMessage]:
    with database.session() as s:
        return list(s.scalars(select(OutboundMessage).where(*where).order_by(OutboundMessage.id)))


def test_digest_mail_to_each_staff_member_once_per_slot(tmp_path: Path, database: Database,
                                                        world: World) -> None:
    config = make_config(tmp_path, database)
    with database.session() as s:
        rows = queue_followup_digest(s, config, NOW)
        assert sorted(r.to_addr for r in rows) == [LEE, PAT]
    mails = outbound(database)
    assert {m.kind for m in mails} == {"digest_followup"}
    msg = as_email(mails[0])
    assert msg["Subject"] == "EMERGENCY - 1 unanswered - Follow-up: 7 work orders need attention"
    assert msg["Importance"] == "high" and msg["Auto-Submitted"] == "auto-generated"
    text = body(mails[0], "plain")
    assert text.index("EMERGENCIES") < text.index("BY VENDOR") < text.index("BY PROPERTY")
    assert text.index(NO_VENDOR) < text.index("Ace Plumbing") < text.index("Volt Electric")
    assert f"SR-{world.srs['done']} is done" in text
    html = body(mails[0], "html")
    assert "By vendor" in html and "By property" in html and "EMERGENCY" in html
    with database.session() as s:
        again = queue_followup_digest(s, config, NOW + timedelta(minutes=3), slot=NOW)
    assert [r.id for r in again] == [r.id for r in rows], "the same slot queues nothing new"
    assert len(outbound(database)) == 2


def test_homeowner_words_are_escaped_in_the_html_digest(tmp_path: Path, database: Database,
                                                        world: World) -> None:
    with database.session() as s:
        crack = s.get(WorkOrder, world.wo["crack"])
        assert crack is not None
        crack.title = "<script>alert(1)</script>"
        queue_followup_digest(s, make_config(tmp_path, database), NOW)
    html = body(outbound(database)[0], "html")
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_nothing_stuck_means_no_mail(tmp_path: Path, database: Database) -> None:
    config = make_config(tmp_path, database)
    with database.session() as s:
        assert queue_followup_digest(s, config, NOW) == []
    assert outbound(database) == []


# --- vendor reminders -----------------------------------------------------------------------

def reminders(database: Database) -> list[OutboundMessage]:
    return outbound(database, OutboundMessage.kind == "vendor_nudge")


def nudge(database: Database, config: Config, now: datetime) -> list[str]:
    with database.session() as s:
        return [r.to_addr for r in queue_vendor_nudges(s, config, now)]


def test_a_silent_vendor_is_reminded_once_a_day(tmp_path: Path, database: Database,
                                                world: World) -> None:
    config = make_config(tmp_path, database, nudge_after_hours=24)
    with database.session() as s:
        notice = OutboundMessage(dedupe_key="n", message_id="notice-1@acme-homes.example",
                                 kind="vendor_notice", to_addr="office@ace.example",
                                 subject="[WO]", raw=b"x", work_order_id=world.wo["leak"],
                                 created_at=ago(days=3))
        s.add(notice)
        before = s.get(WorkOrder, world.wo["leak"])
        assert before is not None
        updated_at = before.updated_at
    # leak: Ace, silent 3 days.  outlet/fan/panel: Volt answered.  roof: bounced vendor.
    assert nudge(database, config, NOW) == ["office@ace.example"]
    [row] = reminders(database)
    msg = as_email(row)
    assert msg["Subject"].startswith(f"[WO-{world.wo['leak']}] Reminder: Kitchen sink leak")
    assert msg["In-Reply-To"] == "<notice-1@acme-homes.example>"
    assert msg["To"] == "Ace Plumbing <office@ace.example>"
    text = body(row, "plain")
    assert "friendly reminder" in text and f"{config.web.base_url}/" in text
    token = msg["Reply-To"].split("+", 1)[1].split("@", 1)[0]
    with database.session() as s:
        found, why = find_token(s, installation_secret(s, config.web.secret_env), token, NOW)
        assert found is not None, why
        assert (found.kind, found.work_order_id, found.address) == (
            "vendor", world.wo["leak"], "office@ace.example")
        wo = s.get(WorkOrder, world.wo["leak"])
        assert wo is not None
        assert wo.last_nudged_at == NOW
        assert wo.updated_at == updated_at, "a reminder is not a change to the job"
        events = s.scalars(select(HistoryEvent).where(
            HistoryEvent.work_order_id == wo.id, HistoryEvent.event == "vendor_nudged")).all()
        assert len(events) == 1 and events[0].outbound_message_id == row.id
        assert events[0].actor == "system" and "reminder 1 of at most 3" in events[0].detail
    # Same day (company time), even hours later: nothing.  Next day: one more.
    assert nudge(database, config, NOW + timedelta(hours=3)) == []
    assert nudge(database, config, NOW + timedelta(days=1)) == ["office@ace.example"]
    assert nudge(database, config, NOW + timedelta(days=2)) == ["office@ace.example"]
    assert nudge(database, config, NOW + timedelta(days=3)) == [], "at most nudge_max (3)"
    assert len(reminders(database)) == 3
    # The vendor answers: no more reminders, and a new assignment starts the count again.
    with database.session() as s:
        wo = s.get(WorkOrder, world.wo["leak"])
        assert wo is not None
        wo.last_vendor_reply_at = NOW + timedelta(days=3, hours=1)
    assert nudge(database, config, NOW + timedelta(days=5)) == []
    with database.session() as s:
        s.add(HistoryEvent(work_order_id=world.wo["leak"], at=NOW + timedelta(days=5),
                           event="vendor_notified", actor=PAT, detail="sent again"))
    assert nudge(database, config, NOW + timedelta(days=6)) == ["office@ace.example"]


def test_no_reminder_to_a_bounced_address_or_a_scheduled_job(
        tmp_path: Path, database: Database, world: World) -> None:
    config = make_config(tmp_path, database, nudge_after_hours=24)
    with database.session() as s:
        ace = s.get(Vendor, world.vendors["ace"])
        assert ace is not None
        ace.bounced_at = ago(hours=2)
        # roof's vendor bounced long ago; give Volt's panel job a silent vendor but a date.
        panel = s.get(WorkOrder, world.wo["panel"])
        assert panel is not None
        panel.last_vendor_reply_at = None
    assert nudge(database, config, NOW) == []
    with database.session() as s:
        ace = s.get(Vendor, world.vendors["ace"])
        leak = s.get(WorkOrder, world.wo["leak"])
        assert ace is not None and leak is not None
        ace.bounced_at = None
        leak.flags = ["vendor email bounced"]
    assert nudge(database, config, NOW) == []
    assert reminders(database) == []


def test_reminders_wait_nudge_after_hours(tmp_path: Path, database: Database,
                                          world: World) -> None:
    config = make_config(tmp_path, database, nudge_after_hours=24 * 4)
    assert nudge(database, config, NOW) == [], "leak went out 3 days ago"
    assert nudge(database, config, NOW + timedelta(days=1, minutes=1)) == ["office@ace.example"]


# --- [followup] in the config ---------------------------------------------------------------

def test_followup_defaults(tmp_path: Path, database: Database) -> None:
    followup = make_config(tmp_path, database).followup
    assert (followup.draft_hours, followup.vendor_reply_hours, followup.proposed_times_hours,
            followup.overdue_hours, followup.emergency_ack_minutes) == (24, 48, 24, 0, 30)
    assert (followup.digest_cron, followup.nudge_cron) == ("0 7 * * *", "0 9 * * mon-fri")
    assert (followup.nudge_after_hours, followup.nudge_max, followup.catch_up_hours) == (
        24, 3, 6)
    off = make_config(tmp_path, database, digest_cron="", nudge_cron="off").followup
    assert (off.digest_cron, off.nudge_cron) == ("", "")


def test_followup_problems_are_all_reported_with_the_key(tmp_path: Path,
                                                         database: Database) -> None:
    with pytest.raises(ConfigError) as caught:
        make_config(tmp_path, database, draft_hours=-1, emergency_ack_minutes="soon",
                    digest_cron="0 25 * * *", nudge_cron="every day", nudge_max=0,
                    vendor_reply_days=2)
    problems = caught.value.problems
    assert len(problems) == 6, problems
    text = "\n".join(problems)
    assert "[followup].draft_hours: must be a number of hours ≥ 0, not -1" in text
    assert "[followup].emergency_ack_minutes: must be a number, not 'soon'" in text
    assert "[followup].digest_cron: must be a cron expression" in text
    assert "[followup].nudge_cron: must be a cron expression" in text
    assert "[followup].nudge_max: must be 1 or more" in text
    assert "[followup].vendor_reply_days: unknown key" in text


# --- answering the follow-up digest ----------------------------------------------------------

_uids = itertools.count(900)


def two_division_config(tmp_path: Path, database: Database, **staff: Any) -> Config:
    """Main: Pat and Lee, Ace Plumbing and Drywall Pros.  North: Nora, no vendors."""
    return build_config(
        tmp_path, database, staff={"addresses": [PAT, LEE], **staff},
        vendors=[{"name": "Ace Plumbing", "email": "office@ace.example", "trades": ["plumbing"]},
                 {"name": "Drywall Pros", "email": "jobs@drywallpros.example",
                  "trades": ["drywall"]}],
        divisions=[{"name": "north", "mailbox": {"address": NORTH, "imap_user": NORTH},
                    "staff": {"addresses": [NORA]}}])


@dataclass
class Stuck:
    leak: int
    """Main, in progress with Ace, no reply in 3 days (urgent: item 1)."""
    crack: int
    """Main, a draft waiting 30 hours; Drywall Pros suggested."""
    caulk: int
    """Main, a draft waiting 30 hours, no vendor at all."""
    north: int
    """North, a draft waiting 30 hours."""


def build_stuck(database: Database) -> Stuck:
    with database.session() as s:
        ace = s.scalars(select(Vendor).where(Vendor.name == "Ace Plumbing")).one()
        drywall = s.scalars(select(Vendor).where(Vendor.name == "Drywall Pros")).one()
        main = ServiceRequest(status="in_progress", requester_email=DANA, requester_name="Dana",
                              subject="Problems", created_at=ago(days=5), updated_at=ago(days=5))
        north = ServiceRequest(status="open", requester_email="nick@example.com",
                               division="north", subject="North problems",
                               created_at=ago(days=2), updated_at=ago(days=2))
        s.add_all([main, north])
        s.flush()

        def wo(sr: ServiceRequest, created: datetime, **fields: Any) -> WorkOrder:
            row = WorkOrder(service_request_id=sr.id, created_at=created, updated_at=created,
                            **{"trade": "plumbing", "description": "Fix it.", **fields})
            s.add(row)
            return row

        leak = wo(main, ago(days=4), status="in_progress", vendor_id=ace.id, priority="urgent",
                  title="Kitchen sink leak")
        crack = wo(main, ago(hours=30), status="draft", trade="drywall",
                   title="Crack over the door", suggested_vendor_id=drywall.id)
        caulk = wo(main, ago(hours=30), status="draft", trade="other",
                   title="Tub caulk peeling")
        far = wo(north, ago(hours=30), status="draft", title="North leak")
        s.flush()
        s.add(HistoryEvent(work_order_id=leak.id, at=ago(days=3), event="vendor_notified",
                           actor=PAT, detail="sent"))
        return Stuck(leak.id, crack.id, caulk.id, far.id)


def followup_mail(database: Database, staff: str) -> OutboundMessage:
    [row] = outbound(database, OutboundMessage.kind == "digest_followup",
                     OutboundMessage.to_addr == staff)
    return row


async def deliver(database: Database, config: Config, *, sender: str, to: str, body: str,
                  division: str = "main", in_reply_to: str | None = None) -> None:
    """One mail fetched from ``division``'s mailbox, through the real Processor."""
    extra = f"In-Reply-To: <{in_reply_to}>\n" if in_reply_to else ""
    raw = (f"From: Someone <{sender}>\nTo: {to}\nSubject: Re: Follow-up\n"
           f"Message-ID: <f{next(_uids)}@mail.example>\n{extra}"
           f"Content-Type: text/plain; charset=utf-8\n\n{body}\n\n"
           f"On Mon, Acme wrote:\n> accept all\n").encode()
    await process_mail(database, config, raw,
                       mailbox=mailbox_key(config.division(division).mailbox),
                       clock=lambda: NOW + timedelta(minutes=5))


def state(database: Database, wo_id: int) -> tuple[str, str | None, bool]:
    with database.session() as s:
        wo = s.get(WorkOrder, wo_id)
        assert wo is not None
        return wo.status, wo.vendor.name if wo.vendor else None, wo.needs_vendor


def receipts(database: Database, staff: str) -> list[str]:
    return [body(r, "plain") for r in outbound(database, OutboundMessage.kind == "receipt",
                                               OutboundMessage.to_addr == staff)]


def test_followup_digest_is_a_numbered_digest_per_division(tmp_path: Path,
                                                           database: Database) -> None:
    config = two_division_config(tmp_path, database)
    stuck = build_stuck(database)
    with database.session() as s:
        queue_followup_digest(s, config, NOW)
    with database.session() as s:
        digests = {d.division: d for d in s.scalars(select(Digest))}
        tokens = {(t.address, t.digest_id) for t in s.scalars(select(ReplyToken))}
    assert set(digests) == {"main", "north"}
    main, north = digests["main"], digests["north"]
    # Urgent first (Ace's group), then the vendorless group, oldest (then lowest) first.
    assert main.work_order_ids == [stuck.leak, stuck.crack, stuck.caulk]
    assert north.work_order_ids == [stuck.north]
    assert tokens == {(PAT, main.id), (LEE, main.id), (NORA, north.id)}
    text = body(followup_mail(database, PAT), "plain")
    assert f"follow-up digest #{main.id}" in text
    shown = re.findall(r"^\s*(\d+)\. (WO-\d+)", text, re.MULTILINE)
    first = list(dict.fromkeys(shown))
    assert first == [(str(n), f"WO-{i}") for n, i in enumerate(main.work_order_ids, 1)], \
        "numbered in the order shown; an item shown again keeps its number"
    assert len(shown) == 6, "each item by vendor and by property"
    msg = as_email(followup_mail(database, PAT))
    assert str(msg["Reply-To"]).startswith("warranty+")
    north_msg = as_email(followup_mail(database, NORA))
    assert str(north_msg["Reply-To"]).startswith("north+")
    assert north_msg["From"].addresses[0].addr_spec == NORTH
    assert "North leak" in body(followup_mail(database, NORA), "plain")
    assert "North leak" not in text


def test_a_followup_digest_is_not_an_approval_digest(tmp_path: Path,
                                                     database: Database) -> None:
    """Drafts it lists still go into the next scheduled approval digest."""
    config = two_division_config(tmp_path, database, digest="0 8 * * *")
    stuck = build_stuck(database)
    with database.session() as s:
        assert queue_followup_digest(s, config, NOW)
    with database.session() as s:
        assert queue_pending_digest(s, config, NOW + timedelta(minutes=1), "main")
    with database.session() as s:
        approval = s.scalars(select(Digest).where(Digest.division == "main")
                             .order_by(Digest.id.desc())).first()
        assert approval is not None
        assert set(approval.work_order_ids) >= {stuck.crack, stuck.caulk}


async def test_a_reply_to_the_followup_digest_acts_on_its_items(tmp_path: Path,
                                                                database: Database) -> None:
    config = two_division_config(tmp_path, database)
    stuck = build_stuck(database)
    with database.session() as s:
        queue_followup_digest(s, config, NOW)
    pat_to = str(as_email(followup_mail(database, PAT))["Reply-To"])
    before = state(database, stuck.caulk), state(database, stuck.crack)

    # Someone else on Pat's reply address: Nora (staff of north only), the homeowner,
    # Lee (main staff, but the token is Pat's).  Nothing happens.
    for sender in (NORA, DANA, LEE):
        await deliver(database, config, sender=sender, to=pat_to,
                      body="assign 3 to Drywall Pros\naccept 2")
    assert (state(database, stuck.caulk), state(database, stuck.crack)) == before
    with database.session() as s:
        refused = [e.actor for e in s.scalars(select(HistoryEvent).where(
            HistoryEvent.event == "command_refused"))]
    assert sorted(refused) == sorted([NORA, DANA, LEE])
    assert receipts(database, PAT) == []

    # Pat: item numbers of the follow-up digest, as on an approval digest.
    await deliver(database, config, sender=PAT, to=pat_to, body=(
        "assign 3 Drywall Pros\naccept 2\nnote 1: called Ace, they come Friday\n"
        "complete 1"))
    assert state(database, stuck.caulk) == ("draft", "Drywall Pros", False)
    assert state(database, stuck.crack) == ("in_progress", "Drywall Pros", False)
    assert state(database, stuck.leak)[0] == "completed"
    assert state(database, stuck.north) == ("draft", None, False)
    with database.session() as s:
        note = s.scalars(select(HistoryEvent).where(HistoryEvent.event == "note")).one()
    assert (note.work_order_id, note.actor) == (stuck.leak, PAT)
    [receipt] = receipts(database, PAT)
    assert f"WO-{stuck.crack} accepted" in receipt and "Drywall Pros" in receipt

    # A command that does not fit the item's state: the existing error, nothing applied.
    await deliver(database, config, sender=PAT, to=pat_to,
                  body="assign 3 to Ace Plumbing\naccept 1")
    assert state(database, stuck.caulk) == ("draft", "Drywall Pros", False)
    refusal = receipts(database, PAT)[-1]
    assert f"item 1 (WO-{stuck.leak}) is already completed and cannot be accepted" in refusal

    # Lee's client dropped the plus-address: the follow-up digest's Message-ID suffices.
    lee_mail = followup_mail(database, LEE)
    await deliver(database, config, sender=LEE, to="warranty@acme-homes.example",
                  in_reply_to=lee_mail.message_id, body="reject 3: homeowner maintenance")
    assert state(database, stuck.caulk)[0] == "rejected"

    # Nora answers her own (north) follow-up digest: item 1 there is the north draft.
    nora_to = str(as_email(followup_mail(database, NORA))["Reply-To"])
    await deliver(database, config, sender=NORA, to=nora_to, division="north",
                  body="reject 1: not covered")
    assert state(database, stuck.north)[0] == "rejected"
