"""The vendor's read-only page: valid, tampered and expired links, photos, headers, 404s."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select
from vendor_jobs import ACE, STAFF, Job, make_config, make_job, send_to
from web_site import serving

from warrantyd.daemon.config import Config
from warrantyd.daemon.links import (
    LinkExpired,
    LinkInvalid,
    make_link_token,
    page_url,
    read_link_token,
)
from warrantyd.daemon.vendors import link_secret, vendor_link
from warrantyd.daemon.web import WebServer
from warrantyd.storage.blobs import BlobStore
from warrantyd.storage.db import Database
from warrantyd.storage.models import Attachment, HistoryEvent, WorkOrder, utcnow


@pytest.fixture
def config(tmp_path: Path, database: Database) -> Config:
    return make_config(tmp_path, database)


@pytest.fixture
async def site(database: Database, config: Config) -> AsyncIterator[tuple[WebServer, Any]]:
    job = make_job(database, config)
    send_to(database, config, job.wo_id, ACE)
    async with serving(config, database) as server:
        yield server, job


def link_path(database: Database, config: Config, wo_id: int, **kw: object) -> str:
    with database.session() as s:
        wo = s.get(WorkOrder, wo_id)
        assert wo is not None
        url = vendor_link(config, link_secret(s, config), wo, **kw)  # type: ignore[arg-type]
    return url.removeprefix(config.web.base_url)


async def fetch(server: WebServer, path: str, method: str = "GET"
                ) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as http, http.request(
            method, server.url + path, allow_redirects=False) as resp:
        return resp.status, dict(resp.headers), await resp.read()


def assert_safe_headers(headers: dict[str, str]) -> None:
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Cache-Control"] == "no-store"
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"] \
        or "sandbox" in headers["Content-Security-Policy"]
    assert "Server" not in headers


async def test_a_valid_link_opens_the_page_with_the_job_and_its_photos(
        database: Database, config: Config, site: tuple[WebServer, Job]) -> None:
    server, job = site
    path = link_path(database, config, job.wo_id)
    status, headers, body = await fetch(server, path)
    assert status == 200
    assert_safe_headers(headers)
    page = body.decode()
    for expected in (f"WO-{job.wo_id}", "Leak under kitchen sink", "Water drips from the P-trap",
                     "1 Elm St", "Dana Whitfield", "dana@example.com", "303-555-0142",
                     "Dog in the back yard", "In progress", "not yet scheduled"):
        assert expected in page, expected
    token = path.rsplit("/", 1)[1]
    assert f'src="{token}/photo/1"' in page and f'src="{token}/photo/2"' in page
    status, headers, content = await fetch(server, f"{path}/photo/1")
    assert status == 200 and headers["Content-Type"] == "image/png"
    assert_safe_headers(headers)
    with database.session() as s:
        sink = s.scalars(select(Attachment).where(Attachment.filename == "sink.png")).one()
        assert content == BlobStore(config.storage.data_dir).get(sink.sha256)
    assert (await fetch(server, f"{path}/photo/3"))[0] == 404, "the other job's photo"
    assert (await fetch(server, path, "HEAD"))[0] == 200


async def test_the_page_shows_the_vendors_replies_and_never_internal_history(
        database: Database, config: Config, site: tuple[WebServer, Job]) -> None:
    server, job = site
    with database.session() as s:
        s.add_all([
            HistoryEvent(event="vendor_reply", actor=ACE, work_order_id=job.wo_id,
                         detail="other: no date\n\nWill call Dana tonight."),
            HistoryEvent(event="vendor_reply", actor="someone@else.example",
                         work_order_id=job.wo_id, detail="other: x\n\nSOMEONE-ELSE-SECRET"),
            HistoryEvent(event="note", actor=STAFF, internal=True, work_order_id=job.wo_id,
                         detail="SECOND-INTERNAL-SECRET"),
        ])
    _, _, body = await fetch(server, link_path(database, config, job.wo_id))
    page = body.decode()
    assert "Will call Dana tonight." in page and "no date" not in page
    for secret in ("SOMEONE-ELSE-SECRET", "SECOND-INTERNAL-SECRET", "INTERNAL-SECRET",
                   "COVERAGE-SECRET", "FLAG-SECRET", "OTHER-JOB-SECRET", "0.42",
                   "EMERGENCY-REASON-SECRET", "Nail pop in hallway"):
        assert secret not in page, secret


async def test_a_tampered_link_is_403_and_says_what_to_do(
        database: Database, config: Config, site: tuple[WebServer, Job]) -> None:
    server, job = site
    path = link_path(database, config, job.wo_id)
    token = path.rsplit("/", 1)[1]
    payload, _, signature = token.partition(".")
    forged = [
        token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
        payload + "." + signature[::-1],
        make_link_token(b"not our secret", work_order_id=job.wo_id, vendor_id=1, now=utcnow()),
    ]
    for bad in forged:
        status, headers, body = await fetch(server, f"/v/{bad}")
        assert status == 403, bad
        assert_safe_headers(headers)
        assert b"reply to that email to get a fresh link" in body
        assert (await fetch(server, f"/v/{bad}/photo/1"))[0] == 403


async def test_an_expired_link_is_410_and_says_to_reply_for_a_fresh_one(
        database: Database, config: Config, site: tuple[WebServer, Job]) -> None:
    server, job = site
    path = link_path(database, config, job.wo_id, now=utcnow() - timedelta(days=50))
    status, headers, body = await fetch(server, path)
    assert status == 410
    assert_safe_headers(headers)
    assert b"expired" in body and b"Reply to the work order email" in body
    assert (await fetch(server, f"{path}/photo/1"))[0] == 410


async def test_anything_else_is_404_with_the_same_headers(
        database: Database, config: Config, site: tuple[WebServer, Job]) -> None:
    server, job = site
    path = link_path(database, config, job.wo_id)
    for other in ("/", "/v/", "/v", "/static/", "/data/blobs/", f"/wo/{job.wo_id}",
                  f"{path}/photo/0", f"{path}/photo/x", f"{path}/../..", f"{path}/history",
                  "/v/..%2f..%2fetc%2fpasswd"):
        status, headers, body = await fetch(server, other)
        assert status == 404, other
        assert_safe_headers(headers)
        assert b"Index of" not in body
    status, _, _ = await fetch(server, path, "POST")
    assert status == 405


async def test_a_link_of_a_job_taken_away_or_a_draft_stops_working(
        database: Database, config: Config, site: tuple[WebServer, Job]) -> None:
    server, job = site
    path = link_path(database, config, job.wo_id)
    send_to(database, config, job.wo_id, "bob@drywall.example.org")
    assert (await fetch(server, path))[0] == 410
    with database.session() as s:
        secret = link_secret(s, config)
    # A well-signed link for a draft (never sent to anyone) shows nothing either.
    token = make_link_token(secret, work_order_id=job.other_wo_id, vendor_id=1, now=utcnow())
    status, _, body = await fetch(server, f"/v/{token}")
    assert status == 410 and b"OTHER-JOB-SECRET" not in body


def test_link_tokens_carry_their_grant_and_refuse_other_keys() -> None:
    now = utcnow()
    token = make_link_token(b"k", work_order_id=7, vendor_id=3, now=now, days=1)
    grant = read_link_token(b"k", token, now=now)
    assert (grant.work_order_id, grant.vendor_id) == (7, 3)
    assert page_url("https://x.example/", token) == f"https://x.example/v/{token}"
    with pytest.raises(LinkInvalid):
        read_link_token(b"other key", token, now=now)
    with pytest.raises(LinkExpired):
        read_link_token(b"k", token, now=now + timedelta(days=2))
