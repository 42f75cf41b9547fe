"""The staff dashboard on both databases: sign-in by mailed link, sessions, CSRF, every page."""

from __future__ import annotations

import email
import email.policy
import hashlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from config_builder import ELM_STREET, NORA, NORTH, build_config
from sqlalchemy import select
from vendor_jobs import ACE, STAFF, inbound_status, make_config, make_job, send_to
from web_site import Clock, serving

from warrantyd.daemon.config import Config
from warrantyd.daemon.dashboard import LOGIN_LINKS_PER_WINDOW
from warrantyd.daemon.web import WebServer
from warrantyd.storage.blobs import BlobStore
from warrantyd.storage.db import Database
from warrantyd.storage.inbound import store_inbound
from warrantyd.storage.models import (
    Attachment,
    HistoryEvent,
    Home,
    InboundMessage,
    OutboundMessage,
    ServiceRequest,
    StaffLogin,
    StaffSession,
    Vendor,
    WorkOrder,
)

COOKIE = "__Host-warrantyd_session"  # the test config's base_url is https


@dataclass
class Reply:
    status: int
    headers: Any
    text: str
    set_cookies: list[str]


@dataclass
class Browser:
    """A minimal browser: keeps cookies by name (Secure ones too: the test server is http)."""

    base: str
    cookies: dict[str, str] = field(default_factory=dict)

    async def request(self, method: str, path: str, data: dict[str, str] | None = None,
                      headers: dict[str, str] | None = None) -> Reply:
        sent = dict(headers or {})
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http, \
                http.request(method, self.base + path, data=data, headers=sent,
                             allow_redirects=False) as resp:
            body = await resp.read()
            set_cookies = resp.headers.getall("Set-Cookie", [])
            for header in set_cookies:
                jar: SimpleCookie = SimpleCookie()
                jar.load(header)
                for name, morsel in jar.items():
                    if morsel["max-age"] == "0" or not morsel.value:
                        self.cookies.pop(name, None)
                    else:
                        self.cookies[name] = morsel.value
            return Reply(resp.status, resp.headers, body.decode("utf-8", "replace"),
                         set_cookies)

    async def get(self, path: str, **kw: Any) -> Reply:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, data: dict[str, str] | None = None, **kw: Any) -> Reply:
        return await self.request("POST", path, data=data or {}, **kw)


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, "the page has no CSRF field"
    return match.group(1)


def login_links(database: Database, address: str = STAFF) -> list[str]:
    """The sign-in links in the login mails queued for ``address``, oldest first."""
    with database.session() as s:
        rows = list(s.scalars(select(OutboundMessage).where(OutboundMessage.kind == "login")
                              .order_by(OutboundMessage.id)))
        raws = [(r.to_addr, r.raw) for r in rows if r.to_addr == address]
    links = []
    for to, raw in raws:
        assert to == address
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        text = msg.get_body(("plain",)).get_content()  # type: ignore[attr-defined]
        links.append(re.search(r"https://\S+/login/\S+", text).group(0))  # type: ignore[union-attr]
    return links


def local_path(link: str) -> str:
    return "/" + link.split("/", 3)[3]


async def ask_for_link(browser: Browser, address: str = STAFF) -> Reply:
    form = await browser.get("/login")
    assert form.status == 200
    return await browser.post("/login", {"email": address, "csrf": csrf_of(form.text)})


async def sign_in(browser: Browser, database: Database, address: str = STAFF) -> Reply:
    """The whole flow a person goes through; returns the answer to the Sign in button."""
    sent = await ask_for_link(browser, address)
    assert sent.status == 200 and "Check your inbox" in sent.text
    path = local_path(login_links(database, address)[-1])
    confirm = await browser.get(path)
    assert confirm.status == 200 and f"Sign in as {address}" in confirm.text
    return await browser.post(path, {"csrf": csrf_of(confirm.text)})


@pytest.fixture
def config(tmp_path: Path, database: Database) -> Config:
    return make_config(tmp_path, database)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def server(database: Database, config: Config, clock: Clock
                 ) -> AsyncIterator[WebServer]:
    async with serving(config, database, clock=clock) as web:
        yield web


@pytest.fixture
async def staff(server: WebServer, database: Database) -> Browser:
    browser = Browser(server.url)
    done = await sign_in(browser, database)
    assert done.status == 303
    return browser


STAFF_PAGES = ("/staff/", "/staff/properties", "/staff/properties/1", "/staff/vendors",
               "/staff/vendors/1", "/staff/sr/1", "/staff/wo/1", "/staff/quarantine",
               "/staff/attachments/1")


# --- authentication -------------------------------------------------------------------------

async def test_no_page_without_a_session(database: Database, config: Config,
                                         server: WebServer) -> None:
    make_job(database, config)
    anonymous = Browser(server.url)
    for path in STAFF_PAGES:
        reply = await anonymous.get(path)
        assert reply.status == 303 and reply.headers["Location"] == "/login", path
        assert "Leak" not in reply.text
    forged = Browser(server.url, {COOKIE: "made-up-session-id-0123456789"})
    assert (await forged.get("/staff/")).status == 303
    refused = await anonymous.post("/staff/quarantine/1/reprocess", {"csrf": "x"})
    assert refused.status == 401
    assert (await anonymous.post("/logout")).status == 401


async def test_signing_in_by_mailed_link_sets_a_safe_cookie(
        database: Database, config: Config, server: WebServer) -> None:
    browser = Browser(server.url)
    done = await sign_in(browser, database)
    assert done.status == 303 and done.headers["Location"] == "/staff/"
    [cookie] = [c for c in done.set_cookies if c.startswith(COOKIE + "=")]
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "secure", "samesite=lax", "path=/"} <= flags
    assert not any(f.startswith("domain") for f in flags)
    value = browser.cookies[COOKIE]
    token = local_path(login_links(database)[-1]).rsplit("/", 1)[1]
    with database.session() as s:
        [login] = s.scalars(select(StaffLogin)).all()
        [session] = s.scalars(select(StaffSession)).all()
        # Only hashes are kept: a copy of the database signs nobody in.
        assert login.token_hash == hashlib.sha256(token.encode()).hexdigest()
        assert session.session_hash == hashlib.sha256(value.encode()).hexdigest()
        assert login.used_at is not None and session.email == STAFF
        assert token not in (login.token_hash, session.session_hash)
    page = await browser.get("/staff/")
    assert page.status == 200 and "<h1>Overview</h1>" in page.text


async def test_a_new_sign_in_replaces_the_session_id(
        database: Database, server: WebServer, staff: Browser) -> None:
    old = staff.cookies[COOKIE]
    again = await sign_in(staff, database)
    assert again.status == 303
    assert staff.cookies[COOKIE] != old
    assert (await Browser(server.url, {COOKIE: old}).get("/staff/")).status == 303
    assert (await staff.get("/staff/")).status == 200


async def test_an_address_that_is_not_staff_gets_the_same_answer_and_no_mail(
        database: Database, server: WebServer) -> None:
    browser = Browser(server.url)
    stranger = await ask_for_link(browser, "mallory@example.net")
    known = await ask_for_link(browser, STAFF.upper())
    assert stranger.status == known.status == 200

    def strip(page: str) -> str:
        page = re.sub(r'nonce="[^"]+"', "", page)
        return page.replace("mallory@example.net", "X").replace(STAFF, "X")

    assert strip(stranger.text) == strip(known.text)
    assert len(login_links(database)) == 1, "only the staff address got a mail"
    assert login_links(database, "mallory@example.net") == []


async def test_sign_in_mails_are_capped_per_address(database: Database,
                                                    server: WebServer) -> None:
    browser = Browser(server.url)
    for _ in range(LOGIN_LINKS_PER_WINDOW + 2):
        assert (await ask_for_link(browser)).status == 200
    assert len(login_links(database)) == LOGIN_LINKS_PER_WINDOW


async def test_used_expired_and_made_up_links_are_refused_with_what_to_do(
        database: Database, server: WebServer, clock: Clock) -> None:
    browser = Browser(server.url)
    assert (await sign_in(browser, database)).status == 303
    used = local_path(login_links(database)[-1])
    for reply in (await browser.get(used), await browser.post(used, {"csrf": "whatever"})):
        assert reply.status in (403, 410)
    reply = await browser.get(used)
    assert reply.status == 410 and "already used" in reply.text and 'href="/login"' in reply.text

    fresh = Browser(server.url)
    await ask_for_link(fresh)
    path = local_path(login_links(database)[-1])
    confirm = await fresh.get(path)
    clock.now += timedelta(minutes=16)
    late = await fresh.post(path, {"csrf": csrf_of(confirm.text)})
    assert late.status == 410 and "expired" in late.text and COOKIE not in fresh.cookies
    assert (await fresh.get(path)).status == 410

    made_up = await fresh.get("/login/" + "A" * 43)
    assert made_up.status == 404 and "not valid" in made_up.text


async def test_opening_the_link_does_not_use_it_up(database: Database,
                                                   server: WebServer) -> None:
    """Mail scanners fetch links: only the button signs in."""
    browser = Browser(server.url)
    await ask_for_link(browser)
    path = local_path(login_links(database)[-1])
    for _ in range(3):
        assert (await Browser(server.url).get(path)).status == 200
    confirm = await browser.get(path)
    assert (await browser.post(path, {"csrf": csrf_of(confirm.text)})).status == 303


async def test_every_post_needs_the_csrf_token(database: Database, config: Config,
                                               server: WebServer, staff: Browser) -> None:
    anonymous = Browser(server.url)
    assert (await anonymous.post("/login", {"email": STAFF})).status == 403
    form = await anonymous.get("/login")
    other = Browser(server.url)  # a token from another browser's form does not count
    assert (await other.post("/login", {"email": STAFF, "csrf": csrf_of(form.text)})).status \
        == 403
    before = len(login_links(database))
    assert (await anonymous.post("/login", {"email": STAFF, "csrf": csrf_of(form.text)},
                                 headers={"Origin": "https://evil.example"})).status == 403
    assert len(login_links(database)) == before

    row_id = quarantined_row(database)
    page = await staff.get("/staff/quarantine")
    token = csrf_of(page.text)
    path = f"/staff/quarantine/{row_id}/reprocess"
    assert (await staff.post(path, {})).status == 403
    assert (await staff.post(path, {"csrf": token + "0"})).status == 403
    assert (await staff.post(path, {"csrf": token},
                             headers={"Sec-Fetch-Site": "cross-site"})).status == 403
    assert (await staff.post(path, {"csrf": token},
                             headers={"Origin": "https://evil.example"})).status == 403
    assert inbound_status(database, row_id) == "quarantined"
    # Our own form, as a browser sends it under Referrer-Policy: no-referrer.
    ok = await staff.post(path, {"csrf": token},
                          headers={"Origin": "null", "Sec-Fetch-Site": "same-origin"})
    assert ok.status == 303
    assert (await staff.post("/logout", {})).status == 403
    assert (await staff.get("/staff/")).status == 200, "a refused logout keeps the session"


async def test_sign_out_ends_the_session(database: Database, server: WebServer,
                                         staff: Browser) -> None:
    value = staff.cookies[COOKIE]
    page = await staff.get("/staff/")
    out = await staff.post("/logout", {"csrf": csrf_of(page.text)})
    assert out.status == 200 and "Signed out" in out.text
    assert any(c.startswith(COOKIE + "=") and "max-age=0" in c.lower() for c in out.set_cookies)
    assert (await Browser(server.url, {COOKIE: value}).get("/staff/")).status == 303
    with database.session() as s:
        assert s.scalars(select(StaffSession)).one().revoked_at is not None


async def test_a_session_ends_when_the_address_leaves_the_staff_list(
        database: Database, server: WebServer, staff: Browser) -> None:
    object.__setattr__(server.config.staff, "addresses", ("someone-else@acme-homes.example",))
    assert (await staff.get("/staff/")).status == 303


# --- pages ----------------------------------------------------------------------------------

def quarantined_row(database: Database) -> int:
    with database.session() as s:
        row, _ = store_inbound(s, mailbox="m/INBOX", uidvalidity=1, uid=4242,
                               raw=b"From: broken@example.com\nSubject: Cannot parse me\n\nx\n")
        row.status = "quarantined"
        row.attempts = 3
        row.last_error = "ValueError: BROKEN-BECAUSE"
        return row.id


async def test_security_headers_on_dashboard_pages(server: WebServer, staff: Browser) -> None:
    for path in ("/login", "/staff/", "/staff/vendors"):
        browser = staff if path.startswith("/staff") else Browser(server.url)
        reply = await browser.get(path)
        assert reply.status == 200
        csp = reply.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "form-action 'self'" in csp
        assert "frame-ancestors 'none'" in csp and "script-src" not in csp
        assert reply.headers["X-Frame-Options"] == "DENY"
        assert reply.headers["Cache-Control"] == "no-store"
        assert "<script" not in reply.text


async def test_overview_counts_and_followups(database: Database, config: Config,
                                             server: WebServer, staff: Browser,
                                             clock: Clock) -> None:
    job = make_job(database, config)
    send_to(database, config, job.wo_id, ACE)
    quarantined_row(database)
    page = (await staff.get("/staff/")).text
    assert re.search(r"<b>1</b><span class=\"badge s-draft\">draft", page)
    assert re.search(r"<b>1</b><span class=\"badge s-in_progress\">in progress", page)
    assert re.search(r"<b>1</b><a href=\"/staff/quarantine\">quarantined", page)
    assert "Needs follow-up (1)" in page and "FLAG-SECRET" in page  # flagged: at once
    assert f'href="/staff/sr/{job.sr_id}"' in page
    clock.now += timedelta(days=3)
    assert (await staff.get("/staff/")).status == 303, "sessions last a working day"
    assert (await sign_in(staff, database)).status == 303
    later = (await staff.get("/staff/")).text
    assert "Needs follow-up (2)" in later
    assert "waiting for a staff decision" in later and "no reply from Ace Plumbing" in later


async def test_property_pages_show_only_that_propertys_work(
        database: Database, config: Config, server: WebServer, staff: Browser) -> None:
    job = make_job(database, config)
    with database.session() as s:
        # "1 Elm St" is a substring of "11 Elm St": the page must not mix them up.
        neighbour = Home(address="11 Elm St", community="Oaks")
        s.add(neighbour)
        s.flush()
        sr = ServiceRequest(status="open", requester_email="nina@example.com",
                            requester_name="Nina", home=neighbour, subject="NEIGHBOUR-REQUEST")
        s.add(sr)
        s.flush()
        s.add(WorkOrder(service_request_id=sr.id, trade="roofing", description="NEIGHBOUR-ROOF",
                        title="NEIGHBOUR-ROOF"))
        home_id = s.scalars(select(Home).where(Home.address == "1 Elm St")).one().id
        neighbour_id = neighbour.id
    listing = (await staff.get("/staff/properties")).text
    assert f'href="/staff/properties/{home_id}">1 Elm St' in listing
    assert f'href="/staff/properties/{neighbour_id}">11 Elm St' in listing
    found = (await staff.get("/staff/properties?q=11+elm")).text
    assert "11 Elm St" in found and ">1 Elm St<" not in found
    page = (await staff.get(f"/staff/properties/{home_id}")).text
    assert "Dana Whitfield" in page and "Leak and nail pop" in page
    assert f"WO-{job.wo_id}" in page and f"WO-{job.other_wo_id}" in page
    assert "NEIGHBOUR" not in page
    assert (await staff.get("/staff/properties/999999")).status == 404


async def test_vendor_pages_list_their_work_orders(database: Database, config: Config,
                                                   server: WebServer, staff: Browser) -> None:
    job = make_job(database, config)
    send_to(database, config, job.wo_id, ACE)
    with database.session() as s:
        ace = s.scalars(select(Vendor).where(Vendor.email == ACE)).one().id
    listing = (await staff.get("/staff/vendors")).text
    assert f'href="/staff/vendors/{ace}">Ace Plumbing' in listing
    assert "Bob&#39;s Drywall" in listing
    page = (await staff.get(f"/staff/vendors/{ace}")).text
    assert f"WO-{job.wo_id}" in page and "Leak under kitchen sink" in page
    assert f"WO-{job.other_wo_id}" not in page
    assert (await staff.get("/staff/vendors/999999")).status == 404


async def test_service_request_page(database: Database, config: Config, server: WebServer,
                                    staff: Browser) -> None:
    job = make_job(database, config)
    page = (await staff.get(f"/staff/sr/{job.sr_id}")).text
    for expected in (f"SR-{job.sr_id}", "Leak and nail pop", "Dana Whitfield",
                     f'href="/staff/wo/{job.wo_id}"', f'href="/staff/wo/{job.other_wo_id}"',
                     "Call me at 303-555-0142", "sink.png", "INTERNAL-SECRET"):
        assert expected in page, expected
    missing = await staff.get("/staff/sr/999999")
    assert missing.status == 404 and "does not exist" in missing.text
    assert "writes in" not in page
    with database.session() as s:
        sr = s.get(ServiceRequest, job.sr_id)
        assert sr is not None
        sr.language = "es"
    page = (await staff.get(f"/staff/sr/{job.sr_id}")).text
    assert "writes in Spanish" in page, "staff know which language to answer in"


async def test_work_order_page_has_the_full_history_and_every_mail(
        database: Database, config: Config, server: WebServer, staff: Browser) -> None:
    job = make_job(database, config)
    send_to(database, config, job.wo_id, ACE)
    with database.session() as s:
        reply, _ = store_inbound(
            s, mailbox="m/INBOX", uidvalidity=1, uid=1000,
            raw=(b"From: Ace <ace@plumb.example.net>\nSubject: Re: [WO-1] Leak\n\n"
                 b"VENDOR-REPLY-TEXT: Tuesday at 9 works.\n"))
        reply.from_addr = ACE
        reply.classification = "vendor_reply"
        s.add(HistoryEvent(work_order_id=job.wo_id, service_request_id=job.sr_id,
                           event="vendor_reply", actor=ACE, detail="Tuesday at 9",
                           inbound_message_id=reply.id))
        s.add(HistoryEvent(work_order_id=job.wo_id, service_request_id=job.sr_id,
                           event="staff_commands_applied", actor=STAFF,
                           detail="assign 1 to Ace Plumbing"))
    page = (await staff.get(f"/staff/wo/{job.wo_id}")).text
    for expected in (f"WO-{job.wo_id}", "Leak under kitchen sink", "Ace Plumbing",
                     "INTERNAL-SECRET gate code 4471", "internal</span>",
                     "Dog in the back yard", "staff commands applied", STAFF,
                     "assign 1 to Ace Plumbing", "VENDOR-REPLY-TEXT", "from dana@example.com",
                     "COVERAGE-SECRET", f'href="/staff/sr/{job.sr_id}"'):
        assert expected in page, expected
    assert page.count('<details class="mail">') >= 3  # the request, the vendor notice, the reply
    assert re.search(r"Out</span>\s*<span class=\"when\">[^<]*</span> ·\s*to " + re.escape(ACE),
                     page)
    with database.session() as s:
        photo = s.get(WorkOrder, job.wo_id).photos[0]  # type: ignore[union-attr]
    assert f'src="/staff/attachments/{photo}"' in page
    image = await staff.get(f"/staff/attachments/{photo}")
    assert image.status == 200 and image.headers["Content-Type"] == "image/png"
    assert "sandbox" in image.headers["Content-Security-Policy"]
    assert (await staff.get("/staff/wo/999999")).status == 404


async def test_the_reprocess_button_puts_quarantined_mail_back_in_line(
        database: Database, server: WebServer, staff: Browser) -> None:
    row_id = quarantined_row(database)
    page = await staff.get("/staff/quarantine")
    assert "Cannot parse me" in page.text and "BROKEN-BECAUSE" in page.text
    assert "broken@example.com" in page.text
    done = await staff.post(f"/staff/quarantine/{row_id}/reprocess", {"csrf": csrf_of(page.text)})
    assert done.status == 303
    assert done.headers["Location"] == f"/staff/quarantine?requeued={row_id}"
    with database.session() as s:
        row = s.get(InboundMessage, row_id)
        assert row is not None and row.status == "new" and row.attempts == 0
        event = s.scalars(select(HistoryEvent).where(
            HistoryEvent.inbound_message_id == row_id)).one()
        assert event.actor == STAFF and event.event == "inbound_reprocessed"
    after = await staff.get(done.headers["Location"])
    assert f"Message {row_id} is back in line" in after.text
    assert "Nothing is quarantined" in after.text
    with database.session() as s:
        s.get(InboundMessage, row_id).status = "done"  # type: ignore[union-attr]
    again = await staff.post(f"/staff/quarantine/{row_id}/reprocess",
                             {"csrf": csrf_of(after.text)})
    assert again.status == 409 and "processed already" in again.text



# --- divisions: each staff member sees only the work of their own divisions ----------------

MAX = "max@acme-homes.example"
"""A manager: staff of both divisions."""


@dataclass
class Divided:
    config: Config
    job: Any
    north_sr: int
    north_wo: int
    north_home: int
    north_vendor: int
    main_vendor: int
    north_attachment: int
    north_quarantined: int


def divided(tmp_path: Path, database: Database) -> Divided:
    """Dana's job in the main division; Ola's furnace in the north one, whose vendor is the
    same company (same address) as the main division's Ace Plumbing: two vendor rows."""
    job = make_job(database, make_config(tmp_path, database))
    config = build_config(
        tmp_path, database, staff={"addresses": [STAFF, MAX]},
        web={"listen": "127.0.0.1:0", "base_url": "https://warranty.acme-homes.example"},
        vendors=[{"name": "Ace Plumbing", "email": ACE, "trades": ["plumbing"]}],
        homes=[ELM_STREET],
        divisions=[{"name": "north", "from_name": "Acme North Warranty",
                    "mailbox": {"address": NORTH, "imap_user": "north"},
                    "staff": {"addresses": [NORA, MAX]},
                    "vendors": [{"name": "Ace Plumbing North", "email": ACE,
                                 "trades": ["plumbing"]}],
                    "homes": [{"address": "9 Pine Ct", "community": "Pines",
                               "homeowners": [{"name": "Ola", "email": "ola@example.com"}]}]}])
    with database.session() as s:
        home = s.scalars(select(Home).where(Home.division == "north")).one()
        vendor = s.scalars(select(Vendor).where(Vendor.division == "north")).one()
        main_vendor = s.scalars(select(Vendor).where(Vendor.division == "main",
                                                     Vendor.email == ACE)).one()
        inbound, _ = store_inbound(s, mailbox=f"{NORTH}/INBOX", uidvalidity=1, uid=7,
                                   raw=b"From: ola@example.com\n\nNORTH-SECRET: no heat\n")
        sr = ServiceRequest(division="north", status="open", requester_email="ola@example.com",
                            requester_name="Ola", home=home, subject="NORTH-SECRET furnace",
                            body="NORTH-SECRET: no heat", inbound_message_id=inbound.id)
        s.add(sr)
        s.flush()
        photo = Attachment(inbound_message_id=inbound.id, service_request_id=sr.id,
                           filename="furnace.png", content_type="image/png", size=3,
                           sha256=BlobStore(config.storage.data_dir).put(b"png"))
        s.add(photo)
        s.flush()
        wo = WorkOrder(service_request_id=sr.id, status="draft", trade="hvac",
                       title="NORTH-SECRET furnace out", description="Furnace does not start.",
                       suggested_vendor_id=vendor.id, photos=[photo.id])
        s.add(wo)
        stuck, _ = store_inbound(s, mailbox=f"{NORTH}/INBOX", uidvalidity=1, uid=8,
                                 raw=b"From: q@example.com\nSubject: NORTH-QUARANTINE\n\nx\n")
        stuck.status = "quarantined"
        s.flush()
        ids = (sr.id, wo.id, home.id, vendor.id, main_vendor.id, photo.id, stuck.id)
    quarantined_row(database)
    return Divided(config, job, *ids)


@pytest.fixture
async def two_divisions(tmp_path: Path, database: Database, clock: Clock
                        ) -> AsyncIterator[tuple[Divided, WebServer]]:
    world = divided(tmp_path, database)
    async with serving(world.config, database, clock=clock) as web:
        yield world, web


async def signed_in(web: WebServer, database: Database, address: str) -> Browser:
    browser = Browser(web.url)
    assert (await sign_in(browser, database, address)).status == 303
    return browser


def without_numbers(page: str) -> str:
    """A page with its per-request parts (nonce, CSRF token) and the numbers taken out."""
    page = re.sub(r'(nonce|value)="[^"]+"', "", page)
    return re.sub(r"\d+", "N", page)


async def test_staff_of_one_division_see_nothing_of_another(
        database: Database, two_divisions: tuple[Divided, WebServer]) -> None:
    world, web = two_divisions
    pat = await signed_in(web, database, STAFF)  # main only

    overview = await pat.get("/staff/")
    assert overview.status == 200
    assert f'href="/staff/sr/{world.job.sr_id}"' in overview.text
    assert "NORTH" not in overview.text
    assert f'href="/staff/sr/{world.north_sr}"' not in overview.text
    assert "<th>Division</th>" not in overview.text and "By division" not in overview.text
    assert re.search(r"<b>2</b><span class=\"badge s-draft\">draft", overview.text)  # not 3
    assert re.search(r"<b>1</b><a href=\"/staff/quarantine\">quarantined", overview.text)

    # Another division's pages are "not found", exactly like pages that do not exist.
    for path, missing in ((f"/staff/sr/{world.north_sr}", "/staff/sr/999999"),
                          (f"/staff/wo/{world.north_wo}", "/staff/wo/999999"),
                          (f"/staff/properties/{world.north_home}", "/staff/properties/999999"),
                          (f"/staff/vendors/{world.north_vendor}", "/staff/vendors/999999"),
                          (f"/staff/attachments/{world.north_attachment}",
                           "/staff/attachments/999999")):
        hidden, absent = await pat.get(path), await pat.get(missing)
        assert hidden.status == absent.status == 404, path
        assert without_numbers(hidden.text) == without_numbers(absent.text), path
        assert "NORTH" not in hidden.text and "furnace" not in hidden.text.lower()

    vendors = (await pat.get("/staff/vendors")).text
    assert f'href="/staff/vendors/{world.main_vendor}">Ace Plumbing<' in vendors
    assert "Ace Plumbing North" not in vendors
    # The main division's Ace page lists none of the north work of the same company.
    ace = (await pat.get(f"/staff/vendors/{world.main_vendor}")).text
    assert f"WO-{world.north_wo}" not in ace and "NORTH" not in ace
    assert "9 Pine Ct" not in (await pat.get("/staff/properties")).text
    assert "9 Pine Ct" not in (await pat.get("/staff/properties?q=pine")).text

    quarantine = await pat.get("/staff/quarantine")
    assert "Cannot parse me" in quarantine.text and "NORTH-QUARANTINE" not in quarantine.text
    refused = await pat.post(f"/staff/quarantine/{world.north_quarantined}/reprocess",
                             {"csrf": csrf_of(quarantine.text)})
    assert refused.status == 409 and "no inbound message" in refused.text
    assert inbound_status(database, world.north_quarantined) == "quarantined"


async def test_staff_of_the_other_division_see_only_theirs(
        database: Database, two_divisions: tuple[Divided, WebServer]) -> None:
    world, web = two_divisions
    nora = await signed_in(web, database, NORA)
    with database.session() as s:
        mail = s.scalars(select(OutboundMessage).where(OutboundMessage.kind == "login",
                                                       OutboundMessage.to_addr == NORA)).one()
        assert mail.from_addr == NORTH
        assert email.message_from_bytes(mail.raw)["From"].startswith("Acme North Warranty")

    overview = (await nora.get("/staff/")).text
    assert f'href="/staff/sr/{world.north_sr}"' in overview and "NORTH-SECRET" in overview
    assert "Leak and nail pop" not in overview and f"WO-{world.job.wo_id}<" not in overview
    page = await nora.get(f"/staff/sr/{world.north_sr}")
    assert page.status == 200 and "NORTH-SECRET: no heat" in page.text
    assert (await nora.get(f"/staff/wo/{world.north_wo}")).status == 200
    assert (await nora.get(f"/staff/attachments/{world.north_attachment}")).status == 200
    for path in (f"/staff/sr/{world.job.sr_id}", f"/staff/wo/{world.job.wo_id}",
                 f"/staff/vendors/{world.main_vendor}"):
        hidden = await nora.get(path)
        assert hidden.status == 404 and "Dana" not in hidden.text, path
    vendors = (await nora.get("/staff/vendors")).text
    assert "Ace Plumbing North" in vendors and "Bob" not in vendors
    quarantine = (await nora.get("/staff/quarantine")).text
    assert "NORTH-QUARANTINE" in quarantine and "Cannot parse me" not in quarantine
    # A filter naming a division that is not hers shows her own, nothing more.
    assert "Leak and nail pop" not in (await nora.get("/staff/?division=main")).text


async def test_a_manager_sees_every_division_with_a_column_and_a_filter(
        database: Database, two_divisions: tuple[Divided, WebServer]) -> None:
    world, web = two_divisions
    manager = await signed_in(web, database, MAX)
    overview = (await manager.get("/staff/")).text
    assert f'href="/staff/sr/{world.north_sr}"' in overview
    assert f'href="/staff/sr/{world.job.sr_id}"' in overview
    assert "<th>Division</th>" in overview and "By division" in overview
    assert re.search(r"<b>3</b><span class=\"badge s-draft\">draft", overview)
    assert re.search(r"<b>2</b><a href=\"/staff/quarantine\">quarantined", overview)
    assert 'href="/staff/?division=north"' in overview
    north = (await manager.get("/staff/?division=north")).text
    assert f'href="/staff/sr/{world.north_sr}"' in north
    assert f'href="/staff/sr/{world.job.sr_id}"' not in north
    assert re.search(r"<b>1</b><span class=\"badge s-draft\">draft", north)
    vendors = (await manager.get("/staff/vendors")).text
    assert "Ace Plumbing North" in vendors and ">Ace Plumbing<" in vendors
    only_main = (await manager.get("/staff/vendors?division=main")).text
    assert "Ace Plumbing North" not in only_main and ">Ace Plumbing<" in only_main
    for path in (f"/staff/sr/{world.north_sr}", f"/staff/sr/{world.job.sr_id}",
                 f"/staff/wo/{world.north_wo}", f"/staff/vendors/{world.north_vendor}"):
        page = await manager.get(path)
        assert page.status == 200 and "<dt>Division</dt>" in page.text, path
