"""``warrantyd import homes|vendors FILE.csv``: the directory from a spreadsheet.

Warranty teams keep their homes and vendors in spreadsheets, so the import takes what Excel,
LibreOffice and Google Sheets write: a byte-order mark, comma, semicolon or tab delimiters,
headers in any case and spacing, US dates.  Every row is checked before anything is written:
one bad row and nothing is imported, and the operator gets every problem at once as
``FILE:LINE: column: what is wrong — what would be right``, so a file is fixed in one pass.

Records are upserted by their natural key (home address compared without regard to case or
spacing, vendor email, homeowner email per home) in one transaction, and never deleted:
work orders and history point at them.  The same upsert code keeps the ``[[vendors]]`` and
``[[homes]]`` of ``config.toml`` in the database (:class:`DirectoryWriter`), so both ways in
end in the same rows.
"""

from __future__ import annotations

import csv
import difflib
import io
import re
import sys
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from email.utils import parseaddr
from pathlib import Path
from typing import Literal, TextIO

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from warrantyd.daemon.config import HomeConfig, HomeownerConfig, VendorConfig
from warrantyd.daemon.drafters.base import TRADES
from warrantyd.storage.db import Database
from warrantyd.storage.models import MAIN_DIVISION, Home, Homeowner, Staff, Vendor

Outcome = Literal["created", "updated", "unchanged"]
Progress = Callable[[int, int], None]
"""Called as ``progress(rows_done, rows_total)`` while the import writes."""

DELIMITERS = (",", ";", "\t")
LIST_SEPARATORS = re.compile(r"\s*[;|]\s*")
TRADE_SEPARATORS = re.compile(r"\s*[;|,]\s*")
DASH = "—"

HOME_COLUMNS = ("address", "community", "closing_date", "homeowner_name", "homeowner_email",
                "homeowners")
VENDOR_COLUMNS = ("name", "email", "trades", "communities", "aliases")
HEADER_SYNONYMS = {
    "property": "address", "property_address": "address", "home_address": "address",
    "street_address": "address", "subdivision": "community", "neighborhood": "community",
    "neighbourhood": "community", "closing": "closing_date", "close_date": "closing_date",
    "closed": "closing_date", "closed_on": "closing_date",
    "owner_name": "homeowner_name", "owner_email": "homeowner_email", "owner": "homeowner_name",
    "name": "homeowner_name", "email": "homeowner_email", "homeowner": "homeowner_name",
    "owners": "homeowners", "vendor": "name", "vendor_name": "name", "company": "name",
    "vendor_email": "email", "e_mail": "email", "trade": "trades", "community_list": "communities",
    "alias": "aliases", "also_known_as": "aliases", "aka": "aliases",
}


class ImportFileError(Exception):
    """The file as a whole cannot be read (missing, not text, no header)."""


@dataclass
class ImportReport:
    """What an import did, or — when ``errors`` is not empty — why it did nothing."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[str] = field(default_factory=list)
    rows: int = 0
    """Data rows read from the file (blank lines not counted)."""
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors

    def count(self, outcome: Outcome) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)

    def summary(self, what: str) -> str:
        """One line for the operator, e.g. ``homes: 3 created, 1 updated, 0 unchanged``."""
        if self.errors:
            return (f"{what}: nothing imported; {len(self.errors)} problem"
                    f"{'s' if len(self.errors) != 1 else ''} to fix first")
        verb = "would be " if self.dry_run else ""
        return (f"{what}: {self.created} {verb}created, {self.updated} {verb}updated, "
                f"{self.unchanged} unchanged ({self.rows} rows)")


# --- writing records: shared by imports and config.toml -------------------------------------

def normalize_address(address: str) -> str:
    """The natural key of a home: case and runs of whitespace do not make another house."""
    return " ".join(address.split()).casefold()


def tidy(text: str) -> str:
    """Collapse whitespace the way spreadsheets and copy-paste scatter it."""
    return " ".join(text.split())


class DirectoryWriter:
    """Upserts vendors, homes, homeowners and staff by natural key within one session.

    Vendors and homes belong to ``division`` (``[[divisions]]``; the top-level tables are
    :data:`~warrantyd.storage.models.MAIN_DIVISION`): their natural key is per division, so
    the same vendor email or home address in two divisions is two rows, each written only by
    its own division's writer.  Staff rows are one per address (a manager of two divisions
    is one person).

    The existing rows are read once, on first use, so a file of thousands of rows costs a
    few queries rather than one per row.  Nothing is ever deleted.
    """

    def __init__(self, session: Session, *, division: str = MAIN_DIVISION) -> None:
        self.session = session
        self.division = division
        self._vendors: dict[str, Vendor] | None = None
        self._homes: dict[str, Home] | None = None

    def _vendor_index(self) -> dict[str, Vendor]:
        if self._vendors is None:
            self._vendors = {v.email.lower(): v for v in self.session.scalars(
                select(Vendor).where(Vendor.division == self.division))}
        return self._vendors

    def _home_index(self) -> dict[str, Home]:
        if self._homes is None:
            homes = self.session.scalars(select(Home).where(Home.division == self.division)
                                         .options(selectinload(Home.homeowners)))
            self._homes = {normalize_address(h.address): h for h in homes}
        return self._homes

    def upsert_vendor(self, record: VendorConfig, *, keep: Collection[str] = ()) -> Outcome:
        """Create or update the vendor with ``record.email``.

        ``keep`` names fields (``trades``, ``communities``, ``aliases``) to leave as they are,
        for a file that has no such column.  An upserted vendor is active again.
        """
        email = record.email.strip().lower()
        index = self._vendor_index()
        vendor = index.get(email)
        wanted: dict[str, object] = {"name": record.name, "active": True}
        for name in ("trades", "communities", "aliases"):
            if name not in keep:
                wanted[name] = list(getattr(record, name))
        if vendor is None:
            vendor = Vendor(division=self.division, email=email, trades=[], communities=[],
                            aliases=[])
            _assign(vendor, wanted)
            self.session.add(vendor)
            index[email] = vendor
            return "created"
        return "updated" if _assign(vendor, wanted) else "unchanged"

    def upsert_home(self, record: HomeConfig, *, keep: Collection[str] = ()) -> Outcome:
        """Create or update the home at ``record.address`` and add or rename its homeowners.

        ``keep`` names fields (``community``, ``closing_date``) to leave as they are.
        Homeowners not in ``record`` stay: they may have open requests.
        """
        key = normalize_address(record.address)
        index = self._home_index()
        home = index.get(key)
        wanted: dict[str, object] = {}
        if "community" not in keep:
            wanted["community"] = record.community
        if "closing_date" not in keep:
            wanted["closing_date"] = record.closing_date
        outcome: Outcome = "unchanged"
        if home is None:
            home = Home(division=self.division, address=tidy(record.address), community="",
                        homeowners=[])
            self.session.add(home)
            index[key] = home
            outcome = "created"
        if _assign(home, wanted) and outcome == "unchanged":
            outcome = "updated"
        owners = {o.email.lower(): o for o in home.homeowners}
        for person in record.homeowners:
            email = person.email.strip().lower()
            owner = owners.get(email)
            if owner is None:
                owner = Homeowner(email=email, name=person.name)
                home.homeowners.append(owner)
                owners[email] = owner
            elif person.name and owner.name != person.name:
                owner.name = person.name
            else:
                continue
            if outcome == "unchanged":
                outcome = "updated"
        return outcome

    def ensure_staff(self, address: str) -> Outcome:
        email = address.strip().lower()
        if self.session.scalars(select(Staff).where(Staff.email == email)).first() is None:
            self.session.add(Staff(email=email))
            return "created"
        return "unchanged"


def _assign(row: object, wanted: dict[str, object]) -> bool:
    """Set the attributes that differ; say whether any did."""
    changed = False
    for name, value in wanted.items():
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed = True
    return changed


# --- reading a spreadsheet export -----------------------------------------------------------

@dataclass
class CsvTable:
    """A decoded CSV file: normalised header names and each data row with its line number."""

    path: str
    header_line: int
    header: list[str]
    """Canonical column names, in file order ('' for a blank header cell)."""
    raw_header: list[str]
    rows: list[tuple[int, list[str]]]
    delimiter: str


def decode_bytes(data: bytes) -> str:
    """Text of a spreadsheet export: UTF-8 (with or without BOM), UTF-16, or Windows-1252.

    Excel writes "CSV UTF-8" with a BOM, "Unicode text" as UTF-16 with a BOM, and plain "CSV"
    in the Windows code page; all three are common in the wild.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def sniff_delimiter(text: str) -> str:
    """The delimiter the header line uses most (comma, semicolon or tab), outside quotes."""
    for line in text.splitlines():
        if not line.strip():
            continue
        counts = dict.fromkeys(DELIMITERS, 0)
        quoted = False
        for ch in line:
            if ch == '"':
                quoted = not quoted
            elif not quoted and ch in counts:
                counts[ch] += 1
        best = max(DELIMITERS, key=lambda d: counts[d])
        return best if counts[best] else ","
    return ","


def canonical_header(name: str, known: Sequence[str]) -> str:
    """``"Homeowner Email "`` → ``homeowner_email``; known synonyms map to their column."""
    key = re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")
    candidate = key
    for _ in range(3):  # "e_mail" → "email" → "homeowner_email"
        if candidate in known:
            return candidate
        candidate = HEADER_SYNONYMS.get(candidate, candidate)
    return key


def read_csv_table(path: str | Path, known: Sequence[str], *,
                   text: str | None = None) -> CsvTable:
    """Read ``path`` (or ``text``) into a :class:`CsvTable`; raise :class:`ImportFileError`."""
    where = str(path)
    if text is None:
        try:
            text = decode_bytes(Path(path).read_bytes())
        except FileNotFoundError:
            raise ImportFileError(f"{where}: no such file") from None
        except IsADirectoryError:
            raise ImportFileError(f"{where}: is a directory, not a CSV file") from None
        except OSError as exc:
            raise ImportFileError(f"{where}: cannot read: {exc.strerror or exc}") from None
    if "\x00" in text:
        raise ImportFileError(f"{where}: this is not a text file; export the sheet as CSV "
                              f"(File → Save As → CSV UTF-8)")
    delimiter = sniff_delimiter(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header: list[str] | None = None
    header_line = 1
    raw_header: list[str] = []
    rows: list[tuple[int, list[str]]] = []
    try:
        while True:
            line = reader.line_num + 1
            try:
                cells = next(reader)
            except StopIteration:
                break
            if not any(c.strip() for c in cells):
                continue
            if header is None:
                raw_header, header_line = cells, line
                header = [canonical_header(c, known) for c in cells]
                continue
            rows.append((line, cells))
    except csv.Error as exc:
        raise ImportFileError(f"{where}:{reader.line_num}: the CSV is malformed ({exc}); "
                              f"check for an unbalanced double quote") from None
    if header is None:
        raise ImportFileError(f"{where}: the file is empty {DASH} the first line must name the "
                              f"columns, e.g. {','.join(known[:3])}")
    return CsvTable(path=where, header_line=header_line, header=header,
                    raw_header=raw_header, rows=rows,
                    delimiter=delimiter)


class RowErrors:
    """Collects ``FILE:LINE: column: what is wrong — what would be right`` lines."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lines: list[str] = []

    def add(self, line: int, column: str, wrong: str, right: str = "") -> None:
        where = f"{self.path}:{line}: {column}: " if column else f"{self.path}:{line}: "
        self.lines.append(f"{where}{wrong}{f' {DASH} {right}' if right else ''}")


def _check_header(table: CsvTable, known: Sequence[str], errors: RowErrors) -> int:
    """Report unknown and repeated columns; return the header's line number."""
    line = table.header_line
    seen: dict[str, int] = {}
    for position, (name, raw) in enumerate(zip(table.header, table.raw_header, strict=True), 1):
        if not name:
            if any(len(cells) >= position and cells[position - 1].strip()
                   for _, cells in table.rows):
                errors.add(line, f"column {position}", "has values but no header name",
                           f"name it ({', '.join(known)})")
            continue
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            right = (f"did you mean {close[0]!r}?" if close
                     else f"known columns are {', '.join(known)}")
            errors.add(line, raw.strip() or name, "is not a known column", right)
        elif name in seen:
            errors.add(line, raw.strip(), f"appears twice (columns {seen[name]} and {position})",
                       "keep one")
        else:
            seen[name] = position
    return line


def _cells(table: CsvTable, cells: list[str], line: int, errors: RowErrors) -> dict[str, str]:
    """The row as ``{column: stripped text}``; extra cells are an error."""
    width = len(table.header)
    extra = [c for c in cells[width:] if c.strip()]
    if extra:
        errors.add(line, "", f"has {len(cells)} cells but the header has {width}",
                   f"quote cells that contain {table.delimiter!r} or add a column name")
    return {name: (cells[i].strip() if i < len(cells) else "")
            for i, name in enumerate(table.header) if name}


def looks_like_email(value: str) -> bool:
    local, sep, domain = value.partition("@")
    return bool(sep and local and "." in domain.strip(".") and "@" not in domain
                and not any(c.isspace() for c in value) and "<" not in value and ">" not in value)


def parse_closing_date(value: str) -> date:
    """``2025-03-14`` or US ``3/14/2025``.

    The ``ValueError`` reads "what is wrong; what would be right", so the import can print
    both halves.
    """
    text = value.strip()
    iso = re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})(?:[ T]00:00(?::00)?)?", text)
    us = re.fullmatch(r"(\d{1,2})/(\d{1,2})/(\d{4})", text)
    if iso:
        year, month, day = int(iso[1]), int(iso[2]), int(iso[3])
    elif us:
        month, day, year = int(us[1]), int(us[2]), int(us[3])
        if month > 12 >= day:
            raise ValueError(f"{value!r} reads as day/month; write it as "
                             f"{year:04d}-{day:02d}-{month:02d} (YYYY-MM-DD) or "
                             f"{day}/{month}/{year} (M/D/YYYY)")
    if iso or us:
        try:
            return date(year, month, day)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a real date ({exc}); "
                             f"write YYYY-MM-DD, e.g. 2025-03-14") from None
    if re.fullmatch(r"\d{1,2}/\d{1,2}/\d{2}", text):
        raise ValueError(f"{value!r} has a two-digit year; write the year in full, "
                         f"e.g. 3/14/2025 or 2025-03-14")
    raise ValueError(f"{value!r} is not a date; write YYYY-MM-DD (2025-03-14) or M/D/YYYY "
                     f"(3/14/2025)")


def parse_people(value: str) -> list[tuple[str, str]]:
    """``"Ann Lee <ann@x.com>; Bo <bo@x.com>"`` → ``[(name, email), ...]`` (emails unchecked)."""
    people = []
    for part in LIST_SEPARATORS.split(value.strip()):
        if not part:
            continue
        if "@" not in part:
            people.append((tidy(part.strip('"')), ""))
        elif "<" in part or ">" in part:
            name, email = parseaddr(part) if part.count("<") == part.count(">") else ("", part)
            people.append((tidy(name), email.strip()))
        else:
            # "Ann Lee ann@example.com": the word with the @ is the address.
            words = part.split()
            at = [w for w in words if "@" in w]
            email = at[-1] if len(at) == 1 else part
            name = " ".join(w for w in words if w != email) if len(at) == 1 else ""
            people.append((tidy(name.strip('"')), email.strip().strip(",")))
    return people


def split_list(value: str) -> tuple[str, ...]:
    """A cell holding several values separated by ``;`` or ``|``."""
    return tuple(dict.fromkeys(tidy(p) for p in LIST_SEPARATORS.split(value) if p.strip()))


def normalize_trade(value: str) -> str:
    """``"Windows & Doors"`` → ``windows_doors``; ``"HVAC"`` → ``hvac``."""
    words = re.sub(r"\band\b", " ", value.strip().lower())
    return re.sub(r"[^0-9a-z]+", "_", words).strip("_")


# --- homes ----------------------------------------------------------------------------------

@dataclass
class _HomeDraft:
    """A home gathered from all the rows that name its address."""

    line: int
    address: str
    community: str | None = None
    community_line: int = 0
    closing_date: date | None = None
    closing_line: int = 0
    owners: dict[str, tuple[str, int]] = field(default_factory=dict)
    """email → (name, line)."""
    rows: int = 0


@dataclass(frozen=True)
class HomeImport:
    """One home to upsert, the fields the file left blank for it, and its rows in the file."""

    record: HomeConfig
    keep: frozenset[str]
    rows: int


def validate_homes(table: CsvTable) -> tuple[list[HomeImport], list[str]]:
    """Check every row; return the homes and the errors.

    Rows naming the same address (compared without case or spacing) are one home with
    several homeowners.  A community or closing date left blank on every row of a home
    leaves the stored value alone: a blank cell means "not given", not "erase".
    """
    errors = RowErrors(table.path)
    header_line = _check_header(table, HOME_COLUMNS, errors)
    columns = set(table.header)
    if "address" not in columns:
        errors.add(header_line, "address", "column is missing",
                   f"the header must name it (found: {', '.join(table.raw_header)})")
    has_pairs = bool({"homeowner_name", "homeowner_email"} & columns)
    if has_pairs and "homeowner_email" not in columns:
        errors.add(header_line, "homeowner_email", "column is missing",
                   "homeowner_name needs a homeowner_email column beside it")
    if errors.lines and "address" not in columns:
        return [], errors.lines

    homes: dict[str, _HomeDraft] = {}
    for line, cells in table.rows:
        row = _cells(table, cells, line, errors)
        address = tidy(row.get("address", ""))
        if not address:
            errors.add(line, "address", "is empty", "every row needs the home's street address")
            continue
        key = normalize_address(address)
        home = homes.get(key)
        if home is None:
            home = homes[key] = _HomeDraft(line=line, address=address)
        home.rows += 1

        community = tidy(row.get("community", ""))
        if "community" in row and community:
            if home.community is None:
                home.community, home.community_line = community, line
            elif home.community.casefold() != community.casefold():
                errors.add(line, "community", f"{community!r} here but {home.community!r} on "
                           f"line {home.community_line} for the same address",
                           "use one community per home")

        closing_text = row.get("closing_date", "")
        if closing_text:
            try:
                closing = parse_closing_date(closing_text)
            except ValueError as exc:
                wrong, _, right = str(exc).partition("; ")
                errors.add(line, "closing_date", wrong, right)
            else:
                if home.closing_date is None:
                    home.closing_date, home.closing_line = closing, line
                elif home.closing_date != closing:
                    errors.add(line, "closing_date",
                               f"{closing.isoformat()} here but {home.closing_date.isoformat()}"
                               f" on line {home.closing_line} for the same address",
                               "use one closing date per home")

        people: list[tuple[str, str, str]] = []  # (column, name, email)
        name, email = tidy(row.get("homeowner_name", "")), row.get("homeowner_email", "")
        if email or name:
            people.append(("homeowner_email", name, email))
        for person_name, person_email in parse_people(row.get("homeowners", "")):
            people.append(("homeowners", person_name, person_email))
        for column, person_name, person_email in people:
            if not person_email:
                errors.add(line, column, f"{person_name!r} has no email address",
                           "add the homeowner's email (it is how their mail is recognised)")
                continue
            if not looks_like_email(person_email):
                right = ('write "Name <name@example.com>; Name2 <name2@example.com>"'
                         if column == "homeowners" else "write it as name@example.com")
                errors.add(line, column, f"{person_email!r} is not an email address", right)
                continue
            person_email = person_email.lower()
            known = home.owners.get(person_email)
            if known is None:
                home.owners[person_email] = (person_name, line)
            elif person_name and known[0] and known[0] != person_name:
                errors.add(line, column, f"{person_email} is named {person_name!r} here but "
                           f"{known[0]!r} on line {known[1]}", "use one name per homeowner")
            elif person_name and not known[0]:
                home.owners[person_email] = (person_name, known[1])

    records = [HomeImport(
        record=HomeConfig(address=h.address, community=h.community or "",
                          closing_date=h.closing_date,
                          homeowners=tuple(HomeownerConfig(name=n, email=e)
                                           for e, (n, _) in h.owners.items())),
        keep=frozenset(name for name, value in (("community", h.community),
                                                 ("closing_date", h.closing_date))
                       if value is None),
        rows=h.rows) for h in homes.values()]
    return records, errors.lines


def import_homes(db: Database, path: str | Path, *, progress: Progress | None = None,
                 progress_every: int = 100, dry_run: bool = False,
                 text: str | None = None, division: str = MAIN_DIVISION) -> ImportReport:
    """Validate the homes CSV at ``path``, then upsert every home of ``division`` in one
    transaction.

    A home keeps its community and closing date when the file leaves them blank (a file of
    homeowners only adds people).  ``text`` replaces reading ``path`` (for tests and stdin).
    """
    try:
        table = read_csv_table(path, HOME_COLUMNS, text=text)
    except ImportFileError as exc:
        return ImportReport(errors=[str(exc)])
    homes, errors = validate_homes(table)
    report = ImportReport(rows=len(table.rows), errors=errors, dry_run=dry_run)
    if errors:
        return report
    _write(db, report, dry_run, progress, progress_every,
           [(lambda w, h=home: w.upsert_home(h.record, keep=h.keep), home.rows)
            for home in homes], division)
    return report


# --- vendors --------------------------------------------------------------------------------

def validate_vendors(table: CsvTable, trades: Sequence[str] = TRADES
                     ) -> tuple[list[VendorConfig], list[str]]:
    """Check every row; return the vendors and the errors."""
    errors = RowErrors(table.path)
    header_line = _check_header(table, VENDOR_COLUMNS, errors)
    columns = set(table.header)
    for required in ("name", "email"):
        if required not in columns:
            errors.add(header_line, required, "column is missing",
                       f"the header must name it (found: {', '.join(table.raw_header)})")
    if not {"name", "email"} <= columns:
        return [], errors.lines

    records: list[VendorConfig] = []
    first_line: dict[str, int] = {}
    for line, cells in table.rows:
        row = _cells(table, cells, line, errors)
        name, email = tidy(row["name"]), row["email"].strip()
        ok = True
        if not name:
            errors.add(line, "name", "is empty", "give the vendor's company name")
            ok = False
        if not email:
            errors.add(line, "email", "is empty",
                       "give the address work orders should be sent to")
            ok = False
        else:
            bare = parseaddr(email)[1] if "<" in email else email
            if not looks_like_email(bare):
                errors.add(line, "email", f"{email!r} is not an email address",
                           "write it as name@example.com")
                ok = False
            else:
                email = bare.lower()
                if email in first_line:
                    errors.add(line, "email", f"{email} is already on line {first_line[email]}",
                               "list each vendor once (put several trades in one row)")
                    ok = False
                else:
                    first_line[email] = line
        vendor_trades: list[str] = []
        for raw in TRADE_SEPARATORS.split(row.get("trades", "")):
            if not raw.strip():
                continue
            trade = normalize_trade(raw)
            if trade in trades:
                if trade not in vendor_trades:
                    vendor_trades.append(trade)
                continue
            ok = False
            close = difflib.get_close_matches(trade, trades, n=1, cutoff=0.6) or [
                t for t in trades if trade and (trade in t or t in trade)][:1]
            right = (f"did you mean {close[0]!r}?" if close
                     else f"known trades: {', '.join(trades)}")
            errors.add(line, "trades", f"{raw.strip()!r} is not a known trade", right)
        if ok:
            records.append(VendorConfig(
                name=name, email=email, trades=tuple(vendor_trades),
                communities=split_list(row.get("communities", "")),
                aliases=split_list(row.get("aliases", ""))))
    return records, errors.lines


def import_vendors(db: Database, path: str | Path, *, trades: Sequence[str] = TRADES,
                   progress: Progress | None = None, progress_every: int = 100,
                   dry_run: bool = False, text: str | None = None,
                   division: str = MAIN_DIVISION) -> ImportReport:
    """Validate the vendors CSV at ``path``, then upsert every vendor of ``division`` in one
    transaction.

    ``trades`` is the company's list (``[company] trades``).  Columns the file does not have
    (``communities``, ``aliases``, ``trades``) are left as they are on existing vendors.
    """
    try:
        table = read_csv_table(path, VENDOR_COLUMNS, text=text)
    except ImportFileError as exc:
        return ImportReport(errors=[str(exc)])
    records, errors = validate_vendors(table, trades)
    report = ImportReport(rows=len(table.rows), errors=errors, dry_run=dry_run)
    if errors:
        return report
    keep = {c for c in ("trades", "communities", "aliases") if c not in table.header}
    _write(db, report, dry_run, progress, progress_every,
           [(lambda w, r=record: w.upsert_vendor(r, keep=keep), 1) for record in records],
           division)
    return report


def _write(db: Database, report: ImportReport, dry_run: bool, progress: Progress | None,
           every: int, steps: Iterable[tuple[Callable[[DirectoryWriter], Outcome], int]],
           division: str = MAIN_DIVISION) -> None:
    """Run the upserts (into ``division``) in one transaction; roll it back for a dry run."""
    every = max(1, every)
    total, done, last = report.rows, 0, 0
    with db.sessions() as session:
        try:
            writer = DirectoryWriter(session, division=division)
            for step, rows in steps:
                report.count(step(writer))
                done += rows
                if progress is not None and done - last >= every:
                    progress(done, total)
                    last = done
            session.flush()
        except BaseException:
            session.rollback()
            raise
        if dry_run:
            session.rollback()
        else:
            session.commit()
    if progress is not None and last != total:
        progress(total, total)


# --- a progress bar for a terminal ----------------------------------------------------------

def render_progress_bar(done: int, total: int, *, width: int = 30, label: str = "") -> str:
    """``label [#########.........]  45%  450/1000`` (no newline)."""
    fraction = 1.0 if total <= 0 else min(1.0, max(0.0, done / total))
    filled = round(fraction * width)
    bar = "#" * filled + "." * (width - filled)
    prefix = f"{label} " if label else ""
    return f"{prefix}[{bar}] {fraction * 100:3.0f}%  {done}/{total}"


class TerminalProgress:
    """A :data:`Progress` callback that redraws one line on a terminal and is silent elsewhere.

    Silence off a terminal keeps logs and pipes free of carriage returns; the import's summary
    line says the same thing at the end.
    """

    def __init__(self, label: str = "", stream: TextIO | None = None, *, width: int = 30) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.drawn = False

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        self.stream.write("\r" + render_progress_bar(done, total, width=self.width,
                                                     label=self.label))
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        """End the bar's line so the next output starts on a fresh one."""
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False

