"""The staff command grammar: one test per feature and per error, then the labelled set."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from warrantyd.parsers.commands import HELP_TEXT, VERBS, Command, parse_commands

DIGEST = ["WO-241", "WO-242", "WO-243"]


def only(text: str, digest: list[str] | None = DIGEST) -> Command:
    """The single command of a valid reply."""
    parse = parse_commands(text, digest)
    assert parse.valid, parse.errors
    assert len(parse.commands) == 1, parse.commands
    return parse.commands[0]


def error_of(text: str, digest: list[str] | None = DIGEST) -> str:
    """All error messages of an invalid reply, joined."""
    parse = parse_commands(text, digest)
    assert not parse.valid
    assert parse.errors
    return "\n".join(e.message for e in parse.errors)


# --- each verb -------------------------------------------------------------------------


def test_accept_items() -> None:
    command = only("accept 1, 3")
    assert (command.verb, command.items, command.line, command.source) == (
        "accept",
        (1, 3),
        1,
        "accept 1, 3",
    )


@pytest.mark.parametrize(
    "text",
    ["accept 1,3", "accept 1 , 3", "accept 1 and 3", "accept 1 & 3", "accept #1, #3",
     "accept item 1 and item 3", "accept items 1 and 3", "Accept  1   3", "ACCEPT 1,3."],
)
def test_item_list_spellings(text: str) -> None:
    assert only(text).items == (1, 3)


def test_item_range() -> None:
    assert only("accept 1-3").items == (1, 2, 3)
    assert only("accept 1–3").items == (1, 2, 3)  # en dash from a phone


def test_accept_all_expands_to_the_digest() -> None:
    command = only("Accept all")
    assert command.all and command.items == (1, 2, 3)
    unknown = only("accept all", None)
    assert unknown.all and unknown.items == ()


def test_accept_wo_ids_resolve_to_items() -> None:
    command = only("accept WO-241, wo 243")
    assert command.items == (1, 3)
    assert command.wo == ("WO-241", "WO-243")


def test_wo_ids_stay_unresolved_without_a_digest() -> None:
    command = only("accept WO-241", None)
    assert command.items == () and command.wo == ("WO-241",)


def test_edit_description() -> None:
    command = only("edit 2: Replace the cracked drywall in the upstairs hall; match texture.")
    assert command.items == (2,)
    assert command.text == "Replace the cracked drywall in the upstairs hall; match texture."
    assert command.field is None


def test_edit_continues_until_blank_line() -> None:
    parse = parse_commands(
        "edit 1: Replace the cracked tile on the tub apron and regrout the\n"
        "surrounding joints;   match the grout.\n"
        "\n"
        "Sam Okafor\n"
        "Warranty Field Manager",
        DIGEST,
    )
    assert parse.valid
    (edit,) = parse.commands
    assert edit.text == (
        "Replace the cracked tile on the tub apron and regrout the surrounding joints; "
        "match the grout."
    )
    assert edit.source.count("\n") == 1


def test_edit_continues_until_next_command() -> None:
    parse = parse_commands("edit 1: Replace the siding\nand paint to match.\naccept 1", DIGEST)
    assert parse.valid
    assert [c.verb for c in parse.commands] == ["edit", "accept"]
    assert parse.commands[0].text == "Replace the siding and paint to match."
    assert parse.commands[1].line == 3


def test_edit_with_text_on_the_next_line() -> None:
    parse = parse_commands("edit 2:\nRe-hang the closet shelf into studs", DIGEST)
    assert parse.valid
    assert parse.commands[0].text == "Re-hang the closet shelf into studs"


def test_edit_fields() -> None:
    trade = only("edit 2 trade: plumbing")
    assert (trade.field, trade.text) == ("trade", "plumbing")
    priority = only("Edit 3 priority: Urgent")
    assert (priority.field, priority.text) == ("priority", "Urgent")
    assert "not a priority" in error_of("edit 3 priority: asap")


def test_reject_with_and_without_reason() -> None:
    assert only("reject 3: homeowner maintenance (caulk)").text == (
        "homeowner maintenance (caulk)"
    )
    assert only("reject 3").text is None
    assert only("Reject 3 – not covered").text == "not covered"
    assert only("reject 2: duplicate of 1: same leak").text == "duplicate of 1: same leak"


def test_wrapped_reject_reason_is_joined() -> None:
    parse = parse_commands(
        "reject 2: this is the same leak that the plumber already looked at last\n"
        "week under WO-180\n"
        "accept 1",
        DIGEST,
    )
    assert parse.valid
    assert parse.commands[0].text == (
        "this is the same leak that the plumber already looked at last week under WO-180"
    )


@pytest.mark.parametrize(
    ("text", "vendor", "items"),
    [
        ("assign 1 to Ace Plumbing", "Ace Plumbing", (1,)),
        ("assign 1 ace@example.com", "ace@example.com", (1,)),
        ("assign 1: Mesa Drywall & Paint", "Mesa Drywall & Paint", (1,)),
        ("assign 1, 2 to Hank's Handyman Services.", "Hank's Handyman Services", (1, 2)),
        ("assign 2 to Cornerstone Siding, thanks", "Cornerstone Siding", (2,)),
        ("assign Ace Plumbing to 3", "Ace Plumbing", (3,)),
        ("assign 1 to Accept Roofing", "Accept Roofing", (1,)),
    ],
)
def test_assign(text: str, vendor: str, items: tuple[int, ...]) -> None:
    command = only(text)
    assert (command.vendor, command.items) == (vendor, items)


def test_merge() -> None:
    assert only("merge 1 2").items == (1, 2)
    assert only("merge 1, 2 and 3").items == (1, 2, 3)
    assert only("merge 1 with 3").items == (1, 3)
    assert "two or more" in error_of("merge 1")


def test_new_continues() -> None:
    command = only("new: Re-seal the shower door,\nprimary bath")
    assert (command.items, command.text) == ((), "Re-seal the shower door, primary bath")


def test_wo_commands() -> None:
    parse = parse_commands(
        "complete WO-188\nnote WO-201: gate code 4471, dog in back yard\nreopen wo 176.", DIGEST
    )
    assert parse.valid
    complete, note, reopen = parse.commands
    assert (complete.verb, complete.wo, complete.items) == ("complete", ("WO-188",), ())
    assert (note.wo, note.text) == (("WO-201",), "gate code 4471, dog in back yard")
    assert reopen.wo == ("WO-176",)


def test_note_on_a_digest_item_names_its_work_order() -> None:
    assert only("note 2: gate code 1234").wo == ("WO-242",)


def test_complete_and_reopen_take_digest_items_too() -> None:
    """The follow-up digest lists work in progress by number: "complete 3" names WO-243."""
    done = only("complete 3")
    assert (done.verb, done.wo, done.items) == ("complete", ("WO-243",), ())
    assert only("Reopen #1").wo == ("WO-241",)
    assert "item 5 is not in this digest" in error_of("complete 5")
    assert "needs a work order number here" in error_of("complete 3", digest=None)


@pytest.mark.parametrize("text", ["help", "Help?", "HELP!", "help please"])
def test_help(text: str) -> None:
    assert only(text).verb == "help"


def test_help_text_lists_every_verb() -> None:
    for verb in VERBS:
        assert verb in HELP_TEXT


# --- phones, capitals, punctuation -----------------------------------------------------


def test_phone_keyboard_text() -> None:
    parse = parse_commands(
        "Accept 1.\u00a0\nReject 2 \u2014 homeowner\u2019s own fixture\nAssign 1 to Hank\u2019s",
        DIGEST,
    )
    assert parse.valid, parse.errors
    accept, reject, assign = parse.commands
    assert accept.items == (1,)
    assert reject.text == "homeowner\u2019s own fixture"  # kept as written
    assert assign.vendor == "Hank\u2019s"


def test_bullets_and_courtesies_before_a_command() -> None:
    parse = parse_commands("- OK, accept 1\n• please reject 2: dup", DIGEST)
    assert parse.valid
    assert [(c.verb, c.items) for c in parse.commands] == [("accept", (1,)), ("reject", (2,))]


def test_trailing_remark_in_parentheses_is_ignored() -> None:
    assert only("accept 1 (the gutter one)").items == (1,)


# --- where commands start and stop ------------------------------------------------------


def test_greeting_before_commands_is_skipped() -> None:
    parse = parse_commands("Hi team,\nA few for today.\n\naccept 1\nreject 2", DIGEST)
    assert parse.valid
    assert [c.line for c in parse.commands] == [4, 5]


def test_sign_off_and_signature_end_the_commands() -> None:
    parse = parse_commands(
        "accept 3\nThanks, Pat\nNote: this message is confidential\naccept 1", DIGEST
    )
    assert parse.valid
    assert [c.items for c in parse.commands] == [(3,)]


def test_free_text_after_a_blank_line_is_not_read() -> None:
    parse = parse_commands(
        "accept 1\n\nPS - can someone call the Lopez family?\n\nHelp desk: 303-555-0100",
        DIGEST,
    )
    assert parse.valid
    assert len(parse.commands) == 1


def test_commands_after_a_blank_line_still_count() -> None:
    parse = parse_commands("accept 1\n\nreject 2: duplicate\n\nDana", DIGEST)
    assert [c.verb for c in parse.commands] == ["accept", "reject"]


@pytest.mark.parametrize(
    "tail",
    [
        "> accept 2",
        "On Mon, Dec 7, 2026 at 8:00 AM Acme Homes Warranty <\nwarranty@acme-homes.example> "
        "wrote:\n> accept 2",
        "________________________________\nFrom: Acme\nSent: Monday\nTo: Pat\n  accept 2",
        "-----Original Message-----\naccept 2",
        "From: Acme <warranty@acme-homes.example>\nSent: Monday\nTo: Pat\nSubject: x\naccept 2",
        "-- \naccept 2",
        "Sent from my iPhone\naccept 2",
        "Get Outlook for iOS\naccept 2",
    ],
)
def test_quote_signature_and_footer_are_never_read(tail: str) -> None:
    parse = parse_commands(f"accept 1\n{tail}", DIGEST)
    assert parse.valid
    assert [c.items for c in parse.commands] == [(1,)]


def test_untrimmed_quote_only_reply_has_no_commands() -> None:
    text = (
        "Sent from my iPhone\n\n> On Dec 4, 2026, at 1:00 PM, Acme wrote:\n>\n"
        ">   accept 1, 3\n>   help\n"
    )
    assert "no commands" in error_of(text)


def test_digest_sent_back_without_a_typed_line_has_no_commands() -> None:
    digest = "Approval digest #7\n\nHow to reply, for example:\n  accept 1\n  merge 1 2\n"
    for header in (
        "From: Acme <warranty@acme-homes.example>\nSent: Monday\nTo: Pat\nSubject: x\n\n",
        "---------- Forwarded message ---------\nFrom: Acme <w@a.example>\nDate: Mon\n"
        "Subject: x\nTo: Pat\n\n",
    ):
        assert "no commands" in error_of(header + digest)


# --- errors ----------------------------------------------------------------------------


def test_no_commands() -> None:
    parse = parse_commands("looks good, thanks", DIGEST)
    assert not parse.valid
    assert parse.commands == ()
    assert [e.line for e in parse.errors] == [0]
    assert parse.errors[0].message.startswith("no commands")
    assert not parse_commands("", DIGEST).valid


def test_item_not_in_digest_names_the_range() -> None:
    parse = parse_commands("accept 1, 4", DIGEST)
    assert not parse.valid
    assert parse.commands[0].items == (1, 4)  # still shown as written
    assert parse.errors[0].message == "line 1: item 4 is not in this digest (items 1-3)"
    assert "only item 1" in error_of("merge 1 2", ["WO-9"])


def test_wo_not_in_digest() -> None:
    assert "WO-999 is not in this digest" in error_of("accept WO-999")


def test_item_range_is_not_checked_without_a_digest() -> None:
    assert only("accept 7", None).items == (7,)


def test_accepted_and_rejected() -> None:
    message = error_of("accept 1\nreject 1: not covered")
    assert "line 2: item 1 is both accepted (line 1) and rejected (line 2)" in message
    assert "both accepted" in error_of("accept all\nreject 2")


def test_edited_and_rejected() -> None:
    assert "both edited" in error_of("edit 2: new text\nreject 2")


def test_assign_without_vendor() -> None:
    parse = parse_commands("accept 1, 2\nassign 3 to", DIGEST)
    assert not parse.valid
    assert parse.commands[1].vendor is None
    assert parse.errors[0].message.startswith("line 2: assign needs a vendor after 'to'")
    assert "needs a vendor" in error_of("assign 3")


def test_edit_without_description() -> None:
    parse = parse_commands("edit 2\naccept 1", DIGEST)
    assert not parse.valid
    assert parse.commands[0].text is None
    assert parse.errors[0].message.startswith("line 1: edit needs the new description")


def test_note_without_text() -> None:
    assert "note needs the text" in error_of("note WO-12")


def test_two_commands_on_one_line() -> None:
    for text in ("accept 1 reject 2", "accept 1, reject 2", "accept 1; assign 2 to Ace",
                 "assign 1 to Ace, accept 1"):
        assert "two commands on one line" in error_of(text), text


def test_misspelled_command_suggests_the_right_one() -> None:
    parse = parse_commands("accept 1\nacept 2", DIGEST)
    assert not parse.valid
    assert [c.verb for c in parse.commands] == ["accept"]  # the unknown line is left out
    (error,) = parse.errors
    assert error.line == 2 and error.source == "acept 2"
    assert "did you mean 'accept 2'?" in error.message
    assert "did you mean 'reject 3" in error_of("rejct 3: dup")
    assert "did you mean 'accept 2'" in error_of("Except 2")  # phone autocorrect
    assert "did you mean 'accept 1'" in error_of("approve 1")


def test_leftover_words_after_items() -> None:
    assert "could not read 'but not 3'" in error_of("accept 1 but not 3")


def test_complete_needs_a_work_order() -> None:
    assert "complete WO-12" in error_of("complete")
    assert "complete WO-12" in error_of("complete 2", digest=None)


def test_command_word_with_prose_directly_under_a_command_is_an_error() -> None:
    assert "not a command" in error_of("accept 2\nNote: homeowner is away")


def test_one_error_means_nothing_is_valid() -> None:
    parse = parse_commands("accept 1\naccept 2\nreject 9", DIGEST)
    assert len(parse.commands) == 3
    assert not parse.valid


def test_signature_with_phone_number_is_not_a_typo() -> None:
    parse = parse_commands("accept 1\nNate 303-555-0142", DIGEST)
    assert parse.valid


# --- the labelled set --------------------------------------------------------------------


def _load_bench() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "bench" / "eval_staff_replies.py"
    spec = importlib.util.spec_from_file_location("eval_staff_replies", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def test_labelled_staff_replies_meet_the_floors(shared_dir: Path) -> None:
    bench = _load_bench()
    report = bench.evaluate(shared_dir / "eval" / "staff_replies")
    valid_ok, valid_n = report.valid_exact
    invalid_ok, invalid_n = report.invalid_rejected
    assert valid_n and invalid_n
    details = "\n\n".join(bench._describe(r) for r in report.mismatches)
    assert valid_ok >= bench.VALID_FLOOR * valid_n, details
    assert invalid_ok >= bench.INVALID_FLOOR * invalid_n, details


def test_edit_field_without_a_value_is_an_error_not_a_description() -> None:
    for text, hint in (("edit 1 trade:", "trade such as"), ("edit 1 priority:", "urgent")):
        parsed = parse_commands(text, ["WO-1"])
        assert not parsed.valid
        assert hint in parsed.errors[0].message


def test_a_digest_forwarded_back_without_comment_gives_no_commands() -> None:
    """Given the whole mail's Reply, example commands below a reply header never count."""
    from warrantyd.parsers.message import parse_message
    from warrantyd.parsers.trim import extract_reply

    raw = (b"From: pat@acme-homes.example\nTo: warranty+t@acme-homes.example\n"
           b"Subject: FW: Approval digest #3\nContent-Type: text/plain\n\n"
           b"-----Original Message-----\nFrom: Acme Homes Warranty <warranty@acme-homes.example>\n"
           b"Sent: Monday, March 2, 2026 8:00 AM\nTo: Pat\nSubject: Approval digest #3\n\n"
           b"1. Plumbing: kitchen faucet drips\n\nReply with:\naccept 1\nreject 1: reason\n")
    parsed = parse_commands(extract_reply(parse_message(raw)), ["WO-1"])
    assert parsed.commands == ()
