"""What each kind of mail causes, inside the one transaction that marks it processed.

Every function here only changes rows in the session it is given and queues mail through the
outbox in that same session, so the caller's commit makes all of it happen at once or none of
it.  Automated mail (bounces, auto-replies, our own mail) is recorded on the thread it belongs
to but never answered and never drafted from.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from warrantyd.daemon.config import Config, DivisionConfig
from warrantyd.daemon.drafters.base import DraftIssue, DraftResult
from warrantyd.daemon.drafters.coverage import coverage_hint
from warrantyd.daemon.drafting import Requester, locate_home, requester_of
from warrantyd.daemon.homeowner_words import issue_title, place_name
from warrantyd.daemon.outbox import queue_mail
from warrantyd.daemon.render import localized, render, render_mail, translation
from warrantyd.daemon.tokens import installation_secret, issue_token, plus_address
from warrantyd.parsers import classify as kinds
from warrantyd.parsers.classify import Classification, strip_subject_prefix
from warrantyd.parsers.message import ParsedMessage
from warrantyd.parsers.trim import Reply
from warrantyd.storage.blob_db import BlobStorage
from warrantyd.storage.models import (
    MAIN_DIVISION,
    Attachment,
    HistoryEvent,
    InboundMessage,
    OutboundMessage,
    ServiceRequest,
    Vendor,
    WorkOrder,
)

if TYPE_CHECKING:  # imported when first needed (see vendors.handle_vendor_reply)
    from warrantyd.parsers.vendor_reply import VendorReading

log = logging.getLogger("warrantyd.actions")

SYSTEM = "system"
_PHONE = re.compile(r"(?:\+?1[\s.-]?)?\(?\b\d{3}\)?[\s.-]?\d{3}[\s.-]?\d{4}\b")


@dataclass
class MailContext:
    """One inbound mail being acted on, inside the transaction that marks it processed."""

    session: Session
    config: Config
    blobs: BlobStorage
    inbound: InboundMessage
    msg: ParsedMessage
    reply: Reply
    verdict: Classification
    draft: DraftResult | None
    now: datetime
    vendor_reading: VendorReading | None = None
    """The language model's reading of a vendor reply, made before the transaction."""
    arrival_division: str = MAIN_DIVISION
    """The division whose mailbox the mail arrived in (files given on the command line:
    the main one).  A new request is filed there, unless the sender is a homeowner of
    exactly one other division (see ``drafting.locate_home``); mail on a thread follows the
    thread's."""

    @property
    def sender(self) -> str:
        return self.msg.from_addr or "unknown"

    @property
    def division(self) -> DivisionConfig:
        """The arrival division's settings (mailbox, staff, vendors)."""
        return self.config.division(self.arrival_division)


@dataclass
class Effects:
    """What processing one mail did; ``status`` becomes the inbound row's status."""

    status: str = "done"
    outbound: list[OutboundMessage] = field(default_factory=list)
    service_request: ServiceRequest | None = None
    work_orders: list[WorkOrder] = field(default_factory=list)


_ADD_HISTORY = insert(HistoryEvent.__table__)


def record(session: Session, event: str, actor: str, detail: str = "", *,
           sr_id: int | None = None, wo_id: int | None = None,
           inbound: InboundMessage | None = None, outbound: OutboundMessage | None = None,
           internal: bool = False, at: datetime | None = None) -> None:
    """Add one history event; every change and every mail in or out gets one.

    Inserted at once, in the session's transaction, by a plain INSERT: nothing reads the
    event back as an object, and several per mail made the ORM's unit of work (an INSERT
    each, with its id read back) one of the costliest parts of processing.
    """
    values = {"event": event, "actor": actor, "detail": detail, "service_request_id": sr_id,
              "work_order_id": wo_id, "internal": internal,
              "inbound_message_id": inbound.id if inbound else None,
              "outbound_message_id": outbound.id if outbound else None}
    if at is not None:
        values["at"] = at
    session.execute(_ADD_HISTORY, values)


def act(ctx: MailContext) -> Effects:
    """Apply the effects of one classified mail; the caller commits."""
    handler = handlers().get(ctx.verdict.kind, record_on_thread)
    return handler(ctx)


def ignore(ctx: MailContext) -> Effects:
    log.info("inbound %s ignored: %s", ctx.inbound.id, ctx.verdict.reason)
    return Effects(status="ignored")


def thread_ids(verdict: Classification) -> tuple[int | None, int | None]:
    """(service request id, work order id) of the thread a mail belongs to."""
    if verdict.thread is None:
        return None, None
    return verdict.thread.service_request_id, verdict.thread.work_order_id


_EVENTS = {kinds.AUTO_REPLY: "auto_reply_received", kinds.VENDOR_REPLY: "vendor_reply",
           kinds.STAFF_REPLY: "staff_reply", kinds.HOMEOWNER_REPLY: "homeowner_reply"}


def record_on_thread(ctx: MailContext) -> Effects:
    """Put the mail on its thread's history (automated mail, unthreaded vendor mail, ...)."""
    sr_id, wo_id = thread_ids(ctx.verdict)
    if sr_id is None and wo_id is None:
        log.info("inbound %s (%s) belongs to no thread: recorded only", ctx.inbound.id,
                 ctx.verdict.kind)
        return Effects(status="ignored" if ctx.verdict.is_automated else "done")
    event = _EVENTS.get(ctx.verdict.kind, ctx.verdict.kind)
    text = ctx.reply.new_text.strip() or ctx.msg.subject
    record(ctx.session, event, ctx.sender, f"{ctx.verdict.reason}\n\n{text}"[:8000],
           sr_id=sr_id, wo_id=wo_id, inbound=ctx.inbound, at=ctx.now)
    return Effects()


def bounce(ctx: MailContext) -> Effects:
    """A bounce is a business event when it is about one of our mails."""
    session, found = ctx.session, ctx.verdict.bounce
    sr_id, wo_id = thread_ids(ctx.verdict)
    original: OutboundMessage | None = None
    if found is not None and found.original_message_id:
        original = session.scalars(select(OutboundMessage).where(
            OutboundMessage.message_id == found.original_message_id)).first()
    if original is not None:
        sr_id = sr_id or original.service_request_id
        wo_id = wo_id or original.work_order_id
    if sr_id is None and wo_id is None:
        return Effects(status="ignored")
    permanent = bool(found and found.permanent)
    failed = found.failed_recipients if found else ()
    who = ", ".join(failed) or "?"
    detail = (f"{'delivery failed' if permanent else 'delivery delayed'} for {who}: "
              f"{ctx.verdict.reason}")
    record(session, "email_bounced" if permanent else "email_delayed", SYSTEM, detail,
           sr_id=sr_id, wo_id=wo_id, inbound=ctx.inbound, outbound=original, at=ctx.now)
    wo = session.get(WorkOrder, wo_id) if permanent and wo_id is not None else None
    if wo is not None and wo.vendor is not None:
        to_vendor = (original is not None and original.to_addr == wo.vendor.email) or (
            wo.vendor.email in failed)
        if to_vendor and "vendor email bounced" not in wo.flags:
            from warrantyd.daemon.vendors import alert_staff_vendor_bounce

            wo.flags = [*wo.flags, "vendor email bounced"]
            wo.vendor.bounced_at = ctx.now
            return Effects(outbound=alert_staff_vendor_bounce(session, ctx.config, wo, detail,
                                                              ctx.now))
    return Effects()


def new_request(ctx: MailContext) -> Effects:
    """A homeowner's new mail: a service request, its drafts, the acknowledgement.

    A staff member forwarding a homeowner's mail opens the request for the homeowner;
    the history says who forwarded it.
    """
    requester = requester_of(ctx.msg, ctx.reply, ctx.verdict, ctx.config)
    if requester is None:
        return record_on_thread(ctx)
    session, now = ctx.session, ctx.now
    match = locate_home(session, requester.email, ctx.arrival_division,
                        configured=ctx.config.division_names)
    owner, home = match.owner, match.home
    sr = ServiceRequest(
        division=match.division,
        status="open", requester_email=requester.email, homeowner=owner, home=home,
        requester_name=(owner.name if owner and owner.name else requester.name),
        subject=requester.subject[:2000], body=requester.text[:100_000],
        inbound_message_id=ctx.inbound.id, created_at=now, updated_at=now,
    )
    if ctx.draft is not None:
        sr.engine, sr.usage = ctx.draft.engine, dict(ctx.draft.usage)
        sr.language = ctx.draft.language
    session.add(sr)
    session.flush()
    detail = f"{requester.subject}\n\n{requester.text}"[:8000]
    if requester.email != ctx.sender:
        detail = f"forwarded by {ctx.sender}\n\n{detail}"
    record(session, "request_received", ctx.sender, detail, sr_id=sr.id, inbound=ctx.inbound,
           at=now)
    if match.routed_from is not None:
        record(session, "routed_to_division", SYSTEM,
               f"routed to division {match.division}: the home is there (the mail came to "
               f"the {match.routed_from} mailbox, {ctx.division.mailbox.address})",
               sr_id=sr.id, at=now)
    if home is None:
        record(session, "property_unknown", SYSTEM,
               f"{requester.email} is not a known homeowner; staff must match the property",
               sr_id=sr.id, at=now)
    attachments = store_attachments(ctx, sr)
    effects = Effects(service_request=sr)
    if ctx.draft is not None:
        effects.work_orders = add_drafts(session, ctx.config, sr, ctx.draft, attachments, now)
    effects.outbound.extend(_acknowledge(ctx, sr, requester, effects.work_orders))
    emergencies = [wo for wo in effects.work_orders if wo.priority == "emergency"]
    if emergencies:
        effects.outbound.extend(_alert_staff(ctx, sr, emergencies))
    # --- staff approval digest (daemon/digests.py) ---
    from warrantyd.daemon.digests import queue_digests_for_request

    effects.outbound.extend(queue_digests_for_request(session, ctx.config, sr,
                                                      effects.work_orders, now))
    return effects


def homeowner_reply(ctx: MailContext) -> Effects:
    """A homeowner writes on their request: history, attachments, drafts for new issues."""
    effects = record_on_thread(ctx)
    sr_id, _ = thread_ids(ctx.verdict)
    sr = ctx.session.get(ServiceRequest, sr_id) if sr_id is not None else None
    if sr is None:
        return effects
    attachments = store_attachments(ctx, sr)
    if sr.status == "resolved":
        sr.status = "open"
        sr.resolved_at = None
        record(ctx.session, "request_reopened", SYSTEM,
               "the homeowner wrote after resolution; staff to review", sr_id=sr.id, at=ctx.now)
    if ctx.draft is not None and ctx.draft.issues:
        known = {wo.description.lower() for wo in sr.work_orders}
        fresh = DraftResult(
            issues=[i for i in ctx.draft.issues if i.description.lower() not in known],
            engine=ctx.draft.engine, usage=ctx.draft.usage)
        effects.work_orders = add_drafts(ctx.session, ctx.config, sr, fresh, attachments, ctx.now)
        # --- staff approval digest for the newly reported issues (daemon/digests.py) ---
        if effects.work_orders:
            from warrantyd.daemon.digests import queue_digests_for_request

            effects.outbound.extend(queue_digests_for_request(
                ctx.session, ctx.config, sr, effects.work_orders, ctx.now))
    effects.service_request = sr
    return effects


def store_attachments(ctx: MailContext, sr: ServiceRequest | None) -> list[Attachment]:
    """Attachments to the blob store, rows linked to the mail and its service request."""
    rows: list[Attachment] = []
    for part in ctx.msg.attachments:
        digest = ctx.blobs.put(part.content)
        row = Attachment(inbound_message_id=ctx.inbound.id,
                         service_request_id=sr.id if sr else None,
                         filename=part.filename[:500], content_type=part.content_type[:200],
                         size=part.size, sha256=digest, content_id=part.content_id)
        ctx.session.add(row)
        rows.append(row)
    if rows:
        ctx.session.flush()
    return rows


def add_drafts(session: Session, config: Config, sr: ServiceRequest, draft: DraftResult,
               attachments: list[Attachment], now: datetime) -> list[WorkOrder]:
    """One draft work order per issue the drafter found; a suggested vendor counts only
    when it is one of the request's division's own vendors."""
    by_name = {a.filename: a.id for a in attachments}
    # Only the vendors the drafter named are looked up (most drafts name none).
    named = {(issue.suggested_vendor or "").lower() for issue in draft.issues} - {""}
    vendors = {v.email: v for v in session.scalars(
        select(Vendor).where(Vendor.division == config.division(sr.division).name,
                             Vendor.email.in_(sorted(named))))} if named else {}
    closing = sr.home.closing_date if sr.home is not None else None
    created: list[WorkOrder] = []
    for issue in draft.issues:
        hint = coverage_hint(issue.trade, issue.description, closing, now.date())
        suggested = vendors.get((issue.suggested_vendor or "").lower())
        wo = WorkOrder(
            service_request_id=sr.id, status="draft", trade=issue.trade,
            priority=issue.priority, location=issue.location, title=issue.title[:300],
            homeowner_title=issue.homeowner_title[:300] if issue.homeowner_title else None,
            description=issue.description, photos=[by_name[p] for p in issue.photos
                                                   if p in by_name],
            coverage_hint=hint.summary + (f" ({hint.exclusion})" if hint.exclusion else ""),
            confidence=issue.confidence, emergency_reason=issue.emergency_reason,
            draft_trade=issue.trade, draft_description=issue.description, engine=draft.engine,
            suggested_vendor_id=suggested.id if suggested else None, created_at=now,
            updated_at=now,
        )
        session.add(wo)
        created.append(wo)
    session.flush()  # all of them at once: their ids for the history
    for issue, wo in zip(draft.issues, created, strict=True):
        record(session, "drafted", SYSTEM,
               f"{issue.trade}, {issue.priority}: {issue.title} (engine {draft.engine})",
               sr_id=sr.id, wo_id=wo.id, at=now)
    return created


def _ack_issue(wo: WorkOrder, language: str | None) -> DraftIssue:
    """One line of the acknowledgement, its title and place in the language the mail is
    written in (None: English)."""
    return DraftIssue(trade=wo.trade, priority=wo.priority,
                      location=place_name(wo.location, language),
                      title=issue_title(wo, language), description=wo.description)


def _acknowledge(ctx: MailContext, sr: ServiceRequest, requester: Requester,
                 work_orders: list[WorkOrder]) -> list[OutboundMessage]:
    """The homeowner hears from the request's division: its address, name and reply token."""
    session, config, now = ctx.session, ctx.config, ctx.now
    division = config.division(sr.division)
    secret = installation_secret(session, config.web.secret_env)
    token = issue_token(session, secret, kind="homeowner", address=requester.email,
                        days=365, service_request_id=sr.id, now=now)
    text, html = render_mail(
        "ack", language=sr.language, name=sr.requester_name, company=config.company.name,
        sr_ref=sr.ref,
        address=sr.home.address if sr.home else None,
        issues=[_ack_issue(wo, translation("ack", sr.language)) for wo in work_orders],
        emergency=any(wo.priority == "emergency" for wo in work_orders))
    row = queue_mail(
        session, our_address=division.mailbox.address, from_name=division.from_name,
        kind="ack", to=requester.email, subject=render(
            f"email/{localized('ack_subject', sr.language)}.txt", sr_ref=sr.ref,
            subject=strip_subject_prefix(requester.subject)).strip()[:250],
        text=text, html=html, dedupe_key=f"ack:{sr.ref}",
        reply_to=plus_address(division.mailbox.address, token.token),
        in_reply_to=requester.message_id, references=requester.references,
        service_request_id=sr.id, fresh=True)
    return [row]


def _alert_staff(ctx: MailContext, sr: ServiceRequest,
                 emergencies: list[WorkOrder]) -> list[OutboundMessage]:
    """An emergency goes at once to the staff of the request's division, from its address."""
    session, msg, reply, now = ctx.session, ctx.msg, ctx.reply, ctx.now
    division = ctx.config.division(sr.division)
    phone = _PHONE.search(reply.new_text + "\n" + reply.quoted_text)
    issues = [{"ref": wo.ref, "priority": wo.priority, "title": wo.title,
               "reason": wo.emergency_reason or "judged an emergency by the drafter",
               "description": wo.description} for wo in emergencies]
    rows = []
    for staff in division.staff.addresses:
        text, html = render_mail(
            "emergency", requester=f"{sr.requester_name} <{sr.requester_email}>".strip(),
            address=sr.home.address if sr.home else None, sr_ref=sr.ref, subject=msg.subject,
            issues=issues, phone=phone.group(0) if phone else None, text=reply.new_text)
        rows.append(queue_mail(
            session, our_address=division.mailbox.address, from_name=division.from_name,
            kind="alert", to=staff,
            subject=f"[{sr.ref}] EMERGENCY: {emergencies[0].title}"[:250], text=text, html=html,
            dedupe_key=f"alert:{sr.ref}:{staff}", service_request_id=sr.id,
            extra_headers={"Importance": "high", "X-Priority": "1"}, fresh=True))
        record(session, "emergency_alert", SYSTEM, f"staff {staff} alerted",
               sr_id=sr.id, at=now)
    return rows


@cache
def handlers() -> dict[str, Callable[[MailContext], Effects]]:
    """Which function acts on which kind of mail (built once, at the first mail)."""
    # Imported here: the vendor loop builds on this module (record, store_attachments).
    from warrantyd.daemon.staff import (
        guard_digest_thread,
        handle_staff_reply,
        staff_mail,
    )
    from warrantyd.daemon.vendors import handle_vendor_reply

    # --- staff commands (daemon/staff.py): staff replies; any mail on a digest thread;
    # staff mail with no thread that carries commands (refused: no token) ---
    return {
        kinds.OWN_MAIL: ignore,
        kinds.NO_SENDER: ignore,
        kinds.BOUNCE: bounce,
        kinds.AUTO_REPLY: record_on_thread,
        kinds.NEW_REQUEST: new_request,
        kinds.HOMEOWNER_REPLY: guard_digest_thread(homeowner_reply),
        kinds.VENDOR_REPLY: guard_digest_thread(handle_vendor_reply),
        kinds.STAFF_REPLY: handle_staff_reply,
        kinds.STAFF_MAIL: staff_mail(new_request),
    }
