"""The emergency tripwire: every rule fires on its cue, in English and Spanish, and stays
quiet on negations, fixed problems and hypotheticals; the urgency rules likewise."""

from __future__ import annotations

import pytest

from warrantyd.daemon.drafters.tripwire import (
    check_emergency,
    classify_priority,
    emergency_reasons,
    urgent_reason,
)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("We smell gas in the laundry room behind the dryer.", "gas smell"),
        ("There's a strong gas odor by the water heater.", "gas smell"),
        ("Huele mucho a gas en la cocina desde anoche.", "gas smell"),
        ("Our carbon monoxide detector started going off an hour ago.", "carbon monoxide alarm"),
        ("La alarma de monóxido de carbono está sonando.", "carbon monoxide alarm"),
        ("Sewage is backing up out of the basement floor drain.", "sewage backup"),
        ("Salen aguas negras por la coladera del sótano y se están regresando.", "sewage backup"),
        ("The supply hose under the sink burst and water is spraying everywhere.",
         "active water leak"),
        ("Water is coming out of the bottom of the water heater.", "active water leak"),
        ("I shut off the main water valve because of the leak.", "active water leak"),
        ("Se reventó un tubo y sale mucha agua.", "active water leak"),
        ("Cerramos la llave principal de la casa por la fuga.", "active water leak"),
        ("The furnace stopped working and it's 5 degrees outside.",
         "total loss of heat in cold weather"),
        ("No heat since last night, it's below zero out.", "total loss of heat in cold weather"),
        ("La calefacción no funciona y hace mucho frío.", "total loss of heat in cold weather"),
        ("We have no power at all in the house since this morning.", "total loss of power"),
        ("No tenemos luz en toda la casa.", "total loss of power"),
        ("We have no water at all, not one faucet works.", "total loss of water"),
        ("No tenemos agua en toda la casa.", "total loss of water"),
        ("The outlet in the bedroom sparked and the cover plate is scorched.",
         "sparking or scorched electrical"),
        ("El contacto echó chispas cuando conectamos la lámpara.",
         "sparking or scorched electrical"),
        ("There is a burning plastic smell at the electrical panel.",
         "burning smell at electrical"),
        ("I got a shock from the light switch in the hall.", "electric shock"),
    ],
)
def test_each_rule_fires(text: str, reason: str) -> None:
    assert reason in emergency_reasons(text)
    assert check_emergency(text) is not None


@pytest.mark.parametrize(
    "text",
    [
        "No gas smell, just a noisy dryer.",
        "We don't smell gas anymore.",
        "There is no smell of gas near the range.",
        "I checked for a gas leak and there was none.",
        "The leak was fixed last month.",
        "The pipe under the sink is not leaking anymore.",
        "Thanks for fixing the burst pipe last week, everything is dry.",
        "If you ever smell gas, call 911 first.",
        "Ya no huele a gas, gracias.",
        "The CO detector was fixed and works great now.",
        "We turned off the main breaker to change a fixture.",
        "The kitchen faucet drips a little.",
        "The exhaust fan in the bathroom has no power.",
        "Sprinkler zone 2 runs but no water comes out of the heads.",
        "We have no hot water since last night.",
        "It's pouring right now and water is dripping from the bedroom ceiling.",
        "After every rain there's a big puddle by the patio.",
        "The furnace makes a rattling noise when it starts.",
        "No sparks, no burning smell, the outlet just doesn't work.",
    ],
)
def test_quiet_on_negations_and_non_emergencies(text: str) -> None:
    assert check_emergency(text) is None, emergency_reasons(text)


def test_recurrence_overrides_a_fixed_problem() -> None:
    text = "The plumber fixed the leak last month but now water is spraying again from the pipe."
    assert check_emergency(text) == "active water leak"


def test_heat_needs_cold_weather_but_may_find_it_elsewhere_in_the_mail() -> None:
    assert check_emergency("The furnace stopped working this morning.") is None
    priority, reason = classify_priority(
        "The furnace stopped working this morning.", context="It's 4 degrees outside."
    )
    assert (priority, reason) == ("emergency", "total loss of heat in cold weather")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("We have had no hot water since last night.", "no hot water"),
        ("The garage door came off the track and is stuck half open.",
         "garage door stuck or off track"),
        ("La puerta del garaje no cierra y se quedó abierta toda la noche.",
         "garage door stuck or off track"),
        ("The deadbolt won't throw so the front door can't be locked.", "door cannot be locked"),
        ("The GFCI in the garage keeps tripping and our freezer thawed.",
         "GFCI tripping with food at risk"),
        ("The AC quit and it's 101 today; my mother is 84 with a heart condition.",
         "no cooling with vulnerable occupants or extreme heat"),
        ("It's raining right now and water is dripping from the ceiling.",
         "roof leak while raining"),
    ],
)
def test_urgent_rules(text: str, reason: str) -> None:
    assert urgent_reason(text) == reason
    assert classify_priority(text)[0] == "urgent"


@pytest.mark.parametrize(
    "text",
    [
        "URGENT!!! The cabinet door by the range hangs crooked. Please send someone ASAP.",
        "The bedroom window won't lock (second floor, so not a security thing).",
        "During the storm last week water came in under the window. It's dry now.",
        "The AC upstairs is weak in the afternoons.",
    ],
)
def test_routine_despite_urgent_words(text: str) -> None:
    assert classify_priority(text) == ("routine", None)


# --- emergencies written without the usual trigger words ---------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("The hallway carpet is soaked and water won't stop coming from behind the washer.",
         "active water leak"),
        ("Water keeps running out from under the vanity no matter what we do.",
         "active water leak"),
        ("We can't get the water to stop, it's still pouring out of the wall by the tub.",
         "active water leak"),
        ("Sigue saliendo agua debajo del calentador y ya mojó toda la alfombra.",
         "active water leak"),
        ("The whole kitchen smells like rotten eggs, worst right beside the cooktop.",
         "gas smell"),
        ("There's a sulfur smell in the utility closet next to the furnace.", "gas smell"),
        ("Hay un olor a huevo podrido cerca de la estufa.", "gas smell"),
        ("Black water that smells like a sewer comes up into our tub whenever the toilet is "
         "flushed.", "sewage backup"),
        ("The basement floor drain is overflowing with sewage water.", "sewage backup"),
        ("The downstairs shower filled with brown water that smells of sewage.",
         "sewage backup"),
    ],
)
def test_indirect_emergencies_fire(text: str, reason: str) -> None:
    assert reason in emergency_reasons(text), emergency_reasons(text)


@pytest.mark.parametrize(
    "text",
    [
        "Water keeps coming in under the back door every time it rains hard.",
        "The toilet keeps running after every flush.",
        "The hot water from the kitchen tap smells like rotten eggs.",
        "There was a rotten egg smell last week but the gas company checked and found nothing.",
        "A faint sewer smell comes from the basement floor drain now and then.",
        "The water stopped coming once we tightened the hose, everything is dry now.",
    ],
)
def test_indirect_cues_stay_quiet_when_not_emergencies(text: str) -> None:
    assert check_emergency(text) is None, emergency_reasons(text)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Our garage door is stuck halfway open and wont go down.",
         "garage door stuck or off track"),
        ("The overhead door in the garage stopped a foot off the ground and won't close.",
         "garage door stuck or off track"),
        ("The back door deadbolt no longer lines up with the strike so we cant lock it.",
         "door cannot be locked"),
        ("Our front door won't lock since the cold weather started.", "door cannot be locked"),
        ("It has been raining since noon and water is dripping through the hallway ceiling.",
         "roof leak while raining"),
        ("Storms all night and now there's a drip from the ceiling light in the loft.",
         "roof leak while raining"),
    ],
)
def test_urgent_without_the_usual_words(text: str, reason: str) -> None:
    assert urgent_reason(text) == reason


@pytest.mark.parametrize(
    "text",
    [
        "The bathroom door privacy lock doesn't lock.",
        "The garage door is noisy when it opens.",
        "The door from the house into the garage doesn't close by itself anymore.",
        "Attic hatch in the garage won't close all the way.",
        "After the rain last week there was a water stain on the ceiling.",
    ],
)
def test_not_urgent_lookalikes(text: str) -> None:
    assert urgent_reason(text) is None


# --- French and Portuguese: homeowners write in the language they have ------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Ça sent le gaz dans la cuisine depuis ce matin.", "gas smell"),
        ("Il y a une forte odeur de gaz près du chauffe-eau.", "gas smell"),
        ("Sentimos cheiro de gás na lavanderia, atrás da secadora.", "gas smell"),
        ("Está com um cheiro forte de gás perto do fogão.", "gas smell"),
        ("Também cheira a gás perto do aquecedor na lavanderia.", "gas smell"),
        ("Le détecteur de monoxyde de carbone sonne depuis une heure.",
         "carbon monoxide alarm"),
        ("O alarme de monóxido de carbono disparou agora há pouco.", "carbon monoxide alarm"),
        ("Les eaux usées remontent par le siphon de sol du sous-sol.", "sewage backup"),
        ("O esgoto está voltando pelo ralo do banheiro e transbordando.", "sewage backup"),
        ("Un tuyau a éclaté sous l'évier et l'eau gicle partout.", "active water leak"),
        ("Nous avons fermé le robinet principal à cause de la fuite.", "active water leak"),
        ("L'eau n'arrête pas de couler du plafond.", "active water leak"),
        ("L'eau coule du plafond du salon, on a fermé l'entrée d'eau principale.",
         "active water leak"),
        ("O cano estourou e tem água por todo lado.", "active water leak"),
        ("Fechamos o registro geral da casa por causa do vazamento.", "active water leak"),
        ("A água não para de sair do aquecedor.", "active water leak"),
        ("Nous n'avons plus de chauffage et il fait très froid dehors.",
         "total loss of heat in cold weather"),
        ("O aquecimento parou de funcionar e está fazendo muito frio.",
         "total loss of heat in cold weather"),
        ("Nous n'avons plus d'électricité dans toute la maison.", "total loss of power"),
        ("Estamos sem luz na casa inteira desde ontem.", "total loss of power"),
        ("Nous n'avons plus d'eau du tout, aucun robinet ne fonctionne.",
         "total loss of water"),
        ("Não temos água em nenhuma torneira da casa.", "total loss of water"),
        ("La prise de la chambre a fait des étincelles et le cache est noirci.",
         "sparking or scorched electrical"),
        ("A tomada da sala soltou faíscas quando ligamos o aspirador.",
         "sparking or scorched electrical"),
        ("Ça sent le plastique brûlé au tableau électrique.", "burning smell at electrical"),
        ("Tem cheiro de queimado saindo do quadro de luz.", "burning smell at electrical"),
        ("J'ai pris une décharge en touchant l'interrupteur du couloir.", "electric shock"),
        ("Levei um choque no interruptor do corredor.", "electric shock"),
        ("Le plafond de la salle de bain s'est effondré cette nuit.", "ceiling collapse"),
        ("O teto do banheiro desabou hoje de manhã.", "ceiling collapse"),
    ],
)
def test_each_rule_fires_in_french_and_portuguese(text: str, reason: str) -> None:
    assert reason in emergency_reasons(text)


@pytest.mark.parametrize(
    "text",
    [
        "Il n'y a pas d'odeur de gaz, juste un bruit dans la sécheuse.",
        "Ça ne sent plus le gaz, merci.",
        "La fuite a été réparée le mois dernier.",
        "L'eau coule du plafond quand il pleut fort, depuis l'hiver.",
        "Si jamais ça sent le gaz, que faut-il faire ?",
        "Le robinet de la cuisine goutte un peu.",
        "Nous n'avons plus d'eau chaude depuis hier soir.",
        "Não tem cheiro de gás, só um barulho na secadora.",
        "O vazamento já foi consertado na semana passada.",
        "Se algum dia sentirmos cheiro de gás, o que devemos fazer?",
        "A torneira da cozinha pinga um pouco.",
        "O exaustor do banheiro está sem energia.",
    ],
)
def test_french_and_portuguese_negations_and_non_emergencies_stay_quiet(text: str) -> None:
    assert check_emergency(text) is None, emergency_reasons(text)


def test_french_and_portuguese_recurrence_overrides_a_fixed_problem() -> None:
    assert check_emergency("Le plombier a réparé la fuite, mais l'eau gicle partout "
                           "de nouveau.") == "active water leak"
    assert check_emergency("O encanador consertou, mas o cano estourou de novo e tem "
                           "água por todo lado.") == "active water leak"


def test_french_and_portuguese_heat_needs_cold_weather() -> None:
    assert check_emergency("Le chauffage ne fonctionne plus depuis ce matin.") is None
    assert classify_priority("Le chauffage ne fonctionne plus depuis ce matin.",
                             context="Il fait moins 15 dehors.")[0] == "emergency"
    assert classify_priority("O aquecimento parou hoje cedo.",
                             context="Está nevando e abaixo de zero.")[0] == "emergency"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Nous n'avons plus d'eau chaude depuis hier soir.", "no hot water"),
        ("Estamos sem água quente desde ontem.", "no hot water"),
        ("La porte du garage est sortie du rail et reste bloquée ouverte.",
         "garage door stuck or off track"),
        ("A porta da garagem não fecha e ficou aberta a noite toda.",
         "garage door stuck or off track"),
        ("La serrure est cassée, on ne peut plus fermer la porte d'entrée à clé.",
         "door cannot be locked"),
        ("A fechadura quebrou e não conseguimos trancar a porta da frente.",
         "door cannot be locked"),
        ("Le disjoncteur du garage saute sans arrêt et le congélateur a décongelé.",
         "GFCI tripping with food at risk"),
        ("La climatisation ne fonctionne plus et nous avons un bébé de 3 mois.",
         "no cooling with vulnerable occupants or extreme heat"),
        ("O ar-condicionado parou e minha mãe é idosa.",
         "no cooling with vulnerable occupants or extreme heat"),
        ("Il pleut en ce moment et l'eau goutte du plafond de la chambre.",
         "roof leak while raining"),
        ("Está chovendo agora e tem uma goteira no teto do quarto.",
         "roof leak while raining"),
    ],
)
def test_urgent_rules_in_french_and_portuguese(text: str, reason: str) -> None:
    assert urgent_reason(text) == reason
    assert classify_priority(text)[0] == "urgent"


@pytest.mark.parametrize("text", [
    "The furnace stopped working this morning, never had this happen before.",  # not "neve"
    "The furnace quit; we just moved here from Nevada and it is 70 degrees outside.",
    "The outlet by the fondue pot stopped working.",
    "It rains every time we open the garage door, the gutter overflows onto it.",
])
def test_english_words_that_share_a_start_with_the_new_cues_stay_quiet(text: str) -> None:
    assert check_emergency(text) is None, emergency_reasons(text)


@pytest.mark.parametrize(("text", "cold"), [
    ("The furnace stopped working and it is 20 degrees outside.", True),
    ("The furnace stopped working and it is 65 degrees outside.", False),
    ("Le chauffage ne fonctionne plus et il fait -12 dehors.", True),
    ("Le chauffage ne fonctionne plus, il fait 25 degrés dehors.", False),  # Celsius: warm
    ("Le chauffage ne fonctionne plus, il fait 12 dans la maison.", True),
    ("Le chauffage ne fonctionne plus, il fait 20 dans la maison.", False),
    ("O aquecimento parou e faz 2 graus lá fora.", True),
])
def test_a_temperature_is_cold_only_on_either_scale(text: str, cold: bool) -> None:
    """Mail rarely says Celsius or Fahrenheit: a temperature counts as cold weather only
    when it is cold on both readings that make sense."""
    assert (check_emergency(text) == "total loss of heat in cold weather") is cold
