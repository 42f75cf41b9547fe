"""HTML mail bodies -> readable plain text, optionally split at the quoted history.

Mail clients write HTML for layout, not for meaning: Outlook puts every line in its own
``<p class=MsoNormal>``, Gmail uses ``<div>`` per line and ``<br>`` for blank lines.  The
converter here keeps what a reader sees (line breaks, paragraphs, list items, link
targets) and drops what they do not (styles, scripts, tracking images), without the
Markdown decoration a general converter adds.

Clients also mark the quoted history structurally (Gmail's ``gmail_quote``, Outlook's
``divRplyFwdMsg`` and its bordered header block, Thunderbird's ``moz-cite-prefix``,
Yahoo's ``yahoo_quoted``); :func:`split_html_reply` cuts there, which is more reliable
than finding the same place again in the flattened text.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

_SKIPPED = frozenset({"script", "style", "head", "title", "template", "noscript", "object"})
_VOID = frozenset(
    {"br", "hr", "img", "meta", "link", "input", "col", "area", "base", "wbr", "source"}
)
_LINE_BLOCKS = frozenset(
    {
        "div", "tr", "table", "tbody", "thead", "tfoot", "ul", "ol", "dl", "dt", "dd",
        "center", "section", "article", "header", "footer", "address", "form", "fieldset",
        "caption", "figure", "figcaption", "main", "nav", "aside", "body", "html",
    }
)
_PARAGRAPH_BLOCKS = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote"})

_QUOTE_CLASSES = frozenset(
    {
        "gmail_quote", "gmail_quote_container", "gmail_attr", "yahoo_quoted",
        "moz-cite-prefix", "protonmail_quote", "zmail_extra", "ms-outlook-mobile-reference",
        "outlookmessageheader", "x_gmail_quote", "x_yahoo_quoted", "x_moz-cite-prefix",
        "gmail_extra_quote", "reply-quote", "quote_container",
    }
)
_QUOTE_IDS = frozenset(
    {
        "divrplyfwdmsg", "x_divrplyfwdmsg", "appendonsend", "x_appendonsend",
        "mail-editor-reference-message-container", "ydpquoted", "origbody",
    }
)
_SIGNATURE_CLASSES = frozenset(
    {"gmail_signature", "moz-signature", "signature", "x_gmail_signature"}
)
_BORDER_TOP_RE = re.compile(r"border-top\s*:\s*solid", re.IGNORECASE)
_SPACE_RE = re.compile(r"[ \t\r\n\f\v\u00a0\u200b\u200c\u200d\ufeff]+")


class _Converter(HTMLParser):
    """Streams HTML into text, routing quoted and signature parts to a second buffer."""

    def __init__(self, split: bool) -> None:
        super().__init__(convert_charrefs=True)
        self.split = split
        self.out: list[list[str]] = [[], []]
        self.target = 0
        self.cut = False
        self.stack: list[tuple[str, bool, bool]] = []  # (tag, was_signature, was_quote)
        self.skip_depth = 0
        self.quote_depth = 0
        self.pre_depth = 0
        self.at_line_start = [True, True]
        self.list_counters: list[int | None] = []
        self.pending_href: list[str | None] = []

    # -- output helpers
    def _buffer(self) -> list[str]:
        return self.out[self.target]

    def _newline(self, count: int = 1) -> None:
        buf = self._buffer()
        tail = "".join(buf[-3:])
        have = len(tail) - len(tail.rstrip("\n")) if tail.strip("\n") or buf else count
        if not buf:
            return
        for _ in range(max(0, count - have)):
            buf.append("\n")
        self.at_line_start[self.target] = True

    def _write(self, text: str) -> None:
        if not text:
            return
        buf = self._buffer()
        if self.at_line_start[self.target]:
            if not self.pre_depth:
                text = text.lstrip(" ")
                if not text:
                    return
            if self.quote_depth:
                buf.append("> " * self.quote_depth)
            self.at_line_start[self.target] = False
        elif buf and buf[-1].endswith(" ") and text.startswith(" "):
            text = text[1:]
        buf.append(text)

    def _switch_to_quoted(self) -> None:
        self.cut = True
        self.target = 1

    # -- parser callbacks
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        tag = tag.lower()
        if tag in _SKIPPED:
            if tag not in _VOID:
                self.skip_depth += 1
                self.stack.append((tag, False, False))
            return
        if self.skip_depth:
            if tag not in _VOID:
                self.stack.append((tag, False, False))
            return
        attr = {k.lower(): (v or "") for k, v in attrs}
        classes = {c.lower() for c in attr.get("class", "").split()}
        element_id = attr.get("id", "").lower()
        element_name = attr.get("name", "").lower()
        was_signature = False
        if self.split and not self.cut:
            if (
                classes & _QUOTE_CLASSES
                or element_id in _QUOTE_IDS
                or element_name == "messagereplysection"
                or (tag == "div" and _BORDER_TOP_RE.search(attr.get("style", "")) is not None)
                or (tag == "hr" and "tabindex" in attr)
            ):
                self._newline(1)
                self._switch_to_quoted()
            elif classes & _SIGNATURE_CLASSES and self.target == 0:
                self._newline(1)
                self.target = 1
                was_signature = True
        if tag == "br":
            buf = self._buffer()
            if self.at_line_start[self.target] and self.quote_depth and buf:
                buf.append(">" * self.quote_depth)
            buf.append("\n")
            self.at_line_start[self.target] = True
            return
        if tag == "hr":
            self._newline(1)
            return
        if tag == "img" or tag in _VOID:
            return
        if tag == "blockquote":
            self._newline(1)
            self.quote_depth += 1
        elif tag in _PARAGRAPH_BLOCKS and "msonormal" not in classes:
            self._newline(2)
        elif tag in _LINE_BLOCKS or tag == "p":
            self._newline(1)
        if tag == "pre":
            self.pre_depth += 1
        if tag in ("ul", "ol"):
            self.list_counters.append(0 if tag == "ol" else None)
        elif tag == "li":
            self._newline(1)
            counter = self.list_counters[-1] if self.list_counters else None
            if counter is None:
                self._write("- ")
            else:
                self.list_counters[-1] = counter + 1
                self._write(f"{counter + 1}. ")
        elif tag == "a":
            self.pending_href.append(attr.get("href"))
        elif tag in ("td", "th"):
            self._write(" ")
        self.stack.append((tag, was_signature, False))

    def handle_endtag(self, tag: str) -> None:
        tag = tag.lower()
        if tag in _VOID:
            return
        if not any(t == tag for t, _, _ in self.stack):
            return
        while self.stack:
            open_tag, was_signature, _ = self.stack.pop()
            self._close(open_tag, was_signature)
            if open_tag == tag:
                break

    def _close(self, tag: str, was_signature: bool) -> None:
        if tag in _SKIPPED:
            self.skip_depth = max(0, self.skip_depth - 1)
            return
        if self.skip_depth:
            return
        if tag == "blockquote":
            self.quote_depth = max(0, self.quote_depth - 1)
            self._newline(1)
        elif tag in _PARAGRAPH_BLOCKS or tag in _LINE_BLOCKS or tag in ("p", "li"):
            self._newline(1)
        if tag == "pre":
            self.pre_depth = max(0, self.pre_depth - 1)
        elif tag in ("ul", "ol") and self.list_counters:
            self.list_counters.pop()
        elif tag == "a" and self.pending_href:
            href = self.pending_href.pop()
            self._write_link_target(href)
        if was_signature and not self.cut:
            self._newline(1)
            self.target = 0

    def _write_link_target(self, href: str | None) -> None:
        if not href or not href.lower().startswith(("http://", "https://")):
            return
        buf = self._buffer()
        recent = "".join(buf[-6:])
        if href in recent or href.rstrip("/") in recent:
            return
        self._write(f" <{href}>")

    def handle_data(self, data: str) -> None:
        if self.skip_depth or not data:
            return
        if self.pre_depth:
            for i, piece in enumerate(data.replace("\r\n", "\n").split("\n")):
                if i:
                    self._buffer().append("\n")
                    self.at_line_start[self.target] = True
                self._write(piece)
            return
        if "\u00a0" in data and not data.strip(" \t\r\n\u00a0") and self.at_line_start[
            self.target
        ]:
            # An empty paragraph that holds only &nbsp; is how Outlook writes a blank line.
            self._buffer().append("\n")
            return
        self._write(_SPACE_RE.sub(" ", data))

    def result(self) -> tuple[str, str]:
        return _tidy("".join(self.out[0])), _tidy("".join(self.out[1]))


def _tidy(text: str) -> str:
    """Trailing spaces off, at most one blank line in a row, no blank edges."""
    lines = [line.rstrip() for line in text.split("\n")]
    tidy: list[str] = []
    for line in lines:
        if not line and (not tidy or not tidy[-1]):
            continue
        tidy.append(line)
    while tidy and not tidy[-1]:
        tidy.pop()
    return "\n".join(tidy)


def _convert(html: str, split: bool) -> tuple[str, str]:
    converter = _Converter(split)
    try:
        converter.feed(html)
        converter.close()
    except Exception:  # html.parser is lenient; this guards against the unforeseen
        pass
    return converter.result()


def html_to_text(html: str) -> str:
    """The text a reader sees in ``html``: lines, paragraphs, ``- `` list items, links."""
    return _convert(html, split=False)[0]


def split_html_reply(html: str) -> tuple[str, str]:
    """``(new_text, quoted_text)`` of an HTML reply, cut at the client's quote container.

    Signature blocks the client marks (``gmail_signature``, ``moz-signature``) go to the
    quoted side too.  Blockquotes outside such a container come out as ``> `` lines so
    the plain-text rules can still tell inline answers from a trailing quote.
    """
    return _convert(html, split=True)
