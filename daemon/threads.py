"""The database side of threading: answers :class:`warrantyd.parsers.classify.ThreadLookup`.

Evidence is weighed strongest first: a signed reply token, then one of our own stored
Message-IDs, then a ``[WO-n]``/``[SR-n]`` subject tag — and the subject tag only counts when
the sender already takes part in that thread, because anyone can type a subject.  Staff take
part only in their own division's requests: a subject tag naming another division's work
is no thread for them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from warrantyd.daemon.config import Config
from warrantyd.daemon.tokens import find_token
from warrantyd.parsers.classify import ThreadRef
from warrantyd.storage.models import (
    Homeowner,
    OutboundMessage,
    ServiceRequest,
    Vendor,
    WorkOrder,
)


class DbThreadLookup:
    def __init__(self, session: Session, config: Config, secret: bytes, *,
                 vendor_emails: Callable[[], Collection[str]] | None = None) -> None:
        self.session = session
        self.config = config
        self.secret = secret
        self.vendor_emails = vendor_emails
        """Every vendor address, when the caller keeps them (the daemon caches them)."""
        self.token_problems: list[str] = []

    def by_token(self, token: str) -> ThreadRef | None:
        row, problem = find_token(self.session, self.secret, token)
        if row is None:
            self.token_problems.append(f"+{token}: {problem}")
            return None
        return ThreadRef(kind=row.kind, evidence="token", token=row.token,
                         token_address=row.address, issued_at=row.created_at,
                         digest_id=row.digest_id,
                         service_request_id=row.service_request_id,
                         work_order_id=row.work_order_id,
                         detail=f"{row.kind} token issued to {row.address}")

    def by_message_id(self, message_id: str) -> ThreadRef | None:
        row = self.session.scalars(
            select(OutboundMessage).where(OutboundMessage.message_id == message_id)
        ).first()
        if row is None:
            return None
        if row.work_order_id is not None and row.kind.startswith("vendor"):
            kind = "wo"
        elif row.kind.startswith("digest"):
            kind = "digest"
        else:
            kind = "sr"
        digest_id = None
        if kind == "digest" and row.dedupe_key.startswith("digest:"):
            part = row.dedupe_key.split(":")[1]
            digest_id = int(part) if part.isdigit() else None
        return ThreadRef(kind=kind, evidence="message-id", digest_id=digest_id,
                         token_address=row.to_addr, issued_at=row.created_at,
                         service_request_id=row.service_request_id,
                         work_order_id=row.work_order_id,
                         detail=f"In-Reply-To/References names our {row.kind} mail <{message_id}>")

    def by_subject_tag(self, kind: str, number: int, sender: str) -> ThreadRef | None:
        sender = sender.lower()
        if kind == "WO":
            wo = self.session.get(WorkOrder, number)
            if wo is None:
                return None
            if wo.vendor is not None and wo.vendor.email == sender:
                return ThreadRef(kind="wo", evidence="subject", work_order_id=wo.id,
                                 service_request_id=wo.service_request_id,
                                 detail=f"[WO-{number}] and the sender is its vendor")
            if (self.is_staff(sender, wo.service_request.division)
                    or self._is_requester(wo.service_request, sender)):
                return ThreadRef(kind="sr", evidence="subject", work_order_id=wo.id,
                                 service_request_id=wo.service_request_id,
                                 detail=f"[WO-{number}] and the sender takes part in it")
            return None
        sr = self.session.get(ServiceRequest, number)
        if sr is None:
            return None
        if self.is_staff(sender, sr.division) or self._is_requester(sr, sender):
            return ThreadRef(kind="sr", evidence="subject", service_request_id=sr.id,
                             detail=f"[SR-{number}] and the sender takes part in it")
        return None

    def _is_requester(self, sr: ServiceRequest, sender: str) -> bool:
        if sr.requester_email == sender:
            return True
        if sr.home_id is None:
            return False
        count = self.session.scalar(
            select(func.count()).select_from(Homeowner)
            .where(Homeowner.home_id == sr.home_id, Homeowner.email == sender))
        return bool(count)

    def is_staff(self, address: str, division: str | None = None) -> bool:
        """Staff of ``division``, or of any division when None (what ``classify`` asks:
        whether the mail is staff mail at all; what staff may do is decided later)."""
        return self.config.is_staff(address, division)

    def is_vendor(self, address: str) -> bool:
        if self.vendor_emails is not None:
            return address.lower() in self.vendor_emails()
        count = self.session.scalar(
            select(func.count()).select_from(Vendor).where(Vendor.email == address.lower()))
        return bool(count)
