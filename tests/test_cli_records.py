"""The records commands as an operator runs them: import, sr/wo list and show, inbox."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

CONFIG = """
[company]
name = "Acme Homes"
timezone = "America/Denver"
[mailbox]
address = "warranty@acme-homes.example"
[staff]
addresses = ["pat@acme-homes.example"]
[database]
url = "sqlite:///records.sqlite3"
[storage]
data_dir = "data"
"""

MAIL = (b"From: Dana <dana@example.com>\nTo: warranty@acme-homes.example\nSubject: Leak\n"
        b"Message-ID: <leak-1@example.com>\nContent-Type: text/plain\n\n"
        b"The kitchen sink is leaking into the cabinet.\n")


def run(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "warrantyd.daemon.cli", *args, "--config",
                           str(tmp / "config.toml")] if args[0] not in ("sr", "wo", "inbox")
                          else [sys.executable, "-m", "warrantyd.daemon.cli", args[0],
                                "--config", str(tmp / "config.toml"), *args[1:]],
                          capture_output=True, text=True, timeout=120, cwd=tmp)


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    (tmp_path / "config.toml").write_text(CONFIG)
    return tmp_path


def test_import_then_list_and_show(tmp: Path) -> None:
    (tmp / "homes.csv").write_text(
        "address,community,closing_date,homeowner_name,homeowner_email\n"
        "1 Elm St,Oaks,2025-05-01,Dana,dana@example.com\n")
    (tmp / "vendors.csv").write_text("name;email;trades\nAce Plumbing;ace@plumb.example;plumbing\n")
    homes = run(tmp, "import", "homes", str(tmp / "homes.csv"))
    assert homes.returncode == 0, homes.stderr
    assert "1 created" in homes.stdout
    vendors = run(tmp, "import", "vendors", str(tmp / "vendors.csv"))
    assert vendors.returncode == 0 and "1 created" in vendors.stdout

    # Process one homeowner mail through the real pipeline, without a mailbox.
    from warrantyd.daemon.config import load_config
    from warrantyd.daemon.drafting import make_drafter
    from warrantyd.daemon.process import Processor
    from warrantyd.storage.db import Database
    from warrantyd.storage.inbound import store_inbound

    config = load_config(tmp / "config.toml", partial=True)
    db = Database(config.database.url)
    with db.session() as s:
        store_inbound(s, mailbox="", uidvalidity=None, uid=None, raw=MAIL)
    import asyncio

    asyncio.run(Processor(config, db, make_drafter(config)).process_pending())
    db.dispose()

    listed = run(tmp, "wo", "list", "--json", "--property", "elm")
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["id"], r["trade"], r["status"]) for r in rows] == [("WO-1", "plumbing", "draft")]
    shown = run(tmp, "sr", "show", "SR-1", "--json")
    detail = json.loads(shown.stdout)
    assert {"id", "status", "homeowner", "property", "work_orders", "history",
            "language"} <= set(detail)
    assert detail["property"]["address"] == "1 Elm St"
    assert detail["property"]["community"] == "Oaks"
    assert detail["homeowner"]["email"] == "dana@example.com"
    wo = json.loads(run(tmp, "wo", "show", "WO-1", "--json").stdout)
    assert {"id", "status", "service_request", "trade", "description", "priority", "vendor",
            "scheduled_for", "history"} <= set(wo)
    assert wo["service_request"] == "SR-1"
    table = run(tmp, "wo", "list")
    assert "WO-1" in table.stdout and "plumbing" in table.stdout
    inbox = run(tmp, "inbox", "list")
    assert "done" in inbox.stdout and "dana@example.com" in inbox.stdout


def test_bad_rows_import_nothing_and_bad_refs_exit_2(tmp: Path) -> None:
    (tmp / "vendors.csv").write_text("name,email,trades\nAce,not-an-email,plumbng\n")
    bad = run(tmp, "import", "vendors", str(tmp / "vendors.csv"))
    assert bad.returncode == 1
    assert "vendors.csv:2" in bad.stderr and "nothing imported" in bad.stdout
    missing = run(tmp, "wo", "show", "WO-99")
    assert missing.returncode == 2 and "WO-99" in missing.stderr
    assert "Traceback" not in missing.stderr
    reprocess = run(tmp, "inbox", "reprocess", "42")
    assert reprocess.returncode == 2 and "no inbound message 42" in reprocess.stderr


def test_wo_create_makes_a_draft_on_the_request(tmp: Path) -> None:
    import asyncio

    from warrantyd.daemon.config import load_config
    from warrantyd.daemon.drafting import make_drafter
    from warrantyd.daemon.process import Processor
    from warrantyd.storage.db import Database
    from warrantyd.storage.inbound import store_inbound

    config = load_config(tmp / "config.toml", partial=True)
    db = Database(config.database.url)
    db.upgrade()
    with db.session() as s:
        store_inbound(s, mailbox="", uidvalidity=None, uid=None, raw=MAIL)
    asyncio.run(Processor(config, db, make_drafter(config)).process_pending())
    db.dispose()
    made = run(tmp, "wo", "create", "--sr", "SR-1", "--description",
               "Re-seal the shower door, master bath", "--json")
    assert made.returncode == 0, made.stderr
    wo = json.loads(made.stdout)
    assert wo["service_request"] == "SR-1" and wo["status"] == "draft"
    assert wo["trade"] in ("plumbing", "windows_doors", "flooring_tile", "other")
    assert any(h["actor"].startswith("cli:") for h in wo["history"])
    bad = run(tmp, "wo", "create", "--sr", "SR-9", "--description", "x")
    assert bad.returncode == 2 and "no service request SR-9" in bad.stderr
