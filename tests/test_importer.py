"""``warrantyd import homes|vendors``: spreadsheet exports in, upserted rows out, or nothing."""

from __future__ import annotations

import io
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select

from warrantyd.daemon.config import HomeConfig, HomeownerConfig, VendorConfig
from warrantyd.daemon.importer import (
    DirectoryWriter,
    TerminalProgress,
    decode_bytes,
    import_homes,
    import_vendors,
    normalize_trade,
    parse_closing_date,
    parse_people,
    render_progress_bar,
    sniff_delimiter,
)
from warrantyd.storage.db import Database
from warrantyd.storage.models import Home, Homeowner, Vendor

HOMES = """address,community,closing_date,homeowner_name,homeowner_email
12 Oak Ridge Dr,Oak Ridge,2024-05-01,Ann Lee,ann@example.com
12 Oak Ridge Dr,Oak Ridge,2024-05-01,Bo Lee,BO@example.com
7 Elm Ct,Elm Park,3/14/2025,Cy Park,cy@example.net
"""

VENDORS = """Name,Email,Trades,Communities,Aliases
Ace Plumbing,office@ace.example,plumbing,Oak Ridge;Elm Park,Ace|Ace Plumbing Co
Volt Bros,jobs@volt.example,Electrical | HVAC,,
Dry Rite,dry@rite.example,drywall;paint,Oak Ridge,
"""


def write(tmp_path: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def homes_in(db: Database) -> dict[str, tuple[str, date | None, list[tuple[str, str]]]]:
    with db.session() as s:
        return {h.address: (h.community, h.closing_date,
                            sorted((o.email, o.name) for o in h.homeowners))
                for h in s.scalars(select(Home))}


def count(db: Database, model: type) -> int:
    with db.session() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


# --- good files -----------------------------------------------------------------------------

def test_homes_with_several_owners_per_home(database: Database, tmp_path: Path) -> None:
    report = import_homes(database, write(tmp_path, "homes.csv", HOMES))
    assert report.errors == []
    assert (report.created, report.updated, report.unchanged, report.rows) == (2, 0, 0, 3)
    assert homes_in(database) == {
        "12 Oak Ridge Dr": ("Oak Ridge", date(2024, 5, 1),
                            [("ann@example.com", "Ann Lee"), ("bo@example.com", "Bo Lee")]),
        "7 Elm Ct": ("Elm Park", date(2025, 3, 14), [("cy@example.net", "Cy Park")]),
    }


def test_homeowners_column_with_several_people(database: Database, tmp_path: Path) -> None:
    text = ('Address;Community;Closing Date;Homeowners\n'
            '3 Birch Ln;Birchwood;2023-11-30;'
            '"Dee Ray <dee@example.com>; Eli Ray <eli@example.com>"\n')
    report = import_homes(database, write(tmp_path, "h.csv", text))
    assert report.errors == [] and report.created == 1
    assert homes_in(database)["3 Birch Ln"][2] == [("dee@example.com", "Dee Ray"),
                                                   ("eli@example.com", "Eli Ray")]


def test_vendors(database: Database, tmp_path: Path) -> None:
    report = import_vendors(database, write(tmp_path, "v.csv", VENDORS))
    assert report.errors == [] and (report.created, report.updated) == (3, 0)
    with database.session() as s:
        vendors = {v.email: v for v in s.scalars(select(Vendor))}
        ace = vendors["office@ace.example"]
        assert ace.name == "Ace Plumbing" and ace.trades == ["plumbing"]
        assert ace.communities == ["Oak Ridge", "Elm Park"]
        assert ace.aliases == ["Ace", "Ace Plumbing Co"]
        assert vendors["jobs@volt.example"].trades == ["electrical", "hvac"]
        assert vendors["jobs@volt.example"].communities == []
        assert vendors["dry@rite.example"].trades == ["drywall", "paint"]


def test_excel_export_with_bom_semicolons_and_crlf(database: Database, tmp_path: Path) -> None:
    text = "\ufeffADDRESS ; Community ;Homeowner Name;Homeowner Email\r\n" \
           "9 Pine St;Pines;Fay Ng;fay@example.com\r\n\r\n"
    report = import_homes(database, write(tmp_path, "excel.csv", text))
    assert report.errors == [] and report.created == 1
    assert homes_in(database)["9 Pine St"] == ("Pines", None, [("fay@example.com", "Fay Ng")])


def test_plain_name_and_email_headers_mean_the_homeowner(database: Database,
                                                        tmp_path: Path) -> None:
    text = "Property Address,Name,E-mail\n4 Ash Way,Gil Ash,gil@example.com\n"
    report = import_homes(database, write(tmp_path, "h.csv", text))
    assert report.errors == []
    assert homes_in(database)["4 Ash Way"][2] == [("gil@example.com", "Gil Ash")]


def test_tab_delimited_utf16_and_cp1252(database: Database, tmp_path: Path) -> None:
    tab = "name\temail\ttrades\nCafé Floors\tfloors@cafe.example\tflooring_tile\n"
    report = import_vendors(database, write(tmp_path, "v.txt", tab, encoding="utf-16"))
    assert report.errors == [] and report.created == 1
    cp = "name,email\nZoë Roofing,roof@zoe.example\n"
    report = import_vendors(database, write(tmp_path, "v2.csv", cp, encoding="cp1252"))
    assert report.errors == [] and report.created == 1
    with database.session() as s:
        names = set(s.scalars(select(Vendor.name)))
    assert names == {"Café Floors", "Zoë Roofing"}


def test_reimport_updates_and_never_duplicates(database: Database, tmp_path: Path) -> None:
    import_homes(database, write(tmp_path, "h.csv", HOMES))
    again = import_homes(database, write(tmp_path, "h.csv", HOMES))
    assert (again.created, again.updated, again.unchanged) == (0, 0, 2)
    changed = ("address,community,closing_date,homeowner_name,homeowner_email\n"
               "12  OAK RIDGE dr ,Oak Ridge,2024-05-02,Ann Lee-Park,ann@example.com\n"
               "12 oak ridge dr,,,Gus Lee,gus@example.com\n"
               "7 Elm Ct,,,,\n")
    report = import_homes(database, write(tmp_path, "h2.csv", changed))
    assert report.errors == []
    assert (report.created, report.updated, report.unchanged) == (0, 1, 1)
    assert count(database, Home) == 2 and count(database, Homeowner) == 4
    homes = homes_in(database)
    assert homes["12 Oak Ridge Dr"] == (
        "Oak Ridge", date(2024, 5, 2),
        [("ann@example.com", "Ann Lee-Park"), ("bo@example.com", "Bo Lee"),
         ("gus@example.com", "Gus Lee")])
    # Blank cells mean "not given": Elm Ct keeps its community and closing date.
    assert homes["7 Elm Ct"][:2] == ("Elm Park", date(2025, 3, 14))

    import_vendors(database, write(tmp_path, "v.csv", VENDORS))
    renamed = "name,email,trades\nAce Plumbing & Drain,OFFICE@ace.example,plumbing;gutters\n"
    report = import_vendors(database, write(tmp_path, "v2.csv", renamed))
    assert (report.created, report.updated, report.unchanged) == (0, 1, 0)
    assert count(database, Vendor) == 3
    with database.session() as s:
        ace = s.scalars(select(Vendor).where(Vendor.email == "office@ace.example")).one()
        assert ace.name == "Ace Plumbing & Drain" and ace.trades == ["plumbing", "gutters"]
        # The file has no communities/aliases column: those stay as they were.
        assert ace.communities == ["Oak Ridge", "Elm Park"] and ace.aliases[0] == "Ace"


def test_dry_run_writes_nothing(database: Database, tmp_path: Path) -> None:
    report = import_vendors(database, write(tmp_path, "v.csv", VENDORS), dry_run=True)
    assert report.errors == [] and report.created == 3
    assert "would be created" in report.summary("vendors")
    assert count(database, Vendor) == 0


def test_progress_is_reported_every_n_rows(database: Database, tmp_path: Path) -> None:
    rows = "".join(f"{n} Long Rd,Longview,,Owner {n},o{n}@example.com\n" for n in range(1, 26))
    path = write(tmp_path, "long.csv",
                 "address,community,closing_date,homeowner_name,homeowner_email\n" + rows)
    calls: list[tuple[int, int]] = []
    report = import_homes(database, path, progress=lambda d, t: calls.append((d, t)),
                          progress_every=10)
    assert report.created == 25
    assert calls == [(10, 25), (20, 25), (25, 25)]


# --- bad files: every problem reported, nothing imported -----------------------------------

def test_every_bad_home_row_is_reported_and_nothing_imported(database: Database,
                                                             tmp_path: Path) -> None:
    text = ("address,community,closing_date,homeowner_name,homeowner_email\n"
            "1 Good St,Goodville,2024-01-02,Hal Good,hal@example.com\n"      # line 2: fine
            ",Nowhere,2024-01-02,Ida,ida@example.com\n"                      # 3: no address
            "2 Date St,Dates,14/03/2024,Jo,jo@example.com\n"                 # 4: day/month
            "3 Date St,Dates,2024-02-30,Kim,kim@example.com\n"               # 5: no such day
            "4 Mail St,Mail,2024-01-02,Lu,lu-at-example.com\n"               # 6: bad email
            "5 Mail St,Mail,2024-01-02,Mo,\n"                                # 7: no email
            "1 good st,Badville,2024-01-02,Ned,ned@example.com\n"            # 8: community clash
            "6 Wide St,Wide,2024-01-02,Oz,oz@example.com,extra\n")           # 9: extra cell
    report = import_homes(database, write(tmp_path, "bad.csv", text))
    path = str(tmp_path / "bad.csv")
    assert report.created == report.updated == 0
    assert count(database, Home) == 0 and count(database, Homeowner) == 0
    errors = report.errors
    assert len(errors) == 7, errors
    expected_prefixes = [f"{path}:3: address: is empty — ",
                         f"{path}:4: closing_date: '14/03/2024' reads as day/month — write it "
                         f"as 2024-03-14",
                         f"{path}:5: closing_date: '2024-02-30' is not a real date",
                         f"{path}:6: homeowner_email: 'lu-at-example.com' is not an email "
                         f"address — write it as name@example.com",
                         f"{path}:7: homeowner_email: 'Mo' has no email address — ",
                         f"{path}:8: community: 'Badville' here but 'Goodville' on line 2",
                         f"{path}:9: has 6 cells but the header has 5 — "]
    for prefix, error in zip(expected_prefixes, errors, strict=True):
        assert error.startswith(prefix), (prefix, error)
    assert "nothing imported; 7 problems" in report.summary("homes")


def test_bad_header(database: Database, tmp_path: Path) -> None:
    report = import_homes(database, write(tmp_path, "h.csv", "adress,comunity\n1 A St,X\n"))
    path = str(tmp_path / "h.csv")
    assert f"{path}:1: adress: is not a known column — did you mean 'address'?" in report.errors
    assert f"{path}:1: comunity: is not a known column — did you mean 'community'?" \
        in report.errors
    assert any(e.startswith(f"{path}:1: address: column is missing") for e in report.errors)


def test_every_bad_vendor_row_is_reported_and_nothing_imported(database: Database,
                                                               tmp_path: Path) -> None:
    text = ("name,email,trades\n"
            "Good Co,good@example.com,plumbing\n"          # 2: fine
            "Typo Co,typo@example.com,plumbng;electical\n"  # 3: two typos
            ",noname@example.com,hvac\n"                    # 4: no name
            "No Mail,,hvac\n"                               # 5: no email
            "Bad Mail,bad mail@example,hvac\n"              # 6: bad email
            "Again Co,GOOD@example.com,hvac\n"              # 7: duplicate email
            "Odd Co,odd@example.com,unicorns\n")            # 8: no close trade
    path = write(tmp_path, "v.csv", text)
    report = import_vendors(database, path)
    assert count(database, Vendor) == 0 and report.created == 0
    p = str(path)
    assert report.errors[:2] == [
        f"{p}:3: trades: 'plumbng' is not a known trade — did you mean 'plumbing'?",
        f"{p}:3: trades: 'electical' is not a known trade — did you mean 'electrical'?",
    ]
    assert report.errors[2].startswith(f"{p}:4: name: is empty — ")
    assert report.errors[3].startswith(f"{p}:5: email: is empty — ")
    assert report.errors[4].startswith(f"{p}:6: email: 'bad mail@example' is not an email")
    assert report.errors[5] == (f"{p}:7: email: good@example.com is already on line 2 — list "
                                f"each vendor once (put several trades in one row)")
    assert report.errors[6].startswith(f"{p}:8: trades: 'unicorns' is not a known trade — "
                                       f"known trades: plumbing, electrical")
    assert len(report.errors) == 7


def test_bad_vendor_file_leaves_existing_vendors_alone(database: Database,
                                                       tmp_path: Path) -> None:
    import_vendors(database, write(tmp_path, "v.csv", VENDORS))
    text = "name,email,trades\nAce Renamed,office@ace.example,plumbing\nX,x@example.com,nope\n"
    report = import_vendors(database, write(tmp_path, "v2.csv", text))
    assert report.errors
    with database.session() as s:
        assert s.scalars(select(Vendor.name).where(
            Vendor.email == "office@ace.example")).one() == "Ace Plumbing"


def test_company_trades_are_the_known_trades(database: Database, tmp_path: Path) -> None:
    path = write(tmp_path, "v.csv", "name,email,trades\nPool Pros,p@pool.example,pools\n")
    assert import_vendors(database, path).errors
    assert import_vendors(database, path, trades=("pools", "other")).created == 1


def test_unreadable_files(database: Database, tmp_path: Path) -> None:
    missing = import_homes(database, tmp_path / "nope.csv")
    assert missing.errors == [f"{tmp_path / 'nope.csv'}: no such file"]
    empty = import_vendors(database, write(tmp_path, "e.csv", "\n\n"))
    assert "the file is empty" in empty.errors[0]
    binary = tmp_path / "x.xlsx"
    binary.write_bytes(b"PK\x03\x04\x00\x00binary")
    assert "export the sheet as CSV" in import_vendors(database, binary).errors[0]


# --- the pieces -----------------------------------------------------------------------------

def test_config_records_and_imports_share_the_upsert(database: Database) -> None:
    with database.session() as s:
        writer = DirectoryWriter(s)
        assert writer.upsert_vendor(VendorConfig("Ace", "ace@example.com", ("plumbing",))) \
            == "created"
        assert writer.upsert_home(HomeConfig("1 A St", "Alpha", None,
                                             (HomeownerConfig("Al", "AL@example.com"),))) \
            == "created"
        assert writer.ensure_staff("Pat@Example.com") == "created"
    with database.session() as s:
        writer = DirectoryWriter(s)
        assert writer.upsert_vendor(VendorConfig("Ace", "ACE@example.com", ("plumbing",))) \
            == "unchanged"
        assert writer.upsert_home(HomeConfig(" 1  a st", "Alpha", None,
                                             (HomeownerConfig("Al", "al@example.com"),))) \
            == "unchanged"
        assert writer.ensure_staff("pat@example.com") == "unchanged"
    assert count(database, Home) == 1 and count(database, Homeowner) == 1


@pytest.mark.parametrize(("text", "expected"), [
    ("2025-03-14", date(2025, 3, 14)), ("3/14/2025", date(2025, 3, 14)),
    ("03/04/2025", date(2025, 3, 4)), ("2025-03-14 00:00:00", date(2025, 3, 14)),
])
def test_closing_dates(text: str, expected: date) -> None:
    assert parse_closing_date(text) == expected


@pytest.mark.parametrize("text", ["14/03/2025", "3/14/25", "2025-13-01", "March 3", "soon"])
def test_bad_closing_dates_say_what_would_be_right(text: str) -> None:
    with pytest.raises(ValueError, match="write"):
        parse_closing_date(text)


def test_people_trades_delimiters_and_decoding() -> None:
    assert parse_people('Ann Lee <ann@x.example>; "Lee, Bo" <bo@x.example> | cy@x.example') \
        == [("Ann Lee", "ann@x.example"), ("Lee, Bo", "bo@x.example"), ("", "cy@x.example")]
    assert parse_people("Dee Ray dee@x.example") == [("Dee Ray", "dee@x.example")]
    assert normalize_trade("Windows & Doors") == "windows_doors"
    assert normalize_trade("Flooring and Tile") == "flooring_tile"
    assert normalize_trade(" HVAC ") == "hvac"
    assert sniff_delimiter('a;"b,c";d\n1;2;3') == ";"
    assert sniff_delimiter("a\tb\tc") == "\t"
    assert sniff_delimiter("single") == ","
    assert decode_bytes("\ufeffé".encode()) == "é"
    assert decode_bytes("é".encode("cp1252")) == "é"


def test_progress_bar() -> None:
    assert render_progress_bar(0, 10, width=10) == "[..........]   0%  0/10"
    assert render_progress_bar(5, 10, width=10, label="homes") == \
        "homes [#####.....]  50%  5/10"
    assert render_progress_bar(0, 0, width=4) == "[####] 100%  0/0"

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty, pipe = Tty(), io.StringIO()
    for stream in (tty, pipe):
        bar = TerminalProgress("v", stream, width=4)
        bar(1, 2)
        bar(2, 2)
        bar.close()
    assert tty.getvalue() == "\rv [##..]  50%  1/2\rv [####] 100%  2/2\n"
    assert pipe.getvalue() == ""
