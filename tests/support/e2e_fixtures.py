"""The servers an end-to-end test runs the daemon against, as pytest fixtures.

A test module loads them with ``pytest_plugins = ("e2e_fixtures",)``: one Dovecot for the
module, a fresh mailbox user and an SMTP sink for each test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from dovecot import Dovecot
from smtp_sink import SmtpSink


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    """One Dovecot for a test module; tests keep apart by their own users."""
    with Dovecot() as server:
        yield server


@pytest.fixture
def mailbox_user(dovecot: Dovecot, request: pytest.FixtureRequest) -> str:
    """A fresh mailbox per test, so tests sharing one Dovecot never see each other's mail."""
    user = f"u{abs(hash(request.node.nodeid)) % 10**8}@acme-homes.example"
    dovecot.add_user(user)
    return user


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    """An SMTP server that keeps what the daemon sends."""
    with SmtpSink() as server:
        yield server
