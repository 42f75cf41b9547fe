"""A plumbing job and its vendors, as the vendor-loop and web tests start from it.

:func:`make_job` files Dana's request with two draft work orders, photos, an internal note
and marked strings ("...-SECRET") a vendor must never see; :func:`send_to` assigns one to a
vendor the way the ``assign`` command does.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from io import BytesIO
from pathlib import Path

from config_builder import DANA, ELM_STREET, US, build_config
from config_builder import PAT as STAFF
from PIL import Image
from sqlalchemy import select

from warrantyd.daemon.config import Config
from warrantyd.daemon.drafters.base import DraftIssue, DraftRequest, DraftResult
from warrantyd.daemon.process import Processor
from warrantyd.daemon.vendors import add_access_note, assign_vendor
from warrantyd.storage.blobs import BlobStore
from warrantyd.storage.db import Database
from warrantyd.storage.inbound import store_inbound
from warrantyd.storage.models import (
    Attachment,
    HistoryEvent,
    Home,
    Homeowner,
    InboundMessage,
    ServiceRequest,
    Vendor,
    WorkOrder,
    utcnow,
)

__all__ = ["ACE", "BOB", "DANA", "STAFF", "US", "FakeDrafter", "Job", "NoDrafter", "image_bytes",
           "make_config", "make_job", "process_mail", "send_to"]

ACE = "ace@plumb.example.net"
BOB = "bob@drywall.example.org"


class NoDrafter:
    engine = "none"

    async def draft(self, request: DraftRequest) -> DraftResult:
        return DraftResult(issues=[], engine=self.engine)


class FakeDrafter:
    """One plumbing issue per line of text; a line with "gas" is an emergency; "boom"
    raises; every issue suggests the vendor ``suggest``.  Keeps the requests it saw."""

    engine = "fake"

    def __init__(self, suggest: str | None = None) -> None:
        self.suggest = suggest
        self.requests: list[DraftRequest] = []

    async def draft(self, request: DraftRequest) -> DraftResult:
        self.requests.append(request)
        if "boom" in request.text:
            raise RuntimeError("drafter exploded")
        issues = [DraftIssue(trade="plumbing", priority="emergency" if "gas" in line else "routine",
                             location=None, title=line.strip()[:60], description=line.strip(),
                             suggested_vendor=self.suggest,
                             emergency_reason="gas smell" if "gas" in line else None)
                  for line in request.text.splitlines() if len(line.strip()) > 12]
        return DraftResult(issues=issues, engine=self.engine, usage={"input_tokens": 5})


_uids = itertools.count(10_000)


async def process_mail(database: Database, config: Config, raw: bytes, *, mailbox: str,
                       clock: Callable[[], datetime] | None = None) -> InboundMessage:
    """``raw`` as fetched from ``mailbox`` (an ``address/folder`` key), through the real
    Processor (no drafter); the inbound row afterwards, which must not have failed."""
    with database.session() as s:
        row, _ = store_inbound(s, mailbox=mailbox, uidvalidity=1, uid=next(_uids), raw=raw)
        inbound_id = row.id
    processor = (Processor(config, database, NoDrafter(), clock=clock) if clock is not None
                 else Processor(config, database, NoDrafter()))
    await processor.process_pending()
    with database.session() as s:
        row = s.get(InboundMessage, inbound_id)
        assert row is not None and row.status in ("done", "ignored"), row and row.last_error
        s.expunge(row)
        return row


def inbound_status(database: Database, inbound_id: int) -> str:
    """The status of one inbound row, read in a transaction of its own."""
    with database.session() as s:
        row = s.get(InboundMessage, inbound_id)
        assert row is not None
        return row.status


def make_config(tmp_path: Path, database: Database, **drafter: object) -> Config:
    """Two vendors, Dana's home and a web section, synced into the database."""
    return build_config(
        tmp_path, database, drafter=dict(drafter), staff={"addresses": [STAFF]},
        web={"listen": "127.0.0.1:0", "base_url": "https://warranty.acme-homes.example"},
        vendors=[{"name": "Ace Plumbing", "email": ACE, "trades": ["plumbing"]},
                 {"name": "Bob's Drywall", "email": BOB, "trades": ["drywall"]}],
        homes=[ELM_STREET])


def image_bytes(size: tuple[int, int], fmt: str) -> bytes:
    image = Image.new("RGB", size, (200, 120, 40))
    for x in range(0, size[0], 7):  # some detail so the encoder has work to do
        image.putpixel((x, x % size[1]), (0, 0, 0))
    out = BytesIO()
    image.save(out, fmt)
    return out.getvalue()


@dataclass
class Job:
    sr_id: int
    wo_id: int
    other_wo_id: int


def make_job(database: Database, config: Config) -> Job:
    """A request with two work orders (plumbing with two photos, drywall with one)."""
    blobs = BlobStore(config.storage.data_dir)
    small, wide = image_bytes((60, 40), "PNG"), image_bytes((2600, 900), "JPEG")
    hall = image_bytes((30, 30), "PNG")
    with database.session() as s:
        inbound, _ = store_inbound(s, mailbox="m/INBOX", uidvalidity=1, uid=999,
                                   raw=b"From: dana@example.com\n\nLeak\n")
        home = s.scalars(select(Home)).one()
        owner = s.scalars(select(Homeowner)).one()
        sr = ServiceRequest(status="open", requester_email=DANA, requester_name="Dana Whitfield",
                            homeowner=owner, home=home, subject="Leak and nail pop",
                            body="The sink leaks.\nCall me at 303-555-0142 any time.",
                            inbound_message_id=inbound.id)
        s.add(sr)
        s.flush()
        rows = [Attachment(inbound_message_id=inbound.id, service_request_id=sr.id,
                           filename=name, content_type=ctype, size=len(data),
                           sha256=blobs.put(data))
                for name, ctype, data in (("sink.png", "image/png", small),
                                          ("wide.jpg", "image/jpeg", wide),
                                          ("hall.png", "image/png", hall))]
        s.add_all(rows)
        s.flush()
        wo = WorkOrder(service_request_id=sr.id, status="draft", trade="plumbing",
                       priority="urgent", location="kitchen", title="Leak under kitchen sink",
                       description="Water drips from the P-trap under the kitchen sink.",
                       photos=[rows[0].id, rows[1].id],
                       coverage_hint="COVERAGE-SECRET: 2-year plumbing", confidence=0.42,
                       flags=["FLAG-SECRET"], emergency_reason="EMERGENCY-REASON-SECRET")
        other = WorkOrder(service_request_id=sr.id, status="draft", trade="drywall",
                          title="Nail pop in hallway", description="OTHER-JOB-SECRET nail pop",
                          photos=[rows[2].id])
        s.add_all([wo, other])
        s.flush()
        s.add(HistoryEvent(event="note", actor=STAFF, internal=True, work_order_id=wo.id,
                           service_request_id=sr.id, detail="INTERNAL-SECRET gate code 4471"))
        add_access_note(s, wo, "Dog in the back yard; use the side gate.", STAFF, utcnow())
        return Job(sr.id, wo.id, other.id)


def send_to(database: Database, config: Config, wo_id: int, vendor_email: str) -> None:
    with database.session() as s:
        wo = s.get(WorkOrder, wo_id)
        vendor = s.scalars(select(Vendor).where(Vendor.email == vendor_email)).one()
        assert wo is not None
        assign_vendor(s, config, wo, vendor, utcnow(), STAFF)
