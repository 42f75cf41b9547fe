"""The web server as the page tests run it: started on a free port, stopped afterwards.

A test module's ``server`` fixture is ``async with serving(config, database) as web:
yield web``; :class:`Clock` is the clock those tests move to expire links and sessions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from warrantyd.daemon.web import WebServer
from warrantyd.storage.db import Database
from warrantyd.storage.models import utcnow


class Clock:
    """A clock the test can move; the dashboard and the links read it."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now


@asynccontextmanager
async def serving(config: Any, database: Database, **options: Any) -> AsyncIterator[WebServer]:
    """A started :class:`WebServer` (``options`` as its constructor takes them)."""
    web = WebServer(config, database, **options)
    await web.start()
    try:
        yield web
    finally:
        await web.stop()
