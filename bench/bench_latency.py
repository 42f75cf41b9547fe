"""Latency: an idle daemon (IMAP IDLE) gets one mail; how long until the digest is sent.

The daemon (SQLite, offline drafter) is started on an empty mailbox and warmed up with one
mail (the first mail pays one-off costs: the drafter's model, imports); then, ``--mails``
times, one homeowner mail is APPENDed and the clock runs until the approval digest for it
reaches the SMTP sink.  Prints each latency and the median.  Target: median <= 1.5 s.

    .venv/bin/python bench/bench_latency.py [--mails 8]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchlib import (
    DaemonProcess,
    Dovecot,
    KindCounter,
    SmtpSink,
    append_all,
    daemon_config,
    homeowner_mails,
    median,
    wait_until,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mails", type=int, default=8)
    args = parser.parse_args()
    mails = homeowner_mails(args.mails + 1, photo_share=0.0, seed=3)
    latencies = []
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp_name, \
            Dovecot() as dovecot, SmtpSink(on_message=(counter := KindCounter())) as sink:
        tmp = Path(tmp_name)
        user = "latency@acme-homes.example"
        dovecot.add_user(user)
        config = daemon_config(tmp, dovecot, sink, f"sqlite:///{tmp / 'w.sqlite3'}", user)
        with DaemonProcess(config) as daemon:
            daemon.wait_ready()
            for n, raw in enumerate(mails):
                time.sleep(1.0)  # idle again: the daemon is back in IDLE
                before = counter.count("digest")
                started = time.monotonic()
                append_all(dovecot, user, [raw])
                arrived = wait_until(lambda b=before: counter.count("digest") > b, 60,
                                     "the digest", daemon, interval=0.005)
                if n == 0:
                    print(f"  warm-up mail: {arrived - started:6.2f} s (one-off model fit)")
                    continue
                latencies.append(arrived - started)
                print(f"  mail {n}: {latencies[-1]:6.3f} s")
            daemon.terminate()
    print(f"median latency append -> digest sent: {median(latencies):.3f} s over "
          f"{len(latencies)} mails   target <= 1.5 s")


if __name__ == "__main__":
    main()
