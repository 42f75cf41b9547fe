"""Keeping the people and places of ``config.toml`` in the database.

Vendors, homes, homeowners and staff may come from the config file (small teams) or from
CSV imports (``warrantyd import``); both end in the same rows.  Records are upserted by
their natural key (vendor email, home address, homeowner email per home) and never deleted,
because work orders and history point at them.  A vendor in the config file wins over an
imported row with the same email at every start.

Each division's ``[[divisions.vendors]]`` and ``[[divisions.homes]]`` become rows of that
division (the top-level tables: the main one); the natural keys are per division, so one
company serving two divisions is two vendor rows.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from warrantyd.daemon.config import Config
from warrantyd.daemon.importer import DirectoryWriter


def sync_config_records(session: Session, config: Config) -> None:
    for division in config.divisions:
        writer = DirectoryWriter(session, division=division.name)
        for vendor in division.vendors:
            writer.upsert_vendor(vendor)
        for home in division.homes:
            writer.upsert_home(home)
    staff = DirectoryWriter(session)
    for address in config.all_staff_addresses:
        staff.ensure_staff(address)
