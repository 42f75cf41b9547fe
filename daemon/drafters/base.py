"""What every drafting engine takes and gives back.

A drafter reads one homeowner mail (already trimmed and parsed) and proposes one draft work
order per issue.  Drafters only *propose*: nothing they return sends mail or changes state
until staff accept it.  The engines (offline, anthropic) share these types so that the
service, the CLI's ``draft`` command and the tests treat them alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Protocol

TRADES: tuple[str, ...] = (
    "plumbing", "electrical", "hvac", "drywall", "paint", "roofing", "windows_doors",
    "flooring_tile", "cabinets_countertops", "concrete", "grading_drainage",
    "siding_exterior", "garage_door", "framing_structural", "insulation", "appliances",
    "gutters", "landscaping", "other",
)
PRIORITIES: tuple[str, ...] = ("emergency", "urgent", "routine")


@dataclass(frozen=True)
class Photo:
    """An image attachment offered to the drafter."""

    filename: str
    content_type: str
    content: bytes


@dataclass(frozen=True)
class VendorInfo:
    name: str
    email: str
    trades: tuple[str, ...] = ()
    communities: tuple[str, ...] = ()


@dataclass(frozen=True)
class FeedbackExample:
    """One past staff decision on a draft, used to learn from.

    ``decision`` is "accept", "edit" or "reject".  For an edit, ``final_*`` hold what staff
    made of the draft; for an accept they equal the draft; for a reject ``reason`` says why.
    """

    decision: str
    source_text: str
    draft_trade: str
    draft_description: str
    final_trade: str | None
    final_description: str | None
    final_priority: str | None = None
    vendor: str | None = None
    community: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class DraftRequest:
    """Everything a drafter may read about one service request."""

    text: str
    """The homeowner's new text (quoted history and signature already trimmed)."""
    subject: str = ""
    photos: tuple[Photo, ...] = ()
    homeowner_name: str = ""
    property_address: str | None = None
    community: str | None = None
    closing_date: date | None = None
    company_name: str = ""
    vendors: tuple[VendorInfo, ...] = ()
    examples: tuple[FeedbackExample, ...] = ()
    trades: tuple[str, ...] = TRADES


@dataclass
class DraftIssue:
    """One proposed work order."""

    trade: str
    priority: str
    location: str | None
    title: str
    """A short line for subjects and lists ("Leak under kitchen sink")."""
    description: str
    """Vendor-safe description of the work needed, written for the trade."""
    photos: list[str] = field(default_factory=list)
    """Filenames of the photos that show this issue."""
    confidence: float = 0.5
    suggested_vendor: str | None = None
    """Vendor email, when the drafter has a preference."""
    emergency_reason: str | None = None
    """Why the emergency tripwire fired, when it did."""
    homeowner_title: str | None = None
    """The title in the mail's own language when that is not English (the language model
    writes titles in English for staff); shown in the mails the homeowner gets."""


@dataclass
class DraftResult:
    issues: list[DraftIssue]
    engine: str
    """"offline", "anthropic", or "offline (fallback: <why>)"."""
    usage: dict[str, int] = field(default_factory=dict)
    """Token use: input_tokens, output_tokens, cache_read_input_tokens, ..."""
    language: str | None = None
    """The homeowner's language (ISO 639-1) when the engine could tell."""
    notes: list[str] = field(default_factory=list)


class Drafter(Protocol):
    engine: str

    async def draft(self, request: DraftRequest) -> DraftResult: ...
