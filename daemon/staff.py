"""Staff replies to digests: who may act, what each command does, and the receipt.

The order of questions for one mail from (or claiming to be from) staff:

1. *May this mail act at all?*  :func:`~warrantyd.daemon.staff_auth.authorize_staff_reply`
   decides (a staff address, on the reply token issued to that address for that digest or
   the digest's Message-ID, authenticated when required).  When it may not, nothing happens:
   a ``command_refused`` history event and a log line, and no mail back — a forged From
   would otherwise turn us into a backscatter source.  The next digest lists the refusal.
2. *Was this very mail applied before?*  A mail re-sent with the same Message-ID (a client
   retry, a second copy) gets no second application and no second receipt.
3. *Is every line right?*  All commands are parsed, then applied inside a savepoint in a
   fixed order (edits and vendors first, so an ``accept`` further up already sends the edited
   text to the chosen vendor).  Any line that fails — unreadable, or wrong for the current
   state (accepting a rejected item, an unknown vendor, a vendor whose mail bounced) — rolls
   the savepoint back: none of it happened, not even the lines that were fine.
4. *The receipt.*  Every authorised reply gets one (kind ``receipt``, threaded on the staff
   mail), saying per line what was done or exactly why nothing was.  A reply without any
   command gets the command list instead, at most once per sender per day.

Staff command only the work of divisions they are staff of: the digest's division decides
who may reply at all, and every work order a line names (an item, or ``WO-n``) must be of a
division the sender is staff of — one of another division is answered as if it did not
exist.  Vendors are looked up among the work order's division's own.

Applying a command twice is harmless by state: accepting an accepted work order changes
nothing and the receipt says so.  Every accept, edit and reject is also a
:class:`~warrantyd.storage.models.Feedback` row, which is what the drafters learn from.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import ModuleType

from sqlalchemy import select
from sqlalchemy.orm import Session

from warrantyd.daemon.actions import Effects, MailContext, record, record_on_thread
from warrantyd.daemon.config import Config, DivisionConfig
from warrantyd.daemon.digests import (
    REFUSED_EVENT,
    _local,
    digest_mode,
    queue_digests_for_request,
    staff_reply_token,
    trade_label,
)
from warrantyd.daemon.outbox import queue_mail
from warrantyd.daemon.render import render_mail
from warrantyd.daemon.staff_auth import authorize_staff_reply
from warrantyd.daemon.tokens import plus_address
from warrantyd.parsers import classify as kinds
from warrantyd.parsers.commands import HELP_TEXT, Command, CommandParse, parse_commands
from warrantyd.parsers.subjects import strip_subject_prefix
from warrantyd.storage.models import (
    Digest,
    Feedback,
    HistoryEvent,
    OutboundMessage,
    ServiceRequest,
    Vendor,
    WorkOrder,
)
from warrantyd.storage.queries import BOUNCED_FLAG

log = logging.getLogger("warrantyd.staff")

PRIORITIES = ("emergency", "urgent", "routine")

_PHASES = {"edit": 0, "assign": 1, "merge": 2, "accept": 3, "reject": 4, "new": 5, "note": 6,
           "complete": 7, "reopen": 8, "help": 9}
"""Apply order: what shapes a work order before what sends it."""


class CommandRefused(Exception):
    """One command cannot be applied in the current state; the message is for the receipt."""


class VendorLookupError(LookupError):
    """No vendor, or more than one, matches what staff wrote."""

    def __init__(self, message: str, candidates: list[Vendor] | None = None) -> None:
        super().__init__(message)
        self.candidates = candidates or []


# --- vendors by name, alias or email --------------------------------------------------------

_VENDOR_NOISE = frozenset({"the", "inc", "llc", "co", "corp", "company", "ltd", "and", "of"})


def _words(text: str) -> list[str]:
    return [w for w in re.findall(r"[a-z0-9]+", text.lower().replace("&", " and "))
            if w not in _VENDOR_NOISE]


def _describe(vendors: list[Vendor]) -> str:
    return ", ".join(f"{v.name} ({v.email})" for v in vendors[:6])


def resolve_vendor(session: Session, text: str, division: str | None) -> Vendor:
    """The one vendor ``text`` names: an email, a name or alias, or an unambiguous part of one.

    Only vendors of ``division`` are considered (None: every vendor), so the same company
    in two divisions is found as the row of the work order's division, and an error lists
    only that division's vendors.

    Tried in order, stopping at the first step that finds anything: exact email; exact name
    or alias (case, punctuation and "Inc"/"LLC" ignored); the words written all appear in one
    vendor's name or alias ("Ace" for "Ace Plumbing"); a close spelling ("Ace Plumbng").  A
    step that finds several vendors is an error listing them, never a guess.
    """
    wanted = text.strip().strip("<>\"'").strip()
    if not wanted:
        raise VendorLookupError("no vendor named; write 'assign 1 to VENDOR NAME or EMAIL'")
    query = select(Vendor).order_by(Vendor.name)
    if division is not None:
        query = query.where(Vendor.division == division)
    vendors = list(session.scalars(query))
    active = [v for v in vendors if v.active]
    if "@" in wanted:
        found = [v for v in vendors if v.email.lower() == wanted.lower()]
        if found:
            if not found[0].active:
                raise VendorLookupError(f"vendor {found[0].name} ({found[0].email}) is inactive")
            return found[0]
        domain = wanted.lower().rpartition("@")[2]
        near = [v for v in active if v.email.lower().endswith("@" + domain)]
        hint = f"; vendors at {domain}: {_describe(near)}" if near else ""
        raise VendorLookupError(f"no vendor has the email address {wanted}{hint}", near)
    key = _words(wanted)
    if not key:
        raise VendorLookupError(f"'{wanted}' does not name a vendor")

    def names(v: Vendor) -> list[list[str]]:
        return [_words(n) for n in (v.name, *v.aliases) if _words(n)]

    exact = [v for v in active if any(n == key for n in names(v))]
    if len(exact) == 1:
        return exact[0]
    if len(exact) > 1:
        raise VendorLookupError(f"'{wanted}' matches several vendors: {_describe(exact)}; "
                                "write the email address instead", exact)
    contains = [v for v in active if any(set(key) <= set(n) for n in names(v))]
    if len(contains) == 1:
        return contains[0]
    if len(contains) > 1:
        raise VendorLookupError(f"'{wanted}' matches several vendors: {_describe(contains)}; "
                                "write more of the name or the email address", contains)
    joined = " ".join(key)
    scored = sorted(((max(difflib.SequenceMatcher(None, joined, " ".join(n)).ratio()
                          for n in names(v)), v) for v in active if names(v)),
                    key=lambda pair: -pair[0])
    close = [v for score, v in scored if score >= 0.8]
    if len(close) == 1:
        return close[0]
    if len(close) > 1:
        raise VendorLookupError(f"'{wanted}' is close to several vendors: {_describe(close)}; "
                                "write the name in full or the email address", close)
    near = [v for score, v in scored[:3] if score >= 0.5]
    hint = f"; did you mean {_describe(near)}?" if near else ""
    raise VendorLookupError(f"no vendor is called '{wanted}'{hint}", near)


def suggest_vendor(session: Session, trade: str, community: str | None,
                   division: str | None) -> Vendor | None:
    """The active vendor for ``trade`` (of ``division`` when given), preferring one that
    works in ``community``."""
    query = select(Vendor).where(Vendor.active).order_by(Vendor.id)
    if division is not None:
        query = query.where(Vendor.division == division)
    vendors = [v for v in session.scalars(query) if trade in v.trades]
    local = [v for v in vendors if community and community in v.communities]
    return (local or vendors or [None])[0]


def _trade(config: Config, text: str) -> str:
    """A trade as staff write it ("Windows & doors", "hvac", "garage") -> its key."""
    trades = config.company.trades
    norm = "_".join(_words(text.replace("&", " ")))
    if norm in trades:
        return norm
    by_label = {"_".join(_words(trade_label(t))): t for t in trades}
    if norm in by_label:
        return by_label[norm]
    parts = set(norm.split("_"))
    partial = [t for t in trades if parts <= set(t.split("_"))]
    if len(partial) == 1:
        return partial[0]
    close = difflib.get_close_matches(norm, trades, n=1, cutoff=0.75)
    if close:
        return close[0]
    raise CommandRefused(f"'{text}' is not a trade; use one of {', '.join(trades)}")


# --- one reply --------------------------------------------------------------------------------

@dataclass
class LineResult:
    """What one command line did (``results``) or why it could not (``error``)."""

    line: int
    source: str
    results: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class _Applier:
    """Applies the commands of one authorised reply; every method may raise CommandRefused."""

    session: Session
    config: Config
    actor: str
    now: datetime
    digest: Digest | None
    inbound_id: int | None
    commands: tuple[Command, ...]
    accepting: set[int] = field(default_factory=set)
    """Work orders an accept of this reply will send (so an assign leaves the send to it)."""
    merged: dict[int, tuple[int, int]] = field(default_factory=dict)
    """Work order id -> (kept work order id, line) for merges of this reply."""
    new_items: list[int] = field(default_factory=list)

    # -- lookups --

    def division_of(self, wo: WorkOrder) -> str:
        """The (configured) division ``wo`` belongs to."""
        return self._vendors_module().division_of(self.config, wo.service_request).name

    def may_command(self, wo: WorkOrder) -> bool:
        """The sender is staff of ``wo``'s division."""
        return self.config.is_staff(self.actor, self.division_of(wo))

    def item_wo(self, item: int) -> WorkOrder:
        ids = self.digest.work_order_ids if self.digest is not None else []
        if not 1 <= item <= len(ids):
            raise CommandRefused(f"item {item} is not in this digest")
        wo = self.session.get(WorkOrder, ids[item - 1])
        if wo is None:
            raise CommandRefused(f"item {item} (WO-{ids[item - 1]}) no longer exists")
        if not self.may_command(wo):
            raise CommandRefused(f"item {item} is not in this digest")
        return wo

    def wo_by_ref(self, ref: str) -> WorkOrder:
        match = re.search(r"\d+", ref)
        wo = self.session.get(WorkOrder, int(match.group(0))) if match else None
        if wo is None or not self.may_command(wo):
            # Another division's work order is answered like a missing one: its staff's
            # business, not even its existence, is shown to anyone else.
            raise CommandRefused(f"{ref} does not exist")
        return wo

    def item_number(self, wo: WorkOrder) -> str:
        ids = self.digest.work_order_ids if self.digest is not None else []
        return str(ids.index(wo.id) + 1) if wo.id in ids else wo.ref

    def _vendors_module(self) -> ModuleType:
        from warrantyd.daemon import vendors

        return vendors

    # -- shared steps --

    def feedback(self, wo: WorkOrder, decision: str, *, reason: str | None = None) -> None:
        sr = wo.service_request
        vendor = wo.vendor or wo.suggested_vendor
        self.session.add(Feedback(
            at=self.now, work_order_id=wo.id, decision=decision, source_text=sr.body or "",
            draft_trade=wo.draft_trade or wo.trade,
            draft_description=wo.draft_description or wo.description,
            final_trade=None if decision == "reject" else wo.trade,
            final_description=None if decision == "reject" else wo.description,
            final_priority=None if decision == "reject" else wo.priority,
            vendor_email=vendor.email if vendor is not None and decision != "reject" else None,
            community=sr.home.community if sr.home is not None else None,
            reason=reason, actor=self.actor))

    def history(self, wo: WorkOrder, event: str, detail: str, *, internal: bool = False) -> None:
        record(self.session, event, self.actor, detail, sr_id=wo.service_request_id,
               wo_id=wo.id, internal=internal, at=self.now)

    def check_vendor_reachable(self, wo: WorkOrder, vendor: Vendor) -> None:
        if vendor.bounced_at is not None or (wo.vendor_id == vendor.id
                                             and BOUNCED_FLAG in wo.flags):
            when = f" on {vendor.bounced_at:%Y-%m-%d}" if vendor.bounced_at else ""
            raise CommandRefused(
                f"{wo.ref}: mail to {vendor.name} ({vendor.email}) bounced{when}; assign "
                f"another vendor ('assign {self.item_number(wo)} to NAME') or have the "
                "vendor's address corrected")

    def send_to_vendor(self, wo: WorkOrder, vendor: Vendor) -> str:
        """Draft -> in progress with ``vendor``, the vendor notice queued; the SR follows."""
        self.check_vendor_reachable(wo, vendor)
        wo.vendor = vendor
        wo.vendor_id = vendor.id
        wo.status = "in_progress"
        wo.needs_vendor = False
        wo.updated_at = self.now
        self.session.flush()
        sr = wo.service_request
        if sr.status in ("open", "resolved"):
            sr.status = "in_progress"
            sr.resolved_at = None
            sr.updated_at = self.now
            record(self.session, "request_in_progress", self.actor,
                   f"{wo.ref} went to {vendor.name}", sr_id=sr.id, at=self.now)
        self._vendors_module().queue_vendor_notice(self.session, self.config, wo, self.now,
                                                   self.actor)
        return f"{vendor.name} emailed"

    # -- the commands --

    def accept(self, cmd: Command) -> list[str]:
        out: list[str] = []
        for item in cmd.items:
            wo = self.item_wo(item)
            if wo.id in self.merged:
                keep, line = self.merged[wo.id]
                if cmd.all:
                    out.append(f"{wo.ref} skipped: merged into WO-{keep} (line {line})")
                    continue
                raise CommandRefused(f"item {item} ({wo.ref}) is merged into WO-{keep} on line "
                                     f"{line}; accept item {self.item_number_id(keep)} instead")
            if wo.status in ("rejected", "completed"):
                why = (f"merged into WO-{wo.merged_into_id}" if wo.merged_into_id
                       else wo.status)
                if cmd.all:
                    out.append(f"{wo.ref} skipped: it is {why}")
                    continue
                hint = "; 'reopen' it first" if wo.status == "completed" or not \
                    wo.merged_into_id else ""
                raise CommandRefused(f"item {item} ({wo.ref}) is already {why} and cannot be "
                                     f"accepted{hint}")
            if wo.status == "in_progress":
                vendor = wo.vendor.name if wo.vendor else "its vendor"
                if BOUNCED_FLAG in wo.flags and wo.vendor is not None:
                    self.check_vendor_reachable(wo, wo.vendor)
                out.append(f"{wo.ref} was already accepted (in progress with {vendor}); "
                           "nothing changed")
                continue
            vendor = wo.vendor or wo.suggested_vendor
            if vendor is None or not vendor.active:
                first_time = not wo.needs_vendor
                wo.needs_vendor = True
                wo.updated_at = self.now
                if first_time:
                    self.history(wo, "accepted_needs_vendor",
                                 "accepted, but no vendor: stays a draft until one is assigned")
                    self.feedback(wo, "accept")
                out.append(f"{wo.ref} accepted, but it has no vendor: it stays a draft marked "
                           f"'needs vendor'; reply 'assign {self.item_number(wo)} to VENDOR'")
                continue
            self.check_vendor_reachable(wo, vendor)
            self.feedback(wo, "accept")
            self.history(wo, "accepted", f"accepted for {vendor.name} <{vendor.email}>")
            sent = self.send_to_vendor(wo, vendor)
            out.append(f"{wo.ref} accepted, {sent}")
        return out

    def item_number_id(self, wo_id: int) -> str:
        ids = self.digest.work_order_ids if self.digest is not None else []
        return str(ids.index(wo_id) + 1) if wo_id in ids else f"WO-{wo_id}"

    def _editable(self, wo: WorkOrder, item: int) -> None:
        if wo.id in self.merged:
            raise CommandRefused(f"item {item} ({wo.ref}) is merged into "
                                 f"WO-{self.merged[wo.id][0]} by this reply; edit that one")
        if wo.status in ("rejected", "completed"):
            raise CommandRefused(f"item {item} ({wo.ref}) is already {wo.status}; "
                                 "it can no longer be changed")

    def edit(self, cmd: Command) -> list[str]:
        out: list[str] = []
        text = (cmd.text or "").strip()
        for item in cmd.items:
            wo = self.item_wo(item)
            self._editable(wo, item)
            after = " (the vendor already has the job: tell them if it matters)" \
                if wo.status == "in_progress" else ""
            if cmd.field == "trade":
                trade = _trade(self.config, text)
                if trade == wo.trade:
                    out.append(f"{wo.ref} is already {trade_label(trade)}; nothing changed")
                    continue
                old = wo.trade
                wo.trade = trade
                note = ""
                if wo.vendor is None:
                    sr = wo.service_request
                    community = sr.home.community if sr.home is not None else None
                    suggested = suggest_vendor(self.session, trade, community,
                                               self.division_of(wo))
                    wo.suggested_vendor = suggested
                    wo.suggested_vendor_id = suggested.id if suggested else None
                    note = (f"; suggested vendor now {suggested.name}" if suggested
                            else "; no vendor does that trade yet")
                self.history(wo, "edited", f"trade: {old} -> {trade}")
                out.append(f"{wo.ref} trade changed from {trade_label(old)} to "
                           f"{trade_label(trade)}{note}{after}")
            elif cmd.field == "priority":
                priority = text.lower()
                if priority not in PRIORITIES:
                    raise CommandRefused(f"'{text}' is not a priority; use emergency, urgent "
                                         "or routine")
                if priority == wo.priority:
                    out.append(f"{wo.ref} is already {priority}; nothing changed")
                    continue
                old = wo.priority
                wo.priority = priority
                self.history(wo, "edited", f"priority: {old} -> {priority}")
                out.append(f"{wo.ref} priority changed from {old} to {priority}{after}")
            else:
                if not text:
                    raise CommandRefused("edit needs the new description after a colon")
                if text == wo.description:
                    out.append(f"{wo.ref} already reads like that; nothing changed")
                    continue
                old = wo.description
                wo.description = text
                wo.title = _title(text)
                self.history(wo, "edited", f"description was: {old}\nnow: {text}")
                out.append(f"{wo.ref} description replaced{after}")
            wo.updated_at = self.now
            self.feedback(wo, "edit")
        return out

    def reject(self, cmd: Command) -> list[str]:
        out: list[str] = []
        reason = (cmd.text or "").strip() or None
        for item in cmd.items:
            wo = self.item_wo(item)
            if wo.status == "rejected":
                why = f" (merged into WO-{wo.merged_into_id})" if wo.merged_into_id else ""
                out.append(f"{wo.ref} was already rejected{why}; nothing changed")
                continue
            if wo.status == "completed":
                raise CommandRefused(f"item {item} ({wo.ref}) is already completed and cannot "
                                     "be rejected")
            if wo.status == "in_progress":
                who = wo.vendor.name if wo.vendor else "a vendor"
                raise CommandRefused(f"item {item} ({wo.ref}) is already in progress with {who}; "
                                     f"it cannot be rejected now (use 'note {wo.ref}: ...' or "
                                     f"'complete {wo.ref}')")
            wo.status = "rejected"
            wo.needs_vendor = False
            wo.updated_at = self.now
            self.history(wo, "rejected", reason or "rejected without a reason")
            self.feedback(wo, "reject", reason=reason)
            out.append(f"{wo.ref} rejected" + (f" ({reason})" if reason else ""))
            sr = wo.service_request
            self._vendors_module().resolve_if_done(self.session, self.config, sr, self.now)
            if sr.status == "resolved":
                out.append(f"{sr.ref} is resolved (all its work is done) and the homeowner "
                           "is told")
        return out

    @property
    def digest_division(self) -> str | None:
        return self.config.division(self.digest.division).name if self.digest else None

    def assign(self, cmd: Command) -> list[str]:
        try:
            vendor = resolve_vendor(self.session, cmd.vendor or "", self.digest_division)
        except VendorLookupError as exc:
            raise CommandRefused(str(exc)) from exc
        out: list[str] = []
        for item in cmd.items:
            wo = self.item_wo(item)
            self._vendors_module().check_same_division(self.config, wo, vendor)
            self._editable(wo, item)
            if wo.vendor_id == vendor.id:
                if BOUNCED_FLAG in wo.flags:
                    self.check_vendor_reachable(wo, vendor)
                out.append(f"{wo.ref} is already assigned to {vendor.name}; nothing changed")
                continue
            self.check_vendor_reachable(wo, vendor)
            old = wo.vendor
            wo.flags = [f for f in wo.flags if f != BOUNCED_FLAG]
            wo.updated_at = self.now
            if wo.status == "in_progress" and old is not None:
                wo.vendor, wo.vendor_id = vendor, vendor.id
                self.session.flush()
                self.history(wo, "vendor_reassigned", f"{old.name} -> {vendor.name}")
                self._vendors_module().queue_vendor_withdrawal(self.session, self.config, wo,
                                                               old, self.now)
                self._vendors_module().queue_vendor_notice(self.session, self.config, wo,
                                                           self.now, self.actor)
                self.feedback(wo, "edit", reason=f"vendor changed from {old.name}")
                out.append(f"{wo.ref} reassigned from {old.name} to {vendor.name}: "
                           f"{old.name} told the job is withdrawn, {vendor.name} emailed")
                continue
            wo.vendor, wo.vendor_id = vendor, vendor.id
            self.history(wo, "vendor_assigned", f"{vendor.name} <{vendor.email}>")
            if wo.needs_vendor and wo.id not in self.accepting:
                self.feedback(wo, "accept")
                sent = self.send_to_vendor(wo, vendor)
                out.append(f"{wo.ref} assigned to {vendor.name} and, as it was accepted "
                           f"already, sent: {sent}")
            elif wo.id in self.accepting:
                out.append(f"{wo.ref} assigned to {vendor.name}")
            else:
                out.append(f"{wo.ref} assigned to {vendor.name}; it goes to them when "
                           f"accepted ('accept {self.item_number(wo)}')")
        return out

    def merge(self, cmd: Command) -> list[str]:
        wos = [self.item_wo(item) for item in cmd.items]
        keep, others = wos[0], wos[1:]
        divisions = sorted({self.division_of(wo) for wo in wos})
        if len(divisions) > 1:
            raise CommandRefused(f"items {', '.join(map(str, cmd.items))} belong to different "
                                 f"divisions ({', '.join(divisions)}); a work order stays in "
                                 "its division, so they cannot be merged")
        for item, wo in zip(cmd.items, wos, strict=True):
            if wo.id in self.merged:
                raise CommandRefused(f"item {item} ({wo.ref}) is already merged by line "
                                     f"{self.merged[wo.id][1]}")
            if wo.status != "draft":
                raise CommandRefused(f"item {item} ({wo.ref}) is {wo.status.replace('_', ' ')}; "
                                     "only drafts can be merged")
        assigned = {wo.vendor_id for wo in wos if wo.vendor_id is not None}
        if len(assigned) > 1:
            names = ", ".join(sorted({wo.vendor.name for wo in wos if wo.vendor}))
            raise CommandRefused(f"items {', '.join(map(str, cmd.items))} are assigned to "
                                 f"different vendors ({names}); one work order has one vendor")
        for wo in others:
            keep.description = f"{keep.description.rstrip()}\n\nAlso: {wo.description.strip()}"
            keep.photos = [*keep.photos, *[p for p in wo.photos if p not in keep.photos]]
            if PRIORITIES.index(wo.priority if wo.priority in PRIORITIES else "routine") < \
                    PRIORITIES.index(keep.priority if keep.priority in PRIORITIES else "routine"):
                keep.priority = wo.priority
                keep.emergency_reason = keep.emergency_reason or wo.emergency_reason
            if keep.vendor_id is None and wo.vendor_id is not None:
                keep.vendor, keep.vendor_id = wo.vendor, wo.vendor_id
            if keep.suggested_vendor_id is None and wo.suggested_vendor_id is not None:
                keep.suggested_vendor_id = wo.suggested_vendor_id
            keep.needs_vendor = keep.needs_vendor or wo.needs_vendor
            wo.status = "rejected"
            wo.merged_into_id = keep.id
            wo.needs_vendor = False
            wo.updated_at = self.now
            self.merged[wo.id] = (keep.id, cmd.line)
            self.history(wo, "merged", f"merged into {keep.ref} (rejected as a separate job)")
        keep.updated_at = self.now
        self.session.flush()
        refs = ", ".join(wo.ref for wo in others)
        self.history(keep, "merged", f"{refs} merged into this work order")
        return [f"{refs} merged into {keep.ref} (one job; their descriptions appended, "
                f"they are closed as merged)"]

    def new(self, cmd: Command) -> list[str]:
        sr = (self.session.get(ServiceRequest, self.digest.service_request_id)
              if self.digest is not None and self.digest.service_request_id else None)
        if sr is None:
            raise CommandRefused("this digest covers several requests, so 'new:' does not know "
                                 "where the work belongs; use `warrantyd wo create SR-n` or "
                                 "reply to the request's own digest")
        description = (cmd.text or "").strip()
        same = self._recent_same_work_order(sr, description)
        if same is not None:
            return [f"{same.ref} on {sr.ref} already has this description (created "
                    f"{_local(self.config, same.created_at):%b %d %H:%M}); nothing new created"]
        wo = _new_work_order(self.session, self.config, sr, trade=None,
                             description=description, vendor=None,
                             actor=self.actor, now=self.now)
        assert self.digest is not None
        self.digest.work_order_ids = [*self.digest.work_order_ids, wo.id]
        number = len(self.digest.work_order_ids)
        vendor = f"; suggested vendor {wo.suggested_vendor.name}" if wo.suggested_vendor else ""
        return [f"{wo.ref} created on {sr.ref} as a draft ({trade_label(wo.trade)}, "
                f"{wo.priority}{vendor}). It is item {number} of this digest now: reply "
                f"'accept {number}' (or 'edit {number} trade: X') to go on"]

    def _recent_same_work_order(self, sr: ServiceRequest, description: str) -> WorkOrder | None:
        """A work order on ``sr`` with this description made in the last day: the same reply
        re-sent (with a new Message-ID) must not create the work twice."""
        wanted = " ".join(description.lower().split())
        since = self.now - timedelta(days=1)
        for wo in sr.work_orders:
            if wo.created_at >= since and " ".join(wo.description.lower().split()) == wanted:
                return wo
        return None

    def note(self, cmd: Command) -> list[str]:
        out = []
        for ref in cmd.wo:
            wo = self.wo_by_ref(ref)
            text = (cmd.text or "").strip()
            if self.session.scalars(select(HistoryEvent.id).where(
                    HistoryEvent.work_order_id == wo.id, HistoryEvent.event == "note",
                    HistoryEvent.detail == text,
                    HistoryEvent.at >= self.now - timedelta(days=1))).first() is not None:
                out.append(f"{wo.ref} already has this note; not added twice")
                continue
            self.history(wo, "note", text, internal=True)
            out.append(f"internal note added to {wo.ref} (vendors and homeowners never see it)")
        return out

    def complete(self, cmd: Command) -> list[str]:
        out = []
        for ref in cmd.wo:
            wo = self.wo_by_ref(ref)
            if wo.status == "completed":
                out.append(f"{wo.ref} was already completed; nothing changed")
                continue
            if wo.status == "rejected":
                raise CommandRefused(f"{wo.ref} was rejected; 'reopen {wo.ref}' first if the "
                                     "work was done after all")
            sr = wo.service_request
            self._vendors_module().complete_work_order(
                self.session, self.config, wo, self.actor, self.now, inbound=None)
            self.session.flush()
            done = f"{wo.ref} completed"
            if sr.status == "resolved":
                done += f"; {sr.ref} is resolved and the homeowner is told"
            out.append(done)
        return out

    def reopen(self, cmd: Command) -> list[str]:
        out = []
        for ref in cmd.wo:
            wo = self.wo_by_ref(ref)
            if wo.status == "completed":
                self._vendors_module().reopen_work_order(self.session, self.config, wo,
                                                         self.actor, self.now)
                self.session.flush()
                out.append(f"{wo.ref} reopened ({wo.status.replace('_', ' ')})")
            elif wo.status == "rejected":
                if wo.merged_into_id:
                    raise CommandRefused(f"{wo.ref} was merged into WO-{wo.merged_into_id}; "
                                         "edit that work order instead")
                self._vendors_module().reopen_work_order(self.session, self.config, wo,
                                                         self.actor, self.now)
                out.append(f"{wo.ref} reopened as a draft")
            else:
                out.append(f"{wo.ref} is {wo.status.replace('_', ' ')}, not completed; "
                           "nothing changed")
        return out

    def help(self, cmd: Command) -> list[str]:
        return ["the command list is below"]

    def apply(self) -> list[LineResult]:
        """Apply every command; each line's results or error, in the order written."""
        results = {id(c): LineResult(c.line, c.source.split("\n", 1)[0][:200])
                   for c in self.commands}
        self.accepting = set()
        for cmd in self.commands:
            if cmd.verb == "accept":
                for item in cmd.items:
                    with contextlib.suppress(CommandRefused):
                        self.accepting.add(self.item_wo(item).id)
        state_error = self._vendors_module().WorkOrderStateError
        handlers: dict[str, Callable[[Command], list[str]]] = {
            "accept": self.accept, "edit": self.edit, "reject": self.reject,
            "assign": self.assign, "merge": self.merge, "new": self.new, "note": self.note,
            "complete": self.complete, "reopen": self.reopen, "help": self.help}
        for cmd in sorted(self.commands, key=lambda c: (_PHASES.get(c.verb, 99), c.line)):
            result = results[id(cmd)]
            try:
                with self.session.begin_nested():
                    result.results = handlers[cmd.verb](cmd)
            except (CommandRefused, state_error) as exc:
                result.error = f"line {cmd.line}: '{result.source}': {exc}"
        return [results[id(c)] for c in self.commands]


def _title(text: str) -> str:
    from warrantyd.daemon.drafters.offline import short_title

    return short_title(text.strip())


def _new_work_order(session: Session, config: Config, sr: ServiceRequest, *, trade: str | None,
                    description: str, vendor: Vendor | None, actor: str,
                    now: datetime) -> WorkOrder:
    """A draft written by staff: the trade inferred when not given, a vendor suggested."""
    from warrantyd.daemon.drafters.base import DraftRequest
    from warrantyd.daemon.drafters.coverage import coverage_hint
    from warrantyd.daemon.drafters.offline import OfflineDrafter
    from warrantyd.daemon.drafting import feedback_examples

    if not description:
        raise CommandRefused("a new work order needs a description")
    priority, location, reason = "routine", None, None
    if trade is None:
        drafted = OfflineDrafter(feedback_examples(session)).draft_sync(DraftRequest(
            text=description, trades=config.company.trades))
        if drafted.issues:
            issue = drafted.issues[0]
            trade, priority, location = issue.trade, issue.priority, issue.location
            reason = issue.emergency_reason
        else:
            trade = "other"
    home = sr.home
    hint = coverage_hint(trade, description, home.closing_date if home else None, now.date())
    suggested = vendor or suggest_vendor(session, trade, home.community if home else None,
                                         config.division(sr.division).name)
    wo = WorkOrder(
        service_request_id=sr.id, status="draft", trade=trade, priority=priority,
        location=location, title=_title(description), description=description,
        vendor_id=vendor.id if vendor else None,
        suggested_vendor_id=suggested.id if suggested else None,
        coverage_hint=hint.summary + (f" ({hint.exclusion})" if hint.exclusion else ""),
        emergency_reason=reason, engine="manual", created_at=now, updated_at=now)
    session.add(wo)
    session.flush()
    record(session, "created", actor,
           f"manual work order ({trade}, {priority}): {description}"[:8000],
           sr_id=sr.id, wo_id=wo.id, at=now)
    return wo


def create_manual_work_order(session: Session, config: Config, *, sr_ref: str,
                             trade: str | None, description: str, vendor: str | None,
                             actor: str, now: datetime, announce: bool = True) -> WorkOrder:
    """A draft work order on ``sr_ref`` written by staff (``warrantyd wo create``).

    ``trade`` may be written loosely ("Windows & doors"); without it the trade is inferred
    from the description.  ``vendor`` is a name, alias or email (see :func:`resolve_vendor`).
    The work order is a draft like any other: with ``announce`` in immediate digest mode a
    digest for it goes to staff now; in scheduled mode the next digest lists it.  Raises
    ``LookupError`` / ``ValueError`` with a message for the operator.
    """
    match = re.fullmatch(r"\s*(?:sr[-\s#]*)?(\d+)\s*", sr_ref, re.IGNORECASE)
    sr = session.get(ServiceRequest, int(match.group(1))) if match else None
    if sr is None:
        raise LookupError(f"no service request {sr_ref}; `warrantyd sr list` shows them")
    division = config.division(sr.division).name
    try:
        chosen = resolve_vendor(session, vendor, division) if vendor else None
        trade_key = _trade(config, trade) if trade else None
        wo = _new_work_order(session, config, sr, trade=trade_key,
                             description=description.strip(), vendor=chosen, actor=actor,
                             now=now)
    except CommandRefused as exc:
        raise ValueError(str(exc)) from exc
    if announce and digest_mode(config, division) == "immediate":
        queue_digests_for_request(session, config, sr, [wo], now)
    return wo


# --- the mail -----------------------------------------------------------------------------

def _receipt_key(sender: str, msg_id: str | None, fallback: str) -> str:
    basis = f"{sender}\n{msg_id or fallback}".encode()
    return f"receipt:{hashlib.sha256(basis).hexdigest()[:40]}"


def _digest_of(ctx: MailContext) -> Digest | None:
    thread = ctx.verdict.thread
    if thread is None or thread.digest_id is None:
        return None
    return ctx.session.get(Digest, thread.digest_id)


def _division(ctx: MailContext, digest: Digest | None) -> DivisionConfig:
    """The division a command mail is about: its digest's; else the request its thread
    names; else the one whose mailbox it arrived in."""
    if digest is not None:
        return ctx.config.division(digest.division)
    thread = ctx.verdict.thread
    if thread is not None and thread.service_request_id is not None:
        sr = ctx.session.get(ServiceRequest, thread.service_request_id)
        if sr is not None:
            return ctx.config.division(sr.division)
    return ctx.division


def _refuse(ctx: MailContext, why: str, digest: Digest | None) -> Effects:
    """Nothing happens; staff hear of it in the next digest, the sender hears nothing.

    When the From is a staff address of the division the mail is about, that address (taken
    from the config, never from the mail) is told once a day why a reply was refused: a real
    staff member with an expired digest learns what to do, and a forger learns nothing,
    since the notice goes to the person being impersonated.  Staff of another division get
    no notice, like anyone else who is not staff there.
    """
    division = _division(ctx, digest)
    sr_id = digest.service_request_id if digest is not None else None
    if sr_id is None and ctx.verdict.thread is not None:
        sr_id = ctx.verdict.thread.service_request_id
    subject = " ".join(ctx.msg.subject.split())[:120]
    record(ctx.session, REFUSED_EVENT, ctx.sender,
           f"{why} (subject '{subject}'); nothing was applied and no reply was sent",
           sr_id=sr_id, inbound=ctx.inbound, at=ctx.now)
    log.warning("command mail from %s refused: %s", ctx.sender, why)
    effects = Effects(status="ignored")
    staff = next((a for a in division.staff.addresses if a == ctx.msg.from_addr), None)
    if staff is not None:
        day = f"{_local(ctx.config, ctx.now):%Y-%m-%d}"
        text, html = render_mail("staff_refused", company=ctx.config.company.name, why=why,
                                 subject=subject, token_days=division.staff.token_days)
        effects.outbound.append(queue_mail(
            ctx.session, our_address=division.mailbox.address,
            from_name=division.from_name, kind="receipt", to=staff,
            subject=f"Not applied: {subject or 'your reply'}"[:250], text=text, html=html,
            dedupe_key=f"refused:{staff}:{day}", service_request_id=sr_id, now=ctx.now))
    return effects


def handle_staff_reply(ctx: MailContext) -> Effects:
    """A mail that may carry staff commands: authorise, apply all or nothing, answer.

    Meant for staff replies, staff mail without a thread, and any mail on a digest thread
    (whoever wrote it): only an authorised one ever changes anything.
    """
    session, msg, now = ctx.session, ctx.msg, ctx.now
    digest = _digest_of(ctx)
    ok, why = authorize_staff_reply(msg, ctx.verdict, ctx.config,
                                    digest.division if digest is not None else None)
    if not ok:
        on_digest = ctx.verdict.thread is not None and ctx.verdict.thread.kind == "digest"
        if not on_digest and ctx.config.is_staff(msg.from_addr) and \
                not parse_commands(ctx.reply).commands:
            return record_on_thread(ctx)  # staff writing on a request thread: no commands
        return _refuse(ctx, why, digest)
    sender = ctx.sender
    key = _receipt_key(sender, msg.message_id, f"inbound:{ctx.inbound.id}")
    if session.scalars(select(OutboundMessage.id).where(OutboundMessage.dedupe_key == key)
                       ).first() is not None:
        record(session, "staff_reply_repeated", sender,
               f"the same reply (Message-ID {msg.message_id}) again: not applied twice",
               sr_id=digest.service_request_id if digest else None, inbound=ctx.inbound, at=now)
        log.info("staff reply %s from %s was applied before", msg.message_id, sender)
        return Effects()
    sr_id = digest.service_request_id if digest else None
    record(session, "staff_reply", sender,
           f"{why}\n\n{ctx.reply.new_text.strip()}"[:8000], sr_id=sr_id,
           inbound=ctx.inbound, at=now)
    session.flush()  # a write before the savepoint: SQLite then nests it properly
    refs = [f"WO-{n}" for n in digest.work_order_ids] if digest is not None else []
    parsed = parse_commands(ctx.reply, refs)
    reply_to = _reply_address(ctx, digest)
    if not parsed.commands and all(e.line == 0 for e in parsed.errors):
        return _send_help(ctx, digest, reply_to)
    lines, applied = _apply(ctx, digest, parsed)
    return _send_receipt(ctx, digest, parsed, lines, applied, reply_to, key)


def _apply(ctx: MailContext, digest: Digest | None,
           parsed: CommandParse) -> tuple[list[LineResult], bool]:
    """Apply inside a savepoint; roll it all back when any line is wrong."""
    bad_lines = {e.line for e in parsed.errors}
    runnable = tuple(c for c in parsed.commands if c.line not in bad_lines)
    applier = _Applier(ctx.session, ctx.config, ctx.sender, ctx.now, digest, ctx.inbound.id,
                       runnable)
    savepoint = ctx.session.begin_nested()
    try:
        lines = applier.apply()
    except BaseException:
        savepoint.rollback()
        raise
    if parsed.errors or any(line.error for line in lines):
        savepoint.rollback()
        return lines, False
    savepoint.commit()
    return lines, True


def _reply_address(ctx: MailContext, digest: Digest | None) -> str | None:
    """The sender's own reply token for this digest, so a reply to the receipt works too."""
    thread = ctx.verdict.thread
    mailbox = _division(ctx, digest).mailbox.address
    if thread is not None and thread.evidence == "token" and thread.token:
        return plus_address(mailbox, thread.token)
    if digest is None:
        return None
    token = staff_reply_token(ctx.session, ctx.config, ctx.sender, digest.id, ctx.now,
                              digest.division)
    return plus_address(mailbox, token.token)


def _answer(ctx: MailContext, *, kind: str, template: str, dedupe_key: str,
            reply_to: str | None, sr_id: int | None, digest: Digest | None,
            **context: object) -> OutboundMessage:
    msg = ctx.msg
    division = _division(ctx, digest)
    text, html = render_mail(template, company=ctx.config.company.name, help_text=HELP_TEXT,
                             **context)
    topic = strip_subject_prefix(msg.subject) or "your reply"
    return queue_mail(
        ctx.session, our_address=division.mailbox.address, from_name=division.from_name,
        kind=kind, to=ctx.sender, subject=f"Re: {topic}"[:250], text=text, html=html,
        dedupe_key=dedupe_key, reply_to=reply_to, in_reply_to=msg.message_id,
        references=(*msg.references, *([msg.message_id] if msg.message_id else [])),
        service_request_id=sr_id, now=ctx.now)


def _send_help(ctx: MailContext, digest: Digest | None, reply_to: str | None) -> Effects:
    day = f"{_local(ctx.config, ctx.now):%Y-%m-%d}"
    key = f"help:{ctx.sender}:{day}"
    sr_id = digest.service_request_id if digest else None
    if ctx.session.scalars(select(OutboundMessage.id).where(OutboundMessage.dedupe_key == key)
                           ).first() is not None:
        record(ctx.session, "staff_reply_no_commands", ctx.sender,
               "no commands; the command list was sent already today", sr_id=sr_id,
               inbound=ctx.inbound, at=ctx.now)
        return Effects()
    row = _answer(ctx, kind="receipt", template="help", dedupe_key=key, reply_to=reply_to,
                  sr_id=sr_id, digest=digest, digest_id=digest.id if digest else None)
    record(ctx.session, "staff_reply_no_commands", ctx.sender, "no commands: sent the list",
           sr_id=sr_id, inbound=ctx.inbound, outbound=row, at=ctx.now)
    return Effects(outbound=[row])


def _send_receipt(ctx: MailContext, digest: Digest | None, parsed: CommandParse,
                  lines: list[LineResult], applied: bool, reply_to: str | None,
                  key: str) -> Effects:
    sr_id = digest.service_request_id if digest else None
    errors = [e.message if e.message.startswith("line ") else f"line {e.line}: {e.message}"
              for e in parsed.errors]
    errors += [line.error for line in lines if line.error]
    errors.sort(key=_line_of)
    fine = [line for line in lines if not line.error] if not applied else []
    row = _answer(
        ctx, kind="receipt", template="receipt", dedupe_key=key, reply_to=reply_to,
        sr_id=sr_id, digest=digest, digest_id=digest.id if digest else "?",
        sr_ref=f"SR-{sr_id}" if sr_id else None, applied=applied, lines=lines,
        errors=errors, fine=fine, help=any(c.verb == "help" for c in parsed.commands))
    summary = ("applied: " + "; ".join(r for line in lines for r in line.results)) if applied \
        else "nothing applied: " + "; ".join(errors)
    record(ctx.session, "staff_commands_applied" if applied else "staff_commands_refused",
           ctx.sender, summary[:8000], sr_id=sr_id, inbound=ctx.inbound, outbound=row,
           at=ctx.now)
    log.info("staff reply from %s: %s", ctx.sender, summary[:300])
    return Effects(outbound=[row])


def _line_of(error: str) -> int:
    match = re.match(r"line (\d+)", error)
    return int(match.group(1)) if match else 0


def is_command_mail(kind: str) -> bool:
    """Classifications :func:`handle_staff_reply` is meant for."""
    return kind in (kinds.STAFF_REPLY, kinds.STAFF_MAIL)


def has_commands(ctx: MailContext) -> bool:
    """True when the new text of the mail reads as staff commands ("accept 1", ...)."""
    return bool(parse_commands(ctx.reply).commands)


def on_digest_thread(ctx: MailContext) -> bool:
    thread = ctx.verdict.thread
    return thread is not None and thread.kind == "digest" and not ctx.verdict.is_automated


def guard_digest_thread(handler: Callable[[MailContext], Effects],
                        ) -> Callable[[MailContext], Effects]:
    """``handler``, except that mail on a digest thread goes to :func:`handle_staff_reply`.

    A homeowner or vendor who got hold of a digest's reply address (a forwarded digest) is
    classified as a homeowner or vendor reply; it must be refused like any unauthorised
    command mail, not drafted from or threaded onto a work order.
    """

    def guarded(ctx: MailContext) -> Effects:
        if on_digest_thread(ctx):
            return handle_staff_reply(ctx)
        return handler(ctx)

    guarded.__doc__ = handler.__doc__
    return guarded


def staff_mail(fallback: Callable[[MailContext], Effects]) -> Callable[[MailContext], Effects]:
    """For staff mail on no thread of ours: commands are refused (no token: anyone can
    write that From), anything else — a forwarded homeowner mail — goes to ``fallback``."""

    def route(ctx: MailContext) -> Effects:
        if has_commands(ctx):
            return handle_staff_reply(ctx)
        return fallback(ctx)

    return route


__all__ = [
    "CommandRefused",
    "LineResult",
    "VendorLookupError",
    "create_manual_work_order",
    "guard_digest_thread",
    "handle_staff_reply",
    "has_commands",
    "is_command_mail",
    "on_digest_thread",
    "resolve_vendor",
    "staff_mail",
    "suggest_vendor",
]
