"""Fixed rules that flag emergencies before any model reads the mail.

A missed gas smell or burst pipe costs far more than a false alarm, and a language model can
be down, slow or wrong.  So the emergency check is a small set of plain rules that run first,
on every mail, in English and Spanish, and whose reasons staff can read ("gas smell",
"sewage backup").  The drafter (offline or LLM) may add urgency, never remove an emergency
that fired here.

Negation matters as much as the cue: "no gas smell", "not leaking anymore" and "the leak
was fixed last month" must stay quiet, so every cue is checked against the words just
before it and against resolution words in its sentence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "EmergencyRule", "check_emergency", "classify_priority", "emergency_reasons", "urgent_reason",
]


@dataclass(frozen=True)
class EmergencyRule:
    """One emergency cue: the reason staff see, and the pattern that finds it in a clause."""

    reason: str
    pattern: re.Pattern[str]
    needs: re.Pattern[str] | None = None
    """A second pattern the same sentence (or, for weather, the text) must also match."""
    needs_scope: str = "sentence"
    unless: re.Pattern[str] | None = None
    """A pattern that, found in the same sentence, says the cue means something ordinary."""


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


_COLD_WEATHER = _rx(
    r"\b(?:freez\w*|below zero|sub-?zero|snow\w*|winter|blizzard|cold snap|frigid|"
    r"-?\d{1,2}\s*(?:°|degrees?|deg\b)\s*(?:f\b)?\s*(?:outside|out|outdoors)|"
    r"(?:outside|out)\s+(?:it'?s|is)\s+-?\d{1,2}\b|"
    r"\d{1,2}\s*(?:°|degrees?)?\s*below|cold(?:er)? (?:outside|out there|weather|night)|"
    r"(?:house|home|inside) is (?:getting |very |really )?(?:cold|freezing)|"
    r"\b[1-5]\d\s*(?:°|degrees?)(?:\s*f)?\s*(?:inside|in the house|indoors)|"
    r"hace (?:mucho )?fr[ií]o|helad\w*|bajo cero|invierno|nieve|nevando)"
)
_ELECTRICAL_PLACE = _rx(
    r"\b(?:panel|breaker|outlet|plug|socket|switch|wir(?:e|es|ing)|receptacle|cover plate|"
    r"electrical|cord|light fixture|fixture|contacto|enchufe|tomacorriente|cable|apagador|"
    r"interruptor|caja de breakers|tablero)"
)

EMERGENCY_RULES: tuple[EmergencyRule, ...] = (
    EmergencyRule(
        "gas smell",
        _rx(
            r"\b(?:(?:smell|smells|smelled|smelling|odou?r|whiff)\s+(?:of\s+|like\s+)?"
            r"(?:natural\s+|propane\s+|rotten\s+eggs?\s+or\s+)?gas\b|"
            r"gas\s+(?:smell|odou?r|leak|leaking|is leaking)|rotten[- ]egg\s+smell|"
            r"leaking gas|hiss\w* (?:from|at|of) the gas|"
            r"(?:olor|huele|oler)\s+(?:mucho\s+|fuerte\s+|bastante\s+)?a\s+gas|fuga de gas|"
            r"escape de gas|"
            # Mercaptan, the smell put in gas, as people describe it without saying "gas".
            r"(?:smell\w*|odou?r|stinks?|stench|whiff)\b[^.!?]{0,30}?\b(?:rotten|rotting|bad)[- ]"
            r"eggs?|(?:rotten|rotting)[- ]eggs?\b[^.!?]{0,20}?\b(?:smell\w*|odou?r|stench)|"
            r"sul(?:f|ph)ur\w*\s+(?:smell|odou?r|stench)|(?:smell\w*|odou?r)\s+(?:of|like)\s+"
            r"sul(?:f|ph)ur|(?:olor|huele)\s+a\s+huevos?\s+podridos?|"
            r"(?:olor|huele)\s+a\s+azufre)"
        ),
        # Sulphur in the water (a water-heater anode) smells the same and is routine.
        unless=_rx(
            r"\b(?:hot water|tap water|the water (?:smells|from)|water (?:smells|from the)|"
            r"from the (?:tap|faucet|shower ?head|hot water)|faucets?|taps?|well water|"
            r"agua (?:caliente|de la llave))\b"
        ),
    ),
    EmergencyRule(
        "carbon monoxide alarm",
        _rx(
            r"\b(?:carbon monoxide|co\b\s*(?:alarm|detector)|co2? detector|"
            r"mon[oó]xido(?: de carbono)?)"
        ),
        needs=_rx(
            r"\b(?:alarm|detector|going off|went off|goes off|sound\w*|beep\w*|"
            r"alarma|suena|son[oó]|sonando|detector)"
        ),
    ),
    EmergencyRule(
        "sewage backup",
        _rx(
            r"\b(?:sewage|sewer water|raw sewage|aguas negras|aguas residuales|"
            r"(?:toilet|drain|drains)\s+(?:is |are )?(?:backing|backed) up|"
            r"(?:backing|backed|coming) up (?:out of|through|from) (?:the |a |our )?"
            r"(?:floor |shower |tub |basement )*drains?|"
            r"smell\w* (?:like|of) (?:an? |the )?sewer|sewer[- ]smelling|"
            r"(?:black|brown|gr[ae]y(?:[- ]black)?|dirty|filthy|murky)\s+water\s+(?:is\s+)?"
            r"(?:coming|came|comes|bubbling|bubbles|backing|backs|backed|gurgling)\s+up)"
        ),
        needs=_rx(
            r"\b(?:back\w* up|backing|coming up|comes up|came up|bubbl\w* up|overflow\w*|"
            r"flood\w*|spill\w*|spread\w*|out of|into|all over|on the floor|fill\w* (?:up )?"
            r"with|came over|regres\w*|sal(?:e|iendo)|brot\w*|desbord\w*)"
        ),
    ),
    EmergencyRule(
        "active water leak",
        _rx(
            r"\b(?:burst|bursting|broke open|water\s+(?:is\s+|was\s+)?"
            r"(?:spraying|gushing|pouring|flooding|shooting|streaming)|"
            r"it\s+(?:is\s+|was\s+|'s\s+)?(?:spraying|gushing)|"
            r"spraying (?:water|everywhere)|water everywhere|flood(?:ed|ing)\b|"
            r"(?:water|it)\s+(?:is\s+|was\s+)?coming out of (?:the )?(?:bottom|pipe|wall|"
            r"ceiling|valve|tank|water heater|fitting|hose)|"
            r"puddle (?:is )?spreading|"
            r"(?:shut|turned|turn|shut)\s+(?:off\s+)?(?:the\s+)?(?:main\s+water|water\s+main|"
            r"main(?!\s+(?:breaker|panel|switch|power|electrical|disconnect))(?:\s+valve)?|"
            r"water to the (?:house|home)|house water)(?:\s+off)?|"
            r"fuga de agua muy fuerte|fuga (?:muy )?(?:grande|fuerte)|"
            r"(?:cerramos|cerr[eé]|cortamos) (?:la )?(?:llave|v[aá]lvula) (?:principal|general|"
            r"de paso principal)|se revent\w*|est[aá] saliendo (?:mucha )?agua|"
            r"sale mucha agua|inund\w*|"
            # Water that will not stop, however it is said.
            r"water\b[^.!?,]{0,30}?\b(?:keeps|kept|won'?t stop|wont stop|will not stop|"
            r"doesn'?t stop|is still|still|continues to)\s+(?:coming|pouring|running|flowing|"
            r"spreading|rising|gushing|leaking|streaming)|"
            r"(?:can'?t|cant|cannot|couldn'?t|unable to)\s+(?:get\s+)?(?:the\s+)?(?:water|leak|it)"
            r"\s+to\s+stop|(?:can'?t|cant|cannot|couldn'?t)\s+stop\s+(?:the\s+)?(?:water|leak)|"
            r"still (?:pouring|gushing|streaming|flowing) (?:out of|from|through|down)|"
            r"towels?\b[^.!?]{0,40}\b(?:soaked|soaking|drenched|saturated)|"
            r"(?:sigue|contin[uú]a)\s+saliendo\s+(?:mucha\s+)?agua|"
            r"no\s+(?:para|deja)\s+de\s+salir\s+(?:el\s+)?agua|el agua no (?:para|deja de salir))"
        ),
        # Water that comes in with every storm is a recurring leak, not one running now.
        unless=_rx(r"\b(?:every time|each time|whenever|after (?:every|each|heavy|a|big) "
                   r"(?:rain|storm)|when(?:ever)? it rains|cada vez que llueve)\b"),
    ),
    EmergencyRule(
        "total loss of heat in cold weather",
        _rx(
            r"\b(?:no heat|without heat|heat (?:is|went) out|heat(?:ing)? (?:stopped|quit|"
            r"isn'?t working|is not working|doesn'?t work)|"
            r"furnace (?:stopped|quit|died|is out|went out|isn'?t working|is not working|"
            r"not working|won'?t (?:turn|come|kick) on|doesn'?t (?:work|turn on))|"
            r"(?:blowing|blows) cold air|not heating|no calienta|"
            r"sin calefacci[oó]n|no (?:hay|tenemos) calefacci[oó]n|"
            r"(?:la )?calefacci[oó]n no (?:funciona|prende|sirve)|el calent[oó]n no prende)"
        ),
        needs=_COLD_WEATHER,
        needs_scope="text",
    ),
    EmergencyRule(
        "total loss of power",
        _rx(
            r"\b(?:no power (?:at all|anywhere|in the (?:whole |entire )?(?:house|home))|"
            r"(?:whole|entire) (?:house|home) (?:has |is )?(?:no power|without power|lost power|"
            r"went dark)|(?:we|house|home) (?:have|has|are|is)? ?(?:no|without) (?:power|"
            r"electricity)|(?:we|house|home|half (?:of )?(?:our|the) (?:house|home)) lost "
            r"(?:all )?power|power (?:is|went) out|"
            r"(?:no|sin) (?:tenemos |hay )?(?:luz|electricidad|corriente) en (?:toda )?la casa|"
            r"no tenemos (?:luz|electricidad|corriente)|se fue la luz)"
        ),
    ),
    EmergencyRule(
        "total loss of water",
        _rx(
            r"\b(?:no (?:running )?water (?:at all|anywhere|in the (?:whole |entire )?(?:house|"
            r"home)|"
            r"to the (?:house|home))|(?:we|house|home) (?:have|has) (?:no|zero) (?:running )?water|"
            r"(?:we|house|home) (?:is |are )?without water|"
            r"not one faucet|none of the faucets|no tenemos agua|no hay agua en (?:toda )?la casa|"
            r"sin agua en (?:toda )?la casa)"
        ),
    ),
    EmergencyRule(
        "sparking or scorched electrical",
        _rx(
            r"\b(?:spark\w*|arc(?:ed|ing)|scorch\w*|melt(?:ed|ing)|smok(?:e|ing) (?:from|coming)|"
            r"black mark|burn mark|charred|chispa\w*|ech[oó] chispas|quemad[oa])"
        ),
        needs=_ELECTRICAL_PLACE,
    ),
    EmergencyRule(
        "burning smell at electrical",
        _rx(
            r"\b(?:burning (?:plastic |electrical |rubber )?(?:smell|odou?r)|"
            r"smell\w* (?:of |like )?(?:something )?(?:burn\w*|melting|electrical fire)|"
            r"burnt (?:plastic )?smell|olor a (?:quemado|pl[aá]stico quemado)|huele a quemado)"
        ),
        needs=_ELECTRICAL_PLACE,
    ),
    EmergencyRule(
        "electric shock",
        _rx(r"\b(?:got (?:a )?shock(?:ed)?|shocked (?:me|him|her|us)|electrocut\w*|"
            r"(?:me|le|nos) dio toques?|da toques)"),
    ),
    EmergencyRule(
        "ceiling collapse",
        _rx(r"\b(?:ceiling (?:collapsed|caved in|fell in|came down)|"
            r"(?:se cay[oó]|se derrumb[oó]) el techo)"),
    ),
)

# Words in the few tokens before a cue that turn it off ("no gas smell", "don't smell gas").
_NEGATORS = _rx(
    r"\b(?:no|not|never|without|don'?t|doesn'?t|didn'?t|isn'?t|wasn'?t|aren'?t|haven'?t|"
    r"hasn'?t|nor|nothing|zero|ni|nunca|sin|ning[uú]n\w*)\b|n't\b"
)
# A cue inside a conditional or a question about the future is advice, not a report.
_HYPOTHETICAL = _rx(
    r"\b(?:if|in case|should we ever|what (?:do|should) (?:we|i) do (?:if|when)|si alguna vez|"
    r"en caso de|por si)\b"
)
# A sentence saying the problem is over.
_RESOLVED = _rx(
    r"\b(?:(?:was|were|got|been|already|had (?:it|them)|came (?:out )?and|you|they|"
    r"plumber|electrician|technician|tech|vendor|company)\b[^.!?]{0,30}\b(?:fixed|repaired|"
    r"resolved)|(?:fixed|repaired) (?:it|them|last|yesterday|in \w+|on \w+)|"
    r"taken care of|took care of|no longer (?:leak|drip|smell|spark|run|happen|an? |"
    r"a problem|an issue)\w*|not \w+ing anymore|"
    r"thanks? (?:you )?for (?:fixing|repairing|sending|getting)|(?:everything|it) is dry|"
    r"(?:it'?s|is) dry now|"
    r"(?:not|n't|no longer)\s+(?:\w+\s+){0,2}?(?:leak|drip|smell|spark|beep|chirp|happen|"
    r"flood|spray|trip|overflow|back(?:ing)? up|go(?:es|ing)? off)\w*\b[^.!?]{0,20}"
    r"\b(?:anymore|any more)|stopped leaking|working (?:great|fine|perfectly|well)|"
    r"works (?:great|fine|perfectly)|all good|ya no|ya (?:se )?(?:arregl|repar|compus)\w*|"
    r"arreglaron|repararon|ya qued[oó]|funciona bien|there was none|found nothing|"
    r"none found|nothing found|no leak found|came back (?:negative|clean|fine))"
)
# ... unless it came back.
_RECURRED = _rx(
    r"\b(?:again|still|came back|is back|returned|recurr\w*|otra vez|de nuevo|sigue|"
    r"todav[ií]a|volvi[oó])\b"
)
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?;])\s+|\n+")
_CLAUSE_SPLIT = re.compile(
    r",|\s[-–—]\s|\b(?:and|but|however|although|pero|aunque|y)\b", re.IGNORECASE
)


def _sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_SPLIT.split(text) if s.strip()]


def _live_sentences(text: str) -> list[str]:
    """The sentences of ``text`` that do not report a problem as solved (split and checked
    once per text, not once per rule: this runs on every issue of every mail)."""
    return [s for s in _sentences(text) if not (_RESOLVED.search(s) and not _RECURRED.search(s))]


def _negated(clause: str, start: int) -> bool:
    """True when one of the three words before ``start`` negates the cue."""
    before = clause[:start].split()[-3:]
    return bool(_NEGATORS.search(" ".join(before)))


def _clause_fires(rule: EmergencyRule, clause: str) -> bool:
    for match in rule.pattern.finditer(clause):
        if _negated(clause, match.start()):
            continue
        if _HYPOTHETICAL.search(clause[: match.start()]):
            continue
        return True
    return False


def emergency_reasons(text: str) -> list[str]:
    """Every emergency reason found in ``text``, in rule order, without repeats."""
    reasons: list[str] = []
    live = [(sentence, _CLAUSE_SPLIT.split(sentence)) for sentence in _live_sentences(text)]
    for rule in EMERGENCY_RULES:
        if rule.reason in reasons:
            continue
        if rule.needs is not None and rule.needs_scope == "text" and not rule.needs.search(text):
            continue
        for sentence, clauses in live:
            if (rule.needs is not None and rule.needs_scope == "sentence"
                    and not rule.needs.search(sentence)):
                continue
            if rule.unless is not None and rule.unless.search(sentence):
                continue
            if any(_clause_fires(rule, clause) for clause in clauses):
                reasons.append(rule.reason)
                break
    return reasons


def check_emergency(text: str) -> str | None:
    """The reason ``text`` reports an emergency ("gas smell", ...), or None.

    Run on the homeowner's own words (quoted history trimmed): a quoted staff line
    such as "call us if you smell gas" is hypothetical and ignored anyway.
    """
    reasons = emergency_reasons(text)
    return reasons[0] if reasons else None


# --- urgency ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _UrgentRule:
    reason: str
    pattern: re.Pattern[str]
    needs: re.Pattern[str] | None = None
    unless: re.Pattern[str] | None = None
    """Found in the same sentence, the cue is about something that is not urgent."""


_VULNERABLE_OR_HOT = _rx(
    r"\b(?:elderly|heart condition|medical|oxygen|infant|newborn|baby|\d+\s*(?:month|"
    r"week)s?[- ]old|"
    r"pregnan\w*|disab\w*|health|asthma|(?:8|9)\d[- ]year[- ]old|1[01]\d\s*(?:°|degrees?)?|"
    r"(?:9[5-9]|1[01]\d)\s*(?:°|degrees?|f\b)|heat wave|extreme heat|beb[eé]|anciano|"
    r"abuel\w*|enferm\w*)"
)

URGENT_RULES: tuple[_UrgentRule, ...] = (
    _UrgentRule("no hot water", _rx(r"\b(?:no hot water|without hot water|sin agua caliente|"
                                    r"no (?:hay|tenemos) agua caliente)")),
    _UrgentRule(
        "garage door stuck or off track",
        _rx(
            r"\b(?:off (?:the |its |it'?s )?tracks?|(?:garage|door) (?:is )?(?:stuck|standing|"
            r"left) open|(?:car|cars|vehicle) (?:is |are )?(?:stuck|trapped)|"
            r"(?:garage door|door) (?:won'?t|doesn'?t|will not|can'?t) (?:open|close|go (?:up|"
            r"down))|"
            r"(?:spring|cable) (?:snapped|broke)|broken (?:spring|cable)|"
            r"garage is (?:standing )?open|"
            r"se sali[oó] del riel|no (?:abre|cierra) la puerta del garaje|"
            r"puerta del (?:garaje|cochera) no (?:abre|cierra|sube|baja)|"
            r"se qued[oó] abierta|"
            r"stuck (?:\w+ ){0,3}?(?:open|up)\b|"
            r"\b(?:door|it)\b[^.!?]{0,40}?\b(?:won'?t|wont|doesn'?t|doesnt|does not|will not|"
            r"can'?t|cannot)\s+(?:\w+\s+)?(?:close|shut|go down|come down|stay (?:down|closed))|"
            r"stopped (?:\w+ ){0,4}?(?:off the ground|part ?way|halfway))"
        ),
        needs=_rx(r"\b(?:garage|overhead|garaje|cochera)"),
        # Not the overhead door: a cabinet, a hatch, or the door between house and garage
        # (whose self-closer is routine).
        unless=_rx(r"\b(?:cabinet|closet|hatch|attic|access|pantry|side|service|entry|"
                   r"man|house|screen) doors?\b|\bhatch\b|\bcabinet|"
                   r"\bdoor (?:from|to|into|between) (?:the )?(?:house|garage|kitchen|laundry|"
                   r"mud ?room|hall)|by itself|on its own|self[- ]clos\w*"),
    ),
    _UrgentRule(
        "door cannot be locked",
        _rx(
            r"\b(?:(?:can'?t|cannot|couldn'?t|won'?t|doesn'?t|will not|unable to) (?:be )?"
            r"(?:lock|locked|latch and lock)|(?:lock|latch|deadbolt)\w* (?:is )?(?:broken|broke|"
            r"won'?t (?:throw|engage|lock|catch))|no (?:lock|se puede cerrar con (?:llave|seguro))|"
            r"no cierra con (?:llave|seguro)|"
            r"(?:can'?t|cant|cannot|couldn'?t|won'?t|wont|doesn'?t|doesnt|does not|will not|"
            r"unable to|no longer)\s+(?:\w+\s+)?lock\b|"
            r"(?:lock|latch|deadbolt|bolt)\w*\s+(?:\w+\s+){0,3}?(?:won'?t|wont|doesn'?t|"
            r"doesnt|does not|will not|no longer)\s+(?:catch|engage|throw|latch|lock)\b)"
        ),
        needs=_rx(r"\b(?:door|deadbolt|slider|puerta)"),
        # An inside door's privacy lock is not the home's security.
        unless=_rx(r"\b(?:bath(?:room)?|bedroom|closet|pantry|privacy|pocket|cabinet|interior|"
                   r"barn|laundry|office|powder room|linen) (?:door|lock)"),
    ),
    _UrgentRule(
        "GFCI tripping with food at risk",
        _rx(r"\b(?:gfci|outlet|breaker|gfi|circuit)\w*\b.*\b(?:trip\w*|off|dead)|"
            r"(?:trip\w*)\b.*\b(?:gfci|gfi|outlet|breaker)"),
        needs=_rx(r"\b(?:freezer|fridge|refrigerator|thaw\w*|food|congelador|refrigerador)"),
    ),
    _UrgentRule(
        "no cooling with vulnerable occupants or extreme heat",
        _rx(
            r"\b(?:(?:ac|a/c|air conditioning|air conditioner|air|cooling)\b.{0,40}"
            r"(?:quit|stopped|not working|isn'?t working|out|died|blowing (?:warm|hot)|broken|"
            r"doesn'?t work|won'?t (?:turn|come) on)|blowing (?:warm|hot) air|"
            r"no (?:ac|a/c|air conditioning|cooling)|"
            r"(?:aire acondicionado|clima) no (?:funciona|enfr[ií]a|prende))"
        ),
        needs=_VULNERABLE_OR_HOT,
    ),
    _UrgentRule(
        "roof leak while raining",
        _rx(
            r"\b(?:(?:it'?s|it is|is|are|currently|right now)\s+(?:still\s+)?(?:raining|pouring|"
            r"storming)|(?:raining|pouring) (?:right )?now|during (?:this|the current) (?:storm|"
            r"rain)|"
            r"est[aá] lloviendo|mientras llueve|"
            r"(?:it'?s|it has|has|it'?s been|it has been)\s+been\s+(?:raining|pouring|storming)|"
            r"(?:raining|pouring|storming|storms?|rain)\s+(?:all|since)\b|"
            r"(?:heavy|hard) rain (?:right now|today|tonight|all)|ha estado lloviendo)"
        ),
        needs=_rx(r"\b(?:leak\w*|drip\w*|water (?:is )?(?:coming|pouring)|gotea\w*|gotera|"
                  r"filtra\w*|bucket)"),
    ),
    _UrgentRule(
        "only toilet unusable",
        _rx(r"\b(?:only|one and only|sole) (?:toilet|bathroom)\b"),
        needs=_rx(r"\b(?:clog\w*|won'?t flush|not (?:working|flushing)|overflow\w*|broken)"),
    ),
)
_NOT_SECURITY = _rx(r"\bnot (?:a |really a )?(?:security|safety) (?:thing|issue|concern|problem)")


def urgent_reason(text: str) -> str | None:
    """Why ``text`` describes an urgent (not emergency) problem, or None.

    Urgent means security or a significant function now: the words "URGENT" or "ASAP"
    alone do not make a routine problem urgent.
    """
    if _NOT_SECURITY.search(text):
        return None
    live = _live_sentences(text)
    for rule in URGENT_RULES:
        if rule.needs is not None and not rule.needs.search(text):
            continue
        for sentence in live:
            if rule.unless is not None and rule.unless.search(sentence):
                continue
            for match in rule.pattern.finditer(sentence):
                if not _negated(sentence, match.start()):
                    return rule.reason
    return None


def classify_priority(text: str, context: str = "") -> tuple[str, str | None]:
    """``(priority, reason)`` for one issue's text.

    ``context`` is the rest of the mail: weather and who lives in the house ("it's 4
    degrees outside", "we have a newborn") are often written apart from the problem, so
    those sentences of it are read along with the issue; its other problems are not.
    """
    weather = _weather(context) if context else ""
    joined = f"{text}\n{weather}" if weather else text
    reason = check_emergency(joined)
    if reason is not None:
        return "emergency", reason
    urgent = urgent_reason(joined)
    if urgent is not None:
        return "urgent", urgent
    return "routine", None


_WEATHER_SENTENCE = re.compile(
    rf"(?:{_COLD_WEATHER.pattern}|{_VULNERABLE_OR_HOT.pattern})", re.IGNORECASE
)


def _weather(context: str) -> str:
    """Only the sentences of ``context`` about weather or vulnerable occupants."""
    return "\n".join(s for s in _sentences(context) if _WEATHER_SENTENCE.search(s))
