"""The database schema: every fact warrantyd keeps, and nothing it can derive.

One table per thing a warranty team talks about (homes, homeowners, vendors, service
requests, work orders, history) plus the two tables that make mail handling exactly-once:
``inbound_message`` (written before any processing) and ``outbound_message`` (written in the
same transaction as the change that causes a mail).  Changing a model means adding an Alembic
revision under ``storage/migrations/versions``; a test compares the two.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from warrantyd.storage import MAIN_DIVISION


def division_column() -> Mapped[str]:
    """Which division (mailbox, staff, vendors) a row belongs to; see ``[[divisions]]``."""
    return mapped_column(String(100), default=MAIN_DIVISION, server_default=MAIN_DIVISION,
                         index=True)


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime stored as UTC on every backend (SQLite has no time zones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; attach a time zone")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[Any]: JSON}  # noqa: RUF012


# --- mail in and out -------------------------------------------------------------------------

class InboundMessage(Base):
    """One mail as fetched, stored before anything is done with it."""

    __tablename__ = "inbound_message"
    __table_args__ = (
        UniqueConstraint("mailbox", "uidvalidity", "uid"),
        UniqueConstraint("sha256"),
        Index("ix_inbound_message_status_next", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox: Mapped[str] = mapped_column(String(320))
    """``address/folder`` the mail was fetched from ("" for files given on the command line)."""
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger)
    uid: Mapped[int | None] = mapped_column(BigInteger)
    message_id: Mapped[str | None] = mapped_column(String(998), index=True)
    sha256: Mapped[str] = mapped_column(String(64))
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(Integer)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    status: Mapped[str] = mapped_column(String(20), default="new")
    """new → done | ignored | quarantined; ``moved`` says whether the IMAP copy was filed."""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    classification: Mapped[str | None] = mapped_column(String(40))
    reason: Mapped[str | None] = mapped_column(Text)
    from_addr: Mapped[str | None] = mapped_column(String(320))
    subject: Mapped[str | None] = mapped_column(Text)
    processed_at: Mapped[datetime | None]
    moved: Mapped[bool] = mapped_column(Boolean, default=False)
    """True once the IMAP copy was moved to processed_folder / failed_folder."""
    claimed_by: Mapped[str | None] = mapped_column(String(100))


class MailboxState(Base):
    """Per mailbox folder: what we have seen, so a restart resumes and a first start is safe."""

    __tablename__ = "mailbox_state"

    mailbox: Mapped[str] = mapped_column(String(320), primary_key=True)
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger)
    first_uid: Mapped[int | None] = mapped_column(BigInteger)
    """UIDNEXT at the first start: older mail is not imported without --import-existing."""
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    last_poll_at: Mapped[datetime | None]
    connected: Mapped[bool] = mapped_column(Boolean, default=False)
    holder: Mapped[str | None] = mapped_column(String(100))


class OutboundMessage(Base):
    """One mail we will send, written with the state change that causes it."""

    __tablename__ = "outbound_message"
    __table_args__ = (
        UniqueConstraint("dedupe_key"),
        UniqueConstraint("message_id"),
        Index("ix_outbound_message_status_next", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(200))
    """What this mail is about ("ack:SR-3", "digest:12:pat@..."); a second row is refused."""
    message_id: Mapped[str] = mapped_column(String(998))
    kind: Mapped[str] = mapped_column(String(40))
    to_addr: Mapped[str] = mapped_column(String(320), index=True)
    subject: Mapped[str] = mapped_column(Text)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    """The complete RFC 5322 message as it will be sent, so a retry sends the same bytes."""
    status: Mapped[str] = mapped_column(String(20), default="queued")
    """queued → sent | failed (permanent) | suppressed (never to be sent, with a reason)."""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    service_request_id: Mapped[int | None] = mapped_column(ForeignKey("service_request.id"))
    work_order_id: Mapped[int | None] = mapped_column(ForeignKey("work_order.id"))
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    claimed_until: Mapped[datetime | None]
    from_addr: Mapped[str | None] = mapped_column(String(320))
    """Our address the mail is from (the division's mailbox): the envelope sender, so that
    bounces come back to the mailbox the conversation is in."""


class Attachment(Base):
    """An attachment of an inbound mail; the bytes live in the blob store by SHA-256."""

    __tablename__ = "attachment"

    id: Mapped[int] = mapped_column(primary_key=True)
    inbound_message_id: Mapped[int] = mapped_column(ForeignKey("inbound_message.id"), index=True)
    service_request_id: Mapped[int | None] = mapped_column(ForeignKey("service_request.id"),
                                                           index=True)
    filename: Mapped[str] = mapped_column(String(500))
    content_type: Mapped[str] = mapped_column(String(200))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    content_id: Mapped[str | None] = mapped_column(String(500))


# --- people and places ----------------------------------------------------------------------

class Home(Base):
    __tablename__ = "home"
    __table_args__ = (
        # Staff type any part of an address or a community name: on PostgreSQL these are
        # trigram (pg_trgm) indexes that answer ILIKE '%term%'; SQLite gets plain ones.
        Index("ix_home_address_trgm", "address", postgresql_using="gin",
              postgresql_ops={"address": "gin_trgm_ops"}),
        Index("ix_home_community_trgm", "community", postgresql_using="gin",
              postgresql_ops={"community": "gin_trgm_ops"}),
        UniqueConstraint("division", "address"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    division: Mapped[str] = division_column()
    address: Mapped[str] = mapped_column(String(500))
    community: Mapped[str] = mapped_column(String(200), default="", index=True)
    closing_date: Mapped[date | None] = mapped_column(Date)
    homeowners: Mapped[list[Homeowner]] = relationship(back_populates="home")


class Homeowner(Base):
    __tablename__ = "homeowner"
    __table_args__ = (UniqueConstraint("home_id", "email"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    home_id: Mapped[int | None] = mapped_column(ForeignKey("home.id"))
    name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str] = mapped_column(String(320), index=True)
    home: Mapped[Home | None] = relationship(back_populates="homeowners")


class Vendor(Base):
    """A vendor of one division; the same company serving two divisions is two rows, so
    each division's staff keep their own trades, areas and history with it."""

    __tablename__ = "vendor"
    __table_args__ = (UniqueConstraint("division", "email"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    division: Mapped[str] = division_column()
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320), index=True)
    trades: Mapped[list[Any]] = mapped_column(default=list)
    communities: Mapped[list[Any]] = mapped_column(default=list)
    aliases: Mapped[list[Any]] = mapped_column(default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    bounced_at: Mapped[datetime | None]


class Staff(Base):
    __tablename__ = "staff"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")


# --- the work -------------------------------------------------------------------------------

class ServiceRequest(Base):
    """What a homeowner asked for in one mail (SR-n)."""

    __tablename__ = "service_request"

    id: Mapped[int] = mapped_column(primary_key=True)
    division: Mapped[str] = division_column()
    status: Mapped[str] = mapped_column(String(20), default="open", index=True)
    homeowner_id: Mapped[int | None] = mapped_column(ForeignKey("homeowner.id"))
    home_id: Mapped[int | None] = mapped_column(ForeignKey("home.id"), index=True)
    requester_email: Mapped[str] = mapped_column(String(320), index=True)
    requester_name: Mapped[str] = mapped_column(String(200), default="")
    subject: Mapped[str] = mapped_column(Text, default="")
    body: Mapped[str] = mapped_column(Text, default="")
    inbound_message_id: Mapped[int | None] = mapped_column(ForeignKey("inbound_message.id"))
    language: Mapped[str | None] = mapped_column(String(10))
    engine: Mapped[str | None] = mapped_column(String(100))
    usage: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    resolved_at: Mapped[datetime | None]

    homeowner: Mapped[Homeowner | None] = relationship()
    home: Mapped[Home | None] = relationship()
    work_orders: Mapped[list[WorkOrder]] = relationship(
        back_populates="service_request", order_by="WorkOrder.id")

    @property
    def ref(self) -> str:
        return f"SR-{self.id}"


class WorkOrder(Base):
    """One task for one vendor (WO-n), drafted from an issue of a service request."""

    __tablename__ = "work_order"
    __table_args__ = (
        Index("ix_work_order_vendor_status", "vendor_id", "status"),
        # The working set, newest first: what --needs-followup reads, never the archive.
        Index("ix_work_order_active_created_at", "created_at", "id",
              postgresql_where=text("status IN ('draft', 'in_progress')"),
              sqlite_where=text("status IN ('draft', 'in_progress')")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    service_request_id: Mapped[int] = mapped_column(ForeignKey("service_request.id"), index=True)
    status: Mapped[str] = mapped_column(String(20), default="draft", index=True)
    """draft → in_progress → completed; rejected."""
    trade: Mapped[str] = mapped_column(String(40))
    priority: Mapped[str] = mapped_column(String(20), default="routine")
    location: Mapped[str | None] = mapped_column(String(200))
    title: Mapped[str] = mapped_column(String(300), default="")
    homeowner_title: Mapped[str | None] = mapped_column(String(300))
    """The title in the homeowner's language, for the mails they get (None: use ``title``)."""
    description: Mapped[str] = mapped_column(Text)
    vendor_id: Mapped[int | None] = mapped_column(ForeignKey("vendor.id"))
    suggested_vendor_id: Mapped[int | None] = mapped_column(ForeignKey("vendor.id"))
    needs_vendor: Mapped[bool] = mapped_column(Boolean, default=False)
    photos: Mapped[list[Any]] = mapped_column(default=list)
    """Attachment ids that belong to this work order."""
    coverage_hint: Mapped[str | None] = mapped_column(Text)
    confidence: Mapped[float | None]
    emergency_reason: Mapped[str | None] = mapped_column(Text)
    draft_trade: Mapped[str | None] = mapped_column(String(40))
    draft_description: Mapped[str | None] = mapped_column(Text)
    """What the drafter proposed, kept to learn from staff decisions."""
    engine: Mapped[str | None] = mapped_column(String(100))
    scheduled_for: Mapped[datetime | None]
    window_end: Mapped[datetime | None]
    flags: Mapped[list[Any]] = mapped_column(default=list)
    """Things staff must look at ("vendor email bounced", "vendor question")."""
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("work_order.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    completed_at: Mapped[datetime | None]
    last_vendor_reply_at: Mapped[datetime | None]
    last_nudged_at: Mapped[datetime | None]
    """When the vendor was last reminded to answer (at most one nudge a day)."""

    service_request: Mapped[ServiceRequest] = relationship(back_populates="work_orders")
    vendor: Mapped[Vendor | None] = relationship(foreign_keys=[vendor_id])
    suggested_vendor: Mapped[Vendor | None] = relationship(foreign_keys=[suggested_vendor_id])

    @property
    def ref(self) -> str:
        return f"WO-{self.id}"


class HistoryEvent(Base):
    """Every change and every mail in or out, with who and why."""

    __tablename__ = "history_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    service_request_id: Mapped[int | None] = mapped_column(ForeignKey("service_request.id"),
                                                           index=True)
    work_order_id: Mapped[int | None] = mapped_column(ForeignKey("work_order.id"), index=True)
    event: Mapped[str] = mapped_column(String(60))
    actor: Mapped[str] = mapped_column(String(320))
    """A staff, vendor or homeowner address, or "system"."""
    detail: Mapped[str] = mapped_column(Text, default="")
    internal: Mapped[bool] = mapped_column(Boolean, default=False)
    """Internal notes never reach a vendor or homeowner."""
    inbound_message_id: Mapped[int | None] = mapped_column(ForeignKey("inbound_message.id"))
    outbound_message_id: Mapped[int | None] = mapped_column(ForeignKey("outbound_message.id"))


class Digest(Base):
    """One approval digest: the numbered drafts a staff reply's item numbers refer to."""

    __tablename__ = "digest"

    id: Mapped[int] = mapped_column(primary_key=True)
    division: Mapped[str] = division_column()
    kind: Mapped[str] = mapped_column(String(20), default="approval", server_default="approval")
    """approval (drafts up for a decision) or followup (stuck work, answered the same way;
    "since the last digest" counts from the last approval digest only)."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    service_request_id: Mapped[int | None] = mapped_column(ForeignKey("service_request.id"))
    work_order_ids: Mapped[list[Any]] = mapped_column(default=list)
    """Item 1 first."""


class ReplyToken(Base):
    """The secret in a plus-address Reply-To: who may answer what, until when."""

    __tablename__ = "reply_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    token: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    """digest (a staff member's reply to a digest), vendor (a WO notice), homeowner (an SR)."""
    address: Mapped[str] = mapped_column(String(320))
    """Whom the token was issued to."""
    digest_id: Mapped[int | None] = mapped_column(ForeignKey("digest.id"))
    service_request_id: Mapped[int | None] = mapped_column(ForeignKey("service_request.id"))
    work_order_id: Mapped[int | None] = mapped_column(ForeignKey("work_order.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]


class Feedback(Base):
    """A staff decision on a draft: what the drafter learns from."""

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    work_order_id: Mapped[int | None] = mapped_column(ForeignKey("work_order.id"))
    decision: Mapped[str] = mapped_column(String(20))
    source_text: Mapped[str] = mapped_column(Text, default="")
    draft_trade: Mapped[str] = mapped_column(String(40), default="")
    draft_description: Mapped[str] = mapped_column(Text, default="")
    final_trade: Mapped[str | None] = mapped_column(String(40))
    final_description: Mapped[str | None] = mapped_column(Text)
    final_priority: Mapped[str | None] = mapped_column(String(20))
    vendor_email: Mapped[str | None] = mapped_column(String(320))
    community: Mapped[str | None] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(320), default="")


class Setting(Base):
    """Small facts the daemon must remember across restarts (first start time, ...)."""

    __tablename__ = "setting"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


# --- scheduling, staff sign-in, shared blobs -----------------------------------------------

class JobRun(Base):
    """One run of a scheduled job for one time slot: the unique row is the claim, so a slot
    runs once however many daemons share the database."""

    __tablename__ = "job_run"
    __table_args__ = (UniqueConstraint("job", "slot"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job: Mapped[str] = mapped_column(String(100))
    slot: Mapped[datetime]
    worker: Mapped[str] = mapped_column(String(200), default="")
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    result: Mapped[str | None] = mapped_column(Text)


class StaffLogin(Base):
    """A one-time sign-in link mailed to a staff address (only its hash is kept)."""

    __tablename__ = "staff_login"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class StaffSession(Base):
    """A signed-in dashboard session (only the hash of the cookie value is kept)."""

    __tablename__ = "staff_session"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_hash: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class Blob(Base):
    """Attachment bytes kept in the database, for daemons that share no disk."""

    __tablename__ = "blob"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(Integer)
