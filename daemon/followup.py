"""Follow-up: telling staff what is stuck, and reminding vendors who have not answered.

The rules that decide what is stuck live with the queries
(:func:`~warrantyd.storage.queries.followup_reasons`), because ``wo list --needs-followup``
and the web dashboard list the same things.  This module turns them into mail:

* :func:`queue_followup_digest` — one summary per staff member of each division (only that
  division's work, From its mailbox), emergencies first, then
  every stuck work order grouped by vendor (whom to chase), then a short list by property
  (what to tell a homeowner who calls).  Nothing stuck, no mail: a daily "all clear" would
  teach people to ignore the mail that matters.
* :func:`queue_vendor_nudges` — a polite reminder to a vendor who has not answered a job
  ``nudge_after_hours`` after it went to them: at most one per work order per day (company
  time), at most ``nudge_max`` per assignment, never to an address that bounced.  Replies to
  the reminder reach the work order through the vendor's own reply token.

Both only add rows to the caller's session (the scheduler's transaction); the caller commits
and then wakes the outbox sender.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.orm import Session, joinedload
from sqlalchemy.orm.attributes import set_committed_value

from warrantyd.daemon.actions import SYSTEM, record
from warrantyd.daemon.config import Config, DivisionConfig, FollowupConfig
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
    MAIN_DIVISION,
    HistoryEvent,
    OutboundMessage,
    ReplyToken,
    ServiceRequest,
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
FOLLOWUP_KIND = "followup_digest"
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
        since=min(since) if since else None)


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
    """Order and group what is stuck (pure: works on loaded rows, reads nothing)."""
    items = sorted((stuck_item(f) for f in followups), key=_rank)
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


def followup_dedupe_key(slot: datetime, staff: str, division: str = MAIN_DIVISION) -> str:
    """One per slot, staff member and division (a manager of two divisions gets both)."""
    if division == MAIN_DIVISION:
        return f"followup:{slot:%Y%m%dT%H%M}:{staff}"
    return f"followup:{slot:%Y%m%dT%H%M}:{division}:{staff}"


def queue_followup_digest(session: Session, config: Config, now: datetime, *,
                          slot: datetime | None = None) -> list[OutboundMessage]:
    """For each division, one follow-up digest per staff member of what is stuck there at
    ``now``; none for a division where nothing is.

    ``slot`` (default ``now``) names the scheduled run: a second call for the same slot
    queues nothing new, because the outbox refuses a second mail with the same key.
    """
    rows: list[OutboundMessage] = []
    for division in config.divisions:
        rows += queue_division_followup_digest(session, config, division, now, slot=slot)
    return rows


def queue_division_followup_digest(session: Session, config: Config, division: DivisionConfig,
                                   now: datetime, *, slot: datetime | None = None
                                   ) -> list[OutboundMessage]:
    """The follow-up digest of ``division``'s work, to its staff, From its mailbox."""
    if not division.staff.addresses:
        return []
    digest = build_followup_digest(find_stuck(session, config, now, division.name))
    if digest.empty:
        log.info("follow-up (%s): nothing is stuck, no digest", division.name)
        return []
    zone = company_zone(config)
    n, urgent = len(digest.items), len(digest.emergencies)
    what = f"{n} work order{'s' if n != 1 else ''} need{'s' if n == 1 else ''} attention"
    subject = (f"EMERGENCY - {urgent} unanswered - " if urgent else "") + f"Follow-up: {what}"
    text, html = render_mail(
        "followup", company=config.company.name, digest=digest, heading=what,
        sent=f"{now.astimezone(zone):%a, %b %d, %Y %H:%M}")
    rows = []
    for staff in division.staff.addresses:
        rows.append(queue_mail(
            session, our_address=division.mailbox.address, from_name=division.from_name,
            kind=FOLLOWUP_KIND, to=staff, subject=subject[:250], text=text, html=html,
            dedupe_key=followup_dedupe_key(slot or now, staff, division.name), now=now,
            extra_headers={"Importance": "high", "X-Priority": "1"} if urgent else None))
    log.info("follow-up digest (%s) queued for %d staff: %s", division.name, len(rows), what)
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
