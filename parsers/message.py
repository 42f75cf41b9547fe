"""MIME bytes -> one normalized, immutable view of a mail.

Everything downstream (classification, trimming, command reading, drafting) works on
:class:`ParsedMessage`, never on raw MIME, so that every oddity of real-world mail is dealt
with in exactly one place.  :func:`parse_message` never raises: whatever it cannot read is
recorded in ``ParsedMessage.errors`` and the caller keeps the raw bytes.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import email
import email.errors
import email.header
import email.policy
import email.utils
import mimetypes
import quopri
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message

from warrantyd.parsers.html import html_to_text
from warrantyd.parsers.subjects import is_forward_subject, is_reply_subject


@dataclass(frozen=True)
class Attachment:
    """One non-body MIME part, decoded."""

    filename: str
    content_type: str
    content: bytes
    content_id: str | None = None
    inline: bool = False

    @property
    def size(self) -> int:
        return len(self.content)

    @property
    def is_image(self) -> bool:
        return self.content_type.startswith("image/")


@dataclass(frozen=True)
class ForwardedMessage:
    """A mail enclosed in this one: a ``message/rfc822`` part or an inline forward.

    Kept so a forward can be attributed to its original author later (a homeowner
    forwarding a neighbour's mail, a staff member forwarding a homeowner's)."""

    from_addr: str | None
    from_name: str
    subject: str
    date: datetime | None
    text: str
    inline: bool = False
    """True when found as a "Forwarded message" block in the body text, not as a part."""


@dataclass(frozen=True)
class ParsedMessage:
    """What warrantyd knows about one mail after parsing, before classification."""

    message_id: str | None
    """Without angle brackets, or None when the mail has none."""
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    subject: str
    from_addr: str | None
    """Lower-cased bare address of the author, None when unusable."""
    from_name: str
    reply_to: tuple[str, ...]
    to: tuple[str, ...]
    cc: tuple[str, ...]
    delivered_to: tuple[str, ...]
    """Envelope recipients as the receiving server recorded them (Delivered-To, X-Original-To)."""
    return_path: str | None
    """The Return-Path value without brackets; '' for the null sender <>; None when absent."""
    date: datetime | None
    """Timezone-aware Date header, or None."""
    headers: tuple[tuple[str, str], ...]
    """Every header in order, decoded to str, names as written."""
    content_type: str
    text: str
    """The body as plain text (from text/plain, or converted from HTML)."""
    html: str | None
    attachments: tuple[Attachment, ...]
    errors: tuple[str, ...] = field(default=())
    """What could not be read, in words an operator can act on; empty when all went well."""
    forwarded: tuple[ForwardedMessage, ...] = field(default=())
    """Enclosed messages, outermost first (message/rfc822 parts, then inline forwards)."""
    defects: tuple[str, ...] = field(default=())
    """Names of the MIME defects the stdlib parser recorded (e.g. StartBoundaryNotFoundDefect)."""
    text_from_html: bool = False
    """True when :attr:`text` was converted from HTML because the mail has no text/plain."""
    mime: Message | None = field(default=None, repr=False, compare=False)
    """The stdlib MIME tree this view was read from (``compat32``; treat it as read-only),
    for the few steps that need the structure itself — a bounce's delivery-status part —
    so that no one parses the same bytes twice."""

    def header(self, name: str) -> str | None:
        """The first header called ``name`` (case-insensitive), or None."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    def header_all(self, name: str) -> list[str]:
        """Every header called ``name`` (case-insensitive), top first."""
        wanted = name.lower()
        return [value for key, value in self.headers if key.lower() == wanted]

    @property
    def recipients(self) -> tuple[str, ...]:
        """Every address the mail was sent to: envelope first, then To and Cc."""
        seen: dict[str, None] = {}
        for addr in (*self.delivered_to, *self.to, *self.cc):
            seen.setdefault(addr, None)
        return tuple(seen)


def parse_message(raw: bytes) -> ParsedMessage:
    """Parse ``raw`` RFC 5322 bytes into a :class:`ParsedMessage`; never raises.

    The stdlib parser does the MIME work (it never raises on bad input, only its
    accessors do, so each accessor is guarded); charsets, body selection, format=flowed
    and attachments are handled here.  One parse per message: intake parses every mail.
    """
    errors: list[str] = []
    try:
        return _parse(raw, errors)
    except Exception as exc:  # a last guard: the caller keeps the raw bytes
        errors.append(f"message could not be parsed ({type(exc).__name__}: {exc}); "
                      "the raw message is kept for inspection")
        return _empty_message(errors)


def _empty_message(errors: list[str]) -> ParsedMessage:
    return ParsedMessage(
        message_id=None, in_reply_to=(), references=(), subject="", from_addr=None,
        from_name="", reply_to=(), to=(), cc=(), delivered_to=(), return_path=None,
        date=None, headers=(), content_type="text/plain", text="", html=None,
        attachments=(), errors=tuple(errors),
    )


_LEADING_BLANK_RE = re.compile(rb"\A(?:[ \t]*\r?\n)+")


def _parse(raw: bytes, errors: list[str]) -> ParsedMessage:
    if not isinstance(raw, bytes | bytearray | memoryview):
        raw = str(raw).encode("utf-8", "surrogateescape")
    raw = bytes(raw)
    if b"\0" in raw[:4096] and raw[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":
        errors.append("not an RFC 5322 message (an Outlook .msg file?); save it as .eml")
    # Some stores and tools write a blank line before the headers; a strict parser then
    # sees no headers at all.
    raw = _LEADING_BLANK_RE.sub(b"", raw, count=1)
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    defects = _defect_names(msg)
    headers = _headers(msg, errors)

    def first(name: str) -> str:
        wanted = name.lower()
        for key, value in headers:
            if key.lower() == wanted:
                return value
        return ""

    def every(name: str) -> list[str]:
        wanted = name.lower()
        return [value for key, value in headers if key.lower() == wanted]

    from_name, from_addr = _one_address(first("From"))
    date = _date(first("Date"), errors)
    return_path: str | None = None
    if any(key.lower() == "return-path" for key, _ in headers):
        return_path = first("Return-Path").strip().strip("<>").strip().lower()
    body = _Body(errors)
    try:
        body.walk(msg)
    except Exception as exc:
        errors.append(f"body could not be fully read ({type(exc).__name__}: {exc})")
    text = body.text()
    forwarded = [*body.forwarded, *_inline_forwards(text, is_forward_subject(first("Subject")),
                                                     is_reply_subject(first("Subject")))]
    try:
        content_type = msg.get_content_type()
    except Exception:
        content_type = "text/plain"
    return ParsedMessage(
        message_id=_msgid(first("Message-ID")),
        in_reply_to=tuple(_msgids(first("In-Reply-To"))),
        references=tuple(_msgids(" ".join(every("References")))),
        subject=" ".join(first("Subject").split()),
        from_addr=from_addr,
        from_name=from_name,
        reply_to=tuple(_addresses(every("Reply-To"))),
        to=tuple(_addresses(every("To"))),
        cc=tuple(_addresses(every("Cc"))),
        delivered_to=tuple(_addresses(every("Delivered-To") + every("X-Original-To"))),
        return_path=return_path,
        date=date,
        headers=headers,
        content_type=content_type,
        text=text,
        html=body.html(),
        attachments=tuple(body.attachments),
        errors=tuple(errors),
        forwarded=tuple(forwarded),
        defects=tuple(defects),
        text_from_html=body.text_from_html,
        mime=msg,
    )


def _defect_names(msg: Message) -> list[str]:
    names: list[str] = []
    try:
        for part in msg.walk():
            for defect in getattr(part, "defects", ()):
                name = type(defect).__name__
                if name not in names:
                    names.append(name)
    except Exception:
        pass
    return names


def _headers(msg: Message, errors: list[str]) -> tuple[tuple[str, str], ...]:
    found: list[tuple[str, str]] = []
    try:
        items = msg._headers  # raw (name, value) pairs, unaffected by policy folding
    except AttributeError:
        items = []
    for name, value in items:
        try:
            found.append((str(name).strip(), _header_str(value)))
        except Exception as exc:
            errors.append(f"unreadable {name} header: {exc}")
    return tuple(found)


def _date(value: str, errors: list[str]) -> datetime | None:
    if not value.strip():
        return None
    try:
        date = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        errors.append(f"unreadable Date header: {value!r}")
        return None
    if date.tzinfo is None:  # "-0000": UTC, local zone unknown (RFC 5322 3.3)
        date = date.replace(tzinfo=UTC)
    return date


# --- headers ----------------------------------------------------------------------------

_ENCODED_WORD_RE = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")


def _header_str(value: object) -> str:
    """One header value as text: RFC 2047 words decoded, raw 8-bit bytes read sensibly.

    Raw 8-bit header bytes arrive as surrogate escapes (or as a Header in the unknown-8bit
    charset); they are read as UTF-8 when valid, else as Windows-1252.
    """
    if isinstance(value, email.header.Header):
        chunks = email.header.decode_header(value)
    else:
        text = str(value)
        if any("\udc80" <= ch <= "\udcff" for ch in text):
            text = _decode_bytes(text.encode("ascii", "surrogateescape"), None)
        if "=?" not in text:
            return _unfold(text)
        try:
            chunks = email.header.decode_header(_space_adjacent_words(text))
        except Exception:
            return _unfold(text)
    parts: list[str] = []
    for chunk, charset in chunks:
        if isinstance(chunk, bytes):
            parts.append(_decode_bytes(chunk, charset))
        else:
            parts.append(chunk)
    return _unfold("".join(parts))


def _space_adjacent_words(text: str) -> str:
    """Encoded words glued to text ("foo=?utf-8?q?x?=") are not split by decode_header."""
    return _ENCODED_WORD_RE.sub(lambda m: f" {m.group(0)} ", text).strip() if re.search(
        r"[^\s]=\?|\?=[^\s]", text
    ) else text


def _unfold(text: str) -> str:
    return re.sub(r"\r?\n[ \t]*", " ", text).replace("\r", "").strip()


# --- charsets ---------------------------------------------------------------------------

_CHARSET_ALIASES = {
    "unicode-1-1-utf-7": "utf-7",
    "utf7": "utf-7",
    "x-unicode20utf8": "utf-8",
    "utf8": "utf-8",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "cp936": "gb18030",
    "big5": "big5hkscs",
    "x-x-big5": "big5hkscs",
    "ks_c_5601-1987": "cp949",
    "euc-kr": "cp949",
    "iso-8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "us-ascii": "cp1252",
    "ascii": "cp1252",
    "iso-8859-8-i": "iso-8859-8",
    "windows-874": "cp874",
    "x-mac-roman": "mac-roman",
    "shift-jis": "cp932",
    "shift_jis": "cp932",
    "x-sjis": "cp932",
    "unknown-8bit": "",
    "x-unknown": "",
    "unknown": "",
    "default": "",
    "charset": "",
}
"""Names mail uses for codecs Python knows by another name, or a superset that Windows
clients actually write (Windows-1252 for Latin-1, GB18030 for GB2312)."""

_ASCII_COMPATIBLE_SKIP = frozenset({"utf-7", "utf-16", "utf-16-le", "utf-16-be", "utf-32"})


def _codec_for(charset: str | None) -> str | None:
    if not charset:
        return None
    name = charset.strip().strip("\"'").lower()
    name = _CHARSET_ALIASES.get(name, name)
    if not name:
        return None
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def _decode_bytes(data: bytes, charset: str | None) -> str:
    """Decode body or header bytes, trusting the bytes over a wrong declaration.

    Non-ASCII bytes that are valid UTF-8 are almost never anything else, and mail often
    declares a charset it does not use (UTF-8 labelled Big5 or Latin-1).  Pure ASCII
    bytes follow the declared charset, which matters for 7-bit ones (UTF-7, ISO-2022-JP).
    """
    codec = _codec_for(charset)
    if codec in _ASCII_COMPATIBLE_SKIP or (codec and codec.startswith(("utf-16", "utf-32"))):
        try:
            return data.decode(codec)
        except UnicodeDecodeError:
            pass
    if not data.isascii():
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass
    for candidate in (codec, "cp1252"):
        if not candidate:
            continue
        try:
            return data.decode(candidate)
        except (LookupError, UnicodeDecodeError):
            continue
    return data.decode(codec or "cp1252", errors="replace")


# --- addresses and ids ------------------------------------------------------------------


def _one_address(value: str) -> tuple[str, str | None]:
    try:
        pairs = email.utils.getaddresses([value]) if value else []
    except Exception:
        pairs = []
    for name, addr in pairs:
        if "@" in addr:
            return name.strip(), addr.strip().lower()
    return "", None


def _addresses(values: list[str]) -> list[str]:
    found: list[str] = []
    try:
        pairs = email.utils.getaddresses(values)
    except Exception:
        return found
    for _, addr in pairs:
        addr = addr.strip().lower()
        if "@" in addr and addr not in found:
            found.append(addr)
    return found


def _msgid(value: str) -> str | None:
    ids = _msgids(value)
    return ids[0] if ids else (value.strip().strip("<>") or None)


def _msgids(value: str) -> list[str]:
    """Message-IDs in angle brackets, in order, without the brackets."""
    ids: list[str] = []
    for token in value.replace(">", "> ").split():
        token = token.strip()
        if token.startswith("<") and token.endswith(">") and len(token) > 2:
            ids.append(token[1:-1])
    return ids


# --- body -------------------------------------------------------------------------------

_MAX_DEPTH = 40
"""Deeper MIME nesting than any client writes is read no further (hostile input)."""


class _Body:
    """Collects the readable text, the HTML and the attachments of one MIME tree."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        self.plain: list[str] = []
        self.html_parts: list[str] = []
        self.attachments: list[Attachment] = []
        self.forwarded: list[ForwardedMessage] = []

    @property
    def text_from_html(self) -> bool:
        return bool(self.html_parts) and not any(t.strip() for t in self.plain)

    def text(self) -> str:
        if self.text_from_html:
            return html_to_text("\n".join(self.html_parts))
        parts = [t for t in self.plain if t.strip()]
        if len(parts) == 1:
            return parts[0]
        # Text parts split by an inline image (iPhone): one paragraph break where it was.
        return "\n\n".join(t.strip("\n") for t in parts)

    def html(self) -> str | None:
        return "\n".join(self.html_parts) if self.html_parts else None

    def walk(self, part: Message, depth: int = 0) -> None:
        if depth > _MAX_DEPTH:
            self.errors.append(f"MIME nesting deeper than {_MAX_DEPTH} levels was not read")
            return
        ctype = _content_type(part)
        if ctype == "message/rfc822" or (ctype.startswith("message/") and part.is_multipart()
                                         and ctype not in ("message/delivery-status",)):
            self._enclosed_message(part, ctype, depth)
            return
        if part.is_multipart():
            payload = part.get_payload()
            children = [c for c in payload if isinstance(c, Message)] if isinstance(
                payload, list) else []
            if ctype == "multipart/alternative":
                self._alternative(children, depth)
                return
            for child in children:
                self.walk(child, depth + 1)
            return
        self._leaf(part, ctype)

    def _alternative(self, children: list[Message], depth: int) -> None:
        """Read the plain version and the HTML version; attachments from any."""
        plain_before = len(self.plain)
        for child in children:
            self.walk(child, depth + 1)
        # Keep only the last plain rendering from this alternative group: clients put the
        # richest last, and several plain versions are duplicates of one another.
        if len(self.plain) - plain_before > 1:
            last = self.plain[-1]
            del self.plain[plain_before:]
            self.plain.append(last)

    def _leaf(self, part: Message, ctype: str) -> None:
        if ctype.startswith("multipart/"):
            # Declared multipart but no boundary found in the body: the body is the text.
            ctype = "text/plain"
        disposition = _disposition(part)
        filename = _filename(part)
        payload = _payload_bytes(part, ctype, self.errors)
        if payload is None:
            return
        if ctype in ("text/plain", "text/html", "text") and disposition != "attachment" and (
            not filename or (disposition == "inline" and ctype == "text/plain")
        ):
            text = _decode_bytes(payload, _charset(part)).replace("\r\n", "\n")
            if ctype == "text/html":
                self.html_parts.append(text)
            else:
                self.plain.append(_unflow(text, part) if _is_flowed(part) else text)
            return
        self.attachments.append(self._attachment(part, ctype, payload, filename, disposition))

    def _attachment(self, part: Message, ctype: str, payload: bytes, filename: str | None,
                    disposition: str) -> Attachment:
        cid = _content_id(part)
        if not filename:
            extension = mimetypes.guess_extension(ctype) or ".bin"
            stem = cid.split("@")[0] if cid else f"attachment-{len(self.attachments) + 1}"
            filename = stem if "." in stem else stem + extension
        return Attachment(
            filename=filename,
            content_type=ctype,
            content=payload,
            content_id=cid,
            inline=disposition == "inline" or (not disposition and cid is not None),
        )

    def _enclosed_message(self, part: Message, ctype: str, depth: int) -> None:
        inner, content = _enclosed(part, self.errors)
        if inner is None:
            return
        nested = _Body(self.errors)
        try:
            nested.walk(inner, depth + 1)
        except Exception as exc:
            self.errors.append(f"enclosed message could not be fully read ({exc})")
        name, addr = _one_address(_header_str(inner.get("From", "")))
        subject = " ".join(_header_str(inner.get("Subject", "")).split())
        self.forwarded.append(ForwardedMessage(
            from_addr=addr, from_name=name, subject=subject,
            date=_date(_header_str(inner.get("Date", "")), []), text=nested.text(),
        ))
        self.forwarded.extend(nested.forwarded)
        filename = _filename(part) or _safe_name(subject) + ".eml"
        self.attachments.append(Attachment(
            filename=filename, content_type=ctype, content=content,
            content_id=_content_id(part), inline=False,
        ))
        self.attachments.extend(nested.attachments)


def _content_type(part: Message) -> str:
    try:
        ctype = part.get_content_type()
    except Exception:
        return "application/octet-stream"
    return "text/plain" if ctype == "text" else ctype


def _charset(part: Message) -> str | None:
    try:
        return part.get_content_charset()
    except Exception:
        return None


def _disposition(part: Message) -> str:
    try:
        value = part.get("Content-Disposition")
    except Exception:
        return ""
    return str(value or "").split(";")[0].strip().lower()


def _content_id(part: Message) -> str | None:
    try:
        value = part.get("Content-ID")
    except Exception:
        return None
    return _header_str(value).strip().strip("<>").strip() or None if value else None


def _filename(part: Message) -> str | None:
    """The attachment's name: RFC 2231 ``filename*``, ``filename``, then Content-Type ``name``.

    Encoded words inside the parameter (not standard, but what many clients write) are
    decoded too; path components are dropped.
    """
    name: object = None
    try:
        name = part.get_filename()
    except Exception:
        name = None
    if not name:
        try:
            name = part.get_param("name")
            if isinstance(name, tuple):
                name = email.utils.collapse_rfc2231_value(name)
        except Exception:
            name = None
    if not name:
        return None
    text = _header_str(name)
    text = text.replace("\\", "/").rsplit("/", 1)[-1].strip().strip("\0")
    return text or None


def _safe_name(subject: str) -> str:
    cleaned = re.sub(r"[^\w .,()-]+", "_", subject).strip(" ._")[:60]
    return cleaned or "forwarded-message"


def _payload_bytes(part: Message, ctype: str, errors: list[str]) -> bytes | None:
    """The decoded payload; a broken transfer encoding falls back to the raw text."""
    try:
        payload = part.get_payload(decode=True)
    except Exception as exc:
        errors.append(f"{ctype} part has a broken transfer encoding ({exc}); kept undecoded")
        raw = part.get_payload()
        return raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else None
    if payload is None:
        return b""
    return payload if isinstance(payload, bytes) else bytes(payload)


def _enclosed(part: Message, errors: list[str]) -> tuple[Message | None, bytes]:
    """The message inside a message/rfc822 part and its bytes, undoing base64 or QP.

    RFC 2046 forbids encoding message/rfc822, but clients do it, and the stdlib parser
    then parses the encoded text as if it were the message.
    """
    cte = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    payload = part.get_payload()
    inner = payload[0] if isinstance(payload, list) and payload else None
    if cte in ("base64", "quoted-printable"):
        try:
            encoded = inner.as_string() if isinstance(inner, Message) else str(payload)
            data = (base64.b64decode(re.sub(r"\s+", "", encoded) + "===")
                    if cte == "base64" else quopri.decodestring(encoded.encode()))
            data = _LEADING_BLANK_RE.sub(b"", data, count=1)
            return email.message_from_bytes(data, policy=email.policy.compat32), data
        except (binascii.Error, ValueError, TypeError) as exc:
            errors.append(f"enclosed message with {cte} encoding could not be decoded ({exc})")
    if isinstance(inner, Message):
        return inner, _message_bytes(inner)
    if isinstance(payload, str) and payload.strip():
        data = payload.encode("utf-8", "surrogateescape")
        return email.message_from_bytes(data, policy=email.policy.compat32), data
    return None, b""


def _message_bytes(inner: Message) -> bytes:
    try:
        return inner.as_bytes()
    except Exception:
        try:
            return inner.as_string().encode("utf-8", "surrogateescape")
        except Exception:
            return b""


# --- format=flowed (RFC 3676) -----------------------------------------------------------


def _is_flowed(part: Message) -> bool:
    try:
        return str(part.get_param("format") or "").lower() == "flowed"
    except Exception:
        return False


def _unflow(text: str, part: Message) -> str:
    """Join soft line breaks: a line ending in a space continues on the next line.

    Quote depth is part of each line; only lines of the same depth are joined; one
    space-stuffing space is removed; ``-- `` stays a signature separator; with DelSp=yes
    the trailing space that marked the break is deleted.
    """
    try:
        delsp = str(part.get_param("delsp") or "").lower() == "yes"
    except Exception:
        delsp = False
    out: list[str] = []
    current: str | None = None
    current_depth = 0
    for raw_line in text.replace("\r\n", "\n").split("\n"):
        depth = len(raw_line) - len(raw_line.lstrip(">"))
        line = raw_line[depth:]
        if line.startswith(" "):
            line = line[1:]
        soft = line.endswith(" ") and line != "-- "
        if current is not None and depth != current_depth:
            out.append(">" * current_depth + (" " if current_depth else "") + current)
            current = None
        if soft and delsp:
            line = line[:-1]
        current = line if current is None else current + line
        current_depth = depth
        if not soft:
            out.append(">" * depth + (" " if depth and current else "") + current)
            current = None
    if current is not None:
        out.append(">" * current_depth + (" " if current_depth else "") + current)
    return "\n".join(out)


# --- inline forwards --------------------------------------------------------------------

_FORWARD_SEPARATOR_RE = re.compile(
    r"^\s*(?:-{2,}\s*(?:forwarded\s+message|original\s+message|weitergeleitete\s+nachricht"
    r"|message\s+transféré|mensaje\s+reenviado|doorgestuurd\s+bericht|messaggio\s+inoltrato"
    r"|mensagem\s+encaminhada|vidarebefordrat\s+meddelande|videresendt\s+melding"
    r"|wiadomość\s+przekazana|пересылаемое\s+сообщение)[^\n]{0,20}?-{2,}"
    r"|begin\s+forwarded\s+message:|anfang\s+der\s+weitergeleiteten\s+nachricht:"
    r"|début\s+du\s+message\s+réexpédié\s*:)\s*$",
    re.IGNORECASE,
)
_FORWARD_FROM_RE = re.compile(
    r"^[\s>*]*(?:from|von|de|van|da|od|от|från|fra)\s*\**\s*[:：]\s*(.+)$", re.IGNORECASE
)
_FORWARD_SUBJECT_RE = re.compile(
    r"^[\s>*]*(?:subject|betreff|objet|asunto|onderwerp|oggetto|assunto|ämne|emne|temat|тема)"
    r"\s*\**\s*[:：]\s*(.*)$",
    re.IGNORECASE,
)


_HEADER_LINE_RE = re.compile(
    r"^[\s>*]*(?:to|date|sent|subject|cc|an|datum|gesendet|betreff|à|a|objet|date|envoyé"
    r"|para|fecha|enviado|asunto|aan|verzonden|onderwerp|data|oggetto|inviato)\s*\**\s*[:：]",
    re.IGNORECASE,
)


_ORIGINAL_MESSAGE_RE = re.compile(r"^\s*-{2,}\s*original\s+message\b", re.IGNORECASE)


def _starts_header_block(lines: list[str], i: int) -> bool:
    if len(lines[i]) > 200 or not _FORWARD_FROM_RE.match(lines[i]):
        return False
    near = [line for line in lines[max(0, i - 4) : i + 6] if len(line) <= 200]
    return sum(1 for line in near if _HEADER_LINE_RE.match(line)) >= 2


def _inline_forwards(text: str, forward_subject: bool,
                     reply_subject: bool = False) -> list[ForwardedMessage]:
    """Forwards pasted into the body.

    Found at a "---------- Forwarded message ---------" style separator, or, when the
    subject says the mail is a forward ("Fwd:", "TR:", "WG:"), at the first header block.
    In a reply ("RE:", "AW:", "SV:") Outlook's "-----Original Message-----" introduces the
    quoted mail being answered, not a forward, so it is left to the quote trimmer.
    """
    found: list[ForwardedMessage] = []
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if len(line) <= 200 and _FORWARD_SEPARATOR_RE.match(line):
            if reply_subject and _ORIGINAL_MESSAGE_RE.match(line):
                continue
            start = i + 1
        elif forward_subject and not found and _starts_header_block(lines, i):
            start = max(0, i - 4)
            while start < i and not lines[start].strip():
                start += 1
            while start < i and not _HEADER_LINE_RE.match(lines[start]):
                start += 1
        else:
            continue
        from_value = subject = ""
        j = start
        while j < len(lines) and j < i + 12 and (lines[j].strip() or not from_value):
            match = _FORWARD_FROM_RE.match(lines[j])
            if match and not from_value:
                from_value = match.group(1).replace("[mailto:", "<").replace("]", ">")
            sub = _FORWARD_SUBJECT_RE.match(lines[j])
            if sub:
                subject = sub.group(1).strip()
            j += 1
        if not from_value:
            continue
        name, addr = _one_address(from_value)
        end = len(lines)
        for k in range(j, len(lines)):
            if len(lines[k]) <= 200 and _FORWARD_SEPARATOR_RE.match(lines[k]):
                end = k
                break
        found.append(ForwardedMessage(
            from_addr=addr, from_name=name.strip('"'), subject=subject, date=None,
            text="\n".join(lines[j:end]).strip(), inline=True,
        ))
    return found
