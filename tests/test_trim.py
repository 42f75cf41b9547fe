"""Reply trimming: hand-written cases per client style, and floors on the shared corpus."""

from __future__ import annotations

import importlib.util
import sys
from email.message import EmailMessage
from pathlib import Path

import pytest

from warrantyd.parsers.html import html_to_text, split_html_reply
from warrantyd.parsers.message import parse_message
from warrantyd.parsers.trim import extract_reply, split_reply

REPO_ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location(
        "measure_trimming", REPO_ROOT / "bench" / "measure_trimming.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


# --- corpus floors ----------------------------------------------------------------------

FLOORS = {"email_reply_trimmer": 0.95, "discourse": 0.85, "email_reply_parser": 0.95}
"""A little under what the trimmer reaches, so that a regression fails."""


@pytest.fixture(scope="module")
def corpus_rates(shared_dir: Path) -> dict[str, tuple[int, int]]:
    bench = _bench()
    return bench.rates(bench.all_outcomes(shared_dir / "corpus"))


@pytest.mark.parametrize("source", sorted(FLOORS))
def test_corpus_match_rate_stays_above_floor(
    corpus_rates: dict[str, tuple[int, int]], source: str
) -> None:
    ok, total = corpus_rates[source]
    assert total >= 10
    assert ok / total >= FLOORS[source], f"{source}: {ok}/{total}"


def test_huge_and_pathological_bodies_are_trimmed(shared_dir: Path) -> None:
    base = shared_dir / "corpus" / "email_reply_parser" / "emails"
    long_quote = (base / "email_long_quote.txt").read_text(encoding="utf-8", errors="replace")
    reply = split_reply(long_quote)
    assert reply.new_text.startswith("Hi folks")
    assert "riak-users mailing list" in reply.quoted_text
    pathological = (base / "pathological.txt").read_text(encoding="utf-8", errors="replace")
    reply = split_reply(pathological)
    assert reply.new_text or reply.quoted_text
    # A synthetic worst case for backtracking: long lines of near-markers.
    nasty = ("On " + "1, " * 5000 + "wrote\n") * 50 + ("> " + "-" * 10000 + "\n") * 50
    split_reply(nasty)


# --- plain-text client styles -----------------------------------------------------------


def test_gmail_top_post() -> None:
    reply = split_reply(
        "We can come Friday at 9.\n\nOn Tue, Dec 1, 2026 at 9:14 AM Acme Homes Warranty <\n"
        "warranty@acme-homes.example> wrote:\n> Hello,\n> WO-12 needs a plumber.\n"
    )
    assert reply.new_text == "We can come Friday at 9."
    assert reply.quoted_text.startswith("On Tue, Dec 1, 2026")
    assert "WO-12" in reply.quoted_text


def test_outlook_header_block_with_underscore_rule() -> None:
    reply = split_reply(
        "accept 1, 3\n\nSam\n\n________________________________\n"
        "From: Acme Homes Warranty <warranty@acme-homes.example>\n"
        "Sent: Wednesday, December 2, 2026 8:30 AM\nTo: Sam\nSubject: Digest\n\n1. WO-5 drywall\n"
    )
    assert reply.new_text == "accept 1, 3\n\nSam"
    assert "WO-5" in reply.quoted_text


def test_outlook_original_message_separator() -> None:
    reply = split_reply(
        "Thanks, Renee\n\n-----Original Message-----\nFrom: Acme <w@acme-homes.example>\n"
        "Sent: Tuesday\nTo: Renee\nSubject: hi\n\nold text\n"
    )
    assert reply.new_text == "Thanks, Renee"
    assert reply.quoted_text.startswith("-----Original Message-----")


def test_german_outlook_header_block() -> None:
    reply = split_reply(
        "Passt, danke.\n\nVon: Acme <w@acme-homes.example>\nGesendet: Montag, 7. Dezember 2026\n"
        "An: Max\nBetreff: WO-3\n\nAlter Text\n"
    )
    assert reply.new_text == "Passt, danke."


@pytest.mark.parametrize(
    "attribution",
    [
        "Am 15.11.2016 um 12:00 schrieb Max Mustermann <max@example.com>:",
        "Op 2 feb. 2015 om 05:28 heeft Jan <jan@example.com> het volgende geschreven:",
        "Le 16 nov. 2016 à 02:22, Erlend <e@example.com> a écrit :",
        "El lun, 7 dic 2026 a las 10:15, Acme (<w@acme-homes.example>) escribió:",
        "Il giorno 3 mar 2016, alle ore 17:21, Mario <m@example.com> ha scritto:",
        '23 mar 2017 21:25 "Neil" <meta@example.com> napisał(a):',
        "15 ноября 2016 г., в 12:00, Иван <ivan@example.com> написал:",
        "Den 3 mars 2016 kl. 17:21 skrev Sven <s@example.com>:",
        "Em 3 de mar de 2016, às 17:21, João <j@example.com> escreveu:",
        "在 2016年11月15日 12:00，张三 <z@example.com> 写道：",
        "2016-03-03 17:21 GMT+01:00 Some One <some@example.com>:",
    ],
)
def test_attribution_lines_in_many_languages(attribution: str) -> None:
    reply = split_reply(f"New text here.\n\n{attribution}\n\n> old text\n")
    assert reply.new_text == "New text here."
    assert "old text" in reply.quoted_text


def test_attribution_wrapped_over_two_lines() -> None:
    reply = split_reply(
        "Okay.\n\nErlend <meta@example.com> schrieb am Di., 16. Aug. 2016\num 12:52 Uhr:\n\n> old\n"
    )
    assert reply.new_text == "Okay."


def test_wrote_in_ordinary_sentence_is_not_an_attribution() -> None:
    text = "When I finally figured it out, I wrote one of my own:\n\nhttp://example.com/guide"
    assert split_reply(text).new_text == text


def test_inline_answers_keep_their_context_and_drop_the_attribution() -> None:
    reply = split_reply(
        "On Mon, Dec 7, 2026 at 8:00 AM Acme <w@acme-homes.example> wrote:\n\n"
        "> 1. WO-498 plumbing\naccept\n>\n> 2. WO-499 tile\nreject 2: maintenance\n>\n"
        "> How to reply: one command per line\n"
    )
    assert reply.new_text == (
        "> 1. WO-498 plumbing\naccept\n>\n> 2. WO-499 tile\nreject 2: maintenance"
    )
    assert reply.authored_text == "accept\nreject 2: maintenance"
    assert "How to reply" in reply.quoted_text
    assert "On Mon, Dec 7" in reply.quoted_text


def test_above_quote_stops_at_the_first_quoted_line() -> None:
    reply = split_reply(
        "accept 1\n\nOn Mon, Dec 7, 2026 at 8:00 AM Acme <w@acme-homes.example> wrote:\n\n"
        "> 1. WO-498 plumbing\naccept 2\n>\n> 2. WO-499 tile\nreject 2\n>\n> How to reply\n"
    )
    assert "accept 2" in reply.new_text
    assert reply.above_quote == "accept 1"


def test_forward_without_comment_is_kept_but_nothing_is_above_the_quote() -> None:
    reply = split_reply(
        "From: Acme <w@acme-homes.example>\nSent: Tuesday\nTo: Renee\nSubject: hi\n\n"
        "The garage door is stuck.\n"
    )
    assert reply.new_text == "The garage door is stuck."
    assert reply.below_header
    assert reply.above_quote == ""
    assert not split_reply("Thanks.\n\nFrom: A <a@example.com>\nSent: x\nTo: y\n").below_header


def test_bottom_post_drops_the_quote_it_answers() -> None:
    reply = split_reply(
        "On Mon, Aug 19, 2013 at 2:36 AM, Some One <a@example.com> wrote:\n\n> question?\n\n"
        "The answer.\n"
    )
    assert reply.new_text == "The answer."


def test_quote_followed_only_by_mailing_list_footer_is_a_top_post() -> None:
    reply = split_reply(
        "Thanks.\n\nOn 01/03/11 7:07 PM, Russell wrote:\n> old\n\n\n"
        "_______________________________________________\nlist mailing list\n"
    )
    assert reply.new_text == "Thanks."


@pytest.mark.parametrize(
    "footer",
    [
        "Sent from my iPhone",
        "Sent from my Samsung Galaxy smartphone.",
        "Get Outlook for iOS",
        "Get Outlook for Android<https://aka.ms/ghei36>",
        "Sent from Yahoo Mail on Android",
        "Enviado desde mi iPhone",
        "Von meinem iPhone gesendet",
        "Envoyé de mon iPhone",
        "Sent from my cell, please excuse any typos.",
    ],
)
def test_device_footers_are_removed(footer: str) -> None:
    reply = split_reply(f"We'll be there at 2.\n\n{footer}\n")
    assert reply.new_text == "We'll be there at 2."
    assert footer.split("<")[0] in reply.quoted_text


def test_footer_alone_means_no_new_text() -> None:
    reply = split_reply("Sent from my iPhone\n\n> On Dec 4, 2026, at 1:00 PM, Acme wrote:\n> x\n")
    assert reply.new_text == ""


def test_sentence_starting_like_a_footer_is_kept() -> None:
    text = "Here it is\n\nSent from my desk, is much easier than my mobile phone."
    assert split_reply(text).new_text == text


def test_dash_dash_signature() -> None:
    reply = split_reply("accept 2\n\n-- \nPat Nguyen\nWarranty Coordinator\n")
    assert reply.new_text == "accept 2"
    assert reply.quoted_text.startswith("--")


def test_bullet_lists_are_not_signatures() -> None:
    text = "Items:\n\n- kitchen faucet drips\n- garage door squeaks\n\n-- \nMike"
    assert split_reply(text).new_text == "Items:\n\n- kitchen faucet drips\n- garage door squeaks"
    text2 = "Please fix:\n\n-cracked tile\n-loose rail"
    assert split_reply(text2).new_text == text2


def test_forward_without_comment_keeps_forwarded_body() -> None:
    reply = split_reply(
        "---------- Forwarded message ---------\nFrom: Leila <l@example.org>\n"
        "Date: Mon, Feb 2, 2026\nSubject: leak\nTo: Omar <o@example.org>\n\n"
        "There is water under the fridge.\n"
    )
    assert reply.new_text == "There is water under the fridge."


def test_reply_above_this_line_marker() -> None:
    reply = split_reply("Done.\n## Please type your reply above this line ##\nold stuff")
    assert reply.new_text == "Done."


def test_text_without_quote_is_unchanged() -> None:
    text = "Hi,\n\nThe hall light flickers.\n\nThanks,\nAna"
    assert split_reply(text) == type(split_reply(text))(new_text=text, quoted_text="")


# --- HTML -------------------------------------------------------------------------------


def _html_mail(html: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Vendor <v@example.com>"
    msg["To"] = "warranty@acme-homes.example"
    msg["Subject"] = "RE: [WO-12]"
    msg.set_content(html, subtype="html")
    return msg.as_bytes()


def test_html_gmail_quote_and_signature() -> None:
    msg = parse_message(_html_mail(
        '<div dir="ltr">Confirmed for <b>Monday</b>.<div><br></div>'
        '<div class="gmail_signature">Carla<br>Summit Electric</div></div><br>'
        '<div class="gmail_quote"><div class="gmail_attr">On Mon, Dec 7, 2026 Acme wrote:'
        '</div><blockquote class="gmail_quote">WO-12 details</blockquote></div>'
    ))
    reply = extract_reply(msg)
    assert reply.new_text == "Confirmed for Monday."
    assert "Carla" in reply.quoted_text and "WO-12 details" in reply.quoted_text


def test_html_outlook_reply_header() -> None:
    msg = parse_message(_html_mail(
        '<div class="WordSection1"><p class="MsoNormal">accept 1</p>'
        '<p class="MsoNormal">&nbsp;</p><p class="MsoNormal">Pat</p>'
        '<div style="border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0in 0in 0in">'
        '<p class="MsoNormal"><b>From:</b> Acme</p></div><p>1. WO-5</p></div>'
    ))
    reply = extract_reply(msg)
    assert reply.new_text == "accept 1\n\nPat"
    assert "WO-5" in reply.quoted_text


def test_html_outlook_web_divrplyfwdmsg() -> None:
    new, quoted = split_html_reply(
        '<div>OK for Thursday</div><hr style="display:inline-block;width:98%" tabindex="-1">'
        '<div id="divRplyFwdMsg"><b>From:</b> Acme</div><div>old</div>'
    )
    assert new == "OK for Thursday"
    assert "old" in quoted


def test_html_apple_and_thunderbird_quotes() -> None:
    msg = parse_message(_html_mail(
        '<div>Done today.</div><div><br><blockquote type="cite">'
        '<div>On Dec 3, 2026, at 10:33 AM, Acme &lt;w@acme-homes.example&gt; wrote:</div>'
        '<div>WO-9 grading</div></blockquote></div>'
    ))
    assert extract_reply(msg).new_text == "Done today."
    new, quoted = split_html_reply(
        '<p>Yes</p><div class="moz-cite-prefix">On 12/4/26 Acme wrote:<br></div>'
        '<blockquote type="cite">old</blockquote>'
    )
    assert new == "Yes" and "old" in quoted


def test_html_to_text_keeps_structure_without_markdown() -> None:
    text = html_to_text(
        "<html><head><style>p{color:red}</style></head><body><p>Hello <b>there</b></p>"
        "<ul><li>one</li><li>two</li></ul><ol><li>first</li></ol>"
        '<p>See <a href="https://example.com/x">the page</a><br>line two</p>'
        "<script>alert(1)</script></body></html>"
    )
    assert text == (
        "Hello there\n- one\n- two\n1. first\n\nSee the page <https://example.com/x>\nline two"
    )
