"""Dry runs for operators: what the daemon would make of a mail, without acting on it.

These back ``warrantyd explain``, ``draft`` and ``read-vendor-reply``.  They use exactly the
parsing, classification, authorisation and drafting code the daemon uses, and a read-only
view of the database (a transaction that is never committed), so what they print is what the
daemon would do.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from sqlalchemy.orm import Session

from warrantyd.daemon.config import Config
from warrantyd.daemon.drafting import draft_request_for, make_drafter
from warrantyd.daemon.staff_auth import authorize_staff_reply
from warrantyd.daemon.threads import DbThreadLookup
from warrantyd.daemon.tokens import installation_secret
from warrantyd.parsers.automation import detect_auto_reply
from warrantyd.parsers.classify import NEW_REQUEST, Classification, classify
from warrantyd.parsers.commands import parse_commands
from warrantyd.parsers.message import parse_message
from warrantyd.parsers.trim import extract_reply
from warrantyd.parsers.vendor_reply import read_vendor_reply
from warrantyd.storage.db import Database
from warrantyd.storage.models import Digest, utcnow


def digest_work_orders(session: Session, digest_id: int | None) -> list[str] | None:
    """The WO refs of a digest's items, item 1 first (None when unknown)."""
    if digest_id is None:
        return None
    digest = session.get(Digest, digest_id)
    return [f"WO-{n}" for n in digest.work_order_ids] if digest is not None else None


def command_dicts(commands: Any) -> list[dict[str, Any]]:
    out = []
    for cmd in commands:
        d: dict[str, Any] = {"verb": cmd.verb, "items": list(cmd.items), "text": cmd.text,
                             "vendor": cmd.vendor}
        if cmd.wo:
            d["wo"] = list(cmd.wo)
        if cmd.all:
            d["all"] = True
        if cmd.field:
            d["field"] = cmd.field
        d["line"] = cmd.line
        out.append(d)
    return out


def explain_mail(session: Session, config: Config, raw: bytes) -> dict[str, Any]:
    msg = parse_message(raw)
    reply = extract_reply(msg)
    secret = installation_secret(session, config.web.secret_env)
    lookup = DbThreadLookup(session, config, secret)
    verdict: Classification = classify(msg, lookup, config.mailbox.address, raw=raw)
    errors = [*msg.errors, *lookup.token_problems]
    result: dict[str, Any] = {
        "classification": verdict.kind,
        "reason": verdict.reason,
        "from": msg.from_addr,
        "subject": msg.subject,
        "message_id": msg.message_id,
        "thread": asdict(verdict.thread) if verdict.thread else None,
        "new_text": reply.new_text,
        "quoted_text": reply.quoted_text,
        "attachments": [{"filename": a.filename, "content_type": a.content_type,
                         "size": a.size} for a in msg.attachments],
        "commands": [],
        "authorized": False,
        "auth_reason": "",
    }
    if verdict.bounce is not None:
        result["bounce"] = {"permanent": verdict.bounce.permanent,
                            "failed_recipients": list(verdict.bounce.failed_recipients),
                            "status_codes": list(verdict.bounce.status_codes),
                            "original_message_id": verdict.bounce.original_message_id}
    if config.is_staff(msg.from_addr) and not verdict.is_automated:
        work_orders = digest_work_orders(
            session, verdict.thread.digest_id if verdict.thread else None)
        parsed = parse_commands(reply, work_orders)
        result["commands"] = command_dicts(parsed.commands)
        errors.extend(e.message for e in parsed.errors)
        ok, why = authorize_staff_reply(msg, verdict, config)
        result["authorized"], result["auth_reason"] = ok, why
    else:
        result["auth_reason"] = (f"sender {msg.from_addr or '(none)'} is not a staff address: "
                                 f"no command rights")
    result["errors"] = errors
    session.rollback()
    return result


def read_vendor_mail(config: Config, raw: bytes) -> dict[str, Any]:
    msg = parse_message(raw)
    reply = extract_reply(msg)
    sent_at = msg.date or utcnow()
    reading = read_vendor_reply(reply.new_text, sent_at, config.company.timezone,
                                subject=msg.subject,
                                auto_submitted=detect_auto_reply(msg) is not None)
    return {
        "intent": reading.intent,
        "scheduled_for": reading.scheduled_for.isoformat() if reading.scheduled_for else None,
        "window_end": reading.window_end.isoformat() if reading.window_end else None,
        "options": [{"start": o.start.isoformat(), "end": o.end.isoformat() if o.end else None}
                    for o in reading.options],
        "amount": reading.amount,
        "reason": reading.reason,
        "new_text": reply.new_text,
        "errors": list(msg.errors),
    }


async def draft_mail(db: Database, config: Config, raw: bytes) -> dict[str, Any]:
    msg = parse_message(raw)
    reply = extract_reply(msg)
    with db.session() as session:
        request = draft_request_for(session, config, msg, reply,
                                    Classification(NEW_REQUEST, "dry run"))
        session.rollback()
    result = await make_drafter(config).draft(request)
    return {
        "issues": [{"trade": i.trade, "priority": i.priority, "location": i.location,
                    "title": i.title, "description": i.description, "photos": list(i.photos),
                    "confidence": i.confidence, "suggested_vendor": i.suggested_vendor,
                    "emergency_reason": i.emergency_reason} for i in result.issues],
        "engine": result.engine,
        "usage": dict(result.usage),
        "language": result.language,
        "notes": list(result.notes),
        "errors": list(msg.errors),
    }


