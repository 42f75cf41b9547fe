"""``wo|sr list|show``: filters, JSON contract, ordering, follow-ups, and no query per row."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event

from warrantyd.daemon.reports import (
    BadFilter,
    FollowupThresholds,
    UnknownReference,
    build_sr_filter,
    build_wo_filter,
    needs_followup,
    parse_since,
    render_sr,
    render_sr_table,
    render_wo,
    render_wo_table,
    sr_list,
    sr_show,
    wo_list,
    wo_show,
)
from warrantyd.storage.db import Database
from warrantyd.storage.models import (
    Attachment,
    HistoryEvent,
    Home,
    Homeowner,
    InboundMessage,
    ServiceRequest,
    Vendor,
    WorkOrder,
)
from warrantyd.storage.queries import WorkOrderFilter

NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)

WO_KEYS = {"id", "status", "service_request", "trade", "description", "priority", "vendor",
           "scheduled_for", "history"}
WO_EXTRA_KEYS = {"title", "location", "photos", "coverage_hint", "window_end", "flags",
                 "needs_vendor", "suggested_vendor", "confidence", "engine", "emergency_reason",
                 "merged_into", "property", "homeowner", "photo_count", "created_at",
                 "updated_at", "completed_at", "last_vendor_reply_at", "division"}
SR_KEYS = {"id", "status", "homeowner", "property", "work_orders", "history"}
SR_EXTRA_KEYS = {"subject", "created_at", "updated_at", "resolved_at", "work_order_count",
                 "work_order_statuses", "engine", "body", "language", "usage", "attachments",
                 "division"}
HISTORY_KEYS = {"at", "event", "actor", "detail", "internal"}


@dataclass
class Data:
    """Ids of the small world the tests look at."""

    sr_oak: int
    sr_elm: int
    sr_stranger: int
    wo: dict[str, int]


def ago(**kwargs: float) -> datetime:
    return NOW - timedelta(**kwargs)


def build(db: Database) -> Data:
    """Two homes, three vendors, three requests, work orders in every state."""
    with db.session() as s:
        ace = Vendor(name="Ace Plumbing", email="office@ace.example", trades=["plumbing"],
                     communities=[], aliases=["Drip Kings"])
        volt = Vendor(name="Volt Electric", email="jobs@volt.example", trades=["electrical"],
                      communities=[], aliases=[])
        dry = Vendor(name="Dry Rite", email="dry@rite.example", trades=["drywall"],
                     communities=[], aliases=[])
        oak = Home(address="12 Oak Ridge Dr", community="Oak Ridge",
                   closing_date=date(2024, 5, 1))
        elm = Home(address="7 Elm Ct", community="Elm Park")
        ann = Homeowner(name="Ann Lee", email="ann@example.com", home=oak)
        cy = Homeowner(name="Cy Park", email="cy@example.net", home=elm)
        s.add_all([ace, volt, dry, oak, elm, ann, cy])
        s.flush()
        sr_oak = ServiceRequest(status="in_progress", homeowner=ann, home=oak,
                                requester_email="ann@example.com", requester_name="Ann Lee",
                                subject="Leak and outlet", body="The sink leaks.\nOutlet dead.",
                                engine="offline", usage={"input_tokens": 120, "output_tokens": 40},
                                created_at=ago(days=5), updated_at=ago(days=5))
        sr_elm = ServiceRequest(status="open", homeowner=cy, home=elm,
                                requester_email="cy@example.net", requester_name="Cy Park",
                                subject="Crack", created_at=ago(hours=30), updated_at=ago(hours=30))
        sr_stranger = ServiceRequest(status="open", requester_email="zed@example.org",
                                     requester_name="Zed", subject="Door",
                                     created_at=ago(hours=2), updated_at=ago(hours=2))
        s.add_all([sr_oak, sr_elm, sr_stranger])
        s.flush()
        inbound = InboundMessage(mailbox="", sha256="0" * 64, raw=b"x", size=1)
        s.add(inbound)
        s.flush()
        photo = Attachment(inbound_message_id=inbound.id, service_request_id=sr_oak.id,
                           filename="sink.jpg", content_type="image/jpeg", size=2048,
                           sha256="1" * 64)
        s.add(photo)
        s.flush()

        def wo(sr: ServiceRequest, created: datetime, **fields: Any) -> WorkOrder:
            fields.setdefault("trade", "plumbing")
            fields.setdefault("description", "Fix it.")
            row = WorkOrder(service_request_id=sr.id, created_at=created, updated_at=created,
                            **fields)
            s.add(row)
            return row

        wos = {
            # oak: sent to Ace 3 days ago, no reply since
            "leak": wo(sr_oak, ago(days=5), status="in_progress", vendor=ace, priority="urgent",
                       title="Kitchen sink leak", location="kitchen", photos=[photo.id],
                       description="Leak under the kitchen sink; replace the trap. " * 3),
            # oak: Volt replied after it went out, scheduled in the future: fine
            "outlet": wo(sr_oak, ago(days=5, minutes=-1), status="in_progress", vendor=volt,
                         trade="electrical", scheduled_for=NOW + timedelta(days=1),
                         last_vendor_reply_at=ago(days=1)),
            # oak: Volt's visit was yesterday and nothing says it is done
            "fan": wo(sr_oak, ago(days=4), status="in_progress", vendor=volt, trade="electrical",
                      scheduled_for=ago(days=1), last_vendor_reply_at=ago(days=2)),
            # oak: done, though the vendor's mail once bounced
            "done": wo(sr_oak, ago(days=4, minutes=-1), status="completed", vendor=ace,
                       completed_at=ago(days=1), flags=["vendor email bounced"]),
            # elm: draft waiting 30 hours, Dry Rite suggested
            "crack": wo(sr_elm, ago(hours=30), status="draft", trade="drywall",
                        suggested_vendor=dry, description="Crack over the door."),
            # elm: in progress, but the vendor's mail bounced
            "bounced": wo(sr_elm, ago(hours=29), status="in_progress", vendor=dry,
                          trade="drywall", flags=["vendor email bounced"],
                          last_vendor_reply_at=ago(hours=1)),
            # stranger: a fresh draft
            "door": wo(sr_stranger, ago(hours=2), status="draft", trade="windows_doors",
                       needs_vendor=True),
            # stranger: dismissed
            "caulk": wo(sr_stranger, ago(hours=1), status="rejected", trade="other"),
        }
        s.flush()
        events = [
            (sr_oak.id, None, ago(days=5), "request_received", "ann@example.com", "", False),
            (sr_oak.id, wos["leak"].id, ago(days=5, seconds=-1), "drafted", "system", "", False),
            (sr_oak.id, wos["leak"].id, ago(days=3), "accepted", "pat@acme.example",
             "sent to Ace Plumbing", False),
            (None, wos["leak"].id, ago(days=2), "note", "pat@acme.example", "gate code 4471",
             True),
            (sr_oak.id, wos["outlet"].id, ago(days=3), "accepted", "pat@acme.example", "", False),
            (sr_oak.id, wos["fan"].id, ago(days=3), "accepted", "pat@acme.example", "", False),
            (sr_elm.id, wos["bounced"].id, ago(hours=20), "accepted", "pat@acme.example", "",
             False),
        ]
        # Insert out of time order: history must come back ordered by time, not by id.
        for sr_id, wo_id, at, name, actor, detail, internal in reversed(events):
            s.add(HistoryEvent(service_request_id=sr_id, work_order_id=wo_id, at=at,
                               event=name, actor=actor, detail=detail, internal=internal))
        s.flush()
        return Data(sr_oak.id, sr_elm.id, sr_stranger.id, {k: v.id for k, v in wos.items()})


@pytest.fixture
def data(database: Database) -> Data:
    return build(database)


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return [r["id"] for r in rows]


def wo_ref(data: Data, *names: str) -> list[str]:
    return [f"WO-{data.wo[n]}" for n in names]


# --- wo list --------------------------------------------------------------------------------

def test_wo_list_is_newest_first(database: Database, data: Data) -> None:
    assert ids(wo_list(database)) == wo_ref(data, "caulk", "door", "bounced", "crack", "done",
                                            "fan", "outlet", "leak")


def test_wo_list_filters(database: Database, data: Data) -> None:
    def listed(**options: Any) -> list[str]:
        return ids(wo_list(database, build_wo_filter(now=NOW, **options)))

    assert listed(property="OAK") == wo_ref(data, "done", "fan", "outlet", "leak")
    assert listed(property="elm park") == wo_ref(data, "bounced", "crack")
    assert listed(property="7 elm") == wo_ref(data, "bounced", "crack")
    assert listed(property="nowhere") == []
    assert listed(vendor="ace") == wo_ref(data, "done", "leak")
    assert listed(vendor="drip kings") == wo_ref(data, "done", "leak")       # alias
    assert listed(vendor="VOLT.example") == wo_ref(data, "fan", "outlet")    # email
    assert listed(vendor="dry rite") == wo_ref(data, "bounced", "crack")     # crack: suggested
    assert listed(vendor="nobody") == []
    assert listed(status="in-progress") == wo_ref(data, "bounced", "fan", "outlet", "leak")
    assert listed(status="draft,rejected") == wo_ref(data, "caulk", "door", "crack")
    assert listed(status="open") == wo_ref(data, "door", "bounced", "crack", "fan", "outlet",
                                           "leak")
    assert listed(sr=f"sr-{data.sr_elm}") == wo_ref(data, "bounced", "crack")
    assert listed(since="1d") == wo_ref(data, "caulk", "door")
    assert listed(property="oak", vendor="volt", status="in_progress") == wo_ref(
        data, "fan", "outlet")


def test_wo_list_pages(database: Database, data: Data) -> None:
    everything = ids(wo_list(database, WorkOrderFilter(limit=None)))
    assert ids(wo_list(database, WorkOrderFilter(limit=3))) == everything[:3]
    assert ids(wo_list(database, WorkOrderFilter(limit=3, offset=3))) == everything[3:6]
    assert ids(wo_list(database, WorkOrderFilter(limit=3, offset=6))) == everything[6:]


def test_bad_filters_say_what_would_work() -> None:
    with pytest.raises(BadFilter, match="draft, in_progress, completed, rejected"):
        build_wo_filter(status="pending")
    with pytest.raises(BadFilter, match="2025-03-01"):
        build_wo_filter(since="last tuesday")
    with pytest.raises(BadFilter, match="1 or more"):
        build_wo_filter(limit=0)
    with pytest.raises(UnknownReference, match="service request reference"):
        build_wo_filter(sr="SR-x")
    with pytest.raises(BadFilter, match="open, in_progress, resolved"):
        build_sr_filter(status="draft")


def test_list_rows_are_plain_json_data(database: Database, data: Data) -> None:
    import json

    row = wo_list(database, WorkOrderFilter(service_request_id=data.sr_oak))[-1]
    assert json.loads(json.dumps(row)) == row
    assert set(row) == (WO_KEYS | WO_EXTRA_KEYS) - {"history", "photos"}
    assert row["vendor"] == {"name": "Ace Plumbing", "email": "office@ace.example"}
    assert row["property"] == {"address": "12 Oak Ridge Dr", "community": "Oak Ridge",
                               "closing_date": "2024-05-01"}
    assert row["photo_count"] == 1


# --- wo show --------------------------------------------------------------------------------

def test_wo_show_contract(database: Database, data: Data) -> None:
    shown = wo_show(database, f"wo-{data.wo['leak']}")
    assert set(shown) == WO_KEYS | WO_EXTRA_KEYS
    assert shown["id"] == f"WO-{data.wo['leak']}"
    assert shown["service_request"] == f"SR-{data.sr_oak}"
    assert (shown["status"], shown["trade"], shown["priority"]) == (
        "in_progress", "plumbing", "urgent")
    assert shown["vendor"] == {"name": "Ace Plumbing", "email": "office@ace.example"}
    assert shown["scheduled_for"] is None
    assert shown["photos"] == [{"id": shown["photos"][0]["id"], "filename": "sink.jpg",
                                "content_type": "image/jpeg", "size": 2048}]
    history = shown["history"]
    assert all(set(h) == HISTORY_KEYS for h in history)
    assert [h["event"] for h in history] == ["drafted", "accepted", "note"]
    assert [h["internal"] for h in history] == [False, False, True]
    assert history[1] == {"at": ago(days=3).isoformat(), "event": "accepted",
                          "actor": "pat@acme.example", "detail": "sent to Ace Plumbing",
                          "internal": False}


def test_wo_show_scheduled_and_unassigned(database: Database, data: Data) -> None:
    outlet = wo_show(database, str(data.wo["outlet"]))
    assert outlet["scheduled_for"] == (NOW + timedelta(days=1)).isoformat()
    assert datetime.fromisoformat(outlet["scheduled_for"]) == NOW + timedelta(days=1)
    crack = wo_show(database, data.wo["crack"])
    assert crack["vendor"] is None and crack["history"] == []
    assert crack["suggested_vendor"] == {"name": "Dry Rite", "email": "dry@rite.example"}


@pytest.mark.parametrize("ref", ["WO-x", "WO-999", "SR-1", "", "WO-0"])
def test_bad_work_order_refs(database: Database, data: Data, ref: str) -> None:
    with pytest.raises(LookupError) as caught:
        wo_show(database, ref)
    message = str(caught.value)
    assert isinstance(caught.value, UnknownReference)
    if ref == "WO-999":
        newest = max(data.wo.values())
        assert message == f"WO-999 does not exist (the newest work order is WO-{newest})"
    if ref == "SR-1":
        assert "is a service request" in message and "sr show SR-1" in message


def test_unknown_ref_on_empty_database(database: Database) -> None:
    with pytest.raises(UnknownReference, match="there is no service request yet"):
        sr_show(database, "SR-1")


# --- sr list / show -------------------------------------------------------------------------

def test_sr_list_and_filters(database: Database, data: Data) -> None:
    def listed(**options: Any) -> list[str]:
        return ids(sr_list(database, build_sr_filter(now=NOW, **options)))

    everything = [f"SR-{data.sr_stranger}", f"SR-{data.sr_elm}", f"SR-{data.sr_oak}"]
    assert listed() == everything
    assert listed(status="open") == everything[:2]
    assert listed(property="oak ridge") == everything[2:]
    assert listed(homeowner="cy park") == [everything[1]]
    assert listed(homeowner="zed@") == [everything[0]]      # not a known homeowner
    assert listed(since="2d") == everything[:2]
    assert listed(limit=1, offset=1) == [everything[1]]
    row = sr_list(database)[-1]
    assert row["work_order_count"] == 4
    assert row["work_order_statuses"] == {"completed": 1, "in_progress": 3}


def test_sr_show_contract(database: Database, data: Data) -> None:
    shown = sr_show(database, f"SR-{data.sr_oak}")
    assert set(shown) == SR_KEYS | SR_EXTRA_KEYS
    assert shown["homeowner"] == {"name": "Ann Lee", "email": "ann@example.com"}
    assert shown["property"]["address"] == "12 Oak Ridge Dr"
    assert shown["property"]["community"] == "Oak Ridge"
    assert shown["usage"] == {"input_tokens": 120, "output_tokens": 40}
    assert shown["engine"] == "offline"
    assert shown["attachments"] == [{"id": shown["attachments"][0]["id"], "filename": "sink.jpg",
                                     "content_type": "image/jpeg", "size": 2048}]
    assert [w["id"] for w in shown["work_orders"]] == wo_ref(data, "leak", "outlet", "fan",
                                                             "done")
    for w in shown["work_orders"]:
        assert set(w) == WO_KEYS | WO_EXTRA_KEYS
    assert [h["event"] for h in shown["work_orders"][0]["history"]] == [
        "drafted", "accepted", "note"]
    # The whole timeline: request and work order events, oldest first, internal marked.
    timeline = shown["history"]
    assert all(set(h) == HISTORY_KEYS | {"work_order"} for h in timeline)
    assert [h["at"] for h in timeline] == sorted(h["at"] for h in timeline)
    assert timeline[0]["event"] == "request_received" and timeline[0]["work_order"] is None
    assert [h["internal"] for h in timeline].count(True) == 1
    assert len(timeline) == 6


def test_sr_show_without_a_known_home(database: Database, data: Data) -> None:
    shown = sr_show(database, str(data.sr_stranger))
    assert shown["property"] is None
    assert shown["homeowner"] == {"name": "Zed", "email": "zed@example.org"}
    assert shown["history"] == [] and shown["attachments"] == [] and shown["usage"] == {}


# --- what is stuck --------------------------------------------------------------------------

def test_needs_followup_reasons(database: Database, data: Data) -> None:
    rows = needs_followup(database, now=NOW)
    reasons = {r["id"]: [x["code"] for x in r["followup_reasons"]] for r in rows}
    assert reasons == {
        f"WO-{data.wo['leak']}": ["no_vendor_reply"],
        f"WO-{data.wo['fan']}": ["schedule_passed"],
        f"WO-{data.wo['crack']}": ["draft_waiting"],
        f"WO-{data.wo['bounced']}": ["flagged"],
    }
    assert ids(rows) == wo_ref(data, "bounced", "crack", "fan", "leak")   # newest first
    by_id = {r["id"]: r["followup_reason"] for r in rows}
    assert by_id[f"WO-{data.wo['leak']}"] == (
        "no reply from Ace Plumbing in 3 days since it was sent")
    assert by_id[f"WO-{data.wo['crack']}"] == "draft waiting for a staff decision for 30 hours"
    assert by_id[f"WO-{data.wo['bounced']}"] == "vendor email bounced"
    assert by_id[f"WO-{data.wo['fan']}"] == "scheduled for 2025-03-09 12:00 and not completed"


def test_needs_followup_thresholds_and_filters(database: Database, data: Data) -> None:
    relaxed = FollowupThresholds(draft_hours=48, vendor_reply_hours=24 * 4, overdue_hours=36)
    assert ids(needs_followup(database, now=NOW, thresholds=relaxed)) == wo_ref(data, "bounced")
    strict = FollowupThresholds.from_mapping({"draft_hours": 1, "vendor_reply_hours": 1})
    assert wo_ref(data, "door")[0] in ids(needs_followup(database, now=NOW, thresholds=strict))
    # Through wo list, combined with the other filters.
    rows = wo_list(database, build_wo_filter(needs_followup=True, vendor="volt"), now=NOW)
    assert ids(rows) == wo_ref(data, "fan")
    rows = wo_list(database, build_wo_filter(needs_followup=True, status="draft"), now=NOW)
    assert ids(rows) == wo_ref(data, "crack")
    rows = wo_list(database, build_wo_filter(needs_followup=True, status="completed"), now=NOW)
    assert rows == []
    with pytest.raises(ValueError, match="unknown key"):
        FollowupThresholds.from_mapping({"draft_days": 1})


def test_followup_clock_starts_when_the_job_went_out(database: Database, data: Data) -> None:
    """A job drafted long ago but sent to the vendor an hour ago is not yet overdue."""
    with database.session() as s:
        s.add(HistoryEvent(work_order_id=data.wo["leak"], at=ago(hours=1), event="reassigned",
                           actor="pat@acme.example"))
    assert wo_ref(data, "leak")[0] not in ids(needs_followup(database, now=NOW))


# --- no query per row -----------------------------------------------------------------------

@contextmanager
def counting(db: Database) -> Iterator[list[str]]:
    statements: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", before)
    try:
        yield statements
    finally:
        event.remove(db.engine, "before_cursor_execute", before)


def add_many(db: Database, n: int, start: int = 0) -> None:
    """``n`` more requests, each with a work order, vendor, home, homeowner and history."""
    with db.session() as s:
        for i in range(start, start + n):
            home = Home(address=f"{i} Many St", community="Many")
            owner = Homeowner(name=f"Owner {i}", email=f"o{i}@example.com", home=home)
            vendor = Vendor(name=f"Vendor {i}", email=f"v{i}@example.com", trades=[],
                            communities=[], aliases=[])
            # A different suggested vendor, so no relationship is satisfied by another's load.
            other = Vendor(name=f"Other {i}", email=f"other{i}@example.com", trades=[],
                           communities=[], aliases=[])
            sr = ServiceRequest(home=home, homeowner=owner, requester_email=owner.email,
                                created_at=ago(days=10, minutes=i))
            wo = WorkOrder(service_request=sr, trade="paint", description=f"Paint {i}",
                           status="in_progress", vendor=vendor, suggested_vendor=other,
                           created_at=ago(days=10, minutes=i))
            s.add_all([home, owner, vendor, other, sr, wo])
            s.flush()
            s.add(HistoryEvent(work_order_id=wo.id, service_request_id=sr.id,
                               at=ago(days=9), event="accepted", actor="pat@acme.example"))


def test_listing_does_not_query_per_row(database: Database) -> None:
    add_many(database, 5)
    with counting(database) as few:
        small = wo_list(database, WorkOrderFilter(limit=None))
        sr_small = sr_list(database, build_sr_filter(limit=None))
        stuck_small = needs_followup(database, now=NOW)
    add_many(database, 45, start=5)
    with counting(database) as many:
        big = wo_list(database, WorkOrderFilter(limit=None))
        sr_big = sr_list(database, build_sr_filter(limit=None))
        stuck_big = needs_followup(database, now=NOW)
    assert (len(small), len(big)) == (5, 50)
    assert (len(sr_small), len(sr_big)) == (5, 50)
    assert (len(stuck_small), len(stuck_big)) == (5, 50)
    assert all(r["vendor"] and r["suggested_vendor"] and r["property"] and r["homeowner"]
               for r in big)
    selects = [s for s in many if s.lstrip().upper().startswith("SELECT")]
    assert len(many) == len(few), many
    assert len(selects) <= 6, selects


def test_vendor_filter_costs_one_extra_statement(database: Database) -> None:
    add_many(database, 20)
    with counting(database) as statements:
        rows = wo_list(database, build_wo_filter(vendor="vendor 1", limit=None))
    assert {r["vendor"]["name"] for r in rows} == {"Vendor 1", *(f"Vendor {i}"
                                                                 for i in range(10, 20))}
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 2


# --- text for people ------------------------------------------------------------------------

def test_wo_table(database: Database, data: Data) -> None:
    rows = wo_list(database)
    text = render_wo_table(rows, width=100)
    lines = text.splitlines()
    assert lines[0].split() == ["WO", "STATUS", "PRIORITY", "TRADE", "VENDOR", "PROPERTY",
                                "SCHEDULED", "DESCRIPTION"]
    assert len(lines) == len(rows) + 1
    assert all(len(line) <= 100 for line in lines)
    leak = next(line for line in lines if line.startswith(f"WO-{data.wo['leak']} "))
    assert "Kitchen sink leak" in leak and "12 Oak Ridg…" in leak
    roomy = render_wo_table(rows, width=160)
    assert "12 Oak Ridge Dr, Oak Ridge  " in roomy and "…" not in roomy
    crack = next(line for line in roomy.splitlines() if line.startswith(f"WO-{data.wo['crack']} "))
    assert "(Dry Rite?)" in crack
    # Long descriptions are cut with an ellipsis, never wrapped.
    wide = render_wo_table([{**rows[-1], "title": "", "description": "word " * 80}], width=100)
    assert wide.splitlines()[1].endswith("…") and len(wide.splitlines()) == 2
    assert render_wo_table([]) == "No work orders match."
    stuck = render_wo_table(needs_followup(database, now=NOW), width=140)
    assert stuck.splitlines()[0].split()[-1] == "WHY"
    assert "vendor email bounced" in stuck


def test_times_show_in_the_company_time_zone(database: Database, data: Data) -> None:
    shown = wo_show(database, data.wo["fan"])
    denver = render_wo(shown, tz=ZoneInfo("America/Denver"))
    # 12:00 UTC on the day Denver moves to daylight time (UTC-6).
    assert re.search(r"^Scheduled: +2025-03-09 06:00$", denver, re.MULTILINE), denver


def test_show_blocks(database: Database, data: Data) -> None:
    text = render_wo(wo_show(database, data.wo["leak"]))
    assert text.splitlines()[0] == f"WO-{data.wo['leak']}  Kitchen sink leak"
    assert "Ace Plumbing <office@ace.example>" in text
    assert "Photos:" in text and "sink.jpg" in text
    assert "note  (pat@acme.example) [internal]" in text and "gate code 4471" in text
    sr_text = render_sr(sr_show(database, data.sr_oak))
    assert f"SR-{data.sr_oak}  Leak and outlet" in sr_text
    assert "Ann Lee <ann@example.com>" in sr_text and "input_tokens 120" in sr_text
    assert f"accepted WO-{data.wo['leak']}" in sr_text
    table = render_sr_table(sr_list(database))
    assert table.splitlines()[0].split() == ["SR", "STATUS", "RECEIVED", "HOMEOWNER",
                                             "PROPERTY", "WOS", "SUBJECT"]
    assert "(unknown)" in table


def test_parse_since() -> None:
    denver = ZoneInfo("America/Denver")
    assert parse_since("2025-03-01", tz=denver) == datetime(2025, 3, 1, tzinfo=denver)
    assert parse_since("3/1/2025") == datetime(2025, 3, 1, tzinfo=UTC)
    assert parse_since("48h", now=NOW) == NOW - timedelta(hours=48)
    assert parse_since("2w", now=NOW) == NOW - timedelta(weeks=2)
    assert parse_since("today", now=NOW, tz=denver) == datetime(2025, 3, 10, tzinfo=denver)
    assert parse_since("yesterday", now=NOW) == datetime(2025, 3, 9, tzinfo=UTC)
    assert parse_since("2025-03-01T08:00:00+00:00") == datetime(2025, 3, 1, 8, tzinfo=UTC)
