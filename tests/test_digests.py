"""Approval digests: content, per-staff reply tokens, photos, quick actions, cron slots.

Runs on SQLite and PostgreSQL (the ``database`` fixture).
"""

from __future__ import annotations

import email
import email.policy
import io
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from html import unescape
from pathlib import Path
from urllib.parse import unquote

import pytest
from config_builder import ELM_STREET, LEE, PAT, US, build_config
from PIL import Image
from sqlalchemy import select

from warrantyd.daemon.config import Config
from warrantyd.daemon.digests import queue_digests_for_request, queue_pending_digest
from warrantyd.daemon.threads import DbThreadLookup
from warrantyd.daemon.tokens import installation_secret
from warrantyd.parsers.commands import parse_commands
from warrantyd.parsers.message import parse_message
from warrantyd.parsers.trim import extract_reply
from warrantyd.storage.blobs import BlobStore
from warrantyd.storage.db import Database
from warrantyd.storage.models import (
    Attachment,
    Digest,
    HistoryEvent,
    InboundMessage,
    OutboundMessage,
    ReplyToken,
    ServiceRequest,
    Vendor,
    WorkOrder,
)

NOW = (datetime.now(UTC) - timedelta(days=2)).replace(hour=15, minute=0, second=0,
                                                     microsecond=0)
"""Recent: reply tokens are checked against the real clock when mail is classified."""


def make_config(tmp_path: Path, database: Database, digest: str = "immediate") -> Config:
    return build_config(tmp_path, database, staff={"addresses": [PAT, LEE], "digest": digest},
                        vendors=[{"name": "Ace Plumbing", "email": "ace@plumb.example.net",
                                  "trades": ["plumbing"]},
                                 {"name": "Drywall Pros", "email": "jobs@drywallpros.example.net",
                                  "trades": ["drywall", "paint"]}],
                        homes=[ELM_STREET])


def jpeg(width: int = 1600, height: int = 1200) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (180, 40, 40)).save(out, format="JPEG", quality=95)
    return out.getvalue()


def add_request(database: Database, config: Config, issues: list[dict[str, object]],
                *, photo: bool = False, at: datetime = NOW) -> tuple[int, list[int]]:
    """A service request of Dana's with one draft per issue, as new_request leaves it."""
    with database.session() as s:
        from warrantyd.daemon.drafting import find_home

        owner, home = find_home(s, "dana@example.com")
        inbound = InboundMessage(mailbox="m/INBOX", uidvalidity=1, uid=int(at.timestamp()),
                                 sha256=f"{at.timestamp()}-{len(issues)}".ljust(64, "0"),
                                 raw=b"x", size=1, status="done")
        s.add(inbound)
        s.flush()
        sr = ServiceRequest(status="open", requester_email="dana@example.com",
                            requester_name="Dana Whitfield", homeowner=owner, home=home,
                            subject="Leaks and cracks", body="The sink leaks. Ceiling crack.",
                            inbound_message_id=inbound.id, created_at=at, updated_at=at)
        s.add(sr)
        s.flush()
        photo_ids: list[int] = []
        if photo:
            content = jpeg()
            digest = BlobStore(config.storage.data_dir).put(content)
            att = Attachment(inbound_message_id=inbound.id, service_request_id=sr.id,
                             filename="sink-leak.jpg", content_type="image/jpeg",
                             size=len(content), sha256=digest)
            s.add(att)
            s.flush()
            photo_ids.append(att.id)
        ids = []
        for n, issue in enumerate(issues):
            vendor = None
            if issue.get("vendor"):
                vendor = s.scalars(select(Vendor).where(Vendor.email == issue["vendor"])).one()
            wo = WorkOrder(service_request_id=sr.id, status="draft",
                           trade=str(issue.get("trade", "plumbing")),
                           priority=str(issue.get("priority", "routine")),
                           location=issue.get("location"), title=str(issue["text"])[:60],
                           description=str(issue["text"]),
                           draft_trade=str(issue.get("trade", "plumbing")),
                           draft_description=str(issue["text"]),
                           coverage_hint="Likely covered: 1-year workmanship",
                           emergency_reason=issue.get("reason"),
                           suggested_vendor_id=vendor.id if vendor else None,
                           photos=photo_ids if (photo and n == 0) else [],
                           created_at=at, updated_at=at)
            s.add(wo)
            s.flush()
            ids.append(wo.id)
        return sr.id, ids


def send_digest(database: Database, config: Config, sr_id: int, wo_ids: list[int],
                at: datetime = NOW) -> list[int]:
    with database.session() as s:
        sr = s.get(ServiceRequest, sr_id)
        assert sr is not None
        wos = [s.get(WorkOrder, i) for i in wo_ids]
        rows = queue_digests_for_request(s, config, sr, wos, at)  # type: ignore[arg-type]
        return [r.id for r in rows]


def outbound(database: Database, *where: object) -> list[OutboundMessage]:
    with database.session() as s:
        return list(s.scalars(select(OutboundMessage).where(*where)
                              .order_by(OutboundMessage.id)))


def as_email(row: OutboundMessage) -> EmailMessage:
    msg = email.message_from_bytes(row.raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def body(msg: EmailMessage, kind: str) -> str:
    part = msg.get_body((kind,))
    assert part is not None
    return part.get_content()


@pytest.fixture
def config(tmp_path: Path, database: Database) -> Config:
    return make_config(tmp_path, database)


def test_immediate_digest_goes_to_each_staff_member_with_their_own_token(
        database: Database, config: Config) -> None:
    sr_id, ids = add_request(database, config, [
        {"text": "Hairline crack in the hallway ceiling", "trade": "drywall",
         "vendor": "jobs@drywallpros.example.net"},
        {"text": "Water pouring from under the kitchen sink", "priority": "emergency",
         "reason": "active leak", "vendor": "ace@plumb.example.net", "location": "kitchen"},
    ], photo=True)
    send_digest(database, config, sr_id, ids)
    digests = outbound(database, OutboundMessage.kind == "digest")
    assert sorted(d.to_addr for d in digests) == [LEE, PAT]
    with database.session() as s:
        digest = s.scalars(select(Digest)).one()
        assert digest.service_request_id == sr_id
        assert digest.work_order_ids == [ids[1], ids[0]], "the emergency is item 1"
        tokens = {t.address: t for t in s.scalars(select(ReplyToken).where(
            ReplyToken.kind == "digest"))}
        assert set(tokens) == {PAT, LEE} and tokens[PAT].token != tokens[LEE].token
        assert all(t.digest_id == digest.id and t.expires_at is not None
                   for t in tokens.values())
        lookup = DbThreadLookup(s, config, installation_secret(s))
        for row in digests:
            msg = as_email(row)
            token = tokens[row.to_addr].token
            assert str(msg["Reply-To"]) == f"warranty+{token}@acme-homes.example"
            assert row.dedupe_key == f"digest:{digest.id}:{row.to_addr}"
            ref = lookup.by_token(token)
            assert ref is not None and ref.digest_id == digest.id
            assert ref.token_address == row.to_addr
            by_id = lookup.by_message_id(row.message_id)
            assert by_id is not None and (by_id.kind, by_id.digest_id) == ("digest", digest.id)
    msg = as_email(next(d for d in digests if d.to_addr == PAT))
    assert str(msg["Subject"]).strip().startswith(f"[SR-{sr_id}] EMERGENCY")
    text = body(msg, "plain")
    first, second = text.index("1. WO-"), text.index("2. WO-")
    assert "EMERGENCY" in text[first:second] and "kitchen sink" in text[first:second]
    for expected in ("1 Elm St (Oaks)", "Dana Whitfield <dana@example.com>",
                     "Suggested vendor: Ace Plumbing", "Suggested vendor: Drywall Pros",
                     "Coverage: Likely covered", "Photos: sink-leak.jpg", "Where: kitchen",
                     "Why emergency: active leak"):
        assert expected in text, expected
    assert text.rstrip().endswith("Acme Homes Warranty")
    assert text.index("How to reply") > second, "the example commands come last"


def test_html_part_has_inline_thumbnails_and_mailto_quick_actions(
        database: Database, config: Config) -> None:
    sr_id, ids = add_request(database, config, [
        {"text": "Kitchen sink leaks", "vendor": "ace@plumb.example.net"},
        {"text": "Crack over the hall door", "trade": "drywall"}], photo=True)
    send_digest(database, config, sr_id, ids)
    row = outbound(database, OutboundMessage.kind == "digest", OutboundMessage.to_addr == PAT)[0]
    msg = as_email(row)
    html = body(msg, "html")
    images = [p for p in msg.walk() if p.get_content_type() == "image/jpeg"]
    assert len(images) == 1
    cid = images[0]["Content-ID"].strip("<>")
    assert f'src="cid:{cid}"' in html
    thumb = Image.open(io.BytesIO(images[0].get_content()))
    assert max(thumb.size) <= 320, "thumbnails are downscaled"
    assert len(images[0].get_content()) < len(jpeg())
    token = str(msg["Reply-To"]).split("@")[0]
    links = [unquote(unescape(part.split('"')[0]))
             for part in html.split('href="mailto:')[1:]]
    assert any(link.startswith(f"{token}@acme-homes.example?subject=Re: [SR-{sr_id}]")
               and link.endswith("&body=accept 2") for link in links), links
    assert any(link.endswith("&body=accept all") for link in links)
    assert any(link.endswith("&body=assign 2 to ") for link in links), \
        "an item without a vendor offers assign"
    assert "&body=accept%202" in html.replace("&amp;", "&")


def test_homeowner_text_is_escaped_in_the_html_digest(database: Database,
                                                       config: Config) -> None:
    sr_id, ids = add_request(database, config, [{"text": "<script>alert(1)</script> leak"}])
    send_digest(database, config, sr_id, ids)
    html = body(as_email(outbound(database, OutboundMessage.kind == "digest")[0]), "html")
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_the_example_commands_of_a_quoted_digest_are_never_read(
        database: Database, config: Config) -> None:
    sr_id, ids = add_request(database, config, [{"text": "Kitchen sink leaks"}])
    send_digest(database, config, sr_id, ids)
    text = body(as_email(outbound(database, OutboundMessage.kind == "digest")[0]), "plain")
    assert "accept all" in text and "help" in text
    quoted = "\n".join("> " + line for line in text.splitlines())
    raw = (f"From: {PAT}\nTo: {US}\nSubject: Re: digest\nMessage-ID: <q1@x>\n"
           "Content-Type: text/plain; charset=utf-8\n\n"
           f"On Mon, Mar 2, 2026 at 8:00 AM Acme <{US}> wrote:\n{quoted}\n").encode()
    reply = extract_reply(parse_message(raw))
    parsed = parse_commands(reply.new_text, [f"WO-{i}" for i in ids])
    assert parsed.commands == () and not parsed.valid



@pytest.mark.parametrize(("language", "shown"), [("fr", "(writes in French)"),
                                                 ("pt-BR", "(writes in Portuguese)"),
                                                 ("en", None), (None, None)])
def test_staff_see_the_language_the_homeowner_writes_in(
        database: Database, config: Config, language: str | None, shown: str | None) -> None:
    """Whoever calls or writes back should know; English needs no mention."""
    sr_id, ids = add_request(database, config, [{"text": "Kitchen sink leaks"}])
    with database.session() as s:
        sr = s.get(ServiceRequest, sr_id)
        assert sr is not None
        sr.language = language
    send_digest(database, config, sr_id, ids)
    text = body(as_email(outbound(database, OutboundMessage.kind == "digest")[0]), "plain")
    if shown:
        assert f"SR-{sr_id} from Dana Whitfield {shown}, 1 Elm St" in text, text
    else:
        assert "writes in" not in text

def test_a_request_without_drafts_still_reaches_staff(database: Database,
                                                      config: Config) -> None:
    sr_id, _ = add_request(database, config, [])
    send_digest(database, config, sr_id, [])
    rows = outbound(database, OutboundMessage.kind == "digest")
    assert len(rows) == 2 and "new: description" in body(as_email(rows[0]), "plain")


def test_immediate_digest_lists_mail_refused_since_the_last_digest_only(
        tmp_path: Path, database: Database) -> None:
    config = make_config(tmp_path, database)

    def refuse(sender: str, at: datetime) -> None:
        with database.session() as s:
            s.add(HistoryEvent(event="command_refused", actor=sender,
                               detail=f"sender {sender} is not a staff address", at=at))

    refuse("early@evil.example", NOW - timedelta(days=30))  # before any digest: listed
    sr1, ids1 = add_request(database, config, [{"text": "Kitchen sink leaks"}])
    first = send_digest(database, config, sr1, ids1, at=NOW)
    refuse("later@evil.example", NOW + timedelta(minutes=5))
    sr2, ids2 = add_request(database, config, [{"text": "Crack over the hall door"}],
                            at=NOW + timedelta(minutes=10))
    second = send_digest(database, config, sr2, ids2, at=NOW + timedelta(minutes=10))
    texts = {row.id: body(as_email(row), "plain") for row in outbound(database)}
    assert all("early@evil.example" in texts[i] for i in first)
    assert all("early@evil.example" not in texts[i] and "later@evil.example" in texts[i]
               for i in second), "only what was refused since the last digest"


def test_a_staff_member_listed_twice_gets_one_digest(tmp_path: Path,
                                                     database: Database) -> None:
    config = build_config(tmp_path, database, staff={"addresses": [PAT, PAT.upper(), LEE]},
                          homes=[ELM_STREET])
    assert config.staff.addresses == (PAT, LEE)
    sr_id, ids = add_request(database, config, [{"text": "Kitchen sink leaks"}])
    send_digest(database, config, sr_id, ids)
    assert sorted(r.to_addr for r in outbound(database)) == [LEE, PAT]


def test_scheduled_mode_sends_nothing_immediately(tmp_path: Path, database: Database) -> None:
    config = make_config(tmp_path, database, digest="0 7 * * 1-5")
    sr_id, ids = add_request(database, config, [{"text": "Kitchen sink leaks"}])
    assert send_digest(database, config, sr_id, ids) == []
    assert outbound(database) == []


def test_scheduled_digest_gathers_what_waits_once_per_slot(tmp_path: Path,
                                                            database: Database) -> None:
    config = make_config(tmp_path, database, digest="0 7 * * 1-5")
    sr1, ids1 = add_request(database, config, [{"text": "Kitchen sink leaks"}],
                            at=NOW - timedelta(hours=5))
    sr2, ids2 = add_request(database, config, [
        {"text": "Garage door off its track", "trade": "garage_door", "priority": "urgent"}],
        at=NOW - timedelta(hours=4))
    with database.session() as s:
        s.add(HistoryEvent(event="command_refused", actor="mallory@evil.example",
                           detail="sender mallory@evil.example is not a staff address",
                           at=NOW - timedelta(hours=1)))
    slot = NOW.replace(hour=14, minute=0)
    with database.session() as s:
        rows = queue_pending_digest(s, config, slot)
        assert sorted(r.to_addr for r in rows) == [LEE, PAT]
        digest = s.scalars(select(Digest)).one()
        assert digest.work_order_ids == [ids2[0], ids1[0]], "urgent before routine"
        assert digest.service_request_id is None, "two requests in one digest"
        assert all(r.dedupe_key.startswith(f"digest:{digest.id}:") and
                   r.dedupe_key.endswith(f"{slot:%Y%m%dT%H%M}") for r in rows)
    text = body(as_email(outbound(database)[0]), "plain")
    assert "mallory@evil.example" in text and "Refused mail" in text
    assert f"SR-{sr1}" in text and f"SR-{sr2}" in text
    with database.session() as s:
        assert queue_pending_digest(s, config, slot + timedelta(seconds=20)) == [], \
            "the same slot twice sends nothing"
        assert queue_pending_digest(s, config, slot + timedelta(hours=24)) == [], \
            "nothing new, no digest"
    # A vendor bounce flags an in-progress job; a new draft arrives: both in the next digest.
    with database.session() as s:
        wo = s.get(WorkOrder, ids1[0])
        assert wo is not None
        wo.status, wo.vendor_id = "in_progress", s.scalars(select(Vendor)).first().id
        wo.flags = ["vendor email bounced"]
        wo.updated_at = slot + timedelta(hours=2)
    _, ids3 = add_request(database, config, [{"text": "Crack over the hall door",
                                              "trade": "drywall"}],
                          at=slot + timedelta(hours=3))
    with database.session() as s:
        rows = queue_pending_digest(s, config, slot + timedelta(days=1))
        assert len(rows) == 2
        latest = s.scalars(select(Digest).order_by(Digest.id.desc())).first()
        assert latest is not None and latest.work_order_ids == [ids3[0], ids1[0]]
    text = body(as_email(outbound(database, OutboundMessage.to_addr == PAT)[-1]), "plain")
    assert "vendor email bounced" in text and "mallory" not in text
