"""Intake throughput of the real daemon, against a floor, with the daemon's peak memory.

Daemon: N homeowner mails (1–3 issues each, 20 % with a ~200 KB photo) are put in a Dovecot
mailbox, then ``warrantyd run --import-existing`` (offline drafter, SQLite) is started; the
clock runs from the start of the process until every acknowledgement and every approval
digest has reached the SMTP sink.  The peak RSS (VmHWM) of the daemon and of its processing
worker, their PSS (memory together, shared library pages counted once) and the CPU time both
used (start-up included), are read at that moment.

Floor: the least any intake could do with the same mail — one IMAP connection fetching each
message with ``BODY.PEEK[]``, parsing it with mail-parser and committing its raw bytes and
text to SQLite, one message per transaction.

Prints msg/s of both (median of ``--runs``), the ratio, the daemon's CPU milliseconds per
mail (the figure to compare on a loaded machine) and the peak RSS of each process.
Targets: >= 40 msg/s, >= 0.7 of the floor, <= 150 MiB.

    .venv/bin/python bench/bench_intake.py [--mails 300] [--runs 3]
"""

from __future__ import annotations

import argparse
import imaplib
import re
import sqlite3
import tempfile
import time
from pathlib import Path

from benchlib import (
    PASSWORD,
    DaemonProcess,
    Dovecot,
    KindCounter,
    SmtpSink,
    append_all,
    children,
    cpu_seconds,
    daemon_config,
    homeowner_mails,
    median,
    peak_rss_mib,
    pss_mib,
    wait_until,
)


def run_daemon(dovecot: Dovecot, mails: list[bytes], tmp: Path, run: int
               ) -> tuple[float, float, tuple[float, float], float, float]:
    """One daemon run: (msg/s from process start, msg/s from first connect, peak RSS MiB of
    the daemon and of its worker, CPU ms per mail of both, PSS MiB of both at the end)."""
    user = f"intake{run}@acme-homes.example"
    dovecot.add_user(user)
    append_all(dovecot, user, mails)
    counter = KindCounter()
    with SmtpSink(on_message=counter) as sink:
        config = daemon_config(tmp / f"run{run}", dovecot, sink,
                               f"sqlite:///{tmp / f'run{run}' / 'w.sqlite3'}", user)
        daemon = DaemonProcess(config, import_existing=True)
        started = time.monotonic()
        daemon.start()
        try:
            connected = wait_until(lambda: "connected to" in daemon.log(), 60,
                                   "the daemon to connect", daemon, interval=0.01)
            n = len(mails)
            wait_until(lambda: counter.count("ack") >= n and counter.count("digest") >= n,
                       300, f"{n} acks and {n} digests", daemon, interval=0.01)
            finished = max(counter.last_at["ack"], counter.last_at["digest"])
            assert daemon.proc is not None
            workers = children(daemon.proc.pid)
            rss = (peak_rss_mib(daemon.proc.pid),
                   max((peak_rss_mib(pid) for pid in workers), default=0.0))
            cpu_ms = 1000 * cpu_seconds(daemon.proc.pid) / n
            pss = sum(pss_mib(pid) for pid in (daemon.proc.pid, *workers))
            daemon.terminate()
        finally:
            if daemon.alive():
                daemon.kill()
    return n / (finished - started), n / (finished - connected), rss, cpu_ms, pss


def run_floor(dovecot: Dovecot, mails: list[bytes], tmp: Path, run: int) -> float:
    """Fetch, parse with mail-parser, commit raw + text to SQLite, one message at a time."""
    import mailparser

    user = f"floor{run}@acme-homes.example"
    dovecot.add_user(user)
    append_all(dovecot, user, mails)
    db = sqlite3.connect(tmp / f"floor{run}.sqlite3")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE mail (uid INTEGER PRIMARY KEY, raw BLOB, subject TEXT, body TEXT)")
    started = time.monotonic()
    imap = imaplib.IMAP4(dovecot.host, dovecot.port)
    imap.login(user, PASSWORD)
    imap.select("INBOX")
    _typ, data = imap.uid("SEARCH", "ALL")
    uids = [int(u) for u in data[0].split()]
    for uid in uids:
        _typ, data = imap.uid("FETCH", str(uid), "(BODY.PEEK[])")
        raw = next(part[1] for part in data if isinstance(part, tuple)
                   and re.search(rb"BODY\[\]", part[0]))
        parsed = mailparser.parse_from_bytes(raw)
        db.execute("INSERT INTO mail VALUES (?, ?, ?, ?)",
                   (uid, raw, parsed.subject, "\n".join(parsed.text_plain) or parsed.body))
        db.commit()
    imap.logout()
    elapsed = time.monotonic() - started
    db.close()
    return len(uids) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mails", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    mails = homeowner_mails(args.mails)
    size = sum(map(len, mails)) / len(mails) / 1024
    print(f"{args.mails} homeowner mails, mean size {size:.0f} KiB, {args.runs} runs each")
    daemon_rates, connected_rates, floors, cpu = [], [], [], []
    rss: list[tuple[float, float]] = []
    pss: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-intake-") as tmp_name, Dovecot() as dovecot:
        tmp = Path(tmp_name)
        for run in range(args.runs):
            floors.append(run_floor(dovecot, mails, tmp, run))
            whole, connected, peak, cpu_ms, pss_end = run_daemon(dovecot, mails, tmp, run)
            daemon_rates.append(whole)
            connected_rates.append(connected)
            rss.append(peak)
            cpu.append(cpu_ms)
            pss.append(pss_end)
            print(f"  run {run + 1}: floor {floors[-1]:6.1f} msg/s   daemon {whole:5.1f} msg/s "
                  f"({connected:5.1f} from connect)   CPU {cpu_ms:5.1f} ms/mail   "
                  f"peak RSS {peak[0]:5.1f} + worker {peak[1]:5.1f} MiB   "
                  f"PSS at the end {pss_end:5.1f} MiB")
    floor, daemon = median(floors), median(daemon_rates)
    print(f"floor (fetch + mail-parser + SQLite commit): {floor:6.1f} msg/s (median)")
    print(f"daemon (until every ack and digest sent):    {daemon:6.1f} msg/s (median; "
          f"{median(connected_rates):.1f} from first connect)   target >= 40")
    print(f"ratio daemon / floor:                         {daemon / floor:6.2f}   target >= 0.7")
    print(f"CPU per mail, daemon + worker (start-up incl.): {median(cpu):4.1f} ms (median)")
    main, worker = max(r[0] for r in rss), max(r[1] for r in rss)
    print(f"peak RSS of the daemon:                       {main:6.1f} MiB, of its worker "
          f"{worker:6.1f} MiB (max; together {max(sum(r) for r in rss):.1f})   target <= 150")
    print(f"PSS of both at the end (shared pages once): {max(pss):6.1f} MiB (max)")


if __name__ == "__main__":
    main()
