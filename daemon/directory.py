"""Keeping the people and places of ``config.toml`` in the database.

Vendors, homes, homeowners and staff may come from the config file (small teams) or from
CSV imports (``warrantyd import``); both end in the same rows.  Records are upserted by
their natural key (vendor email, home address, homeowner email per home) and never deleted,
because work orders and history point at them.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from warrantyd.daemon.config import Config
from warrantyd.storage.models import Home, Homeowner, Staff, Vendor


def sync_config_records(session: Session, config: Config) -> None:
    for v in config.vendors:
        vendor = session.scalars(select(Vendor).where(Vendor.email == v.email)).first()
        if vendor is None:
            vendor = Vendor(email=v.email)
            session.add(vendor)
        vendor.name, vendor.trades = v.name, list(v.trades)
        vendor.communities, vendor.aliases, vendor.active = list(v.communities), list(
            v.aliases), True
    for h in config.homes:
        home = session.scalars(select(Home).where(Home.address == h.address)).first()
        if home is None:
            home = Home(address=h.address)
            session.add(home)
        home.community, home.closing_date = h.community, h.closing_date
        session.flush()
        for o in h.homeowners:
            owner = session.scalars(select(Homeowner).where(
                Homeowner.home_id == home.id, Homeowner.email == o.email)).first()
            if owner is None:
                session.add(Homeowner(home_id=home.id, email=o.email, name=o.name))
            elif o.name:
                owner.name = o.name
    for address in config.staff.addresses:
        if session.scalars(select(Staff).where(Staff.email == address)).first() is None:
            session.add(Staff(email=address))
