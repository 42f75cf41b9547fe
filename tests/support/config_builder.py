"""The test installation's settings: Acme Homes' config, as the database tests build it.

Every section a test does not name gets the usual value; a section it names replaces the
usual one whole (``staff={"addresses": [PAT], "digest": "daily"}``), so what a test depends
on is written in the test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from warrantyd.daemon.config import Config, parse_config
from warrantyd.daemon.directory import sync_config_records
from warrantyd.storage.db import Database

US = "warranty@acme-homes.example"
PAT = "pat@acme-homes.example"
LEE = "lee@acme-homes.example"
DANA = "dana@example.com"
ACE = "ace@plumb.example.net"
NORTH = "north@acme-homes.example"
"""The mailbox of the second division (``north``) in the division tests."""
NORA = "nora@acme-homes.example"
"""Staff of the north division only."""

ELM_STREET: dict[str, Any] = {
    "address": "1 Elm St", "community": "Oaks", "closing_date": "2025-05-01",
    "homeowners": [{"name": "Dana Whitfield", "email": DANA}],
}
"""Dana's home, the one the request tests file their mail for."""


def build_config(tmp_path: Path, database: Database, *, sync: bool = True,
                 **sections: Any) -> Config:
    """Parse the settings; with ``sync`` the staff, vendors and homes go into the database."""
    data: dict[str, Any] = {
        "company": {"name": "Acme Homes", "timezone": "America/Denver"},
        "mailbox": {"address": US, "imap_host": "x", "imap_user": "x"},
        "smtp": {"host": "x", "from_name": "Acme Homes Warranty"},
        "database": {"url": database.url},
        "storage": {"data_dir": str(tmp_path / "data")},
        "staff": {"addresses": [PAT]},
    }
    data.update(sections)
    config = parse_config(data)
    if sync:
        with database.session() as s:
            sync_config_records(s, config)
    return config
