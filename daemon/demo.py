"""``warrantyd demo``: the whole product on one machine, with real mail servers.

The sandbox is a data directory (temporary unless ``--data-dir`` is given) holding a SQLite
database, the attachments, a ``config.toml`` and the Maildirs of a small cast: the warranty
mailbox, a staff member, two vendors and a homeowner.  The real daemon (:class:`Service`)
runs against the sandbox's IMAP and SMTP servers (:mod:`warrantyd.daemon.demo_servers`),
exactly as it would against a mail provider.

Interactive (default): a homeowner's mail with a photo is sent, and once the staff digest
has arrived the demo prints where to look and how to log in with a mail client to play
each role.  Ctrl-C stops everything.

``--script``: the whole story plays unattended through the same servers — homeowner mail,
digest, staff edit and accept, vendor notices, vendor confirms a date, vendor reports the
work done, the request resolves — and each step is printed.  Exit 0 when the story
completed, 1 if a step did not happen in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.policy
import imaplib
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import formatdate, make_msgid
from io import BytesIO
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from warrantyd.daemon.config import Config, load_config
from warrantyd.daemon.demo_servers import LOOPBACK, DemoMailServers, port_or_free

log = logging.getLogger("warrantyd.demo")

PASSWORD = "demo"
COMPANY_DOMAIN = "acme-homes.example"


@dataclass(frozen=True)
class Person:
    role: str
    name: str
    address: str


WARRANTY = Person("warranty mailbox (the daemon)", "Acme Homes Warranty",
                  f"warranty@{COMPANY_DOMAIN}")
STAFF = Person("staff", "Pat Morales", f"pat@{COMPANY_DOMAIN}")
PLUMBER = Person("vendor", "Front Range Plumbing", "dispatch@frontrange-plumbing.example")
DRYWALLER = Person("vendor", "Summit Drywall", "office@summit-drywall.example")
HOMEOWNER = Person("homeowner", "Dana Whitfield", "dana@whitfield-family.example")
CAST = (WARRANTY, STAFF, PLUMBER, DRYWALLER, HOMEOWNER)
HOME = "1412 Aspen Ridge Dr, Lakewood CO"

STEP_TIMEOUT = 60.0


class StoryStalled(Exception):
    """A step of the scripted story did not happen in time."""


class DemoStopped(Exception):
    """The daemon stopped (Ctrl-C) while the demo was waiting for it."""


def demo_config_text(data_dir: Path, *, imap_port: int, smtp_port: int, web_port: int,
                     engine: str) -> str:
    """The sandbox's config.toml: a normal config, pointed at the loopback servers."""
    return f"""# The warrantyd demo sandbox. Commands work on it, e.g.:
#   warrantyd wo list --config {data_dir / 'config.toml'}
[company]
name = "Acme Homes"
timezone = "America/Denver"

[mailbox]
address = "{WARRANTY.address}"
imap_host = "{LOOPBACK}"
imap_port = {imap_port}
imap_security = "none"
imap_user = "{WARRANTY.address}"
imap_password_env = "WARRANTYD_DEMO_PASSWORD"
idle = true
poll_seconds = 2

[smtp]
host = "{LOOPBACK}"
port = {smtp_port}
security = "none"
from_name = "Acme Homes Warranty"

[database]
url = "sqlite:///{data_dir / 'warrantyd.sqlite3'}"

[storage]
data_dir = "{data_dir / 'data'}"

[drafter]
engine = "{engine}"

[staff]
addresses = ["{STAFF.address}"]
digest = "immediate"

[web]
listen = "{LOOPBACK}:{web_port}"
base_url = "http://{LOOPBACK}:{web_port}"

[[vendors]]
name = "{PLUMBER.name}"
email = "{PLUMBER.address}"
trades = ["plumbing"]
communities = ["Willow Creek"]

[[vendors]]
name = "{DRYWALLER.name}"
email = "{DRYWALLER.address}"
trades = ["drywall", "paint"]

[[homes]]
address = "{HOME}"
community = "Willow Creek"
closing_date = 2025-06-13
homeowners = [{{ name = "{HOMEOWNER.name}", email = "{HOMEOWNER.address}" }}]
"""


def sample_photo() -> bytes:
    """A small JPEG standing in for the homeowner's phone picture."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (320, 240), (214, 222, 230))
    draw = ImageDraw.Draw(image)
    draw.rectangle((120, 40, 200, 160), fill=(170, 175, 180))  # the faucet
    draw.rectangle((150, 160, 170, 200), fill=(120, 125, 130))
    for y in (205, 218, 231):
        draw.ellipse((155, y, 165, y + 8), fill=(40, 110, 200))  # the drip
    out = BytesIO()
    image.save(out, "JPEG", quality=80)
    return out.getvalue()


def homeowner_mail() -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = f"{HOMEOWNER.name} <{HOMEOWNER.address}>"
    msg["To"] = WARRANTY.address
    msg["Subject"] = "Kitchen faucet leak and a nail pop"
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain="whitfield-family.example")
    msg.set_content(
        "Hi,\n\nThe kitchen faucet drips all the time, even when it is shut off hard. "
        "Photo attached.\n\nAlso there is a nail pop in the upstairs hallway ceiling.\n\n"
        f"Thanks,\n{HOMEOWNER.name}\n{HOME}\n303-555-0142\n")
    msg.add_attachment(sample_photo(), maintype="image", subtype="jpeg",
                       filename="faucet.jpg")
    return msg


def reply_to(original: EmailMessage, sender: Person, body: str) -> EmailMessage:
    """A reply the way a mail client writes one: to Reply-To, threaded, quoting below."""
    msg = EmailMessage()
    msg["From"] = f"{sender.name} <{sender.address}>"
    msg["To"] = str(original.get("Reply-To") or original["From"])
    subject = str(original["Subject"])
    msg["Subject"] = subject if subject.lower().startswith("re:") else f"Re: {subject}"
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain=sender.address.split("@", 1)[1])
    msg["In-Reply-To"] = str(original["Message-ID"])
    msg["References"] = str(original["Message-ID"])
    quoted = "\n".join("> " + line for line in plain_text(original).splitlines())
    msg.set_content(f"{body}\n\nOn {original['Date']}, {original['From']} wrote:\n{quoted}\n")
    return msg


def plain_text(msg: EmailMessage) -> str:
    part = msg.get_body(("plain",))
    return part.get_content() if part is not None else ""


class MailClient:
    """One person's mail client: reads their INBOX over IMAP, sends over SMTP."""

    def __init__(self, person: Person, servers: DemoMailServers) -> None:
        self.person = person
        self.servers = servers
        self._seen: set[bytes] = set()
        self._pending: list[EmailMessage] = []

    def _fetch_new(self) -> list[EmailMessage]:
        conn = imaplib.IMAP4(self.servers.host, self.servers.imap_port, timeout=10)
        try:
            conn.login(self.person.address, PASSWORD)
            conn.select("INBOX", readonly=True)
            _, data = conn.uid("SEARCH", "ALL")
            uids = [u for u in (data[0] or b"").split() if u not in self._seen]
            out = []
            for uid in uids:
                _, fetched = conn.uid("FETCH", uid, "(BODY.PEEK[])")
                raw = next((part[1] for part in fetched if isinstance(part, tuple)), None)
                if raw is None:
                    continue
                self._seen.add(uid)
                out.append(BytesParser(policy=email.policy.default).parsebytes(raw))
            return out
        finally:
            with contextlib.suppress(Exception):
                conn.logout()

    async def wait_for(self, kind: str, *, timeout: float = STEP_TIMEOUT,
                       what: str = "") -> EmailMessage:
        """The next mail of ``X-Warrantyd-Kind: kind`` in this person's INBOX."""
        deadline = time.monotonic() + timeout
        while True:
            for msg in list(self._pending):
                if msg.get("X-Warrantyd-Kind", "") == kind:
                    self._pending.remove(msg)
                    return msg
            self._pending.extend(await asyncio.to_thread(self._fetch_new))
            if any(m.get("X-Warrantyd-Kind", "") == kind for m in self._pending):
                continue
            if time.monotonic() > deadline:
                raise StoryStalled(f"{self.person.address} got no {what or kind} mail within "
                                   f"{timeout:g} s")
            await asyncio.sleep(0.3)

    async def send(self, msg: EmailMessage) -> None:
        import aiosmtplib

        await aiosmtplib.send(msg, hostname=self.servers.host, port=self.servers.smtp_port,
                              sender=self.person.address, timeout=30)


@dataclass
class Sandbox:
    data_dir: Path
    config: Config
    servers: DemoMailServers
    service: Any
    out: TextIO
    started: float

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:5.1f}s] {text}", file=self.out, flush=True)

    def client(self, person: Person) -> MailClient:
        return MailClient(person, self.servers)


async def _until(predicate: Callable[[], Any], what: str, timeout: float = STEP_TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(predicate)
        if value:
            return value
        if time.monotonic() > deadline:
            raise StoryStalled(f"{what} did not happen within {timeout:g} s")
        await asyncio.sleep(0.3)


def _digest_item(text: str, trade_word: str) -> str | None:
    """The digest item number whose heading line names ``trade_word``."""
    for line in text.splitlines():
        match = re.match(r"\s*(\d+)\.\s+WO-\d+\b(.*)$", line)
        if match and trade_word.lower() in match.group(2).lower():
            return match.group(1)
    return None


def _work_orders(sandbox: Sandbox) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from warrantyd.storage.models import WorkOrder

    with sandbox.service.db.session() as session:
        return [{"id": wo.id, "status": wo.status, "trade": wo.trade,
                 "vendor": wo.vendor.email if wo.vendor else None,
                 "scheduled_for": wo.scheduled_for}
                for wo in session.scalars(select(WorkOrder).order_by(WorkOrder.id))]


def _request_status(sandbox: Sandbox) -> str | None:
    from sqlalchemy import select

    from warrantyd.storage.models import ServiceRequest

    with sandbox.service.db.session() as session:
        sr = session.scalars(select(ServiceRequest).order_by(ServiceRequest.id)).first()
        return sr.status if sr else None


def _all_filed(sandbox: Sandbox) -> bool:
    from sqlalchemy import func, select

    from warrantyd.storage.models import InboundMessage

    with sandbox.service.db.reading() as session:
        return not session.scalar(select(func.count()).select_from(InboundMessage).where(
            InboundMessage.uid.is_not(None), InboundMessage.moved.is_(False)))


async def _settled(sandbox: Sandbox) -> None:
    """Until the daemon has filed every mail it took (the end of its pass), then a moment,
    as a person takes before answering.  The demo's IMAP server (pymap) never tells a
    session of mail that arrived between its last search and its IDLE, so an answer sent
    within milliseconds of the daemon's last step would wait for its next full poll."""
    await _until(lambda: _all_filed(sandbox), "the daemon to file the mail it took")
    await asyncio.sleep(0.3)


async def play_story(sandbox: Sandbox, digest: EmailMessage) -> None:
    """Staff accept, vendors confirm and finish, the request resolves: each step printed."""
    say = sandbox.say
    staff = sandbox.client(STAFF)
    vendors = {p.address: sandbox.client(p) for p in (PLUMBER, DRYWALLER)}
    homeowner = sandbox.client(HOMEOWNER)

    text = plain_text(digest)
    commands = []
    drywall_item = _digest_item(text, "drywall")
    if drywall_item:
        commands.append(f"edit {drywall_item}: Reset the popped nail in the upstairs hallway "
                        "ceiling with a drywall screw, patch, match the texture and paint.")
    commands.append("accept all")
    await _settled(sandbox)
    await staff.send(reply_to(digest, STAFF, "\n".join(commands)))
    say(f"staff ({STAFF.address}) replied to the digest: " + " / ".join(commands))
    receipt = await staff.wait_for("receipt")
    say("staff got the receipt: " + " ".join(plain_text(receipt).split())[:150])

    accepted = await _until(lambda: [wo for wo in _work_orders(sandbox)
                                     if wo["status"] == "in_progress"], "an accepted job")
    if len(accepted) != len([wo for wo in _work_orders(sandbox) if wo["status"] != "rejected"]):
        raise StoryStalled("not every work order was accepted with a vendor: "
                           f"{_work_orders(sandbox)}")
    notices: dict[int, tuple[MailClient, EmailMessage]] = {}
    for wo in accepted:
        client = vendors.get(wo["vendor"])
        if client is None:
            raise StoryStalled(f"WO-{wo['id']} went to {wo['vendor']}, not a demo vendor")
        notice = await client.wait_for("vendor_notice", what="job notice")
        link = next((w for w in plain_text(notice).split()
                     if w.startswith(sandbox.config.web.base_url + "/v/")), None)
        status = await asyncio.to_thread(_http_status, link) if link else None
        say(f"vendor {client.person.address} got: {str(notice['Subject']).strip()}"
            + (f"  (job page: HTTP {status})" if link else ""))
        notices[wo["id"]] = (client, notice)

    for wo_id, (client, notice) in notices.items():
        await _settled(sandbox)
        await client.send(reply_to(notice, client.person, "Thursday at 9 works for us."))
        say(f"vendor {client.person.address} replied: \"Thursday at 9 works for us.\"")
        scheduled = await _until(lambda i=wo_id: next(
            (wo["scheduled_for"] for wo in _work_orders(sandbox) if wo["id"] == i), None),
            f"WO-{wo_id} to be scheduled")
        local = scheduled.astimezone(ZoneInfo(sandbox.config.company.timezone))
        say(f"WO-{wo_id} scheduled for {local:%a %d %b %H:%M} ({local.tzname()})")
        told = await homeowner.wait_for("homeowner_scheduled", what="visit scheduled")
        say(f"homeowner got: {str(told['Subject']).strip()}")

    for wo_id, (client, notice) in notices.items():
        await _settled(sandbox)
        await client.send(reply_to(notice, client.person,
                                   "All done, fixed and cleaned up. Thanks!"))
        say(f"vendor {client.person.address} replied: \"All done, fixed and cleaned up.\"")
        await _until(lambda i=wo_id: any(wo["id"] == i and wo["status"] == "completed"
                                         for wo in _work_orders(sandbox)),
                     f"WO-{wo_id} to be completed")
        say(f"WO-{wo_id} completed")

    await _until(lambda: _request_status(sandbox) == "resolved", "the request to resolve")
    resolved = await homeowner.wait_for("homeowner_resolved", what="request resolved")
    say(f"homeowner got: {str(resolved['Subject']).strip()}")


def _http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return int(resp.status)
    except OSError as exc:
        return int(getattr(exc, "code", 0) or 0)


def _welcome(sandbox: Sandbox) -> str:
    s = sandbox.servers
    base = sandbox.config.web.base_url
    rows = "\n".join(f"  {p.role:<30} {p.address:<40} password: {PASSWORD}" for p in CAST)
    config_path = sandbox.data_dir / "config.toml"
    return f"""
warrantyd demo is running.  A homeowner's mail (two problems and a photo) went through
the real daemon; the staff digest is waiting in {STAFF.address}'s mailbox.

Web
  Dashboard      {base}/login   (sign in as {STAFF.address}; the sign-in link
                 arrives by mail in that mailbox)
  Vendor pages   linked from each job notice a vendor receives

Mail servers (loopback, no encryption, no SMTP login needed)
  IMAP  {s.host} port {s.imap_port}
  SMTP  {s.host} port {s.smtp_port}
Logins (IMAP user = the address)
{rows}

What to try
  1. Add {STAFF.address} to a mail client (Thunderbird: manual config, the host and
     ports above, "No SSL", normal password) and open the digest.
  2. Reply to it with commands on the first lines, e.g.  accept all   or
     edit 2: Patch and retexture the hallway ceiling   (then   accept 2).
  3. Add a vendor account: the job notice is there; reply "Thursday at 9 works",
     later "All done". Add {HOMEOWNER.address} to see what the homeowner is told.
  4. From another terminal:  warrantyd wo list --config {config_path}
                             warrantyd sr show SR-1 --config {config_path}
  5. Or watch it all happen by itself:  warrantyd demo --script

Daemon log: {sandbox.data_dir / 'warrantyd.log'}
Ctrl-C stops the demo.
"""


def _log_to_file(path: Path) -> logging.Handler:
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    root.addHandler(handler)
    for name in ("warrantyd", "mail.log", "pymap"):
        logging.getLogger(name).setLevel(logging.INFO)
    for existing in root.handlers:
        if existing is not handler:
            existing.setLevel(max(existing.level, logging.WARNING))
    return handler


async def run_demo(data_dir: Path, *, script: bool = False, out: TextIO = sys.stdout) -> int:
    """Start the sandbox and the daemon; play the story (``script``) or wait for Ctrl-C."""
    from warrantyd.daemon.service import Service

    started = time.monotonic()
    data_dir.mkdir(parents=True, exist_ok=True)
    handler = _log_to_file(data_dir / "warrantyd.log")
    servers = DemoMailServers(data_dir / "mail", {p.address: PASSWORD for p in CAST})
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop_requested.set)
    service_task: asyncio.Task[None] | None = None
    try:
        await servers.start()
        engine = "anthropic" if os.environ.get("ANTHROPIC_API_KEY") else "offline"
        config_path = data_dir / "config.toml"
        config_path.write_text(demo_config_text(
            data_dir, imap_port=servers.imap_port, smtp_port=servers.smtp_port,
            web_port=port_or_free(8025), engine=engine), encoding="utf-8")
        os.environ["WARRANTYD_DEMO_PASSWORD"] = PASSWORD
        config = load_config(config_path)
        service = Service(config)
        sandbox = Sandbox(data_dir, config, servers, service, out, started)
        sandbox.say(f"mail servers up: IMAP {servers.host}:{servers.imap_port}, "
                    f"SMTP {servers.host}:{servers.smtp_port}; drafter: {engine}")
        if stop_requested.is_set():
            return 0
        service_task = asyncio.create_task(service.run())
        # Service.run takes over SIGINT/SIGTERM while it runs; until then, and after, ours.
        # Connected and through its first look at the mailbox: the demo's IMAP server
        # (pymap) does not show a session mail that arrives between its SELECT and IDLE.
        await _until(lambda: service_task.done() or (
            bool((service.status["intake"] or {}).get("last_poll_at"))),
            "the daemon to connect to IMAP", timeout=60)
        if service_task.done():
            await service_task
            raise StoryStalled("the daemon stopped before it connected; see the log")
        sandbox.say(f"daemon running for {WARRANTY.address} (web {config.web.base_url})")

        async def while_running(step: Any) -> Any:
            """Await ``step`` unless the daemon stops first (Ctrl-C)."""
            task = asyncio.ensure_future(step)
            await asyncio.wait({task, service_task}, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                return task.result()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, StoryStalled):
                await task
            raise DemoStopped

        homeowner = sandbox.client(HOMEOWNER)
        await homeowner.send(homeowner_mail())
        sandbox.say(f"homeowner {HOMEOWNER.address} sent \"Kitchen faucet leak and a nail "
                    "pop\" with faucet.jpg")
        ack = await while_running(homeowner.wait_for("ack", what="acknowledgement"))
        sandbox.say(f"homeowner got: {str(ack['Subject']).strip()}")
        digest = await while_running(sandbox.client(STAFF).wait_for("digest"))
        sandbox.say(f"staff {STAFF.address} got: {str(digest['Subject']).strip()}")

        if script:
            await while_running(play_story(sandbox, digest))
            sandbox.say("demo story complete: every work order done, SR-1 resolved")
            return 0
        print(_welcome(sandbox), file=out, flush=True)
        await service_task
        return 0
    except DemoStopped:
        print("warrantyd demo: stopped", file=out, flush=True)
        return 1 if script else 0
    except StoryStalled as exc:
        print(f"warrantyd demo: the story stalled: {exc}; the daemon log is "
              f"{data_dir / 'warrantyd.log'}", file=sys.stderr)
        return 1
    finally:
        if service_task is not None:
            service.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(service_task, 30)
        await servers.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        logging.getLogger().removeHandler(handler)
        handler.close()


def main(data_dir: str | None, *, script: bool) -> int:
    """Entry point for ``warrantyd demo``: a temporary sandbox unless ``data_dir`` is given."""
    temporary = data_dir is None
    path = Path(tempfile.mkdtemp(prefix="warrantyd-demo-")) if temporary else Path(data_dir)
    try:
        return asyncio.run(run_demo(path.resolve(), script=script))
    finally:
        if temporary:
            shutil.rmtree(path, ignore_errors=True)
