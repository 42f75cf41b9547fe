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
