"""parse_message: never raises, decodes charsets and attachments, reads HTML-only mail."""

from __future__ import annotations

import base64
from email.message import EmailMessage
from pathlib import Path

import pytest

from warrantyd.parsers.message import parse_message


def _corpus_files(shared_dir: Path) -> list[Path]:
    return sorted(p for p in (shared_dir / "corpus").rglob("*") if p.is_file())


def test_every_corpus_and_eval_file_parses_without_raising(shared_dir: Path) -> None:
    files = _corpus_files(shared_dir) + sorted((shared_dir / "eval").rglob("*.eml"))
    assert len(files) > 300
    for path in files:
        msg = parse_message(path.read_bytes())
        assert isinstance(msg.text, str), path


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\x01\x02",
        b"no headers at all",
        b"Content-Type: multipart/mixed\n\nno boundary",
        b"Subject: =?utf-8?b?!!!?=\nFrom: <<<@>>>\nDate: yesterday\n\nx",
        b"Content-Type: text/plain; charset=no-such-charset\n\n\xff\xfe caf\xe9",
        b"Content-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\n!!notbase64",
        b"Content-Type: multipart/mixed; boundary=a\n\n" + b"--a\nContent-Type: multipart/mixed;"
        b" boundary=a\n\n" * 200,
    ],
)
def test_hostile_input_never_raises(raw: bytes) -> None:
    msg = parse_message(raw)
    assert isinstance(msg.errors, tuple)


def test_leading_blank_line_still_parses_headers(shared_dir: Path) -> None:
    msg = parse_message((shared_dir / "corpus/discourse/emails/hebrew.eml").read_bytes())
    assert msg.from_addr == "walter.white@googlemail.com"
    assert msg.subject.startswith("Re: [Discourse]")
    assert msg.text.strip() == "שלום"


def test_declared_charset_wrong_bytes_utf8(shared_dir: Path) -> None:
    msg = parse_message((shared_dir / "corpus/discourse/emails/chinese_reply.eml").read_bytes())
    assert msg.text.strip() == "您好！ 你今天好吗？"


def test_big5_body(shared_dir: Path) -> None:
    msg = parse_message((shared_dir / "corpus/discourse/emails/big5.eml").read_bytes())
    assert msg.text.strip() == "媽！我上電視了！"
    assert "\r" not in msg.text


def test_utf7_and_latin1_8bit(shared_dir: Path) -> None:
    base = shared_dir / "corpus/discourse/emails"
    utf7 = parse_message((base / "reply_with_weird_encoding.eml").read_bytes())
    assert utf7.text.strip() == "This is a reply with a weird encoding."
    latin = parse_message((base / "reply_with_8bit_encoding.eml").read_bytes())
    assert "äöüÄÖÜß" in latin.text


def test_rfc2047_display_name(shared_dir: Path) -> None:
    base = shared_dir / "corpus/discourse/emails"
    msg = parse_message((base / "encoded_display_name.eml").read_bytes())
    assert msg.from_name == "Случайная Имя"
    assert msg.subject == "I need help"


def test_raw_8bit_header_is_read_as_utf8() -> None:
    raw = "From: José Hernández <jose@example.com>\nSubject: Reparación\n\nhola\n".encode()
    msg = parse_message(raw)
    assert msg.from_name == "José Hernández"
    assert msg.subject == "Reparación"


def test_rfc2231_filename_and_attachment_bytes() -> None:
    raw = (
        b"From: a@example.com\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/mixed; boundary="b"\n\n--b\n'
        b"Content-Type: text/plain; charset=utf-8\n\nsee photo\n--b\n"
        b"Content-Type: image/jpeg\n"
        b"Content-Disposition: attachment; filename*=UTF-8''fen%C3%AAtre%20cass%C3%A9e.jpg\n"
        b"Content-Transfer-Encoding: base64\n\n" + base64.b64encode(b"\xff\xd8jpegdata") + b"\n"
        b"--b--\n"
    )
    msg = parse_message(raw)
    assert msg.text.strip() == "see photo"
    (att,) = msg.attachments
    assert att.filename == "fenêtre cassée.jpg"
    assert att.content == b"\xff\xd8jpegdata" and att.size == 10 and att.is_image


def test_corpus_attachments_have_names_and_sizes(shared_dir: Path) -> None:
    base = shared_dir / "corpus/discourse/emails"
    txt = parse_message((base / "attached_txt_file.eml").read_bytes())
    assert txt.text.strip() == "Please find some text file attached."
    assert [(a.filename, a.size) for a in txt.attachments] == [("text.txt", 20)]
    eml = parse_message((base / "attached_eml_file.eml").read_bytes())
    assert eml.text.strip() == "Please find the eml file attached."
    assert [(a.filename, a.content_type, a.size) for a in eml.attachments] == [
        ("sample.eml", "message/rfc822", 193)
    ]
    assert eml.forwarded[0].from_addr == "file@fyicenter.com"


def test_iphone_inline_image_between_text_parts() -> None:
    raw = (
        b"From: a@example.com\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/mixed; boundary="b"\n\n--b\n'
        b"Content-Type: text/plain; charset=us-ascii\n\nThe crack is here:\n--b\n"
        b'Content-Type: image/jpeg; name="IMG_0001.JPG"\n'
        b'Content-Disposition: inline; filename="IMG_0001.JPG"\nContent-ID: <x1@example>\n'
        b"Content-Transfer-Encoding: base64\n\n" + base64.b64encode(b"img") + b"\n--b\n"
        b"Content-Type: text/plain; charset=us-ascii\n\nAnd it is getting longer.\n--b--\n"
    )
    msg = parse_message(raw)
    assert msg.text == "The crack is here:\n\nAnd it is getting longer."
    (att,) = msg.attachments
    assert (att.filename, att.inline, att.content_id) == ("IMG_0001.JPG", True, "x1@example")


def test_html_only_mail_becomes_readable_text() -> None:
    msg = EmailMessage()
    msg["From"] = "h@example.com"
    msg.set_content(
        "<html><body><p>Hi,</p><p>Two problems:</p><ol><li>leak</li><li>crack</li></ol>"
        "<p><b>Thanks</b><br>Ana</p></body></html>",
        subtype="html",
    )
    parsed = parse_message(msg.as_bytes())
    assert parsed.text_from_html
    assert parsed.text == "Hi,\n\nTwo problems:\n1. leak\n2. crack\n\nThanks\nAna"
    assert parsed.html and "<ol>" in parsed.html


def test_plain_part_preferred_over_html(shared_dir: Path) -> None:
    base = shared_dir / "corpus/discourse/emails"
    msg = parse_message((base / "text_and_html_reply.eml").read_bytes())
    assert msg.text.strip() == "This is the *text* part."
    assert not msg.text_from_html


def test_format_flowed_is_unwrapped_with_delsp() -> None:
    raw = (
        b"From: a@example.com\nContent-Type: text/plain; charset=utf-8; format=flowed; "
        b"delsp=yes\n\nThe garage door makes a grind\x20\ning noise when it opens.\n"
        b"Second line.\n-- \nMike\n"
    )
    msg = parse_message(raw)
    assert msg.text.split("\n")[:4] == [
        "The garage door makes a grinding noise when it opens.",
        "Second line.",
        "-- ",
        "Mike",
    ]


def test_format_flowed_without_delsp_keeps_space_and_quote_depth() -> None:
    raw = (
        b"From: a@example.com\nContent-Type: text/plain; format=flowed\n\n"
        b"Yes we can come\x20\non Friday.\n> quoted soft\x20\n> line\n"
    )
    msg = parse_message(raw)
    assert msg.text.split("\n")[:2] == ["Yes we can come on Friday.", "> quoted soft line"]


def test_multipart_without_boundary_keeps_text(shared_dir: Path) -> None:
    msg = parse_message((shared_dir / "corpus/discourse/emails/dutch.eml").read_bytes())
    assert msg.text.startswith("Dit is een antwoord in het Nederlands.")
    assert not msg.attachments


@pytest.mark.parametrize("name", ["forwarded_email_1.eml", "forwarded_email_2.eml",
                                  "forwarded_email_4.eml"])
def test_inline_forward_is_attributed(shared_dir: Path, name: str) -> None:
    msg = parse_message((shared_dir / "corpus/discourse/emails" / name).read_bytes())
    assert msg.forwarded and msg.forwarded[0].from_addr == "some@one.com"
    assert msg.forwarded[0].inline and msg.forwarded[0].text


def test_headers_and_threading_fields() -> None:
    raw = (
        b"Return-Path: <>\nDelivered-To: warranty+tok@acme-homes.example\n"
        b"From: \"Doe, Jane\" <Jane@Example.com>\nTo: a@x.example, b@x.example\n"
        b"Message-ID: <m1@x>\nIn-Reply-To: <p1@acme>\nReferences: <r0@acme>\n <p1@acme>\n"
        b"Date: Mon, 7 Dec 2026 08:00:00 -0000\nSubject: =?utf-8?q?Re=3A_=5BWO-12=5D?=\n\nbody"
    )
    msg = parse_message(raw)
    assert (msg.from_name, msg.from_addr) == ("Doe, Jane", "jane@example.com")
    assert msg.return_path == ""
    assert msg.references == ("r0@acme", "p1@acme")
    assert msg.in_reply_to == ("p1@acme",) and msg.message_id == "m1@x"
    assert msg.date is not None and msg.date.tzinfo is not None
    assert msg.subject == "Re: [WO-12]"
    assert msg.recipients[0] == "warranty+tok@acme-homes.example"
