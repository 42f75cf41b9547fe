"""Fixed rules that flag emergencies before any model reads the mail.

A missed gas smell or burst pipe costs far more than a false alarm, and a language model can
be down, slow or wrong.  So the emergency check is a small set of plain rules that run first,
on every mail, in English, Spanish, French and Portuguese, and whose reasons staff can read
("gas smell", "sewage backup").  The drafter (offline or LLM) may add urgency, never remove an
emergency that fired here.

Negation matters as much as the cue: "no gas smell", "not leaking anymore" and "the leak
was fixed last month" must stay quiet, so every cue is checked against the words just
before it and against resolution words in its sentence.  French wraps its negation around
the verb ("ça ne sent pas le gaz"): its cues are written so that the "pas" breaks them, and
"ne ... plus" ("ça ne fuit plus") reads as a problem that is over.
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
    # A temperature outside that is cold: 40 °F or below, or below zero.
    r"(?:(?<=-)\d{1,2}|[0-3]?\d|40)(?!\d)\s*(?:°|degrees?|deg\b)\s*(?:f\b)?\s*"
    r"(?:outside|out|outdoors)|"
    r"(?:outside|out)\s+(?:it'?s|is)\s+-?\d{1,2}\b|"
    r"\d{1,2}\s*(?:°|degrees?)?\s*below|cold(?:er)? (?:outside|out there|weather|night)|"
    r"(?:house|home|inside) is (?:getting |very |really )?(?:cold|freezing)|"
    r"\b[1-5]\d\s*(?:°|degrees?)(?:\s*f)?\s*(?:inside|in the house|indoors)|"
    r"hace (?:mucho )?fr[ií]o|helad\w*|bajo cero|invierno|nieve|nevando|"
    r"fait (?:tr[eè]s |si |tellement )?froid|froid (?:dehors|glacial|intense)|"
    r"sous z[eé]ro|moins \d{1,2}\b|hiver|neige\w*|il g[eè]le|gel[ée]e?s?\b|"
    # Below zero, or a few degrees (Celsius or Fahrenheit, the mail rarely says) outside.
    r"(?:(?<=-)\d{1,2}|[0-5](?!\d))\s*(?:°|degr[eé]s?|graus)?\s*(?:[fc]\b)?\s*"
    r"(?:dehors|[àa] l'ext[eé]rieur|l[aá] fora|fora)|"
    # Cold inside whichever scale: up to 15 (Celsius) or 40-59 (Fahrenheit).
    r"\b(?:1[0-5]|[4-5]\d|\d)\s*(?:°|degr[eé]s?|graus)?\s*(?:f\s*)?(?:dans la maison|"
    r"[àa] l'int[eé]rieur|dentro de casa|na casa)|"
    r"(?:faz|fazendo|est[aá] fazendo) (?:muito )?frio|frio (?:l[aá] fora|intenso)|"
    r"abaixo de zero|inverno|nev(?:e|ando)\b|geada|congelando)"
)
_ELECTRICAL_PLACE = _rx(
    r"\b(?:panel|breaker|outlet|plug|socket|switch|wir(?:e|es|ing)|receptacle|cover plate|"
    r"electrical|cord|light fixture|fixture|contacto|enchufe|tomacorriente|cable|apagador|"
    r"interruptor|caja de breakers|tablero|prise|disjoncteur|tableau [eé]lectrique|c[aâ]ble|"
    r"fil [eé]lectrique|tomada|disjuntor|quadro (?:de luz|el[eé]trico|de energia)|fia[cç][aã]o)"
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
            r"(?:olor|huele)\s+a\s+azufre|"
            r"odeur (?:forte |tr[eè]s forte )?(?:de |du )gaz|(?:[çc]a )?sen[st] "
            r"(?:fort |tr[eè]s fort |beaucoup )?(?:le |du )gaz|fuite de gaz|"
            r"odeur (?:d'|d’|de )(?:[œo]eufs? pourris?|soufre)|"
            r"cheiro (?:forte |muito forte )?de g[aá]s|vazamento de g[aá]s|"
            r"cheira (?:muito |forte |bastante )?a g[aá]s|"
            r"cheiro de (?:ovo podre|enxofre))"
        ),
        # Sulphur in the water (a water-heater anode) smells the same and is routine.
        unless=_rx(
            r"\b(?:hot water|tap water|the water (?:smells|from)|water (?:smells|from the)|"
            r"from the (?:tap|faucet|shower ?head|hot water)|faucets?|taps?|well water|"
            r"agua (?:caliente|de la llave)|eau chaude|robinets?|[aá]gua quente|torneiras?)\b"
        ),
    ),
    EmergencyRule(
        "carbon monoxide alarm",
        _rx(
            r"\b(?:carbon monoxide|co\b\s*(?:alarm|detector)|co2? detector|"
            r"mon[oó]xido(?: de carbono)?|monoxyde(?: de carbone)?)"
        ),
        needs=_rx(
            r"\b(?:alarm|detector|going off|went off|goes off|sound\w*|beep\w*|"
            r"alarma|suena|son[oó]|sonando|detector|alarme|sonne|a sonn[eé]|d[eé]tecteur|"
            r"disparou|dispara|tocando|apitando|detector)"
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
            r"(?:coming|came|comes|bubbling|bubbles|backing|backs|backed|gurgling)\s+up|"
            r"eaux us[eé]es|[eé]gouts?\b|(?:toilettes?|wc|siphon|[eé]vier) refoul\w*|"
            r"esgoto|(?:vaso|privada|ralo) (?:est[aá] )?(?:voltando|entupido e transbord\w*))"
        ),
        needs=_rx(
            r"\b(?:back\w* up|backing|coming up|comes up|came up|bubbl\w* up|overflow\w*|"
            r"flood\w*|spill\w*|spread\w*|out of|into|all over|on the floor|fill\w* (?:up )?"
            r"with|came over|regres\w*|sal(?:e|iendo)|brot\w*|desbord\w*|remont\w*|refoul\w*|"
            r"d[eé]bord\w*|partout|inond\w*|voltando|transbord\w*|saindo|alag\w*)"
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
            r"no\s+(?:para|deja)\s+de\s+salir\s+(?:el\s+)?agua|el agua no (?:para|deja de salir)|"
            r"(?:a|ont|est) [eé]clat[eé]|tuyau (?:a )?(?:p[eé]t[eé]|[eé]clat[eé])|"
            r"(?:l'|l’)?eau (?:gicle|jaillit|coule) partout|de (?:l'|l’)eau partout|"
            r"grosse fuite|fuite (?:tr[eè]s )?(?:importante|[eé]norme)|inond\w*|"
            r"(?:ferm[eé]|coup[eé]) (?:le robinet|la vanne|la valve|l'arriv[eé]e d'eau|"
            r"l’arriv[eé]e d’eau|l'entr[eé]e d'eau|l’entr[eé]e d’eau|l'eau|"
            r"l’eau)(?: (?:principal|principale|g[eé]n[eé]ral|g[eé]n[eé]rale|"
            r"de la maison))?|(?:l'|l’)?eau (?:coule|tombe|sort|gicle) (?:du|par le|[àa] "
            r"travers le) (?:plafond|mur)|n'arr[eê]te pas de (?:couler|fuir)|n’arr[eê]te pas de "
            r"(?:couler|fuir)|"
            r"(?:cano|tubo|mangueira) (?:estourou|rompeu|arrebentou)|estourou|"
            r"[aá]gua (?:jorrando|esguichando|espirrando)|[aá]gua por todo (?:o )?lado|"
            r"vazamento (?:muito )?(?:grande|forte)|alag\w*|inund\w*|"
            r"(?:fechamos|fechei|desligamos) o registro|"
            r"(?:a )?[aá]gua n[aã]o para de (?:sair|vazar|cair))"
        ),
        # Water that comes in with every storm is a recurring leak, not one running now.
        unless=_rx(r"\b(?:every time|each time|whenever|after (?:every|each|heavy|a|big) "
                   r"(?:rain|storm)|when(?:ever)? it rains|cada vez que llueve|"
                   r"chaque fois qu'il pleut|[àa] chaque pluie|toda vez que chove|"
                   r"sempre que chove|quand il pleut|lorsqu'il pleut|quando chove)\b"),
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
            r"(?:la )?calefacci[oó]n no (?:funciona|prende|sirve)|el calent[oó]n no prende|"
            r"(?:plus|pas) de chauffage|sans chauffage|(?:le )?chauffage (?:ne (?:fonctionne|"
            r"marche|chauffe) (?:plus|pas)|(?:est )?en panne)|(?:la )?(?:chaudi[eè]re|fournaise|"
            r"thermopompe) (?:ne (?:fonctionne|marche|d[eé]marre) (?:plus|pas)|(?:est )?en panne)|"
            r"sem aquecimento|(?:o )?aquecimento (?:parou|n[aã]o (?:funciona|liga|esquenta)|"
            r"quebrou)|(?:a )?(?:caldeira|calefa[cç][aã]o) (?:parou|n[aã]o (?:funciona|liga)|"
            r"quebrou))"
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
            r"no tenemos (?:luz|electricidad|corriente)|se fue la luz|"
            r"(?:plus|pas) (?:d'|d’)[eé]lectricit[eé]|(?:plus|pas) de courant|"
            r"panne (?:de courant|d'[eé]lectricit[eé]|d’[eé]lectricit[eé]|g[eé]n[eé]rale)|"
            r"(?:sem|estamos sem) (?:luz|energia|eletricidade) (?:na casa|em (?:toda )?a casa)|"
            r"(?:acabou|caiu) a (?:luz|energia)|n[aã]o temos (?:luz|energia|eletricidade))"
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
            r"sin agua en (?:toda )?la casa|"
            r"(?:plus|pas) (?:d'|d’)eau (?:du tout|dans (?:toute )?la maison)|aucun robinet|"
            r"(?:sem|estamos sem) [aá]gua (?:na casa|em (?:toda )?a casa|nenhuma)|"
            r"n[aã]o (?:temos|tem|h[aá]) [aá]gua (?:em nenhuma|na casa|em (?:toda )?a casa)|"
            r"nenhuma torneira)"
        ),
    ),
    EmergencyRule(
        "sparking or scorched electrical",
        _rx(
            r"\b(?:spark\w*|arc(?:ed|ing)|scorch\w*|melt(?:ed|ing)|smok(?:e|ing) (?:from|coming)|"
            r"black mark|burn mark|charred|chispa\w*|ech[oó] chispas|quemad[oa]|"
            r"[eé]tincel\w*|noirci\w*|(?:a|est|sont|ont) fondu\w*|carbonis\w*|fa[ií]scas?|"
            r"queimad[oa]s?|"
            r"(?:petit )?[eé]clair bleu|devenu (?:brun|noir)\w*|bruni\w*|"
            r"derretid[oa]s?|chamuscad\w*)"
        ),
        needs=_ELECTRICAL_PLACE,
    ),
    EmergencyRule(
        "burning smell at electrical",
        _rx(
            r"\b(?:burning (?:plastic |electrical |rubber )?(?:smell|odou?r)|"
            r"smell\w* (?:of |like )?(?:something )?(?:burn\w*|melting|electrical fire)|"
            r"burnt (?:plastic )?smell|olor a (?:quemado|pl[aá]stico quemado)|huele a quemado|"
            r"odeur de (?:br[uû]l[eé]|plastique br[uû]l[eé])|sen[st] (?:un peu |beaucoup |fort )?"
            r"(?:le )?(?:br[uû]l[eé]|"
            r"plastique br[uû]l[eé])|cheiro de (?:queimado|pl[aá]stico queimado))"
        ),
        needs=_ELECTRICAL_PLACE,
    ),
    EmergencyRule(
        "electric shock",
        _rx(r"\b(?:got (?:a )?shock(?:ed)?|shocked (?:me|him|her|us)|electrocut\w*|"
            r"(?:me|le|nos) dio toques?|da toques|(?:pris|re[çc]u) (?:une|un) (?:d[eé]charge|"
            r"choc [eé]lectrique)|[eé]lectrocut\w*|(?:levei|tomei|levou|tomou) (?:um )?choque|"
            r"(?:d[aá]|deu) choque)"),
    ),
    EmergencyRule(
        "ceiling collapse",
        _rx(r"\b(?:ceiling (?:collapsed|caved in|fell in|came down)|"
            r"(?:se cay[oó]|se derrumb[oó]) el techo|plafond\b[^.!?,]{0,40}?(?:s'est|s’est|"
            r"est) (?:effondr[eé]|[eé]croul[eé]|tomb[eé])|"
            r"teto\b[^.!?,]{0,30}?\b(?:desabou|caiu|despencou)|desabou o teto)"),
    ),
)

# Words in the few tokens before a cue that turn it off ("no gas smell", "don't smell gas").
_NEGATORS = _rx(
    r"\b(?:no|not|never|without|don'?t|doesn'?t|didn'?t|isn'?t|wasn'?t|aren'?t|haven'?t|"
    r"hasn'?t|nor|nothing|zero|ni|nunca|sin|ning[uú]n\w*|pas|aucune?|sans|jamais|rien|"
    r"n[aã]o|sem|nenhum\w*|nem)\b|n't\b"
)
# A cue inside a conditional or a question about the future is advice, not a report.
_HYPOTHETICAL = _rx(
    r"\b(?:if|in case|should we ever|what (?:do|should) (?:we|i) do (?:if|when)|si alguna vez|"
    r"en caso de|por si|si jamais|au cas o[uù]|en cas de|que faire si|se algum dia|"
    r"em caso de|no caso de|o que fazer se)\b"
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
    r"none found|nothing found|no leak found|came back (?:negative|clean|fine)|"
    r"(?:a|ont|avait|avaient) [eé]t[eé] (?:r[eé]par|r[eé]gl|corrig)\w*|d[eé]j[aà] r[eé]par\w*|"
    # "Ne ... plus" / "não ... mais" of the problem itself ("ça ne fuit plus"); of what is
    # missing ("nous n'avons plus de chauffage") it is the problem.
    r"ne (?:fuit|coule|goutte|sent|sonne|bipe|d[eé]borde|refoule|saute|disjoncte) plus\b|"
    r"(?:n'|n’)y a plus (?:de |d'|d’)(?:fuite|odeur|eau)|c'est r[eé]gl[eé]|"
    r"tout fonctionne|fonctionne (?:bien|tr[eè]s bien|parfaitement)|"
    r"(?:foi|foram) (?:consertad|arrumad|resolvid|reparad)\w*|"
    r"j[aá] (?:foi |foram )?(?:consertad|arrumad|resolvid)\w*|"
    r"n[aã]o (?:vaza|pinga|goteja|cheira|apita|desarma|transborda|tem (?:cheiro|vazamento))"
    r"\w* mais\b|funciona (?:bem|perfeitamente)|est[aá] tudo bem)"
)
# ... unless it came back.
_RECURRED = _rx(
    r"\b(?:again|still|came back|is back|returned|recurr\w*|otra vez|de nuevo|sigue|"
    r"todav[ií]a|volvi[oó]|encore|de nouveau|[àa] nouveau|toujours|recommenc\w*|"
    r"de novo|novamente|ainda|voltou)\b"
)
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?;])\s+|\n+")
_CLAUSE_SPLIT = re.compile(
    r",|\s[-–—]\s|\b(?:and|but|however|although|pero|aunque|y|et|mais|cependant|e|mas|"
    r"por[eé]m|embora)\b", re.IGNORECASE
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
    r"abuel\w*|enferm\w*|b[eé]b[eé]|nourrisson|personnes? [aâ]g[eé]es?|âg[eé]e?s?\b|enceinte|"
    r"malade|canicule|bebê|idos[oa]s?|gr[aá]vida|doente|onda de calor)"
)

URGENT_RULES: tuple[_UrgentRule, ...] = (
    _UrgentRule("no hot water", _rx(r"\b(?:no hot water|without hot water|sin agua caliente|"
                                    r"no (?:hay|tenemos) agua caliente|"
                                    r"(?:plus|pas) (?:d'|d’)eau chaude|sans eau chaude|"
                                    r"sem [aá]gua quente|n[aã]o (?:tem|temos|h[aá]) [aá]gua "
                                    r"quente)")),
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
            r"stopped (?:\w+ ){0,4}?(?:off the ground|part ?way|halfway)|"
            r"sortie? (?:du|de son) rail|d[eé]raill\w*|"
            r"(?:ressort|c[aâ]ble) (?:cass[eé]|a c[eé]d[eé])|"
            r"(?:bloqu[eé]e|coinc[eé]e|rest[eé]e) ouverte|ne (?:s'|s’)?(?:ouvre|ferme|descend|"
            r"monte) (?:plus|pas)|saiu do trilho|(?:mola|cabo) (?:quebrou|quebrad[oa]|arrebentou)|"
            r"ficou (?:aberta|travada)|n[aã]o (?:abre|fecha|sobe|desce)|"
            r"(?:s'est |s’est )?bloqu[eé]e en position ouverte|ne bouge (?:plus|pas)|"
            r"c[aâ]bles? (?:qui )?pend\w*|n[aã]o se mexe)"
        ),
        needs=_rx(r"\b(?:garage|overhead|garaje|cochera|garagem)"),
        # Not the overhead door: a cabinet, a hatch, or the door between house and garage
        # (whose self-closer is routine).
        unless=_rx(r"\b(?:cabinet|closet|hatch|attic|access|pantry|side|service|entry|"
                   r"man|house|screen) doors?\b|\bhatch\b|\bcabinet|"
                   r"\bdoor (?:from|to|into|between) (?:the )?(?:house|garage|kitchen|laundry|"
                   r"mud ?room|hall)|by itself|on its own|self[- ]clos\w*|"
                   r"porte (?:d'entr[eé]e|de service|int[eé]rieure)|porta (?:de dentro|interna)"),
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
            r"doesnt|does not|will not|no longer)\s+(?:catch|engage|throw|latch|lock)\b|"
            r"(?:fermer|ferme|verrouiller) (?:\S+ ){0,4}?[àa] cl[eé]|impossible de (?:la |le )?"
            r"verrouiller|serrure (?:est )?(?:cass[eé]e|bloqu[eé]e)|"
            r"n[aã]o (?:tranca|consigo trancar|conseguimos trancar|d[aá] para trancar)|"
            r"fechadura (?:quebrou|quebrada|n[aã]o funciona))"
        ),
        needs=_rx(r"\b(?:door|deadbolt|slider|puerta|porte|porta|serrure|fechadura)"),
        # An inside door's privacy lock is not the home's security.
        unless=_rx(r"\b(?:bath(?:room)?|bedroom|closet|pantry|privacy|pocket|cabinet|interior|"
                   r"barn|laundry|office|powder room|linen) (?:door|lock)|"
                   r"porte de (?:la )?(?:salle de bain|chambre|placard)|"
                   r"porta do (?:banheiro|quarto|arm[aá]rio)"),
    ),
    _UrgentRule(
        "GFCI tripping with food at risk",
        _rx(r"\b(?:gfci|outlet|breaker|gfi|circuit)\w*\b.*\b(?:trip\w*|off|dead)|"
            r"(?:trip\w*)\b.*\b(?:gfci|gfi|outlet|breaker)|"
            r"(?:disjoncteur|diff[eé]rentiel|prise)\w*\b.*\b(?:saut\w*|d[eé]clench\w*|coup\w*)|"
            r"(?:disjuntor|tomada)\w*\b.*\b(?:desarm\w*|caiu|cai\b|desliga\w*)"),
        needs=_rx(r"\b(?:freezer|fridge|refrigerator|thaw\w*|food|congelador|refrigerador|"
                  r"cong[eé]lateur|frigo|r[eé]frig[eé]rateur|nourriture|d[eé]congel\w*|geladeira|"
                  r"comida|descongel\w*)"),
    ),
    _UrgentRule(
        "no cooling with vulnerable occupants or extreme heat",
        _rx(
            r"\b(?:(?:ac|a/c|air conditioning|air conditioner|air|cooling)\b.{0,40}"
            r"(?:quit|stopped|not working|isn'?t working|out|died|blowing (?:warm|hot)|broken|"
            r"doesn'?t work|won'?t (?:turn|come) on)|blowing (?:warm|hot) air|"
            r"no (?:ac|a/c|air conditioning|cooling)|"
            r"(?:aire acondicionado|clima) no (?:funciona|enfr[ií]a|prende)|"
            r"(?:climatisation|clim|climatiseur|air climatis[eé]) (?:ne (?:fonctionne|marche) "
            r"(?:plus|pas)|(?:est )?en panne)|ar[- ]condicionado (?:parou|quebrou|n[aã]o "
            r"(?:funciona|liga|gela)))"
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
            r"(?:heavy|hard) rain (?:right now|today|tonight|all)|ha estado lloviendo|"
            r"il pleut (?:en ce moment|maintenant|actuellement|depuis|[àa] verse|encore)|"
            r"(?:pendant|alors) qu'il pleut|sous la pluie en ce moment|"
            r"est[aá] chovendo|durante a chuva|chove (?:sem parar|muito))"
        ),
        needs=_rx(r"\b(?:leak\w*|drip\w*|water (?:is )?(?:coming|pouring)|gotea\w*|gotera|"
                  r"filtra\w*|bucket|fuite|fuit|goutte\w*|gouttent|infiltr\w*|coule|seau|vaza\w*|"
                  r"goteira|pinga\w*|balde)"),
    ),
    _UrgentRule(
        "only toilet unusable",
        _rx(r"\b(?:only|one and only|sole) (?:toilet|bathroom)\b|seule? (?:toilette|wc|salle de "
            r"bain)|[uú]nico (?:banheiro|vaso)"),
        needs=_rx(r"\b(?:clog\w*|won'?t flush|not (?:working|flushing)|overflow\w*|broken|"
                  r"bouch[eé]\w*|d[eé]bord\w*|ne fonctionne|entupid\w*|transbord\w*|n[aã]o "
                  r"funciona)"),
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
