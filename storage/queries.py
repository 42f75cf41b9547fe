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

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    case,
    exists,
    func,
    literal,
    or_,
    select,
    text,
    tuple_,
)
from sqlalchemy.orm import Session, aliased, contains_eager, joinedload, selectinload
from sqlalchemy.orm.util import AliasedClass

from warrantyd.storage.models import (
    MAIN_DIVISION,
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
    divisions: tuple[str, ...] | None = None
    """Only work of these divisions (see :func:`division_condition`); None: every division."""
    configured_divisions: tuple[str, ...] = ()
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
    divisions: tuple[str, ...] | None = None
    """Only requests of these divisions (see :func:`division_condition`); None: all."""
    configured_divisions: tuple[str, ...] = ()
    limit: int | None = 50
    offset: int = 0


def division_condition(column: Any, divisions: Iterable[str],
                       configured: Iterable[str] = ()) -> ColumnElement[bool]:
    """Rows whose ``column`` (a ``division`` column) is one of ``divisions``.

    A row of a division that is no longer configured (renamed or removed from the file)
    belongs to the main division, as ``Config.division`` says: when ``configured`` names the
    divisions of the config and the main one is wanted, such rows are included too, so no
    work is ever out of every staff member's sight.
    """
    wanted = list(dict.fromkeys(divisions))
    condition: ColumnElement[bool] = column.in_(wanted)
    known = list(dict.fromkeys(configured))
    if MAIN_DIVISION in wanted and known:
        condition = or_(condition, column.not_in(known))
    return condition


def _contains(column: Any, term: str) -> ColumnElement[bool]:
    """Case-insensitive substring match, with ``%`` and ``_`` in ``term`` taken literally."""
    return func.lower(column).contains(term.strip().lower(), autoescape=True)


def _like_pattern(term: str) -> str:
    """``%term%`` with ``%``, ``_`` and the escape character taken literally (escape ``/``)."""
    escaped = term.strip().replace("/", "//").replace("%", "/%").replace("_", "/_")
    return f"%{escaped}%"


def _home_matches(term: str) -> ColumnElement[bool]:
    """The home's address or community contains ``term``, case-insensitively.

    ``ILIKE`` on the bare columns, so that on PostgreSQL the trigram indexes on ``home``
    answer it whatever part of an address or community name was typed; SQLite compares
    ``lower()`` of both sides.
    """
    pattern = _like_pattern(term)
    return or_(Home.address.ilike(pattern, escape="/"),
               Home.community.ilike(pattern, escape="/"))


HOME_LIST_MAX = 1000
"""Up to this many matching homes are handed to the work-order query as a list of ids."""


def home_ids_matching(session: Session, term: str) -> list[int] | None:
    """Ids of the homes whose address or community contains ``term``; None when more than
    :data:`HOME_LIST_MAX` match.

    Looking the homes up first (one indexed statement on a small table) gives the planner
    the true number of matching homes, so it can choose between following those homes'
    requests and walking all work orders newest first.  A pattern inside one joined query
    is estimated blindly, and the wrong guess costs ten times the query.
    """
    ids = list(session.scalars(select(Home.id).where(_home_matches(term))
                               .limit(HOME_LIST_MAX + 1)))
    return None if len(ids) > HOME_LIST_MAX else ids


def _property_filter(session: Session, term: str) -> ColumnElement[bool] | None:
    """The condition on ``service_request.home_id`` for ``--property term``; None when no
    home matches (the listing is empty)."""
    ids = home_ids_matching(session, term)
    if ids is None:  # a broad term: newest first over everything is the right plan anyway
        return ServiceRequest.home_id.in_(select(Home.id).where(_home_matches(term)))
    if not ids:
        return None
    return ServiceRequest.home_id.in_(ids)


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


def _serial_plans(session: Session) -> None:
    """Plan the rest of this transaction without parallel workers (PostgreSQL).

    A listing returns one page; its plans walk an index newest first and stop after a few
    thousand rows at most.  The planner still offers workers when it guesses the whole
    match is large, and starting them costs more than the page (20 ms against 5 ms for a
    community at a million work orders).
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL max_parallel_workers_per_gather = 0"))


def _own_conditions(wo: type[WorkOrder] | AliasedClass[WorkOrder], filt: WorkOrderFilter,
                    vendor_ids: Sequence[int] | None) -> list[ColumnElement[bool]]:
    """The parts of ``filt`` that are about the work order's own columns (not its home)."""
    conditions: list[ColumnElement[bool]] = []
    if vendor_ids is not None:
        conditions.append(or_(wo.vendor_id.in_(vendor_ids),
                              and_(wo.vendor_id.is_(None),
                                   wo.suggested_vendor_id.in_(vendor_ids))))
    if filt.service_request_id is not None:
        conditions.append(wo.service_request_id == filt.service_request_id)
    if filt.since is not None:
        conditions.append(wo.created_at >= filt.since)
    return conditions


def _work_order_select(session: Session, filt: WorkOrderFilter, statuses: Sequence[str],
                       vendor_ids: Sequence[int] | None = None) -> Select[tuple[WorkOrder]] | None:
    """The filtered, eagerly loaded query; None when the filter can match nothing.

    ``vendor_ids`` are the vendors ``filt.vendor`` matches, when the caller looked them up.
    """
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
        homes = _property_filter(session, filt.property)
        if homes is None:
            return None
        stmt = stmt.where(homes)
    if filt.vendor and vendor_ids is None:
        vendor_ids = vendor_ids_matching(session, filt.vendor)
    if filt.vendor and not vendor_ids:
        return None
    stmt = stmt.where(*_own_conditions(WorkOrder, filt, vendor_ids if filt.vendor else None))
    if filt.divisions is not None:
        stmt = stmt.where(division_condition(ServiceRequest.division, filt.divisions,
                                             filt.configured_divisions))
    if statuses:
        stmt = stmt.where(WorkOrder.status.in_(list(statuses)))
    return stmt.order_by(WorkOrder.created_at.desc(), WorkOrder.id.desc())


def find_work_orders(session: Session, filt: WorkOrderFilter) -> list[WorkOrder]:
    """Work orders matching ``filt``, newest first, one page (``limit``/``offset``).

    The service request, its home and homeowner, and the vendors come loaded.
    ``filt.needs_followup`` is not applied here: see :func:`find_needing_followup`.
    """
    stmt = _work_order_select(session, filt, filt.statuses)
    if stmt is None:
        return []
    _serial_plans(session)
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
        homes = _property_filter(session, filt.property)
        if homes is None:
            return []
        stmt = stmt.where(homes)
    if filt.homeowner:
        term = filt.homeowner
        stmt = stmt.where(or_(_contains(ServiceRequest.requester_email, term),
                              _contains(ServiceRequest.requester_name, term),
                              _contains(Homeowner.name, term), _contains(Homeowner.email, term)))
    if filt.statuses:
        stmt = stmt.where(ServiceRequest.status.in_(list(filt.statuses)))
    if filt.since is not None:
        stmt = stmt.where(ServiceRequest.created_at >= filt.since)
    if filt.divisions is not None:
        stmt = stmt.where(division_condition(ServiceRequest.division, filt.divisions,
                                             filt.configured_divisions))
    _serial_plans(session)
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

BOUNCED_FLAG = "vendor email bounced"
"""The flag a permanent bounce of a vendor mail puts on the work order (see actions.bounce)."""
PROPOSED_TIMES_FLAG = "vendor proposed times"
"""Prefix of the flag a vendor's reply with candidate dates puts on the work order."""
PROPOSED_TIMES_INTENT = "propose_times"
"""How the reading of such a reply starts in its ``vendor_reply`` history detail."""
CLOSED_WO_STATUSES: tuple[str, ...] = ("completed", "rejected")


@dataclass(frozen=True)
class FollowupThresholds:
    """How long things may wait before staff should look (a ``[followup]`` table sets them)."""

    draft_hours: float = 24.0
    """A draft nobody has accepted, edited or rejected."""
    vendor_reply_hours: float = 48.0
    """In progress, and the vendor has not answered since the job went to them."""
    overdue_hours: float = 0.0
    """Grace after the scheduled time (or window end) before an unfinished job is overdue."""
    proposed_times_hours: float = 24.0
    """The vendor proposed visit times and none has been confirmed since."""
    emergency_ack_minutes: float = 30.0
    """An emergency still a draft: nobody has sent anyone yet."""

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any]) -> FollowupThresholds:
        """From a config table; a ``ValueError`` names the first bad key."""
        known = set(cls.__dataclass_fields__)
        values: dict[str, float] = {}
        for key, value in table.items():
            if key not in known:
                raise ValueError(f"[followup] {key}: unknown key (known: "
                                 f"{', '.join(sorted(known))})")
            unit = "minutes" if key.endswith("_minutes") else "hours"
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"[followup] {key}: must be a number of {unit} ≥ 0, "
                                 f"not {value!r}")
            values[key] = float(value)
        return cls(**values)


@dataclass(frozen=True)
class FollowupReason:
    code: str
    """draft_waiting | emergency_unacknowledged | no_vendor_reply | proposed_times |
    schedule_passed | vendor_bounced | flagged | request_unresolved"""
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
                     in_progress_since: datetime | None, tz: tzinfo = UTC,
                     proposed_at: datetime | None = None) -> list[FollowupReason]:
    """Why ``wo`` needs a person, if it does (pure: no database access).

    ``in_progress_since`` is when the work order last went in progress (or to a new vendor);
    without that event the last update stands in for it.  ``proposed_at`` is when the
    vendor last proposed visit times; without it their last reply stands in for it.
    A work order's own flags are listed as they are, except the proposed-times flag, which
    only counts once ``proposed_times_hours`` have passed without a confirmed date.
    """
    reasons: list[FollowupReason] = []
    if wo.status not in ACTIVE_WO_STATUSES:
        return reasons
    if wo.status == "draft" and wo.created_at is not None:
        waited = now - wo.created_at
        if wo.priority == "emergency" and \
                waited > timedelta(minutes=thresholds.emergency_ack_minutes):
            reasons.append(FollowupReason(
                "emergency_unacknowledged",
                f"EMERGENCY not acknowledged: still a draft after {describe_age(waited)}",
                wo.created_at))
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
    flags = [str(f) for f in wo.flags or ()]
    proposal = next((f for f in flags if f.startswith(PROPOSED_TIMES_FLAG)), None)
    proposed = proposed_at or wo.last_vendor_reply_at
    if proposal is not None and wo.scheduled_for is None and proposed is not None \
            and now - proposed > timedelta(hours=thresholds.proposed_times_hours):
        options = proposal[len(PROPOSED_TIMES_FLAG):].lstrip(" :")
        reasons.append(FollowupReason(
            "proposed_times",
            f"vendor proposed times {describe_age(now - proposed)} ago and none is confirmed"
            + (f" ({options})" if options else ""), proposed))
    due = wo.window_end or wo.scheduled_for
    if due is not None and now - due > timedelta(hours=thresholds.overdue_hours):
        when = (wo.scheduled_for or due).astimezone(tz)
        reasons.append(FollowupReason(
            "schedule_passed",
            f"scheduled for {when:%Y-%m-%d %H:%M} and not completed", due))
    vendor = wo.vendor
    if wo.status == "in_progress" and vendor is not None and vendor.bounced_at is not None \
            and BOUNCED_FLAG not in flags:
        reasons.append(FollowupReason(
            "vendor_bounced",
            f"mail to {vendor.name} <{vendor.email}> bounced on "
            f"{vendor.bounced_at.astimezone(tz):%Y-%m-%d}; they may never have got this job",
            vendor.bounced_at))
    for flag in flags:
        if not flag.startswith(PROPOSED_TIMES_FLAG):
            reasons.append(FollowupReason("flagged", flag))
    return reasons


def request_unresolved_reason(wo: WorkOrder) -> FollowupReason:
    """The reason listed on the last completed work order of a request that should be resolved
    (every job completed or rejected, one completed) but is still open."""
    sr = wo.service_request
    return FollowupReason(
        "request_unresolved",
        f"every work order of {sr.ref} is done but the request is still "
        f"{sr.status.replace('_', ' ')}; resolve it or reopen the work",
        wo.completed_at or wo.updated_at)


def _as_aware(at: datetime | str | None) -> datetime | None:
    """Aggregates bypass the column type: SQLite hands back a naive UTC datetime or text."""
    if at is None:
        return None
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


def in_progress_times(session: Session, ids: Iterable[int]) -> dict[int, datetime]:
    """When each work order last went in progress (newest such history event), one statement."""
    return followup_clock_times(session, ids)[0]


def followup_clock_times(session: Session, ids: Iterable[int]
                         ) -> tuple[dict[int, datetime], dict[int, datetime]]:
    """For each work order, when it last went in progress and when its vendor last proposed
    visit times: (started, proposed), both from the history in one aggregate statement."""
    wanted = sorted(set(ids))
    started: dict[int, datetime] = {}
    proposed: dict[int, datetime] = {}
    if not wanted:
        return started, proposed
    is_proposal = and_(HistoryEvent.event == "vendor_reply",
                       HistoryEvent.detail.startswith(PROPOSED_TIMES_INTENT + ":"))
    kind = case((is_proposal, literal("p")), else_=literal("s"))
    rows = session.execute(
        select(HistoryEvent.work_order_id, kind, func.max(HistoryEvent.at))
        .where(HistoryEvent.work_order_id.in_(wanted),
               or_(HistoryEvent.event.in_(IN_PROGRESS_EVENTS), is_proposal))
        .group_by(HistoryEvent.work_order_id, kind)).all()
    for wo_id, which, at in rows:
        moment = _as_aware(at)
        if wo_id is not None and moment is not None:
            (proposed if which == "p" else started)[wo_id] = moment
    return started, proposed


def _unresolved_but_done_ids(session: Session) -> list[int]:
    """Ids of requests not resolved although every (unmerged) job is completed or rejected
    and at least one is completed: what :func:`~warrantyd.daemon.vendors.resolve_if_done`
    would have resolved.

    Driven from the unresolved requests (the working set, found by the status index), never
    from the completed work orders, which are the whole archive.
    """
    done = aliased(WorkOrder)
    open_ = aliased(WorkOrder)
    unresolved = [s for s in SR_STATUSES if s != "resolved"]
    return list(session.scalars(select(ServiceRequest.id).where(
        ServiceRequest.status.in_(unresolved),
        exists().where(done.service_request_id == ServiceRequest.id,
                       done.status == "completed", done.merged_into_id.is_(None)),
        ~exists().where(open_.service_request_id == ServiceRequest.id,
                        open_.status.not_in(CLOSED_WO_STATUSES),
                        open_.merged_into_id.is_(None)))))


def _last_in_progress_at(wo: type[WorkOrder] | AliasedClass[WorkOrder]) -> ColumnElement[Any]:
    """When ``wo`` last went in progress (or to a new vendor); its last update without such
    an event (the SQL twin of ``in_progress_since or updated_at`` in
    :func:`followup_reasons`)."""
    newest_event = (select(func.max(HistoryEvent.at))
                    .where(HistoryEvent.work_order_id == wo.id,
                           HistoryEvent.event.in_(IN_PROGRESS_EVENTS))
                    .scalar_subquery())
    return func.coalesce(newest_event, wo.updated_at, wo.created_at)


def _may_need_followup(now: datetime, thresholds: FollowupThresholds
                       ) -> ColumnElement[bool]:
    """The rules of :func:`followup_reasons` for active work orders, in SQL.

    Exact for every rule but one: a work order with flags is always a candidate, because
    whether its only flag is a proposal that is still fresh needs the flag's text and the
    history; Python decides those few.  The cheap column tests come first, so the history
    is only consulted for in-progress work that no other rule caught.
    """
    def ago(**delta: float) -> datetime:
        return now - timedelta(**delta)

    started = _last_in_progress_at(WorkOrder)
    bounced = select(Vendor.id).where(Vendor.bounced_at.is_not(None))
    draft_late = and_(
        WorkOrder.status == "draft",
        or_(WorkOrder.created_at < ago(hours=thresholds.draft_hours),
            and_(WorkOrder.priority == "emergency",
                 WorkOrder.created_at < ago(minutes=thresholds.emergency_ack_minutes))))
    return or_(
        draft_late,
        func.coalesce(WorkOrder.window_end, WorkOrder.scheduled_for)
        < ago(hours=thresholds.overdue_hours),
        func.json_array_length(WorkOrder.flags) > 0,
        and_(WorkOrder.status == "in_progress", WorkOrder.vendor_id.in_(bounced)),
        and_(WorkOrder.status == "in_progress",
             started < ago(hours=thresholds.vendor_reply_hours),
             or_(WorkOrder.last_vendor_reply_at.is_(None),
                 WorkOrder.last_vendor_reply_at < started)),
    )


def _newest_first_after(last: WorkOrder) -> ColumnElement[bool]:
    """Rows after ``last`` in ``created_at DESC, id DESC`` order (keyset paging)."""
    return tuple_(WorkOrder.created_at, WorkOrder.id) < tuple_(
        literal(last.created_at, WorkOrder.created_at.type), literal(last.id))


def find_needing_followup(session: Session, filt: WorkOrderFilter | None = None, *,
                          now: datetime | None = None,
                          thresholds: FollowupThresholds | None = None,
                          tz: tzinfo = UTC) -> list[Followup]:
    """Work orders that need a person, newest first, one page.

    Two kinds, each one query that returns at most a page: active work orders that break a
    rule (the rules are in SQL, see :func:`_may_need_followup`, over the active rows only:
    a partial index keeps the archive out of it), and the newest completed work order of
    each request that should have been resolved.  Python then words the reasons, with one
    aggregate query over the page's history; a candidate it turns down (a fresh proposal)
    makes the next rows be read by keyset, so a page is always full when there is more.
    """
    filt = filt or WorkOrderFilter()
    now = now or datetime.now(UTC)
    thresholds = thresholds or FollowupThresholds()
    active = [s for s in (filt.statuses or ACTIVE_WO_STATUSES) if s in ACTIVE_WO_STATUSES]
    with_done = not filt.statuses or "completed" in filt.statuses
    if not active and not with_done:
        return []
    vendor_ids = vendor_ids_matching(session, filt.vendor) if filt.vendor else None
    if filt.vendor and not vendor_ids:
        return []
    _serial_plans(session)
    wanted = None if filt.limit is None else filt.offset + filt.limit
    stuck: list[Followup] = []
    if active:
        stuck += _active_needing_followup(session, filt, vendor_ids, active, wanted, now,
                                          thresholds, tz)
    if with_done:
        stuck += _unresolved_requests_last_jobs(session, filt, vendor_ids, wanted)
    stuck.sort(key=lambda f: (f.work_order.created_at, f.work_order.id), reverse=True)
    return stuck[filt.offset:wanted]


def _active_needing_followup(session: Session, filt: WorkOrderFilter,
                             vendor_ids: Sequence[int] | None, statuses: Sequence[str],
                             wanted: int | None, now: datetime,
                             thresholds: FollowupThresholds, tz: tzinfo) -> list[Followup]:
    """Up to ``wanted`` active work orders with reasons, newest first."""
    stmt = _work_order_select(session, filt, statuses, vendor_ids)
    if stmt is None:
        return []
    stmt = stmt.where(_may_need_followup(now, thresholds))
    found: list[Followup] = []
    last: WorkOrder | None = None
    while wanted is None or len(found) < wanted:
        needed = None if wanted is None else wanted - len(found)
        page = stmt if last is None else stmt.where(_newest_first_after(last))
        if needed is not None:
            page = page.limit(needed)
        batch = list(session.scalars(page).unique())
        started, proposed = followup_clock_times(
            session, [wo.id for wo in batch if wo.status == "in_progress"])
        for wo in batch:
            reasons = followup_reasons(wo, now=now, thresholds=thresholds,
                                       in_progress_since=started.get(wo.id), tz=tz,
                                       proposed_at=proposed.get(wo.id))
            if reasons:
                found.append(Followup(wo, reasons))
        if needed is None or len(batch) < needed:  # nothing more to read
            break
        last = batch[-1]
    return found


def _unresolved_requests_last_jobs(session: Session, filt: WorkOrderFilter,
                                   vendor_ids: Sequence[int] | None,
                                   wanted: int | None) -> list[Followup]:
    """The newest completed work order (among those ``filt`` lists) of each request that
    every job is done for but that is still open, up to ``wanted``, newest first."""
    requests = _unresolved_but_done_ids(session)
    if not requests:
        return []
    stmt = _work_order_select(session, filt, ("completed",), vendor_ids)
    if stmt is None:
        return []
    newer = aliased(WorkOrder)
    finished = func.coalesce(WorkOrder.completed_at, WorkOrder.updated_at)
    newer_finished = func.coalesce(newer.completed_at, newer.updated_at)
    stmt = stmt.where(
        WorkOrder.merged_into_id.is_(None),
        WorkOrder.service_request_id.in_(requests),
        ~exists().where(
            newer.service_request_id == WorkOrder.service_request_id,
            newer.status == "completed", newer.merged_into_id.is_(None),
            or_(newer_finished > finished,
                and_(newer_finished == finished, newer.id > WorkOrder.id)),
            *_own_conditions(newer, filt, vendor_ids if filt.vendor else None)))
    if wanted is not None:
        stmt = stmt.limit(wanted)
    return [Followup(wo, [request_unresolved_reason(wo)])
            for wo in session.scalars(stmt).unique()]
