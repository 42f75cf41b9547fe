"""``/healthz`` and ``/metrics``: what an operator's monitoring asks the daemon.

Both answer from one snapshot: the facts in the database (mail waiting, mail queued, what is
quarantined, counts by status) plus the live state of this process's intake and outbox when
the daemon serves the page itself.  The database is the source for everything that is shared
between daemons, so a standby or a web-only process reports the same queues as the one that
does the work.

``/healthz`` is for a load balancer or a supervisor: 200 while mail is being read and sent,
503 with the reasons when the mailbox has been out of reach for long or the outbox is not
draining.  ``/metrics`` is the Prometheus text format (prometheus-client), gauges only read
when scraped: nothing is kept between scrapes, so several processes never disagree.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from warrantyd.daemon.config import Config, DivisionConfig
from warrantyd.daemon.intake import mailbox_key
from warrantyd.storage.db import Database
from warrantyd.storage.models import (
    MAIN_DIVISION,
    InboundMessage,
    MailboxState,
    OutboundMessage,
    ServiceRequest,
    WorkOrder,
    utcnow,
)
from warrantyd.storage.queries import SR_STATUSES, WO_STATUSES

log = logging.getLogger("warrantyd.health")

INBOUND_STATUSES: tuple[str, ...] = ("new", "done", "ignored", "quarantined")
OUTBOUND_STATUSES: tuple[str, ...] = ("queued", "sent", "failed", "suppressed")

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The classic text format: every Prometheus version reads it (our names need no escaping)."""

StatusProvider = Callable[[], Mapping[str, Any]]
"""Returns the live ``Service.status``: ``{"intake": {...} | None, "outbox": {...} | None,
"intakes": {division: {...} | None}}`` ("intake" is the main mailbox's)."""


@dataclass(frozen=True)
class HealthThresholds:
    """How long trouble may last before ``/healthz`` answers 503 (``[health]`` in minutes)."""

    intake_disconnected_seconds: float = 600.0
    """No connection to the mailbox (and no pass) for this long: mail is not being read.
    Short outages (a server restart, a network blip) are normal and reconnect on their own."""
    intake_silent_seconds: float = 1800.0
    """Connected, but no pass over the mailbox for this long: the connection hangs.  A full
    poll runs every few minutes even with IDLE, so a healthy intake never gets near it."""
    outbox_stuck_seconds: float = 1800.0
    """The oldest mail still queued was written this long ago: mail is not going out."""


@dataclass
class MailboxHealth:
    """One division's mailbox: live from this process when it reads it, else the database."""

    division: str
    address: str
    connected: bool
    last_poll_at: datetime | None
    backlog: int
    error: str | None
    live: bool

    def as_dict(self) -> dict[str, Any]:
        return {"division": self.division, "address": self.address,
                "connected": self.connected,
                "last_poll_at": self.last_poll_at.isoformat(timespec="seconds")
                if self.last_poll_at else None,
                "backlog": self.backlog, "last_error": self.error,
                "source": "process" if self.live else "database"}


@dataclass
class Snapshot:
    """Everything both endpoints report, read at one moment."""

    now: datetime
    inbound: dict[str, int]
    outbound: dict[str, int]
    work_orders: dict[str, int]
    service_requests: dict[str, int]
    oldest_queued_at: datetime | None
    intake_connected: bool
    last_poll_at: datetime | None
    backlog: int
    intake_error: str | None
    intake_live: bool
    """True when the intake facts come from this process, False when from the database."""
    outbox_live: Mapping[str, Any] | None
    worker_live: Mapping[str, Any] | None = None
    """The processing worker's state, from this process (``ProcessingWorker.status``)."""
    problems: list[str] = field(default_factory=list)
    mailboxes: list[MailboxHealth] = field(default_factory=list)
    """Every division's mailbox, the main one first."""

    @property
    def healthy(self) -> bool:
        return not self.problems

    @property
    def outbox_pending(self) -> int:
        return self.outbound.get("queued", 0)

    @property
    def quarantined(self) -> int:
        return self.inbound.get("quarantined", 0)


def count_by_status(session: Session, model: Any, known: tuple[str, ...]) -> dict[str, int]:
    """``{status: rows}`` for a table with a ``status`` column; every known status present."""
    counts = dict.fromkeys(known, 0)
    for status, count in session.execute(
            select(model.status, func.count()).group_by(model.status)).all():
        counts[str(status)] = int(count)
    return counts


def _parse_time(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{int(seconds)} s"
    if seconds < 7200:
        return f"{int(seconds // 60)} min"
    return f"{seconds / 3600:.1f} h"


def _mailbox_health(session: Session, config: Config, division: DivisionConfig,
                    live: Mapping[str, Any] | None) -> MailboxHealth:
    """A mailbox's state from its live intake when this process reads it, else from the
    ``mailbox_state`` row its reader (maybe another daemon) keeps."""
    if live:
        return MailboxHealth(division.name, division.mailbox.address,
                             bool(live.get("connected")), _parse_time(live.get("last_poll_at")),
                             int(live.get("backlog") or 0), live.get("last_error"), True)
    key = mailbox_key(division.mailbox)
    state = session.get(MailboxState, key)
    waiting = int(session.scalar(
        select(func.count()).select_from(InboundMessage).where(
            InboundMessage.mailbox == key, InboundMessage.status == "new")) or 0)
    return MailboxHealth(division.name, division.mailbox.address,
                         bool(state and state.connected),
                         _parse_time(state.last_poll_at) if state else None, waiting, None,
                         False)


def take_snapshot(session: Session, config: Config, *, now: datetime, started_at: datetime,
                  live: Mapping[str, Any] | None,
                  thresholds: HealthThresholds = HealthThresholds()) -> Snapshot:
    """Read the facts and judge them (see :class:`HealthThresholds`)."""
    inbound = count_by_status(session, InboundMessage, INBOUND_STATUSES)
    outbound = count_by_status(session, OutboundMessage, OUTBOUND_STATUSES)
    oldest = _parse_time(session.scalar(
        select(func.min(OutboundMessage.created_at)).where(OutboundMessage.status == "queued")))
    divisions = config.divisions
    live_intakes = dict((live or {}).get("intakes") or {})
    live_intakes[divisions[0].name] = (live or {}).get("intake") or live_intakes.get(
        divisions[0].name)
    mailboxes = [_mailbox_health(session, config, d, live_intakes.get(d.name))
                 for d in divisions]
    main = mailboxes[0]
    # The top-level fields: the one mailbox as before divisions, or all of them together
    # (connected only when every one is; the stalest pass; the summed backlog).
    polls = [m.last_poll_at for m in mailboxes]
    snap = Snapshot(
        now=now, inbound=inbound, outbound=outbound,
        work_orders=count_by_status(session, WorkOrder, WO_STATUSES),
        service_requests=count_by_status(session, ServiceRequest, SR_STATUSES),
        oldest_queued_at=oldest, intake_connected=all(m.connected for m in mailboxes),
        last_poll_at=None if None in polls else min(p for p in polls if p is not None),
        backlog=sum(m.backlog for m in mailboxes) if all(m.live for m in mailboxes)
        else inbound["new"],
        intake_error=main.error or next((m.error for m in mailboxes if m.error), None),
        intake_live=any(m.live for m in mailboxes),
        outbox_live=(live or {}).get("outbox"), worker_live=(live or {}).get("worker"),
        mailboxes=mailboxes)
    for mailbox in mailboxes:
        snap.problems.extend(_mailbox_problems(mailbox, len(mailboxes) > 1, now=now,
                                               started_at=started_at, thresholds=thresholds))
    if oldest is not None:
        waiting = (now - oldest).total_seconds()
        if waiting > thresholds.outbox_stuck_seconds:
            last_error = (snap.outbox_live or {}).get("last_error")
            snap.problems.append(
                f"outbox: {outbound['queued']} mail(s) queued, the oldest for {_ago(waiting)}"
                + (f"; last error: {last_error}" if last_error else "")
                + "; check [smtp] settings and `warrantyd check`")
    return snap


def _mailbox_problems(mailbox: MailboxHealth, several: bool, *, now: datetime,
                      started_at: datetime, thresholds: HealthThresholds) -> list[str]:
    """What is wrong with one mailbox's intake; with several divisions each problem names
    its division, so the operator knows which login to look at."""
    where = (f"division {mailbox.division}: mailbox {mailbox.address}" if several
             else "intake")
    settings = ("[mailbox]" if mailbox.division == MAIN_DIVISION
                else f"the [[divisions]] {mailbox.division!r} mailbox")
    last_poll, error = mailbox.last_poll_at, mailbox.error
    since_pass = (now - (last_poll or started_at)).total_seconds()
    if not mailbox.connected and since_pass > thresholds.intake_disconnected_seconds:
        what = f"since {last_poll.isoformat(timespec='seconds')}" if last_poll else "since start"
        return [f"{where}: not connected{'' if several else ' to the mailbox'}, no pass {what} "
                f"({_ago(since_pass)})" + (f"; last error: {error}" if error else "")
                + f"; check {settings} settings and `warrantyd check`"]
    if mailbox.connected and since_pass > thresholds.intake_silent_seconds:
        return [f"{where}: connected but no pass over the mailbox for {_ago(since_pass)}; "
                f"the connection may hang (restart the daemon)"]
    return []


def health_document(snap: Snapshot) -> dict[str, Any]:
    """The JSON body of ``/healthz``."""
    outbox_live = dict(snap.outbox_live or {})
    return {
        "status": "ok" if snap.healthy else "unhealthy",
        "problems": list(snap.problems),
        "checked_at": snap.now.isoformat(timespec="seconds"),
        "intake_connected": snap.intake_connected,
        "last_poll_at": snap.last_poll_at.isoformat(timespec="seconds")
        if snap.last_poll_at else None,
        "backlog": snap.backlog,
        "inbound_pending": snap.inbound["new"],
        "outbox_pending": snap.outbox_pending,
        "outbox_oldest_queued_at": snap.oldest_queued_at.isoformat(timespec="seconds")
        if snap.oldest_queued_at else None,
        "quarantined": snap.quarantined,
        "intake": {"source": "process" if snap.intake_live else "database",
                   "last_error": snap.intake_error},
        "mailboxes": [m.as_dict() for m in snap.mailboxes],
        "outbox": {"running": outbox_live.get("running"), "sent": outbox_live.get("sent"),
                   "last_error": outbox_live.get("last_error")},
        "worker": dict(snap.worker_live) if snap.worker_live is not None else None,
    }


class WarrantydCollector(Collector):
    """Reads a fresh :class:`Snapshot` on every scrape."""

    def __init__(self, read: Callable[[], Snapshot]) -> None:
        self.read = read

    def collect(self) -> Iterator[Any]:
        snap = self.read()
        for name, doc, counts in (
                ("warrantyd_inbound_messages", "Stored inbound mail by status",
                 snap.inbound),
                ("warrantyd_outbound_messages", "Outgoing mail by status", snap.outbound),
                ("warrantyd_work_orders", "Work orders by status", snap.work_orders),
                ("warrantyd_service_requests", "Service requests by status",
                 snap.service_requests)):
            family = GaugeMetricFamily(name, doc, labels=["status"])
            for status, count in sorted(counts.items()):
                family.add_metric([status], count)
            yield family
        yield GaugeMetricFamily("warrantyd_quarantined_messages",
                                "Inbound mail that failed processing and waits for an operator",
                                value=snap.quarantined)
        yield GaugeMetricFamily("warrantyd_outbox_pending", "Outgoing mail queued, not yet sent",
                                value=snap.outbox_pending)
        age = ((snap.now - snap.oldest_queued_at).total_seconds()
               if snap.oldest_queued_at else 0.0)
        yield GaugeMetricFamily("warrantyd_outbox_oldest_queued_age_seconds",
                                "Age of the oldest queued outgoing mail (0 when none)",
                                value=age)
        yield GaugeMetricFamily("warrantyd_intake_connected",
                                "1 while the IMAP intake is connected to the mailbox",
                                value=1 if snap.intake_connected else 0)
        yield GaugeMetricFamily("warrantyd_intake_last_poll_timestamp_seconds",
                                "Unix time of the last pass over the mailbox (0 when none)",
                                value=snap.last_poll_at.timestamp() if snap.last_poll_at else 0)
        yield GaugeMetricFamily("warrantyd_intake_backlog",
                                "Mail fetched or waiting that is not yet filed",
                                value=snap.backlog)
        connected = GaugeMetricFamily("warrantyd_mailbox_connected",
                                      "1 while the division's mailbox is connected",
                                      labels=["division"])
        backlog = GaugeMetricFamily("warrantyd_mailbox_backlog",
                                    "The division's mail fetched or waiting, not yet filed",
                                    labels=["division"])
        for mailbox in snap.mailboxes:
            connected.add_metric([mailbox.division], 1 if mailbox.connected else 0)
            backlog.add_metric([mailbox.division], mailbox.backlog)
        yield connected
        yield backlog
        yield GaugeMetricFamily("warrantyd_healthy", "1 when /healthz answers 200",
                                value=1 if snap.healthy else 0)
        sent = (snap.outbox_live or {}).get("sent")
        if sent is not None:
            counter = CounterMetricFamily("warrantyd_outbox_sent_messages",
                                          "Mail sent by this process since it started")
            counter.add_metric([], float(sent))
            yield counter
        starts = (snap.worker_live or {}).get("starts")
        if starts is not None:
            counter = CounterMetricFamily(
                "warrantyd_worker_starts",
                "Times this daemon started its processing worker (more than 1: it died)")
            counter.add_metric([], float(starts))
            yield counter


class HealthPages:
    """The two handlers, with what they need to answer."""

    def __init__(self, config: Config, db: Database, *, clock: Callable[[], datetime] = utcnow,
                 status: StatusProvider | None = None,
                 thresholds: HealthThresholds | None = None) -> None:
        self.config = config
        self.db = db
        self.clock = clock
        self.status = status
        self.thresholds = thresholds or config.health.thresholds
        self.started_at = clock()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(WarrantydCollector(self.snapshot))

    def snapshot(self) -> Snapshot:
        live = None
        if self.status is not None:
            try:
                live = self.status()
            except Exception:  # a status bug must not hide the database facts
                log.exception("live status unavailable; reporting from the database")
        with self.db.session() as session:
            return take_snapshot(session, self.config, now=self.clock(),
                                 started_at=self.started_at, live=live,
                                 thresholds=self.thresholds)

    async def healthz(self, request: web.Request) -> web.StreamResponse:
        try:
            snap = await asyncio.to_thread(self.snapshot)
        except Exception as exc:
            log.exception("health check could not read the database")
            body = {"status": "unhealthy",
                    "problems": [f"database: {type(exc).__name__}: {exc}"[:500]]}
            return web.json_response(body, status=503, dumps=_dumps)
        return web.json_response(health_document(snap), status=200 if snap.healthy else 503,
                                 dumps=_dumps)

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        body = await asyncio.to_thread(generate_latest, self.registry)
        response = web.Response(body=body)
        response.headers["Content-Type"] = METRICS_CONTENT_TYPE
        return response


def _dumps(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=False)


def register_health(app: web.Application, config: Config, db: Database, *,
                    clock: Callable[[], datetime] = utcnow,
                    status: StatusProvider | None = None,
                    thresholds: HealthThresholds | None = None) -> HealthPages:
    """Add ``GET /healthz`` and ``GET /metrics`` to ``app`` (thresholds: ``[health]``)."""
    pages = HealthPages(config, db, clock=clock, status=status, thresholds=thresholds)
    app.router.add_get("/healthz", pages.healthz)
    app.router.add_get("/metrics", pages.metrics)
    return pages


__all__ = ["HealthPages", "HealthThresholds", "MailboxHealth", "Snapshot", "count_by_status",
           "health_document", "register_health", "take_snapshot"]
