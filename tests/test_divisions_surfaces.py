"""What operators see of divisions on the command line, on both databases: ``--division``
on ``sr list``, ``wo list``, ``inbox list`` and ``import``, and the ``division`` field of
the JSON rows and records (an addition to the contract: every other field is unchanged)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from warrantyd.daemon.cli import main
from warrantyd.daemon.reports import render_sr_table, render_wo_table
from warrantyd.storage.db import Database
from warrantyd.storage.inbound import store_inbound
from warrantyd.storage.models import Home, InboundMessage, ServiceRequest, Vendor, WorkOrder

CONFIG = """
[company]
name = "Acme Homes"
timezone = "America/Denver"
[mailbox]
address = "warranty@acme-homes.example"
[staff]
addresses = ["pat@acme-homes.example"]
[database]
url = "{url}"
[storage]
data_dir = "data"

[[divisions]]
name = "north"
[divisions.mailbox]
address = "north@acme-homes.example"
[divisions.staff]
addresses = ["nora@acme-homes.example"]
"""


@dataclass
class World:
    config: Path
    main_sr: int
    main_wo: int
    north_sr: int
    north_wo: int


@pytest.fixture
def world(tmp_path: Path, database: Database) -> World:
    """One request with one draft in each division, and one inbound mail in each mailbox."""
    path = tmp_path / "config.toml"
    path.write_text(CONFIG.format(url=database.url))
    ids: dict[str, tuple[int, int]] = {}
    with database.session() as s:
        for division, subject in (("main", "MAIN-LEAK"), ("north", "NORTH-FURNACE")):
            sr = ServiceRequest(division=division, status="open", subject=subject,
                                requester_email=f"{division}@example.com",
                                requester_name=division.title())
            s.add(sr)
            s.flush()
            wo = WorkOrder(service_request_id=sr.id, status="draft", trade="plumbing",
                           description=f"{subject} work", title=subject,
                           flags=["vendor email bounced"])  # needs follow-up at once
            s.add(wo)
            s.flush()
            ids[division] = (sr.id, wo.id)
        for uid, mailbox in ((1, "warranty@acme-homes.example/INBOX"),
                             (2, "north@acme-homes.example/INBOX")):
            store_inbound(s, mailbox=mailbox, uidvalidity=1, uid=uid,
                          raw=f"From: x@example.com\nSubject: MAIL-{uid}\n\nx\n".encode())
    return World(path, *ids["main"], *ids["north"])


def cli(capsys: pytest.CaptureFixture[str], world: World, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([args[0], "--config", str(world.config), *args[1:]])
    out, err = capsys.readouterr()
    return code, out, err


def rows(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_lists_narrow_to_a_division_and_every_row_names_its_division(
        capsys: pytest.CaptureFixture[str], world: World) -> None:
    code, out, _ = cli(capsys, world, "sr", "list", "--json")
    assert code == 0
    assert {(r["id"], r["division"]) for r in rows(out)} == {
        (f"SR-{world.main_sr}", "main"), (f"SR-{world.north_sr}", "north")}
    code, out, _ = cli(capsys, world, "sr", "list", "--division", "north", "--json")
    assert code == 0 and [r["id"] for r in rows(out)] == [f"SR-{world.north_sr}"]
    code, out, _ = cli(capsys, world, "wo", "list", "--division", "main", "--json")
    assert code == 0
    assert [(r["id"], r["division"]) for r in rows(out)] == [(f"WO-{world.main_wo}", "main")]
    code, out, _ = cli(capsys, world, "wo", "list", "--division", "NORTH", "--json")
    assert [r["id"] for r in rows(out)] == [f"WO-{world.north_wo}"]
    # The follow-up list narrows the same way.
    code, out, _ = cli(capsys, world, "wo", "list", "--needs-followup", "--json")
    assert code == 0 and len(rows(out)) == 2
    code, out, _ = cli(capsys, world, "wo", "list", "--needs-followup", "--division", "north",
                       "--json")
    assert code == 0 and [(r["id"], r["division"]) for r in rows(out)] == [
        (f"WO-{world.north_wo}", "north")]


def test_show_records_carry_their_division(capsys: pytest.CaptureFixture[str],
                                           world: World) -> None:
    code, out, _ = cli(capsys, world, "sr", "show", f"SR-{world.north_sr}", "--json")
    (shown,) = rows(out)
    assert code == 0 and shown["division"] == "north"
    assert [w["division"] for w in shown["work_orders"]] == ["north"]
    code, out, _ = cli(capsys, world, "wo", "show", f"WO-{world.main_wo}", "--json")
    assert code == 0 and rows(out)[0]["division"] == "main"
    code, out, _ = cli(capsys, world, "sr", "show", f"SR-{world.north_sr}")
    assert "Division: north" in " ".join(out.split())


def test_an_unknown_division_is_a_usage_error_naming_the_configured_ones(
        capsys: pytest.CaptureFixture[str], world: World) -> None:
    for command in (("sr", "list"), ("wo", "list"), ("inbox", "list")):
        code, out, err = cli(capsys, world, *command, "--division", "south")
        assert code == 2 and out == "", command
        assert "'south' is not a configured division" in err
        assert "the configured ones are: main, north" in err


def test_tables_show_a_division_column_only_where_there_are_divisions(
        capsys: pytest.CaptureFixture[str], world: World) -> None:
    _, out, _ = cli(capsys, world, "wo", "list")
    header = out.splitlines()[0].split()
    assert header[:2] == ["WO", "DIVISION"]
    north = next(line for line in out.splitlines() if line.startswith(f"WO-{world.north_wo} "))
    assert north.split()[1] == "north"
    _, out, _ = cli(capsys, world, "sr", "list", "--division", "north")
    assert out.splitlines()[0].split()[:2] == ["SR", "DIVISION"]
    # Main-division rows alone print exactly as before divisions existed.
    _, out, _ = cli(capsys, world, "wo", "list", "--division", "main", "--json")
    main_rows = rows(out)
    assert "DIVISION" not in render_wo_table(main_rows)
    without = [{k: v for k, v in r.items() if k != "division"} for r in main_rows]
    assert render_wo_table(main_rows) == render_wo_table(without)
    _, out, _ = cli(capsys, world, "sr", "list", "--division", "main", "--json")
    assert "DIVISION" not in render_sr_table(rows(out))


def test_inbox_list_names_and_narrows_to_the_mailbox_division(
        capsys: pytest.CaptureFixture[str], world: World) -> None:
    code, out, _ = cli(capsys, world, "inbox", "list", "--json")
    assert code == 0
    assert {(r["uid"], r["division"]) for r in rows(out)} == {(1, "main"), (2, "north")}
    _, out, _ = cli(capsys, world, "inbox", "list", "--division", "north", "--json")
    assert [r["uid"] for r in rows(out)] == [2]
    _, out, _ = cli(capsys, world, "inbox", "list", "--division", "main", "--json")
    assert [r["uid"] for r in rows(out)] == [1]


def test_inbox_list_says_which_mail_an_ignored_copy_repeats(
        capsys: pytest.CaptureFixture[str], world: World, database: Database) -> None:
    """One mail to both mailboxes: the copy that did not act says which one did."""
    with database.session() as s:
        copy = s.scalars(select(InboundMessage).where(InboundMessage.uid == 2)).one()
        copy.status, copy.classification = "ignored", "duplicate"
        copy.reason = "another copy of this mail (Message-ID <m@x>) was handled as inbound 1"
    _, out, _ = cli(capsys, world, "inbox", "list", "--json")
    [row] = [r for r in rows(out) if r["uid"] == 2]
    assert row["classification"] == "duplicate" and "handled as inbound 1" in row["reason"]
    _, out, _ = cli(capsys, world, "inbox", "list")
    assert "why: another copy of this mail" in out


def test_import_files_vendors_and_homes_in_the_division_named(
        capsys: pytest.CaptureFixture[str], world: World, database: Database,
        tmp_path: Path) -> None:
    vendors = tmp_path / "vendors.csv"
    vendors.write_text("name,email,trades\nAce Plumbing,ace@plumb.example,plumbing\n")
    homes = tmp_path / "homes.csv"
    homes.write_text("address,community,homeowner_name,homeowner_email\n"
                     "9 Pine Ct,Pines,Ola,ola@example.com\n")
    code, out, _ = cli(capsys, world, "import", "vendors", str(vendors), "--division", "north")
    assert code == 0 and "1 created" in out and "division north" in out
    code, out, _ = cli(capsys, world, "import", "homes", str(homes), "--division", "north")
    assert code == 0 and "1 created" in out
    # The same company imported for the main division is a second vendor row.
    code, out, _ = cli(capsys, world, "import", "vendors", str(vendors))
    assert code == 0 and "1 created" in out and "division main" in out
    with database.session() as s:
        assert sorted(s.scalars(select(Vendor.division).where(
            Vendor.email == "ace@plumb.example"))) == ["main", "north"]
        assert s.scalars(select(Home.division).where(Home.address == "9 Pine Ct")).one() \
            == "north"
    code, _, err = cli(capsys, world, "import", "homes", str(homes), "--division", "south")
    assert code == 2 and "configured ones are: main, north" in err


def test_explain_reads_files_as_mail_to_the_division_named(
        capsys: pytest.CaptureFixture[str], world: World, tmp_path: Path) -> None:
    mail = tmp_path / "leak.eml"
    mail.write_bytes(b"From: Zed <z@example.org>\r\nTo: someone@example.org\r\n"
                     b"Subject: Faucet\r\nMessage-ID: <f1@example.org>\r\n\r\n"
                     b"The kitchen faucet drips all night.\r\n")
    code, out, _ = cli(capsys, world, "explain", str(mail), "--json")
    assert code == 0 and json.loads(out)["division"] == "main"
    code, out, _ = cli(capsys, world, "explain", str(mail), "--division", "North", "--json")
    assert code == 0 and json.loads(out)["division"] == "north"
    code, out, _ = cli(capsys, world, "explain", str(mail), "--division", "North")
    assert "division: north" in out
    code, _, err = cli(capsys, world, "explain", str(mail), "--division", "south")
    assert code == 2 and "north" in err and "main" in err
