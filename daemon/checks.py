"""``warrantyd check``: can this configuration work, here and now?

Each check says what it tried and, when it fails, what to change.  Nothing is sent and no
mail is touched: IMAP is logged into and out of, SMTP is greeted and logged into, the LLM is
asked for its model.
"""

from __future__ import annotations

import asyncio
import ssl

from warrantyd.daemon.config import Config

CheckResult = tuple[str, bool, str]


async def run_checks(config: Config) -> list[CheckResult]:
    results: list[CheckResult] = [("config", True, f"{config.path} is valid")]
    results.append(await asyncio.to_thread(_check_database, config))
    results.append(await _check_imap(config))
    results.append(await _check_smtp(config))
    results.append(await _check_llm(config))
    return results


def _check_database(config: Config) -> CheckResult:
    from warrantyd.storage.db import Database

    try:
        db = Database(config.database.url)
        db.upgrade()
        db.dispose()
    except Exception as exc:
        return ("database", False, f"{config.database.url}: {str(exc).splitlines()[0]}")
    return ("database", True, f"{config.database.url} reachable, schema up to date")


async def _check_imap(config: Config) -> CheckResult:
    from warrantyd.daemon.imap import ImapSession

    mb = config.mailbox
    where = f"{mb.imap_user}@{mb.imap_host}:{mb.imap_port} ({mb.imap_security})"
    try:
        session = await ImapSession.connect(mb.imap_host, mb.imap_port, mb.imap_security,
                                            timeout=30)
        try:
            await session.login(mb.imap_user, mb.password())
            info = await session.select(mb.folder)
            await session.logout()
        finally:
            session.close()
    except Exception as exc:
        return ("imap", False, f"{where}: {exc or type(exc).__name__}; check [mailbox] and "
                               f"${mb.imap_password_env}")
    return ("imap", True, f"{where}: logged in; {mb.folder!r} has UIDVALIDITY "
                          f"{info.uidvalidity}")


async def _check_smtp(config: Config) -> CheckResult:
    import aiosmtplib

    sm = config.smtp
    where = f"{sm.host}:{sm.port} ({sm.security})"
    try:
        client = aiosmtplib.SMTP(hostname=sm.host, port=sm.port, use_tls=sm.security == "tls",
                                 start_tls=sm.security == "starttls",
                                 timeout=sm.timeout_seconds,
                                 tls_context=ssl.create_default_context())
        await client.connect()
        if sm.user:
            await client.login(sm.user, sm.password())
        await client.quit()
    except Exception as exc:
        return ("smtp", False, f"{where}: {exc or type(exc).__name__}; check [smtp] and "
                               f"${sm.password_env}")
    return ("smtp", True, f"{where}: connected{' and logged in' if sm.user else ''}")


async def _check_llm(config: Config) -> CheckResult:
    dr = config.drafter
    if dr.engine != "anthropic":
        return ("llm", True, "offline drafter configured; no API needed")
    key = dr.api_key()
    if not key:
        return ("llm", False, f"engine is anthropic but ${dr.api_key_env} is empty: set it, or "
                              f"the offline drafter is used")
    import anthropic

    from warrantyd.daemon.drafters.llm import DEFAULT_MODEL

    model = dr.model or DEFAULT_MODEL
    try:
        client = anthropic.AsyncAnthropic(api_key=key, base_url=dr.base_url,
                                          timeout=dr.timeout_seconds, max_retries=1)
        await client.models.retrieve(model)
    except Exception as exc:
        return ("llm", False, f"{model}: {exc}")
    return ("llm", True, f"{model} reachable with ${dr.api_key_env}")
