"""Keeping the people and places of ``config.toml`` in the database.

Vendors, homes, homeowners and staff may come from the config file (small teams) or from
CSV imports (``warrantyd import``); both end in the same rows.  Records are upserted by
their natural key (vendor email, home address, homeowner email per home) and never deleted,
because work orders and history point at them.  A vendor in the config file wins over an
imported row with the same email at every start.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from warrantyd.daemon.config import Config
from warrantyd.daemon.importer import DirectoryWriter


def sync_config_records(session: Session, config: Config) -> None:
    writer = DirectoryWriter(session)
    for vendor in config.vendors:
        writer.upsert_vendor(vendor)
    for home in config.homes:
        writer.upsert_home(home)
    for address in config.staff.addresses:
        writer.ensure_staff(address)
