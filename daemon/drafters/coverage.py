"""A coverage hint for staff from the common "1-2-10" builder warranty.

Most builders' limited warranties run from the home's closing date: one year on
workmanship and materials, two years on the plumbing, electrical and HVAC distribution
systems (pipes, wiring, ducts — not the fixtures at their ends), and ten years on major
structural elements.  They also exclude the same few things almost everywhere: caulk and
paint touch-ups, hairline cracks, appliances that carry their maker's warranty, storm
damage and homeowner maintenance.

The hint is one line on the draft so staff do not have to work the dates out; it never
refuses anything (a company may cover more, and staff decide).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

__all__ = ["CoverageHint", "coverage_hint", "months_between"]


@dataclass(frozen=True)
class CoverageHint:
    covered: bool | None
    """True/False when the dates decide it, None when unknown (no closing date)."""
    summary: str
    """One line for staff: "Likely covered: 2-year systems (closed 2025-03-02, 20 months ago)"."""
    exclusion: str | None = None
    """A typical exclusion that may apply ("caulk is homeowner maintenance")."""


_SYSTEM_TRADES = frozenset({"plumbing", "electrical", "hvac"})
# Items at the end of a system line: covered as workmanship/materials for one year only.
_FIXTURE_WORDS = re.compile(
    r"\b(?:faucet|fixture|toilet|shower ?head|sink stopper|stopper|sprayer|handle|"
    r"light bulb|bulb|ceiling fan|doorbell|cover plate|thermostat|filter|register|grille|"
    r"vent cover|disposal|llave|grifo|inodoro|foco|l[aá]mpara)\b",
    re.IGNORECASE,
)
_STRUCTURAL_WORDS = re.compile(
    r"\b(?:foundation|footing|structural|load[- ]bearing|beam|joist|truss|header|"
    r"column|bearing wall|heav\w*|settle\w*|sagging roof|cimiento|viga|estructura\w*)\b",
    re.IGNORECASE,
)

# (pattern, exclusion text): the first that matches the description wins.
_EXCLUSIONS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b(?:caulk\w*|sealant|calafate\w*|silic[oó]n)\b", re.IGNORECASE),
     "caulk is homeowner maintenance after the first year"),
    (re.compile(r"\b(?:touch[- ]?ups?|scuff\w*|retocar|retoque)\b", re.IGNORECASE),
     "paint touch-ups are usually covered only at the walkthrough"),
    (re.compile(r"\bhairline\b|\bfisura\w* (?:delgad|fin)\w*", re.IGNORECASE),
     "hairline cracks within tolerance are usually excluded"),
    (re.compile(r"\b(?:storm|wind|hail|lightning|tornado|flood(?:ing)?|tormenta|granizo|"
                r"viento)\b", re.IGNORECASE),
     "storm damage is usually an insurance claim"),
    (re.compile(r"\b(?:filter|batter(?:y|ies)|light ?bulbs?|clogged by|hair|grease|"
                r"weeds?|watering|mowing|filtro|pila|foco)\b", re.IGNORECASE),
     "homeowner maintenance item"),
)
_APPLIANCE_EXCLUSION = "appliances are under the manufacturer's warranty"


def months_between(start: date, end: date) -> int:
    """Whole months from ``start`` to ``end`` (0 when ``end`` is earlier)."""
    months = (end.year - start.year) * 12 + (end.month - start.month)
    if end.day < start.day:
        months -= 1
    return max(months, 0)


def _term(trade: str, description: str) -> tuple[int, str]:
    """The warranty term in years that governs this trade and description, and its name."""
    if trade == "framing_structural" or (
        trade in {"concrete", "framing_structural", "other"}
        and _STRUCTURAL_WORDS.search(description)
    ):
        return 10, "10-year structural"
    if trade in _SYSTEM_TRADES and not _FIXTURE_WORDS.search(description):
        return 2, "2-year systems"
    return 1, "1-year workmanship"


def _exclusion(trade: str, description: str) -> str | None:
    if trade == "appliances":
        return _APPLIANCE_EXCLUSION
    for pattern, text in _EXCLUSIONS:
        if pattern.search(description):
            return text
    return None


def coverage_hint(
    trade: str, description: str, closing_date: date | None, today: date
) -> CoverageHint:
    """The likely coverage of one issue, as a hint for staff.

    ``covered`` is False when the term has run out or a typical exclusion applies;
    staff may still choose to cover it.
    """
    years, term = _term(trade, description)
    exclusion = _exclusion(trade, description)
    if closing_date is None:
        summary = f"Coverage unknown: no closing date on file ({term} would apply)"
        return CoverageHint(covered=None, summary=summary, exclusion=exclusion)
    age = months_between(closing_date, today)
    when = f"closed {closing_date.isoformat()}, {age} month{'s' if age != 1 else ''} ago"
    if closing_date > today:
        summary = f"Coverage unknown: closing date {closing_date.isoformat()} is in the future"
        return CoverageHint(covered=None, summary=summary, exclusion=exclusion)
    in_term = age < years * 12
    if not in_term:
        summary = f"Likely not covered: {term} ended ({when})"
        return CoverageHint(covered=False, summary=summary, exclusion=exclusion)
    if exclusion is not None:
        summary = f"Check exclusion: {exclusion}; {term} still runs ({when})"
        return CoverageHint(covered=False, summary=summary, exclusion=exclusion)
    return CoverageHint(covered=True, summary=f"Likely covered: {term} ({when})", exclusion=None)
