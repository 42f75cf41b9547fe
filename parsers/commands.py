"""The staff command grammar: the new text of a reply to an approval digest -> commands.

Staff approve drafts by replying to the digest with one command per line above the quote::

    accept 1, 3                      accept all            accept WO-241
    edit 2: Replace the cracked drywall in the upstairs hall; match texture.
    edit 2 trade: plumbing           edit 2 priority: urgent
    reject 3: homeowner maintenance (caulk)
    assign 1 to Ace Plumbing         assign 1 ace@example.com
    merge 1 2                        merge 1, 2 and 3
    new: Re-seal the shower door, master bath
    complete WO-12    reopen WO-12    note WO-12: gate code 4471
    complete 2        (an item of the digest replied to)
    help

This module only *reads*: it turns text into :class:`Command` values and
:class:`CommandError` values and never touches the database.  Applying commands is the
daemon's job, and it must apply nothing when :attr:`CommandParse.valid` is false: a
half-applied reply is worse than a rejected one, because the receipt would have to explain
which half happened.

How a reply is read, top to bottom (the rules a receipt can point to):

* Only what the author typed above the quoted digest is read
  (:attr:`warrantyd.parsers.trim.Reply.above_quote`): reading stops at the first ``>``
  line, an attribution ("On ... wrote:"), an Outlook header block or separator line, a
  ``-- `` signature delimiter or a client footer ("Sent from my iPhone"), and a digest
  sent back with nothing typed above it has no commands.  Normally
  :func:`warrantyd.parsers.trim.extract_reply` has trimmed the text already; trimming it
  again here means untrimmed text can never make the example commands at the bottom of
  the digest count.
* Free text *before* the first command (a greeting such as "Hi team," or a remark) is
  skipped: people greet, and a greeting changes nothing.  It is only skipped, never read,
  so a reply with nothing but prose is still rejected with "no commands".
* Once commands have started, the first free-text line (a sign-off such as "Thanks, Pat",
  a name, a "PS") ends the commands.  Nothing after it is read, even a signature line that
  begins with a command word ("Note: this message is confidential").
* A line that is clearly an attempt at a command but cannot be read -- a misspelled command
  word followed by item numbers ("acept 2"), a command with leftover words ("accept 1 but
  not 3"), two commands on one line -- is an error, and an error anywhere means nothing is
  applied.  A line that merely starts with a command word followed by prose ("Note: gate
  code 4471", no work order) is an error directly under a command and free text after a
  blank line; "Help desk: ..." and "New phone: ..." are always free text.
* ``edit N:`` and ``new:`` descriptions continue over the following lines until a blank line
  or the next command; the lines are joined with single spaces.  A long ``reject``/``note``
  line that a mail client wrapped (the next line continues in lower case) is joined too.

Item numbers are the numbers of the digest being answered; ``WO-n`` is resolved to its item
number when the work order is in that digest.  All commands of one reply are validated
together (items in range, an item not both accepted and rejected, ...).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from warrantyd.parsers.trim import Reply, split_reply

__all__ = [
    "HELP_TEXT",
    "VERBS",
    "Command",
    "CommandError",
    "CommandParse",
    "parse_commands",
]

VERBS: tuple[str, ...] = (
    "accept",
    "edit",
    "reject",
    "assign",
    "merge",
    "new",
    "complete",
    "reopen",
    "note",
    "help",
)

HELP_TEXT = """\
Reply to a digest with one command per line, above the quoted digest.
Numbers are the item numbers of that digest; WO-n works too.

  accept 1            accept 1, 3          accept all
  edit 2: Replace the cracked drywall in the upstairs hall; match texture.
      (the description may go on over the next lines, up to a blank line)
  edit 2 trade: plumbing                edit 2 priority: urgent
  reject 3            reject 3: homeowner maintenance (caulk)
  assign 1 to Ace Plumbing              (vendor name, alias or email)
  merge 1 2           (one work order for both issues, same vendor)
  new: Re-seal the shower door, master bath   (extra work order on this request)
  complete WO-12      reopen WO-12      (or the item number: complete 2)
  note WO-12: gate code 4471            (internal; vendors never see notes)
  help

Commands are not case-sensitive; "1,2", "1, 2", "1 and 2", "#2" and "item 2" all work.
Anything after your commands (a sign-off, your signature) is ignored.
If any line cannot be read, nothing is done and the receipt says which line and why.
"""

_ITEM_VERBS = frozenset({"accept", "edit", "reject", "assign", "merge"})
_WO_VERBS = frozenset({"complete", "reopen", "note"})
_CONTINUED_VERBS = frozenset({"edit", "new"})
"""Verbs whose text runs on over the following lines until a blank line."""
_WRAPPED_VERBS = frozenset({"reject", "note"})
"""Verbs whose text is joined with the next line only when the client visibly wrapped it."""
_WRAP_WIDTH = 60
"""A line at least this long, followed by a lower-case line, was wrapped by the client."""

_REF_TAKING_VERBS = tuple(sorted(_ITEM_VERBS | _WO_VERBS))
"""Verbs a misspelled word followed by item numbers can stand for ("acept 2")."""

_SYNONYMS = {
    "except": "accept",  # what phone autocorrect makes of "accept"
    "approve": "accept",
    "approved": "accept",
    "ok": "accept",
    "okay": "accept",
    "yes": "accept",
    "go": "accept",
    "decline": "reject",
    "deny": "reject",
    "dismiss": "reject",
    "delete": "reject",
    "remove": "reject",
    "cancel": "reject",
    "close": "complete",
    "closed": "complete",
    "done": "complete",
    "finish": "complete",
    "finished": "complete",
    "reassign": "assign",
    "send": "assign",
    "combine": "merge",
    "join": "merge",
    "comment": "note",
    "add": "new",
    "create": "new",
    "change": "edit",
    "update": "edit",
    "modify": "edit",
    "open": "reopen",
}
"""Words people use for a command; they are *not* commands, but the error suggests one."""

_FILLER = frozenset(
    {
        "please",
        "pls",
        "plz",
        "thanks",
        "thank you",
        "thx",
        "ty",
        "too",
        "also",
        "as is",
        "as-is",
        "as written",
        "as drafted",
        "me",
    }
)
"""Words that may trail a command without changing it ("accept 1 please", "help me")."""

_PRIORITIES = ("emergency", "urgent", "routine")

# Characters phones and rich-text editors substitute, mapped one to one so that offsets in
# the normalised line are offsets in the line as written.
_CHAR_MAP = str.maketrans(
    {
        **dict.fromkeys("\u2018\u2019\u201a\u201b\u2032\uff07", "'"),
        **dict.fromkeys("\u201c\u201d\u201e\u201f\u2033\uff02", '"'),
        **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d", "-"),
        **dict.fromkeys("\t\u00a0\u2002\u2003\u2007\u2009\u200a\u202f\u205f\u3000", " "),
        **dict.fromkeys("\u200b\u200c\u200d\u2060\ufeff\u00ad", " "),
        "\uff03": "#",
        "\uff0c": ",",
        "\uff1a": ":",
        "\uff06": "&",
        "\u3001": ",",
        **{chr(0xFF10 + d): str(d) for d in range(10)},
    }
)
_INVISIBLE_RE = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad]")


@dataclass(frozen=True)
class Command:
    """One command as the staff member wrote it, with digest item numbers resolved."""

    verb: str
    """One of :data:`VERBS`."""
    items: tuple[int, ...]
    """Digest item numbers (1 = first draft); WO-n of a digest draft resolved to its item."""
    line: int
    """1-based line number in the new text where the command starts."""
    source: str
    """The line(s) as written; several lines for a continued description."""
    text: str | None = None
    """Edit description, reject reason, new description or note text; whitespace collapsed."""
    vendor: str | None = None
    """The ``assign`` target as written (a name, an alias or an email address)."""
    wo: tuple[str, ...] = ()
    """``WO-n`` ids as written (canonical spelling), for complete/reopen/note or accept WO-n."""
    all: bool = False
    """``accept all``: :attr:`items` is then every item of the digest (empty when unknown)."""
    field: str | None = None
    """For ``edit N trade: X`` / ``edit N priority: X`` the field; None = the description."""


@dataclass(frozen=True)
class CommandError:
    """Why one line cannot be applied; :attr:`message` is written for the receipt."""

    line: int
    """1-based line number in the new text; 0 for the reply as a whole ("no commands")."""
    source: str
    message: str


@dataclass(frozen=True)
class CommandParse:
    """Everything read from one reply; apply :attr:`commands` only when :attr:`valid`."""

    commands: tuple[Command, ...]
    errors: tuple[CommandError, ...]

    @property
    def valid(self) -> bool:
        return bool(self.commands) and not self.errors


# --- one line ---------------------------------------------------------------------------

_VERB_RE = re.compile(r"[a-z]+")
_LEAD_RE = re.compile(
    r"(?:[-*•·]\s+|\d{1,2}[.)]\s+"
    r"|(?:please|pls|plz|ok|okay|yes|sure|great|thanks|thx|also|and|then)\b[\s,!.:-]*)",
    re.IGNORECASE,
)
"""A bullet, or a courtesy before a command word ("OK, accept 1", "please reject 2")."""
_REF_RE = re.compile(
    r"\[?(?:wo\s*[-#:]?\s*(?P<wo>\d{1,9}))\]?(?!\w)"
    r"|(?:(?:items?|nos?\.?|numbers?|#)\s*)?(?P<num>\d{1,6})"
    r"(?:\s*(?:-|through|thru)\s*(?P<end>\d{1,6}))?(?![\w@]|[.\-/]\w)"
    r"|(?P<all>all)(?![\w-])",
    re.IGNORECASE,
)
_REF_SEPARATOR_RE = re.compile(r"\s*(?:(?:,|&|\+|/|\band\b)\s*)?", re.IGNORECASE)
_MERGE_SEPARATOR_RE = re.compile(
    r"\s*(?:(?:,|&|\+|/|\band\b|\bwith\b|\binto\b|\bto\b)\s*)?", re.IGNORECASE
)
_EMBEDDED_VERB_RE = re.compile(
    r"(?:^|[\s,;.&/])(?P<verb>" + "|".join(VERBS) + r")(?:\s*(?:[:#]|\d|wo\b|all\b|to\b)|\s*$)",
    re.IGNORECASE,
)
_ANY_VERB_WORD_RE = re.compile(r"\b(?:" + "|".join(VERBS) + r")\b", re.IGNORECASE)
_COURTESY_TAIL_RE = re.compile(
    r"[,;]?\s+-?\s*(?:please|pls|thanks|thank you|thx)[\s.!]*$", re.IGNORECASE
)
_FIELD_RE = re.compile(r"^(?P<field>trade|priority)\s*[:=]\s*(?P<value>\S(?:.*\S)?)$", re.I)
_TRAILING_PUNCT = ".!?,;:"
_ASSIGN_PREFIX_RE = re.compile(r"^\s*(?::|-+>?|→|\bto\b\s*:?)?\s*", re.IGNORECASE)
_TEXT_PREFIX_RE = re.compile(r"^\s*[:=,]?\s*(?:-+\s+|-+(?=\s*$))?\s*")


@dataclass
class _Ref:
    number: int | None = None
    end: int | None = None
    wo: int | None = None
    all: bool = False


@dataclass(frozen=True)
class _ScannedRef:
    ref: _Ref
    spaces_only: bool
    """Separated from the previous reference by spaces only ("merge 1 2")."""
    end: int


@dataclass
class _Draft:
    """A command being read; it becomes a :class:`Command` once its lines are complete."""

    verb: str
    line: int
    sources: list[str]
    items: list[int] = field(default_factory=list)
    wo: list[str] = field(default_factory=list)
    all: bool = False
    text_parts: list[str] = field(default_factory=list)
    vendor: str | None = None
    edit_field: str | None = None
    problems: list[str] = field(default_factory=list)
    """Errors found while reading the line; checked once the command is complete."""
    continued: bool = False
    """True when the following lines may carry on the text (edit/new)."""

    @property
    def text(self) -> str | None:
        joined = " ".join(" ".join(self.text_parts).split())
        return joined or None


@dataclass
class _Reading:
    """What one line is: a command, a broken command attempt, command-ish prose, or prose."""

    kind: str
    """``command``; ``broken``: an attempt at a command that cannot be read, an error
    wherever it is; ``weak``: a command word followed by prose ("Note: ..."), an error
    directly under a command and free text elsewhere; ``text``: anything else."""
    draft: _Draft | None = None
    message: str = ""
    continuable: bool = False
    """Under an ``edit``/``new`` line, this line is more of the description."""


def _clean(text: str) -> str:
    return " ".join(_INVISIBLE_RE.sub(" ", text).split())


def _strip_trailing(text: str) -> str:
    return text.rstrip().rstrip(_TRAILING_PUNCT).rstrip()


def _scan_refs(norm: str, pos: int, verb: str) -> tuple[list[_ScannedRef], int]:
    """Read a list of item references at ``pos``; return them and where the rest starts."""
    separator = _MERGE_SEPARATOR_RE if verb == "merge" else _REF_SEPARATOR_RE
    refs: list[_ScannedRef] = []
    while True:
        if refs:
            sep = separator.match(norm, pos)
            assert sep is not None  # every part of the pattern is optional
            start = sep.end()
            spaces_only = not sep.group(0).strip()
            if spaces_only and start == pos:
                break
        else:
            start = len(norm) - len(norm[pos:].lstrip())
            spaces_only = False
        match = _REF_RE.match(norm, start)
        if not match:
            break
        if match.group("wo"):
            ref = _Ref(wo=int(match.group("wo")))
        elif match.group("num"):
            end = match.group("end")
            ref = _Ref(number=int(match.group("num")), end=int(end) if end else None)
        else:
            ref = _Ref(all=True)
        refs.append(_ScannedRef(ref, spaces_only, match.end()))
        pos = match.end()
    return refs, pos


def _parse_verb_line(verb: str, norm: str, orig: str, rest_at: int, line_no: int) -> _Reading:
    """Read the arguments of a line whose first word is the command ``verb``.

    ``norm`` is the line with phone punctuation normalised (same offsets as ``orig``);
    descriptions, reasons and vendors are cut from ``orig`` so they stay as written.
    """
    src = orig.strip()
    draft = _Draft(verb=verb, line=line_no, sources=[orig.rstrip()])
    after_verb = norm[rest_at:]
    if not after_verb.strip(" " + _TRAILING_PUNCT):
        if verb == "help":
            return _Reading("command", draft)
        if verb in _CONTINUED_VERBS and ":" in after_verb:
            draft.continued = True  # "new:" with the description on the next lines
            return _Reading("command", draft)
        return _Reading("broken", message=_missing_argument(verb, line_no, []))

    if verb == "help":
        if _is_filler(after_verb):
            return _Reading("command", draft)
        return _Reading("text")  # "Help desk: 303-555-0100" in a signature

    if verb == "new":
        prefix = re.match(r"\s*(?::|-+)\s*", after_verb)
        if not prefix:
            return _Reading("text")  # "New phone: ..." - a new work order needs "new:"
        draft.text_parts.append(orig[rest_at + prefix.end() :])
        draft.continued = True
        return _Reading("command", draft)

    pos = rest_at
    colon_after_verb = re.match(r"\s*:\s*(?=\S)", after_verb)
    if colon_after_verb and verb != "note":  # "accept: 1, 3"
        pos += colon_after_verb.end()
    refs, pos = _scan_refs(norm, pos, verb)
    text_follows = norm[pos:].lstrip()[:1].isalpha()
    if verb in ("edit", "reject") and len(refs) > 1 and refs[-1].spaces_only and text_follows:
        refs.pop()  # "edit 2 3 outlets ...": the 3 belongs to the description
        pos = refs[-1].end
    rest_norm = norm[pos:]
    rest_orig = orig[pos:]

    if not refs:
        if verb == "assign":
            return _parse_assign_reversed(draft, norm, orig, rest_at, line_no)
        if after_verb.lstrip()[:1] in (":", "-") and verb != "note":
            return _Reading("broken", message=_missing_argument(verb, line_no, []))
        return _Reading("weak", message=_unreadable(line_no, src, verb), continuable=True)

    embedded = _two_commands(verb, rest_norm)
    if embedded:
        return _Reading("broken", message=_two_commands_message(line_no, src, embedded))

    for scanned in refs:
        ref = scanned.ref
        if ref.all:
            if verb != "accept":
                draft.problems.append(
                    f"line {line_no}: 'all' works only with accept; list the items for {verb}"
                )
            draft.all = True
        elif ref.wo is not None:
            if f"WO-{ref.wo}" not in draft.wo:
                draft.wo.append(f"WO-{ref.wo}")
        elif ref.number is not None:
            last = ref.end if ref.end is not None and ref.end >= ref.number else ref.number
            for number in range(ref.number, min(last, ref.number + 99) + 1):
                if number not in draft.items:
                    draft.items.append(number)

    if verb in ("accept", "merge", "complete", "reopen"):
        if not _is_filler(rest_norm):
            return _Reading(
                "broken", message=_leftover(line_no, src, rest_orig), continuable=True
            )
    elif verb == "assign":
        prefix = _ASSIGN_PREFIX_RE.match(rest_norm)
        assert prefix is not None
        vendor = _clean(rest_orig[prefix.end() :])
        vendor = _strip_trailing(_COURTESY_TAIL_RE.sub("", vendor)).strip("\"'")
        if vendor:
            draft.vendor = vendor
        else:
            draft.problems.append(_missing_argument("assign", line_no, draft.items))
    else:  # edit, reject, note: the rest is text
        prefix = _TEXT_PREFIX_RE.match(rest_norm)
        assert prefix is not None
        text = rest_orig[prefix.end() :]
        field_match = _FIELD_RE.match(_clean(rest_norm[prefix.end() :]))
        if verb == "edit" and field_match and len(field_match.group("value").split()) <= 3:
            draft.edit_field = field_match.group("field").lower()
            text = _strip_trailing(field_match.group("value"))
            if draft.edit_field == "priority" and text.lower() not in _PRIORITIES:
                draft.problems.append(
                    f"line {line_no}: '{text}' is not a priority; use emergency, urgent "
                    "or routine"
                )
        elif verb == "edit" and re.fullmatch(r"\s*(trade|priority)\s*[:=]?\s*",
                                             _clean(rest_norm[prefix.end() :]), re.I):
            named = _clean(rest_norm[prefix.end() :]).strip(" :=").lower()
            choices = ("emergency, urgent or routine" if named == "priority"
                       else "a trade such as plumbing or drywall")
            draft.problems.append(f"line {line_no}: 'edit … {named}:' needs a value after the "
                                  f"colon ({choices})")
        elif not text.strip(_TRAILING_PUNCT + " "):
            text = ""  # "reject 2." is a reject without a reason
        draft.text_parts.append(text)
        draft.continued = verb in _CONTINUED_VERBS and draft.edit_field is None
    _check_verb_targets(draft, line_no)
    return _Reading("command", draft)


def _parse_assign_reversed(draft: _Draft, norm: str, orig: str, rest_at: int,
                           line_no: int) -> _Reading:
    """``assign Ace Plumbing to 1, 2``: the vendor first, the items after the last 'to'."""
    src = orig.strip()
    cut = norm.lower().rfind(" to ")
    if cut > rest_at:
        refs, end = _scan_refs(norm, cut + 4, "assign")
        vendor = _clean(orig[rest_at:cut]).strip(" :\"'")
        if refs and _is_filler(norm[end:]) and vendor and not any(r.ref.all for r in refs):
            for scanned in refs:
                ref = scanned.ref
                if ref.wo is not None:
                    draft.wo.append(f"WO-{ref.wo}")
                elif ref.number is not None:
                    draft.items.append(ref.number)
            draft.vendor = vendor
            return _Reading("command", draft)
    if norm[rest_at:].lstrip().lower().startswith(("to ", "to:", ":")):
        return _Reading("broken", message=_missing_argument("assign", line_no, []))
    return _Reading("weak", message=_unreadable(line_no, src, "assign"), continuable=True)


def _check_verb_targets(draft: _Draft, line_no: int) -> None:
    """Problems that depend only on the verb and what it names, not on the digest."""
    verb = draft.verb
    if verb == "merge" and len(draft.items) + len(draft.wo) < 2:
        draft.problems.append(
            f"line {line_no}: merge needs two or more items, e.g. 'merge 1 2'"
        )


def _is_filler(rest: str) -> bool:
    """True when ``rest`` adds nothing: punctuation, a courtesy, a remark in parentheses
    or after a dash ("accept 1 (the gutter one)", "accept 2 - looks right")."""
    if re.match(r"\s+-+\s+\S", rest):
        return True
    remainder = re.sub(r"\([^()]*\)", " ", rest.lower())
    remainder = re.sub(r"[!.,;:?]+", " ", remainder)
    remainder = " ".join(remainder.split()).strip(" -")
    return not remainder or remainder in _FILLER


def _two_commands(verb: str, rest_norm: str) -> str | None:
    """The second command word when the rest of the line starts another command."""
    stripped = rest_norm.strip()
    if verb in ("edit", "reject", "note") and stripped.startswith(":"):
        return None  # after a colon everything is text: "reject 2: duplicate, accept 1 instead"
    if verb == "assign":
        match = _EMBEDDED_VERB_RE.search(rest_norm)
        if match and re.search(r"[,;&]|\band\b", rest_norm[: match.start() + 1]):
            return match.group("verb").lower()
        return None
    match = _EMBEDDED_VERB_RE.search(rest_norm)
    if match:
        return match.group("verb").lower()
    if verb in ("accept", "merge", "complete", "reopen", "help"):
        word = _ANY_VERB_WORD_RE.search(rest_norm)
        if word:
            return word.group(0).lower()
    return None


def _missing_argument(verb: str, line_no: int, items: Sequence[int]) -> str:
    item = str(items[0]) if items else "2"
    listed = ", ".join(str(i) for i in items) if items else "1"
    examples = {
        "accept": "needs item numbers from the digest, e.g. 'accept 1, 3' or 'accept all'",
        "reject": "needs the item number, e.g. 'reject 3: homeowner maintenance'",
        "edit": f"needs the new description after a colon, e.g. 'edit {item}: Replace the "
        "cracked tile and regrout'",
        "assign": f"needs a vendor after 'to', e.g. 'assign {listed} to Ace Plumbing'"
        if items
        else "needs the item number and a vendor, e.g. 'assign 1 to Ace Plumbing'",
        "merge": "needs two or more item numbers, e.g. 'merge 1 2'",
        "new": "needs a description after a colon, e.g. 'new: Re-seal the shower door'",
        "complete": "needs a work order number, e.g. 'complete WO-12'",
        "reopen": "needs a work order number, e.g. 'reopen WO-12'",
        "note": "needs a work order number and the note, e.g. 'note WO-12: gate code 4471'",
    }
    return f"line {line_no}: {verb} {examples[verb]}"


def _unreadable(line_no: int, src: str, form: str) -> str:
    return (
        f"line {line_no}: '{src}' starts with a command word but is not a command; "
        f"write it as '{_example(form)}'"
    )


def _example(form: str) -> str:
    return {
        "accept": "accept 1, 3",
        "edit": "edit 2: new description",
        "reject": "reject 3: reason",
        "assign": "assign 1 to Ace Plumbing",
        "merge": "merge 1 2",
        "complete": "complete WO-12",
        "reopen": "reopen WO-12",
        "note": "note WO-12: text",
    }.get(form, form)


def _leftover(line_no: int, src: str, rest: str) -> str:
    return (
        f"line {line_no}: could not read '{_clean(rest)}' in '{src}'; write one command per "
        "line with only item numbers after it, e.g. 'accept 1, 3'"
    )


def _two_commands_message(line_no: int, src: str, second: str) -> str:
    return (
        f"line {line_no}: '{src}' has two commands on one line ('{second}' is a second "
        "command); put each command on its own line"
    )


def _read_line(orig: str, line_no: int) -> _Reading:
    """Classify one non-blank line of the new text."""
    norm = orig.translate(_CHAR_MAP)
    lower = norm.lower()
    start = len(norm) - len(norm.lstrip())
    for _ in range(2):  # at most a bullet and a courtesy: "- ok, accept 1"
        lead = _LEAD_RE.match(lower, start)
        if not lead:
            break
        after = _VERB_RE.match(lower, lead.end())
        verb_follows = bool(after) and after.group(0) in VERBS
        if not verb_follows and not _LEAD_RE.match(lower, lead.end()):
            break
        start = lead.end()
    word_match = _VERB_RE.match(lower, start)
    if not word_match:
        return _Reading("text", continuable=True)
    word = word_match.group(0)
    if word in VERBS:
        return _parse_verb_line(word, norm, orig, word_match.end(), line_no)
    return _read_unknown_word(word, norm, orig, word_match.end(), line_no)


def _read_unknown_word(word: str, norm: str, orig: str, rest_at: int, line_no: int) -> _Reading:
    """A line like ``acept 2`` or ``approve 1, 3``: a command attempt with a wrong word."""
    suggestion = _SYNONYMS.get(word)
    if suggestion is None:
        close = difflib.get_close_matches(word, _REF_TAKING_VERBS, n=1, cutoff=0.7)
        if not close:
            return _Reading("text")
        suggestion = close[0]
    rest = norm[rest_at:]
    colon = re.match(r"\s*:\s*", rest)
    refs, end = _scan_refs(norm, rest_at + (colon.end() if colon else 0), suggestion)
    if not refs or (any(r.ref.all for r in refs) and suggestion != "accept"):
        return _Reading("text")
    tail = norm[end:]
    if not (_is_filler(tail) or re.match(r"\s*:", tail) or suggestion == "assign"):
        return _Reading("text")
    src = orig.strip()
    written = src[len(src) - len(src.lstrip()) :]
    corrected = re.sub(re.escape(word), suggestion, written, count=1, flags=re.IGNORECASE)
    return _Reading(
        "broken",
        message=f"line {line_no}: '{src}' is not a command (unknown command '{word}') "
        f"— did you mean '{_strip_trailing(corrected)}'?",
    )


# --- the whole reply --------------------------------------------------------------------


def parse_commands(
    new_text: str | Reply, digest_work_orders: Sequence[str] | None = None
) -> CommandParse:
    """Read the commands in the new text of a staff reply and validate them together.

    Given the :class:`Reply` the trimmer made of the whole mail, only what the author typed
    above any quote or reply header is read; given text, it is trimmed here first.

    ``digest_work_orders`` are the WO ids of the digest's items in order (item 1 first).
    When it is None (the digest is unknown, e.g. ``warrantyd explain`` without a database)
    item numbers are not range-checked and ``WO-n`` stays in :attr:`Command.wo`.
    """
    reply = new_text if isinstance(new_text, Reply) else split_reply(new_text)
    lines = reply.above_quote.split("\n")
    drafts: list[_Draft] = []
    errors: list[CommandError] = []
    started = False
    """A command, or a line that tried to be one, has been seen."""
    under_command = False
    """The previous line was part of a command (no blank line since)."""
    open_draft: _Draft | None = None
    """The command whose text may go on over the next line."""

    for index, orig in enumerate(lines):
        line_no = index + 1
        if not orig.strip():
            open_draft = None
            under_command = False
            continue
        reading = _read_line(orig, line_no)
        more_text = reading.kind == "text" or reading.continuable
        if open_draft is not None and more_text and (
            open_draft.continued or _wrapped(open_draft, orig)
        ):
            open_draft.sources.append(orig.rstrip())
            open_draft.text_parts.append(orig)
            continue
        open_draft = None
        if reading.kind == "command":
            assert reading.draft is not None
            drafts.append(reading.draft)
            open_draft = reading.draft
            started = under_command = True
        elif reading.kind == "broken":
            errors.append(CommandError(line_no, orig.strip(), reading.message))
            started = under_command = True
        elif reading.kind == "weak" and under_command:
            errors.append(CommandError(line_no, orig.strip(), reading.message))
        elif started:
            break  # a sign-off, a name, a PS: the commands are over
        # else: a greeting or remark before the first command; skipped, never read

    commands = tuple(_finish(draft, digest_work_orders, errors) for draft in drafts)
    errors.extend(_conflicts(commands))
    if not commands and not errors:
        errors.append(
            CommandError(
                0,
                "",
                "no commands: write one command per line at the top of your reply, above "
                "the quoted digest, e.g. 'accept 1, 3' (reply 'help' for the full list); "
                "commands inside the quoted digest are not read",
            )
        )
    errors.sort(key=lambda error: error.line)
    return CommandParse(commands=commands, errors=tuple(_unique(errors)))


def _wrapped(draft: _Draft, next_line: str) -> bool:
    """True when a reject/note line was wrapped by the client and ``next_line`` goes on."""
    if draft.verb not in _WRAPPED_VERBS or not draft.text:
        return False
    last = draft.sources[-1]
    first = next_line.strip()[:1]
    return len(last.strip()) >= _WRAP_WIDTH and (first.islower() or first.isdigit())


def _finish(
    draft: _Draft, digest_work_orders: Sequence[str] | None, errors: list[CommandError]
) -> Command:
    """Resolve WO ids and item numbers against the digest and turn a draft into a Command."""
    source = "\n".join(draft.sources).strip()
    problems = list(draft.problems)
    items = list(draft.items)
    wo = list(draft.wo)
    text = draft.text
    if draft.verb in ("edit", "new") and text is None and not problems:
        problems.append(_missing_argument(draft.verb, draft.line, items))
    if draft.verb == "note" and text is None:
        problems.append(
            f"line {draft.line}: note needs the text after a colon, e.g. "
            f"'note {wo[0] if wo else 'WO-12'}: gate code 4471'"
        )
    if digest_work_orders is not None:
        digest_numbers = [_wo_number(w) for w in digest_work_orders]
        count = len(digest_work_orders)
        if draft.verb in _ITEM_VERBS:
            for wo_id in wo:
                number = _wo_number(wo_id)
                if number in digest_numbers:
                    item = digest_numbers.index(number) + 1
                    if item not in items:
                        items.append(item)
                else:
                    problems.append(
                        f"line {draft.line}: {wo_id} is not in this digest "
                        f"({_digest_range(count)}: {', '.join(digest_work_orders)}); "
                        "use complete/reopen/note for other work orders"
                    )
            for item in items:
                if not 1 <= item <= count:
                    problems.append(
                        f"line {draft.line}: item {item} is not in this digest "
                        f"({_digest_range(count)})"
                    )
            if draft.all:
                items = list(range(1, count + 1))
        elif draft.verb in _WO_VERBS and items:
            # complete/reopen/note act on any work order; on a digest an item number names
            # the work order it lists (the follow-up digest lists work in progress).
            for item in items:
                if 1 <= item <= count:
                    wo.append(_canonical_wo(digest_work_orders[item - 1]))
                else:
                    problems.append(
                        f"line {draft.line}: item {item} is not in this digest "
                        f"({_digest_range(count)})"
                    )
            items = []
    elif draft.verb in _WO_VERBS and items:
        problems.append(
            f"line {draft.line}: {draft.verb} needs a work order number here (this mail is "
            f"no digest with numbered items), e.g. '{_example(draft.verb)}'"
        )
        items = []
    if draft.verb in _ITEM_VERBS and not items and not wo and not draft.all:
        problems.append(
            f"line {draft.line}: {draft.verb} needs item numbers from the digest, "
            f"e.g. '{_example(draft.verb)}'"
        )
    for problem in problems:
        errors.append(CommandError(draft.line, source, problem))
    return Command(
        verb=draft.verb,
        items=tuple(items),
        line=draft.line,
        source=source,
        text=text if draft.verb != "assign" else None,
        vendor=draft.vendor,
        wo=tuple(wo),
        all=draft.all,
        field=draft.edit_field,
    )


def _conflicts(commands: Sequence[Command]) -> list[CommandError]:
    """Errors between commands: one item cannot be both kept and rejected, and so on."""
    found: list[CommandError] = []
    verb_words = {
        "accept": "accepted",
        "edit": "edited",
        "assign": "assigned",
        "merge": "merged",
    }
    rejected: dict[int, Command] = {}
    for command in commands:
        if command.verb == "reject":
            for item in command.items:
                rejected.setdefault(item, command)
    for command in commands:
        if command.verb not in verb_words:
            continue
        for item in command.items:
            reject = rejected.get(item)
            if reject is None:
                continue
            later = max(command, reject, key=lambda c: c.line)
            found.append(
                CommandError(
                    later.line,
                    later.source,
                    f"line {later.line}: item {item} is both {verb_words[command.verb]} "
                    f"(line {command.line}) and rejected (line {reject.line}); "
                    "keep only one of them",
                )
            )
    vendors: dict[int, Command] = {}
    edits: dict[tuple[int, str | None], Command] = {}
    for command in commands:
        for item in command.items:
            if command.verb == "assign" and command.vendor:
                earlier = vendors.setdefault(item, command)
                if earlier.vendor and earlier.vendor.lower() != command.vendor.lower():
                    found.append(
                        CommandError(
                            command.line,
                            command.source,
                            f"line {command.line}: item {item} is assigned to both "
                            f"'{earlier.vendor}' (line {earlier.line}) and "
                            f"'{command.vendor}'; keep one",
                        )
                    )
            if command.verb == "edit" and command.text:
                earlier = edits.setdefault((item, command.field), command)
                if earlier is not command and earlier.text != command.text:
                    found.append(
                        CommandError(
                            command.line,
                            command.source,
                            f"line {command.line}: item {item} is edited twice "
                            f"(lines {earlier.line} and {command.line}); keep one edit",
                        )
                    )
    return found


def _unique(errors: Sequence[CommandError]) -> list[CommandError]:
    seen: set[tuple[int, str]] = set()
    unique: list[CommandError] = []
    for error in errors:
        key = (error.line, error.message)
        if key not in seen:
            seen.add(key)
            unique.append(error)
    return unique


def _wo_number(wo_id: str) -> int | None:
    match = re.search(r"\d+", wo_id)
    return int(match.group(0)) if match else None


def _canonical_wo(wo_id: str) -> str:
    number = _wo_number(wo_id)
    return f"WO-{number}" if number is not None else wo_id


def _digest_range(count: int) -> str:
    if count == 0:
        return "the digest has no items"
    if count == 1:
        return "it has only item 1"
    return f"items 1-{count}"
