"""Follow-up: telling staff what is stuck, and reminding vendors who have not answered.

The rules that decide what is stuck live with the queries
(:func:`~warrantyd.storage.queries.followup_reasons`), because ``wo list --needs-followup``
and the web dashboard list the same things.  This module turns them into mail:

* :func:`queue_followup_digest` — one summary per staff member of each division (only that
  division's work, From its mailbox), emergencies first, then
  every stuck work order grouped by vendor (whom to chase), then a short list by property
  (what to tell a homeowner who calls).  Nothing stuck, no mail: a daily "all clear" would
  teach people to ignore the mail that matters.
  The digest is a :class:`~warrantyd.storage.models.Digest` row like an approval digest:
  its items are numbered in the order the mail first shows them, each staff member's mail
  carries their own reply token, and a reply ("assign 2 to Ace Plumbing", "complete 3") is
  applied by staff.py exactly as on an approval digest.  It does not count as an approval
  digest for what the next approval digest lists
  (:func:`~warrantyd.daemon.digests.approval_digests`).
* :func:`queue_emergency_escalations` — an emergency still a draft after
  ``emergency_ack_minutes`` (nobody accepted, assigned or rejected it, so the first alert
  may have gone unread) is mailed to its division's staff once more, clearly marked, once
  per work order however many daemons and slots look.
* :func:`queue_vendor_nudges` — a polite reminder to a vendor who has not answered a job
  ``nudge_after_hours`` after it went to them: at most one per work order per day (company
  time), at most ``nudge_max`` per assignment, never to an address that bounced.  Replies to
  the reminder reach the work order through the vendor's own reply token.

All three only add rows to the caller's session (the scheduler's transaction); the caller commits
and then wakes the outbox sender.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload
from sqlalchemy.orm.attributes import set_committed_value

from warrantyd.daemon.actions import _PHONE, SYSTEM, record
from warrantyd.daemon.config import Config, DivisionConfig, FollowupConfig
from warrantyd.daemon.digests import (
    approval_digests,
    digest_dedupe_key,
    followup_slot_key,
    staff_reply_token,
)
from warrantyd.daemon.links import LINK_DAYS
from warrantyd.daemon.outbox import queue_mail
from warrantyd.daemon.render import render_mail
from warrantyd.daemon.tokens import installation_secret, issue_token, plus_address
from warrantyd.daemon.vendors import (
    VENDOR_NOTICE_KINDS,
    VENDOR_TOKEN_DAYS,
    format_visit,
    trade_label,
    vendor_link,
    vendor_view,
)
from warrantyd.storage.models import (
    Digest,
    HistoryEvent,
    OutboundMessage,
    ReplyToken,
    ServiceRequest,
    Setting,
    WorkOrder,
)
from warrantyd.storage.queries import (
    BOUNCED_FLAG,
    Followup,
    WorkOrderFilter,
    describe_age,
    find_needing_followup,
    followup_clock_times,
)

log = logging.getLogger("warrantyd.followup")

NUDGE_EVENT = "vendor_nudged"
FOLLOWUP_KIND = "digest_followup"
"""Outbound kind of a follow-up digest mail.  It starts with ``digest`` because it is one:
a reply that names it by Message-ID (a client that drops the plus-address) threads as a
digest reply, as it does for an approval digest."""
ESCALATION_KIND = "escalation"
ESCALATION_EVENT = "emergency_escalated"
ESCALATION_MAX_AGE = timedelta(days=2)
"""An emergency draft older than this is not escalated (the follow-up digest lists it): the
escalation is for a missed alert, not a mail storm about old drafts when the feature, or a
daemon that was down for days, starts."""
NUDGE_KIND = "vendor_nudge"
NO_VENDOR = "No vendor assigned"
UNKNOWN_PROPERTY = "Property unknown"
TOKEN_REUSE_MARGIN = timedelta(days=14)
"""A vendor token with less than this left is not reused for a reminder: a fresh one is
issued, so the vendor's answer to the reminder still threads weeks later."""

_PRIORITY_RANK = {"emergency": 0, "urgent": 1, "routine": 2}


def company_zone(config: Config) -> tzinfo:
    try:
        return ZoneInfo(config.company.timezone)
    except (KeyError, ValueError):
        return ZoneInfo("UTC")


# --- the follow-up digest -------------------------------------------------------------------

@dataclass(frozen=True)
class StuckItem:
    """One stuck work order as the digest shows it."""

    ref: str
    sr_ref: str
    status: str
    priority: str
    trade: str
    title: str
    vendor: str | None
    """The assigned vendor's name; None when nobody has the job."""
    suggested_vendor: str | None
    property: str | None
    homeowner: str
    reasons: tuple[str, ...]
    codes: tuple[str, ...]
    since: datetime | None
    """When the oldest of its reasons started (drives the order within a priority)."""
    work_order_id: int = 0
    service_request_id: int = 0
    number: int = 0
    """Its item number in the digest (1 first), as a reply names it; 0 before numbering."""

    @property
    def emergency(self) -> bool:
        """An emergency that is still open (a finished one is no longer an emergency)."""
        return self.priority == "emergency" and self.status in ("draft", "in_progress")

    @property
    def summary(self) -> str:
        return "; ".join(self.reasons)


@dataclass
class StuckGroup:
    label: str
    items: list[StuckItem] = field(default_factory=list)

    @property
    def emergencies(self) -> int:
        return sum(1 for i in self.items if i.emergency)


@dataclass
class FollowupDigest:
    """What is stuck, in the order staff should look at it."""

    items: list[StuckItem]
    emergencies: list[StuckItem]
    by_vendor: list[StuckGroup]
    by_property: list[StuckGroup]

    @property
    def empty(self) -> bool:
        return not self.items

    @property
    def numbered(self) -> list[StuckItem]:
        """The items by item number (item 1 first): what ``Digest.work_order_ids`` holds."""
        return sorted(self.items, key=lambda item: item.number)


def _property_label(sr: ServiceRequest) -> str | None:
    home = sr.home
    if home is None:
        return None
    return home.address + (f" ({home.community})" if home.community else "")


def stuck_item(followup: Followup) -> StuckItem:
    wo = followup.work_order
    sr = wo.service_request
    who = sr.requester_name or ""
    since = [r.since for r in followup.reasons if r.since is not None]
    return StuckItem(
        ref=wo.ref, sr_ref=sr.ref, status=wo.status, priority=wo.priority,
        trade=trade_label(wo.trade),
        title=" ".join((wo.title or "").split()) or " ".join(wo.description.split())[:80],
        vendor=wo.vendor.name if wo.vendor is not None else None,
        suggested_vendor=(wo.suggested_vendor.name
                          if wo.vendor is None and wo.suggested_vendor is not None else None),
        property=_property_label(sr),
        homeowner=f"{who} <{sr.requester_email}>" if who else sr.requester_email,
        reasons=tuple(r.text for r in followup.reasons),
        codes=tuple(r.code for r in followup.reasons),
        since=min(since) if since else None, work_order_id=wo.id,
        service_request_id=sr.id)


def _rank(item: StuckItem) -> tuple[int, bool, float, int]:
    """Open emergencies, then urgent, then routine; the longest waiting first within each."""
    priority = 0 if item.emergency else max(1, _PRIORITY_RANK.get(item.priority, 3))
    waited = item.since.timestamp() if item.since is not None else 0.0
    return (priority, item.since is None, waited, int(item.ref.partition("-")[2] or 0))


def _group(items: Sequence[StuckItem], label_of: str) -> list[StuckGroup]:
    """Groups in the order their most pressing item comes (``items`` is already ordered)."""
    groups: dict[str, StuckGroup] = {}
    for item in items:
        if label_of == "vendor":
            label = item.vendor or NO_VENDOR
        else:
            label = item.property or UNKNOWN_PROPERTY
        groups.setdefault(label, StuckGroup(label)).items.append(item)
    return list(groups.values())


def build_followup_digest(followups: Sequence[Followup]) -> FollowupDigest:
    """Order, number and group what is stuck (pure: works on loaded rows, reads nothing).

    Items are numbered in the order the mail first shows them — the emergencies, then the
    groups by vendor — so reading down the mail counts 1, 2, 3; an item shown again (an
    emergency under its vendor, every item by property) keeps its number.
    """
    ranked = sorted((stuck_item(f) for f in followups), key=_rank)
    shown = [i for i in ranked if i.emergency]
    shown += [i for group in _group(ranked, "vendor") for i in group.items if not i.emergency]
    number = {item.work_order_id: n for n, item in enumerate(shown, start=1)}
    items = [replace(item, number=number[item.work_order_id]) for item in ranked]
    return FollowupDigest(items=items, emergencies=[i for i in items if i.emergency],
                          by_vendor=_group(items, "vendor"),
                          by_property=_group(items, "property"))


def find_stuck(session: Session, config: Config, now: datetime,
               division: str | None = None) -> list[Followup]:
    """Everything the follow-up rules list right now, with ``[followup]`` thresholds; only
    ``division``'s work when it is given (and the config has several)."""
    filt = WorkOrderFilter(limit=None)
    if division is not None and len(config.divisions) > 1:
        filt = WorkOrderFilter(limit=None, divisions=(config.division(division).name,),
                               configured_divisions=tuple(d.name for d in config.divisions))
    return find_needing_followup(session, filt, now=now,
                                 thresholds=config.followup.thresholds, tz=company_zone(config))


def queue_followup_digest(session: Session, config: Config, now: datetime, *,
                          slot: datetime | None = None) -> list[OutboundMessage]:
    """For each division, one follow-up digest per staff member of what is stuck there at
    ``now``; none for a division where nothing is.

    ``slot`` (default ``now``) names the scheduled run: a second call for the same slot
    queues nothing new and returns the mails of the first.
    """
    rows: list[OutboundMessage] = []
    for division in config.divisions:
        rows += queue_division_followup_digest(session, config, division, now, slot=slot)
    return rows


def _followup_mail_key(digest_id: int, staff: str) -> str:
    """An approval digest's key shape (``digest:<id>:<staff>``, which threading reads the
    digest from), marked as the follow-up."""
    return digest_dedupe_key(digest_id, staff, "followup")


def _queued_followup(session: Session, division: DivisionConfig,
                     digest_id: int) -> list[OutboundMessage]:
    keys = [_followup_mail_key(digest_id, staff) for staff in division.staff.addresses]
    return list(session.scalars(select(OutboundMessage)
                                .where(OutboundMessage.dedupe_key.in_(keys))
                                .order_by(OutboundMessage.id)))


def _claim_followup_digest(session: Session, division: DivisionConfig, slot_key: str,
                           items: Sequence[StuckItem], now: datetime) -> Digest | int:
    """A new :class:`Digest` of ``items`` (item 1 first) claiming ``slot_key``, or the id of
    the digest another run claimed the slot with."""
    srs = {item.service_request_id for item in items}
    try:
        with session.begin_nested():
            digest = Digest(created_at=now, division=division.name, kind="followup",
                            service_request_id=srs.pop() if len(srs) == 1 else None,
                            work_order_ids=[item.work_order_id for item in items])
            session.add(digest)
            session.flush()
            session.add(Setting(key=slot_key, value=str(digest.id)))
            session.flush()
    except IntegrityError:
        claimed = session.get(Setting, slot_key)
        if claimed is None:
            raise
        return int(claimed.value)
    return digest


def queue_division_followup_digest(session: Session, config: Config, division: DivisionConfig,
                                   now: datetime, *, slot: datetime | None = None
                                   ) -> list[OutboundMessage]:
    """The follow-up digest of ``division``'s work, to its staff, From its mailbox, each mail
    with the recipient's own reply token (a plus-address of the mailbox)."""
    if not division.staff.addresses:
        return []
    slot_key = followup_slot_key(f"{slot or now:%Y%m%dT%H%M}", division.name)
    claimed = session.get(Setting, slot_key)
    if claimed is not None:
        return _queued_followup(session, division, int(claimed.value))
    digest = build_followup_digest(find_stuck(session, config, now, division.name))
    if digest.empty:
        log.info("follow-up (%s): nothing is stuck, no digest", division.name)
        return []
    row = _claim_followup_digest(session, division, slot_key, digest.numbered, now)
    if not isinstance(row, Digest):
        return _queued_followup(session, division, row)
    zone = company_zone(config)
    n, urgent = len(digest.items), len(digest.emergencies)
    what = f"{n} work order{'s' if n != 1 else ''} need{'s' if n == 1 else ''} attention"
    subject = (f"EMERGENCY - {urgent} unanswered - " if urgent else "") + f"Follow-up: {what}"
    text, html = render_mail(
        "followup", company=config.company.name, digest=digest, heading=what,
        digest_id=row.id, example=digest.numbered[0].number,
        sent=f"{now.astimezone(zone):%a, %b %d, %Y %H:%M}")
    rows = []
    mailbox = division.mailbox.address
    for staff in division.staff.addresses:
        token = staff_reply_token(session, config, staff, row.id, now, division.name)
        rows.append(queue_mail(
            session, our_address=mailbox, from_name=division.from_name,
            kind=FOLLOWUP_KIND, to=staff, subject=subject[:250], text=text, html=html,
            dedupe_key=_followup_mail_key(row.id, staff), now=now,
            reply_to=plus_address(mailbox, token.token),
            extra_headers={"Importance": "high", "X-Priority": "1"} if urgent else None))
    log.info("follow-up digest #%s (%s) queued for %d staff: %s", row.id, division.name,
             len(rows), what)
    return rows


# --- emergency escalation -------------------------------------------------------------------

def unhandled_emergencies(session: Session, config: Config, now: datetime) -> list[WorkOrder]:
    """Emergency drafts nobody has acted on ``emergency_ack_minutes`` after they came in
    (not accepted, assigned, rejected or merged) and not escalated yet, oldest first; none
    older than :data:`ESCALATION_MAX_AGE`."""
    threshold = now - timedelta(minutes=config.followup.emergency_ack_minutes)
    escalated = select(HistoryEvent.work_order_id).where(
        HistoryEvent.event == ESCALATION_EVENT, HistoryEvent.work_order_id.is_not(None))
    return list(session.scalars(
        select(WorkOrder)
        .where(WorkOrder.priority == "emergency", WorkOrder.status == "draft",
               WorkOrder.vendor_id.is_(None), WorkOrder.needs_vendor.is_(False),
               WorkOrder.merged_into_id.is_(None), WorkOrder.created_at < threshold,
               WorkOrder.created_at > now - ESCALATION_MAX_AGE,
               WorkOrder.id.not_in(escalated))
        .options(joinedload(WorkOrder.service_request).joinedload(ServiceRequest.home))
        .order_by(WorkOrder.created_at, WorkOrder.id)).unique())


def _approval_item(session: Session, wo: WorkOrder) -> tuple[Digest, int] | None:
    """The newest approval digest that lists ``wo``, and its item number there."""
    query = (select(Digest)
             .where(Digest.created_at >= wo.created_at - timedelta(minutes=1),
                    approval_digests())
             .order_by(Digest.created_at.desc(), Digest.id.desc()))
    for digest in session.scalars(query):
        if wo.id in digest.work_order_ids:
            return digest, digest.work_order_ids.index(wo.id) + 1
    return None


def escalation_subject(wo: WorkOrder, waited: timedelta) -> str:
    sr = wo.service_request
    title = " ".join((wo.title or "").split()) or " ".join(wo.description.split())[:80]
    where = f" - {sr.home.address}" if sr.home is not None else ""
    return f"[{wo.ref}] EMERGENCY not yet handled ({describe_age(waited)}): {title}{where}"


def queue_emergency_escalation(session: Session, config: Config, wo: WorkOrder,
                               now: datetime) -> list[OutboundMessage]:
    """Tell ``wo``'s division staff, once, that its emergency is still unhandled.

    Each mail's Reply-To is the recipient's reply address of the newest approval digest that
    lists the work order, so "accept 3" written on it acts as on that digest (the mail says
    which item it is); a dashboard link is given too.  The ``emergency_escalated`` event is
    what makes it once: work orders that have it are not looked at again.
    """
    from warrantyd.daemon.dashboard import STAFF_ROOT  # the web side, only for its path

    sr = wo.service_request
    division = config.division(sr.division)
    if not division.staff.addresses:
        return []
    zone = company_zone(config)
    waited = now - wo.created_at
    found = _approval_item(session, wo)
    phone = _PHONE.search(sr.body or "")
    who = sr.requester_name or ""
    reported = wo.created_at.astimezone(zone)
    context = dict(
        company=config.company.name, ref=wo.ref, sr_ref=sr.ref, waited=describe_age(waited),
        reported=f"{reported:%a %b} {reported.day}, {reported:%H:%M}",
        title=" ".join((wo.title or "").split()) or " ".join(wo.description.split())[:80],
        description=wo.description, location=wo.location, trade=trade_label(wo.trade),
        reason=wo.emergency_reason, property=_property_label(sr),
        homeowner=f"{who} <{sr.requester_email}>" if who else sr.requester_email,
        phone=phone.group(0) if phone else None,
        suggested=wo.suggested_vendor.name if wo.suggested_vendor is not None else None,
        digest_id=found[0].id if found else None, item=found[1] if found else None,
        link=f"{config.web.base_url}{STAFF_ROOT}/wo/{wo.id}",
        minutes=f"{config.followup.emergency_ack_minutes:g}")
    text, html = render_mail("emergency_escalation", **context)
    subject = escalation_subject(wo, waited)[:250]
    rows = []
    for staff in division.staff.addresses:
        reply_to = None
        if found is not None:
            token = staff_reply_token(session, config, staff, found[0].id, now, division.name)
            reply_to = plus_address(division.mailbox.address, token.token)
        rows.append(queue_mail(
            session, our_address=division.mailbox.address, from_name=division.from_name,
            kind=ESCALATION_KIND, to=staff, subject=subject, text=text, html=html,
            dedupe_key=f"escalation:{wo.ref}:{staff}", reply_to=reply_to,
            service_request_id=sr.id, work_order_id=wo.id, now=now,
            extra_headers={"Importance": "high", "X-Priority": "1"}))
    if all(row.created_at != now for row in rows):
        return []  # another run queued them first (and records the event)
    record(session, ESCALATION_EVENT, SYSTEM,
           f"still a draft after {describe_age(waited)}: escalated to "
           f"{', '.join(division.staff.addresses)}", sr_id=sr.id, wo_id=wo.id,
           outbound=rows[0], at=now)
    return rows


def queue_emergency_escalations(session: Session, config: Config, now: datetime
                                ) -> list[OutboundMessage]:
    """Escalate every emergency still unhandled after ``emergency_ack_minutes``, once each."""
    rows = []
    for wo in unhandled_emergencies(session, config, now):
        queued = queue_emergency_escalation(session, config, wo, now)
        if queued:
            log.warning("%s is an emergency still unhandled after %s: escalated to %d staff",
                        wo.ref, describe_age(now - wo.created_at), len(queued))
        rows += queued
    return rows


# --- vendor nudges ----------------------------------------------------------------------------

@dataclass(frozen=True)
class NudgeState:
    """What decides whether a vendor is reminded about one work order (all times aware)."""

    started: datetime | None
    """When the job last went to this vendor."""
    nudges_sent: int
    """Reminders already sent since then."""


def nudge_skip_reason(wo: WorkOrder, state: NudgeState, *, now: datetime,
                      settings: FollowupConfig, tz: tzinfo) -> str | None:
    """Why ``wo``'s vendor is not reminded now, or None when a reminder is due (pure)."""
    vendor = wo.vendor
    if wo.status != "in_progress" or vendor is None:
        return "not in progress with a vendor"
    if vendor.bounced_at is not None or BOUNCED_FLAG in (wo.flags or ()):
        return f"mail to {vendor.email} bounced"
    if not vendor.active:
        return f"{vendor.name} is inactive"
    if wo.scheduled_for is not None:
        return "a visit is scheduled"
    started = state.started or wo.updated_at or wo.created_at
    if started is None:
        return "no send time known"
    if wo.last_vendor_reply_at is not None and wo.last_vendor_reply_at >= started:
        return "the vendor has answered"
    if now - started < timedelta(hours=settings.nudge_after_hours):
        return "not waiting long enough yet"
    if wo.last_nudged_at is not None and \
            wo.last_nudged_at.astimezone(tz).date() == now.astimezone(tz).date():
        return "already reminded today"
    if state.nudges_sent >= settings.nudge_max:
        return f"already reminded {state.nudges_sent} times; staff follow up"
    return None


def _nudge_states(session: Session, wos: Sequence[WorkOrder]) -> dict[int, NudgeState]:
    """Send times and reminder counts of ``wos``, in two statements for all of them."""
    ids = [wo.id for wo in wos]
    started, _ = followup_clock_times(session, ids)
    counts: dict[int, int] = dict.fromkeys(ids, 0)
    if ids:
        for wo_id, at in session.execute(
                select(HistoryEvent.work_order_id, HistoryEvent.at)
                .where(HistoryEvent.work_order_id.in_(ids), HistoryEvent.event == NUDGE_EVENT)):
            since = started.get(wo_id)
            if wo_id is not None and (since is None or at >= since):
                counts[wo_id] += 1
    return {i: NudgeState(started.get(i), counts[i]) for i in ids}


def _vendor_token(session: Session, config: Config, wo: WorkOrder, now: datetime) -> str:
    """The vendor's live reply token for this work order, or a fresh one."""
    vendor = wo.vendor
    assert vendor is not None
    row = session.scalars(
        select(ReplyToken)
        .where(ReplyToken.kind == "vendor", ReplyToken.work_order_id == wo.id,
               ReplyToken.address == vendor.email)
        .order_by(ReplyToken.id.desc())).first()
    if row is not None and (row.expires_at is None
                            or row.expires_at > now + TOKEN_REUSE_MARGIN):
        return row.token
    secret = installation_secret(session, config.web.secret_env)
    return issue_token(session, secret, kind="vendor", address=vendor.email,
                       days=VENDOR_TOKEN_DAYS, work_order_id=wo.id,
                       service_request_id=wo.service_request_id, now=now).token


def queue_vendor_nudge(session: Session, config: Config, wo: WorkOrder, state: NudgeState,
                       now: datetime) -> OutboundMessage:
    """Remind ``wo``'s vendor (the caller checked :func:`nudge_skip_reason`)."""
    vendor = wo.vendor
    assert vendor is not None
    tz = company_zone(config)
    view = vendor_view(session, config, wo)
    notice = session.scalars(
        select(OutboundMessage)
        .where(OutboundMessage.work_order_id == wo.id, OutboundMessage.to_addr == vendor.email,
               OutboundMessage.kind.in_(VENDOR_NOTICE_KINDS))
        .order_by(OutboundMessage.id.desc())).first()
    started = state.started or wo.updated_at
    sent_on = started.astimezone(tz) if started is not None else None
    link = vendor_link(config, installation_secret(session, config.web.secret_env), wo, now=now)
    expires = (now + timedelta(days=LINK_DAYS)).astimezone(tz)
    number = state.nudges_sent + 1
    text, html = render_mail(
        "vendor_nudge", view=view, link=link,
        link_expires=f"{expires:%B} {expires.day}, {expires.year}",
        sent_on=f"{sent_on:%A, %B} {sent_on.day}" if sent_on else None, number=number,
        schedule=(format_visit(view.scheduled_for, view.window_end, config.company.timezone)
                  if view.scheduled_for else None))
    division = config.division(wo.service_request.division)
    row = queue_mail(
        session, our_address=division.mailbox.address, from_name=division.from_name,
        kind=NUDGE_KIND, to=f"{vendor.name} <{vendor.email}>",
        subject=f"[{wo.ref}] Reminder: {view.title} - {view.address or 'address to confirm'}"[
            :250],
        text=text, html=html,
        dedupe_key=f"vendor-nudge:{wo.ref}:{vendor.id}:{now.astimezone(tz):%Y-%m-%d}",
        reply_to=plus_address(division.mailbox.address,
                              _vendor_token(session, config, wo, now)),
        in_reply_to=notice.message_id if notice is not None else None,
        references=[notice.message_id] if notice is not None else (),
        service_request_id=wo.service_request_id, work_order_id=wo.id, now=now)
    silent = describe_age(now - started) if started is not None else "a while"
    record(session, NUDGE_EVENT, SYSTEM,
           f"reminder {number} of at most {config.followup.nudge_max} sent to {vendor.name} "
           f"<{vendor.email}>: no reply in {silent}", sr_id=wo.service_request_id,
           wo_id=wo.id, outbound=row, at=now)
    # A reminder is not a change to the job: keep updated_at (the digests read it).
    session.execute(update(WorkOrder).where(WorkOrder.id == wo.id)
                    .values(last_nudged_at=now, updated_at=WorkOrder.updated_at)
                    .execution_options(synchronize_session=False))
    set_committed_value(wo, "last_nudged_at", now)
    return row


def queue_vendor_nudges(session: Session, config: Config, now: datetime
                        ) -> list[OutboundMessage]:
    """Remind every vendor whose job has waited ``nudge_after_hours`` without an answer."""
    tz = company_zone(config)
    settings = config.followup
    candidates = list(session.scalars(
        select(WorkOrder)
        .where(WorkOrder.status == "in_progress", WorkOrder.vendor_id.is_not(None),
               WorkOrder.scheduled_for.is_(None))
        .options(joinedload(WorkOrder.vendor),
                 joinedload(WorkOrder.service_request).joinedload(ServiceRequest.home),
                 joinedload(WorkOrder.service_request).joinedload(ServiceRequest.homeowner))
        .order_by(WorkOrder.id)).unique())
    states = _nudge_states(session, candidates)
    rows = []
    for wo in candidates:
        why_not = nudge_skip_reason(wo, states[wo.id], now=now, settings=settings, tz=tz)
        if why_not is not None:
            log.debug("no reminder for %s: %s", wo.ref, why_not)
            continue
        rows.append(queue_vendor_nudge(session, config, wo, states[wo.id], now))
    if rows:
        log.info("reminded vendors of %d work order(s)", len(rows))
    return rows
