"""From a stored inbound row to its effects, exactly once.

Each row goes through three phases:

1. *read* — parse, trim and classify, in a read-only session;
2. *think* — ask the drafter, when the mail reports problems (may take seconds: an LLM call),
   with no database transaction open;
3. *write* — one transaction that makes every change the mail causes, queues every mail it
   causes (the outbox), and marks the row done.

A crash anywhere before phase 3 commits leaves the row ``new`` and it is simply done again;
after the commit nothing is repeated.  An exception counts as one failed attempt; after
``max_attempts`` the row is quarantined (and filed to the failed folder by intake) so one bad
mail never stops the daemon; ``warrantyd inbox reprocess ID`` puts it back in line.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from sqlalchemy.orm import Session, defer

from warrantyd.daemon.actions import Effects, MailContext, act, handlers
from warrantyd.daemon.config import Config
from warrantyd.daemon.drafters.base import Drafter, DraftRequest, DraftResult
from warrantyd.daemon.drafting import (
    DirectoryCache,
    draft_request_for,
    over_daily_budget,
    prepare_drafter,
    requester_of,
)
from warrantyd.daemon.leader import row_claims_for, worker_name
from warrantyd.daemon.render import compile_mail_templates
from warrantyd.daemon.threads import DbThreadLookup
from warrantyd.daemon.tokens import installation_secret
from warrantyd.daemon.vendors import vendor_may_act
from warrantyd.parsers.classify import (
    HOMEOWNER_REPLY,
    NEW_REQUEST,
    STAFF_MAIL,
    VENDOR_REPLY,
    Classification,
    classify,
)
from warrantyd.parsers.message import ParsedMessage, parse_message
from warrantyd.parsers.trim import Reply, extract_reply
from warrantyd.storage.blob_db import blob_store_for
from warrantyd.storage.db import Database, insert_if_absent
from warrantyd.storage.inbound import due_ids_for_processing
from warrantyd.storage.models import MAIN_DIVISION, InboundMessage, Setting, WorkOrder, utcnow

if TYPE_CHECKING:  # imported when first needed (see vendors.handle_vendor_reply)
    from warrantyd.parsers.vendor_reply import VendorReading

log = logging.getLogger("warrantyd.process")

_T = TypeVar("_T")
_P = ParamSpec("_P")

DRAFTED_KINDS = (NEW_REQUEST, HOMEOWNER_REPLY, STAFF_MAIL)
RETRY_SECONDS = 30.0
"""The wait before a failed mail's second attempt; it doubles with each further one."""


@dataclass
class Reading:
    """What phase 1 learned about one mail."""

    inbound_id: int
    msg: ParsedMessage
    reply: Reply
    classification: Classification
    draft_request: DraftRequest | None
    read_vendor_with_model: bool = False
    budget_exceeded: str | None = None
    """Why the model may not draft this mail (the daily token budget is spent)."""
    arrival_division: str = MAIN_DIVISION
    """The division whose mailbox the mail arrived in (see ``Config.division_of_inbound``)."""


class Processor:
    def __init__(self, config: Config, db: Database, drafter: Drafter, *,
                 on_outbound: Callable[[], None] | None = None,
                 clock: Callable[[], datetime] = utcnow,
                 retry_seconds: float = RETRY_SECONDS, in_thread: bool = True) -> None:
        self.config = config
        self.db = db
        self.claims = row_claims_for(db)
        self.worker = worker_name()
        self.drafter = drafter
        self.on_outbound = on_outbound
        self.clock = clock
        self.retry_seconds = retry_seconds
        self.in_thread = in_thread
        """Run the parsing and database steps in a thread, so that the event loop they are
        awaited from goes on serving; the processing worker, whose loop serves nothing
        else, runs them in line (a thread hop each is pure cost there)."""
        self._lock = asyncio.Lock()
        self.directory = DirectoryCache()
        self.keep_going: Callable[[], bool] = lambda: True
        """Asked before each mail: False ends the pass there (the processing worker's daemon
        has gone away); the rows not done stay due."""
        self.on_mail: Callable[[int], None] | None = None
        """Told each mail's id before it is processed (the worker tells its daemon, which
        counts a failed attempt against that mail if the worker dies on it)."""

    def warm_up(self) -> None:
        """Load now what the first mail would otherwise wait for (a quarter of a second):
        the handlers of every kind of mail, the drafter's model and client library, the
        mail templates.  The processing worker does this before its first request."""
        handlers()
        prepare_drafter(self.drafter)
        compile_mail_templates()

    async def process_pending(self) -> int:
        """Process every due row; return how many were handled (done, ignored or failed)."""
        handled = 0
        async with self._lock:
            while True:
                ids = await self._call(self._due_ids)
                if not ids:
                    return handled
                claimed_any = False
                for inbound_id in ids:
                    if not self.keep_going():
                        return handled
                    # Several daemons on one PostgreSQL database: take only rows no one
                    # else is working on (the claim dies with the process that holds it).
                    if self.claims is not None and not await self._call(
                            self.claims.try_claim, inbound_id):
                        continue
                    claimed_any = True
                    if self.on_mail is not None:
                        self.on_mail(inbound_id)
                    try:
                        await self.process_one(inbound_id)
                    finally:
                        if self.claims is not None:
                            await self._call(self.claims.release, inbound_id)
                    handled += 1
                if not claimed_any:  # everything due is in other daemons' hands
                    return handled

    async def _call(self, step: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        if self.in_thread:
            return await asyncio.to_thread(step, *args, **kwargs)
        return step(*args, **kwargs)

    def _due_ids(self) -> list[int]:
        with self.db.reading() as session:
            return due_ids_for_processing(session, self.clock())

    async def process_one(self, inbound_id: int) -> None:
        try:
            reading = await self._call(self._read, inbound_id)
            if reading is None:
                return
            draft = None
            if reading.draft_request is not None and reading.draft_request.text.strip():
                draft = await self._draft(reading)
            vendor_reading = None
            if reading.read_vendor_with_model:
                from warrantyd.daemon.vendor_reader import read_reply

                vendor_reading = await self._call(
                    read_reply, self.config, new_text=reading.reply.new_text.strip(),
                    sent_at=reading.msg.date or self.clock(), subject=reading.msg.subject)
            effects = await self._call(self._write, reading, draft, vendor_reading)
        except Exception as exc:
            log.exception("inbound message %s failed", inbound_id)
            await self._call(self._record_failure, inbound_id, exc)
            return
        if effects.outbound and self.on_outbound is not None:
            self.on_outbound()

    async def _draft(self, reading: Reading) -> DraftResult:
        assert reading.draft_request is not None
        if reading.budget_exceeded is None or self.drafter.engine != "anthropic":
            return await self.drafter.draft(reading.draft_request)
        from warrantyd.daemon.drafters.offline import OfflineDrafter

        log.warning("drafting offline: %s", reading.budget_exceeded)
        result = await OfflineDrafter(in_line=not self.in_thread).draft(reading.draft_request)
        result.engine = "offline (fallback: daily token budget)"
        result.notes.insert(0, f"Drafted offline: {reading.budget_exceeded}.")
        return result

    def _read(self, inbound_id: int) -> Reading | None:
        # Phase 1 only reads: it holds no write lock, so mail is stored and sent meanwhile.
        with self.db.reading() as session:
            row = session.get(InboundMessage, inbound_id)
            if row is None or row.status != "new":
                return None
            msg = parse_message(row.raw)
            reply = extract_reply(msg)
            division = self.config.division_of_inbound(row.mailbox)
            secret = installation_secret(session, self.config.web.secret_env)
            lookup = DbThreadLookup(session, self.config, secret,
                                    vendor_emails=lambda: self.directory.vendor_emails(session))
            # Reply tokens are plus-addresses of the mailbox the mail came to; mail from any
            # division's address is our own.
            verdict = classify(msg, lookup, division.mailbox.address, raw=row.raw,
                               also_ours=self.config.our_addresses)
            request = None
            if verdict.kind in DRAFTED_KINDS and (
                    verdict.kind != STAFF_MAIL or requester_of(msg, reply, verdict, self.config)):
                request = draft_request_for(session, self.config, msg, reply, verdict,
                                            division.name, cache=self.directory)
            return Reading(inbound_id, msg, reply, verdict, request,
                           self._vendor_model_wanted(session, msg, reply, verdict),
                           over_daily_budget(session, self.config, self.clock())
                           if request is not None else None, division.name)

    def _vendor_model_wanted(self, session: Session, msg: ParsedMessage, reply: Reply,
                             verdict: Classification) -> bool:
        """Read a vendor reply with the model only when configured and the sender may act:
        mail from anyone else never costs a model call."""
        if verdict.kind != VENDOR_REPLY:
            return False
        from warrantyd.daemon.vendor_reader import uses_model  # see vendors.handle_vendor_reply

        if not uses_model(self.config):
            return False
        wo_id = verdict.thread.work_order_id if verdict.thread else None
        wo = session.get(WorkOrder, wo_id) if wo_id is not None else None
        return bool(wo is not None and reply.new_text.strip()
                    and vendor_may_act(msg, verdict, wo))

    def _write(self, reading: Reading, draft: DraftResult | None,
               vendor_reading: VendorReading | None = None) -> Effects:
        with self.db.session() as session:
            # Phase 1 parsed the raw bytes already: do not load them a second time.
            row = session.get(InboundMessage, reading.inbound_id, with_for_update=True,
                              options=[defer(InboundMessage.raw)])
            if row is None or row.status != "new":
                return Effects()
            # With one mailbox every copy is in the same mailbox: no claim (one write less per
            # mail, and no claim row kept for it).
            first = (claim_message_id(session, row, reading.msg.message_id)
                     if len(self.config.divisions) > 1 else None)
            if first is not None:
                # One mail delivered to two division mailboxes (To one, Cc another): the
                # first copy acts, this one is filed.
                effects = Effects(status="ignored")
                row.classification = "duplicate"
                row.reason = (f"another copy of this mail (Message-ID "
                              f"<{reading.msg.message_id}>) was handled as inbound {first}")
            else:
                blobs = blob_store_for(self.config.storage.blobs,
                                       self.config.storage.data_dir, self.db, session=session)
                effects = act(MailContext(session, self.config, blobs, row, reading.msg,
                                          reading.reply, reading.classification, draft,
                                          self.clock(), vendor_reading,
                                          arrival_division=reading.arrival_division))
                row.classification = reading.classification.kind
                row.reason = reading.classification.reason
            row.from_addr = reading.msg.from_addr
            row.subject = reading.msg.subject[:2000]
            row.message_id = row.message_id or reading.msg.message_id
            row.status = effects.status
            row.processed_at = self.clock()
            row.last_error = None
            row.claimed_by = self.worker  # which daemon did it, when several share the work
            return effects

    def _record_failure(self, inbound_id: int, exc: BaseException) -> None:
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        record_failure(self.db, self.config, inbound_id, detail, now=self.clock(),
                       retry_seconds=self.retry_seconds)


def record_failure(db: Database, config: Config, inbound_id: int, detail: str, *,
                   now: datetime, retry_seconds: float) -> None:
    """Count one failed attempt against a mail still to be done: it is tried again after a
    growing delay, and quarantined after its mailbox's ``max_attempts``."""
    with db.session() as session:
        row = session.get(InboundMessage, inbound_id)
        if row is None or row.status != "new":
            return
        row.attempts += 1
        row.last_error = detail[-4000:]
        # The mailbox's own setting: the folder the mail is filed to is that mailbox's.
        max_attempts = config.division_of_inbound(row.mailbox).mailbox.max_attempts
        if row.attempts >= max_attempts:
            row.status = "quarantined"
            row.moved = False
            log.error("inbound message %s quarantined after %d attempts: %s; "
                      "fix the cause, then run `warrantyd inbox reprocess %s`",
                      inbound_id, row.attempts, detail, inbound_id)
        else:
            delay = retry_seconds * (2 ** (row.attempts - 1))
            row.next_attempt_at = now + timedelta(seconds=delay)


def claim_message_id(session: Session, row: InboundMessage,
                     message_id: str | None) -> int | None:
    """Make ``row`` the copy of ``message_id`` that acts; return the inbound id of the copy
    that acts instead when another mailbox's copy claimed it first.

    One mail can reach two of our mailboxes (To one division, Cc another).  The claim is a
    row keyed by the Message-ID's hash, inserted in the transaction that acts on the mail:
    a second daemon handling the other copy at the same moment waits for that insert and
    then finds it (on PostgreSQL as on SQLite), and a rolled-back attempt leaves no claim.
    A copy in the same mailbox is left to act: repeats there have their own handling (a
    staff reply sent twice is answered "already applied").  Mail without a Message-ID
    cannot be told apart and always acts.
    """
    if not message_id:
        return None
    key = ("inbound-copy:" + hashlib.sha256(message_id.encode("utf-8", "replace"))
           .hexdigest())[:100]
    if insert_if_absent(session, Setting, {"key": key, "value": str(row.id)}):
        return None
    holder = session.get(Setting, key)
    first = session.get(InboundMessage, int(holder.value),
                        options=[defer(InboundMessage.raw)]) if holder is not None else None
    if first is not None and first.id != row.id and first.mailbox != row.mailbox:
        return first.id
    return None
