"""Staff replies to digests, through the real Processor: authorisation, every command,
all-or-nothing validation, receipts, idempotence, feedback.  SQLite and PostgreSQL.
"""

from __future__ import annotations

import email
import email.policy
import itertools
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from config_builder import ACE, ELM_STREET, LEE, PAT, US, build_config
from sqlalchemy import func, select
from vendor_jobs import NoDrafter

from warrantyd.daemon import process
from warrantyd.daemon.config import Config
from warrantyd.daemon.digests import queue_digests_for_request
from warrantyd.daemon.staff import (
    VendorLookupError,
    create_manual_work_order,
    resolve_vendor,
)
from warrantyd.storage.db import Database
from warrantyd.storage.inbound import store_inbound
from warrantyd.storage.models import (
    Digest,
    Feedback,
    HistoryEvent,
    InboundMessage,
    OutboundMessage,
    ReplyToken,
    ServiceRequest,
    Vendor,
    WorkOrder,
)

NOW = (datetime.now(UTC) - timedelta(days=2)).replace(hour=15, minute=0, second=0, microsecond=0)
_uids = itertools.count(100)


def make_config(tmp_path: Path, database: Database, **staff: object) -> Config:
    return build_config(tmp_path, database, staff={"addresses": [PAT, LEE], **staff}, vendors=[
        {"name": "Ace Plumbing", "email": ACE, "trades": ["plumbing"], "aliases": ["Ace"]},
        {"name": "Front Range Plumbing", "email": "dispatch@frontrange.example.net",
         "trades": ["plumbing"]},
        {"name": "Drywall Pros", "email": "jobs@drywallpros.example.net",
         "trades": ["drywall", "paint"]},
    ], homes=[ELM_STREET])


@pytest.fixture
def config(tmp_path: Path, database: Database) -> Config:
    return make_config(tmp_path, database)


class World:
    """One service request with three drafts and the digest staff got for it."""

    def __init__(self, database: Database, config: Config) -> None:
        self.db, self.config = database, config
        with database.session() as s:
            from warrantyd.daemon.drafting import find_home

            owner, home = find_home(s, "dana@example.com")
            sr = ServiceRequest(status="open", requester_email="dana@example.com",
                                requester_name="Dana", homeowner=owner, home=home,
                                subject="Problems", body="Sink leaks; ceiling crack; caulk",
                                created_at=NOW, updated_at=NOW)
            s.add(sr)
            s.flush()
            ace = s.scalars(select(Vendor).where(Vendor.email == ACE)).one()
            drywall = s.scalars(select(Vendor).where(Vendor.name == "Drywall Pros")).one()
            specs = [("plumbing", "Kitchen sink leaks under the basin", ace.id),
                     ("drywall", "Crack over the hall door", drywall.id),
                     ("other", "Tub caulk is peeling", None)]
            wos = []
            for trade, text, vendor_id in specs:
                wo = WorkOrder(service_request_id=sr.id, status="draft", trade=trade,
                               priority="routine", title=text, description=text,
                               draft_trade=trade, draft_description=text,
                               suggested_vendor_id=vendor_id, created_at=NOW, updated_at=NOW)
                s.add(wo)
                wos.append(wo)
            s.flush()
            queue_digests_for_request(s, config, sr, wos, NOW)
            self.sr_id = sr.id
            self.wo_ids = [wo.id for wo in wos]
            self.digest_id = s.scalars(select(Digest)).one().id
            self.tokens = {t.address: t.token for t in s.scalars(select(ReplyToken))}
            self.digest_mid = {m.to_addr: m.message_id for m in s.scalars(
                select(OutboundMessage).where(OutboundMessage.kind == "digest"))}

    def token_address(self, staff: str = PAT) -> str:
        return f"warranty+{self.tokens[staff]}@acme-homes.example"

    async def reply(self, body: str, *, sender: str = PAT, to: str | None = None,
                    in_reply_to: str | None = None, message_id: str | None = None,
                    headers: str = "", at: datetime = NOW) -> int:
        """Deliver one mail to the daemon's processor; return its inbound id."""
        to = to if to is not None else self.token_address(sender if sender in self.tokens
                                                           else PAT)
        mid = message_id or f"r{next(_uids)}@mail.example"
        extra = f"In-Reply-To: <{in_reply_to}>\n" if in_reply_to else ""
        raw = (f"{headers}From: Someone <{sender}>\nTo: {to}\n"
               f"Subject: Re: [SR-{self.sr_id}] Approval digest #{self.digest_id}\n"
               f"Message-ID: <{mid}>\n{extra}Content-Type: text/plain; charset=utf-8\n\n"
               f"{body}\n\nOn Mon, Mar 2, 2026 Acme wrote:\n> accept all\n> help\n").encode()
        with self.db.session() as s:
            row, _ = store_inbound(s, mailbox="m/INBOX", uidvalidity=1, uid=next(_uids),
                                   raw=raw)
            inbound_id = row.id
        await process.Processor(self.config, self.db, NoDrafter(),
                                clock=lambda: at).process_pending()
        with self.db.session() as s:
            row = s.get(InboundMessage, inbound_id)
            assert row is not None and row.status in ("done", "ignored"), row.last_error
        return inbound_id

    def wo(self, n: int) -> WorkOrder:
        with self.db.session() as s:
            wo = s.get(WorkOrder, self.wo_ids[n - 1])
            assert wo is not None
            s.expunge(wo)
            return wo

    def mails(self, *where: object) -> list[OutboundMessage]:
        with self.db.session() as s:
            return list(s.scalars(select(OutboundMessage).where(
                OutboundMessage.kind != "digest", *where).order_by(OutboundMessage.id)))

    def receipts(self) -> list[str]:
        return [text_of(m) for m in self.mails(OutboundMessage.kind == "receipt")]

    def events(self, name: str) -> list[HistoryEvent]:
        with self.db.session() as s:
            return list(s.scalars(select(HistoryEvent).where(HistoryEvent.event == name)))

    def feedback(self) -> list[Feedback]:
        with self.db.session() as s:
            return list(s.scalars(select(Feedback).order_by(Feedback.id)))


def text_of(row: OutboundMessage) -> str:
    msg = email.message_from_bytes(row.raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    part = msg.get_body(("plain",))
    assert part is not None
    return " ".join(part.get_content().split())


@pytest.fixture
def world(database: Database, config: Config) -> World:
    return World(database, config)


# --- accept, with and without a vendor ------------------------------------------------------

async def test_accept_sends_to_the_suggested_vendor_with_a_receipt(world: World) -> None:
    await world.reply("Accept 1.", message_id="staff-1@mail.example")
    wo = world.wo(1)
    assert wo.status == "in_progress" and wo.vendor_id is not None
    notices = world.mails(OutboundMessage.kind == "vendor_notice")
    assert [n.to_addr for n in notices] == [ACE]
    with world.db.session() as s:
        assert s.get(ServiceRequest, world.sr_id).status == "in_progress"  # type: ignore
    receipt = world.mails(OutboundMessage.kind == "receipt")[0]
    assert receipt.to_addr == PAT
    msg = email.message_from_bytes(receipt.raw, policy=email.policy.default)
    assert msg["In-Reply-To"] == "<staff-1@mail.example>"
    assert str(msg["Subject"]).strip().startswith(f"Re: [SR-{world.sr_id}]")
    assert str(msg["Reply-To"]) == world.token_address(PAT)
    assert f"WO-{wo.id} accepted, Ace Plumbing emailed" in text_of(receipt)
    fb = world.feedback()
    assert [(f.decision, f.vendor_email, f.community, f.actor) for f in fb] == [
        ("accept", ACE, "Oaks", PAT)]
    assert fb[0].source_text.startswith("Sink leaks") and fb[0].draft_trade == "plumbing"


async def test_accept_without_a_vendor_stays_a_draft_until_assigned(world: World) -> None:
    await world.reply("accept 3")
    wo = world.wo(3)
    assert (wo.status, wo.needs_vendor) == ("draft", True)
    assert "has no vendor" in world.receipts()[0] and "needs vendor" in world.receipts()[0]
    assert world.mails(OutboundMessage.kind == "vendor_notice") == []
    await world.reply("assign 3 to Front Range")
    wo = world.wo(3)
    assert (wo.status, wo.needs_vendor) == ("in_progress", False)
    notices = world.mails(OutboundMessage.kind == "vendor_notice")
    assert [n.to_addr for n in notices] == ["dispatch@frontrange.example.net"]


async def test_assign_then_accept_in_one_reply_sends_once_to_the_chosen_vendor(
        world: World) -> None:
    await world.reply("accept 1\nassign 1 to dispatch@frontrange.example.net")
    assert world.wo(1).status == "in_progress"
    assert [n.to_addr for n in world.mails(OutboundMessage.kind.like("vendor%"))] == [
        "dispatch@frontrange.example.net"], "the suggested vendor never hears of it"


async def test_accept_all_and_reaccept_is_a_noop(world: World) -> None:
    await world.reply("accept all")
    assert [world.wo(n).status for n in (1, 2, 3)] == ["in_progress", "in_progress", "draft"]
    await world.reply("accept 1")
    assert "already accepted" in world.receipts()[1] and "nothing changed" in world.receipts()[1]
    assert len(world.mails(OutboundMessage.kind == "vendor_notice")) == 2
    assert len([f for f in world.feedback() if f.decision == "accept"]) == 3


async def test_reassigning_an_in_progress_job_withdraws_it_from_the_old_vendor(
        world: World) -> None:
    await world.reply("accept 1")
    await world.reply("assign 1 to Front Range Plumbing")
    assert world.wo(1).status == "in_progress"
    kinds = [(m.kind, m.to_addr) for m in world.mails(OutboundMessage.kind.like("vendor%"))]
    assert kinds == [("vendor_notice", ACE), ("vendor_withdrawn", ACE),
                     ("vendor_notice", "dispatch@frontrange.example.net")]
    assert "reassigned from Ace Plumbing to Front Range Plumbing" in world.receipts()[1]


# --- edit, reject, merge, new, note, complete, reopen ----------------------------------------

async def test_edit_description_trade_and_priority_with_feedback(world: World) -> None:
    await world.reply("edit 2: Cut out and replace the cracked drywall over the hall door;\n"
                      "match the texture.\n\nedit 3 trade: Caulking\n")
    assert "'Caulking' is not a trade" in world.receipts()[0]
    assert world.wo(2).description == "Crack over the hall door", "nothing applied"
    await world.reply("edit 2: Cut out and replace the cracked drywall over the hall door;\n"
                      "match the texture.\n\nedit 3 trade: plumbing\nedit 3 priority: urgent")
    two, three = world.wo(2), world.wo(3)
    assert two.description == ("Cut out and replace the cracked drywall over the hall door; "
                               "match the texture.")
    assert (three.trade, three.priority) == ("plumbing", "urgent")
    assert three.suggested_vendor_id is not None, "a plumbing vendor is suggested now"
    edits = [f for f in world.feedback() if f.decision == "edit"]
    assert len(edits) == 3
    assert edits[0].draft_description == "Crack over the hall door"
    assert edits[0].final_description == two.description
    assert any(f.draft_trade == "other" and f.final_trade == "plumbing" for f in edits)
    receipt = world.receipts()[1]
    assert f"WO-{two.id} description replaced" in receipt
    assert "trade changed from Other to Plumbing" in receipt


async def test_reject_with_reason_and_rejecting_in_progress_is_refused(world: World) -> None:
    await world.reply("reject 3: homeowner maintenance (caulk)")
    assert world.wo(3).status == "rejected"
    fb = world.feedback()[0]
    assert (fb.decision, fb.reason, fb.final_description) == (
        "reject", "homeowner maintenance (caulk)", None)
    await world.reply("accept 1")
    await world.reply("reject 1\nreject 3")
    assert world.wo(1).status == "in_progress"
    receipt = world.receipts()[-1]
    assert "Nothing was done" in receipt and "line 1" in receipt and "in progress" in receipt


async def test_merge_keeps_the_first_and_closes_the_others_as_merged(world: World) -> None:
    await world.reply("merge 1 3\naccept all")
    one, three = world.wo(1), world.wo(3)
    assert one.status == "in_progress" and "Tub caulk is peeling" in one.description
    assert (three.status, three.merged_into_id) == ("rejected", one.id)
    assert world.wo(2).status == "in_progress"
    assert len(world.events("merged")) == 2
    assert f"skipped: merged into WO-{one.id}" in world.receipts()[0]


async def test_new_creates_a_manual_draft_on_the_request_as_a_digest_item(
        world: World) -> None:
    await world.reply("new: Re-seal the shower door, master bath\nit leaks onto the floor")
    with world.db.session() as s:
        digest = s.get(Digest, world.digest_id)
        assert digest is not None and len(digest.work_order_ids) == 4
        wo = s.get(WorkOrder, digest.work_order_ids[3])
        assert wo is not None and wo.status == "draft" and wo.engine == "manual"
        assert wo.service_request_id == world.sr_id and wo.trade
        assert wo.description == "Re-seal the shower door, master bath it leaks onto the floor"
        new_id = wo.id
    assert f"WO-{new_id} created on SR-{world.sr_id}" in world.receipts()[0]
    assert "item 4" in world.receipts()[0]
    await world.reply("accept 4")
    assert world.receipts()[1].count("accepted") >= 1


async def test_note_complete_and_reopen_by_work_order_number(world: World) -> None:
    await world.reply("accept 1")
    ref = f"WO-{world.wo_ids[0]}"
    await world.reply(f"note {ref}: gate code 4471\ncomplete {ref}")
    note = world.events("note")[0]
    assert note.internal and note.detail == "gate code 4471" and note.actor == PAT
    assert world.wo(1).status == "completed"
    assert f"{ref} completed" in world.receipts()[1]
    await world.reply(f"reopen {ref}")
    assert world.wo(1).status == "in_progress"
    await world.reply("complete WO-999")
    assert "WO-999 does not exist" in world.receipts()[-1]


# --- all or nothing -------------------------------------------------------------------------

async def test_a_misspelled_line_means_nothing_is_applied(world: World) -> None:
    await world.reply("accept 1\nacept 2")
    assert [world.wo(n).status for n in (1, 2)] == ["draft", "draft"]
    assert world.mails(OutboundMessage.kind == "vendor_notice") == []
    assert world.feedback() == []
    receipt = world.receipts()[0]
    assert "Nothing was done" in receipt
    assert "line 2: 'acept 2' is not a command" in receipt and "did you mean" in receipt
    assert "line 1: accept 1" in receipt, "the fine lines are listed as fine"


async def test_state_errors_roll_back_the_lines_that_worked(world: World) -> None:
    await world.reply("reject 3")
    await world.reply("accept 1\nedit 2: New text for two\naccept 3")
    assert world.wo(1).status == "draft" and world.wo(2).description != "New text for two"
    assert world.mails(OutboundMessage.kind == "vendor_notice") == []
    receipt = world.receipts()[-1]
    assert "line 3" in receipt and "already rejected" in receipt
    assert len(world.feedback()) == 1, "only the earlier reject"


async def test_unknown_and_ambiguous_vendors_are_refused(world: World) -> None:
    await world.reply("assign 2 to Bob's Drywall")
    assert "no vendor is called" in world.receipts()[0]
    await world.reply("assign 1 to Plumbing")
    receipt = world.receipts()[1]
    assert "several vendors" in receipt and "Ace Plumbing" in receipt and "Front Range" in receipt
    assert world.wo(1).vendor_id is None and world.wo(2).vendor_id is None


async def test_accept_with_a_bounced_vendor_is_refused(world: World) -> None:
    with world.db.session() as s:
        s.scalars(select(Vendor).where(Vendor.email == ACE)).one().bounced_at = NOW
    await world.reply("accept 1, 2")
    assert world.wo(2).status == "draft"
    assert "bounced" in world.receipts()[0] and "assign another vendor" in world.receipts()[0]


def test_resolve_vendor_by_name_alias_email_and_spelling(database: Database,
                                                         config: Config) -> None:
    with database.session() as s:
        assert resolve_vendor(s, "ace", "main").email == ACE
        assert resolve_vendor(s, "ACE@plumb.example.net", "main").email == ACE
        assert resolve_vendor(s, "Ace Plumbng", "main").email == ACE
        assert resolve_vendor(s, "drywall pros, inc.", "main").name == "Drywall Pros"
        with pytest.raises(VendorLookupError) as found:
            resolve_vendor(s, "plumbing", "main")
        assert {v.name for v in found.value.candidates} == {"Ace Plumbing",
                                                            "Front Range Plumbing"}
        with pytest.raises(VendorLookupError, match="no vendor has the email"):
            resolve_vendor(s, "nobody@plumb.example.net", "main")


# --- idempotence and help -------------------------------------------------------------------

async def test_the_same_reply_twice_is_applied_once(world: World) -> None:
    await world.reply("accept 1", message_id="same@mail.example")
    await world.reply("accept 1", message_id="same@mail.example",
                      headers="Received: from relay2 by mx; again\n")
    assert len(world.mails(OutboundMessage.kind == "receipt")) == 1
    assert len(world.mails(OutboundMessage.kind == "vendor_notice")) == 1
    assert len(world.feedback()) == 1
    assert len(world.events("staff_reply_repeated")) == 1


async def test_help_when_no_commands_at_most_once_a_day(world: World) -> None:
    await world.reply("Thanks, looks good to me")
    await world.reply("Sounds right")
    assert len(world.mails(OutboundMessage.kind == "receipt")) == 1
    assert "no commands" in world.receipts()[0] and "accept 1, 3" in world.receipts()[0]
    await world.reply("still no commands", at=NOW + timedelta(days=1))
    assert len(world.mails(OutboundMessage.kind == "receipt")) == 2
    await world.reply("help")
    assert "accept 1, 3" in world.receipts()[-1]


# --- who may act ----------------------------------------------------------------------------

def _changed(world: World) -> list[str]:
    return [world.wo(n).status for n in (1, 2, 3)]


@pytest.mark.parametrize("case", ["staff_token", "staff_message_id"])
async def test_authorised_replies(world: World, case: str) -> None:
    if case == "staff_token":
        await world.reply("accept 2", sender=LEE)
    else:
        await world.reply("accept 2", to=US, in_reply_to=world.digest_mid[PAT])
    assert world.wo(2).status == "in_progress"
    assert len(world.mails(OutboundMessage.kind == "receipt")) == 1


@pytest.mark.parametrize("case", ["other_staff_token", "forged_from_no_token", "vendor",
                                  "homeowner", "vendor_on_message_id"])
async def test_unauthorised_replies_change_nothing_and_get_no_mail(world: World,
                                                                    case: str) -> None:
    if case == "other_staff_token":
        await world.reply("accept all", sender=PAT, to=world.token_address(LEE))
    elif case == "forged_from_no_token":
        await world.reply("accept all", sender=PAT, to=US)
    elif case == "vendor":
        await world.reply("accept all", sender=ACE, to=world.token_address(PAT))
    elif case == "homeowner":
        await world.reply("accept all", sender="dana@example.com", to=world.token_address(PAT))
    else:
        await world.reply("accept all", sender=ACE, to=US, in_reply_to=world.digest_mid[PAT])
    assert _changed(world) == ["draft", "draft", "draft"]
    mails = world.mails()
    if case in ("other_staff_token", "forged_from_no_token"):
        # The impersonated staff member (from the config, not the mail) is told, once a day;
        # whoever forged the From hears nothing.
        assert [(m.to_addr, m.dedupe_key.split(":")[0]) for m in mails] == [(PAT, "refused")]
        await world.reply("accept 1", sender=PAT, to=US)
        assert len(world.mails()) == 1, "at most one refusal notice a day"
    else:
        assert mails == [], "no backscatter"
    refused = world.events("command_refused")
    assert len(refused) >= 1 and refused[0].detail


@pytest.mark.parametrize(("auth", "ok"), [
    ("mx.acme-homes.example; dkim=pass header.d=acme-homes.example; dmarc=pass "
     "header.from=acme-homes.example", True),
    ("mx.acme-homes.example; dmarc=fail header.from=acme-homes.example", False),
    ("evil.example; dmarc=pass header.from=acme-homes.example", False),
    (None, False),
])
async def test_require_authenticated_sender(tmp_path: Path, database: Database,
                                            auth: str | None, ok: bool) -> None:
    config = make_config(tmp_path, database, require_authenticated_sender=True,
                         trusted_authserv_id="mx.acme-homes.example")
    world = World(database, config)
    headers = f"Authentication-Results: {auth}\n" if auth else ""
    await world.reply("accept 1", headers=headers)
    assert (world.wo(1).status == "in_progress") is ok
    receipts = world.mails(OutboundMessage.kind == "receipt")
    assert len(receipts) == 1
    # Refused: only the refusal notice, to the configured staff address.
    assert receipts[0].dedupe_key.startswith("refused:") is not ok
    assert bool(world.events("command_refused")) is not ok


async def test_refused_mail_is_listed_in_the_next_digest(world: World) -> None:
    await world.reply("accept all", sender="mallory@evil.example", to=world.token_address(PAT),
                      at=NOW + timedelta(minutes=30))
    with world.db.session() as s:
        sr = s.get(ServiceRequest, world.sr_id)
        assert sr is not None
        wo = create_manual_work_order(s, world.config, sr_ref=f"SR-{sr.id}", trade="paint",
                                      description="Touch up the hall", vendor="Drywall",
                                      actor=PAT, now=NOW + timedelta(hours=1))
        assert (wo.status, wo.trade, wo.vendor_id is not None) == ("draft", "paint", True)
    with world.db.session() as s:
        rows = list(s.scalars(select(OutboundMessage).where(
            OutboundMessage.kind == "digest", OutboundMessage.to_addr == PAT)
            .order_by(OutboundMessage.id)))
        assert len(rows) == 2
        count = s.scalar(select(func.count()).select_from(Digest))
        assert count == 2
    assert "mallory@evil.example" in text_of(rows[1])


async def test_a_re_sent_reply_does_not_create_the_same_work_or_note_twice(world: World) -> None:
    """The same reply sent again (a new Message-ID, as a client's "send again" makes)."""
    for _ in range(2):
        await world.reply("new: Fix the side gate latch\nnote WO-1: gate code 4471")
    with world.db.session() as s:
        gates = s.scalars(select(WorkOrder).where(
            WorkOrder.description == "Fix the side gate latch")).all()
        notes = s.scalars(select(HistoryEvent).where(HistoryEvent.event == "note")).all()
    assert len(gates) == 1 and len(notes) == 1
    assert "already" in world.receipts()[-1]
