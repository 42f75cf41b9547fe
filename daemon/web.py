"""The vendor's read-only work-order page, served by aiohttp in the daemon's own loop.

There are exactly two kinds of URL, both under a signed link token (:mod:`.links`):
``/v/TOKEN`` (the page) and ``/v/TOKEN/photo/N`` (the N-th photo of that work order).
Everything else is a 404; there is no index, no listing and no id to count up.  A link
works only while the work order is still with the vendor it was sent to, so a job taken
from one vendor and given to another closes the first vendor's page at once.

The page is built from :func:`warrantyd.daemon.vendors.vendor_view`, the same vendor-safe
view the notification mail uses; internal notes, staff-only fields and other jobs are not
in it to leak.  Every response carries headers that keep the page out of frames, caches,
referrers and content sniffing, and a Content-Security-Policy that allows nothing but our
own images and the page's own stylesheet.

Database work runs in a worker thread so a slow query never stalls mail processing.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from warrantyd.daemon.config import Config
from warrantyd.daemon.dashboard import register_dashboard
from warrantyd.daemon.health import StatusProvider, register_health
from warrantyd.daemon.links import LinkExpired, LinkInvalid, read_link_token
from warrantyd.daemon.render import render
from warrantyd.daemon.tokens import installation_secret
from warrantyd.daemon.vendors import format_visit, vendor_replies, vendor_view
from warrantyd.storage.blob_db import blob_store_for
from warrantyd.storage.blobs import BlobNotFound
from warrantyd.storage.db import Database
from warrantyd.storage.models import WorkOrder, utcnow

log = logging.getLogger("warrantyd.web")

INLINE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
"""Served for display; anything else (SVG, PDF, HEIC, ...) is offered as a download only."""

SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "X-Robots-Tag": "noindex, nofollow",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
DEFAULT_CSP = ("default-src 'none'; img-src 'self'; base-uri 'none'; form-action 'none'; "
               "frame-ancestors 'none'")

STATUS_LABELS = {"in_progress": "In progress", "completed": "Completed"}
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._ -]+")


@dataclass(frozen=True)
class Problem:
    """Why a page cannot be shown, in words for the person holding the link."""

    status: int
    title: str
    message: str


TAMPERED = Problem(403, "This link is not valid",
                   "The link is incomplete or has been changed. Open it again from the work "
                   "order email, or reply to that email to get a fresh link.")
EXPIRED = Problem(410, "This link has expired",
                  "Links to work order details work for a limited time. Reply to the work "
                  "order email and we will send you a fresh link.")
WITHDRAWN = Problem(410, "This work order is no longer available",
                    "This job is no longer assigned to you, so its details are not shown. If "
                    "you think this is a mistake, reply to the work order email.")
NOT_FOUND = Problem(404, "Page not found",
                    "There is nothing here. Open the link from your work order email.")
NO_PHOTO = Problem(404, "Photo not found",
                   "This work order has no such photo. Open the details page from your work "
                   "order email.")


def _csp(nonce: str) -> str:
    return (f"default-src 'none'; img-src 'self'; style-src 'nonce-{nonce}'; base-uri 'none'; "
            f"form-action 'none'; frame-ancestors 'none'")


def _html(template: str, http_status: int, **context: Any) -> web.Response:
    nonce = secrets.token_urlsafe(16)
    body = render(f"web/{template}", nonce=nonce, **context)
    response = web.Response(text=body, status=http_status, content_type="text/html",
                            charset="utf-8")
    response.headers["Content-Security-Policy"] = _csp(nonce)
    return response


def problem_page(problem: Problem, company: str) -> web.Response:
    return _html("error.html", problem.status, problem=problem, company=company)


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """On every response, ours or aiohttp's own (404, 405, 500)."""
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    response.headers.setdefault("Content-Security-Policy", DEFAULT_CSP)
    response.headers.pop("Server", None)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error_pages(company: str) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPNotFound:
            return problem_page(NOT_FOUND, company)
        except web.HTTPMethodNotAllowed as exc:
            response = problem_page(Problem(405, "Not allowed", "This page is read-only."),
                                    company)
            response.headers["Allow"] = ", ".join(sorted(exc.allowed_methods))
            return response
        except web.HTTPException:
            raise
        except Exception:
            log.exception("web request %s %s failed", request.method, _redacted(request.path))
            return problem_page(Problem(500, "Something went wrong",
                                        "Please try again later, or reply to the work order "
                                        "email."), company)
    return middleware


def _redacted(path: str) -> str:
    """A path for the log without the link token (the token is the permission)."""
    return re.sub(r"^/v/[^/]+", "/v/…", path)


class VendorPages:
    """The two handlers, with what they need to answer."""

    def __init__(self, config: Config, db: Database, secret: bytes,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.config = config
        self.db = db
        self.secret = secret
        self.clock = clock
        self.blobs = blob_store_for(config.storage.blobs, config.storage.data_dir, db)
        self.zone = ZoneInfo(config.company.timezone)

    async def page(self, request: web.Request) -> web.StreamResponse:
        token = request.match_info["token"]
        return await asyncio.to_thread(self._page, token)

    async def photo(self, request: web.Request) -> web.StreamResponse:
        token, number = request.match_info["token"], int(request.match_info["number"])
        return await asyncio.to_thread(self._photo, token, number)

    def _work_order(self, session: Any, token: str) -> WorkOrder | Problem:
        try:
            grant = read_link_token(self.secret, token, now=self.clock())
        except LinkInvalid:
            return TAMPERED
        except LinkExpired:
            return EXPIRED
        wo = session.get(WorkOrder, grant.work_order_id)
        if (wo is None or wo.vendor_id != grant.vendor_id
                or wo.status not in ("in_progress", "completed")):
            return WITHDRAWN
        return wo

    def _page(self, token: str) -> web.StreamResponse:
        company = self.config.company.name
        with self.db.session() as session:
            wo = self._work_order(session, token)
            if isinstance(wo, Problem):
                return problem_page(wo, company)
            view = vendor_view(session, self.config, wo)
            replies = [{"at": self._when(r.at), "text": r.text}
                       for r in vendor_replies(session, wo)]
        schedule = (format_visit(view.scheduled_for, view.window_end, self.config.company.timezone)
                    if view.scheduled_for else None)
        photos = [{"url": f"{token}/photo/{p.number}", "name": p.filename,
                   "inline": p.content_type in INLINE_TYPES} for p in view.photos]
        return _html("vendor_work_order.html", 200, view=view, photos=photos, replies=replies,
                     schedule=schedule, status=STATUS_LABELS.get(view.status, view.status),
                     company=company)

    def _when(self, moment: datetime) -> str:
        local = moment.astimezone(self.zone)
        return f"{local:%a %b} {local.day}, {local.year} {local:%H:%M}"

    def _photo(self, token: str, number: int) -> web.StreamResponse:
        company = self.config.company.name
        with self.db.session() as session:
            wo = self._work_order(session, token)
            if isinstance(wo, Problem):
                return problem_page(wo, company)
            photos = vendor_view(session, self.config, wo).photos
        if not 1 <= number <= len(photos):
            return problem_page(NO_PHOTO, company)
        photo = photos[number - 1]
        try:
            content = self.blobs.get(photo.sha256)
        except (BlobNotFound, ValueError):
            log.warning("photo %d of a work order is missing from the blob store", number)
            return problem_page(NO_PHOTO, company)
        name = _UNSAFE_FILENAME.sub("_", photo.filename).strip() or f"photo-{number}"
        if photo.content_type in INLINE_TYPES:
            response = web.Response(body=content, content_type=photo.content_type)
            response.headers["Content-Disposition"] = f'inline; filename="{name}"'
        else:
            response = web.Response(body=content, content_type="application/octet-stream")
            response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
        response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
        return response


def make_app(config: Config, db: Database, secret: bytes, *,
             clock: Callable[[], datetime] = utcnow, status: StatusProvider | None = None,
             on_outbound: Callable[[], None] | None = None) -> web.Application:
    """The aiohttp application: vendor pages, the staff dashboard, /healthz and /metrics.

    ``status`` gives the running daemon's live intake/outbox state to /healthz and /metrics;
    ``on_outbound`` wakes the outbox sender when a page queues a mail (a sign-in link).
    """
    pages = VendorPages(config, db, secret, clock)
    app = web.Application(middlewares=[_error_pages(config.company.name)],
                          client_max_size=64 * 1024)
    app.router.add_get(r"/v/{token:[A-Za-z0-9_.\-]+}", pages.page)
    app.router.add_get(r"/v/{token:[A-Za-z0-9_.\-]+}/photo/{number:[1-9][0-9]{0,3}}",
                       pages.photo)
    register_health(app, config, db, clock=clock, status=status)
    register_dashboard(app, config, db, secret, clock=clock, on_outbound=on_outbound)
    app.on_response_prepare.append(_security_headers)
    return app


class WebServer:
    """Serves :func:`make_app` on ``[web] listen`` until stopped."""

    def __init__(self, config: Config, db: Database, *,
                 clock: Callable[[], datetime] = utcnow, status: StatusProvider | None = None,
                 on_outbound: Callable[[], None] | None = None) -> None:
        self.config = config
        self.db = db
        self.clock = clock
        self.status = status
        self.on_outbound = on_outbound
        host, _, port = config.web.listen.rpartition(":")
        self.host = host.strip("[]") or "127.0.0.1"
        self.port = int(port)
        self._runner: web.AppRunner | None = None

    def _secret(self) -> bytes:
        with self.db.session() as session:
            return installation_secret(session, self.config.web.secret_env)

    async def start(self) -> None:
        secret = await asyncio.to_thread(self._secret)
        app = make_app(self.config, self.db, secret, clock=self.clock, status=self.status,
                       on_outbound=self.on_outbound)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise OSError(exc.errno, f"cannot listen on {self.config.web.listen} for the "
                                     f"vendor pages ({exc.strerror}); change [web] listen") from exc
        self._runner = runner
        for address in runner.addresses:  # the real port when listen asks for port 0
            self.port = int(address[1])
            break
        log.info("vendor pages served on %s (links use %s)", self.url, self.config.web.base_url)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"
