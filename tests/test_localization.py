"""Homeowners hear from us in their language: every mail, its subject and its dates.

The acknowledgement, the "visit scheduled" and the "request resolved" mails go through the
real functions that queue them (the Processor, the vendor reply, completion) on both
databases, and are read back from the outbox as the homeowner would get them.
"""

from __future__ import annotations

import email
import email.policy
import itertools
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import select
from vendor_jobs import (
    ACE,
    DANA,
    STAFF,
    US,
    FakeDrafter,
    make_config,
    make_job,
    process_mail,
    send_to,
)

from warrantyd.daemon.config import Config
from warrantyd.daemon.drafters.base import DraftRequest, DraftResult
from warrantyd.daemon.drafters.offline import OfflineDrafter, detect_language
from warrantyd.daemon.homeowner_words import place_name
from warrantyd.daemon.process import Processor
from warrantyd.daemon.render import TEMPLATES_DIR, translation
from warrantyd.daemon.vendors import complete_work_order, format_visit, tell_homeowner_scheduled
from warrantyd.storage.db import Database
from warrantyd.storage.inbound import store_inbound
from warrantyd.storage.models import (
    HistoryEvent,
    InboundMessage,
    OutboundMessage,
    ServiceRequest,
    WorkOrder,
    utcnow,
)

DENVER = "America/Denver"
# Thursday, December 3, 2026, 8:00 to 10:00 in Denver (UTC-7).
VISIT = datetime(2026, 12, 3, 15, 0, tzinfo=UTC), datetime(2026, 12, 3, 17, 0, tzinfo=UTC)
HOMEOWNER_MAILS = ("ack", "homeowner_scheduled", "homeowner_resolved")
ENGLISH = ("Hello", "Thank you", "What happens next", "A visit is scheduled", "arrival window",
           "is complete", "just reply", "Warranty Team", "If anyone is in danger")


@dataclass(frozen=True)
class Words:
    """What a homeowner of one language must find in each mail."""

    ack_subject: str
    ack: str
    emergency: str
    scheduled_subject: str
    scheduled: str
    window: str
    when: str
    resolved_subject: str
    resolved: str
    html_lang: str


WORDS = {
    "es": Words(
        ack_subject="Recibimos su solicitud: ", ack="Gracias por escribir al equipo de garantía",
        emergency="llame primero al 911 o a\nsu compañía de gas",
        scheduled_subject="Visita programada: Leak under kitchen sink",
        scheduled="Programamos una visita para su solicitud de garantía",
        window="(horario de llegada)",
        when="jueves, 3 de diciembre de 2026, 8:00 a. m. a 10:00 a. m.",
        resolved_subject="Su solicitud de garantía está resuelta",
        resolved="está terminado", html_lang='lang="es"'),
    "fr": Words(
        ack_subject="Nous avons bien reçu votre demande : ",
        ack="Merci d'avoir écrit au service garantie Acme Homes",
        emergency="appelez d'abord le 911 ou votre fournisseur de gaz",
        scheduled_subject="Visite planifiée : Leak under kitchen sink",
        scheduled="Une visite est planifiée pour votre demande de garantie",
        window="(plage d'arrivée)", when="jeudi 3 décembre 2026, 8 h 00 à 10 h 00",
        resolved_subject="Votre demande de garantie est résolue",
        resolved="sont terminés", html_lang='lang="fr"'),
    "pt": Words(
        ack_subject="Recebemos sua solicitação: ",
        ack="Agradecemos seu contato com a equipe de garantia da Acme Homes",
        emergency="ligue primeiro\npara o 911 ou para a companhia de gás",
        scheduled_subject="Visita agendada: Leak under kitchen sink",
        scheduled="Uma visita foi agendada para sua solicitação de garantia",
        window="(janela de chegada)", when="quinta-feira, 3 de dezembro de 2026, 8:00 às 10:00",
        resolved_subject="Sua solicitação de garantia foi resolvida",
        resolved="foram concluídos", html_lang='lang="pt-BR"'),
}


@pytest.fixture
def config(tmp_path: Path, database: Database) -> Config:
    return make_config(tmp_path, database)


# --- helpers ----------------------------------------------------------------------------------

class SpeakingDrafter:
    """The fake drafter's issues, reported in ``language`` as the language model would, each
    issue with ``issue_changes`` (a model's place, its homeowner's title)."""

    engine = "fake"

    def __init__(self, language: str | None, **issue_changes: object) -> None:
        self.language = language
        self.issue_changes = issue_changes
        self.inner = FakeDrafter()

    async def draft(self, request: DraftRequest) -> DraftResult:
        result = await self.inner.draft(request)
        return replace(result, language=self.language,
                       issues=[replace(i, **self.issue_changes) for i in result.issues])


_uids = itertools.count(50_000)


async def intake(database: Database, config: Config, drafter: object, body: str,
                 subject: str = "Problema en casa") -> OutboundMessage:
    """Dana's mail through the real Processor; the acknowledgement it queued."""
    uid = next(_uids)
    raw = (f"From: Dana <{DANA}>\nTo: {US}\nSubject: {subject}\n"
           f"Message-ID: <intake-{uid}@example.com>\n"
           f"Content-Type: text/plain; charset=utf-8\n\n{body}\n").encode()
    with database.session() as s:
        row, _ = store_inbound(s, mailbox="m/INBOX", uidvalidity=1, uid=uid, raw=raw)
        inbound_id = row.id
    await Processor(config, database, drafter).process_pending()  # type: ignore[arg-type]
    with database.session() as s:
        inbound = s.get(InboundMessage, inbound_id)
        assert inbound is not None and inbound.status == "done", inbound and inbound.last_error
        ack = s.scalars(select(OutboundMessage).join(
            ServiceRequest, OutboundMessage.service_request_id == ServiceRequest.id).where(
            OutboundMessage.kind == "ack",
            ServiceRequest.inbound_message_id == inbound_id)).one()
        s.expunge(ack)
        return ack


def parts(row: OutboundMessage) -> tuple[str, str]:
    msg: EmailMessage = email.message_from_bytes(  # type: ignore[assignment]
        row.raw, policy=email.policy.default)
    return (msg.get_body(("plain",)).get_content(),  # type: ignore[union-attr]
            msg.get_body(("html",)).get_content())  # type: ignore[union-attr]


def set_language(database: Database, sr_id: int, language: str | None) -> str:
    with database.session() as s:
        sr = s.get(ServiceRequest, sr_id)
        assert sr is not None
        sr.language = language
        return sr.ref


def schedule(database: Database, config: Config, wo_id: int) -> OutboundMessage:
    """The vendor's window set on the job and the homeowner told, as a vendor reply does."""
    with database.session() as s:
        wo = s.get(WorkOrder, wo_id)
        assert wo is not None
        wo.scheduled_for, wo.window_end = VISIT
        row = tell_homeowner_scheduled(s, config, wo, utcnow())
        assert row is not None
        s.flush()
        s.expunge(row)
        return row


def resolve(database: Database, config: Config, wo_id: int, other_wo_id: int
            ) -> OutboundMessage:
    with database.session() as s:
        other = s.get(WorkOrder, other_wo_id)
        wo = s.get(WorkOrder, wo_id)
        assert other is not None and wo is not None
        other.status = "rejected"
        [row] = complete_work_order(s, config, wo, STAFF, utcnow())
        s.flush()
        s.expunge(row)
        return row


def flat(text: str) -> str:
    """``text`` with every run of white space (line breaks included) one space."""
    return " ".join(text.split())


def assert_no_english(*texts: str) -> None:
    for text in texts:
        left = [phrase for phrase in ENGLISH if phrase in text]
        assert not left, f"English left in a translated mail: {left}"


# --- every mail in the homeowner's language ---------------------------------------------------

@pytest.mark.parametrize("lang", sorted(WORDS))
async def test_the_acknowledgement_is_in_the_language_the_drafter_reported(
        database: Database, config: Config, lang: str) -> None:
    words = WORDS[lang]
    ack = await intake(database, config, SpeakingDrafter(lang),
                       "The kitchen sink is leaking badly\nI smell gas near the water heater")
    text, html = parts(ack)
    assert ack.subject.startswith("[SR-") and words.ack_subject + "Problema en casa" in ack.subject
    assert words.ack in text and words.ack in html
    for part in (text, html):
        assert flat(words.emergency) in flat(part), "the emergency advice is translated too"
    assert words.html_lang in html
    assert_no_english(text, html, ack.subject)


@pytest.mark.parametrize(("lang", "body", "line"), [
    ("es", "Hola, el lavabo del baño principal gotea mucho y el agua sale por debajo del "
           "mueble. Gracias.", "1. Lavabo del baño principal gotea mucho (baño principal)"),
    ("fr", "Bonjour, l'évier de la cuisine fuit et l'eau coule sous le meuble. Merci.",
     "1. Évier de la cuisine fuit et l'eau coule sous le meuble (cuisine)"),
    ("pt", "Olá, a pia do banheiro está vazando e a água está molhando o armário. Obrigado.",
     "1. Pia do banheiro está vazando (banheiro)"),
])
async def test_the_offline_drafter_hears_the_language_and_the_ack_answers_in_it(
        database: Database, config: Config, lang: str, body: str, line: str) -> None:
    """The issue is listed in the homeowner's words, its place in their language."""
    ack = await intake(database, config, OfflineDrafter(), body)
    with database.session() as s:
        assert s.get(ServiceRequest, ack.service_request_id).language == lang  # type: ignore[union-attr]
        [wo] = s.scalars(select(WorkOrder).where(
            WorkOrder.service_request_id == ack.service_request_id)).all()
        assert wo.location in ("primary bathroom", "kitchen", "bathroom"), "staff read English"
    text, html = parts(ack)
    assert WORDS[lang].ack_subject in ack.subject and WORDS[lang].ack in text
    assert line in text, text
    assert f"({wo.location})" not in text and f"({wo.location})" not in html


@pytest.mark.parametrize("lang", sorted(WORDS))
async def test_a_place_with_no_name_in_the_homeowners_language_is_left_out(
        database: Database, config: Config, lang: str) -> None:
    """A model's free-text place ("under the stairs closet") has no translation here: the
    acknowledgement lists the issue without it rather than with an English word."""
    drafter = SpeakingDrafter(lang, location="under the stairs closet")
    ack = await intake(database, config, drafter, "The kitchen sink is leaking")
    text, html = parts(ack)
    assert "under the stairs closet" not in text and "under the stairs closet" not in html


def test_place_names() -> None:
    assert place_name("upstairs bathroom", "es") == "baño de arriba"
    assert place_name("Primary Bedroom", "fr") == "chambre principale"
    assert place_name("bedroom 2", "pt") == "quarto 2"
    assert place_name("kitchen", None) == "kitchen"
    assert place_name("kitchen", "en") == "kitchen"
    assert place_name("under the stairs closet", "es") is None
    assert place_name("kitchen", "de") is None
    assert place_name(None, "fr") is None


@pytest.mark.parametrize("lang", sorted(WORDS))
def test_visit_scheduled_and_request_resolved_are_in_the_homeowners_language(
        database: Database, config: Config, lang: str) -> None:
    words = WORDS[lang]
    job = make_job(database, config)
    ref = set_language(database, job.sr_id, lang)
    send_to(database, config, job.wo_id, ACE)

    told = schedule(database, config, job.wo_id)
    assert told.subject == f"[{ref}] {words.scheduled_subject}"
    text, html = parts(told)
    for part in (text, html):
        assert words.scheduled in part and words.when in part and words.window in part
        assert "Ace Plumbing" in part and "Leak under kitchen sink" in part
        assert "1 Elm St" in part and "Dana Whitfield" in part
    assert words.html_lang in html
    assert_no_english(text, html, told.subject)
    with database.session() as s:
        history = s.scalars(select(HistoryEvent).where(
            HistoryEvent.event == "homeowner_told_schedule")).one()
        assert "Thursday, December 3, 2026, 8:00 AM to 10:00 AM" in history.detail, \
            "staff read the history in English"

    resolved = resolve(database, config, job.wo_id, job.other_wo_id)
    assert resolved.subject == f"[{ref}] {words.resolved_subject}"
    text, html = parts(resolved)
    for part in (text, html):
        assert words.resolved in part and "Leak under kitchen sink" in part
    assert words.html_lang in html
    assert_no_english(text, html, resolved.subject)



@pytest.mark.parametrize(("lang", "own"), [
    ("es", "Fuga debajo del fregadero"), ("fr", "Fuite sous le lavabo"),
    ("pt", "Vazamento embaixo da pia"), (None, None)])
def test_the_homeowner_reads_the_title_in_their_language_and_vendors_in_english(
        database: Database, config: Config, lang: str | None, own: str | None) -> None:
    """The language model titles work orders in English for staff and, for mail in another
    language, once more in that language: the homeowner's mails use that one."""
    job = make_job(database, config)
    set_language(database, job.sr_id, lang)
    with database.session() as s:
        wo = s.get(WorkOrder, job.wo_id)
        assert wo is not None
        wo.homeowner_title = own if lang else "Leak under the sink, in other words"
    send_to(database, config, job.wo_id, ACE)
    expected = own or "Leak under kitchen sink"
    told = schedule(database, config, job.wo_id)
    assert expected in told.subject and all(expected in part for part in parts(told))
    resolved = resolve(database, config, job.wo_id, job.other_wo_id)
    assert all(expected in part for part in parts(resolved))
    with database.session() as s:
        notice = s.scalars(select(OutboundMessage).where(
            OutboundMessage.kind == "vendor_notice")).one()
        assert "Leak under kitchen sink" in notice.subject, "the vendor reads the staff title"


async def test_the_acknowledgement_lists_the_homeowners_title(
        database: Database, config: Config) -> None:
    drafter = SpeakingDrafter("es", homeowner_title="Fregadero de la cocina gotea")
    ack = await intake(database, config, drafter, "The kitchen sink is leaking")
    text, html = parts(ack)
    assert "Fregadero de la cocina gotea" in text and "Fregadero de la cocina gotea" in html
    with database.session() as s:
        [wo] = s.scalars(select(WorkOrder).where(
            WorkOrder.service_request_id == ack.service_request_id)).all()
        assert wo.homeowner_title == "Fregadero de la cocina gotea"
        assert wo.title != wo.homeowner_title, "staff keep the English title"

async def test_a_vendors_reply_tells_a_portuguese_homeowner_in_portuguese(
        database: Database, config: Config) -> None:
    job = make_job(database, config)
    ref = set_language(database, job.sr_id, "pt-BR")
    send_to(database, config, job.wo_id, ACE)
    with database.session() as s:
        notice = s.scalars(select(OutboundMessage).where(
            OutboundMessage.kind == "vendor_notice")).one()
        reply_to = email.message_from_bytes(notice.raw, policy=email.policy.default)["Reply-To"]
        message_id = notice.message_id
    raw = (f"From: Ace <{ACE}>\nTo: {reply_to}\nSubject: Re: job\n"
           f"Date: Tue, 01 Dec 2026 09:00:00 -0700\nMessage-ID: <ace-1@example.net>\n"
           f"In-Reply-To: <{message_id}>\nContent-Type: text/plain; charset=utf-8\n\n"
           f"Thursday at 9 works.\n").encode()
    await process_mail(database, config, raw, mailbox="m/INBOX")
    with database.session() as s:
        told = s.scalars(select(OutboundMessage).where(
            OutboundMessage.kind == "homeowner_scheduled")).one()
        s.expunge(told)
    assert told.subject == f"[{ref}] Visita agendada: Leak under kitchen sink"
    text, _ = parts(told)
    assert "quinta-feira, 3 de dezembro de 2026, 9:00" in text and "Ace Plumbing" in text


# --- fallback and escaping --------------------------------------------------------------------

@pytest.mark.parametrize("lang", ["de", "zh", "en", None, "", "../x"])
async def test_a_language_we_have_no_translation_for_gets_english(
        database: Database, config: Config, lang: str | None) -> None:
    ack = await intake(database, config, SpeakingDrafter(lang), "The kitchen sink is leaking")
    text, html = parts(ack)
    assert "We received your request: Problema en casa" in ack.subject
    assert "Thank you for writing to the Acme Homes warranty team" in text
    assert "<html>" in html, "the English original, no lang attribute"

    job = make_job(database, config)
    ref = set_language(database, job.sr_id, lang)
    send_to(database, config, job.wo_id, ACE)
    told = schedule(database, config, job.wo_id)
    assert told.subject == f"[{ref}] Visit scheduled: Leak under kitchen sink"
    text, _ = parts(told)
    assert "Thursday, December 3, 2026, 8:00 AM to 10:00 AM (arrival window)" in text
    resolved = resolve(database, config, job.wo_id, job.other_wo_id)
    assert resolved.subject == f"[{ref}] Your warranty request is resolved"
    assert "is complete" in parts(resolved)[0]


@pytest.mark.parametrize("lang", ["en", *sorted(WORDS)])
def test_what_a_homeowner_wrote_is_escaped_in_every_translation(
        database: Database, config: Config, lang: str) -> None:
    job = make_job(database, config)
    set_language(database, job.sr_id, lang)
    with database.session() as s:
        wo = s.get(WorkOrder, job.wo_id)
        sr = s.get(ServiceRequest, job.sr_id)
        assert wo is not None and sr is not None
        wo.title = 'Leak <img src=x onerror="alert(1)"> & drip'
        sr.requester_name = "Dana <b>Whitfield</b>"
    send_to(database, config, job.wo_id, ACE)
    told = schedule(database, config, job.wo_id)
    text, html = parts(told)
    assert "<img" not in html and "<b>" not in html
    assert "Leak &lt;img src=x onerror=&#34;alert(1)&#34;&gt; &amp; drip" in html
    assert "Dana &lt;b&gt;Whitfield&lt;/b&gt;" in html
    assert 'Leak <img src=x onerror="alert(1)"> & drip' in text, "text parts are not escaped"
    assert told.subject.endswith('Leak <img src=x onerror="alert(1)"> & drip'), \
        "a subject is text, not HTML"


def test_every_homeowner_translation_is_whole() -> None:
    """A translated body needs its HTML twin and its subject, and the visit date its words:
    otherwise one mail would mix two languages."""
    found = set()
    for path in (TEMPLATES_DIR / "email").glob("*.*.txt"):
        template, lang, _ = path.name.split(".")
        if template not in HOMEOWNER_MAILS:
            continue
        found.add(lang)
        assert (path.parent / f"{template}.{lang}.html").exists(), path.name
        assert translation(f"{template}_subject", lang) == lang, f"{template}_subject.{lang}.txt"
    assert found >= set(WORDS)
    for lang in found:
        for template in HOMEOWNER_MAILS:
            assert translation(template, lang) == lang, f"{template}.{lang}.txt is missing"
        assert format_visit(*VISIT, DENVER, lang) != format_visit(*VISIT, DENVER), \
            f"no month and day names for {lang!r}"


# --- dates ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("lang", "start", "end", "expected"), [
    (None, VISIT[0], None, "Thursday, December 3, 2026, 8:00 AM"),
    ("en", *VISIT, "Thursday, December 3, 2026, 8:00 AM to 10:00 AM"),
    ("es", datetime(2026, 12, 3, 16, 0, tzinfo=UTC), None,
     "jueves, 3 de diciembre de 2026, 9:00 a. m."),
    ("es", datetime(2027, 2, 1, 20, 0, tzinfo=UTC), datetime(2027, 2, 1, 22, 30, tzinfo=UTC),
     "lunes, 1 de febrero de 2027, 1:00 p. m. a 3:30 p. m."),
    ("fr", datetime(2026, 12, 3, 16, 0, tzinfo=UTC), None, "jeudi 3 décembre 2026, 9 h 00"),
    ("fr", datetime(2026, 8, 1, 19, 30, tzinfo=UTC), datetime(2026, 8, 1, 22, 0, tzinfo=UTC),
     "samedi 1er août 2026, 13 h 30 à 16 h 00"),
    ("pt", datetime(2026, 12, 3, 16, 0, tzinfo=UTC), None,
     "quinta-feira, 3 de dezembro de 2026, 9:00"),
    ("pt", datetime(2026, 3, 10, 18, 0, tzinfo=UTC), datetime(2026, 3, 10, 20, 0, tzinfo=UTC),
     "terça-feira, 10 de março de 2026, 12:00 às 14:00"),
    ("de", *VISIT, "Thursday, December 3, 2026, 8:00 AM to 10:00 AM"),
    ("zh", VISIT[0], None, "Thursday, December 3, 2026, 8:00 AM"),
])
def test_the_visit_date_in_each_language(lang: str | None, start: datetime,
                                         end: datetime | None, expected: str) -> None:
    assert format_visit(start, end, DENVER, lang) == expected


def test_weekday_and_month_names_cover_the_whole_year() -> None:
    days = {lang: {format_visit(datetime(2026, 1, 5 + d, 18, tzinfo=UTC), None, DENVER, lang)
                   .split(",")[0].split(" ")[0] for d in range(7)} for lang in WORDS}
    assert days["es"] == {"lunes", "martes", "miércoles", "jueves", "viernes", "sábado",
                          "domingo"}
    assert days["fr"] == {"lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi",
                          "dimanche"}
    assert "sexta-feira" in days["pt"] and "domingo" in days["pt"] and len(days["pt"]) == 7
    months = [format_visit(datetime(2026, m, 15, 18, tzinfo=UTC), None, DENVER, "pt")
              for m in range(1, 13)]
    assert "de março de 2026" in months[2] and "de setembro de 2026" in months[8]
    assert "15 août 2026" in format_visit(datetime(2026, 8, 15, 18, tzinfo=UTC), None,
                                          DENVER, "fr")


# --- which language a mail is in --------------------------------------------------------------

MAILS = {
    "es": [
        "Hola, el lavabo del baño principal gotea mucho y el agua sale por debajo del mueble.",
        "El inodoro del baño principal tiene una fuga en la base.\n\nTambién la puerta de la "
        "recámara no cierra bien.\n\nGracias,\nLucía",
        "Buenas tardes, tenemos una fuga en la cocina. ¿Pueden mandar a alguien?",
        "Hola, el drywall del garage tiene una crack grande. Gracias",
        "se rompió la manija de la puerta del baño de arriba, ya no cierra\n\n"
        "Sent from my iPhone",
        "Hola, la puerta no cierra",
        "El GFCI de la cocina se dispara cada vez que uso el microondas, por favor revisen.",
        "Buenos días. Usted me dijo que el técnico vendría con las piezas. Nuestra casa sigue "
        "sin agua caliente.",
    ],
    "pt": [
        "Olá, a pia do banheiro está vazando e a água está molhando o armário. Obrigado.",
        "Boa tarde! A porta da garagem não fecha mais. Vocês podem mandar alguém?",
        "Bom dia, temos um vazamento na cozinha desde ontem. Obrigada, Ana",
        "Oi, a porta não fecha",
        "Olá, o drywall da sala tem uma rachadura e o GFCI do banheiro não funciona.\n\n"
        "Sent from my iPhone",
        "Não tem água quente desde ontem.",
        "Nossa casa está com um problema no telhado, caiu uma telha com o vento.",
        "Você pode mandar o técnico na sexta? Está chovendo dentro da sala.",
    ],
    "fr": [
        "Bonjour, l'évier de la cuisine fuit et l'eau coule sous le meuble. Merci.",
        "Bonjour, la porte du garage ne ferme plus. Pouvez-vous envoyer quelqu'un ? Merci",
        "Nous avons une fuite d'eau dans la salle de bain depuis hier soir.",
        "La porte ne ferme pas",
        "Bonjour, le drywall du garage a une fissure et le GFCI de la salle de bain saute.\n\n"
        "Sent from my iPhone",
        "Il y a une fuite sous l’évier.",
        "Le chauffage ne marche pas depuis ce matin, il fait très froid dans la maison.",
    ],
    "en": [
        "Hi, the kitchen sink is leaking under the cabinet. Thanks",
        "The A/C is not cooling. We live at 123 Calle de la Vista. Thanks, Maria",
        "Our home at 45 Rue de la Paix has a crack in the drywall.",
        "Hello, the GFCI in the master bath keeps tripping. Please send someone. "
        "Call me after 5 pm EST.",
        "No hot water since this morning. Please help.",
        "Please e-mail me when the plumber can come, I'm home most days.",
        "Do you have a time for the drywall repair? I'd like to be home.",
        "Hi Team, Maria de la Cruz here. Our front door lock is loose. Gracias!",
        "Water heater is leaking in the garage, there is water on the floor",
        "Sent the photos of the tile as you asked. Nos vemos, Jose",
    ],
}


@pytest.mark.parametrize(("lang", "text"),
                         [(lang, text) for lang, texts in MAILS.items() for text in texts])
def test_the_offline_drafter_tells_the_language(lang: str, text: str) -> None:
    assert detect_language(text) == lang


@pytest.mark.parametrize("text", [
    "garage door broke again. stuck open about 2 ft and wont close",
    "Paint is peeling by the window. Photos attached.",
    "HVAC tech never showed",
])
def test_english_mail_never_reads_as_another_language(text: str) -> None:
    assert detect_language(text) in ("en", None)


@pytest.mark.parametrize("text", ["Gracias", "Merci !", "Obrigado", "Thanks!", "ok", "Hola!",
                                  "de la", "fuga", ""])
def test_too_little_text_has_no_language(text: str) -> None:
    assert detect_language(text) is None


@pytest.mark.parametrize(("language", "fallback"), [
    (None, "We received your request: warranty request"),
    ("es", "Recibimos su solicitud: solicitud de garantía"),
    ("fr", "Nous avons bien reçu votre demande : demande de garantie"),
    ("pt", "Recebemos sua solicitação: solicitação de garantia"),
])
def test_an_ack_subject_without_the_homeowners_subject_stays_in_their_language(
        language: str | None, fallback: str) -> None:
    from warrantyd.daemon.render import localized, render

    subject = render(f"email/{localized('ack_subject', language)}.txt", sr_ref="SR-4",
                     subject="").strip()
    assert subject == f"[SR-4] {fallback}"
    assert render(f"email/{localized('ack_subject', language)}.txt", sr_ref="SR-4",
                  subject="Leak").strip().endswith(": Leak")
