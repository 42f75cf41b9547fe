"""Read-side queries: finding work orders and service requests the way staff ask for them.

Staff monitor by property, by vendor, by status and by what is stuck.  Each listing here is
one query with its joins and eager loads (plus at most a constant few for collections), so a
page of fifty work orders costs the same handful of statements as a page of five: no query
per row.  Nothing here writes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.orm import Session, contains_eager, joinedload, selectinload

from warrantyd.storage.models import (
    Attachment,
    HistoryEvent,
    Home,
    Homeowner,
    ServiceRequest,
    Vendor,
    WorkOrder,
)

WO_STATUSES: tuple[str, ...] = ("draft", "in_progress", "completed", "rejected")
SR_STATUSES: tuple[str, ...] = ("open", "in_progress", "resolved")
ACTIVE_WO_STATUSES: tuple[str, ...] = ("draft", "in_progress")

IN_PROGRESS_EVENTS: tuple[str, ...] = (
    "accepted", "assigned", "reassigned", "reopened", "vendor_notified", "sent_to_vendor",
    "status_in_progress",
)
"""History events that put a work order in progress (or in front of a new vendor); the newest
one starts the clock for "no vendor reply"."""

_REF = re.compile(r"^\s*\[?\s*(?:(?P<kind>wo|sr)\s*[-#:]?\s*)?#?(?P<num>\d+)\s*\]?\s*$",
                  re.IGNORECASE)
_KIND_NAMES = {"WO": "work order", "SR": "service request"}


class UnknownReference(LookupError):
    """A WO-n / SR-n the operator gave is malformed or names nothing; the message says which."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown reference"


def parse_ref(text: str, kind: str) -> int:
    """The number in ``WO-12`` / ``wo-12`` / ``12`` / ``[WO-12]`` (``kind`` is WO or SR)."""
    kind = kind.upper()
    match = _REF.match(text or "")
    if match is None:
        raise UnknownReference(f"{text!r} is not a {_KIND_NAMES[kind]} reference; "
                               f"write it as {kind}-12 or just 12")
    given = (match["kind"] or kind).upper()
    if given != kind:
        raise UnknownReference(f"{given}-{int(match['num'])} is a {_KIND_NAMES[given]}, not a "
                               f"{_KIND_NAMES[kind]}; look it up with "
                               f"'{given.lower()} show {given}-{int(match['num'])}'")
    number = int(match["num"])
    if number <= 0:
        raise UnknownReference(f"{kind}-{number} cannot exist: numbers start at {kind}-1")
    return number


def _missing(session: Session, model: type[WorkOrder] | type[ServiceRequest], kind: str,
             number: int) -> UnknownReference:
    newest = session.scalar(select(func.max(model.id)))
    name = _KIND_NAMES[kind]
    if newest is None:
        return UnknownReference(f"{kind}-{number} does not exist: there is no {name} yet")
    return UnknownReference(f"{kind}-{number} does not exist (the newest {name} is "
                            f"{kind}-{newest})")


# --- filters --------------------------------------------------------------------------------

@dataclass(frozen=True)
class WorkOrderFilter:
    """What ``wo list`` was asked for; empty fields do not filter."""

    property: str | None = None
    """Case-insensitive substring of the home's address or community."""
    vendor: str | None = None
    """Case-insensitive substring of the vendor's name, email or an alias.  Matches the
    assigned vendor, or the suggested one of a work order that has none assigned yet."""
    statuses: tuple[str, ...] = ()
    service_request_id: int | None = None
    since: datetime | None = None
    """Created at or after this instant."""
    needs_followup: bool = False
    """Only what is stuck (see :func:`find_needing_followup`)."""
    limit: int | None = 50
    offset: int = 0


@dataclass(frozen=True)
class ServiceRequestFilter:
    """What ``sr list`` was asked for; empty fields do not filter."""

    property: str | None = None
    homeowner: str | None = None
    """Case-insensitive substring of the homeowner's (or requester's) name or email."""
    statuses: tuple[str, ...] = ()
    since: datetime | None = None
    limit: int | None = 50
    offset: int = 0


def _contains(column: Any, term: str) -> ColumnElement[bool]:
    """Case-insensitive substring match, with ``%`` and ``_`` in ``term`` taken literally."""
    return func.lower(column).contains(term.strip().lower(), autoescape=True)


def _property_clause(term: str) -> ColumnElement[bool]:
    return or_(_contains(Home.address, term), _contains(Home.community, term))


def vendor_ids_matching(session: Session, term: str) -> list[int]:
    """Vendors whose name, email or an alias contains ``term`` (case-insensitive).

    Aliases are a JSON list, which SQLite and PostgreSQL search differently; the vendor table
    is small, so it is matched here in one read instead of in dialect-specific SQL.
    """
    needle = term.strip().casefold()
    rows = session.execute(select(Vendor.id, Vendor.name, Vendor.email, Vendor.aliases)).all()
    return [vid for vid, name, email, aliases in rows
            if needle in (name or "").casefold() or needle in (email or "").casefold()
            or any(needle in str(a).casefold() for a in (aliases or ()))]


def _work_order_select(session: Session, filt: WorkOrderFilter,
                       statuses: Sequence[str]) -> Select[tuple[WorkOrder]] | None:
    """The filtered, eagerly loaded query; None when the filter can match nothing."""
    stmt = (
        select(WorkOrder)
        .join(WorkOrder.service_request)
        .outerjoin(ServiceRequest.home)
        .options(
            contains_eager(WorkOrder.service_request).contains_eager(ServiceRequest.home),
            contains_eager(WorkOrder.service_request).joinedload(ServiceRequest.homeowner),
            joinedload(WorkOrder.vendor),
            joinedload(WorkOrder.suggested_vendor),
        )
    )
    if filt.property:
        stmt = stmt.where(_property_clause(filt.property))
    if filt.vendor:
        ids = vendor_ids_matching(session, filt.vendor)
        if not ids:
            return None
        stmt = stmt.where(or_(WorkOrder.vendor_id.in_(ids),
                              and_(WorkOrder.vendor_id.is_(None),
                                   WorkOrder.suggested_vendor_id.in_(ids))))
    if statuses:
        stmt = stmt.where(WorkOrder.status.in_(list(statuses)))
    if filt.service_request_id is not None:
        stmt = stmt.where(WorkOrder.service_request_id == filt.service_request_id)
    if filt.since is not None:
        stmt = stmt.where(WorkOrder.created_at >= filt.since)
    return stmt.order_by(WorkOrder.created_at.desc(), WorkOrder.id.desc())


def find_work_orders(session: Session, filt: WorkOrderFilter) -> list[WorkOrder]:
    """Work orders matching ``filt``, newest first, one page (``limit``/``offset``).

    The service request, its home and homeowner, and the vendors come loaded.
    ``filt.needs_followup`` is not applied here: see :func:`find_needing_followup`.
    """
    stmt = _work_order_select(session, filt, filt.statuses)
    if stmt is None:
        return []
    if filt.offset:
        stmt = stmt.offset(filt.offset)
    if filt.limit is not None:
        stmt = stmt.limit(filt.limit)
    return list(session.scalars(stmt).unique())


def find_service_requests(session: Session, filt: ServiceRequestFilter) -> list[ServiceRequest]:
    """Service requests matching ``filt``, newest first, one page, with home, homeowner and
    work orders loaded (the work orders in one extra statement for the whole page)."""
    stmt = (
        select(ServiceRequest)
        .outerjoin(ServiceRequest.home)
        .outerjoin(ServiceRequest.homeowner)
        .options(
            contains_eager(ServiceRequest.home),
            contains_eager(ServiceRequest.homeowner),
            selectinload(ServiceRequest.work_orders),
        )
    )
    if filt.property:
        stmt = stmt.where(_property_clause(filt.property))
    if filt.homeowner:
        term = filt.homeowner
        stmt = stmt.where(or_(_contains(ServiceRequest.requester_email, term),
                              _contains(ServiceRequest.requester_name, term),
                              _contains(Homeowner.name, term), _contains(Homeowner.email, term)))
    if filt.statuses:
        stmt = stmt.where(ServiceRequest.status.in_(list(filt.statuses)))
    if filt.since is not None:
        stmt = stmt.where(ServiceRequest.created_at >= filt.since)
    stmt = stmt.order_by(ServiceRequest.created_at.desc(), ServiceRequest.id.desc())
    if filt.offset:
        stmt = stmt.offset(filt.offset)
    if filt.limit is not None:
        stmt = stmt.limit(filt.limit)
    return list(session.scalars(stmt).unique())


# --- one record -----------------------------------------------------------------------------

def get_work_order(session: Session, ref: str | int) -> WorkOrder:
    """The work order ``ref`` names, with its request, home, homeowner and vendors loaded."""
    number = ref if isinstance(ref, int) else parse_ref(ref, "WO")
    wo = session.scalars(
        select(WorkOrder).where(WorkOrder.id == number).options(
            joinedload(WorkOrder.service_request).joinedload(ServiceRequest.home),
            joinedload(WorkOrder.service_request).joinedload(ServiceRequest.homeowner),
            joinedload(WorkOrder.vendor), joinedload(WorkOrder.suggested_vendor),
        )).first()
    if wo is None:
        raise _missing(session, WorkOrder, "WO", number)
    return wo


def get_service_request(session: Session, ref: str | int) -> ServiceRequest:
    """The service request ``ref`` names, with home, homeowner, work orders and vendors."""
    number = ref if isinstance(ref, int) else parse_ref(ref, "SR")
    sr = session.scalars(
        select(ServiceRequest).where(ServiceRequest.id == number).options(
            joinedload(ServiceRequest.home), joinedload(ServiceRequest.homeowner),
            selectinload(ServiceRequest.work_orders).options(
                joinedload(WorkOrder.vendor), joinedload(WorkOrder.suggested_vendor)),
        )).first()
    if sr is None:
        raise _missing(session, ServiceRequest, "SR", number)
    return sr


def history_of_work_orders(session: Session, ids: Iterable[int]) -> dict[int, list[HistoryEvent]]:
    """Each work order's history, oldest first, in one statement."""
    wanted = sorted(set(ids))
    result: dict[int, list[HistoryEvent]] = {i: [] for i in wanted}
    if not wanted:
        return result
    rows = session.scalars(select(HistoryEvent).where(HistoryEvent.work_order_id.in_(wanted))
                           .order_by(HistoryEvent.at, HistoryEvent.id))
    for row in rows:
        result[row.work_order_id or 0].append(row)
    return result


def history_of_service_request(session: Session, sr: ServiceRequest) -> list[HistoryEvent]:
    """Everything that happened on the request and on any of its work orders, oldest first."""
    wo_ids = [wo.id for wo in sr.work_orders]
    where = HistoryEvent.service_request_id == sr.id
    if wo_ids:
        where = or_(where, HistoryEvent.work_order_id.in_(wo_ids))
    return list(session.scalars(select(HistoryEvent).where(where)
                                .order_by(HistoryEvent.at, HistoryEvent.id)))


def attachments_of(session: Session, *, service_request_id: int | None = None,
                   ids: Iterable[int] = ()) -> list[Attachment]:
    """Attachments of a request and/or with the given ids, in arrival order."""
    wanted = sorted({int(i) for i in ids if isinstance(i, int) or str(i).isdigit()})
    clauses: list[ColumnElement[bool]] = []
    if service_request_id is not None:
        clauses.append(Attachment.service_request_id == service_request_id)
    if wanted:
        clauses.append(Attachment.id.in_(wanted))
    if not clauses:
        return []
    return list(session.scalars(select(Attachment).where(or_(*clauses)).order_by(Attachment.id)))


# --- what is stuck --------------------------------------------------------------------------

@dataclass(frozen=True)
class FollowupThresholds:
    """How long things may wait before staff should look (a ``[followup]`` table sets them)."""

    draft_hours: float = 24.0
    """A draft nobody has accepted, edited or rejected."""
    vendor_reply_hours: float = 48.0
    """In progress, and the vendor has not answered since the job went to them."""
    overdue_hours: float = 0.0
    """Grace after the scheduled time (or window end) before an unfinished job is overdue."""

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any]) -> FollowupThresholds:
        """From a config table; a ``ValueError`` names the first bad key."""
        known = {"draft_hours", "vendor_reply_hours", "overdue_hours"}
        values: dict[str, float] = {}
        for key, value in table.items():
            if key not in known:
                raise ValueError(f"[followup] {key}: unknown key (known: "
                                 f"{', '.join(sorted(known))})")
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"[followup] {key}: must be a number of hours ≥ 0, "
                                 f"not {value!r}")
            values[key] = float(value)
        return cls(**values)


@dataclass(frozen=True)
class FollowupReason:
    code: str
    """draft_waiting | no_vendor_reply | schedule_passed | flagged"""
    text: str
    since: datetime | None = None


@dataclass
class Followup:
    work_order: WorkOrder
    reasons: list[FollowupReason] = field(default_factory=list)


def describe_age(delta: timedelta) -> str:
    """``timedelta(hours=50)`` → ``2 days``; ``timedelta(hours=30)`` → ``30 hours``."""
    hours = delta.total_seconds() / 3600
    if hours < 1:
        return f"{max(1, round(hours * 60))} minutes"
    if hours < 48:
        return f"{round(hours)} hours"
    return f"{int(hours // 24)} days"


def followup_reasons(wo: WorkOrder, *, now: datetime, thresholds: FollowupThresholds,
                     in_progress_since: datetime | None, tz: tzinfo = UTC
                     ) -> list[FollowupReason]:
    """Why ``wo`` needs a person, if it does (pure: no database access).

    ``in_progress_since`` is when the work order last went in progress (or to a new vendor);
    without that event the last update stands in for it.
    """
    reasons: list[FollowupReason] = []
    if wo.status not in ACTIVE_WO_STATUSES:
        return reasons
    if wo.status == "draft" and wo.created_at is not None:
        waited = now - wo.created_at
        if waited > timedelta(hours=thresholds.draft_hours):
            what = ("accepted but needs a vendor" if wo.needs_vendor
                    else "waiting for a staff decision")
            reasons.append(FollowupReason(
                "draft_waiting", f"draft {what} for {describe_age(waited)}", wo.created_at))
    if wo.status == "in_progress":
        started = in_progress_since or wo.updated_at or wo.created_at
        replied = wo.last_vendor_reply_at
        if started is not None and (replied is None or replied < started):
            silent = now - started
            if silent > timedelta(hours=thresholds.vendor_reply_hours):
                who = wo.vendor.name if wo.vendor is not None else "the vendor"
                reasons.append(FollowupReason(
                    "no_vendor_reply",
                    f"no reply from {who} in {describe_age(silent)} since it was sent", started))
    due = wo.window_end or wo.scheduled_for
    if due is not None and now - due > timedelta(hours=thresholds.overdue_hours):
        when = (wo.scheduled_for or due).astimezone(tz)
        reasons.append(FollowupReason(
            "schedule_passed",
            f"scheduled for {when:%Y-%m-%d %H:%M} and not completed", due))
    for flag in wo.flags or ():
        reasons.append(FollowupReason("flagged", str(flag)))
    return reasons


def in_progress_times(session: Session, ids: Iterable[int]) -> dict[int, datetime]:
    """When each work order last went in progress (newest such history event), one statement."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    rows = session.execute(
        select(HistoryEvent.work_order_id, func.max(HistoryEvent.at))
        .where(HistoryEvent.work_order_id.in_(wanted),
               HistoryEvent.event.in_(IN_PROGRESS_EVENTS))
        .group_by(HistoryEvent.work_order_id)).all()
    result: dict[int, datetime] = {}
    for wo_id, at in rows:
        if wo_id is not None and at is not None:
            # Aggregates bypass the column type: SQLite hands back a naive UTC datetime or text.
            if isinstance(at, str):
                at = datetime.fromisoformat(at)
            result[wo_id] = at.replace(tzinfo=UTC) if at.tzinfo is None else at
    return result


def find_needing_followup(session: Session, filt: WorkOrderFilter | None = None, *,
                          now: datetime | None = None,
                          thresholds: FollowupThresholds | None = None,
                          tz: tzinfo = UTC) -> list[Followup]:
    """Active work orders (draft, in progress) that need a person, newest first, one page.

    Only active work orders are read (the working set, not the archive); the reasons are
    worked out in Python from them and one aggregate query over their history.
    """
    filt = filt or WorkOrderFilter()
    now = now or datetime.now(UTC)
    thresholds = thresholds or FollowupThresholds()
    statuses = [s for s in (filt.statuses or ACTIVE_WO_STATUSES) if s in ACTIVE_WO_STATUSES]
    if not statuses:
        return []
    stmt = _work_order_select(session, filt, statuses)
    if stmt is None:
        return []
    candidates = list(session.scalars(stmt).unique())
    started = in_progress_times(session, [wo.id for wo in candidates
                                          if wo.status == "in_progress"])
    stuck: list[Followup] = []
    for wo in candidates:
        reasons = followup_reasons(wo, now=now, thresholds=thresholds,
                                   in_progress_since=started.get(wo.id), tz=tz)
        if reasons:
            stuck.append(Followup(wo, reasons))
    end = None if filt.limit is None else filt.offset + filt.limit
    return stuck[filt.offset:end]
