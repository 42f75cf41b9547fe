"""Several daemons on one PostgreSQL database, serving two division mailboxes.

Issue 7's two promises at once: each division's mailbox is read by exactly one daemon (a
lock of its own, so another daemon takes it over within seconds when its reader dies), and
each division's mail is handled in that division (its requests, acknowledgements From its
own address, digests to its own staff) whichever daemon does the work.  One Dovecot holds
both mailboxes; three daemons run the same config; the reader of the north mailbox is
killed with SIGKILL while mail of both divisions is being processed.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
from config_builder import NORA, NORTH
from daemon_harness import (
    IN_FLIGHT,
    MAILBOX,
    STAFF,
    DaemonProcess,
    count_rows,
    division_config,
    homeowner_mail,
    log_problems,
    reader_pid,
    wait_for,
    write_config,
)
from dovecot import Dovecot
from smtp_sink import ReceivedMessage, SmtpSink
from sqlalchemy import select

from warrantyd.daemon.leader import PostgresMailboxLock
from warrantyd.storage.db import Database
from warrantyd.storage.models import Digest, InboundMessage, OutboundMessage, ServiceRequest

pytest_plugins = ("e2e_fixtures",)
pytestmark = pytest.mark.slow

NORTH_FROM_NAME = "Acme Homes North Warranty"
MAIN_BOX, NORTH_BOX = f"{MAILBOX}/INBOX", f"{NORTH}/INBOX"
"""The mailboxes' ``address/folder`` keys: lock names, ``mailbox_state`` and row columns."""
DAEMONS = 3
BEFORE_KILL, AFTER_KILL = 25, 15
"""Mails per mailbox appended before the SIGKILL and after it (40 each in all)."""
PER_BOX = BEFORE_KILL + AFTER_KILL
ONE_ISSUE = "Hi,\n\nThe kitchen faucet drips all the time ({tag}).\n\nThanks,\nOwner\n"
TWO_ISSUES = ("Hi,\n\nThe kitchen faucet at our house drips all the time ({tag}).\n"
              "Also there is a nail pop in the upstairs hallway ceiling.\n\nThanks,\nOwner\n")


def _owner(division: str, n: int) -> str:
    return f"owner-{division}-{n}@example.com"


def _issues(n: int) -> int:
    """Every third request names two issues (a plumbing and a drywall work order)."""
    return 2 if n % 3 == 0 else 1


def _feed(dovecot: Dovecot, users: dict[str, str], numbers: range) -> None:
    """APPEND mails ``numbers`` to both mailboxes, alternating, so both divisions' mail is
    in flight together."""
    with dovecot.client(users["main"]) as main, dovecot.client(users["north"]) as north:
        for n in numbers:
            for division, imap, to in (("main", main, MAILBOX), ("north", north, NORTH)):
                body = (TWO_ISSUES if _issues(n) == 2 else ONE_ISSUE).format(
                    tag=f"{division} {n}")
                raw = homeowner_mail(n, sender=_owner(division, n), body=body, to=to,
                                     subject=f"Warranty items {division} #{n}")
                assert imap.append("INBOX", "", None, raw)[0] == "OK"


def _done(db: Database, mailbox: str | None = None) -> int:
    where = [InboundMessage.status == "done"]
    if mailbox is not None:
        where.append(InboundMessage.mailbox == mailbox)
    return count_rows(db, InboundMessage, *where)


def _config(tmp: Path, dovecot: Dovecot, sink: SmtpSink, db_url: str, main_user: str,
            north_user: str) -> Path:
    """The one config every daemon runs (each in its own directory, for its own log)."""
    tmp.mkdir()
    north = division_config(
        "north", address=NORTH, imap_user=north_user, staff=[NORA], from_name=NORTH_FROM_NAME,
        vendors=[{"name": "North Plumbing", "email": "dispatch@north-plumbing.example.net",
                  "trades": ["plumbing"]}])
    return write_config(tmp, dovecot=dovecot, smtp_port=sink.port, db_url=db_url,
                        imap_user=main_user, extra=north)


def _kind(mail: ReceivedMessage) -> str:
    return str(mail.message["X-Warrantyd-Kind"] or "")


def _sender(mail: ReceivedMessage) -> tuple[str, str, str]:
    """(From address, From display name, envelope sender)."""
    [author] = mail.message["From"].addresses
    return author.addr_spec, author.display_name, mail.mail_from


def test_three_daemons_two_division_mailboxes_and_the_north_reader_killed(
        tmp_path: Path, dovecot: Dovecot, sink: SmtpSink, postgres_url: str,
        mailbox_user: str) -> None:
    main_user, north_user = mailbox_user, "n" + mailbox_user
    dovecot.add_user(north_user)
    users = {"main": main_user, "north": north_user}
    db = Database(postgres_url)
    db.upgrade()
    # The test holds the main mailbox's lock while the daemons start, so the first reader
    # takes only the north one; that daemon is then frozen (its locks held) while the main
    # lock is let go, so another daemon reads main.  Killing the north reader then shows
    # a mailbox taken over while the other mailbox's reader carries on undisturbed.
    main_lock = PostgresMailboxLock(db, MAIN_BOX)
    assert main_lock.try_acquire()
    daemons = [DaemonProcess(_config(tmp_path / f"d{i}", dovecot, sink, postgres_url,
                                     main_user, north_user), import_existing=True).start()
               for i in range(DAEMONS)]
    try:
        wait_for(lambda: all("warrantyd running for" in d.log() for d in daemons), 60,
                 "every daemon to start", daemons[0])
        north_pid = wait_for(lambda: reader_pid(db, NORTH_BOX), 30, "a north reader",
                             daemons[0])
        victim = next(d for d in daemons if d.proc is not None and d.proc.pid == north_pid)
        survivors = [d for d in daemons if d is not victim]
        survivor_pids = {d.proc.pid for d in survivors if d.proc is not None}
        victim.pause()
        try:
            main_lock.release()
            main_pid = wait_for(lambda: reader_pid(db, MAIN_BOX), 30,
                                "another daemon to read the main mailbox", survivors[0])
        finally:
            victim.resume()
        assert main_pid in survivor_pids

        _feed(dovecot, users, range(BEFORE_KILL))
        wait_for(lambda: _done(db, NORTH_BOX) >= 5, 60, "north mail being processed",
                 daemons[0])
        assert (reader_pid(db, NORTH_BOX), reader_pid(db, MAIN_BOX)) == (north_pid, main_pid)
        victim.kill()
        assert _done(db, NORTH_BOX) < BEFORE_KILL, "north's backlog was done before the kill"
        # The dead reader's session closes with its process, so PostgreSQL frees its lock at
        # once; the others ask every few seconds (leader.RETRY_SECONDS).
        wait_for(lambda: reader_pid(db, NORTH_BOX) in survivor_pids, 15,
                 "a surviving daemon to take over the north mailbox", survivors[0])
        _feed(dovecot, users, range(BEFORE_KILL, PER_BOX))  # north: only the successor reads it

        wait_for(lambda: _done(db) == 2 * PER_BOX, 60, "every mail processed", survivors[0])
        wait_for(lambda: count_rows(db, OutboundMessage, OutboundMessage.status != "sent") == 0,
                 30, "every mail sent", survivors[0])
        wait_for(lambda: all(len(dovecot.list_uids(u, "Processed")) == PER_BOX
                             for u in users.values()), 30,
                 "every mail filed in its mailbox's Processed folder", survivors[0])
        # Read before shutdown: a survivor stopped first hands its mailboxes to the other.
        logs = [d.log() for d in daemons]
        for daemon in survivors:
            assert daemon.terminate() == 0, log_problems(daemon.log())
    finally:
        for daemon in daemons:
            if daemon.alive():
                daemon.kill()
    report = "\n".join(f"--- daemon {d.proc.pid if d.proc else '?'} ---\n{log_problems(log)}"
                       for d, log in zip(daemons, logs, strict=True))

    # One reader per mailbox at a time: the north mailbox had two in all (the victim and its
    # successor); the main one kept its reader throughout.
    assert sum(f"now reads {NORTH_BOX}" in log for log in logs) == 2, report
    assert [f"now reads {MAIN_BOX}" in log for log in logs] == [
        d.proc is not None and d.proc.pid == main_pid for d in daemons], report
    for user in users.values():
        assert dovecot.list_uids(user, "INBOX") == []

    # Exactly once: one done row per mail in its mailbox, one request per row, in the
    # division of that mailbox, with the work orders its mail asked for.
    with db.session() as s:
        rows = Counter((r.mailbox, r.status) for r in s.scalars(select(InboundMessage)))
        assert rows == {(MAIN_BOX, "done"): PER_BOX, (NORTH_BOX, "done"): PER_BOX}, rows
        requests = list(s.scalars(select(ServiceRequest)))
        assert len(requests) == 2 * PER_BOX
        assert len({sr.inbound_message_id for sr in requests}) == 2 * PER_BOX
        box_of_row = dict(s.execute(select(InboundMessage.id, InboundMessage.mailbox)).all())
        refs: dict[str, set[str]] = {"main": set(), "north": set()}
        for sr in requests:
            division = "north" if box_of_row[sr.inbound_message_id] == NORTH_BOX else "main"
            n = int(sr.requester_email.split("-")[2].split("@")[0])
            assert sr.requester_email == _owner(division, n), (sr.ref, sr.requester_email)
            assert sr.division == division, (sr.ref, sr.division)
            assert len(sr.work_orders) == _issues(n), (sr.ref, len(sr.work_orders))
            refs[division].add(sr.ref)
        # Immediate digests: one per request, to its own division's staff.
        digests = Counter((d.division, d.service_request_id) for d in s.scalars(select(Digest)))
        assert sorted(digests.values()) == [1] * 2 * PER_BOX
        assert {(d, sr_id) for d, sr_id in digests} == {(sr.division, sr.id) for sr in requests}
        queued = Counter((m.kind, m.from_addr, m.to_addr.lower())
                         for m in s.scalars(select(OutboundMessage)))
    assert queued == {
        **{("ack", MAILBOX, _owner("main", n)): 1 for n in range(PER_BOX)},
        **{("ack", NORTH, _owner("north", n)): 1 for n in range(PER_BOX)},
        ("digest", MAILBOX, STAFF): PER_BOX, ("digest", NORTH, NORA): PER_BOX}, queued

    # Nothing sent twice, except at most the mail in flight at the SIGKILL (one per SMTP
    # connection): its "250 OK"
    # may have come just before the kill, before its row was marked sent (see
    # test_daemon_e2e); it goes out again with the same Message-ID and bytes.
    ids = Counter(m.message_id for m in sink.messages)
    assert len(ids) == 4 * PER_BOX, "a queued mail was lost, or a mail queued twice"
    doubled = [mid for mid, n in ids.items() if n > 1]
    assert len(doubled) <= IN_FLIGHT and all(ids[mid] == 2 for mid in doubled), doubled
    for mid in doubled:
        first, second = sink.by_message_id(mid)
        assert first.raw == second.raw

    # Each division's mail goes out From its own mailbox, its digests to its own staff only.
    once = {m.message_id: m for m in sink.messages}.values()
    for division, address, name, staff in (("main", MAILBOX, "Acme Homes Warranty", STAFF),
                                           ("north", NORTH, NORTH_FROM_NAME, NORA)):
        acks = [m for m in once if _kind(m) == "ack" and m.rcpt_tos[0].startswith(
            f"owner-{division}-")]
        assert len(acks) == PER_BOX and {m.rcpt_tos[0] for m in acks} == {
            _owner(division, n) for n in range(PER_BOX)}
        assert {_sender(m) for m in acks} == {(address, name, address)}, division
        digests_sent = [m for m in once if _kind(m) == "digest" and m.rcpt_tos == (staff,)]
        assert len(digests_sent) == PER_BOX
        assert {_sender(m)[0] for m in digests_sent} == {address}, division
        text = " ".join(m.message.get_body(("plain",)).get_content() for m in digests_sent)
        other = refs["north" if division == "main" else "main"]
        assert all(re.search(rf"\b{ref}\b", text) for ref in refs[division]), division
        assert not any(re.search(rf"\b{ref}\b", text) for ref in other), division
    assert {m.rcpt_tos for m in once if _kind(m) == "digest"} == {(STAFF,), (NORA,)}
    db.dispose()
