"""Recognising machine mail: delivery failure reports (bounces) and automatic replies.

This is step 3 of the pipeline.  Automated mail is recorded on a thread's history but
never answered and never drafted from, so the two errors cost very different things:

* flagging a person's mail as automated silently drops a homeowner's request or a
  vendor's answer;
* missing a machine mail makes the daemon answer an out-of-office reply (a mail loop)
  or draft a work order from a bounce.

Both detectors therefore trust *structure* first (RFC 3464 delivery reports, RFC 3834
``Auto-Submitted``, ``Precedence``, list headers) and only count *wording* (subjects and
the fixed texts that mail servers write) when it is anchored where software puts it and,
for bounces, backed by a second piece of evidence.  ``X-Auto-Response-Suppress`` is never
evidence: Outlook sets it on ordinary mail written by people.

Everything here is pure: it reads a :class:`~warrantyd.parsers.message.ParsedMessage`
and, for bounces, optionally the raw bytes (to see the MIME parts of a report that the
flattened view does not keep).
"""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from email.message import Message

from warrantyd.parsers.html import html_to_text
from warrantyd.parsers.message import ParsedMessage

__all__ = ["AutoReply", "Bounce", "detect_auto_reply", "detect_bounce"]


@dataclass(frozen=True)
class Bounce:
    """A delivery failure or delay report about mail we sent."""

    reason: str
    """Why we think so, e.g. ``"multipart/report; report-type=delivery-status"``."""
    permanent: bool
    """True for a failure (5.x.x); False for a delay warning or a transient failure (4.x.x)."""
    failed_recipients: tuple[str, ...]
    """Lower-cased addresses the report says could not be reached (may be empty)."""
    status_codes: tuple[str, ...]
    """RFC 3463 enhanced status codes found in the report, e.g. ``("5.1.1",)``."""
    original_message_id: str | None
    """Message-ID (no brackets) of the mail that bounced, to link it to our outbound mail."""


@dataclass(frozen=True)
class AutoReply:
    """A mail written by software rather than a person (vacation notice, list, bulk...)."""

    reason: str
    """Why we think so, e.g. ``"Auto-Submitted: auto-replied"`` or ``"out-of-office subject"``."""
    kind: str = "auto-generated"
    """``auto-replied`` (a responder answering us), ``auto-generated``, ``list`` or ``bulk``."""


# --------------------------------------------------------------------------------------------
# Bounces
# --------------------------------------------------------------------------------------------

_DSN_TYPES = frozenset({"message/delivery-status", "message/global-delivery-status"})
_RETURNED_MESSAGE_TYPES = frozenset({"message/rfc822", "message/global"})
_RETURNED_HEADER_TYPES = frozenset(
    {"text/rfc822-headers", "message/rfc822-headers", "message/global-headers"}
)
_SUCCESS_ACTIONS = frozenset({"delivered", "relayed", "expanded"})
_DSN_ACTIONS = _SUCCESS_ACTIONS | {"failed", "delayed"}

_MTA_LOCALPARTS = re.compile(r"^(mailer[-_]?daemon|postmaster)$", re.IGNORECASE)
_MAILER_DAEMON = re.compile(r"mailer[-_ ]?daemon", re.IGNORECASE)
_MTA_DISPLAY_NAMES = re.compile(
    r"^(mail delivery (sub)?system|mail administrator|mail system|internet mail delivery)$",
    re.IGNORECASE,
)

# A subject that a mail server writes on a report, anchored at the start so that a person's
# "Fwd: Undeliverable: ..." or "Re: mail delivery failed?" never counts.
_BOUNCE_SUBJECT = re.compile(
    r"^\s*(\[[^\]]{1,40}\]\s*)?("
    r"undelivered mail|undeliverable|undelivered message|non[- ]?deliverable"
    r"|delivery status notification|delivery notification:\s*delivery (has )?(failed|delayed)"
    r"|delivery (has )?fail(ed|ure)|mail delivery (failed|failure|problem|delayed)"
    r"|message delivery (failure|failed|delayed)|failed delivery|returned mail"
    r"|mail system error|failure notice|non[- ]?delivery (report|notification)"
    r"|warning: could not send message|delayed mail|delivery delayed"
    r"|warning: message .{0,40} delayed"
    # Exchange and Gmail in other languages
    r"|unzustellbar|nicht zustellbar|benachrichtigung zum übermittlungsstatus"
    r"|non remis|notification d'état de remise|onbestelbaar|no se puede entregar"
    r"|notificación de estado de entrega|não é possível entregar|impossibile recapitare"
    r"|olevererbart|nie można dostarczyć|не доставлено"
    r")",
    re.IGNORECASE,
)

# Fixed texts of the common mail servers' reports.
_BOUNCE_BODY = re.compile(
    r"this is the mail system at host"  # Postfix
    r"|i'm sorry to have to inform you that your message could\s+not"  # Postfix
    r"|this message was created automatically by mail delivery software"  # Exim
    r"|could not be delivered to one or more of\s+its\s+recipients"  # Exim
    r"|has not yet been delivered to one or more of\s+its\s+recipients"  # Exim delay
    r"|this is the qmail-send program at"  # qmail
    r"|i'm afraid i wasn't able to deliver your message"  # qmail
    r"|delivery has failed to these recipients or groups"  # Exchange / Outlook
    r"|delivery is delayed to these recipients or groups"  # Exchange delay
    r"|your message to \S+ couldn't be delivered"  # Office 365
    r"|your message couldn't be delivered"
    r"|delivery to the following recipients? (failed|has been delayed)"  # Exchange, Gmail
    r"|the following message to <?\S+?>? was undeliverable"
    r"|address not found\s+your message wasn't delivered"  # Gmail
    r"|your message wasn't delivered to"  # Gmail
    r"|delivery incomplete\s+there was a temporary problem delivering"  # Gmail delay
    r"|there was a temporary problem delivering your message"
    r"|the following addresses had permanent fatal errors"  # sendmail
    r"|-{3,}\s*transcript of session follows\s*-{3,}"  # sendmail
    r"|your message (could not|cannot|can ?not) be delivered"
    r"|your message has encountered delivery problems"
    r"|did not reach some or all of the intended recipients"  # older Exchange
    r"|the following recipient\(s\) (cannot|could not) be reached"
    r"|message could not be delivered to the following recipients?"
    r"|this is a delivery status notification",
    re.IGNORECASE,
)

_DELAY_TEXT = re.compile(
    r"this is a warning only|has not yet been delivered|delivery (is |has been )?delayed"
    r"|delayed mail|still being retried|will (continue to )?(retry|try)"
    r"|temporary problem delivering|delivery incomplete|\(delay\)",
    re.IGNORECASE,
)

_FORWARD_SUBJECT = re.compile(r"^\s*(fwd?|tr|wg|rv|enc|doorst|vs|vb|i)\s*:", re.IGNORECASE)
_REPLY_TYPE_AUTO = re.compile(r"^\s*auto-replied", re.IGNORECASE)

_VERP_LOCALPART = re.compile(r"(^|[+\-=._])(verp|bounces?)([+\-=._]|$)", re.IGNORECASE)

_STATUS_CODE = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_SMTP_REPLY_WITH_CODE = re.compile(r"(?:\b[45]\d\d[ -]+#?|#)([45]\.\d{1,3}\.\d{1,3})\b")
_DSN_FIELD_LINE = re.compile(r"^([A-Za-z][A-Za-z0-9-]*)[ \t]*:[ \t]*(.*)$")
_DSN_RECIPIENT_FIELDS = frozenset({"final-recipient", "original-recipient", "action", "status"})
_MESSAGE_ID_LINE = re.compile(r"^[ \t>]*message-id[ \t]*:[ \t]*<([^<>\s]+)>", re.I | re.M)

# Bounded repeats keep the scan linear on hostile text (a 100 kB "address" without a dot).
_ADDRESS = r"[^\s<>()\"',;:@]{1,64}@[^\s<>()\"',;:@]{1,253}\.[A-Za-z0-9-]{1,63}"
# Where the common servers name the addresses that failed, in their human-readable part.
_FAILED_RECIPIENT_TEXT = [
    re.compile(rf"^[ \t]*<({_ADDRESS})>", re.M),  # Postfix, qmail, sendmail
    re.compile(
        rf"^[ \t]*(?:recipient address|failed recipient)[ \t]*:[ \t]*<?({_ADDRESS})", re.I | re.M
    ),
    re.compile(rf"wasn't delivered to ({_ADDRESS}?)(?=[\s.]|$)", re.I),  # Gmail
    re.compile(rf"your message to ({_ADDRESS}) couldn't be delivered", re.I),  # Office 365
    re.compile(
        rf"(?:failed permanently|recipients or groups|delivery to the following recipients? "
        rf"failed|could not be delivered to one or more of\s+its\s+recipients\.[^\n]*\n)"
        rf"[:.]?\s*(?:[^\n]*\n)?[ \t]*<?({_ADDRESS}?)>?[ \t]*(?:\(|$)",
        re.I | re.M,
    ),  # Gmail "failed permanently:", Exchange list, Exim indented address
]


@dataclass
class _ReportParts:
    """What a report's MIME structure shows, gathered once for all the rules."""

    report_type: str | None
    """The ``report-type`` parameter when the message is multipart/report, else None."""
    dsn_texts: list[str]
    """The text of each top-level message/delivery-status part."""
    returned_headers: list[str]
    """The header block of each returned message (message/rfc822, text/rfc822-headers)."""
    body_text: str
    """The report's own text parts (not the returned message), for the wording rules."""


def detect_bounce(msg: ParsedMessage, raw: bytes | None = None) -> Bounce | None:
    """Return a :class:`Bounce` when ``msg`` is a delivery failure or delay report.

    The ``message/delivery-status`` part of a standard report lives only in the MIME
    tree: it is read from the tree :func:`~warrantyd.parsers.message.parse_message` kept
    (``msg.mime``), else from ``raw`` (the bytes ``msg`` was parsed from) when given;
    without either the failed recipients and status codes are read from the text alone.
    A success notification (every recipient ``delivered``/``relayed``/``expanded``) is
    not a bounce; :func:`detect_auto_reply` reports it as machine mail.
    """
    parts = _report_parts(msg, raw)
    blocks = _dsn_recipient_blocks(parts.dsn_texts)
    from_text_fields = False
    if not blocks and not _is_forward(msg):
        blocks = _dsn_recipient_blocks([parts.body_text], in_prose=True)
        from_text_fields = bool(blocks)
    actions = [b.get("action", "").split()[0].lower() for b in blocks if b.get("action")]
    if actions and all(action in _SUCCESS_ACTIONS for action in actions):
        return None

    reason = _bounce_reason(msg, parts, from_text_fields)
    if reason is None:
        return None

    problem_blocks = [
        b for b in blocks
        if not b.get("action") or b["action"].split()[0].lower() not in _SUCCESS_ACTIONS
    ]
    codes = _status_codes(problem_blocks, parts.body_text)
    delayed = bool(actions) and all(a == "delayed" for a in actions if a not in _SUCCESS_ACTIONS)
    if delayed:
        permanent = False
    elif any(code.startswith("5") for code in codes):
        permanent = True
    elif codes:
        permanent = False
    else:
        permanent = not (
            "delayed" in actions
            or _DELAY_TEXT.search(msg.subject)
            or _DELAY_TEXT.search(parts.body_text)
        )
    return Bounce(
        reason=reason,
        permanent=permanent,
        failed_recipients=_failed_recipients(msg, problem_blocks, parts.body_text),
        status_codes=codes,
        original_message_id=_original_message_id(msg, parts),
    )


def _bounce_reason(msg: ParsedMessage, parts: _ReportParts, from_text_fields: bool) -> str | None:
    """The strongest evidence that ``msg`` is a bounce, or None when there is not enough."""
    if parts.report_type == "delivery-status":
        return "multipart/report; report-type=delivery-status"
    if parts.dsn_texts:
        return "message/delivery-status part"
    failed_header = msg.header("X-Failed-Recipients")
    if failed_header:
        return f"X-Failed-Recipients: {failed_header.strip()}"
    if from_text_fields:
        return "delivery-status fields (Final-Recipient, Action, Status) in the body"

    forwarded = _is_forward(msg)
    subject_says = bool(_BOUNCE_SUBJECT.match(msg.subject))
    body_says = not forwarded and bool(_BOUNCE_BODY.search(parts.body_text))
    raw_from = msg.header("From") or ""
    from_local = (msg.from_addr or "").partition("@")[0]
    return_path = msg.return_path
    if (msg.from_addr is None or _MTA_LOCALPARTS.match(from_local)) and _MAILER_DAEMON.search(
        raw_from
    ):
        return "sender is MAILER-DAEMON"
    mta_sender = (
        bool(_MTA_LOCALPARTS.match(from_local))
        or bool(_MTA_DISPLAY_NAMES.match(msg.from_name.strip()))
        or return_path == ""
        or bool(return_path and _MAILER_DAEMON.search(return_path))
    )
    if mta_sender and (subject_says or body_says):
        what = "subject" if subject_says else "text"
        return f"report {what} from a mail server sender ({raw_from.strip() or '<>'})"
    if subject_says and body_says:
        return f"mail server report: subject {msg.subject[:60]!r} and report text"
    verp = _verp_recipient(msg)
    if verp and not _looks_auto_replied(msg):
        return f"sent to the VERP return address {verp}"
    return None


def _looks_auto_replied(msg: ParsedMessage) -> bool:
    """A vacation responder may answer the envelope sender: that is not a bounce."""
    auto_submitted = msg.header("Auto-Submitted") or ""
    return bool(_REPLY_TYPE_AUTO.match(auto_submitted) or _OOO_SUBJECT.match(msg.subject))


def _is_forward(msg: ParsedMessage) -> bool:
    return bool(_FORWARD_SUBJECT.match(msg.subject))


def _verp_recipient(msg: ParsedMessage) -> str | None:
    """A recipient address that encodes a bounce key (``list+verp-<key>@``, ``bounces+...@``).

    Only mail servers write to an envelope return address, so mail arriving there is a
    report about something we sent.
    """
    for address in (*msg.delivered_to, *msg.to):
        local = address.partition("@")[0]
        if _VERP_LOCALPART.search(local) and ("+" in local or "=" in local or "-" in local):
            return address
    return None


# --- reading the report's structure ---------------------------------------------------------


def _report_parts(msg: ParsedMessage, raw: bytes | None) -> _ReportParts:
    report_type = None
    if msg.content_type == "multipart/report":
        report_type = _content_type_param(msg.header("Content-Type") or "", "report-type")
        report_type = (report_type or "").lower() or None
    if msg.mime is not None or raw is not None:
        try:
            # The tree parse_message already built, when there is one: no second parse.
            root = (msg.mime if msg.mime is not None
                    else email.message_from_bytes(raw or b"", policy=email.policy.compat32))
            return _report_parts_from_tree(root, report_type)
        except Exception:  # the stdlib parser's accessors can raise on broken mail
            pass
    return _report_parts_from_view(msg, report_type)


def _report_parts_from_tree(root: Message, report_type: str | None) -> _ReportParts:
    dsn_texts: list[str] = []
    returned: list[str] = []
    body: list[str] = []
    for part in _outer_parts(root):
        ctype = part.get_content_type()
        if ctype in _DSN_TYPES:
            dsn_texts.append(_dsn_part_text(part))
        elif ctype in _RETURNED_MESSAGE_TYPES:
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                returned.append("".join(f"{k}: {v}\n" for k, v in inner[0].items()))
            elif isinstance(inner, str):
                returned.append(inner.split("\n\n", 1)[0])
        elif ctype in _RETURNED_HEADER_TYPES:
            returned.append(_decoded_text(part))
        elif ctype == "text/html":
            body.append(_html_text(_decoded_text(part)))
        elif part.get_content_maintype() in ("text", "multipart") or part is root:
            body.append(_decoded_text(part))
    return _ReportParts(report_type, dsn_texts, returned, "\n".join(body))


def _report_parts_from_view(msg: ParsedMessage, report_type: str | None) -> _ReportParts:
    """The same facts from the flattened view, for callers without the raw bytes."""
    dsn_texts: list[str] = []
    returned: list[str] = []
    body = [msg.text]
    for attachment in msg.attachments:
        text = attachment.content.decode("utf-8", errors="replace")
        if attachment.content_type in _DSN_TYPES:
            dsn_texts.append(text)
        elif attachment.content_type in _RETURNED_HEADER_TYPES | _RETURNED_MESSAGE_TYPES:
            returned.append(text.split("\n\n", 1)[0])
        elif attachment.content_type.startswith(("text/", "multipart/")):
            body.append(text)
    return _ReportParts(report_type, dsn_texts, returned, "\n".join(body))


def _outer_parts(part: Message) -> Iterator[Message]:
    """The leaf parts of a report, without looking inside returned or forwarded messages.

    A person forwarding a bounce as an attachment wrote a mail *about* a bounce; only
    reports at the top level (or nested in plain multiparts) are reports to us.
    """
    ctype = part.get_content_type()
    payload = part.get_payload()
    if (
        part.get_content_maintype() == "multipart"
        and isinstance(payload, list)
        and ctype not in _DSN_TYPES
    ):
        for child in payload:
            if isinstance(child, Message):
                yield from _outer_parts(child)
        return
    yield part


def _dsn_part_text(part: Message) -> str:
    """The delivery-status fields as text, whichever way the parser stored the part."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return "\n\n".join(
            "".join(f"{k}: {v}\n" for k, v in block.items())
            for block in payload
            if isinstance(block, Message)
        )
    return _decoded_text(part)


def _decoded_text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        raw_payload = part.get_payload()
        return raw_payload if isinstance(raw_payload, str) else ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:
        return payload.decode("utf-8", errors="replace")


def _html_text(html: str) -> str:
    """Office 365 writes its report text in HTML only; the wording rules need the words."""
    try:
        return html_to_text(html)
    except Exception:  # a report we cannot render still has its other evidence
        return re.sub(r"<[^>]*>", " ", html)


def _content_type_param(value: str, name: str) -> str | None:
    match = re.search(rf";\s*{re.escape(name)}\s*=\s*\"?([^\";\s]+)", value, re.IGNORECASE)
    return match.group(1) if match else None


def _dsn_recipient_blocks(texts: Iterable[str], *, in_prose: bool = False) -> list[dict[str, str]]:
    """Per-recipient field blocks (RFC 3464 section 2.3) from delivery-status text.

    Blocks are separated by blank lines; a block counts when it names a recipient, or has
    an Action together with a Status, so that the per-message block (Reporting-MTA,
    Arrival-Date) is skipped.  ``in_prose`` is for fields found in a body rather than in a
    delivery-status part: a firewall notice also says "Status: ... Action: ...", so there
    a block must name a recipient and use an RFC 3464 action word.
    """
    blocks: list[dict[str, str]] = []
    for text in texts:
        for chunk in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n")):
            fields: dict[str, str] = {}
            last: str | None = None
            for line in chunk.split("\n"):
                if line[:1] in (" ", "\t") and last:
                    fields[last] += " " + line.strip()
                    continue
                match = _DSN_FIELD_LINE.match(line)
                last = None
                if match and match.group(1).lower() in _DSN_RECIPIENT_FIELDS | {"diagnostic-code"}:
                    last = match.group(1).lower()
                    fields.setdefault(last, match.group(2).strip())
            names_recipient = "final-recipient" in fields or "original-recipient" in fields
            if in_prose:
                action = fields.get("action", "").split(" ", 1)[0].lower()
                if names_recipient and action in _DSN_ACTIONS:
                    blocks.append(fields)
            elif names_recipient or ("action" in fields and "status" in fields):
                blocks.append(fields)
    return blocks


def _status_codes(blocks: list[dict[str, str]], body_text: str) -> tuple[str, ...]:
    found: list[str] = []
    for block in blocks:
        match = _STATUS_CODE.search(block.get("status", ""))
        if match:
            found.append(match.group(0))
    if not found:
        for block in blocks:
            found.extend(m.group(1) for m in _SMTP_REPLY_WITH_CODE.finditer(
                block.get("diagnostic-code", "")))
    if not found:
        found.extend(m.group(1) for m in _SMTP_REPLY_WITH_CODE.finditer(body_text))
    return tuple(dict.fromkeys(code for code in found if code[0] in "45"))


def _failed_recipients(
    msg: ParsedMessage, blocks: list[dict[str, str]], body_text: str
) -> tuple[str, ...]:
    found: list[str] = []
    for block in blocks:
        # Original-Recipient is the address as *we* wrote it; Final-Recipient may be an
        # alias the receiving side expanded it to.
        value = block.get("original-recipient") or block.get("final-recipient") or ""
        found.append(value.partition(";")[2] if ";" in value else value)
    for header in msg.header_all("X-Failed-Recipients"):
        found.extend(header.split(","))
    if not any(_clean_address(a) for a in found):
        for pattern in _FAILED_RECIPIENT_TEXT:
            found.extend(m.group(1) for m in pattern.finditer(body_text))
    cleaned = (_clean_address(a) for a in found)
    return tuple(dict.fromkeys(a for a in cleaned if a))


def _clean_address(value: str) -> str | None:
    address = value.strip().strip("<>").strip().rstrip(".").lower()
    if address.startswith("mailto:"):
        address = address[7:]
    if "@" not in address or " " in address or address.startswith("@"):
        return None
    return address


def _original_message_id(msg: ParsedMessage, parts: _ReportParts) -> str | None:
    """The Message-ID of the mail that bounced, from the returned copy, else the report text.

    Exchange reports also name it in In-Reply-To.
    """
    for text in (*parts.returned_headers, parts.body_text):
        for match in _MESSAGE_ID_LINE.finditer(text):
            if match.group(1) != msg.message_id:
                return match.group(1)
    return msg.in_reply_to[0] if msg.in_reply_to else None


# --------------------------------------------------------------------------------------------
# Automatic replies and other machine mail
# --------------------------------------------------------------------------------------------

_AUTORESPONDER_HEADERS = (
    "X-Autoreply",
    "X-Autorespond",
    "X-Auto-Reply",
    "X-Autoresponder",
    "X-Autoreply-From",
    "X-Mail-Autoreply",
    "X-Autogenerated",
)
_FALSE_VALUES = frozenset({"no", "false", "0", "off"})
_PRECEDENCE_KINDS = {"bulk": "bulk", "junk": "bulk", "list": "list", "auto_reply": "auto-replied"}
_LIST_HEADERS = ("List-Id", "List-Unsubscribe", "List-Post")
_NO_REPLY_LOCALPART = re.compile(
    r"^(no[-_.]?reply|do[-_.]?not[-_.]?reply|dont[-_.]?reply)([-_.+].*)?$", re.IGNORECASE
)

# Subjects that responders put in front of the original subject, in the languages their
# clients ship.  Each must be followed by a colon or a dash, or be the whole subject, so
# that "Automatic garage door" or "Out of office next week?" written by a person pass.
_OOO_PHRASES = (
    r"auto[- ]?reply|auto[- ]?response|auto[- ]?responder|automatic (reply|response)"
    r"|automated (reply|response)|out of (the )?office( auto[- ]?reply| reply| notice)?"
    r"|(vacation|holiday) (auto[- ]?)?(reply|response|notice|message)"
    r"|abwesenheitsnotiz|automatische antwort|abwesend|abwesenheit"
    r"|r[ée]ponse automatique|absence du bureau|message d'absence|absent(e)? du bureau"
    r"|respuesta autom[áa]tica|fuera de (la )?oficina|ausente"
    r"|afwezig|automatisch antwoord|niet aanwezig"
    r"|resposta autom[áa]tica|aus[êe]ncia tempor[áa]ria|fora do escrit[óo]rio"
    r"|risposta automatica|fuori sede|fuori ufficio|non al computer"
    r"|autosvar|automatisk svar|fr[åa]nvaro|frav[æa]r(ende)?|poissa|automaattinen vastaus"
    r"|odpowied[źz] automatyczna|automatyczna odpowied[źz]|poza biurem|nieobecno[śs][ćc]"
    r"|автоответ|автоматический ответ|вне офиса|автовідповідь"
    r"|automatick[áa] odpov[ěe][ďd]|automatikus v[áa]lasz|otomatik (yan[ıi]t|cevap)"
    r"|αυτόματη απάντηση|自动回复|自動回覆|自動回复|自動応答|自動返信"
)
_OOO_SUBJECT = re.compile(
    rf"^\s*(\[[^\]]{{1,30}}\]\s*)?(auto\s*[:：]|({_OOO_PHRASES})\s*([:：]|-\s|$))",
    re.IGNORECASE,
)
_AUTO_TAG_SUBJECT = re.compile(
    r"^\s*(\[[^\]]{1,30}\]\s*)?\[(auto[- ]?generated|auto[- ]?reply|autoreply"
    r"|auto[- ]?response|automatic reply|out of office)\]",
    re.IGNORECASE,
)


def detect_auto_reply(
    msg: ParsedMessage, *, own_list_domains: Iterable[str] = ()
) -> AutoReply | None:
    """Return an :class:`AutoReply` when ``msg`` was sent by software, not by a person.

    Run :func:`detect_bounce` first: bounces carry several of the same marks.
    ``own_list_domains`` names domains whose mailing lists or groups relay people's mail
    into the mailbox (e.g. a company Google Group in front of the warranty address); the
    list headers and ``Precedence: list/bulk`` those lists add are then not evidence.
    """
    own = tuple(d.lower().lstrip("@.") for d in own_list_domains)

    auto_submitted = msg.header("Auto-Submitted")
    if auto_submitted is not None:
        keyword = re.split(r"[\s;(]", auto_submitted.strip(), maxsplit=1)[0].lower()
        if keyword and keyword != "no":
            kind = "auto-replied" if keyword == "auto-replied" else "auto-generated"
            return AutoReply(f"Auto-Submitted: {auto_submitted.strip()}", kind)

    for name in _AUTORESPONDER_HEADERS:
        value = msg.header(name)
        if value is not None and value.strip().lower() not in _FALSE_VALUES:
            return AutoReply(f"{name}: {value.strip()}".rstrip(": "), "auto-replied")

    if _OOO_SUBJECT.match(msg.subject) or _AUTO_TAG_SUBJECT.match(msg.subject):
        return AutoReply(f"out-of-office subject: {msg.subject[:80]}", "auto-replied")

    via_own_list = bool(own) and _sent_via_own_list(msg, own)
    for header in ("Precedence", "X-Precedence"):
        for value in msg.header_all(header):
            keyword = value.strip().lower()
            kind = _PRECEDENCE_KINDS.get(keyword)
            if kind and not (via_own_list and kind in ("list", "bulk")):
                return AutoReply(f"{header}: {value.strip()}", kind)

    if not via_own_list:
        for name in _LIST_HEADERS:
            value = msg.header(name)
            if value is not None:
                return AutoReply(f"{name}: {value.strip()[:80]}", "list")

    if msg.content_type == "multipart/report":
        report_type = _content_type_param(msg.header("Content-Type") or "", "report-type")
        return AutoReply(f"multipart/report; report-type={report_type or '?'}")

    if msg.return_path == "":
        return AutoReply("null Return-Path <>")

    local = (msg.from_addr or "").partition("@")[0]
    no_reply = bool(_NO_REPLY_LOCALPART.match(local) or _MTA_LOCALPARTS.match(local))
    if no_reply and not _replies_go_to_a_person(msg):
        return AutoReply(f"sender address {msg.from_addr} does not take replies")
    return None


def _replies_go_to_a_person(msg: ParsedMessage) -> bool:
    """A web form relays a person's words from ``no-reply@`` with Reply-To set to them."""
    return any(
        not _NO_REPLY_LOCALPART.match(address.partition("@")[0])
        and not _MTA_LOCALPARTS.match(address.partition("@")[0])
        for address in msg.reply_to
    )


def _sent_via_own_list(msg: ParsedMessage, own_domains: tuple[str, ...]) -> bool:
    """True when the List-Id or List-Post header names one of our own domains."""
    candidates: list[str] = []
    list_id = msg.header("List-Id") or ""
    match = re.search(r"<([^<>]+)>", list_id)
    candidates.append((match.group(1) if match else list_id).strip().lower())
    list_post = msg.header("List-Post") or ""
    match = re.search(r"mailto:[^@>\s]+@([^>\s?]+)", list_post, re.IGNORECASE)
    if match:
        candidates.append(match.group(1).lower())
    return any(
        c == domain or c.endswith("." + domain)
        for c in candidates
        if c
        for domain in own_domains
    )
