"""MIME bytes -> one normalized, immutable view of a mail.

Everything downstream (classification, trimming, command reading, drafting) works on
:class:`ParsedMessage`, never on raw MIME, so that every oddity of real-world mail is dealt
with in exactly one place.  :func:`parse_message` never raises: whatever it cannot read is
recorded in ``ParsedMessage.errors`` and the caller keeps the raw bytes.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
from dataclasses import dataclass, field
from datetime import datetime
from email.message import Message


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
    """Parse ``raw`` RFC 5322 bytes into a :class:`ParsedMessage`; never raises."""
    errors: list[str] = []
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    headers = tuple((str(k), _header_str(v)) for k, v in msg.items())

    def first(name: str) -> str:
        value = msg.get(name)
        return _header_str(value) if value is not None else ""

    from_name, from_addr = _one_address(first("From"))
    date = None
    if first("Date"):
        try:
            date = email.utils.parsedate_to_datetime(first("Date"))
            if date.tzinfo is None:
                date = None
        except (TypeError, ValueError, IndexError):
            errors.append(f"unreadable Date header: {first('Date')!r}")
    return_path: str | None = None
    if msg.get("Return-Path") is not None:
        return_path = first("Return-Path").strip().strip("<>").strip().lower()
    text, html, attachments = _walk_body(msg, errors)
    return ParsedMessage(
        message_id=_msgid(first("Message-ID")),
        in_reply_to=tuple(_msgids(first("In-Reply-To"))),
        references=tuple(_msgids(first("References"))),
        subject=" ".join(first("Subject").split()),
        from_addr=from_addr,
        from_name=from_name,
        reply_to=tuple(_addresses(msg.get_all("Reply-To") or [])),
        to=tuple(_addresses(msg.get_all("To") or [])),
        cc=tuple(_addresses(msg.get_all("Cc") or [])),
        delivered_to=tuple(
            _addresses((msg.get_all("Delivered-To") or []) + (msg.get_all("X-Original-To") or []))
        ),
        return_path=return_path,
        date=date,
        headers=headers,
        content_type=msg.get_content_type(),
        text=text,
        html=html,
        attachments=tuple(attachments),
        errors=tuple(errors),
    )


def _header_str(value: object) -> str:
    """Decode RFC 2047 words; raw 8-bit bytes are read as UTF-8, else Latin-1."""
    try:
        decoded = email.header.decode_header(str(value))
    except Exception:
        return str(value)
    parts: list[str] = []
    for chunk, charset in decoded:
        if isinstance(chunk, bytes):
            parts.append(_decode_bytes(chunk, charset))
        else:
            parts.append(chunk)
    return "".join(parts).replace("\r", "").replace("\n", " ")


def _decode_bytes(data: bytes, charset: str | None) -> str:
    for candidate in (charset, "utf-8", "cp1252", "latin-1"):
        if not candidate:
            continue
        try:
            return data.decode(candidate)
        except (LookupError, UnicodeDecodeError):
            continue
    return data.decode("latin-1", errors="replace")


def _one_address(value: str) -> tuple[str, str | None]:
    pairs = email.utils.getaddresses([value]) if value else []
    for name, addr in pairs:
        if "@" in addr:
            return name.strip(), addr.strip().lower()
    return "", None


def _addresses(values: list[object]) -> list[str]:
    found: list[str] = []
    for _, addr in email.utils.getaddresses([_header_str(v) for v in values]):
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


def _walk_body(msg: Message, errors: list[str]) -> tuple[str, str | None, list[Attachment]]:
    plain: list[str] = []
    html: list[str] = []
    attachments: list[Attachment] = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        disposition = (part.get("Content-Disposition") or "").split(";")[0].strip().lower()
        filename = part.get_filename()
        try:
            payload = part.get_payload(decode=True) or b""
        except Exception as exc:  # broken transfer encoding
            errors.append(f"undecodable {ctype} part: {exc}")
            continue
        if ctype in ("text/plain", "text/html") and disposition != "attachment" and not filename:
            text = _decode_bytes(payload, part.get_content_charset())
            (plain if ctype == "text/plain" else html).append(text)
            continue
        cid = (part.get("Content-ID") or "").strip().strip("<>") or None
        attachments.append(
            Attachment(
                filename=_header_str(filename) if filename else (cid or f"part-{len(attachments)+1}"),
                content_type=ctype,
                content=payload,
                content_id=cid,
                inline=disposition == "inline",
            )
        )
    html_text = "\n".join(html) if html else None
    text = "\n".join(plain)
    return text, html_text, attachments
