"""What a mail is: the order of questions the daemon asks before it acts on anything.

1. Is it our own mail coming back (a loop)?
2. Is it a bounce / delivery status notification?
3. Is it an auto-reply (vacation, list mail, machine notices)?
4. Is it a reply on one of our threads, and whose?
5. Otherwise it is new mail.

The order matters: a vacation reply quotes our subject tag and carries our Message-ID in
In-Reply-To, so it would look like a thread reply if question 3 came after question 4.
The database is only reached through :class:`ThreadLookup`, so this module stays pure and the
same code serves the daemon and ``warrantyd explain``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from warrantyd.parsers.automation import AutoReply, Bounce, detect_auto_reply, detect_bounce
from warrantyd.parsers.message import ParsedMessage
from warrantyd.parsers.subjects import strip_subject_prefix as strip_subject_prefix  # re-export

SUBJECT_TAG = re.compile(r"\[(SR|WO)-(\d+)\]", re.IGNORECASE)

NEW_REQUEST = "new_request"
STAFF_REPLY = "staff_reply"
STAFF_MAIL = "staff_mail"
VENDOR_REPLY = "vendor_reply"
HOMEOWNER_REPLY = "homeowner_reply"
AUTO_REPLY = "auto_reply"
BOUNCE = "bounce"
OWN_MAIL = "own_mail"
NO_SENDER = "no_sender"


@dataclass(frozen=True)
class ThreadRef:
    """A thread of ours that a mail belongs to, and how we know."""

    kind: str
    """"digest", "vendor", "homeowner" (a token's kind) or "sr"/"wo" for Message-ID/subject."""
    evidence: str
    """"token", "message-id" or "subject"."""
    token: str | None = None
    token_address: str | None = None
    """Whom the token, or the mail named by Message-ID, was sent to."""
    issued_at: datetime | None = None
    """When that token or mail was issued (for expiry of the Message-ID evidence)."""
    digest_id: int | None = None
    service_request_id: int | None = None
    work_order_id: int | None = None
    detail: str = ""


class ThreadLookup(Protocol):
    """The facts about our own threads and people that classification needs."""

    def by_token(self, token: str) -> ThreadRef | None:
        """The thread of a valid, unexpired reply token (HMAC checked), else None."""

    def by_message_id(self, message_id: str) -> ThreadRef | None:
        """The thread of one of our sent Message-IDs, else None."""

    def by_subject_tag(self, kind: str, number: int, sender: str) -> ThreadRef | None:
        """The SR/WO thread named in a subject, only if ``sender`` takes part in it."""

    def is_staff(self, address: str) -> bool: ...

    def is_vendor(self, address: str) -> bool: ...


@dataclass(frozen=True)
class Classification:
    kind: str
    reason: str
    thread: ThreadRef | None = None
    bounce: Bounce | None = None
    auto_reply: AutoReply | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def is_automated(self) -> bool:
        return self.kind in (BOUNCE, AUTO_REPLY, OWN_MAIL)


def plus_tokens(addresses: tuple[str, ...], our_address: str) -> list[str]:
    """Tokens found in ``local+TOKEN@domain`` forms of our address among ``addresses``."""
    local, _, domain = our_address.lower().partition("@")
    tokens: list[str] = []
    for addr in addresses:
        a_local, _, a_domain = addr.lower().partition("@")
        if a_domain != domain or not a_local.startswith(local + "+"):
            continue
        token = a_local[len(local) + 1:]
        if token and token not in tokens:
            tokens.append(token)
    return tokens


def is_own_mail(msg: ParsedMessage, our_addresses: tuple[str, ...]) -> str | None:
    """Why ``msg`` is mail we sent ourselves, or None."""
    kind = msg.header("X-Warrantyd-Kind")
    if kind is not None:
        if msg.from_addr in our_addresses:
            return f"our own {kind} mail (From {msg.from_addr})"
        # Another warrantyd (a second builder, a sister division) answering us: two machines
        # must never converse, even when a relay stripped Auto-Submitted.
        return f"machine mail ({kind}) from another warrantyd installation at {msg.from_addr}"
    if msg.from_addr and msg.from_addr in our_addresses:
        return f"From is our own address {msg.from_addr}"
    if msg.from_addr:
        for ours in our_addresses:
            local, _, domain = ours.partition("@")
            if msg.from_addr.startswith(local + "+") and msg.from_addr.endswith("@" + domain):
                return f"From is one of our reply addresses ({msg.from_addr})"
    return None


def find_thread(msg: ParsedMessage, lookup: ThreadLookup, our_address: str) -> ThreadRef | None:
    """The strongest evidence that ``msg`` answers one of our mails."""
    for token in plus_tokens(msg.recipients, our_address):
        ref = lookup.by_token(token)
        if ref is not None:
            return ref
    for mid in (*reversed(msg.in_reply_to), *reversed(msg.references)):
        ref = lookup.by_message_id(mid)
        if ref is not None:
            return ref
    if msg.from_addr:
        for kind, number in SUBJECT_TAG.findall(msg.subject):
            ref = lookup.by_subject_tag(kind.upper(), int(number), msg.from_addr)
            if ref is not None:
                return ref
    return None


def classify(msg: ParsedMessage, lookup: ThreadLookup, our_address: str,
             raw: bytes | None = None, also_ours: tuple[str, ...] = ()) -> Classification:
    """Decide what ``msg`` is; the verdict always carries a human-readable reason.

    ``our_address`` is the mailbox the mail came to (its plus-addresses carry reply
    tokens); ``also_ours`` are our other mailboxes (other divisions), whose mail is our
    own too.
    """
    own = is_own_mail(msg, tuple(dict.fromkeys((our_address, *also_ours))))
    if own:
        return Classification(OWN_MAIL, own)
    bounce = detect_bounce(msg, raw)
    thread = find_thread(msg, lookup, our_address)
    if bounce is not None:
        return Classification(BOUNCE, bounce.reason, thread=thread, bounce=bounce)
    auto = detect_auto_reply(msg)
    if auto is not None:
        return Classification(AUTO_REPLY, auto.reason, thread=thread, auto_reply=auto)
    sender = msg.from_addr
    if not sender:
        return Classification(NO_SENDER, "no usable From address", thread=thread)
    if thread is not None:
        how = f"{thread.evidence} ({thread.detail})" if thread.detail else thread.evidence
        if lookup.is_staff(sender):
            return Classification(STAFF_REPLY, f"staff address replying on our thread by {how}",
                                  thread=thread)
        if thread.kind in ("vendor", "wo") or lookup.is_vendor(sender):
            return Classification(VENDOR_REPLY, f"reply on a vendor thread by {how}",
                                  thread=thread)
        return Classification(HOMEOWNER_REPLY, f"reply on a service-request thread by {how}",
                              thread=thread)
    if lookup.is_staff(sender):
        return Classification(STAFF_MAIL, "new mail from a staff address (no thread of ours)")
    if lookup.is_vendor(sender):
        return Classification(VENDOR_REPLY, "mail from a known vendor that names no thread of ours",
                              notes=("unthreaded",))
    return Classification(NEW_REQUEST, "new mail from outside: a new service request")
