"""``wo list`` at scale: 1,000,000 work orders in PostgreSQL.

Creates a throwaway database, fills it server-side with ``generate_series`` (20,000 homes,
200 vendors, 500,000 service requests, 1,000,000 work orders of which ``--active`` are
still draft or in progress — a builder's archive is mostly completed work), ANALYZEs it,
then times the queries behind ``wo list --vendor``, ``--property`` and ``--needs-followup``
(first page of 50, the same code the CLI runs), median of ``--repeat`` runs each.
Target: <= 50 ms each.  The database is dropped at the end.

    .venv/bin/python bench/bench_queries.py [--work-orders 1000000] [--active 3000]
"""

from __future__ import annotations

import argparse
import time

from benchlib import median, postgres_database
from sqlalchemy import text

from warrantyd.storage.db import Database
from warrantyd.storage.queries import WorkOrderFilter, find_needing_followup, find_work_orders

FILL = [
    """INSERT INTO home (id, address, community, closing_date)
       SELECT g, g || ' Aspen Ridge Dr', 'Community ' || (g % 40), DATE '2024-01-01' + (g % 700)
       FROM generate_series(1, :homes) g""",
    """INSERT INTO homeowner (id, home_id, name, email)
       SELECT g, g, 'Owner ' || g, 'owner' || g || '@example.com'
       FROM generate_series(1, :homes) g""",
    """INSERT INTO vendor (id, name, email, trades, communities, aliases, active)
       SELECT g, 'Vendor ' || g || ' Services', 'dispatch' || g || '@vendor.example',
              '["plumbing"]', '[]', '[]', true
       FROM generate_series(1, :vendors) g""",
    """INSERT INTO service_request (id, status, homeowner_id, home_id, requester_email,
                                   requester_name, subject, body, usage, created_at, updated_at)
       SELECT g, 'resolved', 1 + g % :homes, 1 + g % :homes,
              'owner' || (1 + g % :homes) || '@example.com', 'Owner', 'Warranty items',
              'The faucet drips.', '{}',
              now() - make_interval(mins => (:srs - g)), now() - make_interval(mins => (:srs - g))
       FROM generate_series(1, :srs) g""",
    """INSERT INTO work_order (id, service_request_id, status, trade, priority, title,
                              description, vendor_id, needs_vendor, photos, flags,
                              created_at, updated_at, completed_at)
       SELECT g, 1 + (g - 1) / 2,
              CASE WHEN g > :wos - :active THEN
                   (CASE WHEN g % 3 = 0 THEN 'draft' ELSE 'in_progress' END)
                   ELSE 'completed' END,
              'plumbing', 'routine', 'Faucet drips', 'Repair the dripping kitchen faucet.',
              1 + g % :vendors, false, '[]', '[]',
              now() - make_interval(mins => (:wos - g) / 2),
              now() - make_interval(mins => (:wos - g) / 2),
              CASE WHEN g > :wos - :active THEN NULL
                   ELSE now() - make_interval(mins => (:wos - g) / 2) END
       FROM generate_series(1, :wos) g""",
    """UPDATE service_request SET status = 'in_progress'
       WHERE id > (:wos - :active) / 2""",
    """INSERT INTO history_event (at, service_request_id, work_order_id, event, actor, detail,
                                 internal)
       SELECT now() - interval '3 days', 1 + (g - 1) / 2, g, 'accepted', 'pat@acme.example',
              '', false
       FROM generate_series(:wos - :active + 1, :wos) g""",
]


def fill(db: Database, work_orders: int, active: int) -> float:
    params = {"homes": 20_000, "vendors": 200, "srs": work_orders // 2, "wos": work_orders,
              "active": active}
    started = time.monotonic()
    with db.engine.begin() as conn:
        for statement in FILL:
            conn.execute(text(statement), params)
        for table in ("home", "homeowner", "vendor", "service_request", "work_order",
                      "history_event"):
            conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                              f"(SELECT max(id) FROM {table}))"))
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    return time.monotonic() - started


def timed(db: Database, repeat: int, query: object) -> tuple[float, int]:
    times, count = [], 0
    for _ in range(repeat):
        with db.session() as session:
            started = time.perf_counter()
            rows = query(session)  # type: ignore[operator]
            for row in rows:  # touch what `wo list` prints, so lazy loads would show
                wo = getattr(row, "work_order", row)
                _ = (wo.service_request.home, wo.vendor, wo.service_request.homeowner)
            times.append((time.perf_counter() - started) * 1000)
            count = len(rows)
    return median(times), count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-orders", type=int, default=1_000_000)
    parser.add_argument("--active", type=int, default=3_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with postgres_database("wqueries") as url:
        db = Database(url)
        db.upgrade()
        seconds = fill(db, args.work_orders, args.active)
        print(f"{args.work_orders:,} work orders ({args.active:,} active) generated in "
              f"{seconds:.1f} s")
        cases = {
            "wo list --vendor 'Vendor 17 '": lambda s: find_work_orders(
                s, WorkOrderFilter(vendor="Vendor 17 ")),
            "wo list --property '1412 Aspen'": lambda s: find_work_orders(
                s, WorkOrderFilter(property="1412 Aspen")),
            "wo list --property 'Community 7'": lambda s: find_work_orders(
                s, WorkOrderFilter(property="Community 7")),
            "wo list --needs-followup": lambda s: find_needing_followup(s),
            "wo list --vendor 'Vendor 17 ' --needs-followup": lambda s: find_needing_followup(
                s, WorkOrderFilter(vendor="Vendor 17 ")),
        }
        for name, query in cases.items():
            ms, count = timed(db, args.repeat, query)
            verdict = "ok" if ms <= 50 else "SLOW"
            print(f"  {name:<48} {ms:8.1f} ms  ({count} rows)  target <= 50 ms: {verdict}")
        db.dispose()


if __name__ == "__main__":
    main()
