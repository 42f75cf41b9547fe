"""The vendor loop: the job goes out by email, the vendor answers by email, the job closes.

* :func:`queue_vendor_notice` sends an accepted work order to its vendor: what to do, where,
  whom to call, the photos, a signed link to a read-only page, and a Reply-To token bound to
  this vendor and this work order.
* :func:`handle_vendor_reply` reads the vendor's answer onto the work order's history and acts
  on it: a date schedules the visit and tells the homeowner, "done" completes the job,
  anything that needs a person (a question, a quote, a refusal, a delay) is flagged for staff.
* :func:`complete_work_order` closes a job and resolves the service request when nothing is
  left open, telling the homeowner.

What a vendor sees is built in exactly one place, :func:`vendor_view`, from the fields meant
for vendors.  Mail and page both render only that view, so internal notes, coverage hints,
confidence, flags and other vendors' jobs cannot reach a vendor by a template slip.

Every mail about a work order goes out From its division's mailbox (the request's
``division``), with reply tokens that are plus-addresses of that mailbox, and alerts go to
that division's staff only: a vendor or homeowner of one region never sees another's address.

Every function works inside the caller's transaction and queues mail through the outbox, so
a state change and the mail it causes commit together or not at all.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from io import BytesIO
from pathlib import PurePath
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from warrantyd.daemon.actions import (
    SYSTEM,
    Effects,
    MailContext,
    record,
    store_attachments,
    thread_ids,
)
from warrantyd.daemon.config import Config, DivisionConfig
from warrantyd.daemon.homeowner_words import issue_title
from warrantyd.daemon.links import LINK_DAYS, make_link_token, page_url
from warrantyd.daemon.outbox import OutgoingAttachment, queue_mail
from warrantyd.daemon.render import localized, render, render_mail, translation
from warrantyd.daemon.tokens import installation_secret, issue_token, plus_address
from warrantyd.parsers.classify import Classification
from warrantyd.parsers.message import ParsedMessage
from warrantyd.storage.blob_db import blob_store_for
from warrantyd.storage.blobs import BlobNotFound
from warrantyd.storage.models import (
    Attachment,
    HistoryEvent,
    InboundMessage,
    OutboundMessage,
    ReplyToken,
    ServiceRequest,
    Vendor,
    WorkOrder,
    utcnow,
)
from warrantyd.storage.queries import BOUNCED_FLAG

if TYPE_CHECKING:  # imported when first needed (see vendors.handle_vendor_reply)
    from warrantyd.parsers.vendor_reply import VendorReading

log = logging.getLogger("warrantyd.vendors")

VENDOR_TOKEN_DAYS = 180
"""A vendor may answer a job for months (parts, warranty callbacks); the token lives that long."""
HOMEOWNER_TOKEN_DAYS = 365
ACCESS_NOTE_EVENT = "access_note"
"""History event for notes meant for the vendor (gate code, dog in the yard); never internal."""
VENDOR_NOTICE_KINDS = ("vendor_notice", "vendor_link", "vendor_reopened")
"""Outbound kinds that carry a link to the details page."""
LINK_REFRESH_MARGIN = timedelta(days=14)
"""A vendor who writes when their last link has less than this left gets a fresh one."""

MAX_PHOTO_BYTES = 1_500_000
MAX_PHOTO_SIDE = 2000
MAX_FILE_BYTES = 8_000_000
"""A non-image file (or an image Pillow cannot read) larger than this stays behind the link."""
MAX_ATTACHMENT_TOTAL = 15_000_000
"""Mail systems commonly refuse messages over 20-25 MB; base64 adds a third."""
JPEG_QUALITY = 85

_PHONE = re.compile(r"(?<![\d-])(?:\+?1[\s.-]?)?\(?\b\d{3}\)?[\s.-]?\d{3}[\s.-]\d{4}\b")

_TRADE_LABELS = {
    "hvac": "HVAC", "windows_doors": "Windows/doors", "flooring_tile": "Flooring/tile",
    "cabinets_countertops": "Cabinets/countertops", "grading_drainage": "Grading/drainage",
    "siding_exterior": "Siding/exterior", "garage_door": "Garage door",
    "framing_structural": "Framing/structural",
}


class WorkOrderStateError(ValueError):
    """The work order is not in a state the requested change applies to."""


# --- what a vendor may see -------------------------------------------------------------------

@dataclass(frozen=True)
class PhotoRef:
    number: int
    """1-based position among the work order's photos: the only handle a page URL uses."""
    filename: str
    content_type: str
    size: int
    sha256: str


@dataclass(frozen=True)
class VendorReply:
    at: datetime
    text: str


@dataclass(frozen=True)
class VendorView:
    """Everything a vendor is shown about one work order, and nothing else."""

    ref: str
    trade: str
    title: str
    description: str
    priority: str
    location: str | None
    address: str | None
    community: str | None
    homeowner_name: str
    homeowner_email: str
    homeowner_phone: str | None
    access_notes: tuple[str, ...]
    photos: tuple[PhotoRef, ...]
    status: str
    scheduled_for: datetime | None
    window_end: datetime | None
    vendor_name: str
    company: str

    @property
    def subject_line(self) -> str:
        return f"[{self.ref}] {self.trade}: {self.title} - {self.address or 'address to confirm'}"


def trade_label(trade: str) -> str:
    return _TRADE_LABELS.get(trade, trade.replace("_", " ").capitalize())


def homeowner_phone(sr: ServiceRequest) -> str | None:
    """The phone number the homeowner wrote in their request, if any (for scheduling)."""
    found = _PHONE.search(sr.body or "")
    return found.group(0).strip() if found else None


def work_order_photos(session: Session, wo: WorkOrder) -> list[PhotoRef]:
    ids = [i for i in (wo.photos or []) if isinstance(i, int)]
    rows = {a.id: a for a in session.scalars(select(Attachment).where(Attachment.id.in_(ids)))
            } if ids else {}
    return [PhotoRef(n, rows[i].filename or f"photo-{n}", rows[i].content_type, rows[i].size,
                     rows[i].sha256)
            for n, i in enumerate((i for i in ids if i in rows), start=1)]


def vendor_view(session: Session, config: Config, wo: WorkOrder) -> VendorView:
    """The vendor-safe view of ``wo``: the one source of every vendor mail and page."""
    sr = wo.service_request
    home = sr.home
    name = (sr.homeowner.name if sr.homeowner is not None and sr.homeowner.name
            else sr.requester_name) or ""
    notes = session.scalars(
        select(HistoryEvent.detail)
        .where(HistoryEvent.work_order_id == wo.id, HistoryEvent.event == ACCESS_NOTE_EVENT,
               HistoryEvent.internal.is_(False))
        .order_by(HistoryEvent.id)).all()
    return VendorView(
        ref=wo.ref, trade=trade_label(wo.trade), title=issue_title(wo),
        description=wo.description.strip(), priority=wo.priority, location=wo.location,
        address=home.address if home is not None else None,
        community=(home.community or None) if home is not None else None,
        homeowner_name=name, homeowner_email=sr.requester_email,
        homeowner_phone=homeowner_phone(sr), access_notes=tuple(n for n in notes if n.strip()),
        photos=tuple(work_order_photos(session, wo)), status=wo.status,
        scheduled_for=wo.scheduled_for, window_end=wo.window_end,
        vendor_name=wo.vendor.name if wo.vendor is not None else "",
        company=config.company.name)


def vendor_replies(session: Session, wo: WorkOrder) -> list[VendorReply]:
    """What the work order's current vendor wrote about it (their own words only)."""
    if wo.vendor is None:
        return []
    events = session.scalars(
        select(HistoryEvent)
        .where(HistoryEvent.work_order_id == wo.id, HistoryEvent.event == "vendor_reply",
               HistoryEvent.actor == wo.vendor.email)
        .order_by(HistoryEvent.at, HistoryEvent.id)).all()
    return [VendorReply(e.at, _reply_text(e.detail)) for e in events]


def add_access_note(session: Session, wo: WorkOrder, text: str, actor: str,
                    now: datetime) -> HistoryEvent:
    """A note the vendor is meant to read (shown in the notice and on the page)."""
    return record(session, ACCESS_NOTE_EVENT, actor, " ".join(text.split()),
                  sr_id=wo.service_request_id, wo_id=wo.id, at=now)


# The names are written here rather than taken from the C library's locales: a server has
# whichever locales were installed, and a homeowner's mail must not depend on that.
_WEEKDAYS = {
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
    "es": ("lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"),
    "fr": ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"),
    "pt": ("segunda-feira", "terça-feira", "quarta-feira", "quinta-feira", "sexta-feira",
           "sábado", "domingo"),
}
_MONTHS = {
    "en": ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"),
    "es": ("enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto",
           "septiembre", "octubre", "noviembre", "diciembre"),
    "fr": ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août",
           "septembre", "octobre", "novembre", "décembre"),
    "pt": ("janeiro", "fevereiro", "março", "abril", "maio", "junho", "julho", "agosto",
           "setembro", "outubro", "novembro", "dezembro"),
}


def format_visit(start: datetime, end: datetime | None, timezone: str,
                 language: str | None = None) -> str:
    """``Thursday, December 3, 2026, 8:00 AM to 10:00 AM`` in company time.

    In the homeowner's ``language`` when we have its words ("jueves, 3 de diciembre de 2026,
    8:00 a. m. a 10:00 a. m.", "jeudi 3 décembre 2026, 8 h 00 à 10 h 00", "quinta-feira,
    3 de dezembro de 2026, 8:00 às 10:00"), else in English.
    """
    lang = language if language in _WEEKDAYS else "en"
    zone = ZoneInfo(timezone)
    local = start.astimezone(zone)
    text = f"{_day(local, lang)}, {_clock(local, lang)}"
    if end is not None:
        finish = end.astimezone(zone)
        text += f" {_until(finish, lang)} {_clock(finish, lang)}"
    return text


def _day(local: datetime, lang: str) -> str:
    weekday, month = _WEEKDAYS[lang][local.weekday()], _MONTHS[lang][local.month - 1]
    if lang == "en":
        return f"{weekday}, {month} {local.day}, {local.year}"
    if lang == "fr":
        return f"{weekday} {'1er' if local.day == 1 else local.day} {month} {local.year}"
    return f"{weekday}, {local.day} de {month} de {local.year}"


def _clock(moment: datetime, lang: str = "en") -> str:
    if lang == "fr":
        return f"{moment.hour} h {moment.minute:02d}"
    if lang == "pt":
        return f"{moment.hour}:{moment.minute:02d}"
    hour = moment.hour % 12 or 12
    if lang == "es":
        return f"{hour}:{moment.minute:02d} {'a. m.' if moment.hour < 12 else 'p. m.'}"
    return f"{hour}:{moment.minute:02d} {'AM' if moment.hour < 12 else 'PM'}"


def _until(finish: datetime, lang: str) -> str:
    """The word between a window's two times: "to", "a", "à", "às" ("à 1:00", one o'clock)."""
    if lang == "pt":
        return "à" if finish.hour == 1 else "às"
    return {"es": "a", "fr": "à"}.get(lang, "to")


def _date(moment: datetime, timezone: str) -> str:
    local = moment.astimezone(ZoneInfo(timezone))
    return f"{_MONTHS['en'][local.month - 1]} {local.day}, {local.year}"


def division_of(config: Config, sr: ServiceRequest) -> DivisionConfig:
    """The division a request (and its work orders) belongs to: whose mailbox, staff and
    vendors act for it."""
    return config.division(sr.division)


# --- links ------------------------------------------------------------------------------------

def link_secret(session: Session, config: Config) -> bytes:
    """The key links are signed with (the installation secret; its own salt keeps it apart)."""
    return installation_secret(session, config.web.secret_env)


def vendor_link(config: Config, secret: bytes | str, wo: WorkOrder, *,
                now: datetime | None = None, days: float = LINK_DAYS) -> str:
    """The signed URL of ``wo``'s details page for its current vendor."""
    if wo.vendor_id is None:
        raise WorkOrderStateError(f"{wo.ref} has no vendor; a details link is for its vendor")
    token = make_link_token(secret, work_order_id=wo.id, vendor_id=wo.vendor_id,
                            now=now or utcnow(), days=days)
    return page_url(config.web.base_url, token)


# --- photos for mail --------------------------------------------------------------------------

def _shrink(content: bytes) -> bytes:
    from PIL import Image, ImageOps

    with Image.open(BytesIO(content)) as opened:
        opened.draft("RGB", (MAX_PHOTO_SIDE, MAX_PHOTO_SIDE))
        image = ImageOps.exif_transpose(opened)
        image.thumbnail((MAX_PHOTO_SIDE, MAX_PHOTO_SIDE))
        if image.mode != "RGB":
            rgba = image.convert("RGBA")
            image = Image.new("RGB", rgba.size, (255, 255, 255))
            image.paste(rgba, mask=rgba.getchannel("A"))
        out = BytesIO()
        image.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True)
        return out.getvalue()


def _too_big_image(content: bytes) -> bool:
    if len(content) > MAX_PHOTO_BYTES:
        return True
    try:
        from PIL import Image

        with Image.open(BytesIO(content)) as image:
            return max(image.size) > MAX_PHOTO_SIDE
    except Exception:  # not an image Pillow knows: leave it as it is
        return False


def mail_attachments(session: Session, config: Config, photos: list[PhotoRef]
                     ) -> tuple[list[OutgoingAttachment], list[str]]:
    """The photos as mail attachments (large images scaled down); and the names left out."""
    blobs = blob_store_for(config.storage.blobs, config.storage.data_dir, session=session)
    attached: list[OutgoingAttachment] = []
    left_out: list[str] = []
    total = 0
    for photo in photos:
        try:
            content = blobs.get(photo.sha256)
        except (BlobNotFound, ValueError):
            log.warning("photo %s (%s) is missing from the blob store", photo.filename,
                        photo.sha256)
            left_out.append(photo.filename)
            continue
        filename, content_type = photo.filename, photo.content_type
        if content_type.startswith("image/") and content_type != "image/svg+xml" \
                and _too_big_image(content):
            try:
                content = _shrink(content)
                filename, content_type = str(PurePath(filename).with_suffix(".jpg")), "image/jpeg"
            except Exception as exc:  # Pillow raises many types for broken or exotic files
                log.info("photo %s could not be scaled down: %s", photo.filename, exc)
        if len(content) > MAX_FILE_BYTES or total + len(content) > MAX_ATTACHMENT_TOTAL:
            left_out.append(photo.filename)
            continue
        total += len(content)
        attached.append(OutgoingAttachment(filename, content_type, content))
    return attached, left_out


# --- to the vendor ----------------------------------------------------------------------------

def _assignment_round(session: Session, wo: WorkOrder) -> int:
    """How many times the job was taken from a vendor: makes re-sends distinct mails."""
    return session.scalar(
        select(func.count()).select_from(HistoryEvent)
        .where(HistoryEvent.work_order_id == wo.id,
               HistoryEvent.event == "vendor_withdrawn")) or 0


def _count_events(session: Session, event: str, *, wo_id: int | None = None,
                  sr_id: int | None = None) -> int:
    stmt = select(func.count()).select_from(HistoryEvent).where(HistoryEvent.event == event)
    if wo_id is not None:
        stmt = stmt.where(HistoryEvent.work_order_id == wo_id)
    if sr_id is not None:
        stmt = stmt.where(HistoryEvent.service_request_id == sr_id)
    return session.scalar(stmt) or 0


def _vendor_mail(session: Session, config: Config, wo: WorkOrder, vendor: Vendor, *,
                 kind: str, template: str, subject: str, dedupe_key: str, now: datetime,
                 with_photos: bool = False, **extra: object) -> tuple[OutboundMessage, str]:
    """One mail to ``vendor`` about ``wo`` with a fresh link and reply token; (row, summary)."""
    secret = link_secret(session, config)
    token = issue_token(session, secret, kind="vendor", address=vendor.email,
                        days=VENDOR_TOKEN_DAYS, work_order_id=wo.id,
                        service_request_id=wo.service_request_id, now=now)
    view = vendor_view(session, config, wo)
    link = vendor_link(config, secret, wo, now=now)
    expires = now + timedelta(days=LINK_DAYS)
    attachments: list[OutgoingAttachment] = []
    left_out: list[str] = []
    if with_photos:
        attachments, left_out = mail_attachments(session, config, list(view.photos))
    tz = config.company.timezone
    text, html = render_mail(
        template, view=view, link=link, link_expires=_date(expires, tz),
        attached=[a.filename for a in attachments], left_out=left_out,
        schedule=(format_visit(view.scheduled_for, view.window_end, tz)
                  if view.scheduled_for else None), **extra)
    division = division_of(config, wo.service_request)
    row = queue_mail(
        session, our_address=division.mailbox.address, from_name=division.from_name,
        kind=kind, to=f"{vendor.name} <{vendor.email}>", subject=subject[:250], text=text,
        html=html, dedupe_key=dedupe_key, reply_to=plus_address(division.mailbox.address,
                                                                token.token),
        attachments=attachments, service_request_id=wo.service_request_id,
        work_order_id=wo.id, now=now)
    summary = f"{len(attachments)} photo(s) attached"
    if left_out:
        summary += f", left out (too large or missing): {', '.join(left_out)}"
    return row, f"{summary}; link valid until {_date(expires, tz)}"


def queue_vendor_notice(session: Session, config: Config, wo: WorkOrder, now: datetime,
                        actor: str) -> OutboundMessage:
    """Send the work order to its vendor (the caller set ``wo.vendor`` and the status)."""
    vendor = wo.vendor
    if vendor is None:
        raise WorkOrderStateError(f"{wo.ref} has no vendor to notify; assign one first")
    view = vendor_view(session, config, wo)
    key = f"vendor-notice:{wo.ref}:{vendor.id}:{_assignment_round(session, wo)}"
    row, summary = _vendor_mail(session, config, wo, vendor, kind="vendor_notice",
                                template="vendor_notice", subject=view.subject_line,
                                dedupe_key=key, now=now, with_photos=True)
    if not _has_event(session, wo, "vendor_notified", row):
        record(session, "vendor_notified", actor,
               f"work order queued to {vendor.name} <{vendor.email}> ({summary})",
               sr_id=wo.service_request_id, wo_id=wo.id, outbound=row, at=now)
    return row


def _has_event(session: Session, wo: WorkOrder, event: str, row: OutboundMessage) -> bool:
    return bool(session.scalar(
        select(func.count()).select_from(HistoryEvent)
        .where(HistoryEvent.work_order_id == wo.id, HistoryEvent.event == event,
               HistoryEvent.outbound_message_id == row.id)))


def queue_vendor_withdrawal(session: Session, config: Config, wo: WorkOrder, old_vendor: Vendor,
                            now: datetime) -> OutboundMessage:
    """Tell a vendor the job is no longer theirs; their link and reply token stop working."""
    round_no = _assignment_round(session, wo)
    view = vendor_view(session, config, wo)
    text, html = render_mail("vendor_withdrawn", ref=view.ref, title=view.title,
                             address=view.address, vendor_name=old_vendor.name,
                             company=config.company.name)
    division = division_of(config, wo.service_request)
    row = queue_mail(
        session, our_address=division.mailbox.address, from_name=division.from_name,
        kind="vendor_withdrawn", to=f"{old_vendor.name} <{old_vendor.email}>",
        subject=f"[{wo.ref}] Withdrawn: {view.title} - {view.address or 'address to confirm'}"[
            :250],
        text=text, html=html, dedupe_key=f"vendor-withdrawn:{wo.ref}:{old_vendor.id}:{round_no}",
        service_request_id=wo.service_request_id, work_order_id=wo.id, now=now)
    for token in session.scalars(select(ReplyToken).where(
            ReplyToken.work_order_id == wo.id, ReplyToken.kind == "vendor",
            ReplyToken.address == old_vendor.email)):
        if token.expires_at is None or token.expires_at > now:
            token.expires_at = now
    if not _has_event(session, wo, "vendor_withdrawn", row):
        record(session, "vendor_withdrawn", SYSTEM,
               f"{old_vendor.name} <{old_vendor.email}> told the job is withdrawn",
               sr_id=wo.service_request_id, wo_id=wo.id, outbound=row, at=now)
    return row


def assign_vendor(session: Session, config: Config, wo: WorkOrder, vendor: Vendor,
                  now: datetime, actor: str) -> list[OutboundMessage]:
    """Give the job to ``vendor`` and notify them; a previous vendor is told it is withdrawn."""
    if wo.status in ("completed", "rejected"):
        raise WorkOrderStateError(f"{wo.ref} is {wo.status}; reopen it before assigning")
    check_same_division(config, wo, vendor)
    old = wo.vendor
    if old is not None and old.id == vendor.id and wo.status == "in_progress":
        return []
    sent: list[OutboundMessage] = []
    if old is not None and old.id != vendor.id and wo.status == "in_progress":
        sent.append(queue_vendor_withdrawal(session, config, wo, old, now))
    wo.vendor = vendor
    wo.vendor_id = vendor.id
    wo.status = "in_progress"
    wo.needs_vendor = False
    wo.scheduled_for = wo.window_end = None
    wo.updated_at = now
    sent.append(queue_vendor_notice(session, config, wo, now, actor))
    return sent


def check_same_division(config: Config, wo: WorkOrder, vendor: Vendor) -> None:
    """A work order goes only to a vendor of its own division (the same company serving two
    divisions is two vendor rows, each with its own history)."""
    own = division_of(config, wo.service_request).name
    if config.division(vendor.division).name != own:
        raise WorkOrderStateError(f"{vendor.name} <{vendor.email}> is not a vendor of "
                                  f"{wo.ref}'s division ({own})")


def alert_staff_vendor_bounce(session: Session, config: Config, wo: WorkOrder, detail: str,
                              now: datetime) -> list[OutboundMessage]:
    """A vendor never got the job: every staff member of its division hears it at once,
    with what to do."""
    vendor = wo.vendor
    who = f"{vendor.name} <{vendor.email}>" if vendor is not None else "the vendor"
    round_no = _count_events(session, "vendor_notified", wo_id=wo.id)
    division = division_of(config, wo.service_request)
    rows = []
    for staff in division.staff.addresses:
        text, html = render_mail("vendor_bounced", ref=wo.ref, title=issue_title(wo), vendor=who,
                                 detail=detail, company=config.company.name)
        row = queue_mail(
            session, our_address=division.mailbox.address, from_name=division.from_name,
            kind="alert_vendor_bounce", to=staff,
            subject=f"[{wo.ref}] Vendor email bounced: {who}"[:250], text=text, html=html,
            dedupe_key=f"vendor-bounce:{wo.ref}:{vendor.id if vendor else 0}:{round_no}:{staff}",
            service_request_id=wo.service_request_id, work_order_id=wo.id, now=now)
        if not _has_event(session, wo, "staff_alerted", row):
            record(session, "staff_alerted", SYSTEM, f"staff {staff} told the vendor email "
                   f"bounced", sr_id=wo.service_request_id, wo_id=wo.id, outbound=row,
                   internal=True, at=now)
        rows.append(row)
    return rows


# --- to the homeowner -------------------------------------------------------------------------

def _homeowner_mail(session: Session, config: Config, sr: ServiceRequest, *, kind: str,
                    template: str, dedupe_key: str, now: datetime,
                    work_order_id: int | None = None, **context: object) -> OutboundMessage:
    """``email/TEMPLATE`` and its subject ``email/TEMPLATE_subject`` to the homeowner, in
    their language (``sr.language``) where we have the translation, threaded under the ack."""
    secret = installation_secret(session, config.web.secret_env)
    token = issue_token(session, secret, kind="homeowner", address=sr.requester_email,
                        days=HOMEOWNER_TOKEN_DAYS, service_request_id=sr.id, now=now)
    ack = session.scalars(select(OutboundMessage).where(
        OutboundMessage.service_request_id == sr.id, OutboundMessage.kind == "ack")
        .order_by(OutboundMessage.id)).first()
    text, html = render_mail(template, language=sr.language, name=sr.requester_name,
                             company=config.company.name, sr_ref=sr.ref,
                             address=sr.home.address if sr.home else None, **context)
    subject = render(f"email/{localized(f'{template}_subject', sr.language)}.txt",
                     sr_ref=sr.ref, **context).strip()
    division = division_of(config, sr)
    return queue_mail(
        session, our_address=division.mailbox.address, from_name=division.from_name,
        kind=kind, to=sr.requester_email, subject=subject[:250], text=text, html=html,
        dedupe_key=dedupe_key, reply_to=plus_address(division.mailbox.address, token.token),
        in_reply_to=ack.message_id if ack else None, service_request_id=sr.id,
        work_order_id=work_order_id, now=now)


def tell_homeowner_scheduled(session: Session, config: Config, wo: WorkOrder,
                             now: datetime) -> OutboundMessage | None:
    """The date and the vendor's name, never the vendor's own words.

    The date is written in the language of the mail it goes in; the history keeps it in
    English, for staff."""
    sr = wo.service_request
    if wo.scheduled_for is None or wo.vendor is None or not sr.requester_email:
        return None
    tz = config.company.timezone
    when = format_visit(wo.scheduled_for, wo.window_end, tz)
    row = _homeowner_mail(
        session, config, sr, kind="homeowner_scheduled", template="homeowner_scheduled",
        dedupe_key=f"scheduled:{wo.ref}:{wo.scheduled_for.isoformat()}", now=now,
        work_order_id=wo.id, vendor_name=wo.vendor.name,
        title=issue_title(wo, translation("homeowner_scheduled", sr.language)),
        when=format_visit(wo.scheduled_for, wo.window_end, tz,
                          translation("homeowner_scheduled", sr.language)),
        windowed=wo.window_end is not None)
    if not _has_event(session, wo, "homeowner_told_schedule", row):
        record(session, "homeowner_told_schedule", SYSTEM,
               f"{sr.requester_email} told: {wo.vendor.name}, {when}", sr_id=sr.id, wo_id=wo.id,
               outbound=row, at=now)
    return row


# --- completion and resolution ----------------------------------------------------------------

def _counts_for_resolution(wo: WorkOrder) -> bool:
    return wo.merged_into_id is None


def complete_work_order(session: Session, config: Config, wo: WorkOrder, actor: str,
                        now: datetime, inbound: InboundMessage | None = None
                        ) -> list[OutboundMessage]:
    """Close ``wo``; resolve its service request when every job is done or dismissed."""
    if wo.status == "completed":
        return []
    if wo.status == "rejected":
        raise WorkOrderStateError(f"{wo.ref} was rejected; reopen it before completing it")
    wo.status = "completed"
    wo.completed_at = now
    wo.updated_at = now
    record(session, "completed", actor, f"{wo.ref} completed", sr_id=wo.service_request_id,
           wo_id=wo.id, inbound=inbound, at=now)
    return resolve_if_done(session, config, wo.service_request, now)


def resolve_if_done(session: Session, config: Config, sr: ServiceRequest,
                    now: datetime) -> list[OutboundMessage]:
    """Resolve ``sr`` when all its work orders are completed or rejected, one completed."""
    session.flush()
    jobs = [wo for wo in session.scalars(select(WorkOrder).where(
        WorkOrder.service_request_id == sr.id).order_by(WorkOrder.id))
        if _counts_for_resolution(wo)]
    if sr.status == "resolved" or not jobs:
        return []
    if any(wo.status not in ("completed", "rejected") for wo in jobs):
        return []
    done = [wo for wo in jobs if wo.status == "completed"]
    if not done:
        return []
    sr.status = "resolved"
    sr.resolved_at = now
    sr.updated_at = now
    round_no = _count_events(session, "request_resolved", sr_id=sr.id)
    record(session, "request_resolved", SYSTEM,
           f"all work orders completed or rejected ({', '.join(wo.ref for wo in done)} "
           f"completed)", sr_id=sr.id, at=now)
    if not sr.requester_email:
        return []
    row = _homeowner_mail(
        session, config, sr, kind="homeowner_resolved", template="homeowner_resolved",
        dedupe_key=f"resolved:{sr.ref}:{round_no}", now=now,
        items=[issue_title(wo, translation("homeowner_resolved", sr.language))
               for wo in done])
    record(session, "homeowner_told_resolved", SYSTEM, f"{sr.requester_email} told",
           sr_id=sr.id, outbound=row, at=now)
    return [row]


def reopen_work_order(session: Session, config: Config, wo: WorkOrder, actor: str,
                      now: datetime) -> list[OutboundMessage]:
    """Undo a completion (or a rejection); the vendor hears the job is open again."""
    if wo.status not in ("completed", "rejected"):
        raise WorkOrderStateError(f"{wo.ref} is {wo.status.replace('_', ' ')}; only a completed "
                                  f"or rejected work order can be reopened")
    was = wo.status
    wo.status = "in_progress" if was == "completed" and wo.vendor is not None else "draft"
    wo.completed_at = None
    wo.updated_at = now
    record(session, "reopened", actor, f"{wo.ref} reopened ({was} → {wo.status})",
           sr_id=wo.service_request_id, wo_id=wo.id, at=now)
    sr = wo.service_request
    if sr.status == "resolved":
        sr.status = "in_progress"
        sr.resolved_at = None
        sr.updated_at = now
        record(session, "request_reopened", actor, f"{wo.ref} reopened", sr_id=sr.id, at=now)
    if wo.status != "in_progress" or wo.vendor is None:
        return []
    vendor = wo.vendor
    round_no = _count_events(session, "reopened", wo_id=wo.id)
    view = vendor_view(session, config, wo)
    row, summary = _vendor_mail(
        session, config, wo, vendor, kind="vendor_reopened", template="vendor_reopened",
        subject=f"[{wo.ref}] Reopened: {view.title} - {view.address or 'address to confirm'}",
        dedupe_key=f"vendor-reopened:{wo.ref}:{vendor.id}:{round_no}", now=now)
    record(session, "vendor_notified", actor,
           f"{vendor.name} <{vendor.email}> told the job is reopened ({summary})",
           sr_id=wo.service_request_id, wo_id=wo.id, outbound=row, at=now)
    return [row]


# --- vendor replies ---------------------------------------------------------------------------

_TEXT_SEPARATOR = "\n\n"


def _reply_detail(reading: VendorReading, text: str, attachments: list[Attachment]) -> str:
    head = f"{reading.intent}: {reading.reason}"
    if reading.amount:
        head += f" (amount {reading.amount})"
    body = text or "(no new text)"
    if attachments:
        body += "\n\nAttached: " + ", ".join(a.filename for a in attachments)
    return (head.replace("\n", " ") + _TEXT_SEPARATOR + body)[:8000]


def _reply_text(detail: str) -> str:
    """The vendor's own words of a ``vendor_reply`` event (the first line is our reading)."""
    _, sep, text = detail.partition(_TEXT_SEPARATOR)
    return text if sep else detail


def first_line(text: str, limit: int = 160) -> str:
    for line in text.splitlines():
        line = " ".join(line.split())
        if line:
            return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"
    return "(no text)"


def add_flag(wo: WorkOrder, flag: str) -> None:
    """Add a flag for staff (a new list, so the JSON column is seen as changed)."""
    flag = flag[:300]
    if flag not in (wo.flags or []):
        wo.flags = [*(wo.flags or []), flag]


def _drop_flags(wo: WorkOrder, prefix: str) -> None:
    kept = [f for f in (wo.flags or []) if not str(f).startswith(prefix)]
    if kept != list(wo.flags or []):
        wo.flags = kept


def _former_vendor(session: Session, wo: WorkOrder, sender: str) -> bool:
    return bool(session.scalar(
        select(func.count()).select_from(OutboundMessage)
        .where(OutboundMessage.work_order_id == wo.id, OutboundMessage.to_addr == sender,
               OutboundMessage.kind.in_(VENDOR_NOTICE_KINDS))))


def vendor_may_act(msg: ParsedMessage, verdict: Classification, wo: WorkOrder) -> str | None:
    """Why the mail may act on ``wo`` (sender or token is its vendor), or None."""
    vendor = wo.vendor
    thread = verdict.thread
    if vendor is None or wo.status in ("draft", "rejected") or thread is None:
        return None
    if thread.work_order_id != wo.id or thread.token_address != vendor.email:
        return None
    # A From header and a [WO-n] subject are anyone's to write: acting on a job needs the
    # reply token we gave its vendor, or the vendor answering our notice by its Message-ID.
    if thread.evidence == "token" and thread.kind == "vendor":
        return f"reply token issued to the work order's vendor ({vendor.email})"
    if thread.evidence == "message-id" and msg.from_addr == vendor.email:
        return "the vendor answered our notice (In-Reply-To/References)"
    return None


def handle_vendor_reply(ctx: MailContext) -> Effects:
    """A vendor answers about a job: history first, then what the answer means."""
    session, now = ctx.session, ctx.now
    sr_id, wo_id = thread_ids(ctx.verdict)
    text = ctx.reply.new_text.strip()
    wo = session.get(WorkOrder, wo_id, with_for_update=True) if wo_id is not None else None
    if wo is None:
        sr = session.get(ServiceRequest, sr_id) if sr_id is not None else None
        attachments = store_attachments(ctx, sr)
        names = ", ".join(a.filename for a in attachments)
        record(session, "vendor_mail", ctx.sender,
               f"{ctx.verdict.reason}\n\n{ctx.msg.subject}\n\n{text}"
               + (f"\n\nAttached: {names}" if names else ""),
               sr_id=sr.id if sr else None, inbound=ctx.inbound, internal=True, at=now)
        log.info("vendor mail %s from %s names no work order: recorded for staff",
                 ctx.inbound.id, ctx.sender)
        return Effects(service_request=sr)

    # Imported on the first vendor reply: its month names and patterns take a daemon's
    # start a noticeable time to build, and most mail is no vendor reply.
    from warrantyd.parsers.vendor_reply import read_vendor_reply

    sr = wo.service_request
    if vendor_may_act(ctx.msg, ctx.verdict, wo) is None:
        # Read offline only: mail from someone who may not act never costs a model call.
        return _refuse(ctx, wo, read_vendor_reply(text, ctx.msg.date or now,
                                                  ctx.config.company.timezone,
                                                  subject=ctx.msg.subject), text)
    # The model reading, when configured, was made before this transaction (process.py);
    # otherwise the offline reader answers here.
    reading = ctx.vendor_reading or read_vendor_reply(
        text, ctx.msg.date or now, ctx.config.company.timezone, subject=ctx.msg.subject)

    attachments = store_attachments(ctx, sr)
    wo.last_vendor_reply_at = now
    wo.updated_at = now
    record(session, "vendor_reply", ctx.sender, _reply_detail(reading, text, attachments),
           sr_id=sr.id, wo_id=wo.id, inbound=ctx.inbound, at=now)
    _clear_bounce_if_heard_from(ctx, wo)
    effects = Effects(service_request=sr, work_orders=[wo])
    effects.outbound.extend(_apply_reading(ctx, wo, reading, text))
    row = _maybe_refresh_link(ctx, wo)
    if row is not None:
        effects.outbound.append(row)
    return effects


def _clear_bounce_if_heard_from(ctx: MailContext, wo: WorkOrder) -> None:
    """A vendor whose address bounced and who now writes from it is reachable again: new
    jobs may go to it, and this job's bounce flag goes (the vendor has it now).  Only mail
    from the vendor's own address, written after the bounce, counts: a colleague answering
    on the thread proves nothing about the vendor's mailbox."""
    vendor = wo.vendor
    if vendor is None or vendor.bounced_at is None or ctx.sender != vendor.email:
        return
    written = ctx.msg.date or ctx.now
    if written <= vendor.bounced_at:
        return
    bounced = vendor.bounced_at
    vendor.bounced_at = None
    _drop_flags(wo, BOUNCED_FLAG)
    record(ctx.session, "vendor_reachable", SYSTEM,
           f"{vendor.name} <{vendor.email}> wrote after mail to it bounced on "
           f"{bounced.astimezone(ZoneInfo(ctx.config.company.timezone)):%Y-%m-%d}: the "
           f"address works again and new jobs may be sent to it",
           sr_id=wo.service_request_id, wo_id=wo.id, at=ctx.now)


def _refuse(ctx: MailContext, wo: WorkOrder, reading: VendorReading, text: str) -> Effects:
    session, now, sender = ctx.session, ctx.now, ctx.sender
    attachments = store_attachments(ctx, None)
    former = _former_vendor(session, wo, sender)
    who = "a former vendor of this job" if former else "not this job's vendor"
    record(session, "vendor_reply_refused", sender,
           f"{sender} is {who}: nothing changed\n\n"
           + _reply_detail(reading, text, attachments),
           sr_id=wo.service_request_id, wo_id=wo.id, inbound=ctx.inbound, internal=True, at=now)
    if not former or reading.intent not in ("other", "decline"):
        add_flag(wo, f"mail from {sender} ({who}) not applied: {first_line(text, 100)}")
    log.warning("inbound %s: %s may not change %s (%s)", ctx.inbound.id, sender, wo.ref, who)
    return Effects(work_orders=[wo])


def _apply_reading(ctx: MailContext, wo: WorkOrder, reading: VendorReading,
                   text: str) -> list[OutboundMessage]:
    session, config, now, sender = ctx.session, ctx.config, ctx.now, ctx.sender
    intent = reading.intent
    if wo.status != "in_progress":
        if intent not in ("other", "completed"):
            add_flag(wo, f"vendor wrote on a {wo.status} work order ({intent}): "
                         f"{first_line(text)}")
        return []
    if intent == "completed":
        return complete_work_order(session, config, wo, sender, now, inbound=ctx.inbound)
    sent: list[OutboundMessage] = []
    if intent in ("confirm_schedule", "delay") and reading.scheduled_for is not None:
        wo.scheduled_for, wo.window_end = reading.scheduled_for, reading.window_end
        when = format_visit(reading.scheduled_for, reading.window_end, config.company.timezone)
        record(session, "scheduled", sender, f"visit set for {when}", sr_id=wo.service_request_id,
               wo_id=wo.id, inbound=ctx.inbound, at=now)
        _drop_flags(wo, "vendor proposed times")
        row = tell_homeowner_scheduled(session, config, wo, now)
        if row is not None:
            sent.append(row)
    if intent == "confirm_schedule" and reading.scheduled_for is None:
        add_flag(wo, f"vendor confirmed but no date could be read: {first_line(text)}")
    elif intent == "propose_times":
        tz = config.company.timezone
        options = "; ".join(format_visit(o.start, o.end, tz) for o in reading.options)
        add_flag(wo, f"vendor proposed times: {options or first_line(text)}")
    elif intent == "quote":
        amount = f" {reading.amount}" if reading.amount else ""
        add_flag(wo, f"vendor quote{amount}: {first_line(text)}")
    elif intent in ("question", "decline", "delay"):
        add_flag(wo, f"vendor {intent}: {first_line(text)}")
    return sent


def _maybe_refresh_link(ctx: MailContext, wo: WorkOrder) -> OutboundMessage | None:
    """A vendor whose link has (nearly) run out gets a fresh one when they write."""
    session, config, now = ctx.session, ctx.config, ctx.now
    vendor = wo.vendor
    if vendor is None or wo.status != "in_progress":
        return None
    last = session.scalar(
        select(func.max(OutboundMessage.created_at))
        .where(OutboundMessage.work_order_id == wo.id, OutboundMessage.to_addr == vendor.email,
               OutboundMessage.kind.in_(VENDOR_NOTICE_KINDS)))
    if isinstance(last, str):  # aggregates bypass the column type on SQLite
        last = datetime.fromisoformat(last)
    if last is not None and last.tzinfo is None:
        last = last.replace(tzinfo=now.tzinfo)
    if last is not None and now - last < timedelta(days=LINK_DAYS) - LINK_REFRESH_MARGIN:
        return None
    view = vendor_view(session, config, wo)
    row, summary = _vendor_mail(
        session, config, wo, vendor, kind="vendor_link", template="vendor_link",
        subject=f"[{wo.ref}] New link: {view.title} - {view.address or 'address to confirm'}",
        dedupe_key=f"vendor-link:{wo.ref}:{vendor.id}:{now:%Y-%m-%d}", now=now)
    record(session, "vendor_link_sent", SYSTEM, f"fresh details link for {vendor.email} "
           f"({summary})", sr_id=wo.service_request_id, wo_id=wo.id, outbound=row, at=now)
    return row
