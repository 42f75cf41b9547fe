"""``warrantyd demo``: the sandbox mail servers, the scripted story, and Ctrl-C.

The demo runs as a child process (the real command), stopped by its own PID.
"""

from __future__ import annotations

import imaplib
import os
import signal
import smtplib
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from warrantyd.daemon.demo import CAST, PASSWORD, STAFF, WARRANTY
from warrantyd.daemon.demo_servers import DemoMailServers, mailbox_user
from warrantyd.storage.db import Database
from warrantyd.storage.models import ServiceRequest, WorkOrder


def test_plus_addresses_deliver_to_their_account() -> None:
    assert mailbox_user("Warranty+Tok3n@Acme-Homes.example") == "warranty@acme-homes.example"
    assert mailbox_user("<pat@acme-homes.example>") == "pat@acme-homes.example"


async def test_sandbox_servers_deliver_and_serve_imap(tmp_path: Path) -> None:
    import asyncio

    servers = DemoMailServers(tmp_path, {"warranty@acme.example": "pw", "pat@acme.example": "pw"},
                              imap_port=0, smtp_port=0)
    await servers.start()
    try:
        def exchange() -> tuple[dict[str, object], list[bytes], bool]:
            with smtplib.SMTP(servers.host, servers.smtp_port) as smtp:
                refused = smtp.sendmail("pat@acme.example",
                                        ["warranty+abc@acme.example", "x@elsewhere.example"],
                                        b"From: pat@acme.example\r\nSubject: hi\r\n\r\nhello\r\n")
            imap = imaplib.IMAP4(servers.host, servers.imap_port)
            imap.login("warranty@acme.example", "pw")
            imap.select("INBOX")
            _, data = imap.uid("FETCH", "1:*", "(BODY.PEEK[])")
            bodies = [part[1] for part in data if isinstance(part, tuple)]
            imap.create("Processed")
            moved = imap.uid("MOVE", "1", "Processed")[0] == "OK"
            imap.logout()
            bad = imaplib.IMAP4(servers.host, servers.imap_port)
            try:
                bad.login("pat@acme.example", "wrong")
                refused_login = False
            except imaplib.IMAP4.error:
                refused_login = True
            return refused, bodies, moved and refused_login

        refused, bodies, ok = await asyncio.to_thread(exchange)
    finally:
        await servers.stop()
    assert list(refused) == ["x@elsewhere.example"]
    assert len(bodies) == 1 and b"hello" in bodies[0]
    assert b"Return-Path: <pat@acme.example>" in bodies[0]
    assert ok


def _start(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
    out = tmp_path / "demo.out"
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "warrantyd.daemon.cli", "demo", "--data-dir",
             str(tmp_path / "sandbox"), *args],
            stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    return proc, out


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)


@pytest.mark.slow
def test_demo_script_plays_the_whole_story(tmp_path: Path) -> None:
    proc, out = _start(tmp_path, "--script")
    try:
        code = proc.wait(timeout=240)
    finally:
        _stop(proc)
    text = out.read_text(errors="replace")
    assert code == 0, text
    for step in ("homeowner got: [SR-1] We received your request",
                 f"staff {STAFF.address} got: [SR-1] Approval digest",
                 "staff got the receipt", "got: [WO-1]", "(job page: HTTP 200)",
                 "Visit scheduled", "WO-1 completed", "Your warranty request is resolved",
                 "demo story complete"):
        assert step in text, (step, text)
    db = Database(f"sqlite:///{tmp_path / 'sandbox' / 'warrantyd.sqlite3'}")
    try:
        with db.session() as s:
            assert [sr.status for sr in s.scalars(select(ServiceRequest))] == ["resolved"]
            orders = list(s.scalars(select(WorkOrder)))
            assert len(orders) >= 2
            assert all(wo.status == "completed" and wo.scheduled_for for wo in orders)
    finally:
        db.dispose()


@pytest.mark.slow
def test_demo_prints_logins_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    proc, out = _start(tmp_path)
    try:
        deadline = time.monotonic() + 120
        while "Ctrl-C stops the demo." not in out.read_text(errors="replace"):
            assert proc.poll() is None, out.read_text(errors="replace")
            assert time.monotonic() < deadline, out.read_text(errors="replace")
            time.sleep(0.2)
        text = out.read_text(errors="replace")
        for person in CAST:
            assert f"{person.address}" in text
        assert f"password: {PASSWORD}" in text and "/login" in text
        imap_port = int(text.split("IMAP  127.0.0.1 port ")[1].split()[0])
        # A person's mail client can log in as staff and read the digest.
        imap = imaplib.IMAP4("127.0.0.1", imap_port)
        imap.login(STAFF.address, PASSWORD)
        imap.select("INBOX", readonly=True)
        _, data = imap.uid("SEARCH", "ALL")
        assert data[0].split(), "the digest is in the staff mailbox"
        imap.logout()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0, out.read_text(errors="replace")
    finally:
        _stop(proc)
    assert WARRANTY.address in out.read_text(errors="replace")
