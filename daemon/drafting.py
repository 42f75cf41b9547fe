"""Choosing a drafter and giving it what it may read about one service request.

The drafter sees the homeowner's new text, the photos, the property and its closing date, the
division's vendors and the most relevant past staff decisions — and nothing else: no other
homeowner's data, no internal notes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, event, select
from sqlalchemy.orm import Session

from warrantyd.daemon.config import Config
from warrantyd.daemon.drafters.base import (
    Drafter,
    DraftRequest,
    FeedbackExample,
    Photo,
    VendorInfo,
)
from warrantyd.parsers.classify import STAFF_MAIL, Classification
from warrantyd.parsers.message import ParsedMessage
from warrantyd.parsers.subjects import strip_subject_prefix
from warrantyd.parsers.trim import Reply
from warrantyd.storage.models import (
    MAIN_DIVISION,
    Feedback,
    Home,
    Homeowner,
    ServiceRequest,
    Vendor,
)

log = logging.getLogger("warrantyd.drafting")

MAX_EXAMPLES = 200
MAX_PHOTOS = 8


def make_drafter(config: Config, *, in_line: bool = False) -> Drafter:
    """The configured engine; the offline drafter when no API key is set.  ``in_line``: the
    offline drafter (the engine, or the model's fallback) drafts in the caller's thread."""
    from warrantyd.daemon.drafters.offline import OfflineDrafter

    offline = OfflineDrafter(in_line=in_line)
    if config.drafter.engine != "anthropic":
        return offline
    key = config.drafter.api_key()
    if not key:
        log.warning("drafter.engine is anthropic but $%s is empty: using the offline drafter",
                    config.drafter.api_key_env)
        return offline
    from warrantyd.daemon.drafters.llm import DEFAULT_MODEL, AnthropicDrafter

    return AnthropicDrafter(
        api_key=key, model=config.drafter.model or DEFAULT_MODEL,
        base_url=config.drafter.base_url, timeout=config.drafter.timeout_seconds,
        max_retries=config.drafter.max_retries, fallback=offline,
        per_request_token_budget=config.drafter.per_request_token_budget,
    )


def prepare_drafter(drafter: Drafter) -> None:
    """Load what drafting needs before the first mail asks for it: the offline trade model
    (the offline engine's, and the model engine's fallback) and the Messages API client
    library."""
    from warrantyd.daemon.drafters.offline import load_trade_model

    load_trade_model()
    if drafter.engine == "anthropic":
        import anthropic  # noqa: F401


USAGE_COUNTED = ("input_tokens", "output_tokens", "cache_creation_input_tokens",
                 "cache_read_input_tokens")


def tokens_used_today(session: Session, config: Config, now: datetime) -> int:
    """Tokens the drafter spent since midnight in the company's time zone (all daemons)."""
    zone = ZoneInfo(config.company.timezone)
    midnight = now.astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
    usages = session.scalars(select(ServiceRequest.usage).where(
        ServiceRequest.created_at >= midnight.astimezone(UTC)))
    return sum(int(u.get(k, 0) or 0) for u in usages if u for k in USAGE_COUNTED)


def over_daily_budget(session: Session, config: Config, now: datetime) -> str | None:
    """Why the language model must not be used for more drafts today, or None."""
    if config.drafter.engine != "anthropic":
        return None
    used = tokens_used_today(session, config, now)
    budget = config.drafter.daily_token_budget
    if used < budget:
        return None
    return f"{used} tokens used today, over the daily budget of {budget} ([drafter] " \
           f"daily_token_budget)"


def find_home(session: Session, sender: str | None, division: str = MAIN_DIVISION
              ) -> tuple[Homeowner | None, Home | None]:
    """The homeowner record for ``sender`` among ``division``'s homes, and their home (most
    recently added first)."""
    if not sender:
        return None, None
    owner = session.scalars(
        select(Homeowner).join(Home, Homeowner.home_id == Home.id)
        .where(Homeowner.email == sender.lower(), Home.division == division)
        .order_by(Homeowner.id.desc())
    ).first()
    return owner, (owner.home if owner is not None else None)


@dataclass(frozen=True)
class HomeMatch:
    """Where a new request from one sender is filed, and for which home."""

    division: str
    owner: Homeowner | None
    home: Home | None
    routed_from: str | None = None
    """The division the mail arrived in, when the request goes to another one."""


def locate_home(session: Session, sender: str | None, arrival: str, *,
                configured: Collection[str]) -> HomeMatch:
    """The division a new request is filed in, and the sender's home there.

    The arrival division's homes come first.  A sender unknown there but a homeowner in
    exactly one other ``configured`` division is filed in that one: homeowners do not know
    how the builder divides its regions and write to whichever address they have.  A
    homeowner of several other divisions (or of none, or of one removed from the config)
    stays where the mail arrived, for its staff to sort out.
    """
    if not sender:
        return HomeMatch(arrival, None, None)
    # One read of every home the sender owns (few), newest first: what find_home would
    # pick in each division, and which divisions there are.
    newest: dict[str, tuple[Homeowner, Home]] = {}
    for owner, home in session.execute(_HOMES_OF, {"email": sender.lower()}):
        newest.setdefault(home.division, (owner, home))
    if arrival in newest:
        return HomeMatch(arrival, *newest[arrival])
    elsewhere = [division for division in newest if division in configured]
    if len(elsewhere) != 1:
        return HomeMatch(arrival, None, None)
    [division] = elsewhere
    return HomeMatch(division, *newest[division], routed_from=arrival)


_HOMES_OF = (select(Homeowner, Home).join(Home, Homeowner.home_id == Home.id)
             .where(Homeowner.email == bindparam("email")).order_by(Homeowner.id.desc()))
"""Built once (see :func:`locate_home`): one per mail, twice."""


def feedback_examples(session: Session, limit: int = MAX_EXAMPLES) -> tuple[FeedbackExample, ...]:
    rows = session.scalars(select(Feedback).order_by(Feedback.id.desc()).limit(limit)).all()
    return tuple(
        FeedbackExample(decision=r.decision, source_text=r.source_text, draft_trade=r.draft_trade,
                        draft_description=r.draft_description, final_trade=r.final_trade,
                        final_description=r.final_description, final_priority=r.final_priority,
                        vendor=r.vendor_email, community=r.community, reason=r.reason)
        for r in reversed(rows)
    )


def vendor_infos(session: Session, division: str = MAIN_DIVISION) -> tuple[VendorInfo, ...]:
    """The active vendors of ``division``: the only ones its drafts may suggest."""
    rows = session.scalars(select(Vendor).where(Vendor.active, Vendor.division == division)
                           .order_by(Vendor.name)).all()
    return tuple(VendorInfo(name=v.name, email=v.email, trades=tuple(v.trades),
                            communities=tuple(v.communities)) for v in rows)


def vendor_emails(session: Session) -> frozenset[str]:
    """Every vendor address of every division (what ``classify`` asks: is it a vendor?)."""
    return frozenset(session.scalars(select(Vendor.email).distinct()))


# --- the same reads for every mail, cached ---------------------------------------------------

T = TypeVar("T")

DIRECTORY_TTL_SECONDS = 2.0
"""How long a daemon drafts with vendors and staff decisions read from the database before
reading them again: edits made through another daemon (or the CLI) reach its drafts within
this time.  Edits committed by this process are seen at once (see :class:`DirectoryCache`)."""

_directory_generation = 0
"""Bumped by every commit in this process that changed a vendor or a feedback row."""
_DIRECTORY_MODELS = (Vendor, Feedback)


@event.listens_for(Session, "after_flush")
def _note_directory_change(session: Session, _flush_context: Any) -> None:
    if any(isinstance(obj, _DIRECTORY_MODELS)
           for objs in (session.new, session.dirty, session.deleted) for obj in objs):
        session.info["directory_changed"] = True


@event.listens_for(Session, "after_commit")
def _directory_committed(session: Session) -> None:
    global _directory_generation
    if session.info.pop("directory_changed", False):
        _directory_generation += 1


@event.listens_for(Session, "after_rollback")
def _directory_rolled_back(session: Session) -> None:
    session.info.pop("directory_changed", None)


class DirectoryCache:
    """Vendors, vendor addresses and feedback examples, read once per
    :data:`DIRECTORY_TTL_SECONDS` instead of once per mail.

    Every mail's draft request names its division's vendors and the latest staff decisions;
    reading them is several statements and a few hundred rows, the same for every mail of a
    busy minute.  An entry is read again when it is older than the TTL (changes made by
    other processes) or when a commit of this process changed a vendor or a feedback row.
    """

    def __init__(self, ttl: float = DIRECTORY_TTL_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._entries: dict[object, tuple[int, float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: object, load: Callable[[], T]) -> T:
        generation, now = _directory_generation, self.clock()
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None and entry[0] == generation and now - entry[1] < self.ttl:
            return entry[2]
        value = load()  # a commit meanwhile leaves the entry stale: read again next time
        with self._lock:
            self._entries[key] = (generation, now, value)
        return value

    def vendor_infos(self, session: Session, division: str) -> tuple[VendorInfo, ...]:
        return self.get(("vendors", division), lambda: vendor_infos(session, division))

    def feedback_examples(self, session: Session) -> tuple[FeedbackExample, ...]:
        return self.get("feedback", lambda: feedback_examples(session))

    def vendor_emails(self, session: Session) -> frozenset[str]:
        return self.get("vendor_emails", lambda: vendor_emails(session))


@dataclass(frozen=True)
class Requester:
    """Who a service request is for: the sender, or the author of a mail staff forwarded."""

    email: str
    name: str
    subject: str
    text: str
    message_id: str | None
    references: tuple[str, ...] = ()


def requester_of(msg: ParsedMessage, reply: Reply, verdict: Classification,
                 config: Config) -> Requester | None:
    """The homeowner a new request is for; None when the mail names nobody usable."""
    if verdict.kind == STAFF_MAIL:
        for fwd in msg.forwarded:
            if fwd.from_addr and not config.is_staff(fwd.from_addr) and (
                    fwd.from_addr not in config.our_addresses):
                return Requester(fwd.from_addr, fwd.from_name, fwd.subject or msg.subject,
                                 fwd.text, None)
        return None
    if not msg.from_addr:
        return None
    refs = (*msg.references, *([msg.message_id] if msg.message_id else []))
    return Requester(msg.from_addr, msg.from_name, msg.subject, reply.new_text,
                     msg.message_id, refs)


FORWARD_MARKER = "---------- Forwarded message ---------"


def drafting_text(msg: ParsedMessage, reply: Reply, our_addresses: Sequence[str] = ()) -> str:
    """What the drafter reads: the new text plus any forwarded mail it introduces.

    A homeowner who forwards a spouse's mail ("see below") means the forwarded problem, which
    the trimmer files under the quote; it is added back behind a forward marker.  A part
    sent from one of ``our_addresses`` is our own mail (an acknowledgement being answered),
    never a new problem, so it is left out.
    """
    ours = {a.lower() for a in our_addresses}
    text = reply.new_text
    for forwarded in msg.forwarded:
        if forwarded.from_addr and forwarded.from_addr.lower() in ours:
            continue
        body = forwarded.text.strip()
        if body and body not in text:
            text = f"{text}\n\n{FORWARD_MARKER}\n{body}"
    return text


def draft_request_for(session: Session, config: Config, msg: ParsedMessage, reply: Reply,
                      verdict: Classification, division: str = MAIN_DIVISION, *,
                      cache: DirectoryCache | None = None) -> DraftRequest:
    """Everything the drafter may read for this mail that arrived in ``division``'s mailbox.

    Mail on a thread is drafted for the thread's division; a new request for the division
    it will be filed in (see :func:`locate_home`), so the drafter sees that division's
    home and vendors only.
    """
    home: Home | None = None
    name = msg.from_name
    text = drafting_text(msg, reply, config.our_addresses)
    if verdict.thread is not None and verdict.thread.service_request_id is not None:
        sr = session.get(ServiceRequest, verdict.thread.service_request_id)
        home = sr.home if sr is not None else None
        # A request of a division since removed from the config is the main one's.
        division = config.division(sr.division).name if sr is not None else division
    else:
        requester = requester_of(msg, reply, verdict, config)
        if requester is not None and requester.email != msg.from_addr:
            text, name = requester.text, requester.name  # forwarded by staff
        match = locate_home(session, requester.email if requester else None, division,
                            configured=config.division_names)
        home, division = match.home, match.division
        if match.owner is not None and match.owner.name:
            name = match.owner.name
    photos = tuple(
        Photo(filename=a.filename, content_type=a.content_type, content=a.content)
        for a in msg.attachments if a.is_image
    )[:MAX_PHOTOS]
    return DraftRequest(
        text=text,
        subject=strip_subject_prefix(msg.subject),
        photos=photos,
        homeowner_name=name,
        property_address=home.address if home else None,
        community=home.community if home else None,
        closing_date=home.closing_date if home else None,
        company_name=config.company.name,
        vendors=(cache.vendor_infos(session, division) if cache is not None
                 else vendor_infos(session, division)),
        examples=cache.feedback_examples(session) if cache is not None
        else feedback_examples(session),
        trades=config.company.trades,
    )
