"""``warrantyd check``: can this configuration work, here and now?

Each check says what it tried and, when it fails, what to change.  Nothing is sent and no
mail is touched: IMAP is logged into and out of, SMTP is greeted and logged into, the LLM is
asked for its model.
"""

from __future__ import annotations

import asyncio

from warrantyd.daemon.config import Config, DivisionConfig
from warrantyd.storage.models import MAIN_DIVISION

CheckResult = tuple[str, bool, str]


async def run_checks(config: Config) -> list[CheckResult]:
    results: list[CheckResult] = [("config", True, f"{config.path} is valid")]
    results.append(await asyncio.to_thread(_check_database, config))
    # Every division's mailbox is its own login (often its own password or token).
    results.extend(await asyncio.gather(*(_check_imap(config, d) for d in config.divisions)))
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


async def _check_imap(config: Config, division: DivisionConfig) -> CheckResult:
    """Log into ``division``'s mailbox and select its folder; named "imap" for the main
    mailbox and "imap NAME" for another division's."""
    from warrantyd.daemon.imap import ImapSession, log_in
    from warrantyd.daemon.oauth import provider_for

    mb = division.mailbox
    name = "imap" if division.name == MAIN_DIVISION else f"imap {division.name}"
    table = ("[mailbox]" if division.name == MAIN_DIVISION
             else f"the [[divisions]] {division.name!r} mailbox")
    where = f"{mb.imap_user}@{mb.imap_host}:{mb.imap_port} ({mb.imap_security}, {mb.auth})"
    secret = ("the token source" if mb.auth == "xoauth2" else f"${mb.imap_password_env}")
    try:
        session = await ImapSession.connect(mb.imap_host, mb.imap_port, mb.imap_security,
                                            timeout=30)
        try:
            await log_in(session, mb, provider_for(mb.oauth_token_command, mb.oauth_token_file)
                         if mb.auth == "xoauth2" else None)
            info = await session.select(mb.folder)
            await session.logout()
        finally:
            session.close()
    except Exception as exc:
        return (name, False, f"{where}: {exc or type(exc).__name__}; check {table} and "
                             f"{secret}")
    return (name, True, f"{where}: logged in; {mb.folder!r} has UIDVALIDITY "
                        f"{info.uidvalidity}")


async def _check_smtp(config: Config) -> CheckResult:
    from warrantyd.daemon.outbox import OutboxSender

    sm = config.smtp
    where = f"{sm.host}:{sm.port} ({sm.security})"
    try:
        sender = OutboxSender(None, sm)  # type: ignore[arg-type]  # no database needed here
        await sender.check_connection()
    except Exception as exc:
        return ("smtp", False, f"{where}: {exc or type(exc).__name__}; check [smtp] and "
                               f"${sm.password_env or 'password_env'}")
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
