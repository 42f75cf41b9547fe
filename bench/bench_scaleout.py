"""Scale-out: throughput of 1, 2 and 3 daemons sharing one PostgreSQL database and mailbox.

For each process count, a fresh database and mailbox get ``--mails`` homeowner mails
(1–3 issues, 20 % with a ~200 KB photo); the daemons (offline drafter, ``[storage] blobs =
"database"``) start together with ``--import-existing``; the clock runs from their start
until every acknowledgement and digest reached the SMTP sink.  One daemon reads the
mailbox; all of them process and send.  Prints msg/s per process count, the speed-up over
one process, and how the processed mail spread over the daemons.

    .venv/bin/python bench/bench_scaleout.py [--mails 200] [--processes 1 2 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from pathlib import Path

from benchlib import (
    DaemonProcess,
    Dovecot,
    KindCounter,
    SmtpSink,
    append_all,
    daemon_config,
    homeowner_mails,
    postgres_database,
    wait_until,
)
from sqlalchemy import select

from warrantyd.storage.db import Database
from warrantyd.storage.models import InboundMessage


def run(dovecot: Dovecot, mails: list[bytes], processes: int, tmp: Path) -> tuple[float, str]:
    user = f"scale{processes}@acme-homes.example"
    dovecot.add_user(user)
    append_all(dovecot, user, mails)
    counter = KindCounter()
    with postgres_database("wscale") as url, SmtpSink(on_message=counter) as sink:
        db = Database(url)
        db.upgrade()
        daemons = [DaemonProcess(daemon_config(tmp / f"p{processes}-{i}", dovecot, sink, url,
                                               user, blobs="database"), import_existing=True)
                   for i in range(processes)]
        started = time.monotonic()
        for daemon in daemons:
            daemon.start()
        try:
            n = len(mails)
            wait_until(lambda: counter.count("ack") >= n and counter.count("digest") >= n,
                       600, f"{n} acks and digests", daemons[0])
            finished = max(counter.last_at["ack"], counter.last_at["digest"])
            for daemon in daemons:
                daemon.terminate()
        finally:
            for daemon in daemons:
                if daemon.alive():
                    daemon.kill()
        with db.session() as session:
            spread = Counter(session.scalars(select(InboundMessage.claimed_by)))
        db.dispose()
    return n / (finished - started), " / ".join(str(c) for _, c in spread.most_common())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mails", type=int, default=200)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args()
    mails = homeowner_mails(args.mails)
    rates: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-scaleout-") as tmp_name, \
            Dovecot() as dovecot:
        for processes in args.processes:
            rates[processes], spread = run(dovecot, mails, processes, Path(tmp_name))
            base = rates[min(rates)]
            print(f"  {processes} daemon(s): {rates[processes]:6.1f} msg/s   "
                  f"x{rates[processes] / base:4.2f}   mail processed per daemon: {spread}")


if __name__ == "__main__":
    main()
