"""Read a vendor's answer to a work-order notification: what they mean, and when they come.

Vendors answer in a sentence or two, in their own shorthand ("Thu 8-10 works", "fri 11-1",
"tomorrow between 10 and noon", "el jueves a las 9"), so a general-purpose date parser
reads too much (phone numbers, "8-10 degrees", the quoted notification) and too little
(bare working hours).  This module therefore has its own small grammar:

* **day mentions** - today/tomorrow (and "tmrw", "tmr", "2moro", "tom."), weekday names and
  their short forms ("weds", "thurs", "tues"), month-day dates, numeric ``m/d`` dates, ISO
  dates and "the 9th", in English and Spanish;
* **time mentions** - clock times ("9", "9a", "@ 9", "~10", "10ish", "around 10"), ranges
  ("8-10", "9a-11a", "between 10 and noon", "de 8 a 10") and parts of the day;

which are paired up sentence by sentence into *slots*, and resolved against the reply's
``Date`` converted to the company's time zone.  Month names are recognised in every
language :mod:`dateparser` knows, so a "3 décembre" is still a date.  The intent comes
from a short ordered list of rules over the same sentences; the rule that fired is kept
in :attr:`VendorReading.reason` so that staff can see why the daemon read what it read.

Conventions (they match how people in the trades write):

* a weekday means the next such day after the reply date ("next"/"this" change nothing);
* a date without a year is the next such date (a "Jan 4" written in December is next year),
  except a date of the last two weeks, which is a reference to the past;
* bare hours are working hours: 1-6 are afternoon, 7-11 morning, 12 noon ("11-1" is
  11:00-13:00); a bare hour right after a day ("tmrw 10", "Tues 9 works") is a time, unless
  it is that day's own date ("Thu 3" on Thursday the 3rd);
* parts of the working day: "morning" 08-12, "late morning" 10-12, "afternoon" and "after
  lunch" 12-17, "late afternoon" and "end of day" 15-17 ("by end of day" is a deadline, not
  a visit); "first thing" (and "a primera hora") without a clock time is 08:00 with no
  window end - the start of the working day, as the trades say it - and with a clock time
  ("first thing, 7:30") the clock time wins;
* "can't get to it until January", "booked out through the 15th", "not before next week":
  the vendor will do the work later but sets no visit, so it is a ``delay`` without a date
  (with a visit time in the same reply it is a confirmation of that time);
* a ``completed`` reply reports the work on this job as done ("done", "all set", "we
  fixed it", "repair complete"); an instruction ("mark it done"), a wish or a condition
  ("once it's fixed we'll invoice") is not a report;
* a price is money in any notation ("$450", "1,200.00", "850 USD", "300 bucks", "1.2k",
  "3,500 pesos"); a bare figure counts only right after a price word;
* the UTC offset is the one in force on the visit day, not on the reply day.

Everything here is pure: no I/O, no clock; the reply's own ``Date`` is "now".
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from warrantyd.parsers.trim import split_reply

INTENTS: tuple[str, ...] = (
    "confirm_schedule",
    "propose_times",
    "completed",
    "question",
    "decline",
    "delay",
    "quote",
    "other",
)


@dataclass(frozen=True)
class TimeOption:
    """One visit time a vendor names: a start and, for an arrival window, its end."""

    start: datetime
    end: datetime | None


@dataclass(frozen=True)
class VendorReading:
    """What a vendor's reply means for its work order."""

    intent: str
    """One of :data:`INTENTS`."""
    scheduled_for: datetime | None
    """Start of the visit that is set (or, for ``delay``, its new time), in company time."""
    window_end: datetime | None
    """End of the arrival window when one is given."""
    options: tuple[TimeOption, ...]
    """The alternatives of a ``propose_times`` reply; empty otherwise."""
    reason: str
    """Short human explanation of the reading, for history entries and ``explain``."""
    amount: str | None = None
    """For a quote, the price as the vendor wrote it ("$450")."""


def read_vendor_reply(
    new_text: str,
    sent_at: datetime,
    timezone: str,
    subject: str = "",
    auto_submitted: bool = False,
) -> VendorReading:
    """Read the intent and the visit time out of the new text of a vendor's reply.

    ``sent_at`` is the reply's ``Date`` header (timezone-aware; a naive value is taken as
    company time) and anchors every relative date.  ``timezone`` is the company's IANA
    zone name.  Quoted history left in ``new_text`` is ignored.
    """
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown time zone {timezone!r}: set [company] timezone to an IANA name "
            "such as 'America/Denver'"
        ) from exc
    now = sent_at.replace(tzinfo=zone) if sent_at.tzinfo is None else sent_at.astimezone(zone)

    if auto_submitted:
        return _reading("other", "auto-submitted reply (out of office or ticket system)")
    if _AUTO_SUBJECT_RE.search(_normalize(subject)):
        return _reading("other", "auto-reply subject")

    own = own_text(new_text)[:_MAX_READ]
    sentences = _sentences(own)
    if not sentences:
        return _reading("other", "no new text")
    text = " ".join(s.text for s in sentences)
    if _AUTO_BODY_RE.search(text):
        return _reading("other", "out-of-office or automatic acknowledgement text")

    slots = _find_slots(sentences, now)
    return _decide(sentences, text, slots, now, zone)


_MAX_READ = 20_000
"""A vendor's answer is a few lines; past this, text is pasted material and is not read."""


# --- own text --------------------------------------------------------------------------


def own_text(text: str) -> str:
    """The lines the vendor typed: no ``>`` quotes, no quoted history, signature or footer.

    The trimmer normally hands over new text already, but the notification we sent
    contains dates, "schedule" and "done", so the text is trimmed again here: cheap
    insurance when a caller passes a body that was not trimmed.
    """
    return split_reply(text).authored_text


# --- normalisation and sentences --------------------------------------------------------


def _normalize(text: str) -> str:
    """Lower case, no accents, one kind of dash, "a.m." as "am": what the rules expect."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = text.lower()
    text = re.sub(r"[‐‑‒–—―]", "-", text)
    text = text.replace("’", "'").replace("‘", "'").replace("\u00a0", " ")
    text = re.sub(r"\b([ap])\.\s?m\b\.?", r"\1m", text)
    # "tom. at 9" is tomorrow; its period would otherwise end the sentence.
    text = re.sub(r"\btom\.(?=\s*(?:at\b|around\b|@|~|\d|morning|afternoon|first thing))",
                  "tomorrow", text)  # fmt: skip
    # Shorthand for "around": "@ 9", "~10", "10ish", "noon-ish" all read as "at/around <time>".
    text = re.sub(r"(?<![\w.])@\s*(?=\d|noon)", " at ", text)
    text = re.sub(r"~\s*(?=\d|noon)", " around ", text)
    text = re.sub(
        r"(?<![\w:./$,-])(\d{1,2}(?::\d{2})?(?:\s?[ap]m)?|noon)\s?-?\s?ish\b", r"around \1", text
    )
    text = re.sub(
        r"\b(jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec|mon|tue|tues|wed|thu|thur|thurs"
        r"|fri|sat|sun|ene|abr|ago|dic)\.",
        r"\1",
        text,
    )
    return text


_POLITE_RE = re.compile(
    r"\b(?:good|have a (?:good|great|nice)) (?:morning|afternoon|evening|day|night|weekend)\b"
    r"|\bbuen(?:as|os) (?:tardes|noches|dias)\b"
    r"|\b(?:sorry|apologies|apologize) (?:for|about) (?:the|our|my) (?:delay(?:ed)?|late)"
    r"(?: (?:reply|response|answer|getting back))?"
)
"""Greetings and apologies for answering late: "good afternoon" is no visit time."""


@dataclass(frozen=True)
class _Sentence:
    text: str
    index: int
    list_item: bool


_BULLET_RE = re.compile(r"^\s*(?:[-*•·]|\d{1,2}[.)])\s+")


def _sentences(own: str) -> list[_Sentence]:
    """Paragraphs re-joined (clients wrap lines), then split at sentence ends.

    Bulleted lines stay separate: a vendor listing openings writes one per line.
    """
    pieces: list[tuple[str, bool]] = []
    for paragraph in re.split(r"\n\s*\n", _POLITE_RE.sub(" ", _normalize(own))):
        current: list[str] = []
        for line in paragraph.split("\n"):
            if not line.strip():
                continue
            if _BULLET_RE.match(line):
                if current:
                    pieces.append((" ".join(current), False))
                    current = []
                pieces.append((_BULLET_RE.sub("", line), True))
            else:
                current.append(line.strip())
        if current:
            pieces.append((" ".join(current), False))
    sentences: list[_Sentence] = []
    for piece, bullet in pieces:
        for part in re.split(r"(?<=[.!?;])\s+|\s+-\s+(?=[a-z])", piece):
            part = " ".join(part.split())
            if part:
                sentences.append(_Sentence(part, len(sentences), bullet))
    return sentences


# --- the date grammar -------------------------------------------------------------------

_WEEKDAYS: dict[str, int] = {
    "monday": 0, "mon": 0, "tuesday": 1, "tues": 1, "tue": 1, "wednesday": 2, "weds": 2,
    "wed": 2, "thursday": 3, "thurs": 3, "thur": 3, "thu": 3, "friday": 4, "fri": 4,
    "saturday": 5, "sat": 5, "sunday": 6, "sun": 6,
    "lunes": 0, "martes": 1, "miercoles": 2, "jueves": 3, "viernes": 4, "sabado": 5,
    "domingo": 6,
}  # fmt: skip
_MONTHS: dict[str, int] = {
    "january": 1, "jan": 1, "february": 2, "feb": 2, "march": 3, "mar": 3, "april": 4,
    "apr": 4, "may": 5, "june": 6, "jun": 6, "july": 7, "jul": 7, "august": 8, "aug": 8,
    "september": 9, "sept": 9, "sep": 9, "october": 10, "oct": 10, "november": 11,
    "nov": 11, "december": 12, "dec": 12,
    "enero": 1, "ene": 1, "febrero": 2, "marzo": 3, "abril": 4, "abr": 4, "mayo": 5,
    "junio": 6, "julio": 7, "agosto": 8, "ago": 8, "septiembre": 9, "setiembre": 9,
    "octubre": 10, "noviembre": 11, "diciembre": 12, "dic": 12,
}  # fmt: skip
_NUMBER_WORDS: dict[str, int] = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
}  # fmt: skip


_NAME_LIKE = {"marco", "mars"}
"""Foreign month names that are also names or words in English and Spanish mail."""


def _other_language_months() -> dict[str, int]:
    """Month names of the other languages dateparser knows, so "3 décembre" is a date.

    Only names of four letters or more are taken: short forms collide with words.
    """
    found: dict[str, int] = {}
    try:
        from dateparser.languages.loader import default_loader
    except ImportError:  # dateparser is a dependency; without it English/Spanish still work
        return found
    for code in ("fr", "pt", "it", "de", "nl"):
        try:
            locale = default_loader.get_locale(code)
        except Exception:
            continue
        info = getattr(locale, "info", {}) or {}
        for month in range(1, 13):
            for name in info.get(["", "january", "february", "march", "april", "may", "june",
                                  "july", "august", "september", "october", "november",
                                  "december"][month], []):
                key = _normalize(str(name)).strip(".")
                if len(key) >= 4 and key.isalpha() and key not in found and key not in _NAME_LIKE:
                    found[key] = month
    return found


_ALL_MONTHS: dict[str, int] = {**_other_language_months(), **_MONTHS}


def _alternation(words: Iterable[str]) -> str:
    """A regex alternation that tries longer words first ("thursday" before "thu")."""
    return "|".join(sorted((re.escape(w) for w in words), key=len, reverse=True))


_MONTH_ALT = _alternation(_ALL_MONTHS)
_WEEKDAY_ALT = _alternation(_WEEKDAYS)
_ORD = r"(?:st|nd|rd|th|o|a|er|eme)?"
_YEAR = r"(?:,?\s*(?:de\s+)?(?P<year>\d{4}))?"

_MASK_RES = (
    # Phone numbers, money, ticket and invoice numbers, measurements: never dates or times.
    re.compile(r"\(?\b\d{3}\)?[\s.-]?\d{3}[.-]\d{4}\b"),
    re.compile(r"\$\s?\d[\d,]*(?:\.\d+)?k?"),
    re.compile(r"\b\d[\d,]*(?:\.\d+)?\s?(?:k\s?)?(?:dollars?|dolares|usd|bucks|pesos|grand)\b"
               r"|\b\d{1,3}(?:\.\d{1,2})?k\b|\b\d{1,3}(?:,\d{3})+\.\d{2}\b"),
    re.compile(r"\b24\s*/\s*7\b|\b24\s*x\s*7\b"),
    re.compile(r"#\s?\d+"),
    re.compile(r"\b\d+(?:[./]\d+)?\s*(?:inch(?:es)?|in\b(?!\s+(?:the|a|an)\b)|ft\b|feet|foot|\"|'|%|degrees?|deg\b"
               r"|lbs?\b|sq|gal|amp|volt|v\b|psi|pulgadas|pies|grados)"),
)  # fmt: skip

_DAY_RES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("iso", re.compile(r"\b(?P<year>\d{4})-(?P<month>\d{1,2})-(?P<day>\d{1,2})\b")),
    (
        "month_day",
        re.compile(
            rf"\b(?P<mname>{_MONTH_ALT})\.?\s+(?P<day>\d{{1,2}}){_ORD}\b(?!:|\s*(?:am|pm)\b)"
            + _YEAR
        ),
    ),
    (
        "day_month",
        re.compile(
            rf"\b(?P<day>\d{{1,2}}){_ORD}\s+(?:of\s+|de\s+)?(?P<mname>{_MONTH_ALT})\b" + _YEAR
        ),
    ),
    (
        "numeric",
        re.compile(
            r"(?<![\d/.$-])(?P<a>\d{1,2})/(?P<b>\d{1,2})(?:/(?P<year>\d{4}|\d{2}))?(?![\d/])"
        ),
    ),
    ("relative", re.compile(
        r"\b(?:(?P<plus2>day after tomorrow|pasado\s+manana)|(?P<plus1>tomorrow|tomorow|tommorow"
        r"|tommorrow|tmrw|tmrow|tmr|tmw|2moro|2morrow|2mrw|tom\.?(?=\s*(?:at\b|around\b|\d"
        r"|morning|afternoon|first thing|between\b)))(?:'s)?|(?P<zero>today|tonight|hoy)(?:'s)?"
        r"|(?P<zero2>this|esta)(?=\s+(?:morning"
        r"|afternoon|evening|manana|tarde|noche)\b)|(?P<minus>yesterday|ayer))\b"
        r"|(?<!la )(?<!esta )(?<!de )(?<!las )(?<!cada )\b(?P<manana>manana)\b(?!\s+de\b)"
    )),
    (
        "weekday",
        re.compile(
            rf"\b(?:(?P<last>last|pasado)\s+)?(?:(?:next|this|coming|this coming|el|este"
            rf"|el proximo|proximo|on)\s+)?(?P<wd>{_WEEKDAY_ALT})s?\b(?:\s+(?:proximo|que viene))?"
        ),
    ),
    ("day_of_month", re.compile(
        r"\b(?:the|el|dia)\s+(?P<day>\d{1,2})(?:st|nd|rd|th)?\b(?!\s*(?:floor|story|coat|time"
        r"|bath|bed|of\s+(?!(?:" + _MONTH_ALT + r"))|[:/-]|\s*(?:am|pm)\b|\s+(?:de\s+la|a\s+las?)))"
    )),
)

_T = (
    r"(?<![a-z])(?:(?P<{n}h>\d{{1,2}})(?:[:.h](?P<{n}m>\d{{2}})|(?P<{n}hh>h)\b)?"
    r"|(?P<{n}w>" + _alternation(_NUMBER_WORDS) + r")"
    r"|(?P<{n}noon>noon|midday|mediodia|12\s*noon))"
)
_MERIDIEM = (
    r"(?:\s*(?P<{n}mer>am|pm|a\b|p\b|de la manana|de la tarde|de la noche|in the morning"
    r"|in the afternoon|in the evening|o'?clock|hrs\b|hs\b))?"
)
_T1 = _T.format(n="s") + _MERIDIEM.format(n="s")
_T2 = _T.format(n="e") + _MERIDIEM.format(n="e")
_UNIT_AFTER = (
    r"(?!\s*(?:-\s*)?(?:min|mins|minutes?|hours?|hrs?\b|days?|weeks?|wks?|months?|years?|yrs?"
    r"|business|people|pieces?|pops?|nails?|screws?|times|x\b|semanas?|dias?|horas?|minutos?"
    r"|meses|anos|of\b|units?|more|percent|to\s+\d)\b)"
)
_BEFORE_NUMBER = r"(?<![\d/.$#,:-])"

_RANGE_RE = re.compile(
    r"(?P<prefix>\b(?:between|from|entre|de|btwn|btw|window(?:\s+(?:of|is|will be))?:?)\s+"
    r"(?:las?\s+)?)?"
    + _BEFORE_NUMBER
    + _T1
    + r"\s*(?P<sep>-|to|till|til|until|thru|through|and|y|a|&)\s*(?:las?\s+)?"
    + _T2
    + r"(?![\d/:])"
    + _UNIT_AFTER
)
_SINGLE_RE = re.compile(
    r"(?P<prefix>\b(?:at|@|by|around|about|arrive|arriving|approx|approximately|after|before"
    r"|a\s+las|a\s+la|las|la|tipo|como\s+a\s+las)\s*)?"
    + _BEFORE_NUMBER
    + _T1
    + r"(?![\d/:])"
    + _UNIT_AFTER
)
_PART_RE = re.compile(
    r"\b(?P<first_thing>first thing(?: in the (?:morning|am))?|(?:a |en )?primera hora"
    r"|first stop(?: of the day)?)\b"
    r"|\b(?P<late_morning>late(?: in the)? morning)\b"
    r"|(?<!\bby )(?<!\bbefore )(?<!\buntil )(?<!\btill )(?<!\bthe )\b(?P<late_afternoon>late"
    r"(?: in the)? afternoon|end of (?:the )?(?:day|business day|work ?day)|eod)\b"
    r"|\b(?P<morning>morning|mornings|manana|in the am)\b"
    r"|\b(?P<afternoon>afternoon|afternoons|tarde|after lunch)\b"
    r"|\b(?P<evening>evening|tonight|noche)\b"
    r"|(?<=\w)\s+(?P<ampm>am|pm)\b"
)
_PART_NAMES = ("first_thing", "late_morning", "late_afternoon", "morning", "afternoon",
               "evening", "ampm")  # fmt: skip
_OLD_TIME_RE = re.compile(
    r"(?:instead of|rather than|not|en vez de|en lugar de|was|were|originally|from)\s+"
    r"(?:at\s+|the\s+)?$"
)
_PART_WINDOWS: dict[str, tuple[time, time | None]] = {
    "first_thing": (time(8), None),
    "late_morning": (time(10), time(12)),
    "late_afternoon": (time(15), time(17)),
    "morning": (time(8), time(12)),
    "afternoon": (time(12), time(17)),
    "evening": (time(17), time(20)),
    "day": (time(8), time(17)),
}


@dataclass
class _Mention:
    kind: str  # "day", "time", "part"
    start: int
    end: int
    day: date | None = None
    past: bool = False
    explicit: bool = False  # a written date (month, numeric, ISO), not a weekday or "tomorrow"
    rank: int = 0  # which of two adjacent day words wins: written date > "the 9th" > relative
    alternative: date | None = None  # the other reading of an ambiguous 7/12
    times: tuple[time, time | None] | None = None
    part: str | None = None
    old: bool = False  # a time being replaced ("instead of 7:30")


@dataclass
class _Slot:
    sentence: int
    day: date | None
    past: bool = False
    times: list[tuple[time, time | None]] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)
    list_item: bool = False
    shared_with: list[_Slot] = field(default_factory=list, repr=False)

    @property
    def has_time(self) -> bool:
        return bool(self.times or self.parts)


def _mask(text: str) -> str:
    for pattern in _MASK_RES:
        text = pattern.sub(lambda m: " " * len(m.group(0)), text)
    return text


_SPANISH_WORDS_RE = re.compile(
    r"\b(?:el|la|los|las|que|para|por|gracias|vamos|hola|buen[oa]s?|de|del|y|a las|lunes|martes"
    r"|miercoles|jueves|viernes|sabado|domingo|manana|tarde|cita|trabajo|usted|le|lo|nos)\b"
)
_ENGLISH_WORDS_RE = re.compile(
    r"\b(?:the|and|we|will|you|to|at|for|is|on|be|it|this|of|thanks|can|i)\b"
)


def _spanish(text: str) -> bool:
    """Whether the mail is written in Spanish, where 7/12 is the 7th of December."""
    return len(_SPANISH_WORDS_RE.findall(text)) > len(_ENGLISH_WORDS_RE.findall(text))


def _resolve_month_day(month: int, day: int, year: int | None, today: date) -> date | None:
    """The date a month and day mean, written on ``today``: the next one, unless recent past."""
    if year is not None:
        if year < 100:
            year += 2000
        try:
            return date(year, month, day)
        except ValueError:
            return None
    candidates: list[date] = []
    for offset in (-1, 0, 1):
        try:
            candidates.append(date(today.year + offset, month, day))
        except ValueError:
            continue
    if not candidates:
        return None
    recent_past = [c for c in candidates if timedelta(0) < today - c <= timedelta(days=14)]
    if recent_past:
        return recent_past[0]
    future = [c for c in candidates if c >= today]
    return min(future) if future else max(candidates)


def _next_weekday(weekday: int, today: date) -> date:
    ahead = (weekday - today.weekday()) % 7 or 7
    return today + timedelta(days=ahead)


def _next_day_of_month(day: int, today: date) -> date | None:
    year, month = today.year, today.month
    for _ in range(13):
        try:
            candidate = date(year, month, day)
        except ValueError:
            candidate = None
        if candidate is not None and candidate >= today:
            return candidate
        month += 1
        if month > 12:
            year, month = year + 1, 1
    return None


def _day_mentions(text: str, today: date, spanish: bool) -> list[_Mention]:
    found: list[_Mention] = []
    taken = [False] * len(text)
    for kind, pattern in _DAY_RES:
        for m in pattern.finditer(text):
            if any(taken[m.start() : m.end()]):
                continue
            mention = _day_mention(kind, m, today, spanish)
            if mention is None:
                continue
            for i in range(m.start(), m.end()):
                taken[i] = True
            found.append(mention)
    found.sort(key=lambda x: x.start)
    return _merge_adjacent_days(found, text)


_SHORT_DAY_TIME_AFTER = (
    r"[\s,]*(?:\d|(?:at|around|about|between)\s+(?:\d|noon)|noon|morning|afternoon|first thing"
    r"|[ap]m\b|or\s+(?:" + _WEEKDAY_ALT + r")\b)"
)
"""What makes "sat" or "sun" a weekday rather than a word: a time or another day after it."""


def _day_mention(kind: str, m: re.Match[str], today: date, spanish: bool) -> _Mention | None:
    groups = m.groupdict()
    year = int(groups["year"]) if groups.get("year") else None
    day: date | None = None
    alternative: date | None = None
    past = False
    explicit = kind in ("iso", "month_day", "day_month", "numeric")
    if kind == "iso":
        try:
            day = date(int(groups["year"]), int(groups["month"]), int(groups["day"]))
        except ValueError:
            return None
    elif kind in ("month_day", "day_month"):
        month = _ALL_MONTHS[groups["mname"]]
        day = _resolve_month_day(month, int(groups["day"]), year, today)
    elif kind == "numeric":
        a, b = int(groups["a"]), int(groups["b"])
        month, dom = (b, a) if (spanish or a > 12) else (a, b)
        if not (1 <= month <= 12 and 1 <= dom <= 31):
            return None
        day = _resolve_month_day(month, dom, year, today)
        if a <= 12 and b <= 12 and a != b:
            swapped = _resolve_month_day(dom, month, year, today)
            alternative = swapped
    elif kind == "relative":
        if groups.get("plus2"):
            day = today + timedelta(days=2)
        elif groups.get("plus1") or groups.get("manana"):
            day = today + timedelta(days=1)
        elif groups.get("zero") or groups.get("zero2"):
            day = today
        else:
            day, past = today - timedelta(days=1), True
    elif kind == "weekday":
        word = groups["wd"]
        before = m.string[max(0, m.start() - 6) : m.start()]
        after = m.string[m.end() : m.end() + 16]
        if word in ("sat", "sun", "mar") and not (
            re.search(r"(?:\b(?:on|this|next|el|or)|/)\s*$", before)
            or re.match(_SHORT_DAY_TIME_AFTER, after)
        ):
            return None
        if groups.get("last"):
            past = True
            day = _next_weekday(_WEEKDAYS[word], today) - timedelta(days=7)
        else:
            day = _next_weekday(_WEEKDAYS[word], today)
    elif kind == "day_of_month":
        day = _next_day_of_month(int(groups["day"]), today)
    if day is None:
        return None
    rank = {"relative": 2, "day_of_month": 3}.get(kind, 4 if explicit else 1)
    return _Mention("day", m.start(), m.end(), day=day, past=past, explicit=explicit, rank=rank,
                    alternative=alternative)  # fmt: skip


def _merge_adjacent_days(found: list[_Mention], text: str) -> list[_Mention]:
    """ "Monday, November 2nd", "Sat 12/12", "Wed the 9th": one day, the written date wins."""
    merged: list[_Mention] = []
    for mention in found:
        if merged:
            previous = merged[-1]
            gap = text[previous.end : mention.start]
            if mention.rank != previous.rank and re.fullmatch(
                r"[\s,(]*(?:the\s+|el\s+|on\s+)?", gap
            ):
                # "Monday, November 2nd", "tomorrow, Thursday": the more precise word wins.
                keep = mention if mention.rank > previous.rank else previous
                other = previous if keep is mention else mention
                chosen_day = keep.day
                if (
                    keep.alternative is not None
                    and other.rank == 1
                    and other.day is not None
                    and keep.day is not None
                    and keep.day.weekday() != other.day.weekday()
                    and keep.alternative.weekday() == other.day.weekday()
                ):
                    # "Lunes 7/12": the weekday tells which of day and month comes first.
                    chosen_day = keep.alternative
                merged[-1] = _Mention(
                    "day",
                    previous.start,
                    mention.end,
                    day=chosen_day,
                    past=previous.past or mention.past,
                    explicit=previous.explicit or mention.explicit,
                    rank=keep.rank,
                )
                continue
        merged.append(mention)
    return merged


_AM_WORDS = ("am", "a", "de la manana", "in the morning")
_PM_WORDS = ("pm", "p", "de la tarde", "de la noche", "in the afternoon", "in the evening")


def _hour(h: int, minute: int, meridiem: str | None, hint: str | None) -> time | None:
    """A clock time from what was written; bare hours are working hours."""
    if meridiem in _AM_WORDS:
        h = 0 if h == 12 else h
    elif meridiem in _PM_WORDS:
        h = h if h == 12 else h + 12
    elif h >= 13 or h == 0 or hint == "morning":
        pass  # a 24-hour clock time, or a morning hour as written
    elif hint in ("afternoon", "evening"):
        h = h if h == 12 else h + 12
    elif 1 <= h <= 6:
        h += 12
    if not (0 <= h <= 23 and 0 <= minute <= 59):
        return None
    return time(h, minute)


def _clock(groups: dict[str, str | None], n: str) -> tuple[int, int] | None:
    if groups.get(f"{n}noon"):
        return 12, 0
    if groups.get(f"{n}w"):
        return _NUMBER_WORDS[str(groups[f"{n}w"])], 0
    if groups.get(f"{n}h") is None:
        return None
    return int(str(groups[f"{n}h"])), int(groups.get(f"{n}m") or 0)


def _meridiem(groups: dict[str, str | None], n: str) -> str | None:
    value = groups.get(f"{n}mer")
    if value in (None, "o'clock", "oclock", "hrs", "hs"):
        return None
    return value


_BARE_HOUR_GAP_RE = re.compile(r"[\s,]+")
_BARE_HOUR_END_RE = re.compile(
    r"\s*(?:$|[,.;!?)]|(?:works?|ok|okay|good|fine|if|is|should|sounds?|for|then|and|or|see"
    r"|thanks|thx|we|i|our|my|the|tech|if)\b)"
)


def _bare_hour_after_day(text: str, m: re.Match[str], days: list[_Mention]) -> bool:
    """ "tmrw 10", "Tues 9 works": a bare hour written right after a day names the time.

    Not when the number is the day's own date ("Thu 10" on a Thursday the 10th) and not
    when a word follows that makes it a count ("Thu 2 techs").
    """
    groups = m.groupdict()
    if groups.get("sw") or groups.get("sh") is None or not 1 <= int(str(groups["sh"])) <= 12:
        return False
    if not _BARE_HOUR_END_RE.match(text, m.end()):
        return False
    for day in days:
        if day.end <= m.start() and _BARE_HOUR_GAP_RE.fullmatch(text[day.end : m.start()]):
            return day.day is None or day.day.day != int(str(groups["sh"]))
    return False


def _time_mentions(text: str, days: list[_Mention], hint: str | None) -> list[_Mention]:
    """Clock times and ranges; a bare number counts only where a time is expected."""
    day_spans = [(d.start, d.end) for d in days]
    found: list[_Mention] = []
    taken = [False] * len(text)
    for start, end in day_spans:
        for i in range(start, end):
            taken[i] = True
    has_day = bool(day_spans)
    for pattern, is_range in ((_RANGE_RE, True), (_SINGLE_RE, False)):
        for m in pattern.finditer(text):
            if any(taken[m.start() : m.end()]):
                continue
            groups = m.groupdict()
            start_clock = _clock(groups, "s")
            if start_clock is None:
                continue
            s_mer = _meridiem(groups, "s")
            marked = bool(
                s_mer
                or groups.get("sm")
                or groups.get("shh")
                or groups.get("snoon")
                or groups.get("smer")
                or groups.get("prefix")
            )
            if is_range:
                end_clock = _clock(groups, "e")
                if end_clock is None:
                    continue
                e_mer = _meridiem(groups, "e")
                marked = marked or bool(e_mer or groups.get("em") or groups.get("enoon"))
                if groups["sep"] in ("and", "y", "a", "&") and not groups.get("prefix"):
                    continue
                if not (marked or has_day):
                    continue
                if groups.get("sw") and not groups.get("prefix"):
                    continue
                times = _range_times(start_clock, s_mer, end_clock, e_mer, hint)
            else:
                if not (marked or _bare_hour_after_day(text, m, days)):
                    continue
                if groups.get("sw") and not groups.get("prefix"):
                    continue
                if start_clock[0] > 23:
                    continue
                single = _hour(start_clock[0], start_clock[1], s_mer, hint)
                times = (single, None) if single else None
            if times is None:
                continue
            old = bool(_OLD_TIME_RE.search(text[max(0, m.start() - 25) : m.start()]))
            for i in range(m.start(), m.end()):
                taken[i] = True
            found.append(_Mention("time", m.start(), m.end(), times=times, old=old))
    for m in _PART_RE.finditer(text):
        if any(taken[m.start() : m.end()]):
            continue
        part = next(k for k in _PART_NAMES if m.group(k))
        if part == "ampm":
            part = "morning" if m.group("ampm") == "am" else "afternoon"
            preceding = text[: m.start()].rstrip()
            if not any(preceding.endswith(text[s:e].rstrip()) for s, e in day_spans):
                continue
        found.append(_Mention("part", m.start(), m.end(), part=part))
    return found


def _range_times(
    start: tuple[int, int],
    s_mer: str | None,
    end: tuple[int, int],
    e_mer: str | None,
    hint: str | None,
) -> tuple[time, time | None] | None:
    if s_mer is None and e_mer is not None and e_mer not in ("a", "p"):
        # "8-10am", "1-3pm": the end's am/pm covers both, unless that puts start after end.
        begin = _hour(start[0], start[1], e_mer, hint)
        finish = _hour(end[0], end[1], e_mer, hint)
        if begin and finish and begin >= finish:
            begin = _hour(start[0], start[1], "am", hint)
    else:
        begin = _hour(start[0], start[1], s_mer, hint)
        finish = _hour(end[0], end[1], e_mer, hint)
    if begin is None or finish is None:
        return None
    if finish <= begin and e_mer is None and finish.hour < 12:
        finish = time(finish.hour + 12, finish.minute)
    if finish <= begin:
        return None
    return begin, finish


def _sentence_hint(text: str) -> str | None:
    """ "at 9 ... in the afternoon" is 21:00 nowhere in the trades: an afternoon word makes
    a bare 1-11 an afternoon hour; a morning word keeps the working-hours default."""
    if re.search(r"\b(?:afternoon|tarde|evening|noche|after lunch)\b", text):
        return "afternoon"
    return None


_OPENING_HOURS_RE = re.compile(
    r"\b(?:office|business|shop|opening|service|our) hours\b|\bhours\s*:|\bhorario\b"
    r"|\b(?:" + _WEEKDAY_ALT + r")\s*(?:-|to|through|thru|a)\s*(?:" + _WEEKDAY_ALT + r")\b"
    r"|\bm-f\b|\bde lunes a viernes\b"
)


def _find_slots(sentences: list[_Sentence], now: datetime) -> list[_Slot]:
    """Pair day and time mentions into visit slots, sentence by sentence."""
    today = now.date()
    slots: list[_Slot] = []
    whole = " ".join(s.text for s in sentences)
    spanish = _spanish(whole)
    for sentence in sentences:
        text = _mask(sentence.text)
        if _OPENING_HOURS_RE.search(text):
            continue  # a signature's "Office hours: Mon-Fri 7-4" is no visit
        days = _day_mentions(text, today, spanish)
        if _PAST_WORK_RE.search(text) and not _FUTURE_RE.search(text):
            # "We measured on Monday", "finished this morning": a report, not a visit.
            for mention in days:
                if mention.rank == 1 or (mention.rank == 2 and mention.day == today):
                    mention.past = True
        if _NEXT_WEEK_RE.search(text):
            # "Thursday or Friday next week": the days of the coming calendar week.
            week_start = today + timedelta(days=7 - today.weekday())
            for mention in days:
                if mention.rank == 1 and mention.day is not None and mention.day < week_start:
                    mention.day += timedelta(days=7)
        hint = _sentence_hint(text)
        times = _time_mentions(text, days, hint)
        mentions = sorted(days + times, key=lambda x: x.start)
        sentence_slots: list[_Slot] = []
        pending: list[_Mention] = []
        current: _Slot | None = None
        sharing: list[_Slot] = []  # "Monday or Tuesday afternoon": days that share a time
        last_day: _Mention | None = None
        for mention in mentions:
            if mention.kind == "day":
                joined = last_day is not None and _DAY_LIST_GAP_RE.fullmatch(
                    text[last_day.end : mention.start]
                )
                if joined and current is not None and not current.has_time:
                    sharing = [*sharing, current]
                elif not joined:
                    sharing = []
                last_day = mention
                current = _Slot(sentence.index, mention.day, mention.past,
                                list_item=sentence.list_item)  # fmt: skip
                current.shared_with = sharing
                sentence_slots.append(current)
                for waiting in pending:
                    _attach(current, waiting)
                pending = []
            elif current is None:
                pending.append(mention)
            elif mention.kind == "time" and current.times and not mention.old:
                if any(t.kind == "day" and t.start > mention.start for t in mentions):
                    pending.append(mention)
                else:
                    extra = _Slot(sentence.index, current.day, current.past,
                                  list_item=sentence.list_item)  # fmt: skip
                    _attach(extra, mention)
                    sentence_slots.append(extra)
                    current = extra
            else:
                _attach(current, mention)
        for slot in sentence_slots:
            for earlier in slot.shared_with:
                if not earlier.has_time:
                    earlier.times.extend(slot.times)
                    earlier.parts.extend(slot.parts)
        if pending and any(m.kind == "time" and not m.old for m in pending):
            previous = slots[-1] if slots else None
            if previous is not None and not previous.has_time and not previous.past:
                for waiting in pending:
                    _attach(previous, waiting)
            else:
                loose = _Slot(sentence.index, None, list_item=sentence.list_item)
                for waiting in pending:
                    _attach(loose, waiting)
                sentence_slots.append(loose)
        slots.extend(sentence_slots)
    return slots


_NEXT_WEEK_RE = re.compile(r"\bnext week\b|\bsemana (?:que viene|proxima)|\bproxima semana\b")
_DAY_LIST_GAP_RE = re.compile(r"\s*(?:,|/|or|and|o|y|&)\s*(?:or\s+)?")

_PAST_WORK_RE = re.compile(
    r"\b(?:measured|looked|went|came|inspected|diagnosed|finished|completed|fixed|repaired"
    r"|replaced|installed|stopped by|did|checked|visited|ordered|met|spoke|talked|terminamos"
    r"|done|wrapped up|took care|got (?:it|this|that|everything|the \w+) (?:all )?(?:done|fixed"
    r"|finished|working|sorted)"
    r"|fuimos|revisamos|medimos|reparamos|vinimos)\b"
)
_FUTURE_RE = re.compile(
    r"\b(?:will|going to|gonna|can|could|would|shall|plan|planning|should|vamos|podemos"
    r"|iremos|estaremos)\b|\b\w+'ll\b"
)


def _attach(slot: _Slot, mention: _Mention) -> None:
    if mention.kind == "time" and mention.times is not None and not mention.old:
        slot.times.append(mention.times)
    elif mention.kind == "part" and mention.part:
        slot.parts.append(mention.part)


def _slot_option(slot: _Slot, now: datetime, zone: ZoneInfo) -> TimeOption | None:
    """A slot as aware datetimes in company time; None when it has no day and no time."""
    start_t: time
    end_t: time | None
    if slot.times:
        start_t, end_t = slot.times[0]
        afternoon = {"afternoon", "late_afternoon", "evening"}
        if afternoon.intersection(slot.parts) and start_t.hour < 12 and end_t is None:
            start_t = time(start_t.hour + 12, start_t.minute) if start_t.hour < 7 else start_t
    elif slot.parts:
        # "Friday morning, first thing": the more precise part of the day wins.
        part = min(slot.parts, key=_PART_NAMES.index)
        start_t, end_t = _PART_WINDOWS[part]
    else:
        start_t, end_t = _PART_WINDOWS["day"]
    day = slot.day
    if day is None:
        if not slot.times:
            return None
        day = now.date()
        if datetime.combine(day, start_t, zone) < now:
            day += timedelta(days=1)
    start = datetime.combine(day, start_t, zone)
    end = datetime.combine(day, end_t, zone) if end_t is not None else None
    return TimeOption(start=start, end=end)


# --- intent rules -----------------------------------------------------------------------

_AUTO_SUBJECT_RE = re.compile(
    r"^\s*(?:automatic reply|auto(?:matic)?[- ]?(?:reply|response)|out of (?:the )?office"
    r"|ooo\b|respuesta automatica|fuera de la oficina|away:|vacation)"
)
_AUTO_BODY_RE = re.compile(
    r"\b(?:i am|i'm|we are|i will be|i'll be|estoy|estare)\s+(?:currently\s+)?"
    r"(?:out of (?:the )?office|away from"
    r" (?:the|my) (?:office|desk)|on vacation|fuera de la oficina)|this is an automated"
    r" (?:message|response|reply)|this is an auto-?generated|do not reply to this (?:automated"
    r" )?(?:message|email)|your (?:request|ticket|message) has been received"
)
_TRADE_WORDS = (
    r"plumbing|plumber|electrical|electrician|hvac|heating|drywall|paint|painting|painter"
    r"|roofing|roofer|roof|framing|framer|structural|concrete|flooring|tile|siding|stucco"
    r"|gutters?|landscaping|landscaper|irrigation|sprinklers?|appliances?|garage doors?"
    r"|windows?|doors?|insulation|grading|drainage|cabinets?|countertops?|carpentry"
    r"|carpenter|handyman|mason|masonry|fencing"
)
_DECLINE_RE = re.compile(
    r"\bno longer (?:service|serve|serving|cover|covering|work|working|do|doing|take|taking"
    r"|offer|go|travel)\b"
    r"|\b(?:outside|out of) (?:of )?(?:our|my|the) (?:service |coverage )?(?:area|territory"
    r"|range|zone)\b"
    r"|\b(?:don'?t|do not|doesn'?t|does not|dont) (?:do|handle|service|offer|cover|work on"
    r"|take|perform|repair|fix)\b(?! (?:anything|a thing|it until|this until|(?:on )?(?:week"
    r"ends?|evenings?|mornings?|afternoons?|saturdays?|sundays?|mondays?|fridays?)))"
    r"|\bwe only (?:do|handle|install|service|take) (?!(?:week|morn|after|even))"
    r"|\b(?:don'?t|do not) (?:go|travel) (?:out )?(?:that far|to (?:that|this|the) area)"
    r"|\btoo far (?:out|away)\b|\btoo busy to (?:take|get to|do|handle)\b"
    r"|\b(?:won'?t|will not|unable to|not able to|can'?t|cannot) (?:be able to )?(?:take on"
    r"|handle|help with) (?:this|it|that)\b(?! (?:today|tomorrow|until|till|this week))"
    r"|\bnot (?:taking|accepting) (?:on )?(?:any )?(?:new |more )?(?:work|jobs|calls|customers"
    r"|warranty|service)"
    r"|\b(?:please|you(?:'ll| will)? (?:need|have) to|need to|can you|could you|will need to)"
    r" re-?assign|\bre-?assign (?:it|this|that|this one|the (?:job|work order)) to (?:another"
    r"|a different|someone|somebody)|\b(?:find|use|get|try) (?:another|a different) (?:vendor"
    r"|contractor|company|sub|" + _TRADE_WORDS + r")|\b(?:send|give) (?:it|this|that"
    r"|this one) (?:to|over to) (?:a|an|the|another|your) (?:" + _TRADE_WORDS
    + r"|vendor|contractor|sub|manufacturer)"
    r"|\b(?:not|isn'?t) (?:our|my|a) (?:trade|scope|specialty|line of work|kind of work)\b"
    r"|\b(?:this|that|it)(?: is|'s) (?:an? )?\w+(?: \w+)?,? not (?:an? )?(?:"
    + _TRADE_WORDS + r")\b"
    r"|\b(?:you'?ll|you will|you) need (?:an? |to (?:get|call|send) (?:an? )?)(?:"
    + _TRADE_WORDS + r")\b"
    r"|\b(?:have to|must|need to|going to|gonna|will) (?:pass|decline|turn (?:this|it) down)"
    r"|\b(?:pass|passing) on (?:this|that|it)\b|\bwe (?:must |will )?decline\b"
    r"|\bcan'?t take (?:this|it|that|on)\b|\bcannot take (?:this|it|that|on)\b"
    r"|\bya no (?:damos|trabajamos|cubrimos|hacemos|vamos)|\bno (?:trabajamos|hacemos|damos"
    r" servicio|cubrimos)\b|\bfuera de (?:nuestra|el|la) (?:area|zona)"
    r"|\b(?:favor de |por favor )?reasign(?:ar|en|e)\b"
    r"|\bno (?:podemos|vamos a poder) (?:tomar|aceptar|hacer) (?:este|ese|el)"
    r"|\b(?:won'?t|will not|are not|aren'?t|not) (?:be )?(?:taking|going to take|accepting"
    r"|doing|going to do|handling) (?:on )?(?:this|that|it|the job|the work|this one|that one"
    r"|this job|this work order)\b(?! (?:on )?(?:until|till|til|before|today|tomorrow|this week"
    r"|right now|at the moment))"
    r"|\b(?:we'?re|we are|i'?m|i am) (?:going to |gonna )?(?:have to )?(?:pass|passing)\b"
    r"|\b(?:isn'?t|is not|aren'?t|are not|not) (?:really )?(?:something|anything|work|a job"
    r"|a service) (?:that )?(?:we|i) (?:do|handle|touch|offer|work on|take on)\b"
    r"|\b(?:we|i) don'?t (?:touch|mess with|work with)\b"
)
_DONE_WORDS = r"(?:completed?|done|finished|fixed|repaired|taken care of|wrapped up|resolved)"
_JOB_NOUNS = (
    r"(?:work|job|repair|repairs|install|installation|project|unit|leak|issue|everything)"
)
_COMPLETED_RE = re.compile(
    # A statement that the work on this job is done, as a vendor writes it: a one-word
    # report ("Done.", "All set"), a subject with its verb ("the job is done", "we're
    # finished"), a headline ("Repair complete"), or first-person past ("we fixed the...").
    r"^(?:(?:it'?s |we'?re |were |all |job |work |everything )?(?:done|finished|completed"
    r"|complete(?! (?:the|this|that|it|a|an|your|our)\b)|fixed|taken care of)|all set(?! for\b)"
    r"|listo|terminado|ya (?:quedo|termin))\b"
    r"|\b(?:(?:" + _JOB_NOUNS[3:-1] + r"|it|this|that|all|we)(?:'s| is| was| has been| have been"
    r"| are| were)|we'?re|i'?m|we are|i am) (?:now |all )?" + _DONE_WORDS + r"\b"
    r"(?! (?:by|on|before|until|when|once|if)\b)"
    r"|^(?:the |this |that |our |your )?" + _JOB_NOUNS + r"(?: now| all| has| have)? "
    + _DONE_WORDS + r"\b(?! (?:by|on|before|until|when|once|if)\b)"
    r"|\ball set on (?:this|that|it|the)\b|\b(?:we|i|tech|technician|our tech|he|she|they)"
    r"(?: have| has| just| already)* (?:completed|finished|fixed|repaired|wrapped up)\b"
    r"(?! (?:by|before|until|when|once|if)\b)"
    r"|(?:^|\b(?:we|i|tech|technician|our tech|he|she|they) )(?:got|have got|had) (?:it|this|that"
    r"|everything|the \w+) (?:all )?(?:done|fixed|finished|working|sorted|taken care of)\b"
    r"|\bwork completed\b|\bcompleted (?:on |today|yesterday|this)"
    r"|\bya (?:terminamos|termine|quedo|esta (?:listo|terminado)|se (?:reparo|arreglo))"
    r"|\b(?:terminamos|termine|acabamos) (?:el|la|los|las|con)\b"
    r"|\btrabajo (?:esta |ya esta |quedo )?(?:terminado|completado|listo|realizado)\b"
)
_NOT_YET_RE = re.compile(
    r"\b(?:when|once|until|after|before|will|should|to be|can|could|if|would|get it|gets|going to"
    r"|need|needs|want|wants|expect|hope|hopefully|must|have it|as soon as|whether"
    r"|cuando|hasta|para|not|isn'?t|wasn'?t|no)\b[^.]{0,20}$"
)
"""Words before a completion phrase that make it a condition or a wish, not a report."""
_DIRECTIVE_RE = re.compile(
    r"\b(?:mark|marking|flag|set|close|closing|update|change|record|log|list|show|make|treat"
    r"|consider|put|move|switch|label|report|ignore|marcar|marque|marca)\b(?:\s+[\w'\"-]+){0,4}"
    r"\s+(?:as\s+|to\s+|como\s+)?[\"']?$"
)
"""An instruction to someone else about a status ("mark it done", "set every job to
complete"): what the vendor asks for, not what they report."""
_CURRENCY_WORDS = r"(?:dollars?|dolares|usd|bucks|pesos|grand|dlls?|dls)"
_AMOUNT_RE = re.compile(
    r"(?:us)?\$\s?\d[\d,]*(?:\.\d{1,2})?(?:\s?k\b)?"
    r"|\b(?:usd|us\$)\s?\d[\d,]*(?:\.\d{2})?"
    r"|\b\d[\d,]*(?:\.\d{1,2})?\s?(?:k\s?)?" + _CURRENCY_WORDS + r"\b"
    r"|(?<![\d.,])\b\d{1,3}(?:\.\d{1,2})?k\b"
)
"""Money as vendors write it: "$450", "850 USD", "300 bucks", "1.2k", "3,500 pesos"."""
_PRICED_FIGURE_RE = re.compile(
    r"\b(?:price|pricing|cost|costs|quote|quoted|estimate|estimated|total|bid|charge|runs?"
    r"|comes? (?:out )?to|precio|costo|cotizacion|presupuesto|total)\b[^.\d$?!]{0,30}?"
    r"(?<![\w#@/:-])(?P<figure>\d{1,3}(?:,\d{3})+(?:\.\d{2})?|\d{2,6}(?:\.\d{2})?)"
    r"(?![\d/:]|[.,]\d|\s*(?:-\s*\d|to\s+\d|am\b|pm\b|a\b|p\b|hours?|hrs?|days?|weeks?|wks?"
    r"|months?|years?|yrs?|%|percent|x\b|ft\b|feet|foot|inch|in\b|sq|units?|pieces?|of\b"
    r"|minutes?|mins?|o'?clock|horas?|dias?|semanas?))"
)
"""A bare figure right after a price word: "price to replace is 1,200.00", "total 850"."""
_NOT_A_PRICE_BEFORE_RE = re.compile(
    r"\b(?:at|by|on|around|about|the|until|till|before|after|el|las?|a)\s*$"
)
_QUOTE_WORD_RE = re.compile(
    r"\b(?:quote|quoted|estimate|estimated|bid|price|pricing|cost|costs|charge|total|proposal"
    r"|cotizacion|presupuesto|precio|costo)\b"
)
_QUOTE_STRONG_RE = re.compile(r"\b(?:quote|estimate|bid|proposal|cotizacion|presupuesto)\b")
_APPROVAL_RE = re.compile(
    r"\b(?:approv\w*|authoriz\w*|proceed|go ahead|green light|sign off|ok to|okay to|p\.?o\.?"
    r"|purchase order|aprob\w*|aprueb\w*|autoriz\w*|autoric\w*)\b"
)
_INVOICE_RE = re.compile(r"\b(?:invoice|bill|factura)\b")
_DELAY_RE = re.compile(
    r"\b(?:need|needs|have|has|had) to (?:be )?(?:special[- ])?order(?:ed)?\b|\bspecial[- ]order"
    r"|\b(?:once|when|as soon as) (?:the |our |that )?(?:parts?|material|glass|unit|motor|board"
    r"|valve|door|panel|fixture) (?:comes?|arrives?|is in|are in|gets? here|ships?)\b"
    r"|\bparts? (?:is |are |has been |have been |was |were )?(?:on order|ordered|backordered"
    r"|on back ?order|coming|not in|delayed)|\bback-? ?order|\bon order\b|\bwaiting (?:on|for)"
    r" (?:the |a )?(?:part|parts|material|materials|glass|unit|delivery|shipment|weather"
    r"|inspection|permit|supplier|manufacturer)|\bon hold\b|\bpostpon|\bpush(?:ed|ing)?"
    r" (?:back|out|it|this|that|the|our|your|tomorrow|today|to)\b|\breschedul|\brunning"
    r" (?:a bit |about |an? )?(?:late|behind)|\b(?:hour|minutes?|mins?) (?:late|behind)\b"
    r"|\bbehind schedule|\bdelay|\b(?:have|need|needs|had) to (?:move|push|bump|cancel)\b"
    r"|\bbump(?:ed|ing)? (?:it|this|you|the)\b|\b(?:can'?t|cannot|won'?t|will not|unable to)"
    r" make (?:it|the)\b|\bout sick\b|\b(?:due to|because of|with) (?:the )?(?:weather|rain"
    r"|snow|storm|wind|cold|freeze|forecast)|\brained out|\binstead\b|\blead time"
    r"|\b(?:can'?t|cannot|won'?t|will not) (?:be able to )?(?:come|make it|do|be there)\b"
    r"[^.?!]{0,40}\b(?:anymore|any more|after all)\b"
    r"|\b(?:move|moving|moved|change|changed|changing|switch|switched|bump|bumped) (?:it |this"
    r" |that |the appointment |the visit |you |them |him |her |our appointment |your"
    r" appointment )?(?:from|to)\b"
    r"|\bno (?:vamos a poder|podemos|podremos) (?:llegar|ir|pasar)\b|\blo cambiamos\b"
    r"|\bcambia(?:r|mos) (?:la cita|el dia)"
    r"|\b(?:tenemos|hay|tengo) que (?:pedir|ordenar|encargar)\b"
    r"|\bretras|\breprogram|\bpospon|\bpieza \w+ pedid|\besperando (?:la|las|el|los)"
    r" (?:pieza|piezas|material|parte|partes)|\bpor la lluvia|\bcambiar la cita|\bllegamos"
    r" tarde|\ben vez de\b"
)
_NOT_UNTIL_RE = re.compile(
    r"\b(?:can'?t|cannot|can not|won'?t|will not|unable to|not able to|couldn'?t|wouldn'?t|not"
    r" going to|no way (?:we|i) can)(?: be able to)? (?:get|make it|come|be|go|send|start|do|fit"
    r"|schedule|take|look)\b[^.?!]{0,40}?\b(?:until|till|til|before|for another"
    r"|for a (?:few|couple)|for (?:\w+ )?(?:weeks|days|months))\b"
    r"|\b(?:booked|slammed|swamped|backed up|buried)(?: (?:up|out|solid|completely"
    r"|right now))* (?:until|till|til|thru|through)\b"
    r"|\b(?:schedule|calendar) is (?:full|booked|packed)\b"
    r"|\bnot (?:until|till|before)\b|\bno (?:openings?|availability|slots?|room) (?:until|till"
    r"|before|for)\b|\bearliest (?:we|i) (?:can|could) (?:get|do|come)[^.?!]{0,30}\bis(?:n'?t| not)"
    r" (?:until|till|before)\b|\bafter the (?:holidays|new year|first of the year)\b"
    r"|\bno (?:podemos|podremos|vamos a poder) (?:ir|pasar|llegar|hacerlo|empezar)[^.?!]{0,30}"
    r"\bhasta\b|\bhasta (?:despues de|la proxima semana|el proximo mes|enero|el otro mes)"
)
"""The vendor will do the work but not soon ("can't get to it until January", "booked out
until the 15th"): a delay with no visit set, unless a visit time is given too."""
_PROPOSE_RE = re.compile(
    r"\bor\b|\beither\b|\boptions?\b|\bopenings?\b|\bavailab|\bwhich (?:one|works|day|time"
    r"|is better|would)|\bprefer|\bchoose|\bpick\b|\bwhichever\b|\bcual\b|\bdisponib|\bo el\b"
)
_SOFT_QUESTION_RE = re.compile(
    r"(?:let (?:me|us) know if (?:that|this|it|you)[^.?!]*|does (?:that|this) work(?: for"
    r" (?:you|them|her|him|the homeowner))?\??|if you have any questions[^.?!]*|any"
    r" questions\??|(?:ok|okay|sound good|good)\?|questions\?|thanks?\?)"
)
_QUESTION_RE = re.compile(
    r"\?|¿|\b(?:can|could|would) you (?:please )?(?:send|get|give|tell|confirm|provide|check"
    r"|ask|find out|let (?:me|us) know (?:what|which|if|whether|the))\b"
    r"|^let (?:me|us) know (?:what|which|whether|the|if|how|who|where)\b|\bplease (?:send|provide"
    r"|confirm|advise|let (?:me|us) know) (?:the|what|which|if|whether|me|us)\b|\b(?:i|we) need"
    r" (?:to know|the|a|an) (?:code|model|serial|gate|lockbox|access|answer|confirmation"
    r"|approval to shut)|\bnecesito saber\b|\bme (?:puede|pueden) (?:mandar|enviar|dar|decir"
    r"|confirmar)\b|\bwhat(?:'s| is) the (?:code|gate|lockbox|model|serial)\b"
)
_FIRM_RE = re.compile(
    r"\bconfirm(?:ed|ing)?\b|\bscheduled\b|\bsee (?:you|u|ya)\b|\b(?:we'?ll|we will|i'?ll|i will"
    r"|he'?ll|she'?ll|they'?ll|tech will) be (?:there|out|over|by|on site)\b|\bset (?:for|it up"
    r" for|up for)\b|\bbooked (?:for|you|them|it|in)\b|\bon the (?:schedule|calendar)\b|\bput"
    r" (?:you|them|the homeowner|her|him|it) (?:down|in)\b|\bworks\b|\bwork for\b|\bvamos\b"
    r"|\bconfirmo\b|\bestaremos\b|\bnos vemos\b|\bquedamos\b|\bwe'?re coming\b|\bheaded\b"
)
_VISIT_RE = re.compile(
    r"\b(?:be (?:there|out|over|by|on site)|come (?:out|by|over)|coming|stop by|swing by|head"
    r" (?:out|over)|scheduled|schedule (?:it|you|the)|confirm|see (?:you|u|ya)|set for|on"
    r" site|arrive|arriving|visit|appointment|appt|out there|send (?:a|our|the) tech"
    r"|vamos|iremos|llegamos|estaremos|cita|pasamos|works|booked (?:for|you|them|it|in)"
    r"|come(?! (?:back to (?:you|me|us)|up|across|in (?:at|around|under))\b)|can do|could do"
    r"|make it|pop by|drop by|stop in|be by)\b"
)
_CALL_ONLY_RE = re.compile(r"\b(?:call|text|contact|reach out|llamar|llamo|llamare)\b")
_CALL_TO_SCHEDULE_RE = re.compile(
    r"\b(?:call|calling|text|contact|reach out to|get (?:a ?hold|ahold) of|llamar|llamo|llamare)"
    r"\b.{0,60}\bto (?:set|get|schedule|arrange|find|line|book|coordinate|pick|figure)"
    r"|\bpara (?:agendar|programar|coordinar|ponernos de acuerdo)"
)
_WEAK_COMPLETED_RE = re.compile(
    r"^(?:(?:we|i|tech|technician|our tech|he|they) )?(?:replaced|repaired|fixed|installed|sealed"
    r"|patched|adjusted|rehung|re-hung|regraded|cleared|unclogged|reset|swapped|tightened"
    r"|cambiamos|reparamos|arreglamos|instalamos)\b"
    r"|\b(?:working|works|runs|running|draining|heating|cooling) (?:fine|great|properly|normally"
    r"|again|now|as it should)\b|\bfunciona (?:bien|perfecto)"
)


def _reading(intent: str, reason: str, **rest: object) -> VendorReading:
    values: dict[str, object] = {
        "scheduled_for": None,
        "window_end": None,
        "options": (),
        "amount": None,
    }
    values.update(rest)
    return VendorReading(intent=intent, reason=reason, **values)  # type: ignore[arg-type]


def _first_match(
    pattern: re.Pattern[str], sentences: list[_Sentence], skip: set[int] | None = None
) -> str | None:
    """The first phrase ``pattern`` finds, outside the sentences numbered in ``skip``."""
    for sentence in sentences:
        if skip and sentence.index in skip:
            continue
        m = pattern.search(sentence.text)
        if m:
            return m.group(0).strip()
    return None


def _completion(sentences: list[_Sentence], future_slot_sentences: set[int]) -> str | None:
    """The completion phrase, unless it speaks of the future ("once it's done")."""
    for sentence in sentences:
        for m in _COMPLETED_RE.finditer(sentence.text):
            before = sentence.text[: m.start()]
            if _NOT_YET_RE.search(before) or _DIRECTIVE_RE.search(before):
                continue
            if sentence.index in future_slot_sentences:
                continue
            return m.group(0).strip()
    return None


def _quote_amount(text: str) -> str | None:
    """The price in ``text``: the first written as money, else a figure after a price word."""
    amounts = list(_AMOUNT_RE.finditer(text))
    if not amounts:
        for m in _PRICED_FIGURE_RE.finditer(text):
            before = text[: m.start("figure")]
            # "quote by Friday at 10": a time or a date after the price word is no price.
            if not _NOT_A_PRICE_BEFORE_RE.search(before):
                return m.group("figure")
        return None
    for m in amounts:
        before = text[max(0, m.start() - 40) : m.start()]
        if re.search(r"\b(?:quote|estimate|total|price|cost|bid|would be|is|cotizacion"
                     r"|presupuesto|precio|costo)\b[^$]*$", before):  # fmt: skip
            return m.group(0).strip()
    return amounts[0].group(0).strip()


def _distinct_options(options: list[TimeOption]) -> list[TimeOption]:
    seen: list[TimeOption] = []
    for option in options:
        if option not in seen:
            seen.append(option)
    return seen


def _decide(
    sentences: list[_Sentence],
    text: str,
    slots: list[_Slot],
    now: datetime,
    zone: ZoneInfo,
) -> VendorReading:
    """Apply the intent rules in order; the first that fires wins.

    The order is by cost of a mistake and by how specific the wording is: a refusal or a
    finished job outranks any date in the same mail; a price outranks "we can do it
    tomorrow if approved"; alternatives outrank a delay; a question outranks a tentative
    date unless the vendor also firmly confirms one.
    """
    horizon = now - timedelta(hours=2)
    future: list[tuple[_Slot, TimeOption]] = []
    for slot in slots:
        if slot.past:
            continue
        option = _slot_option(slot, now, zone)
        if option is None or (option.end or option.start) < horizon:
            continue
        future.append((slot, option))
    timed = [(s, o) for s, o in future if s.has_time]
    future_slot_sentences = {s.sentence for s, _ in timed}

    declined = _first_match(_DECLINE_RE, sentences, skip=future_slot_sentences)
    if declined:
        return _reading("decline", f"declines: '{declined}'")

    done = _completion(sentences, future_slot_sentences)
    quote_strong = bool(_QUOTE_STRONG_RE.search(text) and _APPROVAL_RE.search(text))
    amount = _quote_amount(text)
    if done and not (quote_strong and not _INVOICE_RE.search(text)):
        return _reading("completed", f"completion: '{done}'")

    priced = amount and not _INVOICE_RE.search(text) and (
        _APPROVAL_RE.search(text) or (_QUOTE_WORD_RE.search(text) and not timed)
    )
    if priced or quote_strong:
        return _reading("quote", "price for approval" + (f": {amount}" if amount else ""),
                        amount=amount)  # fmt: skip

    options = _distinct_options([o for _, o in timed])
    per_sentence: dict[int, int] = {}
    for slot, _ in future:
        per_sentence[slot.sentence] = per_sentence.get(slot.sentence, 0) + 1
    with_day = [
        (s, o)
        for s, o in future
        if s.day is not None and (s.has_time or s.list_item or per_sentence[s.sentence] > 1)
    ]
    if len(_distinct_options([o for _, o in with_day])) >= 2 and (
        _PROPOSE_RE.search(text) or all(s.list_item for s, _ in with_day)
    ):
        proposed = _distinct_options([o for _, o in with_day])
        return _reading("propose_times", f"{len(proposed)} alternative times",
                        options=tuple(proposed))  # fmt: skip

    delayed = _first_match(_DELAY_RE, sentences)
    if delayed:
        fresh = [o for s, o in timed if s.times]
        new_time = fresh[-1] if fresh else None
        if new_time is not None:
            return _reading("delay", f"moved ('{delayed}') to a new time",
                            scheduled_for=new_time.start, window_end=new_time.end)  # fmt: skip
        return _reading("delay", f"delay without a new time: '{delayed}'")

    waiting = _first_match(_NOT_UNTIL_RE, sentences)
    if waiting and not timed:
        return _reading("delay", f"not before a later time: '{waiting}'")

    question_text = _SOFT_QUESTION_RE.sub(" ", text)
    asked = _QUESTION_RE.search(question_text)
    firm = _FIRM_RE.search(text)

    chosen: TimeOption | None = options[0] if options else None
    why = "date and time"
    if chosen is None:
        dated = [
            (s, o)
            for s, o in future
            if s.day is not None
            and _VISIT_RE.search(sentences[s.sentence].text)
            and not _CALL_TO_SCHEDULE_RE.search(sentences[s.sentence].text)
            and not (
                _CALL_ONLY_RE.search(sentences[s.sentence].text)
                and not _FIRM_RE.search(sentences[s.sentence].text)
            )
        ]
        if dated:
            chosen, why = dated[0][1], "date without a time: working day"

    if asked and not (chosen is not None and firm):
        return _reading("question", "asks before scheduling: '" + asked.group(0) + "'")
    if chosen is None:
        finished = _first_match(_WEAK_COMPLETED_RE, sentences)
        if finished:
            return _reading("completed", f"reports work done: '{finished}'")
    if chosen is not None:
        window = "window" if chosen.end is not None else "time"
        return _reading(
            "confirm_schedule",
            f"{why} ({window})",
            scheduled_for=chosen.start,
            window_end=chosen.end,
        )
    return _reading("other", "no date, no request, no completion")
