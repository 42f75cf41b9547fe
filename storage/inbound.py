"""Store-first intake: the one place an inbound mail becomes a row.

A mail is written here, and committed, before anything reads it; everything else works
from the row.  The row is unique on its mailbox position and on the SHA-256 of its bytes,
so a re-fetch (after a crash, a reconnect or a UIDVALIDITY change) finds the row it already
made instead of making a second one.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import and_, bindparam, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from warrantyd.storage.db import savepoint_unless_locked
from warrantyd.storage.models import InboundMessage, utcnow


def sha256_hex(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def store_inbound(
    session: Session,
    *,
    mailbox: str,
    uidvalidity: int | None,
    uid: int | None,
    raw: bytes,
    message_id: str | None = None,
) -> tuple[InboundMessage, bool]:
    """Insert the mail, or find the row it already has; return (row, created).

    When the same bytes are found at another position (the server renumbered its UIDs),
    the row is moved to the new position so that filing the IMAP copy still works.  The
    caller commits.
    """
    digest = sha256_hex(raw)
    if uid is None:
        existing = session.scalars(_BY_SHA256, {"sha256": digest}).first()
    else:
        # One read for both keys (almost always finding nothing); the same bytes win.
        found = session.scalars(
            _BY_SHA256_OR_POSITION if uidvalidity is not None else
            select(InboundMessage).where(or_(
                InboundMessage.sha256 == digest,
                and_(InboundMessage.mailbox == mailbox, InboundMessage.uidvalidity.is_(None),
                     InboundMessage.uid == uid))),
            {"sha256": digest, "mailbox": mailbox, "uidvalidity": uidvalidity,
             "uid": uid}).all()
        existing = next((r for r in found if r.sha256 == digest), found[0] if found else None)
    if existing is not None:
        if uid is not None and (existing.uidvalidity, existing.uid) != (uidvalidity, uid):
            _release_position(session, mailbox, uidvalidity, uid, keep=existing.id)
            existing.mailbox, existing.uidvalidity, existing.uid = mailbox, uidvalidity, uid
            existing.moved = False
        return existing, False
    row = InboundMessage(
        mailbox=mailbox, uidvalidity=uidvalidity, uid=uid, message_id=message_id,
        sha256=digest, raw=raw, size=len(raw), status="new", received_at=utcnow(),
    )
    try:
        with savepoint_unless_locked(session):
            session.add(row)
            session.flush()
    except IntegrityError:
        # Another process stored it between our SELECT and INSERT.
        found = session.scalars(
            select(InboundMessage).where(InboundMessage.sha256 == digest)
        ).one()
        return found, False
    return row, True


# Built once: building an ORM statement costs more than running it (two per stored mail).
_BY_SHA256 = select(InboundMessage).where(InboundMessage.sha256 == bindparam("sha256"))
_BY_SHA256_OR_POSITION = select(InboundMessage).where(or_(
    InboundMessage.sha256 == bindparam("sha256"),
    and_(InboundMessage.mailbox == bindparam("mailbox"),
         InboundMessage.uidvalidity == bindparam("uidvalidity"),
         InboundMessage.uid == bindparam("uid"))))


def _release_position(session: Session, mailbox: str, uidvalidity: int | None, uid: int,
                      keep: int) -> None:
    """Clear a stale row's claim on a position another row is moving to."""
    session.execute(
        update(InboundMessage)
        .where(InboundMessage.mailbox == mailbox, InboundMessage.uidvalidity == uidvalidity,
               InboundMessage.uid == uid, InboundMessage.id != keep)
        .values(uid=None)
    )


def due_ids_for_processing(session: Session, now: datetime, limit: int = 50) -> list[int]:
    """Ids of the rows waiting to be processed, oldest first, without loading the rows (and
    their raw bytes); on PostgreSQL rows another daemon holds are skipped."""
    stmt = (
        select(InboundMessage.id)
        .where(InboundMessage.status == "new")
        .where((InboundMessage.next_attempt_at.is_(None)) | (InboundMessage.next_attempt_at <= now))
        .order_by(InboundMessage.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return list(session.scalars(stmt))


def reprocess(session: Session, inbound_id: int) -> InboundMessage:
    """Put a quarantined (or any) row back in line for processing."""
    row = session.get(InboundMessage, inbound_id)
    if row is None:
        raise LookupError(f"no inbound message {inbound_id}; `warrantyd inbox list` shows them")
    if row.status == "done":
        raise ValueError(f"inbound message {inbound_id} was processed already "
                         f"({row.classification}); nothing to do")
    row.status = "new"
    row.attempts = 0
    row.next_attempt_at = None
    return row
