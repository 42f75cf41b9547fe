"""What ``warrantyd wo|sr list|show`` print: plain data for ``--json``, text for people.

The dictionaries returned here are the JSON contract of the CLI (see DESIGN.md "Contract"):
the required keys never change name; new keys may be added.  Staff run the CLI, so internal
history is included and marked ``internal: true``.  Rendering is separate from querying so
the web dashboard and tests can use the same data.  Nothing here prints: callers write the
returned strings where they like.
"""

from __future__ import annotations

import re
import textwrap
from collections import Counter
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from sqlalchemy import ColumnElement, false, func, not_, or_, select, true
from sqlalchemy.orm import Session

from warrantyd.daemon.config import Config
from warrantyd.storage.db import Database
from warrantyd.storage.models import (
    MAIN_DIVISION,
    Attachment,
    HistoryEvent,
    Home,
    InboundMessage,
    ServiceRequest,
    Vendor,
    WorkOrder,
)
from warrantyd.storage.queries import (
    SR_STATUSES,
    WO_STATUSES,
    FollowupThresholds,
    ServiceRequestFilter,
    UnknownReference,
    WorkOrderFilter,
    attachments_of,
    find_needing_followup,
    find_service_requests,
    find_work_orders,
    get_service_request,
    get_work_order,
    history_of_service_request,
    history_of_work_orders,
    parse_ref,
)

__all__ = [
    "BadFilter", "FollowupThresholds", "ServiceRequestFilter", "UnknownReference",
    "WorkOrderFilter", "build_sr_filter", "build_wo_filter", "configured_divisions",
    "division_counts", "inbound_in_divisions", "needs_followup",
    "parse_division", "parse_since", "render_sr", "render_sr_table", "render_wo",
    "render_wo_table", "sr_list", "sr_show", "status_counts", "wo_list", "wo_show",
]

STATUS_GROUPS = {"open": ("draft", "in_progress"), "active": ("draft", "in_progress"),
                 "closed": ("completed", "rejected"), "done": ("completed",)}
"""Words staff use for several work order statuses at once (``--status open``)."""


class BadFilter(ValueError):
    """A list filter the operator gave cannot be understood; the message says what would."""


@contextmanager
def _reading(db: Database | Session) -> Iterator[Session]:
    if isinstance(db, Session):
        yield db
    else:
        with db.session() as session:
            yield session


# --- filters from command-line words --------------------------------------------------------

def parse_since(text: str, *, tz: tzinfo = UTC, now: datetime | None = None) -> datetime:
    """``2025-03-01``, ``3/1/2025``, ``2025-03-01T08:00``, ``today``, ``yesterday``, ``7d``,
    ``48h``, ``2w`` → an aware instant.  Dates mean midnight in the company's time zone."""
    value = text.strip().lower()
    now = now or datetime.now(UTC)
    local_today = now.astimezone(tz).date()
    relative = re.fullmatch(r"(\d+)\s*(h|hours?|d|days?|w|weeks?)", value)
    if relative:
        amount, unit = int(relative[1]), relative[2][0]
        return now - {"h": timedelta(hours=amount), "d": timedelta(days=amount),
                      "w": timedelta(weeks=amount)}[unit]
    if value in ("today", "yesterday"):
        day = local_today - timedelta(days=1 if value == "yesterday" else 0)
        return datetime.combine(day, time(), tz)
    us = re.fullmatch(r"(\d{1,2})/(\d{1,2})/(\d{4})", value)
    try:
        if us:
            return datetime.combine(date(int(us[3]), int(us[1]), int(us[2])), time(), tz)
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadFilter(f"--since {text!r} is not a date; write 2025-03-01, 3/1/2025, "
                        f"today, yesterday, 7d or 48h") from None
    return parsed.replace(tzinfo=tz) if parsed.tzinfo is None else parsed


def parse_statuses(text: str | None, known: Sequence[str],
                   groups: dict[str, tuple[str, ...]] | None = None) -> tuple[str, ...]:
    """``"in-progress"`` → ``("in_progress",)``; ``"draft,completed"`` → both; groups expand."""
    if not text:
        return ()
    result: list[str] = []
    for word in re.split(r"[,\s]+", text.strip().lower()):
        if not word:
            continue
        status = word.replace("-", "_")
        if groups and status in groups:
            result.extend(groups[status])
        elif status in known:
            result.append(status)
        else:
            choices = [*known, *(groups or {})]
            raise BadFilter(f"--status {word!r} is not a status; use one of "
                            f"{', '.join(choices)}")
    return tuple(dict.fromkeys(result))


def _limit(limit: int | None, offset: int) -> tuple[int | None, int]:
    if limit is not None and limit < 1:
        raise BadFilter(f"--limit {limit}: must be 1 or more (or leave it out)")
    if offset < 0:
        raise BadFilter(f"--offset {offset}: must be 0 or more")
    return limit, offset


def parse_division(name: str | None, config: Config | None) -> tuple[str, ...] | None:
    """``--division NAME`` as the ``divisions`` of a filter (None: every division)."""
    if name is None:
        return None
    known = config.division_names if config is not None else (MAIN_DIVISION,)
    wanted = name.strip().lower()
    if wanted not in known:
        raise BadFilter(f"--division {name!r} is not a configured division; the configured "
                        f"ones are: {', '.join(known)} (see [[divisions]] in the config)")
    return (wanted,)


def configured_divisions(config: Config | None) -> tuple[str, ...]:
    """The names a filter's ``configured_divisions`` takes: rows of any other division
    (renamed or removed from the file) then count as the main one's."""
    return config.division_names if config is not None else ()


def build_wo_filter(*, property: str | None = None, vendor: str | None = None,
                    status: str | None = None, sr: str | None = None, since: str | None = None,
                    needs_followup: bool = False, limit: int | None = 50, offset: int = 0,
                    tz: tzinfo = UTC, now: datetime | None = None,
                    division: str | None = None, config: Config | None = None
                    ) -> WorkOrderFilter:
    """A :class:`WorkOrderFilter` from ``wo list`` options; :class:`BadFilter` or
    :class:`UnknownReference` explain what is wrong.  ``division`` is checked against
    ``config``'s divisions."""
    limit, offset = _limit(limit, offset)
    return WorkOrderFilter(
        property=property or None, vendor=vendor or None,
        statuses=parse_statuses(status, WO_STATUSES, STATUS_GROUPS),
        service_request_id=parse_ref(sr, "SR") if sr else None,
        since=parse_since(since, tz=tz, now=now) if since else None,
        needs_followup=needs_followup, limit=limit, offset=offset,
        divisions=parse_division(division, config),
        configured_divisions=configured_divisions(config))


def build_sr_filter(*, property: str | None = None, homeowner: str | None = None,
                    status: str | None = None, since: str | None = None,
                    limit: int | None = 50, offset: int = 0, tz: tzinfo = UTC,
                    now: datetime | None = None, division: str | None = None,
                    config: Config | None = None) -> ServiceRequestFilter:
    """A :class:`ServiceRequestFilter` from ``sr list`` options."""
    limit, offset = _limit(limit, offset)
    return ServiceRequestFilter(
        property=property or None, homeowner=homeowner or None,
        statuses=parse_statuses(status, SR_STATUSES), limit=limit, offset=offset,
        since=parse_since(since, tz=tz, now=now) if since else None,
        divisions=parse_division(division, config),
        configured_divisions=configured_divisions(config))


# --- divisions ------------------------------------------------------------------------------

def _wo_division(wo: WorkOrder) -> str:
    """A work order belongs to its service request's division."""
    sr = wo.service_request
    return sr.division if sr is not None else MAIN_DIVISION


def inbound_in_divisions(config: Config, divisions: Collection[str]) -> ColumnElement[bool]:
    """The SQL condition of ``Config.division_of_inbound`` being one of ``divisions``."""
    def came_to(address: str) -> ColumnElement[bool]:
        return InboundMessage.mailbox.startswith(f"{address}/", autoescape=True)

    if MAIN_DIVISION in divisions:
        others = [came_to(d.mailbox.address) for d in config.divisions
                  if d.name not in divisions]
        return not_(or_(*others)) if others else true()
    mine = [came_to(d.mailbox.address) for d in config.divisions if d.name in divisions]
    return or_(*mine) if mine else false()


def status_counts(session: Session, kind: type[WorkOrder] | type[ServiceRequest],
                  known: Sequence[str], config: Config,
                  divisions: Collection[str] | None = None) -> dict[str, dict[str, int]]:
    """``{division: {status: rows}}`` of work orders or service requests, for every
    configured division (only ``divisions`` when given), in the config's order, every known
    status present.  Rows of a division no longer configured count as the main one's."""
    names = [d.name for d in config.divisions if divisions is None or d.name in divisions]
    counts = {name: dict.fromkeys(known, 0) for name in names}
    stmt = select(ServiceRequest.division, kind.status, func.count())
    if kind is WorkOrder:
        stmt = stmt.join(WorkOrder, WorkOrder.service_request_id == ServiceRequest.id)
    for division, status, count in session.execute(
            stmt.group_by(ServiceRequest.division, kind.status)).all():
        name = config.division(division).name
        if name in counts:
            counts[name][str(status)] = counts[name].get(str(status), 0) + int(count)
    return counts


def division_counts(counts: dict[str, dict[str, int]], known: Sequence[str]) -> dict[str, int]:
    """The per-division counts of :func:`status_counts` added up."""
    total = dict.fromkeys(known, 0)
    for per_status in counts.values():
        for status, count in per_status.items():
            total[status] = total.get(status, 0) + count
    return total


# --- records as plain data ------------------------------------------------------------------

def _iso(value: datetime | date | None) -> str | None:
    return value.isoformat() if value is not None else None


def _person(vendor: Vendor | None) -> dict[str, str] | None:
    return None if vendor is None else {"name": vendor.name, "email": vendor.email}


def _property(home: Home | None) -> dict[str, Any] | None:
    if home is None:
        return None
    return {"address": home.address, "community": home.community,
            "closing_date": _iso(home.closing_date)}


def _homeowner(sr: ServiceRequest) -> dict[str, str]:
    owner = sr.homeowner
    if owner is not None:
        return {"name": owner.name or sr.requester_name, "email": owner.email}
    return {"name": sr.requester_name, "email": sr.requester_email}


def history_item(event: HistoryEvent) -> dict[str, Any]:
    return {"at": _iso(event.at), "event": event.event, "actor": event.actor,
            "detail": event.detail, "internal": bool(event.internal)}


def attachment_item(att: Attachment) -> dict[str, Any]:
    return {"id": att.id, "filename": att.filename, "content_type": att.content_type,
            "size": att.size}


def work_order_row(wo: WorkOrder) -> dict[str, Any]:
    """A work order without its history: one row of ``wo list --json``."""
    sr = wo.service_request
    return {
        "id": wo.ref,
        "status": wo.status,
        "service_request": f"SR-{wo.service_request_id}",
        "division": _wo_division(wo),
        "trade": wo.trade,
        "description": wo.description,
        "priority": wo.priority,
        "vendor": _person(wo.vendor),
        "scheduled_for": _iso(wo.scheduled_for),
        "window_end": _iso(wo.window_end),
        "title": wo.title,
        "location": wo.location,
        "suggested_vendor": _person(wo.suggested_vendor),
        "needs_vendor": bool(wo.needs_vendor),
        "flags": list(wo.flags or ()),
        "coverage_hint": wo.coverage_hint,
        "confidence": wo.confidence,
        "engine": wo.engine,
        "emergency_reason": wo.emergency_reason,
        "merged_into": f"WO-{wo.merged_into_id}" if wo.merged_into_id else None,
        "property": _property(sr.home) if sr is not None else None,
        "homeowner": _homeowner(sr) if sr is not None else None,
        "photo_count": len(wo.photos or ()),
        "created_at": _iso(wo.created_at),
        "updated_at": _iso(wo.updated_at),
        "completed_at": _iso(wo.completed_at),
        "last_vendor_reply_at": _iso(wo.last_vendor_reply_at),
    }


def work_order_detail(wo: WorkOrder, history: Sequence[HistoryEvent],
                      photos: dict[int, Attachment]) -> dict[str, Any]:
    """A work order with its photos and history: ``wo show --json``."""
    data = work_order_row(wo)
    data["photos"] = [attachment_item(photos[int(i)]) for i in (wo.photos or ())
                      if str(i).isdigit() and int(i) in photos]
    data["history"] = [history_item(e) for e in history]
    return data


def wo_list(db: Database | Session, filters: WorkOrderFilter | None = None, *,
            now: datetime | None = None, thresholds: FollowupThresholds | None = None,
            tz: tzinfo = UTC) -> list[dict[str, Any]]:
    """``wo list``: matching work orders, newest first (``needs_followup`` adds reasons)."""
    filters = filters or WorkOrderFilter()
    if filters.needs_followup:
        return needs_followup(db, filters, now=now, thresholds=thresholds, tz=tz)
    with _reading(db) as session:
        return [work_order_row(wo) for wo in find_work_orders(session, filters)]


def needs_followup(db: Database | Session, filters: WorkOrderFilter | None = None, *,
                   now: datetime | None = None, thresholds: FollowupThresholds | None = None,
                   tz: tzinfo = UTC) -> list[dict[str, Any]]:
    """Work orders stuck long enough that staff should look, each with ``followup_reason``.

    Drafts waiting more than ``draft_hours``, emergencies still drafts after
    ``emergency_ack_minutes``, jobs in progress with no vendor reply ``vendor_reply_hours``
    after they were sent, proposed times unconfirmed after ``proposed_times_hours``,
    scheduled dates passed without completion, vendors whose address bounced, anything
    flagged (e.g. "vendor email bounced"), and requests whose every job is done but which
    are not resolved (on their newest completed work order).
    """
    with _reading(db) as session:
        rows = []
        for item in find_needing_followup(session, filters, now=now, thresholds=thresholds,
                                          tz=tz):
            row = work_order_row(item.work_order)
            row["followup_reason"] = "; ".join(r.text for r in item.reasons)
            row["followup_reasons"] = [{"code": r.code, "text": r.text, "since": _iso(r.since)}
                                       for r in item.reasons]
            rows.append(row)
        return rows


def wo_show(db: Database | Session, ref: str | int) -> dict[str, Any]:
    """``wo show WO-n``; :class:`UnknownReference` when ``ref`` is malformed or unknown."""
    with _reading(db) as session:
        wo = get_work_order(session, ref)
        history = history_of_work_orders(session, [wo.id])[wo.id]
        photos = {a.id: a for a in attachments_of(session, ids=wo.photos or ())}
        return work_order_detail(wo, history, photos)


def service_request_row(sr: ServiceRequest) -> dict[str, Any]:
    """A service request without work orders and history: one row of ``sr list --json``."""
    counts = Counter(wo.status for wo in sr.work_orders)
    return {
        "id": sr.ref,
        "status": sr.status,
        "division": sr.division,
        "homeowner": _homeowner(sr),
        "property": _property(sr.home),
        "subject": sr.subject,
        "created_at": _iso(sr.created_at),
        "updated_at": _iso(sr.updated_at),
        "resolved_at": _iso(sr.resolved_at),
        "work_order_count": len(sr.work_orders),
        "work_order_statuses": dict(sorted(counts.items())),
        "work_order_ids": [wo.ref for wo in sr.work_orders],
        "engine": sr.engine,
        "language": sr.language,
    }


def sr_list(db: Database | Session, filters: ServiceRequestFilter | None = None
            ) -> list[dict[str, Any]]:
    """``sr list``: matching service requests, newest first."""
    with _reading(db) as session:
        return [service_request_row(sr)
                for sr in find_service_requests(session, filters or ServiceRequestFilter())]


def sr_show(db: Database | Session, ref: str | int) -> dict[str, Any]:
    """``sr show SR-n``: the request, its work orders (each with history), the whole timeline."""
    with _reading(db) as session:
        sr = get_service_request(session, ref)
        timeline = history_of_service_request(session, sr)
        by_wo: dict[int, list[HistoryEvent]] = {wo.id: [] for wo in sr.work_orders}
        for event in timeline:
            if event.work_order_id in by_wo:
                by_wo[event.work_order_id].append(event)
        photo_ids = [p for wo in sr.work_orders for p in (wo.photos or ())]
        attachments = attachments_of(session, service_request_id=sr.id, ids=photo_ids)
        by_id = {a.id: a for a in attachments}
        data = service_request_row(sr)
        del data["work_order_ids"]
        data.update({
            "work_orders": [work_order_detail(wo, by_wo[wo.id], by_id) for wo in sr.work_orders],
            "history": [{**history_item(e),
                         "work_order": f"WO-{e.work_order_id}" if e.work_order_id else None}
                        for e in timeline],
            "body": sr.body,
            "language": sr.language,
            "usage": dict(sr.usage or {}),
            "attachments": [attachment_item(a) for a in attachments
                            if a.service_request_id == sr.id],
        })
        return data


# --- text for people ------------------------------------------------------------------------

def _clip(text: str | None, width: int) -> str:
    """One line of at most ``width`` characters, ending in an ellipsis when cut."""
    flat = " ".join((text or "").split())
    if len(flat) <= width:
        return flat
    return flat[: max(0, width - 1)].rstrip() + "…" if width > 0 else ""


def _when(value: str | None, tz: tzinfo, *, style: str = "%Y-%m-%d %H:%M") -> str:
    """An ISO 8601 instant from the JSON data, in the company's time zone."""
    if not value:
        return ""
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is not None:
        moment = moment.astimezone(tz)
    return moment.strftime(style)


Column = tuple[str, int, int]
"""Header, widest it may get, narrowest it may be squeezed to."""

LAST_MIN = 20
GAP = "  "


def _table(columns: Sequence[Column], rows: Sequence[Sequence[str]], width: int) -> str:
    """Fixed-width columns sized to their content, the last one taking what is left.

    When ``width`` is too narrow, the widest squeezable columns give way first (down to
    their minimum); cells that do not fit are cut with an ellipsis, never wrapped.
    """
    widths = []
    for i, (name, widest, _) in enumerate(columns[:-1]):
        content = max((len(" ".join(row[i].split())) for row in rows), default=0)
        widths.append(max(len(name), min(widest, content)))
    floors = [max(len(name), narrowest) for name, _, narrowest in columns[:-1]]
    last_content = max((len(" ".join(row[-1].split())) for row in rows), default=0)
    reserve = min(LAST_MIN, max(len(columns[-1][0]), last_content))
    overflow = sum(widths) + len(GAP) * (len(columns) - 1) + reserve - width
    while overflow > 0:
        slack = [(w - f, i) for i, (w, f) in enumerate(zip(widths, floors, strict=True))
                 if w > f]
        if not slack:
            break
        _, i = max(slack)
        widths[i] -= 1
        overflow -= 1
    widths.append(max(reserve, width - sum(widths) - len(GAP) * (len(columns) - 1)))
    lines = [GAP.join(name.ljust(w) for (name, _, _), w in zip(columns, widths, strict=True))
             .rstrip()]
    for row in rows:
        lines.append(GAP.join(_clip(cell, w).ljust(w) for cell, w in
                              zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _vendor_label(row: dict[str, Any]) -> str:
    if row.get("vendor"):
        return str(row["vendor"]["name"])
    if row.get("suggested_vendor"):
        return f"({row['suggested_vendor']['name']}?)"
    return "-"


def _property_label(row: dict[str, Any]) -> str:
    prop = row.get("property")
    if not prop:
        return "(unknown)"
    return prop["address"] + (f", {prop['community']}" if prop.get("community") else "")


def _shows_division(rows: Sequence[dict[str, Any]]) -> bool:
    """A DIVISION column only where there are divisions: a listing of the main one alone
    (every installation without ``[[divisions]]``) looks as it always did."""
    return any(r.get("division", MAIN_DIVISION) != MAIN_DIVISION for r in rows)


def _with_division(columns: list[Column], cells: list[list[str]],
                   rows: Sequence[dict[str, Any]], show: bool | None = None) -> None:
    """Put a DIVISION column after the first (the reference): when ``show``, or when
    :func:`_shows_division` if it is None."""
    if not (_shows_division(rows) if show is None else show):
        return
    columns.insert(1, ("DIVISION", 16, 6))
    for cell, row in zip(cells, rows, strict=True):
        cell.insert(1, str(row.get("division", MAIN_DIVISION)))


def render_wo_table(rows: Sequence[dict[str, Any]], *, width: int = 100, tz: tzinfo = UTC,
                    show_property: bool = True, show_division: bool | None = None) -> str:
    """``wo list`` for a terminal; follow-up rows show why instead of the description.

    A suggested (not yet assigned) vendor is shown as ``(Name?)``.
    """
    if not rows:
        return "No work orders match."
    followup = any("followup_reason" in r for r in rows)
    columns: list[Column] = [("WO", 9, 4), ("STATUS", 11, 11), ("PRIORITY", 9, 9),
                             ("TRADE", 20, 8), ("VENDOR", 20, 10), ("PROPERTY", 30, 12),
                             ("SCHEDULED", 12, 12), ("WHY" if followup else "DESCRIPTION", 0, 0)]
    cells = [[r["id"], r["status"], r["priority"], r["trade"], _vendor_label(r),
              _property_label(r), _when(r.get("scheduled_for"), tz, style="%b %d %H:%M"),
              r.get("followup_reason", "") if followup else (r.get("title") or r["description"])]
             for r in rows]
    if not show_property:
        del columns[5]
        for row in cells:
            del row[5]
    _with_division(columns, cells, rows, show_division)
    return _table(columns, cells, width)


def render_sr_table(rows: Sequence[dict[str, Any]], *, width: int = 100,
                    tz: tzinfo = UTC) -> str:
    """``sr list`` for a terminal."""
    if not rows:
        return "No service requests match."
    columns = [("SR", 9, 4), ("STATUS", 11, 11), ("RECEIVED", 16, 16), ("HOMEOWNER", 24, 10),
               ("PROPERTY", 30, 12), ("WOS", 4, 3), ("SUBJECT", 0, 0)]
    cells = [[r["id"], r["status"], _when(r.get("created_at"), tz),
              r["homeowner"]["name"] or r["homeowner"]["email"], _property_label(r),
              str(r["work_order_count"]), r.get("subject") or ""] for r in rows]
    _with_division(columns, cells, rows)
    return _table(columns, cells, width)


def _division_label(data: dict[str, Any]) -> str | None:
    """The Division line of a shown record: only for a division other than the main one."""
    division = data.get("division", MAIN_DIVISION)
    return None if division == MAIN_DIVISION else str(division)


def _block(pairs: Sequence[tuple[str, str | None]]) -> list[str]:
    label_width = max(len(k) for k, _ in pairs) + 1
    return [f"{(k + ':').ljust(label_width)} {v}" for k, v in pairs if v not in (None, "")]


def _history_lines(history: Sequence[dict[str, Any]], tz: tzinfo, indent: str = "  ",
                   *, show_wo: bool = False) -> list[str]:
    lines = []
    for h in history:
        tag = " [internal]" if h.get("internal") else ""
        wo = f" {h['work_order']}" if show_wo and h.get("work_order") else ""
        lines.append(f"{indent}{_when(h['at'], tz)}  {h['event']}{wo}  ({h['actor']}){tag}")
        detail = (h.get("detail") or "").strip()
        for text in detail.splitlines()[:6]:
            lines.append(f"{indent}    {_clip(text, 90)}")
    return lines or [f"{indent}(none)"]


def render_wo(data: dict[str, Any], *, tz: tzinfo = UTC, history: bool = True) -> str:
    """``wo show`` for a terminal: a labelled block, then the description and the history."""
    vendor = data.get("vendor")
    suggested = data.get("suggested_vendor")
    vendor_text = (f"{vendor['name']} <{vendor['email']}>" if vendor
                   else f"none (suggested: {suggested['name']})" if suggested else "none")
    if data.get("needs_vendor"):
        vendor_text += " — needs a vendor"
    photos = data.get("photos") or []
    scheduled = _when(data.get("scheduled_for"), tz)
    if scheduled and data.get("window_end"):
        scheduled += f" – {_when(data['window_end'], tz)}"
    lines = [f"{data['id']}  {data.get('title') or ''}".rstrip()]
    lines += _block([
        ("Status", data["status"]),
        ("Division", _division_label(data)),
        ("Request", data["service_request"]),
        ("Property", _property_label(data) if data.get("property") else None),
        ("Homeowner", (f"{data['homeowner']['name']} <{data['homeowner']['email']}>"
                       if data.get("homeowner") else None)),
        ("Trade", data["trade"]),
        ("Priority", data["priority"] + (f" ({data['emergency_reason']})"
                                         if data.get("emergency_reason") else "")),
        ("Location", data.get("location")),
        ("Vendor", vendor_text),
        ("Scheduled", scheduled or None),
        ("Flags", "; ".join(data.get("flags") or ()) or None),
        ("Merged into", data.get("merged_into")),
        ("Coverage", data.get("coverage_hint")),
        ("Photos", ", ".join(p["filename"] for p in photos) or None),
        ("Drafted by", data.get("engine")),
        ("Created", _when(data.get("created_at"), tz)),
        ("Completed", _when(data.get("completed_at"), tz) or None),
    ])
    lines += ["", "Description:"]
    for paragraph in (data.get("description") or "-").splitlines():
        lines += textwrap.wrap(paragraph, width=94, initial_indent="  ",
                               subsequent_indent="  ") or [""]
    if history:
        lines += ["", "History:", *_history_lines(data.get("history") or [], tz)]
    return "\n".join(lines)


def render_sr(data: dict[str, Any], *, tz: tzinfo = UTC) -> str:
    """``sr show`` for a terminal: the request, a line per work order, the whole timeline."""
    owner = data["homeowner"]
    usage = data.get("usage") or {}
    usage_text = ", ".join(f"{k} {v}" for k, v in sorted(usage.items())
                           if isinstance(v, int | float)) or None
    lines = [f"{data['id']}  {data.get('subject') or ''}".rstrip()]
    lines += _block([
        ("Status", data["status"]),
        ("Division", _division_label(data)),
        ("Homeowner", f"{owner['name']} <{owner['email']}>" if owner["name"] else owner["email"]),
        ("Property", _property_label(data)),
        ("Received", _when(data.get("created_at"), tz)),
        ("Resolved", _when(data.get("resolved_at"), tz) or None),
        ("Drafted by", data.get("engine")),
        ("Tokens", usage_text),
        ("Attachments", ", ".join(f"{a['filename']} ({a['size']} bytes)"
                                  for a in data.get("attachments") or ()) or None),
    ])
    lines += ["", "Work orders:"]
    if data.get("work_orders"):
        lines += ["  " + line for line in
                  render_wo_table(data["work_orders"], width=96, tz=tz, show_property=False,
                                  show_division=False).splitlines()]
    else:
        lines.append("  (none)")
    body = (data.get("body") or "").strip()
    if body:
        lines += ["", "Request:", *[f"  {_clip(b, 96)}" for b in body.splitlines()[:20]]]
    lines += ["", "History:", *_history_lines(data.get("history") or [], tz, show_wo=True)]
    return "\n".join(lines)
