"""What the benchmark scripts share: homeowner mail, bulk APPEND, databases, RSS, medians.

The scripts start the same throwaway servers the tests use (``tests/support``: Dovecot,
the SMTP sink, the fake Messages API), so a figure measured here is a figure of the real
daemon process against a real IMAP server.
"""

from __future__ import annotations

import contextlib
import imaplib
import io
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "tests" / "support"))

from daemon_harness import MAILBOX, STAFF, DaemonProcess, write_config  # noqa: E402
from dovecot import PASSWORD, Dovecot  # noqa: E402
from smtp_sink import SmtpSink  # noqa: E402

__all__ = [
    "MAILBOX",
    "PASSWORD",
    "STAFF",
    "DaemonProcess",
    "Dovecot",
    "KindCounter",
    "SmtpSink",
    "append_all",
    "children",
    "cpu_seconds",
    "homeowner_mails",
    "median",
    "peak_rss_mib",
    "postgres_database",
    "pss_mib",
    "wait_until",
    "write_config",
]

ISSUES = [
    "The kitchen faucet drips all the time, even when it is turned off hard.",
    "There is a nail pop in the upstairs hallway ceiling above the stairs.",
    "The garage door makes a grinding noise and stops halfway up.",
    "Water stains appeared on the basement ceiling under the master bath.",
    "The GFCI outlet in the guest bathroom trips every time we use the hair dryer.",
    "Several floor tiles in the entry sound hollow and one is cracked.",
    "The back patio door is hard to lock; the latch does not line up.",
    "There is a crack in the driveway that has grown since last month.",
    "The upstairs bedroom does not get warm; the furnace runs but the vent is cold.",
    "A gutter on the north side overflows when it rains and water pools by the foundation.",
    "Paint is peeling off the trim around the front window.",
    "The dishwasher leaves a puddle on the floor after every cycle.",
]


def _photos(count: int, size: int = 200_000) -> list[bytes]:
    """A few distinct real JPEGs of about ``size`` bytes (noise compresses badly)."""
    from PIL import Image

    rng = random.Random(7)
    photos = []
    for _ in range(count):
        side = 360
        while True:
            image = Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3))
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=85)
            if buffer.tell() >= size * 0.95:
                photos.append(buffer.getvalue())
                break
            side += 40
    return photos


def homeowner_mails(count: int, *, photo_share: float = 0.2, seed: int = 1,
                    sender_domain: str = "example.com") -> list[bytes]:
    """``count`` homeowner mails of 1–3 issues each, ``photo_share`` of them with a photo."""
    from email.message import EmailMessage
    from email.utils import format_datetime, make_msgid

    rng = random.Random(seed)
    photos = _photos(4)
    mails = []
    for n in range(count):
        issues = rng.sample(ISSUES, rng.randint(1, 3))
        msg = EmailMessage()
        msg["From"] = f"Owner {n} <owner{n}@{sender_domain}>"
        msg["To"] = MAILBOX
        msg["Subject"] = f"Warranty items at our house ({n})"
        msg["Message-ID"] = make_msgid(f"bench{n}", sender_domain)
        msg["Date"] = format_datetime(__import__("datetime").datetime.now().astimezone())
        body = "Hi,\n\n" + "\n\n".join(issues) + f"\n\nThanks,\nOwner {n}\n"
        msg.set_content(body)
        if rng.random() < photo_share:
            msg.add_attachment(rng.choice(photos), maintype="image", subtype="jpeg",
                               filename=f"IMG_{n:04d}.jpg")
        mails.append(msg.as_bytes())
    return mails


def append_all(dovecot: Dovecot, user: str, mails: list[bytes], folder: str = "INBOX") -> None:
    """APPEND every mail over one connection (the fixture's ``append`` logs in per mail)."""
    imap = imaplib.IMAP4(dovecot.host, dovecot.port)
    try:
        imap.login(user, PASSWORD)
        for raw in mails:
            typ, data = imap.append(folder, "", None, raw)
            if typ != "OK":
                raise RuntimeError(f"APPEND failed: {data!r}")
    finally:
        with contextlib.suppress(Exception):
            imap.logout()


def admin_url() -> str:
    return os.environ.get("WARRANTYD_TEST_POSTGRES",
                          "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@contextlib.contextmanager
def postgres_database(prefix: str = "wbench") -> Iterator[str]:
    """A new PostgreSQL database for one run, dropped afterwards."""
    from sqlalchemy import create_engine, text

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{admin_url().rsplit('/', 1)[0]}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def peak_rss_mib(pid: int) -> float:
    """The peak resident set size of a live process (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def pss_mib(pid: int) -> float:
    """The proportional set size of a live process now (Pss in smaps_rollup), in MiB: its
    resident pages, each page shared with other processes counted as its share.  The sum
    over the daemon and its worker is their memory together, the libraries both map
    counted once (RSS counts them in each)."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no Pss for process {pid}")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a live process and its live children (the daemon's
    processing worker) have used so far: what a run cost, however loaded the machine
    (msg/s on a busy machine measures the other processes too)."""
    total = 0.0
    for one in (pid, *children(pid)):
        fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def children(pid: int) -> list[int]:
    """The PIDs of a live process's children (the daemon's: its processing worker)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def wait_until(predicate: Callable[[], bool], timeout: float, what: str,
               daemon: DaemonProcess | None = None, interval: float = 0.02) -> float:
    """Poll until ``predicate``; return the monotonic time it became true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic()
        time.sleep(interval)
    tail = daemon.log()[-3000:] if daemon else ""
    raise SystemExit(f"timed out after {timeout:g} s waiting for {what}\n{tail}")


class KindCounter:
    """An SMTP sink ``on_message`` hook counting mail by ``X-Warrantyd-Kind`` as it arrives
    (cheaper than re-reading every message while polling); it reads the header block only,
    so the sink costs the machine little beside the daemon being measured."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.last_at: dict[str, float] = {}

    def __call__(self, received: object) -> None:
        kind = str(received.headers.get("X-Warrantyd-Kind", ""))  # type: ignore[attr-defined]
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.last_at[kind] = time.monotonic()

    def count(self, kind: str) -> int:
        return self.counts.get(kind, 0)

    def reset(self) -> None:
        self.counts.clear()
        self.last_at.clear()


def median(values: list[float]) -> float:
    return statistics.median(values)


def daemon_config(tmp: Path, dovecot: Dovecot, sink: SmtpSink, db_url: str, user: str, *,
                  idle: bool = True, poll_seconds: float = 1.0, blobs: str = "files",
                  extra: str = "") -> Path:
    """The test harness config, pointed at ``user``'s mailbox."""
    tmp.mkdir(parents=True, exist_ok=True)
    path = write_config(tmp, dovecot=dovecot, smtp_port=sink.port, db_url=db_url, idle=idle,
                        poll_seconds=poll_seconds, extra=extra)
    text = path.read_text().replace(f'imap_user = "{MAILBOX}"', f'imap_user = "{user}"')
    if blobs != "files":
        text = text.replace("[storage]\n", f'[storage]\nblobs = "{blobs}"\n', 1)
    path.write_text(text)
    return path
