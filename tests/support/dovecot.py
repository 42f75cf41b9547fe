"""A real Dovecot IMAP server for tests, started from a throwaway config on loopback.

Testing the intake against a fake IMAP server would test our idea of IMAP; Dovecot is the
server most warranty mailboxes will actually sit behind (directly or as the model for
others), so the tests drive the real thing: IDLE pushes, UIDVALIDITY, MOVE, STARTTLS.

The fixture never installs anything: ``dovecot-imapd`` must be installed (CI does it), and
a missing binary fails the test with a message saying so.  Each server lives in its own
temp dir and its own process session, and is stopped by its own PID (the whole process
group, because logged-in ``imap`` children outlive the master for a while).

The test side talks to the server with the standard library's blocking ``imaplib``: it is
only used for short set-up and inspection steps.
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

DOVECOT_BIN = shutil.which("dovecot") or "/usr/sbin/dovecot"
MAIL_UID = 65534
"""Dovecot refuses mail uid 0, so as root the test users are nobody:nogroup."""
MAIL_GID = 65534
PASSWORD = "secret-test-password"

_CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem
disable_plaintext_auth = no
auth_failure_delay = 0
auth_mechanisms = plain login
mail_location = maildir:~/Maildir
mailbox_idle_check_interval = 1 secs
first_valid_uid = 1
passdb {{
  driver = static
  args = password={password}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/homes/%u allow_all_users=yes
}}
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DovecotError(RuntimeError):
    """The test server could not be started or did not answer as expected."""


class Dovecot:
    """One Dovecot instance: ``start()``, ``stop()``, ``start()`` again on the same ports."""

    def __init__(self, root: Path | None = None) -> None:
        if not Path(DOVECOT_BIN).exists():
            pytest.fail("the dovecot binary is missing: install the Debian package "
                        "dovecot-imapd (apt-get install -y dovecot-imapd) to run the IMAP tests")
        self._own_root = root is None
        self.root = Path(root or tempfile.mkdtemp(prefix="warrantyd-dovecot-"))
        # The mail processes run as nobody: they must be able to traverse to the homes.
        self.root.chmod(0o711)
        self.host = "127.0.0.1"
        self.port = free_port()
        self.tls_port = free_port()
        self.users: set[str] = set()
        self.process: subprocess.Popen[bytes] | None = None
        self.cert_path = self.root / "cert.pem"
        self._write_certificate()
        (self.root / "homes").mkdir(mode=0o711)
        os.chown(self.root / "homes", MAIL_UID, MAIL_GID)
        self.config_path = self.root / "dovecot.conf"
        self.config_path.write_text(_CONFIG.format(
            root=self.root, port=self.port, tls_port=self.tls_port, password=PASSWORD,
            uid=MAIL_UID, gid=MAIL_GID))

    # --- set-up ---------------------------------------------------------------------------

    def _write_certificate(self) -> None:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
             "-keyout", str(self.root / "key.pem"), "-out", str(self.cert_path)],
            check=True, capture_output=True,
        )

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this server's self-signed certificate."""
        return ssl.create_default_context(cafile=str(self.cert_path))

    def add_user(self, user: str) -> str:
        """Register a mail user; its password is :data:`PASSWORD`.

        Every user name logs in with the one password (a static passdb): a passwd-file is
        only re-read once a second, which made users added in quick succession flaky.
        """
        if "/" in user or user.startswith("."):
            raise ValueError(f"unsafe user name for a home directory: {user!r}")
        home = self.home(user)
        home.mkdir(parents=True, exist_ok=True)
        os.chown(home, MAIL_UID, MAIL_GID)
        self.users.add(user)
        return user

    def home(self, user: str) -> Path:
        return self.root / "homes" / user

    # --- process --------------------------------------------------------------------------

    def start(self, timeout: float = 15.0) -> None:
        """Start the master and wait for the ``* OK`` greeting (a TCP accept is not enough)."""
        if self.process is not None and self.process.poll() is None:
            return
        self.process = subprocess.Popen(
            [DOVECOT_BIN, "-F", "-c", str(self.config_path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        last_error = ""
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace") if \
                    self.process.stderr else ""
                raise DovecotError(f"dovecot exited with {self.process.returncode}: {err}"
                                   f"{self.log_tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as sock:
                    greeting = sock.recv(200)
                if greeting.startswith(b"* OK"):
                    return
                last_error = repr(greeting)
            except OSError as exc:
                last_error = str(exc)
            time.sleep(0.05)
        self.stop()
        raise DovecotError(f"dovecot did not greet on port {self.port} within {timeout} s "
                           f"({last_error}){self.log_tail()}")

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the whole process group and wait until the master is gone."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout)
        # Children (logged-in imap processes) may linger in the group: end them too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        if process.stderr:
            process.stderr.close()

    def close(self) -> None:
        self.stop()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Dovecot:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def log_tail(self, lines: int = 20) -> str:
        path = self.root / "dovecot.log"
        if not path.exists():
            return ""
        tail = path.read_text(errors="replace").splitlines()[-lines:]
        return "\n--- dovecot.log ---\n" + "\n".join(tail)

    # --- test-side client -----------------------------------------------------------------

    @contextlib.contextmanager
    def client(self, user: str) -> Iterator[imaplib.IMAP4]:
        imap = imaplib.IMAP4(self.host, self.port, timeout=10)
        try:
            imap.login(user, PASSWORD)
            yield imap
        finally:
            with contextlib.suppress(Exception):
                imap.logout()

    def append(self, user: str, raw: bytes, folder: str = "INBOX",
               date: datetime | None = None) -> int:
        """APPEND a message; return its UID (from the APPENDUID response code)."""
        with self.client(user) as imap:
            when = imaplib.Time2Internaldate(date) if date is not None else None
            typ, data = imap.append(_quote(folder), "", when, raw)
            if typ != "OK":
                raise DovecotError(f"APPEND to {folder} failed: {data!r}")
            match = re.search(rb"APPENDUID \d+ (\d+)", data[0] or b"")
            if not match:
                raise DovecotError(f"no APPENDUID in {data!r}")
            return int(match.group(1))

    def list_uids(self, user: str, folder: str = "INBOX") -> list[int]:
        with self.client(user) as imap:
            typ, _ = imap.select(_quote(folder), readonly=True)
            if typ != "OK":
                return []
            typ, data = imap.uid("SEARCH", "ALL")
            return [int(n) for n in (data[0] or b"").split()]

    def fetch(self, user: str, folder: str = "INBOX") -> dict[int, bytes]:
        """Every message of ``folder`` by UID (without setting \\Seen)."""
        result: dict[int, bytes] = {}
        with self.client(user) as imap:
            typ, _ = imap.select(_quote(folder), readonly=True)
            if typ != "OK":
                return result
            typ, data = imap.uid("FETCH", "1:*", "(UID BODY.PEEK[])")
            for item in data:
                if isinstance(item, tuple):
                    match = re.search(rb"UID (\d+)", item[0])
                    if match:
                        result[int(match.group(1))] = item[1]
        return result

    def folders(self, user: str) -> list[str]:
        with self.client(user) as imap:
            _, data = imap.list()
        names = []
        for line in data:
            if isinstance(line, bytes):
                match = re.search(rb'"(?:[^"\\]|\\.)*"\s+"?((?:[^"\\]|\\.)*)"?$', line)
                if match:
                    names.append(match.group(1).decode())
        return names

    def uidvalidity(self, user: str, folder: str = "INBOX") -> int:
        with self.client(user) as imap:
            _, data = imap.status(_quote(folder), "(UIDVALIDITY)")
        match = re.search(rb"UIDVALIDITY (\d+)", data[0] or b"")
        if not match:
            raise DovecotError(f"no UIDVALIDITY for {folder}: {data!r}")
        return int(match.group(1))

    def change_uidvalidity(self, user: str, folder: str = "INBOX", next_uid: int = 101) -> int:
        """Make the server renumber ``folder`` (same mail, new UIDVALIDITY and UIDs).

        This is what a restored backup or a migrated mail store looks like to a client.
        Done on disk: Dovecot keeps the mail files and rebuilds its indexes.  Nobody may be
        logged in as ``user`` while it happens.
        """
        old = self.uidvalidity(user, folder)
        maildir = self.home(user) / "Maildir"
        if folder != "INBOX":
            maildir = maildir / f".{folder}"
        for path in maildir.iterdir():
            if path.name.startswith("dovecot") and path.is_file():
                path.unlink()
        new = old + 1000
        (maildir / "dovecot-uidlist").write_text(f"3 V{new} N{next_uid}\n")
        os.chown(maildir / "dovecot-uidlist", MAIL_UID, MAIL_GID)
        got = self.uidvalidity(user, folder)
        if got == old:
            raise DovecotError(f"UIDVALIDITY of {folder} did not change ({old})")
        return got


def _quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dovecot_fixture(scope: Any = "module") -> Callable[..., Iterator[Dovecot]]:
    """A pytest fixture (assign it to a name in a test module) yielding a running Dovecot."""

    @pytest.fixture(scope=scope)
    def dovecot() -> Iterator[Dovecot]:
        with Dovecot() as server:
            yield server

    return dovecot
