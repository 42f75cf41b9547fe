"""/healthz and /metrics on both databases: what they report and when they say unhealthy."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from config_builder import build_config
from prometheus_client.parser import text_string_to_metric_families
from vendor_jobs import ACE, make_config, make_job, send_to
from web_site import Clock, serving

from warrantyd.daemon.config import Config, ConfigError
from warrantyd.daemon.intake import mailbox_key
from warrantyd.daemon.outbox import queue_mail
from warrantyd.daemon.web import WebServer
from warrantyd.storage.db import Database
from warrantyd.storage.inbound import store_inbound
from warrantyd.storage.models import MailboxState, utcnow


class Live:
    """Stands in for ``Service.status``."""

    def __init__(self) -> None:
        self.intake: dict[str, Any] | None = None
        self.outbox: dict[str, Any] | None = None
        self.worker: dict[str, Any] | None = None

    def __call__(self) -> dict[str, Any]:
        return {"intake": self.intake, "outbox": self.outbox, "worker": self.worker}


@pytest.fixture
def config(tmp_path: Path, database: Database) -> Config:
    return make_config(tmp_path, database)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def live() -> Live:
    return Live()


@pytest.fixture
async def server(database: Database, config: Config, clock: Clock, live: Live
                 ) -> AsyncIterator[WebServer]:
    async with serving(config, database, clock=clock, status=live) as web:
        yield web


async def get(server: WebServer, path: str) -> tuple[int, dict[str, str], str]:
    async with aiohttp.ClientSession() as http, http.get(server.url + path) as resp:
        return resp.status, dict(resp.headers), await resp.text()


async def healthz(server: WebServer) -> tuple[int, dict[str, Any]]:
    status, headers, body = await get(server, "/healthz")
    assert headers["Content-Type"].startswith("application/json")
    assert headers["Cache-Control"] == "no-store"
    return status, json.loads(body)


def add_mail(database: Database, config: Config, *, quarantined: int = 0, queued: int = 0,
             at: datetime | None = None) -> None:
    with database.session() as s:
        for n in range(quarantined):
            row, _ = store_inbound(s, mailbox="m/INBOX", uidvalidity=1, uid=500 + n,
                                   raw=f"Subject: broken {n}\n\nx\n".encode())
            row.status = "quarantined"
        for n in range(queued):
            queue_mail(s, our_address=config.mailbox.address, from_name="Acme", kind="ack",
                       to=f"h{n}@example.com", subject="Hi", text="Hi",
                       dedupe_key=f"test:{n}:{at}", now=at)


async def test_a_fresh_daemon_is_healthy_and_reports_its_queues(
        database: Database, config: Config, server: WebServer, live: Live) -> None:
    add_mail(database, config, quarantined=2, queued=3)
    live.intake = {"connected": True, "last_poll_at": utcnow().isoformat(), "backlog": 4,
                   "last_error": None}
    live.outbox = {"running": True, "sent": 7, "last_error": None}
    live.worker = {"pid": 4321, "starts": 2, "last_exit": "the processing worker exited"}
    status, doc = await healthz(server)
    assert status == 200 and doc["status"] == "ok" and doc["problems"] == []
    assert doc["intake_connected"] is True and doc["last_poll_at"]
    assert doc["backlog"] == 4 and doc["outbox_pending"] == 3 and doc["quarantined"] == 2
    assert doc["intake"]["source"] == "process" and doc["outbox"]["sent"] == 7
    assert doc["worker"] == live.worker


async def test_intake_disconnected_for_long_is_unhealthy(
        database: Database, server: WebServer, live: Live, clock: Clock) -> None:
    polled = clock.now
    live.intake = {"connected": False, "last_poll_at": polled.isoformat(), "backlog": 0,
                   "last_error": "IMAP login refused"}
    status, doc = await healthz(server)
    assert status == 200, "a short outage reconnects on its own"
    clock.now += timedelta(minutes=11)
    status, doc = await healthz(server)
    assert status == 503 and doc["status"] == "unhealthy"
    [problem] = doc["problems"]
    assert "not connected" in problem and "IMAP login refused" in problem
    assert doc["intake_connected"] is False
    live.intake = {"connected": True, "last_poll_at": clock.now.isoformat(), "backlog": 0}
    assert (await healthz(server))[0] == 200
    clock.now += timedelta(hours=1)
    status, doc = await healthz(server)
    assert status == 503 and "no pass over the mailbox" in doc["problems"][0]


async def test_health_thresholds_come_from_the_config(
        database: Database, tmp_path: Path, live: Live, clock: Clock) -> None:
    """``[health]``: a team whose mail server restarts nightly for 20 minutes waits longer
    before the monitor pages anyone."""
    patient = build_config(tmp_path, database, health={"intake_disconnected_minutes": 45,
                                                       "outbox_stuck_minutes": 5})
    live.intake = {"connected": False, "last_poll_at": clock.now.isoformat(), "backlog": 0}
    add_mail(database, patient, queued=1, at=clock.now)
    async with serving(patient, database, clock=clock, status=live) as web:
        clock.now += timedelta(minutes=20)
        status, doc = await healthz(web)
        assert [p.split(":")[0] for p in doc["problems"]] == ["outbox"], doc["problems"]
        clock.now += timedelta(minutes=30)
        status, doc = await healthz(web)
        assert status == 503 and any("not connected" in p for p in doc["problems"])


def test_health_thresholds_must_be_positive(tmp_path: Path, database: Database) -> None:
    with pytest.raises(ConfigError) as caught:
        build_config(tmp_path, database, health={"outbox_stuck_minutes": 0, "paging": 1})
    assert any("outbox_stuck_minutes: must be a positive number" in p
               for p in caught.value.problems)
    assert any("[health].paging: unknown key" in p for p in caught.value.problems)


async def test_a_stuck_outbox_is_unhealthy(database: Database, config: Config,
                                           server: WebServer, live: Live,
                                           clock: Clock) -> None:
    live.intake = {"connected": True, "last_poll_at": clock.now.isoformat(), "backlog": 0}
    live.outbox = {"running": True, "sent": 0, "last_error": "SMTP 535 authentication failed"}
    add_mail(database, config, queued=2, at=clock.now - timedelta(minutes=5))
    assert (await healthz(server))[0] == 200
    add_mail(database, config, queued=1, at=clock.now - timedelta(hours=2))
    status, doc = await healthz(server)
    assert status == 503 and doc["outbox_pending"] == 3
    [problem] = doc["problems"]
    assert problem.startswith("outbox: 3 mail(s) queued") and "535" in problem


async def test_without_live_status_the_database_tells(
        database: Database, config: Config, server: WebServer, clock: Clock) -> None:
    """A daemon that is not the mailbox reader (or a web-only process) reports the shared
    mailbox state that the reader writes."""
    with database.session() as s:
        s.add(MailboxState(mailbox=mailbox_key(config.mailbox), connected=True,
                           last_poll_at=clock.now - timedelta(minutes=1), last_uid=0))
    add_mail(database, config, quarantined=1)
    status, doc = await healthz(server)
    assert status == 200 and doc["intake_connected"] is True
    assert doc["intake"]["source"] == "database" and doc["quarantined"] == 1
    with database.session() as s:
        s.get(MailboxState, mailbox_key(config.mailbox)).connected = False  # type: ignore[union-attr]
    clock.now += timedelta(minutes=30)
    assert (await healthz(server))[0] == 503


async def test_metrics_are_prometheus_text_with_counts_by_status(
        database: Database, config: Config, server: WebServer, live: Live) -> None:
    job = make_job(database, config)
    send_to(database, config, job.wo_id, ACE)  # one in progress, one draft, a vendor notice
    add_mail(database, config, quarantined=2, queued=1)
    live.intake = {"connected": True, "last_poll_at": utcnow().isoformat(), "backlog": 0}
    live.outbox = {"running": True, "sent": 5}
    live.worker = {"pid": 4321, "starts": 3, "last_exit": None}
    status, headers, body = await get(server, "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(body) for s in family.samples}

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    assert value("warrantyd_work_orders", status="draft") == 1
    assert value("warrantyd_work_orders", status="in_progress") == 1
    assert value("warrantyd_work_orders", status="completed") == 0
    assert value("warrantyd_service_requests", status="open") == 1
    assert value("warrantyd_inbound_messages", status="quarantined") == 2
    assert value("warrantyd_quarantined_messages") == 2
    assert value("warrantyd_outbox_pending") == value("warrantyd_outbound_messages",
                                                      status="queued") == 2
    assert value("warrantyd_intake_connected") == 1
    assert value("warrantyd_healthy") == 1
    assert value("warrantyd_outbox_sent_messages_total") == 5
    assert value("warrantyd_worker_starts_total") == 3
    live.intake = {"connected": False, "last_poll_at": None, "backlog": 0}
    body = (await get(server, "/metrics"))[2]
    assert "warrantyd_intake_connected 0.0" in body
