"""Run the real ``warrantyd run`` process against a test Dovecot and SMTP sink.

The daemon is a child process started with the same Python, so tests can SIGKILL it in the
middle of its work and start it again on the same database, as an operator's crash would.

Its servers come from the fixtures in :mod:`e2e_fixtures`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from dovecot import PASSWORD, Dovecot
from smtp_sink import free_port
from sqlalchemy import func, select

from warrantyd.daemon.config import SmtpConfig
from warrantyd.storage.db import Database
from warrantyd.storage.models import MailboxState

MAILBOX = "warranty@acme-homes.example"
STAFF = "pat@acme-homes.example"
IN_FLIGHT = SmtpConfig().connections
"""Mail a killed daemon may have had answered "250 OK" and not yet recorded as sent: one per
SMTP connection it sends over (``[smtp] connections``; these configs keep the default)."""


def write_config(tmp: Path, *, dovecot: Dovecot, smtp_port: int, db_url: str,
                 idle: bool = True, poll_seconds: float = 1.0, extra: str = "",
                 imap_user: str = MAILBOX, staff: Sequence[str] = (STAFF,)) -> Path:
    """A config for the daemon against ``dovecot`` and the sink on ``smtp_port``.

    ``imap_user`` is the Dovecot login (a per-test user, see :func:`mailbox_user`); the
    mailbox address the daemon answers as stays :data:`MAILBOX`.
    """
    path = tmp / "config.toml"
    web_port = free_port()
    staff_list = ", ".join(f'"{address}"' for address in staff)
    path.write_text(f"""
[company]
name = "Acme Homes"
timezone = "America/Denver"

[mailbox]
address = "{MAILBOX}"
imap_host = "127.0.0.1"
imap_port = {dovecot.port}
imap_security = "none"
imap_user = "{imap_user}"
imap_password_env = "TEST_IMAP_PASSWORD"
idle = {"true" if idle else "false"}
poll_seconds = {poll_seconds}

[smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
from_name = "Acme Homes Warranty"

[database]
url = "{db_url}"

[storage]
data_dir = "{tmp / 'data'}"

[drafter]
engine = "offline"

[staff]
addresses = [{staff_list}]

[web]
listen = "127.0.0.1:{web_port}"
base_url = "http://127.0.0.1:{web_port}"

[[vendors]]
name = "Front Range Plumbing"
email = "dispatch@frontrange-plumbing.example.net"
trades = ["plumbing"]

[[homes]]
address = "1412 Aspen Ridge Dr"
community = "Willow Creek"
closing_date = 2025-06-13
homeowners = [{{ name = "Dana Whitfield", email = "dana@example.com" }}]
{extra}
""")
    return path


class DaemonProcess:
    """``warrantyd run --config PATH`` as a child process, stopped by its own PID."""

    def __init__(self, config: Path, *, import_existing: bool = False) -> None:
        self.config = config
        self.import_existing = import_existing
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = config.parent / "daemon.log"

    def start(self) -> DaemonProcess:
        args = [sys.executable, "-m", "warrantyd.daemon.cli", "run", "--config",
                str(self.config)]
        if self.import_existing:
            args.append("--import-existing")
        env = {**os.environ, "TEST_IMAP_PASSWORD": PASSWORD}
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        log.close()
        return self

    def kill(self) -> None:
        """SIGKILL: no clean-up at all, like a power cut."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def pause(self) -> None:
        """SIGSTOP: the process keeps its connections (and the locks held on them) but does
        nothing at all, like a hung daemon, until :meth:`resume`."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def terminate(self, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def wait_ready(self, timeout: float = 30) -> None:
        """Until intake has connected and taken its first look at the mailbox."""
        wait_for(lambda: "connected to" in self.log(), timeout, "the daemon to connect", self)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> DaemonProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def wait_for(predicate: Callable[[], object], timeout: float, what: str,
             daemon: DaemonProcess | None = None, interval: float = 0.1) -> object:
    """Poll ``predicate`` until it is truthy; fail with the daemon's log otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    tail = daemon.log()[-3000:] if daemon else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n--- daemon log ---\n"
                         f"{tail}")


def homeowner_mail(n: int, *, sender: str | None = None, body: str | None = None,
                   subject: str | None = None, to: str = MAILBOX) -> bytes:
    """A homeowner's new request; ``to`` is the mailbox it is written to (a division's)."""
    sender = sender or f"owner{n}@example.com"
    body = body or (f"Hi,\n\nThe kitchen faucet at our house drips all the time (request {n}).\n"
                    "Also there is a nail pop in the upstairs hallway ceiling.\n\nThanks,\nOwner\n")
    return (f"From: Owner {n} <{sender}>\r\nTo: {to}\r\n"
            f"Subject: {subject or f'Warranty items #{n}'}\r\n"
            f"Message-ID: <owner-{n}-{time.time_ns()}@example.com>\r\n"
            f"Date: Fri, 27 Nov 2026 10:00:00 -0700\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}").replace("\n", "\r\n").replace(
                "\r\r\n", "\r\n").encode()


def division_config(name: str, *, address: str, imap_user: str, staff: Sequence[str],
                    from_name: str = "", vendors: Sequence[dict[str, object]] = (),
                    homes: Sequence[dict[str, object]] = ()) -> str:
    """A ``[[divisions]]`` table for :func:`write_config`'s ``extra`` (its mailbox on the
    same Dovecot as the main one, another login; unset keys inherit the top level)."""

    def value(v: object) -> str:
        if isinstance(v, str):
            return f'"{v}"'
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        return str(v)

    lines = ["", "[[divisions]]", f'name = "{name}"']
    if from_name:
        lines.append(f'from_name = "{from_name}"')
    lines += ["[divisions.mailbox]", f'address = "{address}"', f'imap_user = "{imap_user}"',
              "[divisions.staff]", f"addresses = {value(list(staff))}"]
    for table, rows in (("vendors", vendors), ("homes", homes)):
        for row in rows:
            lines.append(f"[[divisions.{table}]]")
            lines += [f"{k} = {value(v)}" for k, v in row.items()]
    return "\n".join(lines) + "\n"


def count_rows(db: Database, model: type, *where: object) -> int:
    """How many rows of ``model`` match ``where``, read in a transaction of its own."""
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


def reader_pid(db: Database, mailbox: str) -> int | None:
    """The PID of the daemon that reads ``mailbox`` (its ``address/folder`` key), as it
    names itself in ``mailbox_state.holder``; None before any daemon has read it.

    A daemon killed with SIGKILL cannot clear the column: it keeps naming the dead reader
    until another daemon takes the mailbox over.
    """
    with db.session() as session:
        state = session.get(MailboxState, mailbox)
        holder = state.holder if state is not None else None
    return int(holder.rsplit(":", 1)[1]) if holder else None


def log_problems(log: str) -> str:
    """A daemon log's warnings, errors and mailbox-reader changes: what explains a failure
    of a test with several daemons."""
    keep = ("WARNING", "ERROR", "Traceback", "now reads", "another daemon", "running for",
            "stopped")
    return "\n".join(line for line in log.splitlines() if any(k in line for k in keep))[-3000:]
