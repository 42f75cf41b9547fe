"""LLM cost: one drafting call per service request, and a cache-friendly prompt prefix.

The real daemon (SQLite, ``[drafter] engine = "anthropic"``) is pointed at the fake Messages
API server from ``tests/support`` (the real SDK code path, nothing leaves the machine);
``--mails`` homeowner mails (1–3 issues, some with photos) are imported.  Checks and prints:

- calls to ``/v1/messages`` per service request (must be exactly 1);
- whether the prompt prefix marked with ``cache_control`` (the system blocks and tools) is
  byte-identical across requests, so the provider's prompt cache can serve it;
- the tokens the fake server reported, per request.

    .venv/bin/python bench/bench_llm_cost.py [--mails 20]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from benchlib import (
    DaemonProcess,
    Dovecot,
    KindCounter,
    SmtpSink,
    append_all,
    daemon_config,
    homeowner_mails,
    wait_until,
)
from fake_anthropic import DEFAULT_API_KEY, FakeAnthropic
from sqlalchemy import func, select

from warrantyd.storage.db import Database
from warrantyd.storage.models import ServiceRequest


def cached_prefix(body: dict) -> str:
    """Everything up to and including the last block marked ``cache_control``: tools, then
    system (the order the API builds the cache key in)."""
    return json.dumps({"model": body.get("model"), "tools": body.get("tools"),
                       "system": body.get("system")}, sort_keys=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mails", type=int, default=20)
    args = parser.parse_args()
    mails = homeowner_mails(args.mails, seed=5)
    os.environ["BENCH_ANTHROPIC_KEY"] = DEFAULT_API_KEY
    counter = KindCounter()
    with tempfile.TemporaryDirectory(prefix="bench-llm-") as tmp_name, Dovecot() as dovecot, \
            SmtpSink(on_message=counter) as sink, FakeAnthropic() as fake:
        tmp = Path(tmp_name)
        user = "llm@acme-homes.example"
        dovecot.add_user(user)
        append_all(dovecot, user, mails)
        db_url = f"sqlite:///{tmp / 'w.sqlite3'}"
        config = daemon_config(tmp, dovecot, sink, db_url, user)
        config.write_text(config.read_text().replace(
            '[drafter]\nengine = "offline"',
            f'[drafter]\nengine = "anthropic"\napi_key_env = "BENCH_ANTHROPIC_KEY"\n'
            f'base_url = "{fake.base_url}"'))
        with DaemonProcess(config, import_existing=True) as daemon:
            wait_until(lambda: counter.count("digest") >= len(mails), 180, "every digest",
                       daemon)
            daemon.terminate()
        db = Database(db_url)
        with db.session() as session:
            requests = session.scalar(select(func.count()).select_from(ServiceRequest)) or 0
            engines = sorted(set(session.scalars(select(ServiceRequest.engine))))
        db.dispose()
        calls = fake.message_requests
    prefixes = {cached_prefix(r.body) for r in calls}
    marked = sum(1 for r in calls if "cache_control" in json.dumps(r.body.get("system")))
    print(f"service requests: {requests}   drafting calls: {len(calls)}   "
          f"calls per request: {len(calls) / max(requests, 1):.2f} (must be 1.00)")
    print(f"engines recorded on the requests: {engines}")
    print(f"requests whose system prompt carries cache_control: {marked}/{len(calls)}")
    print(f"distinct cached prefixes (tools + system): {len(prefixes)} (must be 1)")
    if calls:
        size = len(cached_prefix(calls[0].body).encode())
        print(f"cached prefix size: {size:,} bytes of JSON")


if __name__ == "__main__":
    main()
