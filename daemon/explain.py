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

from warrantyd.daemon.config import Config, DivisionConfig
from warrantyd.daemon.drafting import draft_request_for, locate_home, make_drafter, requester_of
from warrantyd.daemon.staff_auth import authorize_staff_reply
from warrantyd.daemon.threads import DbThreadLookup
from warrantyd.daemon.tokens import installation_secret
from warrantyd.parsers.automation import detect_auto_reply
from warrantyd.parsers.classify import NEW_REQUEST, STAFF_MAIL, Classification, classify
from warrantyd.parsers.commands import parse_commands
from warrantyd.parsers.message import ParsedMessage, parse_message
from warrantyd.parsers.trim import Reply, extract_reply
from warrantyd.parsers.vendor_reply import read_vendor_reply
from warrantyd.storage.db import Database
from warrantyd.storage.models import Digest, ServiceRequest, utcnow


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


def arrival_of(config: Config, msg: ParsedMessage, arrival: str | None = None) -> DivisionConfig:
    """The division whose mailbox a mail given as a file would have come to: ``arrival``
    when named, else the first division mailbox it is addressed to, else the main one."""
    if arrival is not None:
        return config.division(arrival)
    for address in msg.recipients:
        division = config.division_of_mailbox(address)
        if division is not None:
            return division
    return config.division(None)


def division_verdict(session: Session, config: Config, msg: ParsedMessage, reply: Reply,
                     verdict: Classification, arrival: DivisionConfig) -> tuple[str, str]:
    """(division, why): where the daemon would act on this mail.  Mail on a thread stays in
    the thread's division; a new request is filed where :func:`locate_home` says."""
    if verdict.thread is not None and verdict.thread.service_request_id is not None:
        sr = session.get(ServiceRequest, verdict.thread.service_request_id)
        if sr is not None:
            return sr.division, f"{sr.ref} belongs to division {sr.division}"
    where = f"came to the {arrival.name} mailbox ({arrival.mailbox.address})"
    if verdict.kind not in (NEW_REQUEST, STAFF_MAIL):
        return arrival.name, where
    requester = requester_of(msg, reply, verdict, config)
    match = locate_home(session, requester.email if requester else None, arrival.name,
                        configured=config.division_names)
    if match.routed_from is not None:
        return match.division, (f"routed to division {match.division}: the home is there "
                                f"({where})")
    return match.division, where


def explain_mail(session: Session, config: Config, raw: bytes,
                 arrival: str | None = None) -> dict[str, Any]:
    """What the daemon would make of ``raw`` had it come to ``arrival``'s mailbox (by
    default: the division mailbox it is addressed to, else the main one)."""
    msg = parse_message(raw)
    reply = extract_reply(msg)
    secret = installation_secret(session, config.web.secret_env)
    lookup = DbThreadLookup(session, config, secret)
    came_to = arrival_of(config, msg, arrival)
    verdict: Classification = classify(msg, lookup, came_to.mailbox.address, raw=raw,
                                       also_ours=config.our_addresses)
    division, division_reason = division_verdict(session, config, msg, reply, verdict, came_to)
    errors = [*msg.errors, *lookup.token_problems]
    result: dict[str, Any] = {
        "classification": verdict.kind,
        "reason": verdict.reason,
        "division": division,
        "division_reason": division_reason,
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
        digest_id = verdict.thread.digest_id if verdict.thread else None
        work_orders = digest_work_orders(session, digest_id)
        parsed = parse_commands(reply, work_orders)
        result["commands"] = command_dicts(parsed.commands)
        errors.extend(e.message for e in parsed.errors)
        # As the daemon decides: a digest's reply rights are its division's staff's.
        digest = session.get(Digest, digest_id) if digest_id is not None else None
        ok, why = authorize_staff_reply(msg, verdict, config,
                                        digest.division if digest is not None else None)
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


async def draft_mail(db: Database, config: Config, raw: bytes,
                     arrival: str | None = None) -> dict[str, Any]:
    """The drafts for ``raw`` as a new request, with its division's home and vendors."""
    msg = parse_message(raw)
    reply = extract_reply(msg)
    with db.session() as session:
        request = draft_request_for(session, config, msg, reply,
                                    Classification(NEW_REQUEST, "dry run"),
                                    arrival_of(config, msg, arrival).name)
        session.rollback()
    result = await make_drafter(config).draft(request)
    return {
        "issues": [{"trade": i.trade, "priority": i.priority, "location": i.location,
                    "title": i.title, "homeowner_title": i.homeowner_title,
                    "description": i.description, "photos": list(i.photos),
                    "confidence": i.confidence, "suggested_vendor": i.suggested_vendor,
                    "emergency_reason": i.emergency_reason} for i in result.issues],
        "engine": result.engine,
        "usage": dict(result.usage),
        "language": result.language,
        "notes": list(result.notes),
        "errors": list(msg.errors),
    }


