"""The offline drafter: issue splitting, trade/priority/location, vendor-safe text, photos,
learning from staff decisions, coverage hints, and its figures on the labelled eval set."""

from __future__ import annotations

import importlib.util
import sys
import threading
from datetime import date
from pathlib import Path

import pytest

from warrantyd.daemon.drafters.base import (
    DraftRequest,
    DraftResult,
    FeedbackExample,
    Photo,
    VendorInfo,
)
from warrantyd.daemon.drafters.coverage import coverage_hint
from warrantyd.daemon.drafters.offline import (
    OfflineDrafter,
    clean_text,
    find_location,
)
from warrantyd.daemon.drafting import drafting_text
from warrantyd.parsers.message import parse_message
from warrantyd.parsers.trim import extract_reply

REPO_ROOT = Path(__file__).resolve().parent.parent


def draft(text: str, **kwargs: object) -> list:
    return OfflineDrafter().draft_sync(DraftRequest(text=text, **kwargs)).issues  # type: ignore[arg-type]


# --- splitting ---------------------------------------------------------------------------


def test_numbered_list_is_split_and_intro_and_outro_are_not_issues() -> None:
    text = (
        "Hi there,\n\nHere is our list for the walkthrough:\n\n"
        "1. Guest bath faucet drips constantly\n"
        "2. Dining room ceiling has a few nail pops\n"
        "3. Back door weatherstrip is torn and lets in a draft\n"
        "4. Crack across the garage floor slab\n"
        "5. Kitchen cabinet door hinge is broken\n\n"
        "Let us know when you can schedule.\nThanks,\nPat Moreno"
    )
    issues = draft(text)
    assert [i.trade for i in issues] == [
        "plumbing", "drywall", "windows_doors", "concrete", "cabinets_countertops",
    ]
    assert issues[0].location == "guest bathroom"
    assert issues[1].location == "dining room"


def test_bulleted_list_with_wrapped_item_stays_one_item_each() -> None:
    text = (
        "Items we found:\n"
        "- The upstairs hall carpet has a ripple that you can trip over, it started\n"
        "  after the first month\n"
        "- Exterior stucco cracked next to the garage\n"
    )
    issues = draft(text)
    assert len(issues) == 2
    assert [i.trade for i in issues] == ["flooring_tile", "siding_exterior"]


def test_also_paragraph_starts_a_new_issue() -> None:
    text = (
        "Hello,\n\nThe toilet in the primary bath rocks when you sit on it.\n\n"
        "Also, the light over the vanity in the same bathroom flickers.\n\nThanks"
    )
    issues = draft(text)
    assert [i.trade for i in issues] == ["plumbing", "electrical"]
    assert issues[1].location == "primary bathroom"  # "the same bathroom"


def test_one_issue_over_two_paragraphs_stays_one() -> None:
    text = (
        "There's a damp spot on the living room carpet next to the wall we share with the "
        "laundry room, and the baseboard there is swelling.\n\n"
        "It gets wetter every time the washing machine drains, so we think a pipe in the wall "
        "is leaking.\n\nCould someone take a look?"
    )
    issues = draft(text)
    assert len(issues) == 1
    assert issues[0].trade == "plumbing"


def test_signature_with_trade_words_and_phone_is_not_an_issue() -> None:
    text = (
        "Hi,\n\nOur bedroom door will not latch; the latch misses the strike plate.\n\n"
        "Thanks,\n\nSam Ortiz\nOwner | Ortiz Plumbing & Leak Repair\n"
        "Cell: 720-555-0101\n\"We fix leaks fast.\""
    )
    issues = draft(text, homeowner_name="Sam Ortiz")
    assert len(issues) == 1
    assert issues[0].trade == "windows_doors"
    description = issues[0].description
    assert "555" not in description and "Sam" not in description and "Ortiz" not in description


@pytest.mark.parametrize(
    "text",
    [
        "Hi team,\n\nJust wanted to say thank you for sending the electrician so quickly. "
        "Everything works great now.\n\nBest,\nLee",
        "Hello, is hail damage to the roof covered by our warranty, or is that insurance?\n"
        "Thanks, Kim",
        "Quick update: the garage door your vendor fixed last month has been working "
        "perfectly. Thanks!",
    ],
)
def test_thanks_questions_and_updates_have_no_issue(text: str) -> None:
    assert draft(text) == []


def test_past_fixed_issue_is_not_drafted_again() -> None:
    text = (
        "Hi,\n\nThe railing the framer fixed in May is solid now, thank you.\n\n"
        "New problem though: the hall bathroom sink drains very slowly.\n\nThanks"
    )
    issues = draft(text)
    assert len(issues) == 1
    assert issues[0].trade == "plumbing"


def test_spanish_mail() -> None:
    text = (
        "Hola,\n\nEl inodoro del baño principal tiene una fuga en la base.\n\n"
        "También la puerta de la recámara no cierra bien.\n\nGracias,\nLucía"
    )
    result = OfflineDrafter().draft_sync(DraftRequest(text=text))
    assert result.language == "es"
    assert [i.trade for i in result.issues] == ["plumbing", "windows_doors"]
    assert result.issues[0].location == "primary bathroom"



def test_french_mail() -> None:
    text = (
        "Bonjour,\n\nJe vous écris parce que nous avons une fuite sous l'évier de la cuisine. "
        "L'eau coule dans le meuble et le fond est gonflé.\n\n"
        "Aussi, la porte du garage fait un bruit de grincement et s'arrête à mi-course.\n\n"
        "Et il y a une fissure dans le mur du couloir à l'étage.\n\n"
        "Merci d'avance,\nClaire Dubois"
    )
    result = OfflineDrafter().draft_sync(DraftRequest(text=text, homeowner_name="Claire Dubois"))
    assert result.language == "fr"
    assert [i.trade for i in result.issues] == ["plumbing", "garage_door", "drywall"]
    assert [i.location for i in result.issues] == ["kitchen", "garage", "upstairs hallway"]
    assert result.issues[0].title.startswith("Fuite sous l'évier"), result.issues[0].title
    assert all("Claire" not in i.description for i in result.issues)


def test_portuguese_mail() -> None:
    text = (
        "Olá,\n\nEstou escrevendo porque temos um vazamento embaixo da pia do banheiro de "
        "cima. A água está pingando no teto da cozinha.\n\n"
        "Também a porta da garagem faz um barulho alto quando abre e às vezes trava.\n\n"
        "Obrigado,\nJoão Silva"
    )
    result = OfflineDrafter().draft_sync(DraftRequest(text=text))
    assert result.language == "pt"
    assert [i.trade for i in result.issues] == ["plumbing", "garage_door"]
    assert [i.location for i in result.issues] == ["upstairs bathroom", "garage"]
    assert result.issues[0].title.startswith("Vazamento embaixo da pia"), result.issues[0].title



@pytest.mark.parametrize("text", [
    "Bonjour,\n\nL'évier de la cuisine fuit.\n\nAussi, la porte du garage grince.\n\n"
    "Et ça sent le gaz près du chauffe-eau au sous-sol.\n\nMerci,\nClaire",
    "Olá,\n\nA pia da cozinha está vazando.\n\nA porta da garagem faz um barulho alto.\n\n"
    "Também cheira a gás perto do aquecedor no porão.\n\nObrigado",
])
def test_a_gas_smell_written_last_is_its_own_emergency_issue(text: str) -> None:
    """Not an emergency pinned on the first issue: the smell is its own issue, first."""
    issues = draft(text)
    assert len(issues) == 3
    assert (issues[0].priority, issues[0].emergency_reason, issues[0].location) == (
        "emergency", "gas smell", "basement")
    assert [i.priority for i in issues[1:]] == ["routine", "routine"]

@pytest.mark.parametrize(
    ("text", "trade", "location"),
    [
        ("Il y a des taches d'humidité au plafond de la salle de bain principale.",
         "plumbing", "primary bathroom"),
        ("La prise électrique de la chambre ne fonctionne plus.", "electrical", "bedroom"),
        ("Le carrelage de l'entrée est fissuré et deux carreaux sont décollés.",
         "flooring_tile", "front entry"),
        ("A tomada do quarto não funciona mais.", "electrical", "bedroom"),
        ("O piso da sala está com várias lajotas soltas e uma rachada.", "flooring_tile",
         "living room"),
        ("A janela da sala de jantar não fecha direito e entra vento.", "windows_doors",
         "dining room"),
        ("Faltou luz só na cozinha e o disjuntor não volta.", "electrical", "kitchen"),
    ],
)
def test_french_and_portuguese_problems_are_drafted(text: str, trade: str,
                                                     location: str) -> None:
    [issue] = draft(text)
    assert (issue.trade, issue.location) == (trade, location)


@pytest.mark.parametrize(
    "text",
    [
        "Merci beaucoup pour la réparation de la semaine dernière, tout fonctionne bien.",
        "Muito obrigado pelo conserto, a torneira não pinga mais.",
    ],
)
def test_french_and_portuguese_thanks_are_not_issues(text: str) -> None:
    assert draft(text) == []


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("Les escribo porque tenemos una fuga de agua debajo del lavabo del baño.", "fuga"),
        ("Je vous écris car il y a une fissure au-dessus de la porte du salon.", "fissure"),
        ("Estou escrevendo porque há uma rachadura na parede da sala.", "rachadura"),
    ],
)
def test_titles_skip_the_opening_words_in_other_languages(text: str, words: str) -> None:
    title = draft(text)[0].title
    assert title.lower().startswith(words), title

def test_emergency_comes_first_with_its_reason() -> None:
    text = (
        "Hello,\n\nThe hallway closet door rubs on the carpet.\n\n"
        "Also we smell gas near the furnace in the basement, strongest by the gas line.\n\n"
        "Thanks"
    )
    issues = draft(text)
    assert [i.priority for i in issues] == ["emergency", "routine"]
    assert issues[0].trade == "plumbing"
    assert issues[0].emergency_reason == "gas smell"


def test_emergency_is_never_dropped_even_without_a_recognised_issue() -> None:
    issues = draft("CO alarm going off!!! we are outside")
    assert issues and issues[0].priority == "emergency"


def test_description_is_vendor_safe_and_third_person() -> None:
    text = (
        "Hi, my kitchen faucet leaks at the base whenever we run it. "
        "Call me at (303) 555-0199 or jo@example.com. Jo Banks"
    )
    issue = draft(text, homeowner_name="Jo Banks")[0]
    assert "555" not in issue.description and "@" not in issue.description
    assert "Jo" not in issue.description.split()
    assert issue.description.startswith("Inspect and repair")
    assert "homeowner" in issue.description.lower()
    assert " my " not in issue.description and " we " not in issue.description


def test_forwarded_mail_is_read_and_its_sign_off_ends_only_its_part() -> None:
    raw = (
        b"From: Omar <omar@example.com>\nTo: warranty@acme-homes.example\nSubject: Fwd: leak\n"
        b"Content-Type: text/plain\n\nCan you help?\n\nThanks,\nOmar\n\n"
        b"---------- Forwarded message ---------\nFrom: A <a@example.org>\n"
        b"Date: Mon, Feb 9, 2026\nSubject: leak\nTo: B <b@example.com>\n\n"
        b"The water line behind the fridge is dripping onto the floor.\n"
    )
    msg = parse_message(raw)
    text = drafting_text(msg, extract_reply(msg))
    assert "water line" in clean_text(text)
    issues = draft(text)
    assert len(issues) == 1 and issues[0].location == "kitchen"


# --- photos ------------------------------------------------------------------------------


def _photo(name: str) -> Photo:
    return Photo(name, "image/jpeg", b"\xff\xd8\xff")


def test_photos_follow_numbered_references_and_filename_words() -> None:
    text = (
        "1. Dead shrubs along the back fence (photo 2)\n"
        "2. Cracked driveway slab by the garage (photo 1)\n"
        "3. Stucco chipped at the front corner\n"
    )
    issues = draft(text, photos=(_photo("IMG_1.jpg"), _photo("IMG_2.jpg"), _photo("stucco.png")))
    assert issues[0].photos == ["IMG_2.jpg"]
    assert issues[1].photos == ["IMG_1.jpg"]
    assert issues[2].photos == ["stucco.png"]


def test_only_issue_gets_every_photo() -> None:
    issues = draft("The gutter over the porch is sagging. Photos attached.",
                   photos=(_photo("a.jpg"), _photo("b.jpg")))
    assert issues[0].photos == ["a.jpg", "b.jpg"]



@pytest.mark.parametrize("text", [
    "Thanks so much for the repair, everything works great now. Photo attached.",
    "Here is the photo you asked for.",
    "Merci beaucoup pour la réparation, tout fonctionne bien. Voici une photo.",
])
def test_photos_of_a_mail_with_no_issue_are_no_ones(text: str) -> None:
    """A thank-you with a photo of the finished work, or the photo staff asked for, drafts
    nothing (it used to fail drafting, and the mail was retried until quarantined)."""
    result = OfflineDrafter().draft_sync(DraftRequest(text=text, photos=(_photo("a.jpg"),)))
    assert result.issues == []


def test_location_words() -> None:
    assert find_location("water stain on the kitchen ceiling below the bathroom") == "kitchen"
    assert find_location("the master shower grout") == "primary bathroom"
    assert find_location("nothing here") is None


# --- vendors and learning ----------------------------------------------------------------

VENDORS = (
    VendorInfo("Wallboard Co", "wall@example.com", ("drywall",)),
    VendorInfo("Smooth Walls", "x@example.com", ("drywall", "paint")),
    VendorInfo("Pipe Pros", "pipes@example.com", ("plumbing",), ("Willow Creek",)),
    VendorInfo("Any Plumbing", "anyplumb@example.com", ("plumbing",)),
)


def test_vendor_from_trade_and_community() -> None:
    request = DraftRequest(text="The kitchen faucet drips.", vendors=VENDORS,
                           community="Willow Creek")
    assert OfflineDrafter().draft_sync(request).issues[0].suggested_vendor == "pipes@example.com"
    request = DraftRequest(text="The kitchen faucet drips.", vendors=VENDORS,
                           community="Aspen Meadows")
    assert OfflineDrafter().draft_sync(request).issues[0].suggested_vendor == (
        "anyplumb@example.com")


def test_learns_trade_and_vendor_from_staff_edits() -> None:
    mail = "We have nail pops all over the family room ceiling."
    before = OfflineDrafter().draft_sync(DraftRequest(text=mail, vendors=VENDORS)).issues[0]
    assert before.suggested_vendor == "wall@example.com"
    edits = [
        FeedbackExample(decision="edit", source_text=text, draft_trade="paint",
                        draft_description="Touch up paint", final_trade="drywall",
                        final_description="Repair nail pops", vendor="x@example.com")
        for text in (
            "nail pops in the ceiling of the bedroom",
            "a few nail pops in the stairwell",
            "nail pops showing in the hallway ceiling",
        )
    ]
    after = OfflineDrafter(edits).draft_sync(DraftRequest(text=mail, vendors=VENDORS)).issues[0]
    assert after.trade == "drywall"
    assert after.suggested_vendor == "x@example.com"


def test_learns_a_trade_the_phrase_model_does_not_know() -> None:
    mail = "The dryer vent came disconnected inside the laundry room wall."
    before = OfflineDrafter().draft_sync(DraftRequest(text=mail)).issues[0]
    assert before.trade != "hvac"
    edits = [
        FeedbackExample(decision="edit", source_text=text, draft_trade=before.trade,
                        draft_description="", final_trade="hvac", final_description="")
        for text in (
            "dryer vent disconnected in the wall",
            "the dryer vent pipe came apart behind the dryer",
            "dryer vent duct is loose in the laundry room",
        )
    ]
    after = OfflineDrafter(edits).draft_sync(DraftRequest(text=mail)).issues[0]
    assert after.trade == "hvac"


async def test_async_draft_matches_sync() -> None:
    request = DraftRequest(text="The garage door opener hums but the door doesn't move.")
    result = await OfflineDrafter().draft(request)
    assert result.engine == "offline"
    assert [i.trade for i in result.issues] == ["garage_door"]


async def test_in_line_drafts_in_the_callers_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    # The processing worker's loop serves nothing else: a thread per draft is a pure hop.
    threads: list[int] = []
    real = OfflineDrafter.draft_sync

    def noting(self: OfflineDrafter, request: DraftRequest) -> DraftResult:
        threads.append(threading.get_ident())
        return real(self, request)

    monkeypatch.setattr(OfflineDrafter, "draft_sync", noting)
    request = DraftRequest(text="The garage door opener hums but the door doesn't move.")
    in_line = await OfflineDrafter(in_line=True).draft(request)
    await OfflineDrafter().draft(request)
    assert [i.trade for i in in_line.issues] == ["garage_door"]
    assert threads[0] == threading.get_ident() != threads[1]


# --- coverage ----------------------------------------------------------------------------


def test_coverage_terms_and_exclusions() -> None:
    today = date(2026, 11, 15)
    hint = coverage_hint("plumbing", "leak in the supply line", date(2025, 3, 2), today)
    assert hint.covered is True and "2-year systems" in hint.summary
    assert "closed 2025-03-02, 20 months ago" in hint.summary
    assert coverage_hint("drywall", "nail pops", date(2025, 3, 2), today).covered is False
    assert coverage_hint("drywall", "nail pops", date(2026, 3, 2), today).covered is True
    structural = coverage_hint("framing_structural", "sagging beam", date(2019, 1, 1), today)
    assert structural.covered is True and "10-year" in structural.summary
    caulk = coverage_hint("plumbing", "caulk around the tub is cracked", date(2026, 1, 1), today)
    assert caulk.covered is False and caulk.exclusion and "caulk" in caulk.exclusion
    assert coverage_hint("appliances", "ice maker", date(2026, 1, 1), today).exclusion
    unknown = coverage_hint("paint", "peeling", None, today)
    assert unknown.covered is None and "unknown" in unknown.summary.lower()


# --- the labelled eval set ---------------------------------------------------------------


def _bench():
    spec = importlib.util.spec_from_file_location(
        "eval_drafter", REPO_ROOT / "bench" / "eval_drafter.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_eval_set_floors(shared_dir: Path) -> None:
    figures = _bench().evaluate(shared_dir / "eval" / "drafting").figures()
    assert figures["emergency_recall"] == 1.0
    assert figures["issue_count_exact"] >= 0.9
    assert figures["trade_f1"] >= 0.93
    assert figures["issue_recall"] >= 0.93
    assert figures["issue_precision"] >= 0.93
    assert figures["priority_accuracy_matched"] >= 0.93
    assert figures["photo_accuracy"] >= 0.85
    assert figures["no_issue_accuracy"] == 1.0



@pytest.mark.parametrize(("text", "title"), [
    ("Hi,\n\nThe bedroom door won't latch.\n\nDon't hesitate to call me if you need more "
     "info.\n\nThanks,\nPaul", "Bedroom door won't latch"),
    ("Bonjour,\n\nLa porte de la chambre ne ferme pas.\n\nN'hésitez pas à me contacter si "
     "vous avez besoin d'autres informations.\n\nMerci,\nPaul", "Porte de la chambre ne ferme pas"),
    ("Bonjour,\n\nLe robinet de la cuisine fuit.\n\nJe ne sais pas si c'est couvert par la "
     "garantie.\n\nCordialement,\nAnne", "Robinet de la cuisine fuit"),
    ("Bonjour,\n\nJe ne suis pas disponible le lundi. La fenêtre du salon est fissurée.",
     "Fenêtre du salon est fissurée"),
])
def test_courtesy_and_availability_are_no_problem(text: str, title: str) -> None:
    """"Don't hesitate to call", "not sure if it's covered", "not available Mondays" are
    negations, and they report nothing wrong."""
    assert [i.title for i in draft(text)] == [title]


@pytest.mark.parametrize(("text", "location"), [
    ("Four outlets in the office don't work.", "office"),  # not "four", a French oven
    ("The shower in the in-law suite leaks at the valve.", "bathroom"),  # "suíte" is not it
])
def test_english_words_that_other_languages_share_keep_their_english_sense(
        text: str, location: str) -> None:
    assert find_location(text) == location


@pytest.mark.parametrize("text", [
    "Hi,\n\nWe moved in three months ago and a few things are not right.\n\n"
    "The patio door is hard to close.\n\nAlso the tub drains slowly.\n\nThanks",
    "Hi,\n\nWe have a couple of issues that need attention.\n\nThe patio door is hard to "
    "close.\n\nAlso the tub drains slowly.\n\nThanks",
    "Bonjour,\n\nNous avons emménagé il y a trois mois et plusieurs choses ne vont pas.\n\n"
    "La porte-fenêtre est dure à fermer.\n\nAussi, la baignoire se vide lentement.\n\nMerci",
])
def test_an_announcement_of_problems_to_come_is_not_one(text: str) -> None:
    assert len(draft(text)) == 2


def test_an_announcement_that_names_the_problem_is_one() -> None:
    [issue] = draft("There are some problems with the drywall cracking in the hall.")
    assert issue.trade == "drywall"

def test_french_and_portuguese_set_floors() -> None:
    """bench/data/drafting_fr_pt: mail written in French and Portuguese without looking at
    the rules (first measured at 0.67 issue count, 0.68 trade F1, 0.67 emergency recall)."""
    figures = _bench().evaluate(REPO_ROOT / "bench" / "data" / "drafting_fr_pt").figures()
    assert figures["emergency_recall"] == 1.0
    assert figures["false_emergencies"] == 0
    assert figures["issue_count_exact"] >= 0.9
    assert figures["trade_f1"] >= 0.85
    assert figures["issue_recall"] >= 0.95
    assert figures["no_issue_accuracy"] == 1.0


# --- generalisation: wordings the drafter was not tuned on --------------------------------


@pytest.mark.parametrize(
    ("text", "trades"),
    [
        # A run-on list joined with ", also" and ", and the".
        ("ok a few things, the pantry door scrapes the floor when you open it, also the "
         "hallway light flickers all the time, and the dishwasher leaves a puddle on the "
         "floor after it runs",
         ["windows_doors", "electrical", "appliances"]),
        # No punctuation at all.
        ("the shower in the hall bath drips all day long you can hear it downstairs and the "
         "outlet by the garage door quit working last week",
         ["plumbing", "electrical"]),
        # Spanish "Y también".
        ("El inodoro del baño de visitas se mueve cuando uno se sienta. Y también la puerta "
         "del cuarto de lavado no cierra bien.",
         ["plumbing", "windows_doors"]),
    ],
)
def test_several_problems_in_one_paragraph_are_split(text: str, trades: list[str]) -> None:
    assert [i.trade for i in draft(text)] == trades


def test_list_items_without_a_usual_problem_word_are_kept() -> None:
    text = (
        "Our list:\n"
        "1. Grout in the guest shower is cracking\n"
        "2. Baseboard in the dining room is separating from the wall\n"
        "3. Vinyl plank seam by the fridge is showing\n"
        "4. Trim piece over the pantry door came loose\n"
    )
    assert len(draft(text)) == 4


@pytest.mark.parametrize(
    "text",
    [
        "I just wanted to thank Maria from Summit Electric who came by on Friday and "
        "replaced our kitchen breaker. She was professional and everything works now.",
        "A quick note of thanks: the drywall crew that patched the hallway ceiling in March "
        "did a wonderful job, you can't even tell.",
    ],
)
def test_praise_for_a_past_repair_is_not_an_issue(text: str) -> None:
    assert draft(text) == []


def test_a_past_fix_mentioned_in_a_long_mail_is_not_drafted() -> None:
    text = (
        "We've been in the house since last fall and love it, and the tech who came out "
        "in June to fix the noisy disposal was excellent, so thanks again for that.\n\n"
        "What we need help with now is the family room windows: two of them fog up "
        "between the panes every morning."
    )
    issues = draft(text)
    assert [i.trade for i in issues] == ["windows_doors"]


def test_reply_quoting_our_acknowledgement_is_not_read_as_a_forward() -> None:
    raw = (
        b"From: Dana <dana@example.com>\nTo: warranty@acme-homes.example\n"
        b"Subject: RE: [SR-42] We received your warranty request\nContent-Type: text/plain\n\n"
        b"One more: the laundry room faucet drips.\n\nDana\n\n"
        b"-----Original Message-----\nFrom: Acme Warranty <warranty@acme-homes.example>\n"
        b"Sent: Monday, May 4, 2026 9:00 AM\nTo: Dana\n"
        b"Subject: [SR-42] We received your warranty request\n\n"
        b"What we understood:\n  1. Front gate does not latch (side yard)\n"
    )
    msg = parse_message(raw)
    assert msg.forwarded == ()
    issues = draft(drafting_text(msg, extract_reply(msg)))
    assert [i.trade for i in issues] == ["plumbing"]


def test_forward_from_our_own_mailbox_is_left_out() -> None:
    raw = (
        b"From: Dana <dana@example.com>\nTo: warranty@acme-homes.example\n"
        b"Subject: Fwd: your request\nContent-Type: text/plain\n\nSee below, still waiting.\n\n"
        b"---------- Forwarded message ---------\n"
        b"From: Acme Warranty <warranty@acme-homes.example>\nDate: Mon, May 4, 2026\n"
        b"Subject: your request\nTo: Dana <dana@example.com>\n\n"
        b"We opened a request for: front gate does not latch.\n"
    )
    msg = parse_message(raw)
    text = drafting_text(msg, extract_reply(msg), ("warranty@acme-homes.example",))
    assert "gate" not in text


@pytest.mark.parametrize(
    ("text", "trade"),
    [
        ("The exhaust fan in the guest bathroom rattles and hums.", "electrical"),
        ("Bath fan in the hall bathroom makes a grinding noise.", "electrical"),
        ("The attic access panel in the garage ceiling sags and won't sit flat.", "insulation"),
        ("Attic hatch in the garage won't close all the way.", "insulation"),
        ("The outlet next to the garage door stopped working.", "electrical"),
        ("It has been storming since noon and now water drips from the bedroom ceiling "
         "below the roof.", "roofing"),
    ],
)
def test_the_thing_outweighs_the_room(text: str, trade: str) -> None:
    assert draft(text)[0].trade == trade


def test_photos_follow_first_and_second_references() -> None:
    text = (
        "Two photos attached.\n\n"
        "The first one shows the gap where the kitchen countertop meets the wall.\n\n"
        "The second one is the front porch column, the paint is peeling off at the bottom."
    )
    issues = draft(text, photos=(_photo("a.jpg"), _photo("b.jpg")))
    assert [i.photos for i in issues] == [["a.jpg"], ["b.jpg"]]


@pytest.mark.parametrize(
    ("text", "location"),
    [
        ("The linen closet shelf fell down.", "linen closet"),
        ("The walk-in closet light does not turn on.", "walk-in closet"),
        ("The bonus room carpet has a ripple.", "bonus room"),
        ("The upstairs tub drains slowly.", "upstairs bathroom"),
        ("The toilet downstairs runs all night, you can hear it in the living room.",
         "downstairs bathroom"),
    ],
)
def test_locations_keep_their_qualifiers(text: str, location: str) -> None:
    assert find_location(text) == location or draft(text)[0].location == location


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("For the last week or so the kitchen sink drains really slowly.", "kitchen sink"),
        ("It's been windy all day and now the back fence panel is leaning over.", "fence"),
        ("I forgot to mention, the hall bathroom mirror is loose.", "mirror"),
    ],
)
def test_titles_name_the_problem(text: str, words: str) -> None:
    title = draft(text)[0].title
    assert words in title.lower(), title
    assert not title.lower().startswith(("for the", "it's been", "i forgot"))


# --- the shipped trade model ------------------------------------------------------------


def test_the_shipped_trade_model_was_fitted_from_the_shipped_phrases() -> None:
    """After editing trade_phrases.tsv, run
    `python -m warrantyd.daemon.drafters.offline --write-model` and commit the model."""
    from warrantyd.daemon.drafters.offline import MODEL_PATH, TradeModel, base_model_key

    assert TradeModel.load(MODEL_PATH, base_model_key()) is not None


def test_reading_with_numpy_agrees_with_scikit_learn() -> None:
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion

    from warrantyd.daemon.drafters.offline import _normalise, fit_trade_model

    texts = ["the faucet drips", "toilet keeps running", "crack in the drywall",
             "nail pop in ceiling", "outlet has no power", "breaker trips"]
    labels = ["plumbing", "plumbing", "drywall", "drywall", "electrical", "electrical"]
    model = fit_trade_model(texts, labels, [1.0] * len(texts))
    features = FeatureUnion([
        ("words", TfidfVectorizer(preprocessor=_normalise, ngram_range=(1, 2),
                                  sublinear_tf=True)),
        ("chars", TfidfVectorizer(preprocessor=_normalise, analyzer="char_wb",
                                  ngram_range=(3, 5), sublinear_tf=True)),
    ])
    reference = LogisticRegression(C=20.0, max_iter=3000).fit(features.fit_transform(texts),
                                                              labels)
    for probe in ("kitchen faucet is dripping", "the garage outlet is dead", "ceiling crack"):
        expected = reference.predict_proba(features.transform([probe]))[0]
        assert np.allclose(model.probabilities(probe), expected, atol=1e-9)
