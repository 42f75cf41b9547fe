"""Approval digests: the numbered drafts staff answer by email.

A digest is one :class:`~warrantyd.storage.models.Digest` row (its ``work_order_ids`` fix what
"item 2" means for every reply to it, item 1 first) and one mail per staff member.  Each mail
carries its own reply token in the Reply-To (``warranty+TOKEN@…``), issued to *that* staff
member for *that* digest, because the token is what lets a reply give commands: a From header
alone proves nothing.

Each division (``[[divisions]]``) has its own digests: a digest lists only work of one
division, goes only to that division's staff, From its mailbox, with reply tokens that are
plus-addresses of that mailbox, and ``Digest.division`` records whose it is (staff_auth.py
allows commands on it only to that division's staff).

Two rhythms, set by ``[staff] digest`` (per division: ``[divisions.staff] digest``):

* ``"immediate"`` — :func:`queue_digests_for_request` sends one digest per service request as
  soon as its drafts exist (the subject carries ``[SR-n]``);
* a cron expression — the scheduler calls :func:`queue_pending_digest` at each slot, which
  gathers everything waiting since the last digest (new drafts, flagged work orders, refused
  command mail) into one digest, once per slot however many daemons share the database.

Both only add rows and outbox mail to the caller's session; the caller commits.  Refused
command mail (a forged or unauthorised "accept 1") is never answered — answering would be
backscatter to whoever forged it — so the next digest is where staff learn about it.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Select, and_, bindparam, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from warrantyd.daemon.config import Config, DivisionConfig
from warrantyd.daemon.homeowner_words import language_name
from warrantyd.daemon.outbox import OutgoingAttachment, queue_mail
from warrantyd.daemon.render import render_mail
from warrantyd.daemon.tokens import installation_secret, issue_token, plus_address
from warrantyd.storage.blob_db import blob_store_for
from warrantyd.storage.models import (
    MAIN_DIVISION,
    Attachment,
    Digest,
    HistoryEvent,
    InboundMessage,
    OutboundMessage,
    ReplyToken,
    ServiceRequest,
    Setting,
    WorkOrder,
)
from warrantyd.storage.queries import division_condition

log = logging.getLogger("warrantyd.digests")

IMMEDIATE = "immediate"
REFUSED_EVENT = "command_refused"
"""History event of mail that tried to give commands without the right to (see staff.py)."""

THUMBNAIL_SIZE = (320, 320)
"""Big enough to recognise a leak on a phone, small enough to keep a digest light."""
MAX_THUMBNAILS = 24
"""Per digest mail; further photos are listed by name only."""
MAX_REFUSED_LISTED = 20

_PRIORITY_ORDER = {"emergency": 0, "urgent": 1, "routine": 2}
_TRADE_LABELS = {"hvac": "HVAC", "garage_door": "Garage door", "other": "Other"}
_OPEN_STATUSES = ("draft", "in_progress")


def trade_label(trade: str) -> str:
    """``windows_doors`` -> ``Windows & doors``: how staff say it."""
    if trade in _TRADE_LABELS:
        return _TRADE_LABELS[trade]
    return " & ".join(trade.split("_")).capitalize()


def digest_mode(config: Config, division: str | None = None) -> str:
    """``immediate`` or ``scheduled``: the ``[staff] digest`` of ``division`` (default main)."""
    digest = config.division(division).staff.digest if division else config.staff.digest
    return IMMEDIATE if digest.strip().lower() == IMMEDIATE else "scheduled"


def in_division(config: Config, column: Any, division: str) -> ColumnElement[bool] | None:
    """The condition that ``column`` (a ``division`` column) is ``division``'s, or None when
    the config has one division only (everything is its own: no condition to pay for).
    Rows of a division no longer configured count as the main one's (``Config.division``)."""
    if len(config.divisions) == 1:
        return None
    return division_condition(column, [config.division(division).name],
                              [d.name for d in config.divisions])


def digest_dedupe_key(digest_id: int, staff: str, slot: str | None = None) -> str:
    """``digest:<id>:<staff>[:<slot>]``; threading reads the id from the second field."""
    key = f"digest:{digest_id}:{staff}"
    return f"{key}:{slot}" if slot else key


def staff_reply_token(session: Session, config: Config, staff: str, digest_id: int,
                      now: datetime, division: str | None = None) -> ReplyToken:
    """The token of ``staff`` for this digest, issued once and reused (receipts, links);
    it lives the ``token_days`` of the digest's ``division`` (default main)."""
    row = session.scalars(
        select(ReplyToken).where(ReplyToken.kind == "digest", ReplyToken.address == staff,
                                 ReplyToken.digest_id == digest_id)
        .order_by(ReplyToken.id.desc())).first()
    if row is not None and (row.expires_at is None or row.expires_at > now):
        return row
    secret = installation_secret(session, config.web.secret_env)
    return issue_token(session, secret, kind="digest", address=staff,
                       days=config.division(division).staff.token_days, digest_id=digest_id,
                       now=now)


# --- what goes into a digest --------------------------------------------------------------

@dataclass
class Photo:
    filename: str
    cid: str | None = None
    """Content-ID of the inline thumbnail (HTML part), None when only named."""


@dataclass
class DigestItem:
    number: int
    ref: str
    sr_ref: str
    status: str
    trade: str
    priority: str
    title: str
    description: str
    location: str | None
    property: str | None
    homeowner: str
    vendor: str | None
    """Assigned vendor, else the drafter's suggestion."""
    vendor_assigned: bool
    coverage: str | None
    emergency_reason: str | None
    flags: list[str]
    photos: list[Photo] = field(default_factory=list)
    actions: list[tuple[str, str]] = field(default_factory=list)
    """(label, mailto URL) quick actions; filled per staff member."""


@dataclass
class RefusedMail:
    at: str
    sender: str
    reason: str


def _item(number: int, wo: WorkOrder) -> DigestItem:
    sr = wo.service_request
    home = sr.home
    prop = None
    if home is not None:
        prop = home.address + (f" ({home.community})" if home.community else "")
    who = sr.requester_name or ""
    homeowner = f"{who} <{sr.requester_email}>" if who else sr.requester_email
    vendor = wo.vendor or wo.suggested_vendor
    flags = list(wo.flags)
    if wo.needs_vendor and "needs vendor" not in flags:
        flags.append("accepted, needs a vendor")
    return DigestItem(
        number=number, ref=wo.ref, sr_ref=sr.ref, status=wo.status, trade=trade_label(wo.trade),
        priority=wo.priority, title=wo.title or wo.description[:80],
        description=wo.description, location=wo.location, property=prop,
        homeowner=homeowner, vendor=vendor.name if vendor else None,
        vendor_assigned=wo.vendor is not None, coverage=wo.coverage_hint,
        emergency_reason=wo.emergency_reason if wo.priority == "emergency" else None,
        flags=flags)


def _ordered(work_orders: list[WorkOrder]) -> list[WorkOrder]:
    """Emergencies first, then urgent, then routine; oldest first within each."""
    return sorted(work_orders, key=lambda wo: (_PRIORITY_ORDER.get(wo.priority, 3), wo.id))


def _thumbnail(content: bytes) -> bytes | None:
    """A small JPEG of an image, or None when Pillow cannot read it (HEIC, PDF, junk)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(content)) as image:
            # A JPEG decodes straight to 1/2 .. 1/8 of its size, enough for a thumbnail:
            # most of the cost of a phone photo is decoding every pixel of it.
            image.draft(None, (THUMBNAIL_SIZE[0] * 2, THUMBNAIL_SIZE[1] * 2))
            image = ImageOps.exif_transpose(image)
            image.thumbnail(THUMBNAIL_SIZE)
            if image.mode not in ("RGB", "L"):
                image = image.convert("RGB")
            out = io.BytesIO()
            image.save(out, format="JPEG", quality=75, optimize=True)
            return out.getvalue()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None


_THUMBNAIL_CACHE: OrderedDict[str, bytes | None] = OrderedDict()
THUMBNAIL_CACHE_SIZE = 64
"""Thumbnails kept by blob digest: a photo goes into its request's digest and again into
every scheduled digest that lists its work order (a few MiB at most)."""


def _thumbnail_of_blob(sha256: str, content: Callable[[], bytes]) -> bytes | None:
    """:func:`_thumbnail` of the blob ``sha256``, made once per process for a given blob."""
    if sha256 in _THUMBNAIL_CACHE:
        _THUMBNAIL_CACHE.move_to_end(sha256)
        return _THUMBNAIL_CACHE[sha256]
    thumb = _thumbnail(content())
    _THUMBNAIL_CACHE[sha256] = thumb
    while len(_THUMBNAIL_CACHE) > THUMBNAIL_CACHE_SIZE:
        _THUMBNAIL_CACHE.popitem(last=False)
    return thumb


def _photos(session: Session, config: Config, digest_id: int, items: list[DigestItem],
            work_orders: list[WorkOrder], domain: str) -> list[OutgoingAttachment]:
    """Fill each item's photos; return the inline thumbnails shared by every staff mail."""
    blobs = blob_store_for(config.storage.blobs, config.storage.data_dir, session=session)
    inline: list[OutgoingAttachment] = []
    for item, wo in zip(items, work_orders, strict=True):
        ids = [i for i in wo.photos if isinstance(i, int)]
        rows = session.scalars(select(Attachment).where(Attachment.id.in_(ids))).all() if ids \
            else []
        for row in sorted(rows, key=lambda a: ids.index(a.id)):
            photo = Photo(filename=row.filename)
            if len(inline) < MAX_THUMBNAILS and row.content_type.startswith("image/"):
                try:
                    thumb = _thumbnail_of_blob(row.sha256,
                                               lambda sha256=row.sha256: blobs.get(sha256))
                except (OSError, KeyError, LookupError):
                    log.warning("photo %s of %s is missing from the blob store", row.id, wo.ref)
                    thumb = None
                if thumb is not None:
                    photo.cid = f"d{digest_id}.a{row.id}@{domain}"
                    inline.append(OutgoingAttachment(
                        filename=f"{row.filename.rsplit('.', 1)[0]}-small.jpg",
                        content_type="image/jpeg", content=thumb, inline_cid=photo.cid))
            item.photos.append(photo)
    return inline


def _mailto(reply_address: str, subject: str, body: str) -> str:
    return (f"mailto:{reply_address}?subject={quote('Re: ' + subject, safe='')}"
            f"&body={quote(body, safe='')}")


def _quick_actions(item: DigestItem, reply_address: str, subject: str) -> list[tuple[str, str]]:
    """One-click replies: a mailto: link that answers this digest with one command."""
    n = item.number
    bodies: list[str] = []
    if item.status == "draft":
        bodies += [f"accept {n}", f"reject {n}: "]
    if (item.status in _OPEN_STATUSES and not item.vendor_assigned) or item.status == "in_progress":
        bodies.append(f"assign {n} to ")
    return [(body.strip(" :") + (" ..." if body.endswith(" ") else ""),
             _mailto(reply_address, subject, body)) for body in bodies]


def _local(config: Config, when: datetime) -> datetime:
    try:
        zone = ZoneInfo(config.company.timezone)
    except (KeyError, ValueError):
        zone = ZoneInfo("UTC")
    return when.astimezone(zone)


FOLLOWUP_SLOT_PREFIX = "followup_digest:"
"""``setting`` rows ``followup_digest:<division>:<slot>`` = the id of that slot's follow-up
digest (followup.py): the claim of the slot, so it is sent once across daemons."""


def followup_slot_key(slot: str, division: str) -> str:
    """The ``setting`` row that claims the follow-up digest of ``division`` for ``slot``."""
    key = f"{FOLLOWUP_SLOT_PREFIX}{division}:{slot}"
    if len(key) <= 100:
        return key
    return f"{FOLLOWUP_SLOT_PREFIX}{hashlib.sha256(division.encode()).hexdigest()[:32]}:{slot}"


def approval_digests() -> ColumnElement[bool]:
    """The condition that a ``digest`` row is an approval digest, not a follow-up digest.

    A follow-up digest is answered like an approval digest, but it is no approval digest:
    what it lists has not been up for approval, and "since the last digest" (drafts, flags,
    refused mail) counts from the last approval digest only.
    """
    return Digest.kind == "approval"


_BEFORE_ANY_DIGEST = datetime(1970, 1, 1, tzinfo=UTC)


def _last_digest_query(config: Config, division: str) -> Select[tuple[datetime | None]]:
    """When ``division``'s last approval digest was made (NULL before the first)."""
    query = select(func.max(Digest.created_at)).where(approval_digests())
    scope = in_division(config, Digest.division, division)
    return query if scope is None else query.where(scope)


def _last_digest_at(session: Session, config: Config, division: str) -> datetime | None:
    return session.scalar(_last_digest_query(config, division))


def _refused_in_division(config: Config, division: str) -> ColumnElement[bool] | None:
    """Refused mail about work of ``division``; mail about no request counts for the division
    whose mailbox it arrived in (the main one for mail of no configured mailbox)."""
    scope = in_division(config, ServiceRequest.division, division)
    if scope is None:
        return None
    own = config.division(division)
    others = [d for d in config.divisions if d.name != own.name]
    if own.name == MAIN_DIVISION:
        arrived = and_(*(or_(InboundMessage.mailbox.is_(None),
                             ~InboundMessage.mailbox.startswith(f"{d.mailbox.address}/",
                                                                autoescape=True))
                         for d in others))
    else:
        arrived = InboundMessage.mailbox.startswith(f"{own.mailbox.address}/", autoescape=True)
    return or_(scope, and_(HistoryEvent.service_request_id.is_(None), arrived))


def _refused_query(config: Config, division: str,
                   since: datetime | ColumnElement[datetime] | None) -> Select[tuple[HistoryEvent]]:
    """Command mail refused after ``since`` and up to the ``now`` parameter, the last
    :data:`MAX_REFUSED_LISTED`, newest first."""
    query = select(HistoryEvent).where(HistoryEvent.event == REFUSED_EVENT,
                                       HistoryEvent.at <= bindparam("now"))
    scope = _refused_in_division(config, division)
    if scope is not None:
        query = (query.outerjoin(ServiceRequest,
                                 HistoryEvent.service_request_id == ServiceRequest.id)
                 .outerjoin(InboundMessage, HistoryEvent.inbound_message_id == InboundMessage.id)
                 .where(scope))
    if since is not None:
        query = query.where(HistoryEvent.at > since)
    return query.order_by(HistoryEvent.id.desc()).limit(MAX_REFUSED_LISTED)


_REFUSED_SINCE_LAST_DIGEST: dict[tuple[str, tuple[tuple[str, str], ...]],
                                 Select[tuple[HistoryEvent]]] = {}


def _refused_since_last_digest_query(config: Config, division: str) -> Select[tuple[HistoryEvent]]:
    """:func:`_refused_query` since ``division``'s last approval digest, asked in the same
    statement.  Every new request in immediate mode runs it, and building an ORM statement
    costs more than running it, so it is built once per layout of divisions (their names
    and mailboxes, all that the statement depends on)."""
    key = (division, tuple((d.name, d.mailbox.address) for d in config.divisions))
    query = _REFUSED_SINCE_LAST_DIGEST.get(key)
    if query is None:
        since = func.coalesce(_last_digest_query(config, division).scalar_subquery(),
                              _BEFORE_ANY_DIGEST)
        query = _REFUSED_SINCE_LAST_DIGEST.setdefault(key, _refused_query(config, division,
                                                                          since))
    return query


def _refused_since(session: Session, config: Config, query: Select[tuple[HistoryEvent]],
                   now: datetime) -> list[RefusedMail]:
    """The refused mail ``query`` (see :func:`_refused_query`) finds up to ``now``, oldest
    first."""
    # Nothing pending in the session can change the answer: it goes with the next flush.
    with session.no_autoflush:
        rows = session.scalars(query, {"now": now}).all()
    return [RefusedMail(at=f"{_local(config, row.at):%a %b %d %H:%M}", sender=row.actor,
                        reason=row.detail.split("\n", 1)[0][:300]) for row in reversed(rows)]


def _queue(session: Session, config: Config, division: DivisionConfig, *, digest: Digest,
           work_orders: list[WorkOrder], subject: str, heading: str,
           refused: list[RefusedMail], now: datetime,
           slot: str | None = None) -> list[OutboundMessage]:
    """One mail per staff member of ``division``: same items and photos, each with its own
    reply token (a plus-address of the division's mailbox).  ``digest`` is new, made in
    this transaction by the caller."""
    items = [_item(n, wo) for n, wo in enumerate(work_orders, start=1)]
    mailbox = division.mailbox.address
    inline = _photos(session, config, digest.id, items, work_orders,
                     mailbox.rpartition("@")[2] or "warrantyd")
    example_item = next((i for i in items if i.status == "draft"), items[0] if items else None)
    # The digest was made in this transaction: nobody has a token for it yet, issue them.
    secret = installation_secret(session, config.web.secret_env)
    rows: list[OutboundMessage] = []
    for staff in division.staff.addresses:
        token = issue_token(session, secret, kind="digest", address=staff,
                            days=division.staff.token_days, digest_id=digest.id, now=now)
        reply_address = plus_address(mailbox, token.token)
        for item in items:
            item.actions = _quick_actions(item, reply_address, subject)
        accept_all = _mailto(reply_address, subject, "accept all") if any(
            i.status == "draft" for i in items) else None
        text, html = render_mail(
            "digest", company=config.company.name, digest_id=digest.id, heading=heading,
            items=items, refused=refused, accept_all=accept_all,
            example=example_item.number if example_item else 1,
            sent=f"{_local(config, now):%a, %b %d, %Y %H:%M}",
            sr_ref=(f"SR-{digest.service_request_id}" if digest.service_request_id else None))
        row = queue_mail(
            session, our_address=mailbox, from_name=division.from_name,
            kind="digest", to=staff, subject=subject[:250], text=text, html=html,
            dedupe_key=digest_dedupe_key(digest.id, staff, slot), reply_to=reply_address,
            attachments=inline, service_request_id=digest.service_request_id, now=now,
            fresh=True,
            extra_headers={"Importance": "high", "X-Priority": "1"} if any(
                i.priority == "emergency" for i in items) else None)
        rows.append(row)
    return rows


# --- immediate digests ----------------------------------------------------------------------

def queue_digests_for_request(session: Session, config: Config, sr: ServiceRequest,
                              work_orders: list[WorkOrder], now: datetime,
                              ) -> list[OutboundMessage]:
    """In immediate mode, one digest of ``work_orders`` (drafts of ``sr``) to every staff
    member of ``sr``'s division.

    Call it right after the drafts are added, in the same transaction.  With no drafts it
    still tells staff about a new request (they can add work with ``new:``).  In scheduled
    mode it does nothing: the next :func:`queue_pending_digest` picks the drafts up.
    """
    division = config.division(sr.division)
    if digest_mode(config, division.name) != IMMEDIATE or not division.staff.addresses:
        return []
    ordered = _ordered([wo for wo in work_orders if wo.status in _OPEN_STATUSES])
    # Since the last digest, asked in the same statement (one round trip per digest).
    refused = _refused_since(session, config,
                             _refused_since_last_digest_query(config, division.name), now)
    digest = Digest(created_at=now, service_request_id=sr.id, division=division.name,
                    work_order_ids=[wo.id for wo in ordered])
    session.add(digest)
    session.flush()
    n = len(ordered)
    what = f"{n} draft{'s' if n != 1 else ''} to approve" if n else "no drafts, please review"
    urgent = "EMERGENCY - " if any(wo.priority == "emergency" for wo in ordered) else ""
    topic = sr.subject.strip() or "warranty request"
    subject = f"[{sr.ref}] {urgent}Approval digest #{digest.id}: {what} - {topic}"
    who = sr.requester_name or sr.requester_email
    where = f", {sr.home.address}" if sr.home is not None else ""
    language = language_name(sr.language)
    writes = f" (writes in {language})" if language else ""
    heading = f"{sr.ref} from {who}{writes}{where}: {what}"
    rows = _queue(session, config, division, digest=digest, work_orders=ordered,
                  subject=subject, heading=heading, refused=refused, now=now)
    from warrantyd.daemon.actions import SYSTEM, record

    record(session, "digest_sent", SYSTEM,
           f"approval digest #{digest.id} ({n} item{'s' if n != 1 else ''}) to "
           f"{', '.join(division.staff.addresses)}", sr_id=sr.id, at=now)
    return rows


# --- scheduled digests ----------------------------------------------------------------------

def _of_division(config: Config, division: str, query: Any) -> Any:
    """``query`` of work orders narrowed to ``division``'s (a join on the request)."""
    scope = in_division(config, ServiceRequest.division, division)
    if scope is None:
        return query
    return query.join(WorkOrder.service_request).where(scope)


def _undigested_drafts(session: Session, config: Config, division: str) -> list[WorkOrder]:
    drafts = session.scalars(_of_division(
        config, division, select(WorkOrder).where(WorkOrder.status == "draft"))).all()
    if not drafts:
        return []
    oldest = min(wo.created_at for wo in drafts) - timedelta(minutes=1)
    seen: set[int] = set()
    for ids in session.scalars(select(Digest.work_order_ids).where(Digest.created_at >= oldest,
                                                                   approval_digests())):
        seen.update(i for i in ids if isinstance(i, int))
    return [wo for wo in drafts if wo.id not in seen]


def _flagged_since(session: Session, config: Config, division: str,
                   since: datetime | None) -> list[WorkOrder]:
    """Open work orders with a flag (bounce, vendor question, needs vendor) changed lately."""
    query = select(WorkOrder).where(WorkOrder.status.in_(_OPEN_STATUSES))
    if since is not None:
        query = query.where(WorkOrder.updated_at > since)
    return [wo for wo in session.scalars(_of_division(config, division, query))
            if wo.flags or wo.needs_vendor]


def digest_slot_key(slot: str, division: str = MAIN_DIVISION) -> str:
    """The ``setting`` row that claims a scheduled digest's slot, once per division (the
    main division's key is the one used before there were divisions)."""
    key = f"digest_slot:{slot}" if division == MAIN_DIVISION else \
        f"digest_slot:{division}:{slot}"
    if len(key) <= 100:
        return key
    return f"digest_slot:{hashlib.sha256(division.encode()).hexdigest()[:32]}:{slot}"


def queue_pending_digest(session: Session, config: Config, now: datetime,
                         division: str = MAIN_DIVISION) -> list[OutboundMessage]:
    """One digest of everything waiting in ``division`` since its last digest, for the slot
    ``now`` falls in, to that division's staff.

    Waiting means drafts that were in no digest yet, open work orders flagged since the last
    digest, and command mail refused since then.  Nothing waiting, no mail.  The slot (``now``
    to the minute) is claimed in the database, so a second call for the same slot — another
    daemon, a scheduler misfire — sends nothing.
    """
    own = config.division(division)
    if not own.staff.addresses:
        return []
    now = now.astimezone(UTC)
    since = _last_digest_at(session, config, own.name)
    drafts = _undigested_drafts(session, config, own.name)
    flagged = [wo for wo in _flagged_since(session, config, own.name, since)
               if wo not in drafts]
    refused = _refused_since(session, config, _refused_query(config, own.name, since), now)
    if not drafts and not flagged and not refused:
        return []
    slot = f"{now:%Y%m%dT%H%M}"
    try:
        with session.begin_nested():
            session.add(Setting(key=digest_slot_key(slot, own.name), value=now.isoformat()))
            session.flush()
    except IntegrityError:
        log.info("digest slot %s was already sent", slot)
        return []
    ordered = _ordered(drafts) + _ordered(flagged)
    srs = {wo.service_request_id for wo in ordered}
    digest = Digest(created_at=now, service_request_id=srs.pop() if len(srs) == 1 else None,
                    division=own.name, work_order_ids=[wo.id for wo in ordered])
    session.add(digest)
    session.flush()
    parts = []
    if drafts:
        parts.append(f"{len(drafts)} draft{'s' if len(drafts) != 1 else ''} to approve")
    if flagged:
        parts.append(f"{len(flagged)} flagged")
    if refused:
        parts.append(f"{len(refused)} refused mail{'s' if len(refused) != 1 else ''}")
    what = ", ".join(parts)
    urgent = "EMERGENCY - " if any(wo.priority == "emergency" for wo in drafts) else ""
    subject = f"{urgent}Approval digest #{digest.id}: {what}"
    heading = f"{what} - {_local(config, now):%a %b %d}"
    rows = _queue(session, config, own, digest=digest, work_orders=ordered, subject=subject,
                  heading=heading, refused=refused, now=now, slot=slot)
    log.info("approval digest #%s (%s) queued: %s", digest.id, own.name, what)
    return rows
