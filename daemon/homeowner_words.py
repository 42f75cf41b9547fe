"""What the homeowner reads about their issues, in their language: its title and its place.

Work orders are written for staff and vendors, in English: the language model writes titles
and places in English, the offline drafter names places in English.  A homeowner whose mail
goes out in Spanish, French or Portuguese should not find English words in it, so the mails
to homeowners ask here:

* the title: the drafter's ``homeowner_title`` (the language model writes it in the mail's
  language; the offline drafter's title is the homeowner's own words already), else the
  staff title;
* the place: its name in that language, or nothing when there is no name for it here (a
  model's free-text place) — the title usually names it anyway.

The place names are written here, for the places the offline drafter names and the common
ones a model writes; like the visit dates (``vendors.format_visit``) they do not depend on
what the server has installed.
"""

from __future__ import annotations

import re

from warrantyd.storage.models import WorkOrder

__all__ = ["issue_title", "language_name", "place_name"]

_PLACES: dict[str, dict[str, str]] = {
    "es": {
        "bathroom": "baño", "primary bathroom": "baño principal",
        "upstairs bathroom": "baño de arriba", "downstairs bathroom": "baño de abajo",
        "basement bathroom": "baño del sótano", "hall bathroom": "baño del pasillo",
        "kids' bathroom": "baño de los niños", "guest bathroom": "baño de visitas",
        "powder room": "medio baño", "bedroom": "recámara", "primary bedroom": "recámara principal",
        "upstairs bedroom": "recámara de arriba", "downstairs bedroom": "recámara de abajo",
        "guest bedroom": "recámara de visitas", "child's bedroom": "recámara de los niños",
        "bedroom over garage": "recámara sobre el garaje", "closet": "clóset",
        "primary closet": "clóset principal", "walk-in closet": "vestidor",
        "coat closet": "clóset de la entrada", "linen closet": "clóset de blancos",
        "kitchen": "cocina", "pantry": "despensa", "laundry room": "cuarto de lavado",
        "mudroom": "cuarto de entrada", "dining room": "comedor", "living room": "sala",
        "family room": "sala familiar", "office": "oficina", "bonus room": "cuarto adicional",
        "loft": "tapanco", "attic": "ático", "crawl space": "espacio bajo el piso",
        "basement": "sótano", "hallway": "pasillo", "upstairs hallway": "pasillo de arriba",
        "stairwell": "escalera", "front entry": "entrada", "front porch": "porche",
        "back patio": "patio trasero", "deck": "terraza", "driveway": "entrada de autos",
        "front walkway": "andador de la entrada", "front yard": "jardín delantero",
        "back yard": "jardín trasero", "side yard": "patio lateral", "garage": "garaje",
        "roof": "techo", "back of house": "parte trasera de la casa",
        "back door": "puerta trasera", "side of house": "costado de la casa",
        "front of house": "frente de la casa", "whole house": "toda la casa",
        "upstairs": "planta alta", "exterior": "exterior",
    },
    "fr": {
        "bathroom": "salle de bain", "primary bathroom": "salle de bain principale",
        "upstairs bathroom": "salle de bain de l'étage",
        "downstairs bathroom": "salle de bain du rez-de-chaussée",
        "basement bathroom": "salle de bain du sous-sol",
        "hall bathroom": "salle de bain du couloir",
        "kids' bathroom": "salle de bain des enfants",
        "guest bathroom": "salle de bain des invités", "powder room": "salle d'eau",
        "bedroom": "chambre", "primary bedroom": "chambre principale",
        "upstairs bedroom": "chambre de l'étage",
        "downstairs bedroom": "chambre du rez-de-chaussée", "guest bedroom": "chambre d'amis",
        "child's bedroom": "chambre d'enfant",
        "bedroom over garage": "chambre au-dessus du garage", "closet": "placard",
        "primary closet": "penderie de la chambre principale", "walk-in closet": "dressing",
        "coat closet": "placard de l'entrée", "linen closet": "armoire à linge",
        "kitchen": "cuisine", "pantry": "garde-manger", "laundry room": "buanderie",
        "mudroom": "vestibule", "dining room": "salle à manger", "living room": "salon",
        "family room": "salle familiale", "office": "bureau",
        "bonus room": "pièce supplémentaire", "loft": "mezzanine", "attic": "grenier",
        "crawl space": "vide sanitaire", "basement": "sous-sol", "hallway": "couloir",
        "upstairs hallway": "couloir de l'étage", "stairwell": "escalier",
        "front entry": "entrée", "front porch": "porche", "back patio": "terrasse arrière",
        "deck": "terrasse", "driveway": "allée", "front walkway": "allée piétonne",
        "front yard": "cour avant", "back yard": "cour arrière", "side yard": "cour latérale",
        "garage": "garage", "roof": "toit", "back of house": "arrière de la maison",
        "back door": "porte arrière", "side of house": "côté de la maison",
        "front of house": "façade", "whole house": "toute la maison", "upstairs": "étage",
        "exterior": "extérieur",
    },
    "pt": {
        "bathroom": "banheiro", "primary bathroom": "banheiro da suíte",
        "upstairs bathroom": "banheiro de cima", "downstairs bathroom": "banheiro de baixo",
        "basement bathroom": "banheiro do porão", "hall bathroom": "banheiro do corredor",
        "kids' bathroom": "banheiro das crianças", "guest bathroom": "banheiro de visitas",
        "powder room": "lavabo", "bedroom": "quarto", "primary bedroom": "suíte",
        "upstairs bedroom": "quarto de cima", "downstairs bedroom": "quarto de baixo",
        "guest bedroom": "quarto de hóspedes", "child's bedroom": "quarto das crianças",
        "bedroom over garage": "quarto sobre a garagem", "closet": "armário",
        "primary closet": "closet da suíte", "walk-in closet": "closet",
        "coat closet": "armário da entrada", "linen closet": "armário de roupa de cama",
        "kitchen": "cozinha", "pantry": "despensa", "laundry room": "lavanderia",
        "mudroom": "entrada de serviço", "dining room": "sala de jantar",
        "living room": "sala de estar", "family room": "sala de TV", "office": "escritório",
        "bonus room": "cômodo extra", "loft": "mezanino", "attic": "sótão",
        "crawl space": "vão sob o piso", "basement": "porão", "hallway": "corredor",
        "upstairs hallway": "corredor de cima", "stairwell": "escada",
        "front entry": "entrada", "front porch": "varanda da frente",
        "back patio": "pátio dos fundos", "deck": "deck", "driveway": "entrada da garagem",
        "front walkway": "calçada da frente", "front yard": "jardim da frente",
        "back yard": "quintal", "side yard": "lateral da casa", "garage": "garagem",
        "roof": "telhado", "back of house": "fundos da casa", "back door": "porta dos fundos",
        "side of house": "lateral da casa", "front of house": "fachada",
        "whole house": "casa toda", "upstairs": "andar de cima", "exterior": "área externa",
    },
}
_NUMBERED_BEDROOM = re.compile(r"^bedroom (\d+)$")
_BEDROOM_WORD = {"es": "recámara", "fr": "chambre", "pt": "quarto"}


def place_name(place: str | None, language: str | None) -> str | None:
    """``place`` (an English place name) in ``language``; unchanged for English (None); None
    when we have no name for it in that language."""
    if not place or not language or language == "en":
        return place
    names = _PLACES.get(language)
    if names is None:
        return None
    key = " ".join(place.lower().split())
    numbered = _NUMBERED_BEDROOM.match(key)
    if numbered:
        return f"{_BEDROOM_WORD[language]} {numbered.group(1)}"
    return names.get(key)


def issue_title(wo: WorkOrder, language: str | None = None) -> str:
    """The title of ``wo`` in a mail written in ``language`` (None: the English original, as
    vendors get it): the homeowner's-language title when the mail is translated and the
    drafter wrote one, else the staff title; never empty."""
    for title in ((wo.homeowner_title if language else None), wo.title):
        if title and title.strip():
            return " ".join(title.split())
    return " ".join(wo.description.split())[:60] or wo.trade.replace("_", " ")


_LANGUAGE_NAMES = {
    "ar": "Arabic", "de": "German", "es": "Spanish", "fr": "French", "hi": "Hindi",
    "it": "Italian", "ja": "Japanese", "ko": "Korean", "pl": "Polish", "pt": "Portuguese",
    "ru": "Russian", "tl": "Tagalog", "uk": "Ukrainian", "vi": "Vietnamese", "zh": "Chinese",
}


def language_name(code: str | None) -> str | None:
    """The English name of a homeowner's language ("French"), for staff: who calls or writes
    back should know; None for English or when the language is not known."""
    lang = (code or "").lower()[:2]
    if not lang.isalpha() or lang == "en":
        return None
    return _LANGUAGE_NAMES.get(lang, code)
