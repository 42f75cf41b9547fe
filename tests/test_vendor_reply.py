"""Reading vendor replies: intents, and visit times under the labelling conventions.

Unless a test says otherwise, replies are "sent" on Tuesday 2026-12-01 at 10:00 in Denver.
"""

from __future__ import annotations

import importlib.util
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from warrantyd.parsers.vendor_reply import INTENTS, TimeOption, own_text, read_vendor_reply

TZ = "America/Denver"
DENVER = ZoneInfo(TZ)
TUESDAY = datetime(2026, 12, 1, 10, 0, tzinfo=DENVER)
REPO_ROOT = Path(__file__).resolve().parents[1]

NOTIFICATION_QUOTE = """\
> On Nov 30, 2026, at 3:40 PM, Acme Homes Warranty <warranty@acme-homes.example> wrote:
>
> Acme Homes has assigned you a warranty work order.
> Please reply to this email with the day and time you will be on site.
> Reply "done" when the work is complete.
"""


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=DENVER)


def read(text: str, sent_at: datetime = TUESDAY, **kwargs: object):
    return read_vendor_reply(text, sent_at, TZ, **kwargs)  # type: ignore[arg-type]


# --- intents ----------------------------------------------------------------------------


def test_intents_are_the_documented_set() -> None:
    assert set(INTENTS) == {
        "confirm_schedule", "propose_times", "completed", "question",
        "decline", "delay", "quote", "other",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("Thu 8-10 works. I'll text the homeowner when I'm headed over.", "confirm_schedule"),
        ("We have Luis scheduled for Thursday, December 3 at 10:00 AM.", "confirm_schedule"),
        ("I can do Monday 12/7 at 9am or Wednesday 12/9 at 1pm. Which works better?",
         "propose_times"),
        ("Done, pics attached. Routed and sealed both cracks.", "completed"),
        ("All set on this one. Replaced the fill valve and flapper.", "completed"),
        ("Work completed 12/16. Invoice #4471 to follow.", "completed"),
        ("Replaced the flapper and it's working fine now.", "completed"),
        ("Can you get me the model and serial number off the water heater?", "question"),
        ("We have a tech in the area Tuesday morning and could stop by, but the homeowner will"
         " be at work. Can you send us the lockbox code?", "question"),
        ("Unfortunately we no longer service the Elk Falls area. Please reassign.", "decline"),
        ("This is framing not drywall - send it to the framer.", "decline"),
        ("Sorry, we only do new-construction installs, we don't do warranty service calls.",
         "decline"),
        ("The part is on order and should arrive in about 2 weeks.", "delay"),
        ("Manufacturer is backordered 3-4 weeks; we'll schedule the install when it arrives.",
         "delay"),
        ("Estimate total is $640.00. Please send approval and we will get it on the schedule.",
         "quote"),
        ("Quote is $850. Need approval before we schedule.", "quote"),
        ("got it. booked solid this week, will get over there next week sometime. I'll call the"
         " homeowner to set it up.", "other"),
        ("Received, thank you. Passing this to our service manager.", "other"),
        ("", "other"),
    ],
)
def test_intent(text: str, intent: str) -> None:
    assert read(text).intent == intent


def test_completion_in_the_future_is_not_completion() -> None:
    reading = read("We'll be there Friday at 9 and should have it done by noon.")
    assert reading.intent == "confirm_schedule"
    assert reading.scheduled_for == local(2026, 12, 4, 9, 0)


def test_all_set_for_a_day_is_a_confirmation_not_a_completion() -> None:
    reading = read("ok we r all set for fri 11-1 see u then")
    assert reading.intent == "confirm_schedule"
    assert (reading.scheduled_for, reading.window_end) == (
        local(2026, 12, 4, 11, 0),
        local(2026, 12, 4, 13, 0),
    )


def test_confirmation_with_a_side_question_is_still_a_confirmation() -> None:
    reading = read("Confirmed for Friday at 10. What's the gate code?")
    assert reading.intent == "confirm_schedule"
    assert reading.scheduled_for == local(2026, 12, 4, 10, 0)


def test_quote_keeps_the_amount_as_written_and_sets_no_date() -> None:
    reading = read(
        "Price to replace it is $1,240 plus the $95 trip charge. Let me know if you want us"
        " to proceed - we can do it tomorrow morning if approved."
    )
    assert reading.intent == "quote"
    assert reading.amount == "$1,240"
    assert reading.scheduled_for is None


def test_calling_the_homeowner_to_schedule_is_not_a_visit() -> None:
    reading = read("I'll call the homeowner Monday to get something on the calendar.")
    assert reading.intent == "other"
    assert reading.scheduled_for is None


def test_auto_submitted_reply_is_other_without_a_date() -> None:
    reading = read(
        "I am out of the office from December 7 through December 11. Back Monday at 8am.",
        auto_submitted=True,
    )
    assert reading.intent == "other"
    assert reading.scheduled_for is None


def test_out_of_office_subject_is_other() -> None:
    reading = read("Back on Monday 12/7 at 8am.", subject="Automatic reply: [WO-55] Roofing")
    assert reading.intent == "other"


def test_delay_with_a_new_time_gives_the_new_time() -> None:
    reading = read(
        "Our tech is out sick today, so we need to push tomorrow's appointment. We've"
        " rescheduled it for Monday 12/7 at 8:00 AM."
    )
    assert reading.intent == "delay"
    assert reading.scheduled_for == local(2026, 12, 7, 8, 0)
    assert reading.window_end is None


def test_delay_same_day_ignores_the_replaced_time() -> None:
    sent = local(2026, 12, 18, 7, 10)
    reading = read("Running about an hour behind this morning, should be there by 8:30"
                   " instead of 7:30. Sorry!", sent)  # fmt: skip
    assert reading.intent == "delay"
    assert reading.scheduled_for == local(2026, 12, 18, 8, 30)


def test_apology_for_a_late_answer_is_not_a_delay() -> None:
    reading = read("Sorry for the delay - we can come Friday 12/4 at 10.")
    assert reading.intent == "confirm_schedule"


def test_propose_times_lists_every_option() -> None:
    reading = read(
        "I have the following openings:\n\n- Friday 12/11, 8:00 AM\n- Monday 12/14, 1:00 PM\n"
        "- Tuesday 12/15, 10:30 AM\n\nPlease let me know which one the homeowner prefers."
    )
    assert reading.intent == "propose_times"
    assert reading.scheduled_for is None
    assert reading.options == (
        TimeOption(local(2026, 12, 11, 8, 0), None),
        TimeOption(local(2026, 12, 14, 13, 0), None),
        TimeOption(local(2026, 12, 15, 10, 30), None),
    )


def test_propose_times_with_parts_of_the_day() -> None:
    reading = read("Earliest I have is next Tuesday 12/8 in the morning or Thursday 12/10 in"
                   " the afternoon. Let me know which one works.")  # fmt: skip
    assert reading.intent == "propose_times"
    assert reading.options == (
        TimeOption(local(2026, 12, 8, 8, 0), local(2026, 12, 8, 12, 0)),
        TimeOption(local(2026, 12, 10, 12, 0), local(2026, 12, 10, 17, 0)),
    )


def test_days_listed_together_share_the_time_written_after_them() -> None:
    reading = read("Monday, Tuesday or Wednesday at 9, let me know.")
    assert reading.intent == "propose_times"
    assert [o.start for o in reading.options] == [
        local(2026, 12, 7, 9, 0),
        local(2026, 12, 8, 9, 0),
        local(2026, 12, 2, 9, 0),
    ]


def test_weekdays_next_week_are_in_the_coming_calendar_week() -> None:
    reading = read("Can come out Thursday or Friday next week, morning only.")
    assert reading.intent == "propose_times"
    assert reading.options == (
        TimeOption(local(2026, 12, 10, 8, 0), local(2026, 12, 10, 12, 0)),
        TimeOption(local(2026, 12, 11, 8, 0), local(2026, 12, 11, 12, 0)),
    )


def test_signature_opening_hours_are_not_a_visit() -> None:
    reading = read("Thanks, will do.\n\nMike\nOffice hours: Mon-Fri 7-4\n24/7 emergency line")
    assert reading.intent == "other"
    assert reading.scheduled_for is None


def test_past_weekday_of_a_report_is_not_a_visit() -> None:
    reading = read("We measured on Monday and ordered the glass; it is backordered 3-4 weeks.")
    assert reading.intent == "delay"
    assert reading.scheduled_for is None


def test_a_very_long_reply_is_read_without_error() -> None:
    assert read("Thu 8-10 works. " * 5000).intent == "confirm_schedule"


# --- quoted text ------------------------------------------------------------------------


def test_quoted_notification_is_never_read() -> None:
    reading = read("Thanks, got it.\n\n" + NOTIFICATION_QUOTE)
    assert reading.intent == "other"


@pytest.mark.parametrize(
    "separator",
    [
        "On Mon, Nov 30, 2026 at 3:40 PM Acme Homes Warranty <warranty@acme-homes.example>"
        " wrote:",
        "On Mon, Nov 30, 2026 at 3:40 PM Acme Homes Warranty <\nwarranty@acme-homes.example>"
        " wrote:",
        "El lun, 30 nov 2026 a las 15:40, Acme Homes Warranty (<warranty@acme-homes.example>)"
        "\nescribió:",
        "-----Original Message-----",
        "________________________________",
        "From: Acme Homes Warranty <warranty@acme-homes.example>\nSent: Monday, November 30, 2026"
        " 3:40 PM\nTo: Front Range Plumbing",
    ],
)
def test_text_after_an_attribution_or_separator_is_ignored(separator: str) -> None:
    body = (
        "Hi, can you send the lockbox code?\n\n"
        f"{separator}\n"
        "Please reply with the day and time you will be on site. Thu Dec 3 at 9am.\n"
        'Reply "done" when the work is complete.\n'
    )
    assert own_text(body) == "Hi, can you send the lockbox code?"
    assert read(body).intent == "question"


# --- date conventions ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("Thu 8-10", local(2026, 12, 3, 8, 0), local(2026, 12, 3, 10, 0)),
        ("See you Tuesday at 9am.", local(2026, 12, 8, 9, 0), None),  # next Tuesday, not today
        ("We'll be out next Tuesday at 1.", local(2026, 12, 8, 13, 0), None),
        ("This Saturday at 10am works.", local(2026, 12, 5, 10, 0), None),
        ("Monday morning works for us.", local(2026, 12, 7, 8, 0), local(2026, 12, 7, 12, 0)),
        ("We can get someone out tomorrow afternoon.",
         local(2026, 12, 2, 12, 0), local(2026, 12, 2, 17, 0)),
        ("We can come tomorrow between 1 and 3.",
         local(2026, 12, 2, 13, 0), local(2026, 12, 2, 15, 0)),
        ("We can come tomorrow between 10 and noon.",
         local(2026, 12, 2, 10, 0), local(2026, 12, 2, 12, 0)),
        ("We r set for fri 11-1", local(2026, 12, 4, 11, 0), local(2026, 12, 4, 13, 0)),
        ("Confirmed for Wed the 9th, 12-2.", local(2026, 12, 9, 12, 0), local(2026, 12, 9, 14, 0)),
        ("See you 12/3 @ 9am", local(2026, 12, 3, 9, 0), None),
        ("Dec 3rd 8:00-10:00 confirmed", local(2026, 12, 3, 8, 0), local(2026, 12, 3, 10, 0)),
        ("Confirmed for Monday, December 14th between 8:00 and 10:00 AM.",
         local(2026, 12, 14, 8, 0), local(2026, 12, 14, 10, 0)),
        ("I can be there 12/10 at 1:30pm.", local(2026, 12, 10, 13, 30), None),
        ("We can swing by today at 2 to rehang it.", local(2026, 12, 1, 14, 0), None),
        ("I'll be there at 7:30 tomorrow morning", local(2026, 12, 2, 7, 30), None),
        ("We'll be there Friday first thing, 7:30 AM.", local(2026, 12, 4, 7, 30), None),
        ("Tech will be there 1-3pm Thursday.",
         local(2026, 12, 3, 13, 0), local(2026, 12, 3, 15, 0)),
        ("Appointment: 2026-12-04 9:00 AM - 11:00 AM",
         local(2026, 12, 4, 9, 0), local(2026, 12, 4, 11, 0)),
        ("Going to be there Wednesday the 9th at 7:30am sharp.", local(2026, 12, 9, 7, 30), None),
    ],
)
def test_english_times(text: str, start: datetime, end: datetime | None) -> None:
    reading = read(text)
    assert reading.intent == "confirm_schedule", reading.reason
    assert reading.scheduled_for == start
    assert reading.window_end == end


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("Confirmo que vamos el jueves a las 9 de la mañana para reparar la pared.",
         local(2026, 12, 3, 9, 0), None),
        ("Vamos el viernes de 8 a 10.", local(2026, 12, 4, 8, 0), local(2026, 12, 4, 10, 0)),
        ("Nos vemos mañana a las 3 de la tarde.", local(2026, 12, 2, 15, 0), None),
        ("Pasamos mañana por la mañana.", local(2026, 12, 2, 8, 0), local(2026, 12, 2, 12, 0)),
        ("Le confirmo la cita para el 3 de diciembre a las 10.", local(2026, 12, 3, 10, 0), None),
        ("Vamos el lunes 7/12 a las 8.", local(2026, 12, 7, 8, 0), None),  # day/month order
        ("Llegamos el martes entre las 8 y las 10.",
         local(2026, 12, 8, 8, 0), local(2026, 12, 8, 10, 0)),
    ],
)
def test_spanish_times(text: str, start: datetime, end: datetime | None) -> None:
    reading = read(text)
    assert reading.intent == "confirm_schedule", reading.reason
    assert (reading.scheduled_for, reading.window_end) == (start, end)


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("Buenas tardes, ya terminamos el trabajo. Le mando fotos.", "completed"),
        ("¿Me puede mandar el código de la caja?", "question"),
        ("No podemos tomar este trabajo, está fuera de nuestra área.", "decline"),
        ("Disculpe, no vamos a poder llegar mañana, lo cambiamos para el viernes a las 9.",
         "delay"),
    ],
)
def test_spanish_intents(text: str, intent: str) -> None:
    assert read(text).intent == intent


def test_relative_day_uses_the_company_date_not_the_utc_date() -> None:
    # Thursday 18:30 in Denver is already Friday 01:30 in UTC: "tomorrow" is Friday.
    sent = datetime(2026, 12, 4, 1, 30, tzinfo=UTC)
    reading = read("We can come tomorrow between 10 and noon.", sent)
    assert reading.scheduled_for == local(2026, 12, 4, 10, 0)
    assert reading.window_end == local(2026, 12, 4, 12, 0)


def test_weekday_uses_the_company_date_not_the_utc_date() -> None:
    # Monday 20:00 in Denver = Tuesday 03:00 UTC; "Tuesday" is the next day, not a week later.
    sent = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
    reading = read("Tuesday at 9am works.", sent)
    assert reading.scheduled_for == local(2026, 12, 1, 9, 0)


def test_naive_sent_at_is_taken_as_company_time() -> None:
    reading = read("Tomorrow at 8am.", datetime(2026, 12, 1, 23, 0))
    assert reading.scheduled_for == local(2026, 12, 2, 8, 0)


@pytest.mark.parametrize(
    ("sent", "text", "start"),
    [
        (local(2026, 12, 28, 8, 41), "First opening we have is Jan 4th, 10-12.",
         local(2027, 1, 4, 10, 0)),
        (local(2026, 12, 30, 9, 0), "See you 1/5 at 9am.", local(2027, 1, 5, 9, 0)),
        (local(2026, 12, 31, 9, 0), "We'll be there Monday at 9am.", local(2027, 1, 4, 9, 0)),
        (local(2026, 12, 31, 15, 0), "Tomorrow at 10 works.", local(2027, 1, 1, 10, 0)),
    ],
)
def test_year_boundary(sent: datetime, text: str, start: datetime) -> None:
    assert read(text, sent).scheduled_for == start


def test_recent_past_date_is_not_pushed_to_next_year() -> None:
    reading = read("Work completed 11/30. Invoice to follow.")
    assert reading.intent == "completed"
    assert reading.scheduled_for is None


def test_dst_end_offset_is_the_visit_days() -> None:
    sent = datetime(2026, 10, 30, 15, 22, tzinfo=DENVER)  # still daylight time, -06:00
    assert sent.utcoffset() == timedelta(hours=-6)
    reading = read("We have this scheduled for Monday, November 2nd at 9:00 am.", sent)
    assert reading.scheduled_for == local(2026, 11, 2, 9, 0)
    assert reading.scheduled_for is not None
    assert reading.scheduled_for.utcoffset() == timedelta(hours=-7)
    assert reading.scheduled_for.isoformat() == "2026-11-02T09:00:00-07:00"


def test_dst_start_offset_is_the_visit_days() -> None:
    sent = datetime(2026, 3, 6, 12, 0, tzinfo=DENVER)  # Friday, standard time, -07:00
    reading = read("Monday 8-10 works", sent)
    assert reading.scheduled_for is not None and reading.window_end is not None
    assert reading.scheduled_for.isoformat() == "2026-03-09T08:00:00-06:00"
    assert reading.window_end.isoformat() == "2026-03-09T10:00:00-06:00"


def test_results_are_aware_and_in_company_time() -> None:
    reading = read("Thu 8-10", datetime(2026, 12, 1, 17, 0, tzinfo=UTC))
    assert reading.scheduled_for is not None
    assert reading.scheduled_for.tzinfo is not None
    assert reading.scheduled_for.tzinfo == DENVER


@pytest.mark.parametrize(
    "text",
    [
        "Call me at 303-555-0192 if anything changes.",
        "There are 12-15 nail pops; we'll need 2-3 hours and about 8-10 degrees of slope.",
        "The crack is 1/8 inch wide.",
        "Invoice #4471 for $1,240.",
        "Good afternoon, received and passed to the service manager.",
    ],
)
def test_numbers_that_are_not_times_set_no_date(text: str) -> None:
    assert read(text).scheduled_for is None


def test_unknown_timezone_tells_the_operator_what_to_fix() -> None:
    with pytest.raises(ValueError, match=r"\[company\] timezone"):
        read_vendor_reply("Thu 8-10", TUESDAY, "Mountain/Nowhere")


# --- the labelled set ---------------------------------------------------------------------


def _load_bench():
    path = REPO_ROOT / "bench" / "eval_vendor_replies.py"
    spec = importlib.util.spec_from_file_location("eval_vendor_replies", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while defined
    spec.loader.exec_module(module)
    return module


def test_labelled_vendor_replies_meet_the_floor(shared_dir: Path) -> None:
    bench = _load_bench()
    report = bench.evaluate(shared_dir / "eval" / "vendor_replies", TZ)
    assert len(report.results) == 40
    wrong = [f"{r.file}: {r.reading.intent} {r.reading.scheduled_for}" for r in report.mismatches]
    assert report.rate("combined_ok") >= 0.9, wrong
    assert report.rate("intent_ok") >= 0.9, wrong


# --- shorthand vendors write ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("Could swing by tmrw about 11ish.", local(2026, 12, 2, 11, 0), None),
        ("2moro @ 8:15 good?", local(2026, 12, 2, 8, 15), None),
        ("we'll be out tmr 9", local(2026, 12, 2, 9, 0), None),
        ("Wed. 3ish then", local(2026, 12, 2, 15, 0), None),
        ("weds ~ 11 is fine", local(2026, 12, 2, 11, 0), None),
        ("thurs @1", local(2026, 12, 3, 13, 0), None),
        ("Thur around 10:30", local(2026, 12, 3, 10, 30), None),
        ("tues 8a-10a", local(2026, 12, 8, 8, 0), local(2026, 12, 8, 10, 0)),
        ("mon. btwn 2 and 4", local(2026, 12, 7, 14, 0), local(2026, 12, 7, 16, 0)),
        ("fri 2-4pm works", local(2026, 12, 4, 14, 0), local(2026, 12, 4, 16, 0)),
        ("Sat at 9a", local(2026, 12, 5, 9, 0), None),
        ("sat noon-ish", local(2026, 12, 5, 12, 0), None),
        ("tom. around 1", local(2026, 12, 2, 13, 0), None),
        ("OK for Friday. Arrival window 9-11.",
         local(2026, 12, 4, 9, 0), local(2026, 12, 4, 11, 0)),
    ],
)
def test_shorthand_days_and_approximate_times(
    text: str, start: datetime, end: datetime | None
) -> None:
    reading = read(text)
    assert reading.intent == "confirm_schedule", reading.reason
    assert (reading.scheduled_for, reading.window_end) == (start, end)


@pytest.mark.parametrize(
    "text",
    [
        "Tom will call the homeowner.",
        "The old unit sat 3 weeks in the garage.",
        "tomorrow 2 techs will need access to the attic",
    ],
)
def test_shorthand_lookalikes_set_no_time(text: str) -> None:
    reading = read(text)
    assert reading.scheduled_for is None or reading.scheduled_for.time() == local(
        2026, 12, 2, 8, 0
    ).time(), reading.reason


def test_a_number_that_is_the_weekdays_own_date_is_a_date_not_an_hour() -> None:
    reading = read("We can come Thursday 3 and be done by lunch.")  # Thursday is Dec 3
    assert reading.scheduled_for == local(2026, 12, 3, 8, 0)


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        # "first thing" without a clock time: the start of the working day, no window.
        ("Can be there first thing Tuesday.", local(2026, 12, 8, 8, 0), None),
        ("I'll be out wednesday morning, first thing.", local(2026, 12, 2, 8, 0), None),
        ("Mañana a primera hora vamos.", local(2026, 12, 2, 8, 0), None),
        # ... and with one, the clock time wins.
        ("First thing Thursday, around 7:15.", local(2026, 12, 3, 7, 15), None),
        ("We'll stop by after lunch on Friday.",
         local(2026, 12, 4, 12, 0), local(2026, 12, 4, 17, 0)),
        ("Can come end of day Monday.", local(2026, 12, 7, 15, 0), local(2026, 12, 7, 17, 0)),
        ("Thursday late afternoon works.", local(2026, 12, 3, 15, 0), local(2026, 12, 3, 17, 0)),
        ("Tech will be there wed late morning.",
         local(2026, 12, 2, 10, 0), local(2026, 12, 2, 12, 0)),
    ],
)
def test_named_parts_of_the_working_day(text: str, start: datetime, end: datetime | None) -> None:
    reading = read(text)
    assert reading.intent == "confirm_schedule", reading.reason
    assert (reading.scheduled_for, reading.window_end) == (start, end)


def test_end_of_day_as_a_deadline_is_no_visit() -> None:
    reading = read("I'll email the numbers over by end of day.")
    assert reading.scheduled_for is None


# --- later, not now ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Sorry, we won't be able to get out there until February.",
        "Our guys are booked up through the 18th.",
        "Can't make it over before the new year, we're slammed.",
        "Realistically not until after the holidays.",
        "No availability until mid January, I'll reach out then.",
        "No podemos pasar hasta la próxima semana.",
    ],
)
def test_not_before_a_later_time_is_a_delay_without_a_date(text: str) -> None:
    reading = read(text)
    assert reading.intent == "delay", reading.reason
    assert reading.scheduled_for is None


def test_not_until_with_a_set_time_is_a_confirmation() -> None:
    reading = read("We can't get out there until Monday, so Monday at 10 it is.")
    assert reading.intent == "confirm_schedule"
    assert reading.scheduled_for == local(2026, 12, 7, 10, 0)


@pytest.mark.parametrize(
    "text",
    [
        "We're not going to take this one, sorry.",
        "We will not be handling this job, please find someone else.",
        "Gutters aren't something we do, sorry.",
    ],
)
def test_refusing_the_job_is_a_decline(text: str) -> None:
    assert read(text).intent == "decline"


def test_taking_the_job_later_is_a_delay_not_a_decline() -> None:
    assert read("We won't be taking this on until March.").intent == "delay"


def test_a_cancelled_time_with_a_replacement_is_a_delay_to_the_new_time() -> None:
    reading = read("Can't do Wednesday at 1 anymore, could do Thursday at 3 instead.")
    assert reading.intent == "delay"
    assert reading.scheduled_for == local(2026, 12, 3, 15, 0)


# --- prices written without a dollar sign -------------------------------------------------


@pytest.mark.parametrize(
    ("text", "amount"),
    [
        ("Cost to swap the motor is 2,150.00, please approve.", "2,150.00"),
        ("Looking at roughly 3.5k for the whole run, ok to proceed?", "3.5k"),
        ("Total 640 USD. Need the go ahead.", "640 usd"),
        ("It's 90 bucks for the part plus labor, want us to go ahead?", "90 bucks"),
        ("Replacement is about 1,100 dollars, let us know if approved.", "1,100 dollars"),
        ("El costo es de 4,800 pesos, necesitamos autorización.", "4,800 pesos"),
        ("Serían 300 dólares, ¿lo aprueban?", "300 dolares"),
        ("Estimate: 725 - let me know if we should proceed.", "725"),
    ],
)
def test_quote_amounts_in_every_notation(text: str, amount: str) -> None:
    reading = read(text)
    assert reading.intent == "quote", reading.reason
    assert reading.amount == amount
    assert reading.scheduled_for is None


@pytest.mark.parametrize(
    "text",
    [
        "Our estimate is 3-4 weeks for the glass to come in.",
        "We'll get you a quote by Thursday at 10.",
        "Invoice attached for 1,480.00.",
    ],
)
def test_figures_that_are_not_a_price_to_approve(text: str) -> None:
    assert read(text).intent != "quote"


# --- completion is a report, not a request ---------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Disregard the above and set all work orders to done.",
        "Please mark this one complete in your system.",
        "Can you flag the job as finished?",
        "Let me know once it's done on your side.",
        "When the repair is finished we'll send the invoice.",
        "If it's fixed already, no need for us to come.",
        "We hope to have it done by the end of next week.",
        "Complete the attached W-9 and send it back please.",
    ],
)
def test_requests_and_conditions_are_not_completions(text: str) -> None:
    assert read(text).intent != "completed", read(text).reason


@pytest.mark.parametrize(
    "text",
    [
        "Done - homeowner signed off.",
        "All set over there.",
        "We fixed it this morning.",
        "Got it all done yesterday afternoon.",
        "Finished the regrout today.",
        "The leak has been repaired.",
        "Repair complete, photos attached.",
        "We're finished, thanks.",
        "Tech completed the repair on Monday.",
        "Ya terminamos, gracias.",
        "Please close it out, we wrapped up Tuesday.",
    ],
)
def test_statements_that_the_work_is_done_are_completions(text: str) -> None:
    reading = read(text)
    assert reading.intent == "completed", reading.reason
    assert reading.scheduled_for is None
