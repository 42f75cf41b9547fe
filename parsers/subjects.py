"""Reply and forward prefixes of subject lines: "Re:", "Fwd:", "AW:", "TR:", "回复:" ...

Mail clients prefix a subject, in the user's language, when a mail answers or passes on
another.  The daemon strips the prefixes to name a topic, and reads them as a hint of what
the body holds: in a reply a quote is history, in a forward the first header block starts
the forwarded mail.  One list serves both uses, so a prefix learned for one is known to
the other.
"""

from __future__ import annotations

import re

_REPLY_WORDS = ("re", "aw", "sv", "antw", "vs", "ref", "res", "odp", "отв", "回复", "回覆")
"""Reply prefixes: English/Latin, German, Scandinavian, Dutch, Finnish, Portuguese, Polish,
Russian, Chinese."""
_FORWARD_WORDS = (
    "fwd", "fw", "tr", "wg", "rv", "enc", "i", "doorst", "vs", "vb", "fs", "pd", "перес",
    "转发", "轉寄",
)  # fmt: skip
"""Forward prefixes: English, French, German, Spanish, Portuguese, Italian, Dutch, Finnish,
Danish, Polish, Russian, Chinese.  "VS:" is a Finnish reply and a Norwegian forward; it
counts as a forward, the reading that looks for more in the body."""

_COUNT = r"(?:\[\d+\])?"
"""The reply count some clients add: "Re[2]:"."""
_LIST_TAG = r"(?:\[[^\]]*\]\s*)?"
"""A mailing-list or ticket tag before the prefix: "[Acme] Re:"."""


def _alternation(words: tuple[str, ...]) -> str:
    return "|".join(re.escape(word) for word in sorted(set(words), key=len, reverse=True))


_FORWARD_PREFIX_RE = re.compile(
    rf"^\s*{_LIST_TAG}(?:{_alternation(_FORWARD_WORDS)})\s*{_COUNT}\s*[:：]", re.IGNORECASE
)
_REPLY_PREFIX_RE = re.compile(
    rf"^\s*{_LIST_TAG}(?:{_alternation(_REPLY_WORDS)})\s*{_COUNT}\s*[:：]", re.IGNORECASE
)
_LEADING_PREFIXES_RE = re.compile(
    rf"^\s*(?:(?:{_alternation(_REPLY_WORDS + _FORWARD_WORDS)})\s*{_COUNT}\s*[:：]\s*)+",
    re.IGNORECASE,
)


def is_forward_subject(subject: str) -> bool:
    """"Fwd:", "TR:", "WG:" ...: the mail passes another on."""
    return bool(_FORWARD_PREFIX_RE.match(subject))


def is_reply_subject(subject: str) -> bool:
    """"RE:", "AW:", "SV:" ... and not a forward: the mail answers another."""
    return bool(_REPLY_PREFIX_RE.match(subject)) and not is_forward_subject(subject)


def strip_subject_prefix(subject: str) -> str:
    """``Re: Fwd: AW: leak`` -> ``leak``: every leading reply and forward prefix removed.

    Tags in brackets (``[WO-12]``) are not prefixes and stay.
    """
    return _LEADING_PREFIXES_RE.sub("", subject).strip()
