"""Reply trimming: separate what the author wrote in this mail from what it carries along.

A reply carries the quoted history of its thread, an attribution line ("On ... wrote:"),
a signature and the footer a mail client adds ("Sent from my iPhone").  Commands, schedule
dates and new issues must be read only from the author's own text, so this module splits
every body into :attr:`Reply.new_text` and :attr:`Reply.quoted_text`.

The scan is line based and linear: every regular expression here is applied to one line
(or a join of at most three short lines) and has no nested quantifiers, so a 1 MB quote or a
pathological body cannot make it backtrack.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from warrantyd.parsers.message import ParsedMessage


@dataclass(frozen=True)
class Reply:
    """The two halves of one mail body."""

    new_text: str
    """What the author wrote in this mail, signature and quote removed.

    Quoted lines (``> ...``) that the author answered inline stay here, in order, so
    that the answers keep their context; :attr:`authored_text` drops them."""
    quoted_text: str
    """What was removed: quoted history, attribution lines, signature, client footers."""
    below_header: bool = False
    """Nothing was typed above a reply header block, forward marker or unquoted attribution,
    so :attr:`new_text` is what stands below it: a forward without comment, or an answer
    written under an unquoted original (the two cannot be told apart).  Kept, because a
    forwarded problem report is still the report."""

    @property
    def authored_text(self) -> str:
        """:attr:`new_text` without ``>`` quoted lines: only lines the author typed."""
        kept = [line for line in self.new_text.split("\n") if not _is_quote_line(line)]
        return _strip_blank_edges("\n".join(kept))

    @property
    def above_quote(self) -> str:
        """What the author typed above any quoted history: :attr:`new_text` up to its first
        ``>`` line, and nothing when it is :attr:`below_header`.

        For readers that act only on words the author certainly typed: a staff command
        written inside the quoted digest, or an example command in a digest forwarded
        back without comment, is not a command."""
        if self.below_header:
            return ""
        lines = self.new_text.split("\n")
        end = next((i for i, line in enumerate(lines) if _is_quote_line(line)), len(lines))
        return _strip_blank_edges("\n".join(lines[:end]))


def split_reply(text: str) -> Reply:
    """Split a plain-text body into new text and quoted text.

    The rules, in the order a reader applies them:

    * the first attribution line ("On ... wrote:"), reply header block ("From: / Sent: /
      To:"), separator ("-----Original Message-----") or "reply above this line" marker
      that is not itself quoted starts the quoted history; everything from there on is
      quoted (top-posting);
    * except when the author answered below or between ``>`` quoted lines: then the
      attribution line goes, the answers stay, and quotes between answers stay as their
      context; a quote that only precedes a bottom-posted answer goes;
    * a marker with nothing written above it (a forward without comment, an answer that
      starts below the attribution) is skipped so the text after it stays;
    * then the trailing ``>`` quote, the ``-- `` signature and the client footers
      ("Sent from my iPhone") at the end are removed.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kept: list[str] = []
    removed: list[str] = []
    below_header = False
    i = 0
    while True:
        marker = _find_marker(lines, i)
        if marker is None:
            kept.extend(lines[i:])
            break
        start, span, kind = marker
        before = lines[i:start]
        nothing_above = not _has_text(kept) and not _has_text(before)
        after = start + span
        if kind == "attribution":
            quote_at = _next_text_line(lines, after)
            if quote_at is not None and _is_quote_line(lines[quote_at]):
                quote_end = _end_of_quote_block(lines, quote_at)
                answers = _answer_blocks(lines, quote_end)
                if answers == 0:
                    kept.extend(before)
                    removed.extend(lines[start:])
                    break
                kept.extend(before)
                removed.extend(lines[start:after])
                if nothing_above and answers == 1:
                    removed.extend(lines[after:quote_end])  # bottom-posted answer
                else:
                    kept.extend(lines[after:quote_end])  # inline answers keep context
                i = quote_end
                continue
            if nothing_above:
                removed.extend(lines[start:after])
                below_header = True
                i = after
                continue
        elif kind == "header" and nothing_above:
            header_end = _end_of_header_block(lines, after)
            removed.extend(before)
            removed.extend(lines[start:header_end])
            below_header = True
            i = header_end
            continue
        start = _back_over_rules(lines, start, i)
        kept.extend(lines[i:start])
        removed.extend(lines[start:])
        break
    body, trailing = _trim_end(kept)
    new_text = _strip_blank_edges("\n".join(body))
    quoted_text = _strip_blank_edges("\n".join([*trailing, *removed]))
    return Reply(new_text=new_text, quoted_text=quoted_text, below_header=below_header)


def extract_reply(msg: ParsedMessage) -> Reply:
    """Trim the reply text of a parsed mail.

    text/plain is preferred because clients put the same quote markers there; an
    HTML-only mail is converted to text, with the quote containers the clients use
    (Gmail's ``gmail_quote``, ``blockquote``, Outlook's reply header block) removed
    structurally before the plain-text rules run.
    """
    if msg.html and (msg.text_from_html or not msg.text.strip()):
        from warrantyd.parsers.html import split_html_reply

        new_html_text, quoted_html_text = split_html_reply(msg.html)
        reply = split_reply(new_html_text)
        quoted = "\n\n".join(t for t in (reply.quoted_text, quoted_html_text) if t.strip())
        return Reply(
            new_text=reply.new_text,
            quoted_text=_strip_blank_edges(quoted),
            below_header=reply.below_header,
        )
    return split_reply(msg.text)


# --- markers ---------------------------------------------------------------------------

_MAX_MARKER_LINE = 300
"""Longer lines are never attribution or header lines; skipping them bounds regex work."""
_MAX_ATTRIBUTION = 400
_MAX_ATTRIBUTION_LINES = 6

_WROTE_WORDS = (
    r"wrote|writes|schrieb|schreef|geschreven|a\s+écrit|a\s+ecrit|escribió|escribio"
    r"|ha\s+scritto|scrisse|napisał|napisała|napisal|napisał\(a\)|написал|написала"
    r"|написал\(а\)|написав|написала|писал|пише|skrev|escreveu|kirjoitti|írta|yazdı"
    r"|napsal|napísal|scrie|έγραψε|כתב|كتب"
)
_WROTE_RE = re.compile(
    rf"(?:^|[\s,>)\]\"'])(?:{_WROTE_WORDS})(?=[\s:：,]|$)|写道|寫道|寫到|寫了", re.IGNORECASE
)
_ENDS_WITH_COLON_RE = re.compile(r"[:：]\s*$")
_INTRO_RE = re.compile(
    r"^(?:on|am|op|le|el|il|em|den|på|w\s+dniu|dnia|dne|в|у|citando|quoting|\d)\b",
    re.IGNORECASE,
)
_EVIDENCE_RE = re.compile(r"\d|@")
"""An attribution names a date or an address; "I wrote this:" names neither."""
_DATE_LEAD_RE = re.compile(r"^(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4})\b")
_TIME_RE = re.compile(r"\b\d{1,2}:\d{2}\b")
_ADDRESS_OR_ZONE_RE = re.compile(r"@|\bGMT|\bUTC|<", re.IGNORECASE)

_SEPARATOR_RE = re.compile(r"^[-=_*~]{3,}\s*[^-=_*~\s][^\n]{0,80}?[-=_*~]{3,}$")
_RULE_RE = re.compile(r"^[-=_*~#+]{3,}$")
_UNDERSCORE_RULE_RE = re.compile(r"^_{10,}$")
_FORWARD_INTRO_RE = re.compile(
    r"^(?:begin\s+forwarded\s+message|anfang\s+der\s+weitergeleiteten\s+nachricht"
    r"|début\s+du\s+message\s+réexpédié|inicio\s+del\s+mensaje\s+reenviado"
    r"|original\s+message|forwarded\s+message)\s*:?$",
    re.IGNORECASE,
)
_REPLY_ABOVE_RE = re.compile(
    r"(?:reply|respond|write|type)\w*\s+(?:\w+\s+){0,3}above\s+this\s+line", re.IGNORECASE
)

_HEADER_FROM = (
    r"from|von|de|van|da|od|от|від|från|fra|frá|lähettäjä|feladó|kimden|发件人|發件人|寄件者"
    r"|差出人|remetente|expéditeur|afzender|nadawca|mittente"
)
_HEADER_OTHER = (
    r"sent|date|to|cc|subject|reply-to|gesendet|datum|an|betreff|envoyé|envoye|à|a|objet"
    r"|enviado|enviada|fecha|para|asunto|inviato|oggetto|data|verzonden|aan|onderwerp"
    r"|wysłano|wysłane|temat|do|отправлено|дата|кому|тема|надіслано|skickat|till|ämne"
    r"|sendt|til|emne|assunto|lähetetty|vastaanottaja|aihe|发送时间|收件人|主题|日期|傳送時間"
    r"|主旨|送信日時|件名|收件者|cc|kopie|copie"
)
_HEADER_FROM_RE = re.compile(rf"^[>*\s]*(?:{_HEADER_FROM})\s*\**\s*[:：]", re.IGNORECASE)
_HEADER_OTHER_RE = re.compile(rf"^[>*\s]*(?:{_HEADER_OTHER})\s*\**\s*[:：]", re.IGNORECASE)
_ANY_HEADER_RE = re.compile(r"^[>*\s]*[^\W\d][\w -]{0,30}?\**\s*[:：]", re.UNICODE)

_QUOTE_LINE_RE = re.compile(r"^\s*[A-Za-z]{0,3}>")


def _is_quote_line(line: str) -> bool:
    return bool(_QUOTE_LINE_RE.match(line))


def _has_text(lines: list[str]) -> bool:
    return any(line.strip() for line in lines)


def _strip_blank_edges(text: str) -> str:
    """Drop leading and trailing blank lines and trailing spaces, keep inner layout."""
    lines = [line.rstrip() for line in text.split("\n")]
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines)


def _next_text_line(lines: list[str], start: int) -> int | None:
    for j in range(start, len(lines)):
        if lines[j].strip():
            return j
    return None


def _attribution_span(lines: list[str], i: int) -> int:
    """If an attribution ("On <date>, <name> wrote:") starts at ``i``, its line count.

    Clients wrap long attributions, sometimes with blank lines between the pieces
    (``<`` and the address on lines of their own), so up to six lines are joined while
    each stays short; a wrapped attribution must start like one ("On", a date).
    """
    first = lines[i].strip()
    if not first or len(first) > _MAX_MARKER_LINE:
        return 0
    pieces: list[str] = []
    length = 0
    for span in range(1, _MAX_ATTRIBUTION_LINES + 1):
        if i + span - 1 >= len(lines):
            break
        piece = lines[i + span - 1].strip()
        if span > 1 and len(piece) > _MAX_MARKER_LINE:
            break
        if not piece:
            if not _INTRO_RE.match(first):
                break
            continue
        if span > 1 and _is_quote_line(piece) and not piece.lstrip("> ").startswith(
            ("wrote", "schrieb", "a écrit")
        ):
            pieces.append(piece.lstrip("> "))
        else:
            pieces.append(piece)
        length += len(piece) + 1
        if length > _MAX_ATTRIBUTION:
            break
        if span == 2 and not _may_start_wrapped_attribution(first):
            break
        joined = " ".join(pieces)
        if _looks_like_attribution(joined, wrapped=span > 1):
            return span
    return 0


_OPEN_ADDRESS_RE = re.compile(r"(?:<[^>\s]*|[<>])$")


def _may_start_wrapped_attribution(first: str) -> bool:
    """Whether a line can be the first of an attribution that wraps onto the next."""
    return bool(
        _INTRO_RE.match(first)
        or _DATE_LEAD_RE.match(first)
        or _WROTE_RE.search(first)
        or _OPEN_ADDRESS_RE.search(first)
    )


def _looks_like_attribution(joined: str, wrapped: bool) -> bool:
    if _ENDS_WITH_COLON_RE.search(joined) and _WROTE_RE.search(joined):
        return bool(_INTRO_RE.match(joined) or _EVIDENCE_RE.search(joined))
    if _DATE_LEAD_RE.match(joined) and _TIME_RE.search(joined):
        # Gmail in some locales: "2016-03-03 17:21 GMT+01:00 Name <addr>:"
        return bool(_ENDS_WITH_COLON_RE.search(joined) or _ADDRESS_OR_ZONE_RE.search(joined))
    return not wrapped and bool(_DATE_LEAD_RE.match(joined)) and "@" in joined and (
        len(joined) < 120
    )


def _is_header_block_at(lines: list[str], i: int) -> bool:
    """Reply header lines ("From:", "Sent:", "To:", "Subject:") start at ``i``.

    At least three header lines among the next few, one of them naming the sender;
    clients put them in different orders (French Outlook starts with "Objet:").
    """
    line = lines[i]
    if len(line) > _MAX_MARKER_LINE:
        return False
    is_from = bool(_HEADER_FROM_RE.match(line))
    if not is_from and not _HEADER_OTHER_RE.match(line):
        return False
    count = 1
    for following in lines[i + 1 : i + 8]:
        if len(following) > _MAX_MARKER_LINE:
            break
        if _HEADER_FROM_RE.match(following):
            is_from = True
            count += 1
        elif _HEADER_OTHER_RE.match(following):
            count += 1
        if is_from and count >= 3:
            return True
    return False


def _header_follows(lines: list[str], i: int) -> bool:
    """The next non-blank line (within three) starts a reply header block."""
    for j in range(i, min(len(lines), i + 4)):
        if lines[j].strip():
            return bool(_HEADER_FROM_RE.match(lines[j]) or _HEADER_OTHER_RE.match(lines[j]))
    return False


def _find_marker(lines: list[str], start: int) -> tuple[int, int, str] | None:
    """The first unquoted start of quoted history at or after ``start``.

    Returns ``(index, line_count, kind)``; kind is ``attribution``, ``header`` (a
    separator or reply header block, which is followed by the quoted mail unquoted) or
    ``cut`` (a "reply above this line" marker).
    """
    for i in range(start, len(lines)):
        stripped = lines[i].strip()
        if not stripped or len(stripped) > _MAX_MARKER_LINE or _is_quote_line(stripped):
            continue
        if _SEPARATOR_RE.match(stripped) or _FORWARD_INTRO_RE.match(stripped):
            return i, 1, "header"
        if _UNDERSCORE_RULE_RE.match(stripped) and _header_follows(lines, i + 1):
            return i, 1, "header"
        if _is_header_block_at(lines, i):
            return i, 0, "header"
        if _REPLY_ABOVE_RE.search(stripped) and len(stripped) < 120:
            return i, 1, "cut"
        span = _attribution_span(lines, i)
        if span:
            return i, span, "attribution"
    return None


def _end_of_header_block(lines: list[str], start: int) -> int:
    """Index just past the header lines (and their wrapped continuations) at ``start``."""
    j = start
    while j < len(lines) and not lines[j].strip():
        j += 1
    seen_header = False
    while j < len(lines) and lines[j].strip():
        if _ANY_HEADER_RE.match(lines[j]):
            seen_header = True
        elif not seen_header:
            break
        j += 1
    return j


def _back_over_rules(lines: list[str], start: int, floor: int) -> int:
    """Move a cut up over the blank and ruler lines (``-----``) that introduce it."""
    while start > floor:
        previous = lines[start - 1].strip()
        if previous and not _RULE_RE.match(previous):
            break
        start -= 1
    return start


def _end_of_quote_block(lines: list[str], start: int) -> int:
    """Index just past the ``>`` lines (and blank lines among them) from ``start``."""
    j = start
    end = start
    while j < len(lines) and (_is_quote_line(lines[j]) or not lines[j].strip()):
        if lines[j].strip():
            end = j + 1
        j += 1
    return end


def _answer_blocks(lines: list[str], start: int) -> int:
    """How many blocks of the author's own text follow a quote block, before the next marker.

    Signatures, client footers and mailing-list footers are not answers.
    """
    marker = _find_marker(lines, start)
    stop = marker[0] if marker else len(lines)
    region = lines[start:stop]
    region, _ = _trim_end(region)
    blocks = 0
    in_text = False
    for line in region:
        if _is_quote_line(line):
            in_text = False
        elif line.strip() and not in_text:
            blocks += 1
            in_text = True
    return blocks


def _trim_end(lines: list[str]) -> tuple[list[str], list[str]]:
    """Remove, from the end, ``>`` quotes, signatures and client footers, in any order."""
    body = list(lines)
    removed: list[str] = []
    while True:
        body, quote = _drop_trailing_quotes(body)
        body, signature = _drop_signature(body)
        if not quote and not signature:
            return body, removed
        removed = [*signature, *quote, *removed]


def _drop_trailing_quotes(lines: list[str]) -> tuple[list[str], list[str]]:
    """Remove a block of ``>`` lines (and blanks) at the end; inline quotes stay."""
    end = len(lines)
    while end > 0 and (not lines[end - 1].strip() or _is_quote_line(lines[end - 1])):
        end -= 1
    if not any(_is_quote_line(line) for line in lines[end:]):
        return lines, []
    return lines[:end], lines[end:]


# --- signatures ----------------------------------------------------------------------

_SIG_DELIMITER_RE = re.compile(r"^(?:--|—|__)\s*$")
_MAX_FOOTER_LINE = 160
_SENT_RE = re.compile(
    r"^(?:sent|envoyé|envoye|enviado|enviada|inviato|verzonden|gesendet|skickat|sendt|wysłane"
    r"|wysłano|отправлено|надіслано|lähetetty|odesláno|poslano|trimis)\s+"
    r"(?:from|with|via|by|using|on|de|depuis|desde|do|da|dal|met|vanaf|van|von|mit|från|fra"
    r"|z|ze|с|з|із|iz|från|från)\b",
    re.IGNORECASE,
)
_FOOTER_START_RE = re.compile(
    r"^(?:get\s+\[?outlook\s+for|von\s+meinem|diese\s+nachricht\s+wurde\s+von"
    r"|envoyé\s+de\s+mon|enviado\s+desde\s+mi|enviado\s+do\s+meu|inviato\s+dal\s+mio"
    r"|verzonden\s+vanaf\s+mijn|skickat\s+från\s+min|sendt\s+fra\s+min|從我的|从我的"
    r"|发自我的|發自我的|来自我的|來自我的|iphoneから送信|enviado\s+con|sent\s+from\s+my)",
    re.IGNORECASE,
)
_DEVICE_RE = re.compile(
    r"iphone|ipad|ipod|android|mobile|phone|galaxy|blackberry|device|cell|outlook|mail"
    r"|samsung|htc|tablet|handy|mobilgerät|mobiltelefon|smartphone|pixel|nokia|huawei|xiaomi"
    r"|手机|手機|airmail|spark|windows",
    re.IGNORECASE,
)
_EXCUSE_RE = re.compile(r"excuse|typo|brevity|brief|autocorrect|spelling|short", re.IGNORECASE)
_URL_RE = re.compile(r"\(?<?https?://[^\s>)]*[>)]?")
_NAME_SIGNATURE_RE = re.compile(r"^(?:-|--)[^\W\d_][\w.'’-]*(?: [\w.'’-]+){0,3}$")
_INVISIBLE_MARKS = frozenset({"ᐧ", "\u200b", "\ufeff"})


def _is_device_footer(line: str) -> bool:
    """A line a mail client appends: "Sent from my iPhone", "Get Outlook for Android"."""
    stripped = line.strip()
    if not stripped or len(stripped) > _MAX_FOOTER_LINE:
        return False
    if stripped in _INVISIBLE_MARKS:
        return True
    bare = _URL_RE.sub(" ", stripped).strip(" ()<>*_[]").replace("[", "").replace("]", "")
    bare = " ".join(bare.split())
    if not bare:
        return False
    words = bare.split()
    if _SENT_RE.match(bare) or _FOOTER_START_RE.match(bare):
        clause, _, rest = bare.partition(",")
        if "." in clause.rstrip("."):
            clause, _, rest2 = clause.partition(". ")
            rest = f"{rest2} {rest}".strip()
        return len(clause.split()) <= 12 and (
            not rest.strip(" .!") or _EXCUSE_RE.search(rest) is not None
        )
    return len(words) <= 4 and "from" in (w.lower() for w in words) and bool(
        _DEVICE_RE.search(bare)
    )


def _drop_signature(lines: list[str]) -> tuple[list[str], list[str]]:
    """Remove a signature or client footers at the end.

    A signature starts at a ``-- `` delimiter line, at a long ``____`` rule (mailing-list
    footers), or is a lone "-Name" line after a blank line; a footer is one or more
    :func:`_is_device_footer` lines with nothing but blank lines after them.
    """
    for i, line in enumerate(lines):
        stripped = line.strip()
        if (_SIG_DELIMITER_RE.match(line) or _UNDERSCORE_RULE_RE.match(stripped)) and _has_text(
            lines[:i]
        ):
            return lines[:i], lines[i:]
    end = len(lines)
    while end > 0 and not lines[end - 1].strip():
        end -= 1
    start = end
    while start > 0 and (not lines[start - 1].strip() or _is_device_footer(lines[start - 1])):
        start -= 1
    while start < end and not lines[start].strip():
        start += 1
    if start < end:
        return lines[:start], lines[start:]
    last = lines[end - 1].strip() if end else ""
    if (
        end >= 3
        and _NAME_SIGNATURE_RE.match(last)
        and not lines[end - 2].strip()
        and _has_text(lines[: end - 2])
    ):
        return lines[: end - 1], lines[end - 1 :]
    return lines, []
