"""The dashboard in a real browser: headless Chromium signs in, opens a property and a work
order, and leaves screenshots in ``test-artifacts/`` for a person to look at.

Needs Debian's ``chromium`` and ``chromium-driver`` packages (CI installs them); without them
the test fails and says what to install, because a skipped browser test proves nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email
import email.policy
import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from smtp_sink import free_port
from sqlalchemy import select
from vendor_jobs import ACE, STAFF, make_config, make_job, send_to
from web_site import serving

from warrantyd.daemon.config import Config
from warrantyd.daemon.web import WebServer
from warrantyd.storage.db import Database
from warrantyd.storage.models import Home, OutboundMessage

pytestmark = pytest.mark.slow

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM = os.environ.get("WARRANTYD_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("WARRANTYD_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")


def _browser_paths() -> tuple[str, str]:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not (shutil.which(p) or Path(p).is_file())]
    if missing:
        pytest.fail(f"headless Chromium is needed for the dashboard browser test but "
                    f"{', '.join(missing)} is missing: install it with "
                    f"`apt-get install chromium chromium-driver` (or point "
                    f"WARRANTYD_TEST_CHROMIUM / WARRANTYD_TEST_CHROMEDRIVER at them)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.fail("the selenium package is missing: `pip install -e '.[test]'`")
    return CHROMIUM, CHROMEDRIVER


@pytest.fixture
def config(tmp_path: Path, database: Database) -> Config:
    port = free_port()
    base = make_config(tmp_path, database)
    return dataclasses.replace(base, web=dataclasses.replace(
        base.web, listen=f"127.0.0.1:{port}", base_url=f"http://127.0.0.1:{port}"))


@pytest.fixture
async def server(database: Database, config: Config) -> AsyncIterator[WebServer]:
    async with serving(config, database) as web:
        yield web


def latest_login_link(database: Database) -> str:
    with database.session() as s:
        row = s.scalars(select(OutboundMessage).where(OutboundMessage.kind == "login")
                        .order_by(OutboundMessage.id.desc())).first()
        assert row is not None, "no sign-in mail was queued"
        raw = row.raw
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    text = msg.get_body(("plain",)).get_content()  # type: ignore[attr-defined]
    match = re.search(r"http://\S+/login/\S+", text)
    assert match, text
    return match.group(0)


def browse(base: str, database: Database, home_id: int, wo_id: int, tag: str) -> list[Path]:
    """What a staff member does, in Chromium; returns the screenshots taken."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    chromium, chromedriver = _browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1200,1000", "--hide-scrollbars"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    shots: list[Path] = []
    wait = WebDriverWait(driver, 15)
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        driver.get(f"{base}/staff/")
        assert driver.current_url == f"{base}/login", "no page without signing in"
        driver.find_element(By.NAME, "email").send_keys(STAFF)
        driver.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
        wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Check your inbox"))

        driver.get(latest_login_link(database))
        driver.find_element(By.CSS_SELECTOR, "button.primary").click()
        wait.until(ec.url_to_be(f"{base}/staff/"))
        assert driver.find_element(By.TAG_NAME, "h1").text == "Overview"
        cookie = driver.get_cookie("warrantyd_session")
        assert cookie is not None and cookie["httpOnly"] and cookie.get("sameSite") == "Lax"

        driver.find_element(By.LINK_TEXT, "Properties").click()
        wait.until(ec.url_to_be(f"{base}/staff/properties"))
        driver.find_element(By.LINK_TEXT, "1 Elm St").click()
        wait.until(ec.url_to_be(f"{base}/staff/properties/{home_id}"))
        assert "Leak under kitchen sink" in driver.page_source
        shots.append(ARTIFACTS / f"dashboard-property-{tag}.png")
        driver.save_screenshot(str(shots[-1]))

        driver.set_window_size(412, 1900)  # a phone's width, tall enough for the history
        driver.find_element(By.LINK_TEXT, f"WO-{wo_id}").click()
        wait.until(ec.url_to_be(f"{base}/staff/wo/{wo_id}"))
        body = driver.find_element(By.TAG_NAME, "body").text
        for expected in ("Leak under kitchen sink", "Ace Plumbing", "INTERNAL-SECRET",
                         "History", "Mail in and out"):
            assert expected in body, expected
        width = driver.execute_script("return document.documentElement.scrollWidth")
        assert width <= 412, f"the work order page scrolls sideways on a phone ({width}px)"
        shots.append(ARTIFACTS / f"dashboard-work-order-phone-{tag}.png")
        driver.save_screenshot(str(shots[-1]))
    finally:
        driver.quit()
    return shots


async def test_staff_sign_in_and_browse_in_chromium(database: Database, config: Config,
                                                     server: WebServer) -> None:
    _browser_paths()
    job = make_job(database, config)
    send_to(database, config, job.wo_id, ACE)
    with database.session() as s:
        home_id = s.scalars(select(Home).where(Home.address == "1 Elm St")).one().id
    tag = database.engine.dialect.name
    shots = await asyncio.to_thread(browse, server.url, database, home_id, job.wo_id, tag)
    for shot in shots:
        assert shot.stat().st_size > 5_000, f"{shot} looks empty"
