"""Bounce and auto-reply recognition (warrantyd.parsers.automation).

Three layers:

* every row of the shared corpus MANIFEST, with the verdict its category and expected
  text call for, except the rows listed in ``DELIBERATE_DISAGREEMENTS`` (each with why);
* every labelled eval mail: vendor out-of-office replies are auto-replies, all other
  eval mail was written by people and must be neither;
* hand-written mails for the formats the corpus lacks (Exchange NDR, Exim, qmail,
  Gmail, delay reports, localized vacation notices, list mail, Outlook's
  X-Auto-Response-Suppress on a person's reply).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from warrantyd.parsers.automation import AutoReply, Bounce, detect_auto_reply, detect_bounce
from warrantyd.parsers.message import parse_message

_SHARED = Path(__file__).resolve().parent.parent.parent / "shared"


def _verdict(raw: bytes, *, with_raw: bool = True) -> str:
    """``bounce``, ``auto`` or ``none``, in the pipeline's order (bounce first)."""
    msg = parse_message(raw)
    if detect_bounce(msg, raw if with_raw else None) is not None:
        return "bounce"
    return "auto" if detect_auto_reply(msg) is not None else "none"


# --- the corpus MANIFEST ---------------------------------------------------------------------


def _manifest_rows() -> list[dict[str, str]]:
    manifest = _SHARED / "corpus" / "MANIFEST.tsv"
    if not manifest.is_file():
        return []
    with manifest.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def manifest_verdict(row: dict[str, str]) -> str:
    """The verdict the MANIFEST asks for, read strictly.

    ``bounce`` rows are bounces; ``auto_reply`` rows are auto-generated unless their
    expected text says the mail is accepted / NOT auto-generated; every other row is mail
    that must be neither.
    """
    if row["category"] == "bounce":
        return "bounce"
    if row["category"] == "auto_reply":
        expected = row["expected"]
        if "accepted" in expected or "NOT auto-generated" in expected:
            return "none"
        return "auto"
    return "none"


_LIST_MAIL = (
    "mailing-list mail: DESIGN.md step 3 classifies mail with Precedence: bulk/junk/list "
    "or List-* headers as automated (recorded, never answered or drafted from). Discourse "
    "accepts it only in its list-mirror mode, which warrantyd does not have; a company "
    "list relaying people's mail is handled by detect_auto_reply(own_list_domains=...)"
)
_BULK_MAIL = (
    "bulk/spam mail (Precedence: bulk or junk, List-Unsubscribe/List-Id): DESIGN.md step 3 "
    "classifies it as automated; the MANIFEST row is about parsing, not classification"
)

DELIBERATE_DISAGREEMENTS: dict[str, tuple[str, str]] = {
    "discourse/emails/auto_generated_allowlisted.eml": (
        "auto",
        "Auto-Submitted: auto-generated; Discourse accepts it only because the sender is on "
        "its auto_generated_allowlist site setting. An allow-list is policy for the "
        "classifier, not a fact about the mail, so the detector reports the header.",
    ),
    "discourse/emails/invalid_from_2.eml": (
        "bounce",
        "From: MAILER-DAEMON (Mail Delivery System), Return-Path <MAILER-DAEMON>, subject "
        "'Undelivered Mail Returned to Sender': Discourse rejects it for the unparseable From "
        "before it looks for bounces; every signal says it is a mail server's report.",
    ),
    "cpython/test_email/data/msg_32.txt": ("auto", _LIST_MAIL),
    "cpython/test_email/data/msg_33.txt": ("auto", _LIST_MAIL),
    "discourse/emails/bottom_reply.eml": ("auto", _LIST_MAIL),
    "discourse/emails/mailinglist.eml": ("auto", _LIST_MAIL),
    "discourse/emails/mailinglist_dmarc_fail.eml": ("auto", _LIST_MAIL),
    "discourse/emails/mailman_1.eml": ("auto", _LIST_MAIL),
    "discourse/emails/mailman_3.eml": ("auto", _LIST_MAIL),
    "discourse/emails/mailman_4.eml": ("auto", _LIST_MAIL),
    "discourse/emails/reply_to_different_to_from.eml": ("auto", _LIST_MAIL),
    "mail-parser/mails/mail_test_13": ("auto", _BULK_MAIL),
    "mail-parser/mails/mail_test_16": ("auto", _BULK_MAIL),
    "mail-parser/mails/mail_test_5": ("auto", _BULK_MAIL),
    "mail-parser/mails/mail_test_6": ("auto", _BULK_MAIL),
}

_ROWS = _manifest_rows()


@pytest.mark.parametrize("row", _ROWS, ids=[row["path"] for row in _ROWS])
def test_manifest_row_verdict(shared_dir: Path, row: dict[str, str]) -> None:
    raw = (shared_dir / "corpus" / row["path"]).read_bytes()
    wanted, why = DELIBERATE_DISAGREEMENTS.get(row["path"], (manifest_verdict(row), ""))
    assert _verdict(raw) == wanted, why or row["expected"]


def test_manifest_is_present_and_disagreements_are_real(shared_dir: Path) -> None:
    """Guard the list above: every entry names a row and really differs from the MANIFEST."""
    assert len(_ROWS) > 200, "the corpus MANIFEST was not found beside the repo"
    by_path = {row["path"]: row for row in _ROWS}
    for path, (wanted, _) in DELIBERATE_DISAGREEMENTS.items():
        assert path in by_path, path
        assert manifest_verdict(by_path[path]) != wanted, path


def test_manifest_verdicts_without_raw_bytes(shared_dir: Path) -> None:
    """Callers that only have the parsed view get the same verdicts (with less detail)."""
    for row in _ROWS:
        raw = (shared_dir / "corpus" / row["path"]).read_bytes()
        assert _verdict(raw, with_raw=False) == _verdict(raw), row["path"]


@pytest.mark.parametrize(
    ("path", "recipients", "codes", "permanent"),
    [
        ("discourse/emails/bounced_email.eml", ("linux-admin@b-s-c.co.jp",), ("5.1.1",), True),
        ("discourse/emails/hard_bounce_via_verp.eml", ("linux-admin@b-s-c.co.jp",), ("5.1.1",),
         True),
        # Original-Recipient (the address as we wrote it) wins over the expanded one.
        ("discourse/emails/verp_bounce_different_final_recipient.eml",
         ("linux-admin@b-s-c.co.jp",), ("4.1.1",), False),
        ("cpython/test_email/data/msg_16.txt", ("jangel1@cougar.noc.ucla.edu",), ("5.0.0",),
         True),
        # No MIME boundary: the fields are read from the text.
        ("cpython/test_email/data/msg_25.txt", ("scoffman@wellpartner.com",), ("5.4.6",), True),
        ("mail-parser/mails/mail_malformed_2", ("abh@netpar.com.br",), ("4.2.2",), False),
    ],
)
def test_corpus_bounce_details(
    shared_dir: Path, path: str, recipients: tuple[str, ...], codes: tuple[str, ...],
    permanent: bool,
) -> None:
    raw = (shared_dir / "corpus" / path).read_bytes()
    bounce = detect_bounce(parse_message(raw), raw)
    assert bounce is not None
    assert bounce.failed_recipients == recipients
    assert bounce.status_codes == codes
    assert bounce.permanent is permanent


def test_corpus_bounce_links_to_the_returned_message(shared_dir: Path) -> None:
    raw = (shared_dir / "corpus" / "cpython/test_email/data/msg_16.txt").read_bytes()
    bounce = detect_bounce(parse_message(raw), raw)
    assert bounce is not None
    assert bounce.original_message_id == "002001c144a6$8752e060$56104586@oxy.edu"


def test_two_failed_recipients(shared_dir: Path) -> None:
    path = "discourse/emails/bounced_email_multiple_status_codes.eml"
    raw = (shared_dir / "corpus" / path).read_bytes()
    bounce = detect_bounce(parse_message(raw), raw)
    assert bounce is not None and bounce.permanent
    assert bounce.status_codes == ("5.1.1",)


# --- the eval mail ---------------------------------------------------------------------------


def _eval_cases() -> list[tuple[str, str, bool]]:
    cases: list[tuple[str, str, bool]] = []
    for labels in sorted((_SHARED / "eval").glob("*/labels.jsonl")):
        for line in labels.read_text(encoding="utf-8").splitlines():
            if line.strip():
                label = json.loads(line)
                is_auto = "auto_reply" in label.get("tags", [])
                cases.append((labels.parent.name, label["file"], is_auto))
    return cases


_EVAL = _eval_cases()


@pytest.mark.parametrize(("folder", "file", "is_auto"), _EVAL,
                         ids=[f"{f}/{n}" for f, n, _ in _EVAL])
def test_eval_mail(shared_dir: Path, folder: str, file: str, is_auto: bool) -> None:
    raw = (shared_dir / "eval" / folder / file).read_bytes()
    assert _verdict(raw) == ("auto" if is_auto else "none")


def test_eval_mail_is_present(shared_dir: Path) -> None:
    assert len(_EVAL) >= 100
    assert sum(is_auto for _, _, is_auto in _EVAL) >= 2


# --- hand-written bounces --------------------------------------------------------------------

EXCHANGE_NDR = b"""\
Return-Path: <>
From: Microsoft Outlook <postmaster@ridgeline-plumbing.example.com>
To: <warranty@acme-homes.example>
Date: Tue, 8 Dec 2026 16:02:11 +0000
Subject: Undeliverable: [WO-12] Plumbing: Kitchen sink drain leak
Message-ID: <a1b2c3d4-ndr@ridgeline-plumbing.example.com>
In-Reply-To: <wo-12.5f3a@acme-homes.example>
References: <wo-12.5f3a@acme-homes.example>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="b1_ndr"

--b1_ndr
Content-Type: text/plain; charset="us-ascii"

Your message to jdoe@ridgeline-plumbing.example.com couldn't be delivered.

jdoe wasn't found at ridgeline-plumbing.example.com.

Remote Server returned '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found'

--b1_ndr
Content-Type: message/delivery-status

Reporting-MTA: dns;BN8PR12MB3587.namprd12.prod.outlook.example.com
Received-From-MTA: dns;mx.acme-homes.example
Arrival-Date: Tue, 8 Dec 2026 16:02:09 +0000

Original-Recipient: rfc822;JDoe@ridgeline-plumbing.example.com
Final-Recipient: rfc822;jdoe@ridgeline-plumbing.example.com
Action: failed
Status: 5.1.10
Diagnostic-Code: smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found

--b1_ndr
Content-Type: text/rfc822-headers

From: Acme Homes Warranty <warranty@acme-homes.example>
To: jdoe@ridgeline-plumbing.example.com
Subject: [WO-12] Plumbing: Kitchen sink drain leak
Message-ID: <wo-12.5f3a@acme-homes.example>

--b1_ndr--
"""


def test_exchange_ndr() -> None:
    msg = parse_message(EXCHANGE_NDR)
    bounce = detect_bounce(msg, EXCHANGE_NDR)
    assert bounce == Bounce(
        reason="multipart/report; report-type=delivery-status",
        permanent=True,
        failed_recipients=("jdoe@ridgeline-plumbing.example.com",),
        status_codes=("5.1.10",),
        original_message_id="wo-12.5f3a@acme-homes.example",
    )


def test_exchange_ndr_without_raw_bytes_still_links_by_in_reply_to() -> None:
    bounce = detect_bounce(parse_message(EXCHANGE_NDR))
    assert bounce is not None
    assert bounce.original_message_id == "wo-12.5f3a@acme-homes.example"
    assert bounce.permanent
    assert "jdoe@ridgeline-plumbing.example.com" in bounce.failed_recipients


OLD_EXCHANGE_TEXT_NDR = b"""\
From: System Administrator <admin@mail.example.org>
To: warranty@acme-homes.example
Subject: Undeliverable: [WO-31] Plumbing: Kitchen sink drain leak
Date: Tue, 8 Dec 2026 09:00:00 -0700
Content-Type: text/plain

Your message did not reach some or all of the intended recipients.

      Subject:  [WO-31] Plumbing: Kitchen sink drain leak
      Sent:     12/8/2026 8:59 AM

The following recipient(s) cannot be reached:

      kelly@frontrange-plumbing.example.net on 12/8/2026 9:00 AM
            The e-mail account does not exist at the organization this message was sent to.
            <mail.example.org #5.1.1 smtp;550 5.1.1 User unknown>
"""


def test_old_exchange_text_ndr_needs_subject_and_text() -> None:
    bounce = detect_bounce(parse_message(OLD_EXCHANGE_TEXT_NDR), OLD_EXCHANGE_TEXT_NDR)
    assert bounce is not None
    assert bounce.permanent
    assert bounce.status_codes == ("5.1.1",)


POSTFIX_DELAY = b"""\
Return-Path: <>
From: MAILER-DAEMON@mx.acme-homes.example (Mail Delivery System)
To: warranty@acme-homes.example
Subject: Delayed Mail (still being retried)
Date: Wed, 9 Dec 2026 10:00:00 -0700
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="D1.delay"

--D1.delay
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.acme-homes.example.

####################################################################
# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #
####################################################################

Your message could not be delivered for more than 4 hour(s).
It will be retried until it is 5 day(s) old.

<office@highline-roofing.example.org>: connect to mx.highline-roofing.example.org
    [203.0.113.9]:25: Connection timed out

--D1.delay
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.acme-homes.example
Arrival-Date: Wed, 9 Dec 2026 05:58:41 -0700

Final-Recipient: rfc822; office@highline-roofing.example.org
Action: delayed
Status: 4.4.1
Will-Retry-Until: Mon, 14 Dec 2026 05:58:41 -0700

--D1.delay
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

Message-ID: <wo-86.77e1@acme-homes.example>
Subject: [WO-86] Roofing: Roof leak into bedroom over garage

--D1.delay--
"""


def test_delay_dsn_is_a_bounce_but_not_permanent() -> None:
    bounce = detect_bounce(parse_message(POSTFIX_DELAY), POSTFIX_DELAY)
    assert bounce is not None
    assert bounce.permanent is False
    assert bounce.status_codes == ("4.4.1",)
    assert bounce.failed_recipients == ("office@highline-roofing.example.org",)
    assert bounce.original_message_id == "wo-86.77e1@acme-homes.example"


def test_delay_without_raw_bytes_is_read_from_the_warning_text() -> None:
    bounce = detect_bounce(parse_message(POSTFIX_DELAY))
    assert bounce is not None and bounce.permanent is False
    assert bounce.failed_recipients == ("office@highline-roofing.example.org",)


EXIM_BOUNCE = b"""\
Return-Path: <>
From: Mail Delivery System <Mailer-Daemon@mail.example.net>
To: warranty@acme-homes.example
Subject: Mail delivery failed: returning message to sender
X-Failed-Recipients: gutterguys@example.org
Auto-Submitted: auto-replied
Date: Thu, 10 Dec 2026 11:00:00 -0700
Content-Type: text/plain

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  gutterguys@example.org
    host mx.example.org [192.0.2.25]
    SMTP error from remote mail server after RCPT TO:<gutterguys@example.org>:
    550 5.1.1 <gutterguys@example.org>: Recipient address rejected: User unknown

------ This is a copy of the message, including all the headers. ------

Message-ID: <wo-76.c0de@acme-homes.example>
Subject: [WO-76] Gutters: Gutter over front door sagging
"""


def test_exim_bounce_with_x_failed_recipients() -> None:
    bounce = detect_bounce(parse_message(EXIM_BOUNCE), EXIM_BOUNCE)
    assert bounce is not None
    assert bounce.reason.startswith("X-Failed-Recipients")
    assert bounce.permanent
    assert bounce.failed_recipients == ("gutterguys@example.org",)
    assert bounce.status_codes == ("5.1.1",)
    assert bounce.original_message_id == "wo-76.c0de@acme-homes.example"


QMAIL_BOUNCE = b"""\
Return-Path: <>
From: MAILER-DAEMON@mail.example.com
To: warranty@acme-homes.example
Subject: failure notice
Date: Thu, 10 Dec 2026 11:00:00 -0700

Hi. This is the qmail-send program at mail.example.com.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<mesadrywall@example.net>:
192.0.2.5 does not like recipient.
Remote host said: 550 5.1.1 <mesadrywall@example.net>... User unknown
Giving up on 192.0.2.5.
"""


def test_qmail_bounce() -> None:
    bounce = detect_bounce(parse_message(QMAIL_BOUNCE), QMAIL_BOUNCE)
    assert bounce is not None and bounce.permanent
    assert bounce.failed_recipients == ("mesadrywall@example.net",)
    assert bounce.status_codes == ("5.1.1",)


GMAIL_ADDRESS_NOT_FOUND = b"""\
From: Mail Delivery Subsystem <mailer-daemon@googlemail.example.com>
To: warranty@acme-homes.example
Subject: Delivery Status Notification (Failure)
Date: Fri, 11 Dec 2026 08:00:00 -0800
Content-Type: text/plain; charset="UTF-8"

** Address not found **

Your message wasn't delivered to hank.olsen@example.org because the address couldn't be \
found, or is unable to receive mail.

The response from the remote server was:
550 5.1.1 The email account that you tried to reach does not exist.
"""


def test_gmail_address_not_found() -> None:
    bounce = detect_bounce(parse_message(GMAIL_ADDRESS_NOT_FOUND), GMAIL_ADDRESS_NOT_FOUND)
    assert bounce is not None and bounce.permanent
    assert bounce.failed_recipients == ("hank.olsen@example.org",)
    assert bounce.status_codes == ("5.1.1",)


VERP_REPORT = b"""\
From: Postmaster <postmaster@example.net>
To: warranty+bounce-wo40.k2x9@acme-homes.example
Delivered-To: warranty+bounce-wo40.k2x9@acme-homes.example
Subject: Notice
Date: Fri, 11 Dec 2026 08:00:00 -0800

We could not hand your mail over.
"""


def test_mail_to_a_verp_address_is_a_bounce() -> None:
    bounce = detect_bounce(parse_message(VERP_REPORT), VERP_REPORT)
    assert bounce is not None
    assert "warranty+bounce-wo40.k2x9@acme-homes.example" in bounce.reason


def test_vacation_reply_to_a_verp_address_is_not_a_bounce() -> None:
    raw = VERP_REPORT.replace(b"Subject: Notice", b"Subject: Out of Office: [WO-40] Drywall")
    msg = parse_message(raw)
    assert detect_bounce(msg, raw) is None
    assert detect_auto_reply(msg) is not None


FORWARDED_BOUNCE = b"""\
From: Nicole Baptiste <nicole.baptiste@example.org>
To: warranty@acme-homes.example
Subject: Fwd: Undeliverable: Leak under the stairs
Date: Fri, 11 Dec 2026 08:00:00 -0800
Content-Type: text/plain

My mail to your old address bounced, so here it is again: the leak under the stairs
is back.

---------- Forwarded message ---------
From: Microsoft Outlook <postmaster@acme-homes.example>
Subject: Undeliverable: Leak under the stairs

Delivery has failed to these recipients or groups:
service@acme-homes.example
"""


def test_forwarded_bounce_written_by_a_person_is_neither() -> None:
    assert _verdict(FORWARDED_BOUNCE) == "none"


ATTACHED_REPORT = b"""\
From: Nicole Baptiste <nicole.baptiste@example.org>
To: warranty@acme-homes.example
Subject: my email keeps bouncing??
Date: Fri, 11 Dec 2026 08:00:00 -0800
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

--outer
Content-Type: text/plain

See the attached bounce, what address should I use?

--outer
Content-Type: message/rfc822

From: MAILER-DAEMON@example.org
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="inner"

--inner
Content-Type: message/delivery-status

Final-Recipient: rfc822; service@acme-homes.example
Action: failed
Status: 5.1.1

--inner--

--outer--
"""


def test_report_attached_by_a_person_is_neither() -> None:
    assert _verdict(ATTACHED_REPORT) == "none"


SUCCESS_DSN = b"""\
From: MAILER-DAEMON@mx.acme-homes.example (Mail Delivery System)
To: warranty@acme-homes.example
Subject: Successful Mail Delivery Report
Return-Path: <>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="ok"

--ok
Content-Type: message/delivery-status

Final-Recipient: rfc822; kelly@frontrange-plumbing.example.net
Action: delivered
Status: 2.0.0

--ok--
"""


def test_success_notification_is_machine_mail_but_no_bounce() -> None:
    msg = parse_message(SUCCESS_DSN)
    assert detect_bounce(msg, SUCCESS_DSN) is None
    assert detect_auto_reply(msg) is not None


def test_read_receipt_is_machine_mail() -> None:
    raw = b"""\
From: Tara Jennings <tjennings@highline-roofing.example.org>
To: warranty@acme-homes.example
Subject: Read: [WO-55] Roofing
MIME-Version: 1.0
Content-Type: multipart/report; report-type=disposition-notification; boundary="r"

--r
Content-Type: message/disposition-notification

Final-Recipient: rfc822; tjennings@highline-roofing.example.org
Disposition: automatic-action/MDN-sent-automatically; displayed

--r--
"""
    msg = parse_message(raw)
    assert detect_bounce(msg, raw) is None
    reply = detect_auto_reply(msg)
    assert reply is not None and "disposition-notification" in reply.reason


# --- hand-written automatic replies and people's mail ----------------------------------------

HUMAN_HEADERS = """\
From: {sender}
To: Acme Homes Warranty <warranty+wo55.itvrlc@acme-homes.example>
Return-Path: <{address}>
Date: Mon, 7 Dec 2026 15:02:14 +0000
Message-ID: <m1@mail.example.org>
Subject: {subject}
{extra}MIME-Version: 1.0
Content-Type: text/plain; charset="utf-8"
Content-Transfer-Encoding: 8bit

{body}
"""


def _mail(subject: str, *, extra: str = "", body: str = "Thanks, see you Tuesday.",
          address: str = "tjennings@highline-roofing.example.org") -> bytes:
    text = HUMAN_HEADERS.format(sender=f"Tara Jennings <{address}>", address=address,
                                subject=subject, extra=extra, body=body)
    return text.encode("utf-8")


@pytest.mark.parametrize(
    "subject",
    [
        "Abwesenheitsnotiz: [WO-55] Roofing: Shingles missing",
        "=?utf-8?q?Abwesenheitsnotiz=3A_=5BWO-55=5D_Dach?=",
        "Automatische Antwort: [WO-55] Roofing",
        "Automatic reply: [WO-55] Roofing: Shingles missing",
        "Out of Office: [WO-55] Roofing",
        "Out of Office AutoReply: [WO-55] Roofing",
        "Out of Office",
        "AutoReply: [WO-55] Roofing",
        "Auto: [WO-55] Roofing",
        "Réponse automatique : [WO-55] Toiture",
        "Respuesta automática: [WO-55] Techo",
        "Fuera de la oficina: [WO-55] Techo",
        "Afwezig: [WO-55] Dak",
        "Automatisch antwoord: [WO-55] Dak",
        "Resposta automática: [WO-55] Telhado",
        "[AUTO GENERATED] Your ticket was received",
        "[EXTERNAL] Automatic reply: [WO-55] Roofing",
        "自动回复: [WO-55] Roofing",
    ],
)
def test_localized_vacation_subjects(subject: str) -> None:
    reply = detect_auto_reply(parse_message(_mail(subject)))
    assert reply is not None
    assert reply.kind == "auto-replied"


def test_german_vacation_notice_with_headers() -> None:
    raw = _mail(
        "Abwesenheitsnotiz: [WO-55] Dach: Schindeln fehlen",
        extra="Auto-Submitted: auto-replied\nX-Auto-Response-Suppress: All\n",
        body="Vielen Dank für Ihre Nachricht. Ich bin bis zum 11.12. nicht im Büro.",
    )
    msg = parse_message(raw)
    assert detect_bounce(msg, raw) is None
    assert detect_auto_reply(msg) == AutoReply("Auto-Submitted: auto-replied", "auto-replied")


@pytest.mark.parametrize(
    "subject",
    [
        "Re: Automatic sprinkler timer not working",
        "Automatic garage door opener stopped",
        "RE: Automatic reply: [WO-55] Roofing",  # a person answering a vacation notice
        "Out of office next week, can we do Monday?",
        "Auto insurance paperwork for the hail claim",
        "Re: [WO-55] Out of office until the 11th",
        "Re: Undeliverable address on your form",
        "Delivery notification: cabinets arrive Tuesday",
        "Re: [AUTO GENERATED] Your ticket was received",
    ],
)
def test_people_writing_about_automatic_things_are_not_flagged(subject: str) -> None:
    assert _verdict(_mail(subject)) == "none"


def test_x_auto_response_suppress_alone_is_a_person() -> None:
    raw = _mail(
        "RE: [WO-55] Roofing: Shingles missing",
        extra="X-Auto-Response-Suppress: DR, RN, NRN, OOF, AutoReply\nThread-Index: AQHa1b2c\n",
        body="Wednesday at 8 works for us.",
    )
    assert _verdict(raw) == "none"


@pytest.mark.parametrize(
    ("extra", "reason", "kind"),
    [
        ("Auto-Submitted: auto-generated\n", "Auto-Submitted: auto-generated", "auto-generated"),
        ("Auto-Submitted: auto-notified; owner-email=x@example.org\n",
         "Auto-Submitted: auto-notified; owner-email=x@example.org", "auto-generated"),
        ("Precedence: bulk\n", "Precedence: bulk", "bulk"),
        ("Precedence: junk\n", "Precedence: junk", "bulk"),
        ("Precedence: auto_reply\n", "Precedence: auto_reply", "auto-replied"),
        ("X-Autoreply: yes\n", "X-Autoreply: yes", "auto-replied"),
        ("X-Autorespond: Tara is away\n", "X-Autorespond: Tara is away", "auto-replied"),
        ("List-Unsubscribe: <mailto:leave@lists.example.org>\n",
         "List-Unsubscribe: <mailto:leave@lists.example.org>", "list"),
    ],
)
def test_automation_headers(extra: str, reason: str, kind: str) -> None:
    assert detect_auto_reply(parse_message(_mail("Hello", extra=extra))) == AutoReply(reason, kind)


def test_auto_submitted_no_is_a_person() -> None:
    assert _verdict(_mail("Re: [WO-55] Roofing", extra="Auto-Submitted: no\n")) == "none"


def test_null_return_path_is_machine_mail() -> None:
    raw = _mail("Your ticket", body="We got it.").replace(
        b"Return-Path: <tjennings@highline-roofing.example.org>", b"Return-Path: <>"
    )
    assert detect_auto_reply(parse_message(raw)) == AutoReply("null Return-Path <>")


def test_no_reply_sender_is_machine_mail() -> None:
    reply = detect_auto_reply(parse_message(_mail("Your invoice", address="no-reply@example.com")))
    assert reply is not None and "no-reply@example.com" in reply.reason


LIST_MAIL = b"""\
From: Some One <some@one.example.com>
To: hoa-announce@lists.example.org
Subject: Pool closes for the season on Friday
Date: Mon, 7 Dec 2026 15:02:14 +0000
List-Id: Meadowlark HOA announcements <hoa-announce.lists.example.org>
List-Post: <mailto:hoa-announce@lists.example.org>
List-Unsubscribe: <mailto:hoa-announce-leave@lists.example.org>
Content-Type: text/plain

The pool closes on Friday.
"""


def test_list_mail() -> None:
    reply = detect_auto_reply(parse_message(LIST_MAIL))
    assert reply is not None
    assert reply.kind == "list"
    assert reply.reason.startswith("List-Id:")


def test_our_own_group_relaying_people_mail_is_not_list_mail() -> None:
    relayed = (
        LIST_MAIL.replace(b"hoa-announce.lists.example.org", b"warranty.acme-homes.example")
        .replace(b"hoa-announce@lists.example.org", b"warranty@acme-homes.example")
        .replace(b"hoa-announce-leave@lists.example.org", b"warranty+leave@acme-homes.example")
        .replace(b"Content-Type", b"Precedence: list\nContent-Type")
    )
    msg = parse_message(relayed)
    assert detect_auto_reply(msg) is not None
    assert detect_auto_reply(msg, own_list_domains=["acme-homes.example"]) is None
    # Someone else's list stays list mail even when we name our domains.
    assert detect_auto_reply(parse_message(LIST_MAIL), own_list_domains=["acme-homes.example"])


def test_broken_input_never_raises() -> None:
    for raw in (b"", b"\x00\xff garbage", b"Content-Type: multipart/report\n\n--x\n",
                b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\n\n"
                b"--x\nContent-Type: message/delivery-status\n\nAction: failed\n--x"):
        msg = parse_message(raw)
        detect_bounce(msg, raw)
        detect_bounce(msg)
        detect_auto_reply(msg)


HTML_ONLY_NDR = b"""\
From: Microsoft Exchange <MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@contoso.example.com>
To: warranty@acme-homes.example
Subject: Undeliverable: [WO-18] Appliances: Dishwasher not draining
Date: Fri, 11 Dec 2026 08:00:00 -0800
MIME-Version: 1.0
Content-Type: text/html; charset="us-ascii"

<html><body><p><b><font color="#000066">Delivery has failed to these recipients or
groups:</font></b></p>
<p><a href="mailto:btate@rm-appliance.example.com">btate@rm-appliance.example.com</a><br>
The email address you entered couldn't be found.</p>
<p>Diagnostic information for administrators:</p>
<p>Remote Server returned '550 5.1.1 RESOLVER.ADR.RecipNotFound; not found'</p>
</body></html>
"""


def test_html_only_exchange_ndr_from_an_unusual_sender() -> None:
    """No DSN part and no postmaster address: the subject and the NDR wording together."""
    bounce = detect_bounce(parse_message(HTML_ONLY_NDR), HTML_ONLY_NDR)
    assert bounce is not None and bounce.permanent
    assert bounce.failed_recipients == ("btate@rm-appliance.example.com",)
    assert bounce.status_codes == ("5.1.1",)


def test_ndr_wording_in_a_persons_mail_is_not_enough() -> None:
    raw = HTML_ONLY_NDR.replace(
        b"Subject: Undeliverable: [WO-18]", b"Subject: Re: [WO-18]"
    )
    assert _verdict(raw) == "none"


def test_web_form_relayed_from_no_reply_with_reply_to_a_person_is_a_person() -> None:
    raw = _mail("Warranty request: leak under sink", address="no-reply@acme-homes.example",
                extra="Reply-To: Rosa Delgado <rosa.delgado@example.com>\n",
                body="Name: Rosa Delgado\nIssue: water under the kitchen sink")
    assert _verdict(raw) == "none"
