"""The staff dashboard: read the whole picture in a browser, signed in by an emailed link.

Staff already prove who they are by email, so the dashboard does the same and keeps no
passwords: the sign-in form mails a one-time link to a configured staff address (and says
the same thing whatever address was typed, so it cannot be used to find out who is staff).
The link works once, for :data:`LOGIN_MINUTES`; opening it shows one "Sign in" button, so a
mail scanner that fetches every link cannot use it up.  Signing in gives a fresh session
cookie (HttpOnly, SameSite=Lax, Secure whenever the dashboard is served over https); only
SHA-256 hashes of link tokens and session ids are stored, so a copy of the database signs
nobody in.

Pages are rendered on the server from the same queries and JSON-shaped data as the CLI's
``wo``/``sr`` commands (:mod:`warrantyd.daemon.reports`); they need no JavaScript and fit a
phone.  Every POST carries a CSRF token bound to the session (or, before sign-in, to a form
cookie), and is refused when a browser says it comes from another site.  Internal notes are
shown, marked as such: this is the staff's view.

Database work runs in a worker thread so a slow query never stalls mail processing.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from aiohttp import web
from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.orm import Session

from warrantyd.daemon.config import Config
from warrantyd.daemon.homeowner_words import language_name
from warrantyd.daemon.outbox import queue_mail
from warrantyd.daemon.render import render, render_mail
from warrantyd.daemon.reports import (
    configured_divisions,
    division_counts,
    inbound_in_divisions,
    needs_followup,
    sr_list,
    sr_show,
    status_counts,
    wo_list,
    wo_show,
)
from warrantyd.parsers.message import parse_message
from warrantyd.storage.blob_db import blob_store_for
from warrantyd.storage.blobs import BlobNotFound
from warrantyd.storage.db import Database
from warrantyd.storage.inbound import reprocess
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
    utcnow,
)
from warrantyd.storage.queries import (
    SR_STATUSES,
    WO_STATUSES,
    FollowupThresholds,
    ServiceRequestFilter,
    WorkOrderFilter,
    division_condition,
)

log = logging.getLogger("warrantyd.dashboard")

LOGIN_MINUTES = 15
"""How long a sign-in link works."""
LOGIN_LINKS_PER_WINDOW = 5
"""At most this many links are mailed to one address per :data:`LOGIN_MINUTES`, so the form
cannot be used to flood a staff mailbox."""
SESSION_HOURS = 12
"""A session lasts a working day; then the staff member signs in again."""
STAFF_ROOT = "/staff"
"""Where the staff pages live; sign-in is ``/login``.  Nothing at ``/``: the vendor pages'
server answers 404 to anything it does not know."""
MAIL_TEXT_LIMIT = 20_000
PROPERTY_PAGE_LIMIT = 200
INLINE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})

_CSRF_FIELD = "csrf"
_WHEN = "%a %b %d %Y, %H:%M"


def token_hash(token: str) -> str:
    """What is stored instead of a link token or a session id."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class StaffUser:
    """A signed-in staff member, as the handlers see them.

    ``divisions`` are those the address is staff of, read from the configuration at every
    request: the pages show only their work, and anything else is "not found", the same
    answer as for what does not exist, so nothing is learnt about other divisions.
    """

    email: str
    session_token: str
    divisions: tuple[str, ...] = ()

    def sees(self, config: Config, division: str | None) -> bool:
        """Whether a row of ``division`` is this person's to see (a division no longer
        configured counts as the main one, as everywhere)."""
        return config.division(division).name in self.divisions


@dataclass(frozen=True)
class Notice:
    """A page that tells the reader what happened and what to do next."""

    status: int
    title: str
    message: str
    link: str = "/login"
    link_text: str = "Go to the sign-in page"


LINK_UNKNOWN = Notice(404, "This sign-in link is not valid",
                      "The link is incomplete, was changed, or belongs to an address that is "
                      "no longer on the staff list. Ask for a new link on the sign-in page.")
LINK_USED = Notice(410, "This sign-in link was already used",
                   "Each link signs in once. If that was not you, tell your administrator; "
                   "otherwise ask for a new link on the sign-in page.")
LINK_EXPIRED = Notice(410, "This sign-in link has expired",
                      f"Sign-in links work for {LOGIN_MINUTES} minutes. Ask for a new link on "
                      f"the sign-in page.")
FORM_EXPIRED = Notice(403, "This form has expired",
                      "The page was open too long or came from somewhere else. Open the page "
                      "again and repeat what you did.")


def _csp(nonce: str) -> str:
    return (f"default-src 'none'; img-src 'self'; style-src 'nonce-{nonce}'; base-uri 'none'; "
            f"form-action 'self'; frame-ancestors 'none'")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
StaffHandler = Callable[[web.Request, StaffUser], Awaitable[web.StreamResponse]]


class Dashboard:
    """Sign-in, sessions and the staff pages."""

    def __init__(self, config: Config, db: Database, secret: bytes, *,
                 clock: Callable[[], datetime] = utcnow,
                 on_outbound: Callable[[], None] | None = None) -> None:
        self.config = config
        self.db = db
        self.secret = secret
        self.clock = clock
        self.on_outbound = on_outbound
        self.zone = ZoneInfo(config.company.timezone)
        self.blobs = blob_store_for(config.storage.blobs, config.storage.data_dir, db)
        self.thresholds = FollowupThresholds.from_mapping(config.extra.get("followup") or {})
        self.configured = configured_divisions(config)
        base = urlsplit(config.web.base_url)
        self.secure = base.scheme == "https"
        self.base_origin = f"{base.scheme}://{base.netloc}".lower()
        # __Host- cookies are pinned to this host and path / and must be Secure.
        self.session_cookie = "__Host-warrantyd_session" if self.secure else "warrantyd_session"
        self.form_cookie = "__Host-warrantyd_form" if self.secure else "warrantyd_form"

    # --- routes ---------------------------------------------------------------------------

    def register(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/login", self.login_form)
        r.add_post("/login", self.login_request)
        r.add_get(r"/login/{token:[A-Za-z0-9_\-]{20,100}}", self.login_confirm)
        r.add_post(r"/login/{token:[A-Za-z0-9_\-]{20,100}}", self.login_complete)
        r.add_post("/logout", self._staff(self.logout))
        p = STAFF_ROOT
        r.add_get(p, self._staff(self.overview))
        r.add_get(f"{p}/", self._staff(self.overview))
        r.add_get(f"{p}/properties", self._staff(self.properties))
        r.add_get(rf"{p}/properties/{{id:\d{{1,9}}}}", self._staff(self.property))
        r.add_get(f"{p}/vendors", self._staff(self.vendors))
        r.add_get(rf"{p}/vendors/{{id:\d{{1,9}}}}", self._staff(self.vendor))
        r.add_get(rf"{p}/sr/{{id:\d{{1,9}}}}", self._staff(self.service_request))
        r.add_get(rf"{p}/wo/{{id:\d{{1,9}}}}", self._staff(self.work_order))
        r.add_get(rf"{p}/attachments/{{id:\d{{1,9}}}}", self._staff(self.attachment))
        r.add_get(f"{p}/quarantine", self._staff(self.quarantine))
        r.add_post(rf"{p}/quarantine/{{id:\d{{1,9}}}}/reprocess", self._staff(self.reprocess))

    # --- rendering ------------------------------------------------------------------------

    def _page(self, template: str, status: int = 200, user: StaffUser | None = None,
              **context: Any) -> web.Response:
        nonce = secrets.token_urlsafe(16)
        context.setdefault("several_divisions", bool(user and len(user.divisions) > 1))
        body = render(f"web/{template}", nonce=nonce, company=self.config.company.name,
                      user=user, csrf=self.csrf_for(user) if user else "", when=self.when,
                      **context)
        response = web.Response(text=body, status=status, content_type="text/html",
                                charset="utf-8")
        response.headers["Content-Security-Policy"] = _csp(nonce)
        return response

    def notice(self, notice: Notice, user: StaffUser | None = None) -> web.Response:
        return self._page("dashboard_notice.html", notice.status, user, notice=notice)

    def when(self, value: str | datetime | None) -> str:
        """An ISO 8601 string or aware datetime, in the company's time zone."""
        if not value:
            return ""
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
        if moment.tzinfo is not None:
            moment = moment.astimezone(self.zone)
        return moment.strftime(_WHEN)

    # --- divisions ------------------------------------------------------------------------

    def scope(self, request: web.Request, user: StaffUser) -> tuple[str, ...]:
        """The divisions a list page shows: all of the person's, or the one of them that
        ``?division=NAME`` picks (a manager's filter)."""
        picked = request.query.get("division", "")
        return (picked,) if picked in user.divisions else user.divisions

    def division_filter(self, request: web.Request, user: StaffUser) -> dict[str, Any] | None:
        """The division links above a list, for someone who sees several divisions."""
        if len(user.divisions) < 2:
            return None
        picked = request.query.get("division", "")
        return {"choices": user.divisions, "current": picked if picked in user.divisions
                else ""}

    def wo_filter(self, divisions: tuple[str, ...], **fields: Any) -> WorkOrderFilter:
        return WorkOrderFilter(divisions=divisions, configured_divisions=self.configured,
                               **fields)

    def sr_filter(self, divisions: tuple[str, ...], **fields: Any) -> ServiceRequestFilter:
        return ServiceRequestFilter(divisions=divisions, configured_divisions=self.configured,
                                    **fields)

    # --- CSRF -----------------------------------------------------------------------------

    def _mac(self, purpose: str, value: str) -> str:
        return hmac.new(self.secret, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()

    def csrf_for(self, user: StaffUser) -> str:
        """The form token of a session: derived from it, so nothing more is stored."""
        return self._mac("dashboard-csrf", user.session_token)

    def _same_origin(self, request: web.Request) -> bool:
        """False when the browser says the request comes from another site.

        The CSRF token is the defence; this refuses cross-site posts early for browsers that
        say where a request comes from.  With ``Referrer-Policy: no-referrer`` a browser sends
        ``Origin: null`` even on our own forms, so only a real, foreign origin is refused.
        """
        site = request.headers.get("Sec-Fetch-Site")
        if site is not None:
            return site in ("same-origin", "none")
        origin = request.headers.get("Origin")
        if origin is None or origin == "null":
            return True
        return origin.lower() in {self.base_origin, f"{request.scheme}://{request.host}".lower()}

    async def _form(self, request: web.Request, expected: str) -> dict[str, str] | None:
        """The posted fields when the CSRF token matches, else None."""
        if not self._same_origin(request):
            return None
        data = await request.post()
        given = data.get(_CSRF_FIELD)
        if not isinstance(given, str) or not expected or not hmac.compare_digest(given,
                                                                                  expected):
            return None
        return {k: v for k, v in data.items() if isinstance(v, str)}

    def _expected_anonymous_token(self, request: web.Request) -> str:
        value = request.cookies.get(self.form_cookie, "")
        return self._mac("dashboard-form", value) if len(value) >= 20 else ""

    def _anonymous_page(self, request: web.Request, template: str, status: int = 200,
                        **context: Any) -> web.Response:
        value = request.cookies.get(self.form_cookie, "")
        if len(value) < 20:
            value = secrets.token_urlsafe(24)
        response = self._page(template, status, form_token=self._mac("dashboard-form", value),
                              **context)
        response.set_cookie(self.form_cookie, value, httponly=True, secure=self.secure,
                            samesite="Strict", path="/")
        return response

    # --- sessions -------------------------------------------------------------------------

    def _staff(self, handler: StaffHandler) -> Handler:
        """``handler`` for signed-in staff only; everyone else is sent to the sign-in page."""
        async def wrapped(request: web.Request) -> web.StreamResponse:
            token = request.cookies.get(self.session_cookie, "")
            user = await asyncio.to_thread(self._session_user, token) if token else None
            if user is None:
                if request.method == "POST":
                    return self.notice(Notice(401, "Please sign in again",
                                              "Your session has ended, so nothing was done."))
                raise web.HTTPSeeOther("/login")
            return await handler(request, user)
        return wrapped

    def _session_user(self, token: str) -> StaffUser | None:
        with self.db.session() as session:
            row = session.scalars(select(StaffSession).where(
                StaffSession.session_hash == token_hash(token))).first()
            if (row is None or row.revoked_at is not None or row.expires_at <= self.clock()
                    or not self.config.is_staff(row.email)):
                return None
            return StaffUser(row.email, token, self.config.staff_divisions(row.email))

    # --- sign-in --------------------------------------------------------------------------

    async def login_form(self, request: web.Request) -> web.StreamResponse:
        return self._anonymous_page(request, "dashboard_login.html")

    async def login_request(self, request: web.Request) -> web.StreamResponse:
        fields = await self._form(request, self._expected_anonymous_token(request))
        if fields is None:
            return self.notice(FORM_EXPIRED)
        address = " ".join(fields.get("email", "").split()).lower()[:320]
        if not address or "@" not in address:
            return self._anonymous_page(request, "dashboard_login.html", 400,
                                        error="Enter the email address you get digests at.")
        queued = await asyncio.to_thread(self._mail_login_link, address)
        if queued and self.on_outbound is not None:
            self.on_outbound()
        # The same answer whether or not the address is staff: nothing to enumerate.
        return self._page("dashboard_login_sent.html", address=address, minutes=LOGIN_MINUTES)

    def _mail_login_link(self, address: str) -> bool:
        if not self.config.is_staff(address):
            log.info("sign-in link asked for %s, which is not a staff address; none sent",
                     address)
            return False
        now = self.clock()
        with self.db.session() as session:
            session.execute(delete(StaffLogin).where(
                StaffLogin.expires_at < now - timedelta(days=1)))
            session.execute(delete(StaffSession).where(
                StaffSession.expires_at < now - timedelta(days=1)))
            recent = session.scalar(select(func.count()).select_from(StaffLogin).where(
                StaffLogin.email == address,
                StaffLogin.created_at > now - timedelta(minutes=LOGIN_MINUTES))) or 0
            if recent >= LOGIN_LINKS_PER_WINDOW:
                log.warning("sign-in link for %s not sent: %d already sent in the last %d "
                            "minutes", address, recent, LOGIN_MINUTES)
                return False
            token = secrets.token_urlsafe(32)
            row = StaffLogin(token_hash=token_hash(token), email=address, created_at=now,
                             expires_at=now + timedelta(minutes=LOGIN_MINUTES))
            session.add(row)
            session.flush()
            link = f"{self.config.web.base_url.rstrip('/')}/login/{token}"
            context = {"company": self.config.company.name, "link": link,
                       "minutes": LOGIN_MINUTES,
                       "expires": self.when(row.expires_at)}
            text, html = render_mail("staff_login", **context)
            # From the mailbox of the first division the address is staff of: the one its
            # digests come from (the main one when it is staff there).
            division = self.config.division(self.config.staff_divisions(address)[0])
            queue_mail(session, our_address=division.mailbox.address,
                       from_name=division.from_name or self.config.company.name,
                       kind="login", to=address,
                       subject=f"Sign in to the {self.config.company.name} warranty dashboard",
                       text=text, html=html, dedupe_key=f"login:{row.token_hash[:32]}",
                       now=now)
        log.info("sign-in link mailed to %s", address)
        return True

    def _login_state(self, token: str) -> StaffLogin | Notice:
        with self.db.session() as session:
            row = session.scalars(select(StaffLogin).where(
                StaffLogin.token_hash == token_hash(token))).first()
            if row is None or not self.config.is_staff(row.email):
                return LINK_UNKNOWN
            if row.used_at is not None:
                return LINK_USED
            if row.expires_at <= self.clock():
                return LINK_EXPIRED
            session.expunge(row)
            return row

    async def login_confirm(self, request: web.Request) -> web.StreamResponse:
        """The page behind the mailed link: one button, so link scanners sign nobody in."""
        state = await asyncio.to_thread(self._login_state, request.match_info["token"])
        if isinstance(state, Notice):
            return self.notice(state)
        return self._anonymous_page(request, "dashboard_login_confirm.html", email=state.email,
                                    action=request.path)

    async def login_complete(self, request: web.Request) -> web.StreamResponse:
        fields = await self._form(request, self._expected_anonymous_token(request))
        if fields is None:
            return self.notice(FORM_EXPIRED)
        old = request.cookies.get(self.session_cookie, "")
        result = await asyncio.to_thread(self._use_link, request.match_info["token"], old)
        if isinstance(result, Notice):
            return self.notice(result)
        response = web.Response(status=303, headers={"Location": f"{STAFF_ROOT}/"})
        response.set_cookie(self.session_cookie, result, httponly=True, secure=self.secure,
                            samesite="Lax", path="/", max_age=SESSION_HOURS * 3600)
        return response

    def _use_link(self, token: str, old_session: str) -> str | Notice:
        """Spend the link (once, even with two clicks at the same moment); a new session id."""
        now = self.clock()
        digest = token_hash(token)
        with self.db.session() as session:
            spent = session.execute(
                update(StaffLogin)
                .where(StaffLogin.token_hash == digest, StaffLogin.used_at.is_(None),
                       StaffLogin.expires_at > now)
                .values(used_at=now).execution_options(synchronize_session=False))
            row = session.scalars(select(StaffLogin).where(
                StaffLogin.token_hash == digest)).first()
            if row is None or not self.config.is_staff(row.email):
                return LINK_UNKNOWN
            if int(getattr(spent, "rowcount", 0) or 0) != 1:
                return LINK_USED if row.used_at is not None else LINK_EXPIRED
            if old_session:  # never keep a session id from before sign-in
                session.execute(update(StaffSession).where(
                    StaffSession.session_hash == token_hash(old_session),
                    StaffSession.revoked_at.is_(None)).values(revoked_at=now))
            fresh = secrets.token_urlsafe(32)
            session.add(StaffSession(session_hash=token_hash(fresh), email=row.email,
                                     created_at=now,
                                     expires_at=now + timedelta(hours=SESSION_HOURS)))
            log.info("%s signed in to the dashboard", row.email)
            return fresh

    async def logout(self, request: web.Request, user: StaffUser) -> web.StreamResponse:
        if await self._form(request, self.csrf_for(user)) is None:
            return self.notice(FORM_EXPIRED, user)
        await asyncio.to_thread(self._revoke, user.session_token)
        response = self.notice(Notice(200, "Signed out", "You are signed out of the dashboard.",
                                      "/login", "Sign in again"))
        response.del_cookie(self.session_cookie, path="/", secure=self.secure, httponly=True,
                            samesite="Lax")
        return response

    def _revoke(self, token: str) -> None:
        with self.db.session() as session:
            session.execute(update(StaffSession).where(
                StaffSession.session_hash == token_hash(token)).values(revoked_at=self.clock()))

    # --- pages ----------------------------------------------------------------------------

    async def _read(self, user: StaffUser, build: Callable[[Session], dict[str, Any] | Notice],
                    template: str) -> web.StreamResponse:
        def run() -> dict[str, Any] | Notice:
            with self.db.session() as session:
                return build(session)
        result = await asyncio.to_thread(run)
        if isinstance(result, Notice):
            return self.notice(result, user)
        return self._page(template, 200, user, **result)

    async def overview(self, request: web.Request, user: StaffUser) -> web.StreamResponse:
        scope = self.scope(request, user)

        def build(session: Session) -> dict[str, Any]:
            wo_by = status_counts(session, WorkOrder, WO_STATUSES, self.config, scope)
            sr_by = status_counts(session, ServiceRequest, SR_STATUSES, self.config, scope)
            return {
                "wo_counts": division_counts(wo_by, WO_STATUSES),
                "sr_counts": division_counts(sr_by, SR_STATUSES),
                "by_division": [{"name": name, "work_orders": wo_by[name],
                                 "requests": sr_by[name]} for name in scope
                                ] if len(scope) > 1 else [],
                "quarantined": session.scalar(
                    select(func.count()).select_from(InboundMessage).where(
                        InboundMessage.status == "quarantined",
                        inbound_in_divisions(self.config, scope))) or 0,
                "followups": needs_followup(session, self.wo_filter(scope, limit=100),
                                            now=self.clock(), thresholds=self.thresholds,
                                            tz=self.zone),
                "recent": sr_list(session, self.sr_filter(scope, limit=15)),
                "division_filter": self.division_filter(request, user),
            }
        return await self._read(user, build, "dashboard_overview.html")

    async def properties(self, request: web.Request, user: StaffUser) -> web.StreamResponse:
        term = " ".join(request.query.get("q", "").split())[:200]

        scope = self.scope(request, user)

        def build(session: Session) -> dict[str, Any]:
            rows = property_summaries(session, term, limit=PROPERTY_PAGE_LIMIT + 1,
                                      divisions=scope, configured=self.configured)
            return {"rows": rows[:PROPERTY_PAGE_LIMIT], "q": term,
                    "more": len(rows) > PROPERTY_PAGE_LIMIT,
                    "division_filter": self.division_filter(request, user)}
        return await self._read(user, build, "dashboard_properties.html")

    async def property(self, request: web.Request, user: StaffUser) -> web.StreamResponse:
        home_id = int(request.match_info["id"])

        def build(session: Session) -> dict[str, Any] | Notice:
            home = session.get(Home, home_id)
            if home is None or not user.sees(self.config, home.division):
                return _not_found("property", f"{STAFF_ROOT}/properties", "the property list")
            exact = _same_property(home.address)
            srs = [r for r in sr_list(session, self.sr_filter(
                user.divisions, property=home.address, limit=None)) if exact(r)]
            wos = [r for r in wo_list(session, self.wo_filter(
                user.divisions, property=home.address, limit=None)) if exact(r)]
            owners = [{"name": o.name, "email": o.email} for o in home.homeowners]
            return {"home": {"address": home.address, "community": home.community,
                             "closing_date": home.closing_date,
                             "division": self.config.division(home.division).name},
                    "owners": owners,
                    "requests": srs, "work_orders": wos}
        return await self._read(user, build, "dashboard_property.html")

    async def vendors(self, request: web.Request, user: StaffUser) -> web.StreamResponse:
        scope = self.scope(request, user)

        def build(session: Session) -> dict[str, Any]:
            return {"rows": vendor_summaries(session, divisions=scope,
                                             configured=self.configured),
                    "division_filter": self.division_filter(request, user)}
        return await self._read(user, build, "dashboard_vendors.html")

    async def vendor(self, request: web.Request, user: StaffUser) -> web.StreamResponse:
        vendor_id = int(request.match_info["id"])

        def build(session: Session) -> dict[str, Any] | Notice:
            vendor = session.get(Vendor, vendor_id)
            if vendor is None or not user.sees(self.config, vendor.division):
                return _not_found("vendor", f"{STAFF_ROOT}/vendors", "the vendor list")
            mine = vendor.email.lower()
            # The same company serving another division is another vendor row with the
            # same address: only this division's work is this vendor's.
            division = self.config.division(vendor.division).name
            rows = wo_list(session, self.wo_filter((division,), vendor=vendor.email,
                                                   limit=None))
            assigned = [r for r in rows if r["vendor"] and r["vendor"]["email"].lower() == mine]
            suggested = [r for r in rows if not r["vendor"] and r["suggested_vendor"]
                         and r["suggested_vendor"]["email"].lower() == mine]
            return {"vendor": {"name": vendor.name, "email": vendor.email, "division": division,
                               "trades": list(vendor.trades or ()),
                               "communities": list(vendor.communities or ()),
                               "active": vendor.active, "bounced_at": vendor.bounced_at},
                    "work_orders": assigned, "suggested": suggested}
        return await self._read(user, build, "dashboard_vendor.html")

    async def service_request(self, request: web.Request, user: StaffUser
                              ) -> web.StreamResponse:
        sr_id = int(request.match_info["id"])

        def build(session: Session) -> dict[str, Any] | Notice:
            sr = session.get(ServiceRequest, sr_id)
            if sr is None or not user.sees(self.config, sr.division):
                return _no_such_record("SR", sr_id)
            data = sr_show(session, sr_id)
            wo_ids = [wo.id for wo in sr.work_orders]
            return {"sr": data, "home_id": sr.home_id, "language": language_name(sr.language),
                    "mails": self._mails(session, sr_id=sr_id, wo_ids=wo_ids,
                                         first_inbound=sr.inbound_message_id)}
        return await self._read(user, build, "dashboard_sr.html")

    async def work_order(self, request: web.Request, user: StaffUser) -> web.StreamResponse:
        wo_id = int(request.match_info["id"])

        def build(session: Session) -> dict[str, Any] | Notice:
            wo = session.get(WorkOrder, wo_id)
            if wo is None or not user.sees(self.config, wo.service_request.division):
                return _no_such_record("WO", wo_id)
            data = wo_show(session, wo_id)
            sr = wo.service_request
            return {"wo": data, "home_id": sr.home_id,
                    "vendor_id": wo.vendor_id or wo.suggested_vendor_id,
                    "mails": self._mails(session, wo_ids=[wo_id],
                                         first_inbound=sr.inbound_message_id)}
        return await self._read(user, build, "dashboard_wo.html")

    def _mails(self, session: Session, *, wo_ids: list[int], sr_id: int | None = None,
               first_inbound: int | None = None) -> list[dict[str, Any]]:
        """Every mail in and out of a request or work order, oldest first, with its text."""
        out_where = [OutboundMessage.work_order_id.in_(wo_ids)] if wo_ids else []
        event_where = [HistoryEvent.work_order_id.in_(wo_ids)] if wo_ids else []
        if sr_id is not None:
            out_where.append(OutboundMessage.service_request_id == sr_id)
            event_where.append(HistoryEvent.service_request_id == sr_id)
        inbound_ids: set[int] = {first_inbound} if first_inbound else set()
        if event_where:
            inbound_ids.update(i for i in session.scalars(
                select(HistoryEvent.inbound_message_id).where(
                    or_(*event_where), HistoryEvent.inbound_message_id.is_not(None))) if i)
        mails: list[dict[str, Any]] = []
        if inbound_ids:
            for row in session.scalars(select(InboundMessage).where(
                    InboundMessage.id.in_(sorted(inbound_ids)))):
                mails.append(_inbound_item(row))
        if out_where:
            for out in session.scalars(select(OutboundMessage).where(or_(*out_where))):
                mails.append(_outbound_item(out))
        mails.sort(key=lambda m: (m["at"], m["direction"], m["id"]))
        return mails

    async def attachment(self, request: web.Request, user: StaffUser) -> web.StreamResponse:
        att_id = int(request.match_info["id"])

        def load() -> tuple[Attachment, bytes] | Notice:
            with self.db.session() as session:
                att = session.get(Attachment, att_id)
                if att is None or not user.sees(self.config, self._division_of(session, att)):
                    return _not_found("attachment", f"{STAFF_ROOT}/", "the overview")
                session.expunge(att)
            try:
                return att, self.blobs.get(att.sha256)
            except (BlobNotFound, ValueError):
                return Notice(404, "Attachment missing", "The file is not in the blob store "
                              "([storage] data_dir); it may have been moved.", f"{STAFF_ROOT}/",
                              "Back to overview")
        result = await asyncio.to_thread(load)
        if isinstance(result, Notice):
            return self.notice(result, user)
        att, content = result
        safe = "".join(c if c.isalnum() or c in "._- " else "_" for c in att.filename).strip()
        name = safe or f"attachment-{att.id}"
        inline = att.content_type in INLINE_TYPES
        response = web.Response(body=content, content_type=att.content_type if inline
                                else "application/octet-stream")
        response.headers["Content-Disposition"] = (f'{"inline" if inline else "attachment"}; '
                                                   f'filename="{name}"')
        response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
        return response

    def _division_of(self, session: Session, att: Attachment) -> str:
        """An attachment's division: its request's, or that of the mailbox it came to."""
        if att.service_request_id is not None:
            sr = session.get(ServiceRequest, att.service_request_id)
            if sr is not None:
                return sr.division
        inbound = session.get(InboundMessage, att.inbound_message_id)
        return self.config.division_of_inbound(inbound.mailbox if inbound else None).name

    async def quarantine(self, request: web.Request, user: StaffUser) -> web.StreamResponse:
        done = request.query.get("requeued", "")

        def build(session: Session) -> dict[str, Any]:
            rows = session.scalars(select(InboundMessage).where(
                InboundMessage.status == "quarantined",
                inbound_in_divisions(self.config, user.divisions)).order_by(
                InboundMessage.received_at.desc(), InboundMessage.id.desc()).limit(200))
            return {"rows": [{"id": r.id, "received_at": r.received_at,
                              "division": self.config.division_of_inbound(r.mailbox).name,
                              "from_addr": r.from_addr or _header(r.raw, "From"),
                              "subject": r.subject or _header(r.raw, "Subject"),
                              "attempts": r.attempts, "last_error": r.last_error or ""}
                             for r in rows],
                    "requeued": int(done) if done.isdigit() else None}
        return await self._read(user, build, "dashboard_quarantine.html")

    async def reprocess(self, request: web.Request, user: StaffUser) -> web.StreamResponse:
        if await self._form(request, self.csrf_for(user)) is None:
            return self.notice(FORM_EXPIRED, user)
        inbound_id = int(request.match_info["id"])

        def run() -> Notice | None:
            try:
                with self.db.session() as session:
                    mail = session.get(InboundMessage, inbound_id)
                    if mail is not None and not user.sees(
                            self.config, self.config.division_of_inbound(mail.mailbox).name):
                        # As for a number that does not exist: nothing about other divisions.
                        raise LookupError(f"no inbound message {inbound_id}; `warrantyd inbox "
                                          f"list` shows them")
                    row = reprocess(session, inbound_id)
                    session.add(HistoryEvent(
                        at=self.clock(), event="inbound_reprocessed", actor=user.email,
                        inbound_message_id=row.id,
                        detail=f"inbound message {row.id} put back in line from the "
                               f"dashboard"))
            except (LookupError, ValueError) as exc:
                return Notice(409, "Nothing was done", str(exc), f"{STAFF_ROOT}/quarantine",
                              "Back to the quarantine")
            log.info("%s put inbound message %d back in line", user.email, inbound_id)
            return None
        problem = await asyncio.to_thread(run)
        if problem is not None:
            return self.notice(problem, user)
        raise web.HTTPSeeOther(f"{STAFF_ROOT}/quarantine?requeued={inbound_id}")


# --- read-side helpers --------------------------------------------------------------------

def _not_found(what: str, link: str, where: str) -> Notice:
    return Notice(404, f"No such {what}", f"There is no {what} at this address.", link,
                  f"Back to {where}")


def _no_such_record(kind: str, number: int) -> Notice:
    """What a request or work order that does not exist, or is another division's, shows:
    the same words either way (no "newest is" hint: that would count other divisions')."""
    what = {"SR": "service request", "WO": "work order"}[kind]
    return Notice(404, f"No such {what}", f"{kind}-{number} does not exist.", f"{STAFF_ROOT}/",
                  "Back to overview")


def _same_property(address: str) -> Callable[[dict[str, Any]], bool]:
    """The property filter matches substrings ("1 Elm St" is in "11 Elm St"): keep exact."""
    def exact(row: dict[str, Any]) -> bool:
        prop = row.get("property")
        return bool(prop) and prop["address"] == address
    return exact


def property_summaries(session: Session, term: str = "", *, limit: int | None = None,
                       divisions: tuple[str, ...] | None = None,
                       configured: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Homes with their open requests and active work orders, busiest first (only the homes
    of ``divisions`` when given; ``configured`` as for :func:`division_condition`)."""
    homes = select(Home)
    if divisions is not None:
        homes = homes.where(division_condition(Home.division, divisions, configured))
    if term:
        needle = term.lower()
        homes = homes.where(or_(func.lower(Home.address).contains(needle, autoescape=True),
                                func.lower(Home.community).contains(needle, autoescape=True)))
    open_srs = dict(session.execute(
        select(ServiceRequest.home_id, func.count()).where(
            ServiceRequest.home_id.is_not(None), ServiceRequest.status != "resolved")
        .group_by(ServiceRequest.home_id)).all())
    wo_counts: dict[int, dict[str, int]] = {}
    for home_id, status, count in session.execute(
            select(ServiceRequest.home_id, WorkOrder.status, func.count())
            .join(WorkOrder, WorkOrder.service_request_id == ServiceRequest.id)
            .where(ServiceRequest.home_id.is_not(None))
            .group_by(ServiceRequest.home_id, WorkOrder.status)).all():
        wo_counts.setdefault(home_id, {})[status] = int(count)
    rows = []
    for home in session.scalars(homes):
        counts = wo_counts.get(home.id, {})
        rows.append({"id": home.id, "address": home.address, "community": home.community,
                     "division": home.division,
                     "open_requests": int(open_srs.get(home.id, 0)),
                     "drafts": counts.get("draft", 0),
                     "in_progress": counts.get("in_progress", 0),
                     "completed": counts.get("completed", 0)})
    rows.sort(key=lambda r: (-(r["open_requests"] + r["drafts"] + r["in_progress"]),
                             r["community"].lower(), r["address"].lower()))
    return rows[:limit] if limit is not None else rows


def vendor_summaries(session: Session, *, divisions: tuple[str, ...] | None = None,
                     configured: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Vendors with their work orders by status (assigned, or suggested on a draft); only
    the vendors of ``divisions`` when given."""
    counts: dict[int, dict[str, int]] = {}
    assignee = func.coalesce(WorkOrder.vendor_id, WorkOrder.suggested_vendor_id)
    for vendor_id, status, count in session.execute(
            select(assignee, WorkOrder.status, func.count())
            .where(or_(WorkOrder.vendor_id.is_not(None),
                       and_(WorkOrder.status == "draft",
                            WorkOrder.suggested_vendor_id.is_not(None))))
            .group_by(assignee, WorkOrder.status)).all():
        counts.setdefault(int(vendor_id), {})[status] = int(count)
    rows = []
    vendors = select(Vendor).order_by(Vendor.name, Vendor.division)
    if divisions is not None:
        vendors = vendors.where(division_condition(Vendor.division, divisions, configured))
    for vendor in session.scalars(vendors):
        mine = counts.get(vendor.id, {})
        rows.append({"id": vendor.id, "name": vendor.name, "email": vendor.email,
                     "division": vendor.division,
                     "trades": list(vendor.trades or ()), "active": vendor.active,
                     "bounced": vendor.bounced_at is not None,
                     "drafts": mine.get("draft", 0), "in_progress": mine.get("in_progress", 0),
                     "completed": mine.get("completed", 0)})
    return rows


def _header(raw: bytes, name: str) -> str:
    try:
        head = email.message_from_bytes(raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0],
                                        policy=email.policy.default)
        return str(head.get(name, "") or "")
    except Exception:
        return ""


def _clip(text: str) -> str:
    text = text.strip()
    return text if len(text) <= MAIL_TEXT_LIMIT else text[:MAIL_TEXT_LIMIT] + "\n[…]"


def _inbound_item(row: InboundMessage) -> dict[str, Any]:
    try:
        msg = parse_message(row.raw)
        text, sender, subject = msg.text, msg.from_addr or "", msg.subject
        names = [a.filename for a in msg.attachments]
    except Exception as exc:  # a mail we cannot read is still listed
        text, sender, subject, names = f"(could not be read: {exc})", "", "", []
    return {"direction": "in", "id": row.id, "at": row.received_at,
            "who": row.from_addr or sender, "subject": row.subject or subject,
            "status": row.classification or row.status, "kind": "", "text": _clip(text),
            "attachments": names}


def _outbound_item(row: OutboundMessage) -> dict[str, Any]:
    text = ""
    try:
        msg = email.message_from_bytes(row.raw, policy=email.policy.default)
        part = msg.get_body(("plain",))  # type: ignore[attr-defined]
        text = part.get_content() if part is not None else ""
    except Exception as exc:
        text = f"(could not be read: {exc})"
    return {"direction": "out", "id": row.id, "at": row.sent_at or row.created_at,
            "who": row.to_addr, "subject": row.subject,
            "status": row.status + (f" ({row.last_error})" if row.last_error else ""),
            "kind": row.kind, "text": _clip(text), "attachments": []}


def register_dashboard(app: web.Application, config: Config, db: Database, secret: bytes, *,
                       clock: Callable[[], datetime] = utcnow,
                       on_outbound: Callable[[], None] | None = None) -> Dashboard:
    """Add the sign-in pages and the staff pages to ``app``."""
    dashboard = Dashboard(config, db, secret, clock=clock, on_outbound=on_outbound)
    dashboard.register(app)
    return dashboard

