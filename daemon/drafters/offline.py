"""The offline drafter: work orders from a homeowner mail without any network call.

It is the engine when no API key is configured and the fallback when the API fails, so it
must be good on its own.  The work is split in small steps, each a function here:

1. *clean* the text: greeting, sign-off, signature, client footers and quoted lines go;
2. *segment* it into candidate issues: list items, paragraphs, and sentences that open
   with "Also ..." or "Separately ..."; continuation sentences ("It gets worse after ...")
   stay with the issue before them;
3. *keep* only candidates that describe a present problem: a thank-you, a coverage
   question or "the door you fixed last month works great" is not a work order;
4. *classify* each issue's trade with a TF-IDF + logistic-regression model trained on the
   phrase file in ``data/`` plus the staff decisions it is given (an edited trade teaches
   it), and its priority with the fixed rules of :mod:`.tripwire`;
5. *write* a location, a title and a vendor-safe description, assign photos, and suggest
   a vendor from the trade, the community and the vendors staff chose before.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import pairwise
from pathlib import Path
from typing import Any

from warrantyd.daemon.drafters.base import (
    TRADES,
    DraftIssue,
    DraftRequest,
    DraftResult,
    FeedbackExample,
    Photo,
    VendorInfo,
)
from warrantyd.daemon.drafters.tripwire import classify_priority, emergency_reasons

__all__ = [
    "OfflineDrafter",
    "TradeClassifier",
    "detect_language",
    "find_location",
    "segment_issues",
]

log = logging.getLogger("warrantyd.drafters.offline")

PHRASES_PATH = Path(__file__).resolve().parent / "data" / "trade_phrases.tsv"
FEEDBACK_WEIGHT = 4.0
"""How much one staff decision counts against one built-in phrase when fitting."""
NEIGHBOUR_SIMILARITY = 0.45
"""Cosine similarity above which a past staff decision on similar text decides the trade."""


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


# --- cleaning ---------------------------------------------------------------------------

_QUOTE_HEADER = _rx(
    r"^\s*(?:on\b.{0,200}\bwrote:\s*$|-{2,}\s*original message\s*-{2,}|_{10,}\s*$|"
    r"el\b.{0,200}\bescribi[oó]:\s*$|le\b.{0,200}\ba [eé]crit\s*:\s*$|"
    r"em\b.{0,200}\bescreveu:\s*$|from:\s.+\s*$)"
)
_FORWARD_MARKER = _rx(
    r"^\s*(?:-{3,}\s*forwarded message\s*-{3,}|begin forwarded message:|"
    r"-{3,}\s*(?:mensaje reenviado|message transf[eé]r[eé]|mensagem encaminhada)\s*-{3,})\s*$"
)
_HEADER_LINE = _rx(r"^\s*(?:from|de|date|fecha|sent|enviado|subject|asunto|to|para|cc|objet|"
                   r"envoy[eé]|[àa]|data|assunto)\s*:")
_FOOTER = _rx(
    r"^\s*(?:sent from my|sent from (?:yahoo|outlook|mail for)|get outlook for|enviado desde mi|"
    r"obtener outlook|envoy[eé] de mon|enviado do meu|"
    r"confidentiality notice|this e-?mail (?:and any|may contain|is intended)|"
    r"disclaimer:)"
)
_SIGNOFF = _rx(
    r"^\s*(?:thanks?|thank you|thx|ty|many thanks|thanks (?:so much|again|in advance)|"
    r"thank you (?:so much|again|very much|in advance)|regards|kind regards|best regards|"
    r"warm regards|best|all the best|cheers|sincerely|respectfully|take care|"
    r"have a (?:great|good|nice) (?:day|week|weekend)|gracias|muchas gracias|saludos|"
    r"atentamente|cordialmente|un saludo|merci|merci beaucoup|merci d'avance|"
    r"merci d’avance|bien (?:[àa] vous|cordialement)|salutations|bonne journ[eé]e|"
    r"obrigad[oa]|muito obrigad[oa]|atenciosamente|abra[çc]os?|cumprimentos)\b[\s,.!:;-]*"
    r"(?:[A-Za-zÀ-ÿ'.]+(?:\s+(?:&|and|y)\s+|\s+)?){0,4}\s*$"
)
_INLINE_SIGNOFF = _rx(
    r"(?:^|(?<=[.!?]))\s*(?:thanks?|thank you|gracias|merci|obrigad[oa])[\s,.!]*(?:-\s*)?"
    r"[A-Za-zÀ-ÿ'.]*\s*$"
)
_GREETING = _rx(
    r"^\s*(?:hi|hello|hey|dear|greetings|good (?:morning|afternoon|evening|day)|"
    r"hola|buen(?:o|a)s? (?:d[ií]as|tardes|noches)|buenas|estimad[oa]s?|bonjour|bonsoir|"
    r"salut|madame|monsieur|ch[eè]re?s?|ol[aá]|oi|bom dia|boa (?:tarde|noite)|prezad[oa]s?)\b"
)
_GREETING_ADDRESSEE = re.compile(r"^[^,.!:\-–—]{0,30}?[,!:\-–—]\s*")
_LEADING_THANKS = _rx(r"^\s*(?:thanks|thank you|gracias|merci|obrigad[oa])[.!]\s+")
_PS = _rx(r"^\s*p\.?\s?s\.?[:\s]")


def clean_text(text: str) -> str:
    """The homeowner's own words: no greeting, sign-off, signature, footer or quote.

    A forwarded message is cleaned as a mail of its own: its sender's sign-off ends
    only that part.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u00a0", " ")
    parts: list[list[str]] = [[]]
    for line in text.split("\n"):
        if _FORWARD_MARKER.match(line):
            parts.append([])
            continue
        parts[-1].append(line)
    cleaned = [_clean_part(part, forwarded=n > 0) for n, part in enumerate(parts)]
    return "\n\n".join(part for part in cleaned if part)


def _clean_part(lines: list[str], forwarded: bool) -> str:
    """One mail (or one forwarded mail) of :func:`clean_text`."""
    kept: list[str] = []
    i = 0
    while forwarded and i < len(lines) and (not lines[i].strip() or _HEADER_LINE.match(lines[i])):
        i += 1  # the header block of a forwarded message
    for line in lines[i:]:
        if line.lstrip().startswith(">") or _QUOTE_HEADER.match(line):
            break
        if line.strip() in {"--", "-- ", "—"} or _FOOTER.match(line):
            break
        kept.append(line)
    kept = _drop_signoff(kept)
    return _drop_greeting(kept)


def _drop_signoff(lines: list[str]) -> list[str]:
    """Cut at the last sign-off line, keeping a "P.S." written after it."""
    for i, line in enumerate(lines):
        if line.strip() and _SIGNOFF.match(line) and len(line.split()) <= 6:
            tail = lines[i + 1:]
            ps_at = next((j for j, t in enumerate(tail) if _PS.match(t)), None)
            kept = lines[:i]
            if ps_at is not None:
                return [*kept, "", _PS.sub("", tail[ps_at]), *tail[ps_at + 1:]]
            return kept
    if lines:
        # "... thanks -mike" at the end of a one-line mail.
        for k in range(len(lines) - 1, -1, -1):
            if lines[k].strip():
                lines = [*lines[:k], _INLINE_SIGNOFF.sub("", lines[k]), *lines[k + 1:]]
                break
    return lines


def _drop_greeting(lines: list[str]) -> str:
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        if _GREETING.match(line):
            if len(line.split()) <= 5 and not re.search(r"[.!?]\s+\S", line):
                lines = lines[i + 1:]
            else:
                rest = _GREETING.sub("", line, count=1)
                # "Hi Pat, the ..." / "Hello - our ..." / "Good morning. Zone 3 ..."
                addressee = _GREETING_ADDRESSEE.match(rest)
                rest = rest[addressee.end():] if addressee else rest.lstrip(" .")
                lines = [rest, *lines[i + 1:]]
        break
    for i, line in enumerate(lines):
        if line.strip():
            lines[i] = _LEADING_THANKS.sub("", line, count=1)
            break
    return "\n".join(lines).strip()


# --- segmentation -----------------------------------------------------------------------

_LIST_ITEM = re.compile(
    r"^\s*(?:\(?\d{1,2}\s*[.):\-]|[-•*·–—▪◦●‣]|[a-hA-H][.)])\s+(?P<body>\S.*)$"
)
_NEW_ISSUE_START = _rx(
    r"^\W*(?:also|another|second(?:ly)?|third|separately|unrelated|in addition|additionally|"
    r"plus|on another note|one more thing|one other thing|the other thing|other thing|"
    r"oh,? and|and also|and (?:the|our|my|a|an|one|there|we|i)\b|new problem|new issue|"
    r"lastly|finally|last thing|tambi[eé]n|adem[aá]s|otra cosa|por otro lado|"
    r"y (?:la|el|los|las|tambi[eé]n|adem[aá]s)\b|otro problema|aussi|[eé]galement|de plus|"
    r"en plus|autre chose|un autre probl[eè]me|par ailleurs|et (?:la|le|les|l'|l’|il y a|"
    r"aussi)|tamb[eé]m|al[eé]m disso|outra coisa|outro problema|e (?:a|o|as|os|tamb[eé]m)\b)"
)
_ALSO = _rx(r"\b(?:also|too\b|as well|tambi[eé]n|adem[aá]s|aussi|[eé]galement|tamb[eé]m)")
_CONTINUATION_START = _rx(
    r"^\W*(?:it|it'?s|its|this|that|these|those|they|they'?re|them|which|then|now|when|"
    r"since|so|at first|the (?:problem|issue|noise|leak|smell|crack|stain|same)|"
    r"we(?:'ve| have)? (?:tried|reset|replaced|checked|cleaned|turned|opened|put|called|"
    r"already)|i(?:'ve| have)? (?:tried|reset|replaced|checked|cleaned|turned|opened|put|"
    r"called|already)|we'?re worried|i'?m worried|we think|i think|looks like|seems|"
    r"not sure|could|can|please|esto|eso|lo|la misma|parece|[çc]a|cela|c'est|c’est|"
    r"on dirait|isso|isto|ela|ele)\b"
)
_DEFECT = _rx(
    r"\b(?:leak\w*|drip\w*|crack\w*|broke\w*|break\w*|burst|won'?t|wont|doesn'?t|does not|"
    r"will not|would not|wouldn'?t|did not|do not|can not|misses|rock(?:s|ing)|wiggl\w*|"
    r"mov(?:es|ing) when|gurgl\w*|seep\w*|sweat\w*|"
    r"don'?t|didn'?t|isn'?t|aren'?t|not (?:working|work|closing|latching|locking|opening|"
    r"level|turning|draining|heating|cooling|sealed|flush|square|plumb)|stopped|quit|"
    r"loose\w*|wobbl\w*|missing|stain\w*|gaps?\b|separat\w*|peel\w*|flak\w*|bubbl\w*|"
    r"sag(?:s|ged|ging|gy)?\b|pull\w* (?:away|out|off|loose)|pulled|came (?:off|loose|down|apart|"
    r"out)|"
    r"fell|fall(?:ing|en)? (?:off|out|down|apart)|stick\w*|stuck|hard to|rubs?|rubbing|"
    r"squeak\w*|creak\w*|noise\w*|noisy|loud|rattl\w*|buzz\w*|hum(?:s|ming)?\b|"
    r"flicker\w*|trip\w*|spark\w*|smell\w*|odou?r|clog\w*|slow\w*|runs|running|overflow\w*|"
    r"pool\w*|puddl\w*|standing water|ponding|damp|wet|moist\w*|mold\w*|mou?ldy|musty|"
    r"fog\w*|condensation|torn|tear|ripped|bent|dent\w*|chip\w*|scratch\w*|scuff\w*|"
    r"nail pops?|pops?\b|popp\w*|uneven|unlevel|sunk|sink(?:ing|s)|settl\w*|heav\w*|"
    r"dropped|lift\w*|cupp\w*|buckl\w*|warp\w*|swollen|swell\w*|delaminat\w*|rust\w*|"
    r"corrod\w*|damage\w*|dead|died|dying|no (?:power|heat|hot water|water|air|insulation)|"
    r"cold|warm(?:er)?|hot|draft\w*|drafty|frozen|freez\w*|burn\w*|scorch\w*|crooked|"
    r"misalign\w*|out of (?:square|alignment|plumb|level)|hanging|spongy|soft spot|gives?\b|"
    r"bounc\w*|needs?\b|needed|can'?t|cannot|keeps|constantly|fad\w*|discolou?r\w*|"
    r"shift\w*|hole\w*|exposed|efflorescence|spall\w*|fray\w*|ripple\w*|bump\w*|visible|"
    r"barely|weak|uninsulated|blinking|beep\w*|chirp\w*|going off|tight|reverses?|"
    r"disconnected|detached|bare|flapping|sunken|backing up|backed up|sewage|spray\w*|"
    r"flood\w*|gush\w*|pouring|water (?:on|in|coming|came|everywhere|pools?)|"
    r"fill(?:s|ed|ing)? (?:up )?with water|instead of|wrong|"
    r"fuga\w*|gote\w*|gotera|rot[oa]s?|romp\w*|no funciona\w*|no sirve|no prende|"
    r"no enciende|no (?:cierra|abre|jala|drena|enfr[ií]a|calienta)|grieta\w*|rajad\w*|"
    r"fisura\w*|mancha\w*|suelt[oa]s?|floj[oa]s?|falta\w*|ruido\w*|olor\w*|huele|tapad\w*|"
    r"atascad\w*|humedad|moho|mojad\w*|se cae|se cay[oó]|despegad\w*|pelad\w*|chuec[oa]|"
    r"desnivelad\w*|hundid\w*|no (?:hay|tenemos)|sin (?:agua|luz)|chispa\w*|quemad\w*|"
    r"saliendo|rozando|descompuest\w*|dañad\w*|se sali[oó]|se revent\w*|"
    # Typed without apostrophes, and plain ways of saying something is wrong.
    r"doesnt|dont|didnt|isnt|arent|wasnt|cant|couldnt|"
    r"(?:is|are) showing|shows? through|showing through|"
    r"coming (?:apart|through|off|out|undone|loose|up (?:at|along|off|from the))|"
    r"lifting|worn|too (?:hot|cold|loud|high|low|tight|loose|short|long|far)|hardly|"
    r"little to no|no pressure|low pressure|off (?:track|center|the track)|not (?:straight|"
    r"even|flush|attached|secure\w*|right|sealing|staying)|won'?t stay|"
    r"scrap(?:e|es|ed|ing)\b|grind\w*|lean(?:s|ing|ed)?\b|tilt\w*|drags?\b|dragging|"
    r"snag\w*|catch(?:es|ing)? on|sticks? out|(?:se )?mueve\w*|se despeg\w*|se lade\w*|"
    # French
    r"fuit|fuite\w*|goutt\w*|coule\w*|fissur\w*|f[eê]lur\w*|cass(?:[eé]|[eé]e|[eé]s|[eé]es)\b|"
    r"ne (?:fonctionne|marche|ferme|s'ouvre|s’ouvre|ouvre|chauffe|refroidit|s'allume|"
    r"s’allume|s'[eé]vacue|tient|d[eé]marre)\w* (?:pas|plus)|bruit\w*|grinc\w*|odeur\w*|"
    r"moisi\w*|humidit[eé]|humide|tache\w*|d[eé]coll[eé]\w*|d[eé]coll\w*|fendu\w*|ab[iî]m\w*|"
    r"endommag\w*|bouch[eé]\w*|desserr[eé]\w*|qui bouge|rouill\w*|gondol(?:e|é|ée|és|ent)\b|"
    r"affaiss\w*|"
    r"[eé]caill\w*|bloqu[eé]\w*|coinc[eé]\w*|en panne|gonfl[eé]\w*|s'arr[eê]te|"
    r"s’arr[eê]te|infiltr\w*|d[eé]faut\w*|ab[iî]m[eé]\w*|"
    # "ne ... pas/plus", and the Québec way that drops the "ne" ("la fournaise part pas")
    r"(?:ne|n['’])\s*(?:se |s['’])?\w+\s+(?:pas|plus|jamais)\b|"
    r"(?:part|marche|fonctionne|ferme|ouvre|chauffe|reste|d[eé]marre|barre|coule|sort|"
    r"tient|allume|embarque|colle|s'allume|s’allume)\s+(?:pas|plus)\b|"
    r"(?:plus|pas) (?:de |d'|d’)(?:chauffage|chaleur|courant|[eé]lectricit[eé]|eau|"
    r"pression)|dur(?:e)? [àa]|difficile [àa]|lentement|tr[eè]s lent\w*|[eé]clair|"
    r"[çc]a sent\b|sent (?:le|la|mauvais|bizarre|fort)\b|pue\b|puanteur|"
    r"cheira\w*|fede\b|fedor|"
    r"d[eé]bord\w*|s'est (?:d[eé]coll|d[eé]tach|fissur|affaiss|effondr)\w*|"
    # Portuguese
    r"vaza\w*|ping(?:a|ando|ou)\b|goteira|gotej\w*|rachad\w*|rachadura\w*|trinca\w*|"
    r"quebrad\w*|quebrou|n[aã]o (?:est[aá] |esta )?(?:funciona|fecha|abre|liga|esquenta|"
    r"aquece|gela|escoa|drena|desce|sobe|tranca|para|segura|encaixa|veda|acende|sai|gira|"
    r"roda|trava|consegu|pega|d[aá]|fica|volta)\w*|parou|pararam|faltou|falta de|"
    r"avari(?:a|ou|ad[oa])\b|estragou|queimou|"
    r"dif[ií]cil de|devagar|lent[oa]s?\b|transbord\w*|barulho\w*|rangend\w*|rangeu|"
    r"cheiro\w*|mofo|bolor|umidade|[uú]mid\w*|"
    r"manchad?\w*|descolad\w*|solt[oa]s?|froux\w*|entupid\w*|enferruj\w*|estufad\w*|"
    r"empenad\w*|afundad\w*|buracos?|descascad\w*|emperrad\w*|trav(?:a|ada|ado|ou)\b|"
    r"com defeito|infiltra\w*|danificad\w*|entra vento|estragad\w*)"
)
_RESOLVED = _rx(
    r"\b(?:(?:was|were|got|been|already|had (?:it|them)|came (?:out )?and|you|they|"
    r"plumber|electrician|technician|tech|vendor|company|pros?)\b[^.!?]{0,40}\b(?:fixed|"
    r"repaired|resolved)|(?:fixed|repaired) (?:it|them|last|yesterday|in \w+|on \w+)|"
    r"taken care of|took care of|working (?:great|fine|"
    r"perfectly|well)|works (?:great|fine|perfectly|well)(?: now)?|(?:is|are) fine now|"
    # A visit that fixed something, told as history or praise.
    r"(?:came|come|stopped) (?:out|by|over)\b[^.!?]{0,60}?\b(?:fix|repair|replac|patch)\w*|"
    r"who (?:fixed|repaired|replaced|patched)|(?:everything|it|all) works now|"
    r"(?:was|were) (?:great|awesome|excellent|wonderful|fantastic|terrific|so helpful|"
    r"very helpful|super helpful)|did (?:a|an|such a) (?:great|wonderful|excellent|fantastic|"
    r"amazing|good|nice|terrific) job|"
    r"thanks? (?:you )?(?:again )?for (?:that|fixing|repairing|coming|sending|taking care)|"
    r"all good now|no (?:more )?problems? since|ya qued[oó]|ya (?:lo |la )?arregl\w*|"
    r"funciona (?:bien|perfecto)|tout fonctionne|fonctionne (?:bien|parfaitement)|"
    r"(?:a|ont) [eé]t[eé] (?:r[eé]par|r[eé]gl)\w*|merci (?:beaucoup )?pour (?:la|le|les|"
    r"votre) (?:r[eé]paration|intervention|visite)|ne (?:fuit|coule|goutte) plus|"
    r"(?:foi|foram) (?:consertad|arrumad|resolvid)\w*|funciona (?:bem|perfeitamente)|"
    r"obrigad[oa] pel[oa] (?:conserto|reparo|visita)|n[aã]o (?:vaza|pinga|goteja) mais|"
    r"(?:tout )?est r[eé]par[eé]|c'est (?:impeccable|parfait|r[eé]gl[eé])|"
    r"c’est (?:impeccable|parfait|r[eé]gl[eé])|"
    r"est pass[eé]e?s? [^.!?]{0,60}?\bpour\b|(?:veio|vieram|esteve|passou) [^.!?]{0,60}?"
    r"\b(?:consertar|arrumar|trocar|reparar|resolver|por causa)|ficou (?:[oó]tim[oa]|"
    r"perfeit[oa]|tudo certo)|est[aá] tudo (?:certo|resolvido|[oó]timo))"
)
_STILL_BROKEN = _rx(
    r"\b(?:again|still|came back|is back|but now|new problem|otra vez|de nuevo|sigue|"
    r"todav[ií]a|volvi[oó]|encore|de nouveau|[àa] nouveau|est revenu\w*|de novo|novamente|"
    r"ainda|voltou|nouveau (?:souci|probl[eè]me)|novo problema|mas agora|par contre)\b"
)
_GOOD_NEWS = _rx(r"\bthanks? (?:you )?again\b|\bgracias de nuevo\b|"
                 r"\b(?:is|are) back (?:on|up|to normal|and (?:working|running))")
""""Thanks again", "the hot water is back on": "again" and "is back" that are good news."""
_BUT = _rx(r"\b(?:but|pero|although|though|except|mais|mas|por[eé]m)\b")
_COURTESY = _rx(
    r"\b(?:(?:please )?(?:don'?t|do not) hesitate|feel free|no dude(?:n)? en|"
    r"n['’]h[eé]sitez pas|n[aã]o hesite(?:m)?|"
    r"if you (?:need|have|want) (?:any |more |further |other )?(?:info\w*|details|questions|"
    r"anything)|si vous avez besoin|se precisar(?:em)?|si necesita(?:n)?|"
    r"i(?:'m| am)? not sure (?:if|whether)|not sure (?:if|whether)|no s[eé] si|"
    r"(?:je )?ne sais? pas si|n[aã]o sei se|"
    r"(?:i|we)(?:'m|'re| am| are)? not (?:available|home)|"
    r"no (?:estoy|estamos) disponibles?|(?:je |nous )?ne (?:suis|sommes) pas disponibles?|"
    r"n[aã]o (?:estou|estamos) dispon[ií]ve(?:l|is))\b"
)
"""Courtesy and availability ("don't hesitate to call", "I'm not sure if it's covered", "we
are not available Mondays"): negations that report no problem."""


_ANNOUNCEMENT = _rx(
    r"\b(?:a few|a couple(?: of)?|several|some|multiple|many|two|three|four|five|"
    r"quelques|plusieurs|deux|trois|quatre|algu(?:ns|mas)|v[aá]ri(?:os|as)|dois|duas|tr[eê]s|"
    r"unos|unas|varios|varias|algunos|algunas)\s+(?:\w+\s+)?"
    r"(?:things?|issues?|problems?|items?|concerns?|choses|probl[eè]mes|soucis|points|"
    r"coisas|problemas|itens|cosas)\b"
    # ... and nothing concrete after it, up to the end of the sentence or a colon
    r"(?:[\s,]+(?:that|which|we|i|to|since|are|is|were|need\w*|not|quite|right|wrong|"
    r"report\w*|noticed|found|attention|fix\w*|look\w*|at|in|on|the|house|home|new|our|"
    r"with|here|so|far|yet|que|qui|ne|vont|pas|vont|bien|[àa]|signaler|r[eé]gler|dans|la|"
    r"maison|na|casa|para|resolver|reportar|en|de|nuestra|nossa|notre|e|et|y|and|"
    r"moving|moved|move-in|emm[eé]nagement))*\s*(?=[.!?:]|$)"
)
"""An announcement of problems to come ("a few things are not right", "plusieurs choses ne
vont pas"): not a problem of its own."""


def _reports_defect(sentence: str) -> bool:
    """Does ``sentence`` name something wrong (its courtesy phrases and an announcement of
    problems to come left out)?"""
    return _DEFECT.search(_ANNOUNCEMENT.sub(" ", _COURTESY.sub(" ", sentence))) is not None


def _still_broken(sentence: str) -> bool:
    """A fix that did not hold: "came back", or "... fixed it, but it still sticks"."""
    sentence = _GOOD_NEWS.sub(" ", sentence)
    if _STILL_BROKEN.search(sentence):
        return True
    parts = _BUT.split(sentence, maxsplit=1)
    return len(parts) == 2 and _DEFECT.search(parts[1]) is not None and not _RESOLVED.search(
        parts[1])


_GRATITUDE = _rx(r"^\W*(?:(?:i|we) )?(?:just )?(?:wanted to )?(?:say )?(?:thanks?|thank(?: you)?|"
                 r"gracias|merci|obrigad[oa]|muito obrigad[oa])\b|"
                 r"^\W*je (?:voulais|tenais [àa]|veux) (?:simplement |juste )?vous remercier|"
                 r"^\W*(?:queria|gostaria de|quero) (?:s[oó] |apenas )?agradecer|"
                 r"^\W*(?:a )?(?:quick )?note (?:of|to say) thanks")
_COVERAGE_QUESTION = _rx(
    r"\b(?:covered|cover|coverage|warranty|warranties|insurance|garant[ií]a|cubre|cubierto|"
    r"garantie|couvert\w*|cobert\w*)\b"
)
_STATEMENT_SPLIT = re.compile(r"(?<=[.!?])\s+(?=\S)")
_PHOTO_WORDS = _rx(r"\b(?:photos?|pics?|pictures?|images?|attached|fotos?|imagen(?:es)?|"
                   r"adjunt\w*|ci-joint\w*|en pi[eè]ce jointe|anex\w*)\b")


@dataclass
class Segment:
    """A piece of the mail that may be one issue."""

    text: str
    source: str
    """"list" for a list item, "paragraph", "sentence" (split inside a paragraph), "fallback"."""
    heading: str = ""
    """The line that introduced the list this item belongs to ("A few things at the porch:")."""
    sentences: list[str] = field(default_factory=list)
    run_on: bool = False
    """Split from the sentence before at a bare "and the ...": merged back when it turns
    out to be the same trade in the same place."""


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _STATEMENT_SPLIT.split(text) if s.strip()]


def _join_wrapped(lines: list[str]) -> list[str]:
    """Undo hard wrapping: a line that does not end a sentence continues on the next."""
    out: list[str] = []
    for line in lines:
        if out and (
            out[-1].endswith(" ")
            or (not re.search(r"[.!?:)]\s*$", out[-1]) and line[:1].islower())
        ):
            out[-1] = out[-1].rstrip() + " " + line.strip()
        else:
            out.append(line.rstrip() if line.strip() else line.strip())
    return [line.strip() for line in out]


def _blocks(text: str) -> list[tuple[str, list[str], str]]:
    """The text as ("list" | "paragraph", lines, heading) blocks, in order."""
    blocks: list[tuple[str, list[str], str]] = []
    current: list[str] = []
    kind = "paragraph"
    heading = ""
    last_plain = ""

    def flush() -> None:
        nonlocal current
        if current:
            blocks.append((kind, current, heading if kind == "list" else ""))
        current = []

    for raw in text.split("\n"):
        line = raw.rstrip("\n")
        item = _LIST_ITEM.match(line)
        if item:
            flush()
            kind = "list"
            heading = last_plain if blocks and blocks[-1][0] != "list" else heading
            current = [item.group("body")]
            continue
        if not line.strip():
            flush()
            kind = "paragraph"
            continue
        if kind == "list" and current:
            current.append(line)  # wrapped continuation of the list item
            continue
        if kind == "list":
            flush()
            kind = "paragraph"
        current.append(line)
        last_plain = line.strip()
    flush()
    # A "list" of one item is just a paragraph that begins with a dash.
    count = sum(1 for k, _, _ in blocks if k == "list")
    if count < 2:
        blocks = [("paragraph", lines, "") for _, lines, _ in blocks]
    return blocks


def _is_problem(text: str) -> bool:
    """Does ``text`` report a present problem (not thanks, a fixed issue, or a question)?"""
    statements = _sentences(text)
    problem = [s for s in statements if _reports_defect(s)]
    if not problem:
        return False
    if _GRATITUDE.match(text) and not _still_broken(text):
        live = [s for s in problem if not _RESOLVED.search(s) and not _GRATITUDE.match(s)]
        if not live:
            return False
    live = [s for s in problem if not (_RESOLVED.search(s) and not _still_broken(s))]
    if not live:
        return False
    # Only questions about coverage ("Is a cracked driveway covered?") are not a request.
    return not all(s.rstrip().endswith("?") and _COVERAGE_QUESTION.search(s) for s in live)


def segment_issues(text: str) -> tuple[list[Segment], list[Segment]]:
    """Split cleaned text into (issues, other segments), both in written order."""
    candidates: list[Segment] = []
    for kind, lines, heading in _blocks(text):
        if kind == "list":
            body = " ".join(_join_wrapped(lines))
            candidates.append(Segment(body, "list", heading, _sentences(body)))
            continue
        candidates.extend(_split_paragraph(lines))
    listed = _problem_list_items(candidates)
    issues: list[Segment] = []
    others: list[Segment] = []
    for seg in candidates:
        past = [s for s in seg.sentences if _RESOLVED.search(s) and not _still_broken(s)]
        if past:
            listed.discard(id(seg))  # what is left of a fixed item is a note about it
        if past and len(past) < len(seg.sentences):
            others.append(Segment(" ".join(past), seg.source, sentences=past))
            seg.sentences = [s for s in seg.sentences if s not in past]
            seg.text = " ".join(seg.sentences)
        if _is_problem(seg.text) or (id(seg) in listed and _is_listed_problem(seg.text)):
            if (
                issues
                and seg.source == "paragraph"
                and issues[-1].source != "list"
                and _continues(seg, issues[-1])
            ):
                issues[-1].text += " " + seg.text
                issues[-1].sentences += seg.sentences
                continue
            issues.append(seg)
        else:
            others.append(seg)
    return issues, others


def _problem_list_items(candidates: list[Segment]) -> set[int]:
    """Ids of list items in a list that is mostly problems.

    Someone who lists problems does not repeat a problem word in each item ("The carpet
    seam in the loft is showing"), so in such a list an item counts unless it reads as
    thanks, a fixed issue or a question.
    """
    items: set[int] = set()
    run: list[Segment] = []
    for seg in [*candidates, None]:
        if seg is not None and seg.source == "list" and (not run or seg.heading == run[0].heading):
            run.append(seg)
            continue
        if len(run) >= 3 and sum(bool(_DEFECT.search(r.text)) for r in run) * 2 >= len(run):
            items.update(id(r) for r in run)
        run = [seg] if seg is not None and seg.source == "list" else []
    return items


def _is_listed_problem(text: str) -> bool:
    if len(text.split()) < 3 or text.rstrip().endswith("?"):
        return False
    if _GRATITUDE.match(text) or _PHOTO_WORDS.match(text):
        return False
    return not (_RESOLVED.search(text) and not _still_broken(text))


def _continues(seg: Segment, previous: Segment) -> bool:
    """A paragraph that carries on describing the previous issue ("It gets worse ...")."""
    first = seg.sentences[0] if seg.sentences else seg.text
    if _NEW_ISSUE_START.match(first) or _ALSO.search(first):
        return False
    return bool(_CONTINUATION_START.match(first))


def _split_paragraph(lines: list[str]) -> list[Segment]:
    """One paragraph as segments: a new segment at each "Also ..." sentence or line."""
    joined_lines = _join_wrapped(lines)
    unbulleted_list = len(joined_lines) >= 3 and all(
        len(line) <= 120 and _DEFECT.search(line) and not _CONTINUATION_START.match(line)
        for line in joined_lines
    )
    segments: list[Segment] = []
    current: list[str] = []
    run_on = False
    for line_no, line in enumerate(joined_lines):
        for s_no, (sentence, split_at_and) in enumerate(_split_on_inline_also(line)):
            starts_line = s_no == 0 and line_no > 0
            new = bool(current) and (
                _NEW_ISSUE_START.match(sentence) is not None
                or (starts_line and unbulleted_list)
                or (
                    starts_line
                    and _ALSO.search(sentence) is not None
                    and not _CONTINUATION_START.match(sentence)
                )
                or (
                    not _DEFECT.search(" ".join(current))
                    and _DEFECT.search(sentence) is not None
                    and not _CONTINUATION_START.match(sentence)
                    and (starts_line or current[-1].rstrip().endswith(("?", ":")))
                )
            )
            if new:
                text = " ".join(current)
                segments.append(Segment(text, "paragraph" if not segments else "sentence",
                                        sentences=list(current), run_on=run_on))
                current = []
                run_on = split_at_and
            current.append(sentence)
    if current:
        segments.append(Segment(" ".join(current), "paragraph" if not segments else "sentence",
                                sentences=list(current), run_on=run_on))
    return segments


_INLINE_ALSO = _rx(r"(?:,|;|\s[-–—])\s+(?=also\b|and also\b|tambi[eé]n\b)|"
                   r"(?<=[a-z])\.\s+(?=also\b)")


_RUN_ON_AND = _rx(r"(?:,\s*|\s+)(?=and (?:also )?(?:the|our|my|there(?:'s| is| are)?|theres)\s)")
_REFERS_BACK = _rx(r"\b(?:there|it|its|it'?s|same|them|they)\b")
"""Words that tie "and the baseboard there is swelling" to the problem before it."""
RUN_ON_WORDS = 24
"""A sentence this long with no comma is a run-on that may hold several problems."""


def _split_on_inline_also(line: str) -> list[tuple[str, bool]]:
    """Sentences of one line, also split at ", also the ..." inside a sentence, and a
    run-on sentence split at "(,) and the ..." where each side reports a problem; each
    with True when it was split off at such an "and"."""
    parts: list[tuple[str, bool]] = []
    for sentence in _sentences(line):
        pieces = _INLINE_ALSO.split(sentence)
        for piece in (p.strip() for p in pieces if p.strip()):
            split = _split_run_on(piece)
            parts.extend((text, n > 0) for n, text in enumerate(split))
    return parts


def _split_run_on(sentence: str) -> list[str]:
    """Split at ", and the ..." (or a bare "and the ..." in a long comma-less sentence)
    when the words before and after both describe a problem of their own."""
    pieces: list[str] = []
    rest = sentence
    bare_ok = "," not in sentence and len(sentence.split()) >= RUN_ON_WORDS
    start = 0
    for match in _RUN_ON_AND.finditer(sentence):
        if not bare_ok and "," not in match.group(0):
            continue
        left = sentence[start:match.start()].strip()
        right = sentence[match.end():].strip()
        if (len(left.split()) >= 4 and len(right.split()) >= 5 and _DEFECT.search(left)
                and _DEFECT.search(_first_clause(right))
                and not _REFERS_BACK.search(" ".join(right.split()[:6]))):
            pieces.append(left)
            start = match.end()
    rest = sentence[start:].strip()
    return [*pieces, rest] if rest else pieces


def _first_clause(text: str) -> str:
    """The words up to the next "and the ..." or comma: the part one split describes."""
    return re.split(r",|\sand (?:also )?(?:the|our|my)\s", text, maxsplit=1)[0]


# --- trade classification ----------------------------------------------------------------

MODEL_PATH = Path(__file__).resolve().parent / "data" / "trade_model.npz"
"""The base model fitted on :data:`PHRASES_PATH`, shipped so no daemon fits it at start-up;
``python -m warrantyd.daemon.drafters.offline --write-model`` rewrites it."""
MODEL_SETTINGS = ("tfidf words 1-2 + char_wb 3-5, sublinear, l2 per half; "
                  "logistic regression C=20 lbfgs")
"""Part of the model key: a change of features or fitting makes the shipped model stale."""
_WHITE_SPACES = re.compile(r"\s\s+")
_WORD_TOKEN = re.compile(r"(?u)\b\w\w+\b")


def _load_phrases(path: Path = PHRASES_PATH) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        trade, sep, phrase = line.partition("\t")
        if not sep or trade not in TRADES:
            raise ValueError(f"{path}:{number}: expected 'trade<TAB>phrase' with a known trade")
        rows.append((phrase.strip(), trade))
    return rows


def _normalise(text: str) -> str:
    text = text.lower()
    text = re.sub(r"\d+", " 0 ", text)
    return text


def _word_grams(text: str) -> list[str]:
    """Word unigrams and bigrams of the normalised text (scikit-learn's "word" analyzer)."""
    tokens = _WORD_TOKEN.findall(_normalise(text))
    return tokens + [f"{a} {b}" for a, b in pairwise(tokens)]


def _char_grams(text: str) -> list[str]:
    """Character 3- to 5-grams inside space-padded words (scikit-learn's "char_wb")."""
    grams: list[str] = []
    for word in _WHITE_SPACES.sub(" ", _normalise(text)).split():
        word = f" {word} "
        size = len(word)
        for n in range(3, 6):
            if size <= n:
                grams.append(word)  # a short word counts once, whole
                break
            grams.extend(word[i:i + n] for i in range(size - n + 1))
    return grams


_ANALYZERS = (_word_grams, _char_grams)


@dataclass(frozen=True)
class TradeModel:
    """A fitted TF-IDF + multinomial logistic-regression model as plain arrays.

    Reading with it needs only NumPy: scikit-learn (slow to import and heavy to keep in
    memory) is loaded only to fit a model, which a daemon without staff feedback never does.
    The two feature blocks (word and character n-grams) are each L2-normalised, as
    scikit-learn's ``FeatureUnion`` of two ``TfidfVectorizer`` gives them.
    """

    vocabularies: tuple[dict[str, int], dict[str, int]]
    """Term -> column, per block; the character block's columns follow the word block's."""
    idf: Any
    coef: Any
    """(classes, columns)."""
    intercept: Any
    classes: tuple[str, ...]

    def vector(self, text: str) -> tuple[Any, Any]:
        """The TF-IDF vector of ``text`` as (columns, values)."""
        import numpy as np

        columns: list[int] = []
        values: list[float] = []
        for vocabulary, analyze in zip(self.vocabularies, _ANALYZERS, strict=True):
            counts = Counter(analyze(text))
            found = [(vocabulary[g], c) for g, c in counts.items() if g in vocabulary]
            if not found:
                continue
            cols = np.fromiter((c for c, _ in found), dtype=np.intp, count=len(found))
            tf = np.log(np.fromiter((n for _, n in found), dtype=np.float64,
                                    count=len(found))) + 1.0
            weights = tf * self.idf[cols]
            norm = math.sqrt(float(weights @ weights))
            columns.extend(cols.tolist())
            values.extend((weights / norm).tolist() if norm else weights.tolist())
        return np.asarray(columns, dtype=np.intp), np.asarray(values, dtype=np.float64)

    def probabilities(self, text: str) -> Any:
        """Class probabilities of ``text``, in :attr:`classes` order."""
        import numpy as np

        columns, values = self.vector(text)
        scores = self.coef[:, columns] @ values + self.intercept
        scores = np.exp(scores - scores.max())
        return scores / scores.sum()

    def save(self, path: Path, key: str) -> None:
        import numpy as np

        words, chars = ([t for t, _ in sorted(v.items(), key=lambda kv: kv[1])]
                        for v in self.vocabularies)
        with path.open("wb") as out:
            np.savez_compressed(out, key=np.array(key), words=np.array(words),
                                chars=np.array(chars), idf=self.idf, coef=self.coef,
                                intercept=self.intercept, classes=np.array(self.classes))

    @classmethod
    def load(cls, path: Path, key: str) -> TradeModel | None:
        """The model saved at ``path`` when it was fitted for ``key``, else None."""
        import numpy as np

        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["key"]) != key:
                    return None
                words = {t: i for i, t in enumerate(data["words"].tolist())}
                chars = {t: i + len(words) for i, t in enumerate(data["chars"].tolist())}
                return cls((words, chars), data["idf"], data["coef"], data["intercept"],
                           tuple(data["classes"].tolist()))
        except (OSError, KeyError, ValueError):
            return None


def fit_trade_model(texts: Sequence[str], labels: Sequence[str],
                    weights: Sequence[float]) -> TradeModel:
    """Fit the features and the logistic regression on labelled texts (scikit-learn)."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion

    # With a preprocessor given, scikit-learn neither lower-cases nor strips accents
    # itself: _normalise is all the normalising there is (and all TradeModel repeats).
    features = FeatureUnion([
        ("words", TfidfVectorizer(preprocessor=_normalise, ngram_range=(1, 2),
                                  sublinear_tf=True)),
        ("chars", TfidfVectorizer(preprocessor=_normalise, analyzer="char_wb",
                                  ngram_range=(3, 5), sublinear_tf=True)),
    ])
    matrix = features.fit_transform(list(texts))
    model = LogisticRegression(C=20.0, max_iter=3000)
    model.fit(matrix, list(labels), sample_weight=list(weights))
    words, chars = (vectorizer for _, vectorizer in features.transformer_list)
    word_vocabulary = {str(t): int(i) for t, i in words.vocabulary_.items()}
    char_vocabulary = {str(t): int(i) + len(word_vocabulary)
                       for t, i in chars.vocabulary_.items()}
    return TradeModel(
        (word_vocabulary, char_vocabulary),
        np.concatenate([words.idf_, chars.idf_]),
        np.ascontiguousarray(model.coef_, dtype=np.float64),
        np.asarray(model.intercept_, dtype=np.float64),
        tuple(str(c) for c in model.classes_))


def base_model_key(path: Path = PHRASES_PATH) -> str:
    """What the base model was fitted from: the phrase file's bytes and the settings."""
    digest = hashlib.sha256(path.read_bytes())
    digest.update(MODEL_SETTINGS.encode())
    return digest.hexdigest()


@lru_cache(maxsize=1)
def _base_model() -> TradeModel:
    """The shipped base model; fitted here (seconds) only when the phrases changed since."""
    key = base_model_key()
    model = TradeModel.load(MODEL_PATH, key)
    if model is None:
        log.warning("the shipped trade model does not match %s; fitting it now (this takes "
                    "seconds at every start until `python -m warrantyd.daemon.drafters.offline "
                    "--write-model` is run)", PHRASES_PATH.name)
        base = _base_phrases()
        model = fit_trade_model([t for t, _ in base], [label for _, label in base],
                                [1.0] * len(base))
    return model


class TradeClassifier:
    """TF-IDF (word and character n-grams) + logistic regression over trade labels.

    Without feedback it is the base model fitted on the built-in phrases, shipped with
    the package.  Staff decisions retrain it: the phrases and the decisions (each counting
    :data:`FEEDBACK_WEIGHT` times) are fitted together; fitted models are cached per set
    of feedback examples, so a drafter that sees the same examples again reuses its model.
    """

    def __init__(self, feedback: tuple[tuple[str, str], ...] = ()) -> None:
        import numpy as np

        if feedback:
            base = _base_phrases()
            self.model = fit_trade_model(
                [t for t, _ in base] + [t for t, _ in feedback],
                [label for _, label in base] + [label for _, label in feedback],
                [1.0] * len(base) + [FEEDBACK_WEIGHT] * len(feedback))
        else:
            self.model = _base_model()
        self.feedback = feedback
        # Feedback vectors as coordinate lists, for one similarity per example at once.
        rows: list[Any] = []
        columns: list[Any] = []
        values: list[Any] = []
        for row, (text, _trade) in enumerate(feedback):
            cols, vals = self.model.vector(text)
            rows.append(np.full(len(cols), row, dtype=np.intp))
            columns.append(cols)
            values.append(vals)
        self._feedback_coo = ((np.concatenate(rows), np.concatenate(columns),
                               np.concatenate(values)) if feedback else None)

    def predict(self, text: str) -> tuple[str, float]:
        """The most likely trade for ``text`` and its probability."""
        probs = self.model.probabilities(text)
        best = int(probs.argmax())
        return self.model.classes[best], float(probs[best])

    def probabilities(self, text: str) -> dict[str, float]:
        probs = self.model.probabilities(text)
        return {c: float(p) for c, p in zip(self.model.classes, probs, strict=True)}

    def nearest_feedback(self, text: str) -> tuple[str, float] | None:
        """The trade staff gave the most similar past text, when it is similar enough."""
        import numpy as np

        if self._feedback_coo is None:
            return None
        rows, columns, values = self._feedback_coo
        query = np.zeros(self.model.coef.shape[1])
        cols, vals = self.model.vector(text)
        query[cols] = vals
        sims = np.bincount(rows, weights=values * query[columns], minlength=len(self.feedback))
        # Each half of the union is L2-normalised, so the dot product is at most 2.
        sims = sims / 2.0
        votes: dict[str, float] = defaultdict(float)
        for (_, trade), sim in zip(self.feedback, sims, strict=True):
            if sim >= NEIGHBOUR_SIMILARITY:
                votes[trade] += float(sim)
        if not votes:
            return None
        trade = max(votes, key=lambda t: votes[t])
        return trade, float(max(s for (_, t), s in zip(self.feedback, sims, strict=True)
                                if t == trade))


@lru_cache(maxsize=1)
def _base_phrases() -> tuple[tuple[str, str], ...]:
    return tuple(_load_phrases())


@lru_cache(maxsize=8)
def _classifier(feedback: tuple[tuple[str, str], ...]) -> TradeClassifier:
    return TradeClassifier(feedback)


def load_trade_model() -> None:
    """Load the shipped trade model now (numpy and the model file) rather than at the first
    mail; see ``drafting.prepare_drafter``."""
    _classifier(())


def _feedback_pairs(examples: Sequence[FeedbackExample]) -> tuple[tuple[str, str], ...]:
    pairs = []
    for ex in examples:
        if ex.decision in {"accept", "edit"} and ex.final_trade in TRADES and ex.source_text:
            pairs.append((ex.source_text.strip(), ex.final_trade))
    return tuple(sorted(set(pairs)))


# Conventions of the warranty team that a phrase model cannot infer from words alone.
# The thing named decides, not the room it is in: a bathroom fan is wiring, an attic
# hatch in the garage is insulation.
_CONVENTIONS: tuple[tuple[re.Pattern[str], str], ...] = (
    (_rx(r"\b(?:exhaust|bath(?:room)?|vent(?:ilation)?|extractor) fans?\b|"
         r"\bfan in the (?:\w+\s){0,2}(?:bath(?:room)?|powder room)\b|extractor|"
         r"ventilador del ba[ñn]o|ventilateur de (?:la )?salle de bains?|exaustor"),
     "electrical"),
    (_rx(r"\b(?:attic|crawl ?space) (?:hatch|access|scuttle|cover|opening|panel|door)\w*|"
         r"\bhatch (?:to|into|for) the attic|\battic hatch|trappe (?:du grenier|des combles|"
         r"d'acc[eè]s au grenier)|al[çc]ap[aã]o"), "insulation"),
    (_rx(r"\b(?:nail|screw) ?pops?\b|\bpopped nails?\b"), "drywall"),
    (_rx(r"\b(?:towel (?:bar|ring|rack)|(?:toilet )?paper holder|tp holder|toallero)\b"),
     "drywall"),
    (_rx(r"\bwindow wells?\b|pozo de (?:la )?ventana"), "grading_drainage"),
    (_rx(r"\b(?:stucco|stone veneer|soffits?|estuco|enduit|cr[eé]pi|reboco)\b"),
     "siding_exterior"),
    (_rx(r"\bgoutti[eè]res?\b|\bcalhas?\b|\balgeroz\w*"), "gutters"),
    (_rx(r"\b(?<!fire )(?:sprinklers?|irrigation|drip line|aspersor\w*|riego|arrosage|"
         r"arroseurs?|irriga[çc][aã]o)\b"),
     "landscaping"),
    (_rx(r"\b(?:water |brown |yellow )?stain\w*\b.{0,60}\b(?:below|under|beneath)\b.{0,30}"
         r"\b(?:bath\w*|shower|tub|toilet|laundry)"), "plumbing"),
    (_rx(r"\b(?:door (?:from|to|into|between) (?:the )?(?:house|garage)|garage (?:side|entry|"
         r"service) door|side door (?:of|to|in) the garage)\b"), "windows_doors"),
)
_RAIN_TRADES = frozenset({"roofing", "windows_doors", "gutters", "siding_exterior"})
"""Trades that may own a leak while it rains; anything else is sent to roofing."""
_EMERGENCY_TRADES = {
    "gas smell": "plumbing",
    "carbon monoxide alarm": "hvac",
    "sewage backup": "plumbing",
    "total loss of heat in cold weather": "hvac",
    "total loss of power": "electrical",
    "total loss of water": "plumbing",
    "sparking or scorched electrical": "electrical",
    "burning smell at electrical": "electrical",
}


# --- locations --------------------------------------------------------------------------

_FLOOR = r"(?:upstairs|downstairs|main[- ]floor|second[- ]floor|first[- ]floor|basement)"
_LOCATIONS: tuple[tuple[str, str], ...] = (
    (r"(?:master|primary|main) (?:bath(?:room)?|shower|tub|toilet|vanity|en-?suite)",
     "primary bathroom"),
    (r"(?:master|primary) (?:bed(?:room)?|suite)", "primary bedroom"),
    (r"(?:master|primary) (?:walk-?in )?closet", "primary closet"),
    (r"walk-?in closet", "walk-in closet"),
    (r"coat closet", "coat closet"),
    (r"linen closet", "linen closet"),
    (r"(?:upstairs |downstairs )?hall(?:way)? bath(?:room)?", "hall bathroom"),
    (r"(?:kids'?|children'?s|jack and jill) bath(?:room)?", "kids' bathroom"),
    (r"guest bath(?:room)?", "guest bathroom"),
    (rf"(?P<floor>{_FLOOR}) (?:bath(?:room)?|tub|shower|toilet|vanity)", "{floor} bathroom"),
    (r"(?:toilet|tub|shower|vanity) (?P<floor>upstairs|downstairs)", "{floor} bathroom"),
    (r"powder room|half[- ]bath", "powder room"),
    (r"guest (?:bed)?room", "guest bedroom"),
    (r"bedroom (?:#\s?)?(?P<n>\d)", "bedroom {n}"),
    (rf"(?P<floor>{_FLOOR}|front|back) bedroom", "{floor} bedroom"),
    (r"(?:kids'?|son'?s|daughter'?s|child'?s|baby'?s) (?:bed)?room|nursery", "child's bedroom"),
    (r"bedroom over (?:the )?garage", "bedroom over garage"),
    (r"bath(?:room)?s?|shower|bathtub|tub\b", "bathroom"),
    (r"bed(?:room)?s?\b", "bedroom"),
    (r"kitchen(?: island)?", "kitchen"),
    (r"pantry", "pantry"),
    (r"laundry(?: room)?|utility room", "laundry room"),
    (r"mud ?room", "mudroom"),
    (r"dining(?: room)?", "dining room"),
    (r"living room|front room", "living room"),
    (r"family room|great room|den\b", "family room"),
    (r"office|study\b", "office"),
    (r"bonus room", "bonus room"),
    (r"loft", "loft"),
    (r"attic(?! (?:access|hatch|door|stairs|ladder|opening))", "attic"),
    (r"crawl ?space", "crawl space"),
    (r"basement", "basement"),
    (r"upstairs hall(?:way)?|hall(?:way)? upstairs", "upstairs hallway"),
    (r"hall(?:way)?", "hallway"),
    (r"stair(?:well|way|case|s)", "stairwell"),
    (r"front (?:door|entry|entryway|step|stoop)|entry(?:way)?|foyer", "front entry"),
    (r"(?:front )?porch", "front porch"),
    (r"(?:back |rear )?patio(?! (?:door|slider|screen))", "back patio"),
    (r"deck\b", "deck"),
    (r"driveway", "driveway"),
    (r"(?:front )?(?:walkway|sidewalk|front walk)", "front walkway"),
    (r"front (?:yard|lawn)", "front yard"),
    (r"(?:back ?yard|rear yard|back lawn)", "back yard"),
    (r"side yard", "side yard"),
    (r"garage", "garage"),
    (r"roof", "roof"),
    (r"(?:back|rear) (?:side )?of (?:the |our )?(?:house|home|roof)", "back of house"),
    (r"back door", "back door"),
    (r"(?:\w+ )?side of (?:the |our )?(?:house|home)", "side of house"),
    (r"front (?:of (?:the |our )?(?:house|home)|elevation)", "front of house"),
    (r"closet", "closet"),
    (r"whole (?:house|home)|entire (?:house|home)|throughout the (?:house|home)|"
     r"(?:in|inside) the (?:house|home)", "whole house"),
    # Spanish
    (r"ba[ñn]o (?:de arriba|del segundo piso)", "upstairs bathroom"),
    (r"ba[ñn]o principal", "primary bathroom"),
    (r"ba[ñn]o", "bathroom"),
    (r"lavander[ií]a|cuarto de lavado", "laundry room"),
    (r"rec[aá]mara principal|cuarto principal", "primary bedroom"),
    (r"rec[aá]mara|habitaci[oó]n|dormitorio|cuarto", "bedroom"),
    (r"cocina", "kitchen"),
    (r"garaje|cochera", "garage"),
    (r"sala de jantar", "dining room"),  # Portuguese, before the "sala" both languages say
    (r"sala\b", "living room"),
    (r"comedor", "dining room"),
    (r"s[oó]tano", "basement"),
    (r"patio trasero|jard[ií]n trasero", "back yard"),
    (r"pasillo", "hallway"),
    (r"escaleras?", "stairwell"),
    (r"entrada", "front entry"),
    (r"toda la casa", "whole house"),
    # French
    (r"salle (?:de bains?|d'eau|d’eau) (?:principale|des ma[iî]tres|parentale)|"
     r"salle (?:de bains?|d'eau|d’eau) (?:de la )?suite", "primary bathroom"),
    (r"salle (?:de bains?|d'eau|d’eau) (?:de l'[eé]tage|de l’[eé]tage|[àa] l'[eé]tage|"
     r"[àa] l’[eé]tage|du haut)", "upstairs bathroom"),
    (r"salle (?:de bains?|d'eau|d’eau)|douche|baignoire", "bathroom"),
    (r"chambre (?:principale|des ma[iî]tres|parentale)", "primary bedroom"),
    (r"chambre d'amis|chambre d’amis", "guest bedroom"),
    (r"chambre", "bedroom"),
    (r"couloir (?:de l'[eé]tage|de l’[eé]tage|[àa] l'[eé]tage|[àa] l’[eé]tage|du haut)|"
     r"couloir\b[^.,;]{0,20}?\b[àa] l['’][eé]tage", "upstairs hallway"),
    (r"couloir|corridor", "hallway"),
    (r"buanderie|salle de lavage", "laundry room"),
    (r"salle [àa] manger", "dining room"),
    (r"salon|s[eé]jour", "living room"),
    (r"sous-sol", "basement"),
    (r"grenier|combles", "attic"),
    (r"escaliers?", "stairwell"),
    (r"entr[eé]e|vestibule|hall d'entr[eé]e", "front entry"),
    (r"terrasse", "back patio"),
    (r"toiture|toit", "roof"),
    (r"all[eé]e", "driveway"),
    (r"jardin|cour arri[eè]re", "back yard"),
    (r"toute la maison", "whole house"),
    (r"[àa] l'[eé]tage|[àa] l’[eé]tage", "upstairs"),
    # Portuguese
    (r"banheiro (?:de cima|do andar de cima|do segundo andar)", "upstairs bathroom"),
    (r"banheiro (?:da su[ií]te|principal|do casal)", "primary bathroom"),
    (r"banheiro|casa de banho|chuveiro|banheira|duche", "bathroom"),
    (r"quarto (?:principal|de casal)", "primary bedroom"),
    (r"quarto de h[oó]spedes", "guest bedroom"),
    (r"quarto", "bedroom"),
    (r"cozinha", "kitchen"),
    (r"garagem|port[aã]o da garagem", "garage"),
    (r"lavanderia|[aá]rea de servi[çc]o", "laundry room"),
    (r"sala de estar", "living room"),
    (r"por[aã]o", "basement"),
    (r"s[oó]t[aã]o", "attic"),
    (r"corredor", "hallway"),
    (r"escada", "stairwell"),
    (r"telhado", "roof"),
    (r"quintal", "back yard"),
    (r"cal[çc]ada", "front walkway"),
    (r"varanda|alpendre", "front porch"),
    (r"toda a casa|a casa toda|casa inteira", "whole house"),
    (r"andar de cima", "upstairs"),
    (r"upstairs", "upstairs"),
    (r"exterior|outside|ext[eé]rieur|lado de fora|[aá]rea externa", "exterior"),
)
_LOCATION_RES = tuple((re.compile(rf"\b(?:{p})", re.IGNORECASE), n) for p, n in _LOCATIONS)
_LOCATION_CHUNK = 12


def _location_chunks() -> tuple[tuple[re.Pattern[str], range], ...]:
    """The place patterns in runs of :data:`_LOCATION_CHUNK`, each with one pattern that
    matches where any of the run would: a text that names none of a run (an English mail,
    the French and Portuguese places) costs one search instead of a dozen."""
    chunks = []
    for start in range(0, len(_LOCATIONS), _LOCATION_CHUNK):
        part = _LOCATIONS[start:start + _LOCATION_CHUNK]
        any_of = "|".join(re.sub(r"\(\?P<\w+>", "(?:", p) for p, _ in part)
        chunks.append((re.compile(rf"\b(?:{any_of})", re.IGNORECASE),
                       range(start, start + len(part))))
    return tuple(chunks)


_LOCATION_CHUNKS = _location_chunks()
_HEARD_FROM = _rx(
    r"\b(?:hear|heard|hearing|hears)\s+(?:it|them|this|that|the \w+)?\s*"
    r"(?:from|in|all the way (?:from|in|up|down)|down in|up in|throughout)\b[^,.;!?]*"
)
"""Where a noise is heard ("you can hear it from the bedroom") is not where the thing is."""
_GENERIC_LOCATIONS = frozenset({"upstairs", "exterior", "whole house", "back door"})
_SAME_PLACE = _rx(r"\b(?:same|that) (?:bath(?:room)?|room|area|spot|wall|window|door)\b|"
                  r"\bmismo\b")


# Where a thing usually is, when the mail names the thing but not the room.
_OBJECT_PLACES: tuple[tuple[re.Pattern[str], str], ...] = (
    (_rx(r"\b(?:fridge|refrigerator|dishwasher|range|stove|oven|cooktop|microwave|"
         r"backsplash|ice maker|garbage disposal|disposal|refrigerador|estufa|lavavajillas|"
         r"[eé]vier|lave-vaisselle|cuisini[eè]re|frigo|pia da cozinha|fog[aã]o|"
         r"lava-lou[çc]as|geladeira)\b"),
     "kitchen"),
    (_rx(r"\b(?:washer|dryer|washing machine|lavadora|secadora|lave-linge|s[eè]che-linge|"
         r"m[aá]quina de lavar)\b"), "laundry room"),
    (_rx(r"\b(?:shingles?|ridge|chimney flashing|tejas?)\b"), "roof"),
    (_rx(r"\b(?:driveway)\b"), "driveway"),
    (_rx(r"\b(?:island|isla)\b"), "kitchen"),
)


def find_location(text: str) -> str | None:
    """The first place in or around the home that ``text`` names, in plain words."""
    best: tuple[int, int, int, str] | None = None
    ranks = (rank for any_of, run in _LOCATION_CHUNKS if any_of.search(text) for rank in run)
    for rank in ranks:
        pattern, name = _LOCATION_RES[rank]
        match = pattern.search(text)
        if not match:
            continue
        groups = {k: (v or "").lower().replace("-", " ") for k, v in match.groupdict().items()}
        label = name.format(**groups) if groups else name
        generic = 1 if label in _GENERIC_LOCATIONS else 0
        key = (generic, match.start(), rank, label)
        if best is None or key[:3] < best[:3]:
            best = key
    return best[3] if best else None


# --- writing ----------------------------------------------------------------------------

_PHONE = re.compile(r"(?:\+?1[\s.-]?)?\(?\b\d{3}\)?[\s.-]?\d{3}[\s.-]?\d{4}\b")
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_URL = re.compile(r"\bhttps?://\S+|\bwww\.\S+", re.IGNORECASE)
_CALL_ME = _rx(r"[^.!?]*\b(?:call|text|reach|contact|ll[aá]me\w*|marque\w*)\b[^.!?]*"
               r"\b(?:me|us|my|at|al)\b[^.!?]*(?:[.!?]|$)")
_CALL_WORD = _rx(r"\b(?:call|text|reach|contact|ll[aá]me\w*|marque\w*)\b")
"""The word :data:`_CALL_ME` cannot match without."""
_LEAD_FILLER = _rx(
    r"^(?:(?:also|and|plus|second(?:ly)?|separately|unrelated|in addition|additionally|"
    r"lastly|finally|however|oh,? and|new problem(?: though)?|one more thing(?: to add)?|"
    r"the other thing(?: is)?|another (?:thing|issue|problem)(?: is)?|tambi[eé]n|adem[aá]s|"
    r"aussi|[eé]galement|de plus|en plus|tamb[eé]m|al[eé]m disso|(?:et|e)(?=\s))\b"
    r"[\s,:;\-–—()]*(?:not urgent\)|less important,?|but when you'?re out:?)?[\s,:;\-–—]*)+"
)
_SUBJECT_FILLER = _rx(
    r"^(?:(?:we(?:'ve| have)?|i(?:'ve| have)?) (?:noticed|found|see|seen|have|got|been noticing)"
    r"(?: that)?|there(?:'s| is| are| was)|we have|i have|it looks like|looks like|"
    # "I am writing because we have ...", in the other languages we read
    r"(?:les |le )?escribo (?:porque|para (?:reportar|informar)(?: que)?|ya que)"
    r"(?: (?:tenemos|hay|tengo))?|(?:tenemos|tengo|hay)|"
    r"(?:quisiera|quer[ií]a|queremos) (?:reportar|informar)(?: que)?(?: (?:tenemos|hay))?|"
    r"je vous [eé]cris (?:car|parce que|pour (?:signaler|vous signaler))(?: qu[e'’])?"
    r"(?: (?:nous avons|j'ai|j’ai|on a|il y a))?|(?:nous avons|j'ai|j’ai|il y a)|"
    r"je (?:voudrais|souhaite) (?:signaler|vous signaler)(?: qu[e'’])?"
    r"(?: (?:nous avons|il y a))?|"
    r"(?:estou escrevendo|escrevo|estamos escrevendo) (?:porque|para (?:informar|avisar))"
    r"(?: que)?(?: (?:temos|h[aá]|tem))?|(?:temos|há|tem)|"
    r"(?:gostaria|queria) de (?:informar|avisar|relatar)(?: que)?(?: (?:temos|h[aá]))?)\s+"
)
_PRONOUNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b(?:I|we)'ve\b", re.IGNORECASE), "homeowner has"),
    (re.compile(r"\b(?:I'm|we're)\b", re.IGNORECASE), "homeowner is"),
    (re.compile(r"\b(?:I'd|we'd)\b", re.IGNORECASE), "homeowner would"),
    (re.compile(r"\b(?:I'll|we'll)\b", re.IGNORECASE), "homeowner will"),
    (re.compile(r"\bI\b"), "homeowner"),
    (re.compile(r"\bwe\b", re.IGNORECASE), "homeowner"),
    (re.compile(r"\b(?:our|my)\b", re.IGNORECASE), "the"),
    (re.compile(r"\b(?:us|me)\b", re.IGNORECASE), "homeowner"),
)
_ACTIONS = {
    "plumbing": "Inspect and repair",
    "electrical": "Diagnose and repair",
    "hvac": "Diagnose and repair",
    "drywall": "Repair drywall",
    "paint": "Touch up or repaint",
    "roofing": "Inspect and repair roof",
    "windows_doors": "Inspect and adjust or repair",
    "garage_door": "Inspect and repair garage door",
    "flooring_tile": "Inspect and repair",
    "cabinets_countertops": "Inspect and adjust or repair",
    "concrete": "Evaluate and repair concrete",
    "grading_drainage": "Evaluate grading and drainage",
    "siding_exterior": "Inspect and repair exterior",
    "framing_structural": "Evaluate and repair",
    "insulation": "Inspect and correct insulation",
    "appliances": "Diagnose appliance",
    "gutters": "Inspect and repair gutters",
    "landscaping": "Inspect and repair landscaping",
    "other": "Inspect and repair",
}


def _scrub(text: str, names: Sequence[str]) -> str:
    """Remove what a vendor must not get: phone numbers, addresses, homeowner names."""
    text = _EMAIL.sub("[email removed]", text)
    text = _URL.sub("", text)
    text = _PHONE.sub("[phone removed]", text)
    if _CALL_WORD.search(text):  # the costly sentence match only where it can match
        text = _CALL_ME.sub(" ", text)
    for name in names:
        if len(name) >= 2 and name[:1].isupper():
            text = re.sub(rf"\b{re.escape(name)}\b", "homeowner", text)
    return re.sub(r"\s{2,}", " ", text).strip()


def _third_person(text: str) -> str:
    for pattern, repl in _PRONOUNS:
        text = pattern.sub(repl, text)
    return text


def _strip_item_lead(text: str) -> str:
    text = _LEAD_FILLER.sub("", text.strip())
    return _SUBJECT_FILLER.sub("", text)


_TITLE_LEAD = _rx(
    r"^(?:"
    # when it started or happens: "For the past day or so", "Every time we run the washer,"
    r"(?:for|over) the (?:past|last) [^,]{0,25}?"
    r"(?:\bor so\b|,|(?=\s(?:there|the|our|my|we|i|it)\s))|"
    r"since [^,]{0,30},|(?:yesterday|today|tonight|recently|lately|this (?:morning|afternoon|"
    r"evening|week)|last (?:night|week|weekend))\b,?|"
    r"(?:every|each) time [^,]{3,50},|whenever [^,]{3,50},|when(?:ever)? it rains,?|"
    r"while (?:we'?re|i'?m|you'?re) [^,]{0,30},|after [^,]{3,40},|"
    # weather or context before "and now ...": "It's been pouring all afternoon and now"
    r"(?:it'?s|it has|we'?ve|it was)\s+been\s+[^,.]{0,40}?\s+and\s+(?:now\s+)?|"
    r"[^,.]{0,30}\b(?:rain|storm|wind)\w*[^,.]{0,30}\s+and\s+now\s+|"
    # "What we need help with now is ...", "The thing that bothers us is ..."
    r"(?:what|the (?:\w+ )?(?:thing|problem|issue))\s+(?:that\s+)?(?:we|i|has|is|'s)\b"
    r"[^,:.]{0,50}?\s+(?:is|are)\s+|"
    # telling, not the problem: "I forgot to mention,"
    r"(?:i|we)\s+(?:just\s+)?(?:forgot|meant|wanted|want|need(?:ed)?|would like|have)\s+to\s+"
    r"(?:mention|say|add|tell you|report|let you know|ask about)(?:\s+that)?,?|"
    r"(?:the\s+)?(?:first|second|third|fourth|last|next)(?:\s+(?:one|photo|pic(?:ture)?|"
    r"item|thing|issue))?\s*(?:is|shows)?\s*(?=\S)"
    r")\s*"
)


def _strip_title_lead(text: str) -> str:
    """Drop what comes before the problem: when, the weather, "I forgot to mention"."""
    for _ in range(3):
        stripped = _TITLE_LEAD.sub("", text, count=1).lstrip(" ,:;-")
        if stripped == text or len(stripped.split()) < 3:
            break
        text = _SUBJECT_FILLER.sub("", stripped)
    return text


def make_title(segment: Segment) -> str:
    """A short line for subjects and lists, from the issue's first problem sentence."""
    first = next((s for s in segment.sentences if _reports_defect(s)), segment.text)
    return short_title(_strip_title_lead(_strip_item_lead(first)))


def short_title(text: str) -> str:
    """At most about 60 characters of ``text``, cut at a clause, not in mid-thought
    (also used for the titles of work orders staff write or edit)."""
    title = text
    lead, sep, rest = title.partition(", but ")
    if sep and re.search(r"\b(?:no|not|nothing|never)\b", lead, re.IGNORECASE):
        title = rest
    title = re.sub(r"^(?:(?:the|a|an|our|my|el|la|los|las|un|una|une|des|le|les|nos|notre|"
                   r"um|uma|o|os|nosso|nossa)\s+|l['’](?=\w))", "", title,
                   flags=re.IGNORECASE)
    title = re.split(r"\s[-–—]\s|;|\(|\.\s", title)[0].strip(" .,:;!")
    if len(title) > 60:
        clause = re.search(r",|\s(?:but|because|when|whenever|while|after|if|and|so|which|"
                           r"since|pero|cuando|y|mais|quand|et|mas|quando|e)\s",
                           title[15:70])
        if clause:
            title = title[: 15 + clause.start()].strip(" .,:;!")
        else:
            title = title[:60].rsplit(" ", 1)[0].rstrip(" ,;:") + "…"
    return (title[:1].upper() + title[1:]) or "Warranty item"


def make_description(segment: Segment, trade: str, location: str | None, title: str,
                     names: Sequence[str]) -> str:
    """An imperative work line for the vendor, then the homeowner's report in third person."""
    report = _third_person(_scrub(_strip_item_lead(segment.text), names))
    subject = title
    subject = subject[:1].lower() + subject[1:]
    where = f" ({location})" if location and location.lower() not in subject.lower() else ""
    action = _ACTIONS.get(trade, "Inspect and repair")
    subject = _third_person(_scrub(subject, names))
    return f"{action}: {subject}{where}. Homeowner reports: {report}"


# --- photos -----------------------------------------------------------------------------

_PHOTO_NUMBER = _rx(r"\b(?:photos?|pics?|pictures?|images?|fotos?|imagen)\s*#?\s*(\d)\b")
_FILENAME_NOISE = _rx(r"^(?:img|dsc|dscn|pxl|image|photo|pic|screenshot|scan|whatsapp|"
                      r"jpe?g|png|heic|gif|\d+|[a-z])$")
_ORDINALS = {"first": 0, "1st": 0, "second": 1, "2nd": 1, "third": 2, "3rd": 2, "fourth": 3,
             "4th": 3, "fifth": 4, "5th": 4, "last": -1, "primera": 0, "segunda": 1,
             "tercera": 2}
_PHOTO_ORDINAL = _rx(r"\b(first|1st|second|2nd|third|3rd|fourth|4th|fifth|5th|last)\s+"
                     r"(?:one|photo|pic(?:ture)?|image|attachment|shot)\b|"
                     r"\b(primera|segunda|tercera)\s+(?:foto|imagen)\b")
_BOTH = _rx(r"\b(?:both|all|each|ambos|ambas|todos)\b")


def assign_photos(photos: Sequence[str], issues: Sequence[Segment],
                  others: Sequence[Segment]) -> list[int]:
    """Index of the issue each photo shows, in photo order."""
    if not issues:
        return []
    if len(issues) == 1:
        return [0] * len(photos)
    result: list[int | None] = [None] * len(photos)
    # 1. "photo 2" written next to an issue.
    for i, seg in enumerate(issues):
        for match in _PHOTO_NUMBER.finditer(seg.text):
            n = int(match.group(1)) - 1
            if 0 <= n < len(photos) and result[n] is None:
                result[n] = i
    # 1b. "The first one ..." / "the second photo ...": the photos in attachment order.
    for i, seg in enumerate(issues):
        for match in _PHOTO_ORDINAL.finditer(seg.text):
            n = _ORDINALS[(match.group(1) or match.group(2)).lower()]
            n = len(photos) - 1 if n < 0 else n
            if 0 <= n < len(photos) and result[n] is None:
                result[n] = i
    # 2. Words of the file name ("stucco-crack.jpg") found in one issue.
    for p, name in enumerate(photos):
        if result[p] is not None:
            continue
        words = [w for w in re.split(r"[^a-z]+", Path(name).stem.lower())
                 if w and not _FILENAME_NOISE.match(w) and len(w) > 2]
        hits = [i for i, seg in enumerate(issues)
                if words and any(re.search(rf"\b{w}", seg.text, re.IGNORECASE) for w in words)]
        if len(hits) >= 1:
            result[p] = hits[0]
    # 3. Issues that mention a photo ("Photo attached."), in order.
    pending = [p for p in range(len(photos)) if result[p] is None]
    mentioning = [i for i, seg in enumerate(issues) if _PHOTO_WORDS.search(seg.text)]
    if any(_BOTH.search(s) and _PHOTO_WORDS.search(s) for seg in issues for s in seg.sentences):
        mentioning = list(range(len(issues)))  # "Photos of both attached."
    # 4. A photo line outside the issues: "Pics of the walkway and the wall".
    for seg in others:
        if not _PHOTO_WORDS.search(seg.text):
            continue
        if _BOTH.search(seg.text):
            mentioning = list(range(len(issues)))
            break
        named = [i for i, issue in enumerate(issues) if _shares_object(seg.text, issue.text)]
        for i in named:
            if i not in mentioning:
                mentioning.append(i)
        mentioning.sort()
    used = {i for i in result if i is not None}
    targets = [i for i in mentioning if i not in used] or mentioning
    for k, p in enumerate(pending):
        if targets:
            result[p] = targets[min(k, len(targets) - 1)]
        else:
            result[p] = 0
    return [r if r is not None else 0 for r in result]


_STOP = frozenset({
    "the", "a", "an", "of", "and", "or", "to", "in", "on", "at", "for", "with", "is", "are",
    "was", "were", "it", "its", "this", "that", "there", "pics", "pictures", "photos", "photo",
    "pic", "attached", "our", "my", "we", "i", "you", "from", "by"
})


def _shares_object(reference: str, issue: str) -> bool:
    ref = {w for w in re.findall(r"[a-z]+", reference.lower()) if w not in _STOP and len(w) > 2}
    words = set(re.findall(r"[a-z]+", issue.lower()))
    return bool(ref & words)


# --- language ---------------------------------------------------------------------------

# Function words and a few everyday ones, per language.  A word two languages share (Spanish
# and Portuguese "de", "que", "está"; Spanish and French "la", "en") is listed under both and
# counts for both, so only the words one language has alone decide between them: Spanish
# "el", "los", "una", "con", "usted", "gracias"; Portuguese "não", "uma", "com", "você", "da";
# French "le", "les", "une", "avec", "vous", "merci".  English mail often carries a Spanish
# street name, and other mail English trade words ("drywall", "GFCI"): those are too few to
# outweigh the function words of the mail's own language.
_SPANISH_WORDS = frozenset({
    "el", "la", "los", "las", "de", "del", "que", "y", "en", "por", "para", "una", "un", "es",
    "está", "están", "tenemos", "hay", "no", "se", "muy", "nuestra", "nuestro", "gracias",
    "también", "cuando", "pero", "como", "agua", "puerta", "baño", "con", "usted", "ustedes",
    "su", "sus", "al", "lo", "le", "les", "mi", "mis", "ya", "hola", "hace", "desde", "tiene",
    "esta", "este", "sí", "días", "cocina", "ventana", "favor", "señores", "buenas", "buenos",
    "nos",
})
_PORTUGUESE_WORDS = frozenset({
    "de", "que", "para", "por", "se", "como", "está", "estão", "esta", "este",
    "não", "você", "vocês", "obrigado", "obrigada", "uma", "um", "com", "nossa", "nosso",
    "da", "das", "dos", "em", "na", "nas", "nos", "ao", "é", "são", "muito", "também",
    "quando", "mas", "já", "olá", "oi", "meu", "minha", "temos", "tem", "há", "porta",
    "banheiro", "cozinha", "água", "janela", "desde", "dias", "bom", "boa", "pela", "pelo",
    "isso", "ele", "ela", "estamos", "favor",
})
_FRENCH_WORDS = frozenset({
    "le", "la", "les", "de", "des", "du", "que", "qui", "et", "en", "est", "une", "un", "se",
    "avec", "pour", "pas", "ne", "nous", "vous", "votre", "vos", "notre", "nos", "je", "il",
    "elle", "sont", "dans", "sur", "mais", "aussi", "merci", "bonjour", "très", "depuis",
    "quand", "au", "aux", "ce", "cette", "ces", "ça", "avons", "avez", "été", "fuite",
    "porte", "eau", "cuisine", "salle", "fenêtre", "l", "d", "j", "qu", "n",
})
_ENGLISH_WORDS = frozenset({
    "the", "and", "is", "of", "to", "in", "our", "it", "we", "this", "that", "with", "on",
    "for", "have", "has", "not", "but", "when", "i", "my", "you", "your", "are", "was",
    "there", "from", "at", "be", "been", "can", "will", "please", "thanks", "thank", "hi",
    "hello", "would", "could", "they", "just", "since", "an", "if", "its", "now", "again", "no",
})
_LANGUAGE_WORDS = {"en": _ENGLISH_WORDS, "es": _SPANISH_WORDS, "pt": _PORTUGUESE_WORDS,
                   "fr": _FRENCH_WORDS}
_KNOWN_WORDS = frozenset().union(*_LANGUAGE_WORDS.values())


def detect_language(text: str) -> str | None:
    """"en", "es", "fr" or "pt" from common words; None for text too short to tell.

    The homeowner hears from us in this language, so a doubt goes to English: a tie with
    English is English, and a tie between two other languages is None (English mail).
    """
    words = [w for w in re.findall(r"[a-zà-öø-ÿœ]+", text.lower()) if w in _KNOWN_WORDS]
    if len(words) < 3:
        return None
    scores = {lang: sum(w in vocabulary for w in words)
              for lang, vocabulary in _LANGUAGE_WORDS.items()}
    best = max(scores.values())
    leaders = [lang for lang, score in scores.items() if score == best]
    if "en" in leaders:
        return "en"
    return leaders[0] if len(leaders) == 1 else None


# --- vendors ----------------------------------------------------------------------------


def suggest_vendor(trade: str, community: str | None, text: str, vendors: Sequence[VendorInfo],
                   examples: Sequence[FeedbackExample]) -> str | None:
    """The vendor email staff would most likely pick for this trade and community.

    Past decisions count first (a vendor staff kept choosing for this trade, more so on
    similar text and in the same community); then a vendor whose trades and communities
    match; vendors with no community list serve every community.
    """
    known = {v.email.lower(): v for v in vendors}
    by_name = {v.name.lower(): v for v in vendors}
    scores: Counter[str] = Counter()
    words = set(re.findall(r"[a-z]{3,}", text.lower()))
    for ex in examples:
        if not ex.vendor or ex.decision not in {"accept", "edit"}:
            continue
        if (ex.final_trade or ex.draft_trade) != trade:
            continue
        vendor = known.get(ex.vendor.lower()) or by_name.get(ex.vendor.lower())
        email = vendor.email if vendor else (ex.vendor if "@" in ex.vendor else None)
        if email is None:
            continue
        weight = 1.0
        if community and ex.community and ex.community.lower() == community.lower():
            weight += 1.0
        ex_words = set(re.findall(r"[a-z]{3,}", ex.source_text.lower()))
        if words and ex_words:
            weight += len(words & ex_words) / math.sqrt(len(words) * len(ex_words))
        scores[email] += weight
    if scores:
        return scores.most_common(1)[0][0]
    matching = [v for v in vendors if trade in v.trades]
    if community:
        local = [v for v in matching
                 if any(c.lower() == community.lower() for c in v.communities)]
        anywhere = [v for v in matching if not v.communities]
        matching = local or anywhere
    return matching[0].email if matching else None


# --- the drafter ------------------------------------------------------------------------


class OfflineDrafter:
    """Drafts work orders with local rules and a small local model; no network."""

    engine = "offline"

    def __init__(self, examples: Sequence[FeedbackExample] = (), *,
                 in_line: bool = False) -> None:
        self.examples: tuple[FeedbackExample, ...] = tuple(examples)
        self.in_line = in_line
        """Draft in the caller's thread: for a caller whose event loop serves nothing else
        (the processing worker), where a thread per draft would only add a hop."""

    async def draft(self, request: DraftRequest) -> DraftResult:
        if self.in_line:
            return self.draft_sync(request)
        return await asyncio.to_thread(self.draft_sync, request)

    def draft_sync(self, request: DraftRequest) -> DraftResult:
        examples = (*self.examples, *request.examples)
        classifier = _classifier(_feedback_pairs(examples))
        text = clean_text(request.text)
        if not text and re.search(r"<\w+[^>]*>", request.text):
            text = clean_text(re.sub(r"<[^>]+>", "\n", request.text))
        issues, others = segment_issues(text)
        context = "\n".join(seg.text for seg in others)
        whole_reasons = emergency_reasons(text)
        source_note: list[str] = []
        if not issues and whole_reasons:
            # An emergency must never vanish because the mail did not look like a request.
            issues = [Segment(text, "fallback", sentences=_sentences(text))]
            source_note.append("emergency found outside any recognised issue")
        issues = self._merge_run_ons(classifier, issues)
        names = [n for n in re.split(r"[\s,&]+", request.homeowner_name) if n]
        photos = [p.filename for p in request.photos if _is_image(p)]
        photo_index = assign_photos(photos, issues, others)
        drafts: list[DraftIssue] = []
        previous_location: str | None = None
        for seg in issues:
            trade, confidence = self._trade(classifier, seg.text)
            priority, reason = classify_priority(seg.text, context)
            if reason == "roof leak while raining" and trade not in _RAIN_TRADES:
                trade = "roofing"
            if priority == "emergency" and reason in _EMERGENCY_TRADES:
                trade = _EMERGENCY_TRADES[reason]
            elif priority == "emergency" and trade not in {"roofing", "hvac", "appliances"}:
                trade = "plumbing"  # an active water leak
            if trade not in request.trades:
                trade = "other" if "other" in request.trades else request.trades[0]
            location = find_location(_HEARD_FROM.sub(" ", _strip_item_lead(seg.text)))
            if (previous_location and _SAME_PLACE.search(seg.text)
                    and (location is None or location in previous_location)):
                location = previous_location  # "in the same bathroom"
            if location is None or location in _GENERIC_LOCATIONS:
                inherited = find_location(seg.heading) if seg.heading else None
                if inherited is None and _SAME_PLACE.search(seg.text):
                    inherited = previous_location
                location = inherited or location
            if location is None:
                location = next((place for pattern, place in _OBJECT_PLACES
                                 if pattern.search(seg.text)), None)
            previous_location = location
            title = make_title(seg)
            factor = {"list": 1.0, "paragraph": 0.9, "sentence": 0.85}.get(seg.source, 0.6)
            drafts.append(DraftIssue(
                trade=trade,
                priority=priority,
                location=location,
                title=title,
                description=make_description(seg, trade, location, title, names),
                confidence=round(max(0.05, min(0.99, confidence * factor)), 2),
                suggested_vendor=suggest_vendor(trade, request.community, seg.text,
                                                request.vendors, examples),
                emergency_reason=reason,
            ))
        if whole_reasons and not any(d.priority == "emergency" for d in drafts):
            self._place_missed_emergency(drafts, issues, whole_reasons[0], request)
        # With no issue found (thanks, a question, "here is the photo you asked for") the
        # photos stay on the request, shown to no draft.
        if drafts:
            for photo, index in zip(photos, photo_index, strict=True):
                drafts[index].photos.append(photo)
        order = sorted(range(len(drafts)), key=lambda i: drafts[i].priority != "emergency")
        drafts = [drafts[i] for i in order]
        notes = [*source_note]
        if not drafts:
            notes.append("no issue found: the mail reads as thanks, a question or an update")
        return DraftResult(issues=drafts, engine=self.engine, language=detect_language(text),
                           notes=notes)

    @staticmethod
    def _trade(classifier: TradeClassifier, text: str) -> tuple[str, float]:
        # Staff decisions on similar text come first: they are this company's conventions.
        nearest = classifier.nearest_feedback(text)
        if nearest is not None:
            return nearest[0], max(0.6, nearest[1])
        for pattern, trade in _CONVENTIONS:
            if pattern.search(text):
                return trade, 0.9
        first = next((s for s in _sentences(text) if _reports_defect(s)), text)
        thing = _problem_thing(first)
        probs = classifier.probabilities(f"{thing} {thing} {first} {text}")
        trade = max(probs, key=lambda t: probs[t])
        return trade, probs[trade]

    def _merge_run_ons(self, classifier: TradeClassifier,
                       issues: list[Segment]) -> list[Segment]:
        """Join an "and the ..." piece back to the issue before it when it names the same
        trade in the same place ("the fan blows warm air, and the unit outside is off")."""
        merged: list[Segment] = []
        for seg in issues:
            if merged and seg.run_on:
                prev = merged[-1]
                here, there = (find_location(_strip_item_lead(s.text)) for s in (seg, prev))
                same_place = (here is None or there is None or here == there
                              or here in _GENERIC_LOCATIONS or there in _GENERIC_LOCATIONS)
                if same_place and (self._trade(classifier, seg.text)[0]
                                   == self._trade(classifier, prev.text)[0]):
                    prev.text += " " + seg.text
                    prev.sentences += seg.sentences
                    continue
            merged.append(seg)
        return merged

    @staticmethod
    def _place_missed_emergency(drafts: list[DraftIssue], issues: list[Segment], reason: str,
                                request: DraftRequest) -> None:
        """Mark the issue an emergency found in the whole mail belongs to."""
        want = _EMERGENCY_TRADES.get(reason, "plumbing")
        target = next((i for i, d in enumerate(drafts) if d.trade == want), 0)
        if drafts:
            drafts[target].priority = "emergency"
            drafts[target].emergency_reason = reason


_THING_END = _rx(
    r"\b(?:by|near|next to|beside|in|on|at|above|below|under|underneath|over|behind|from|"
    r"inside|outside|off|is|are|was|were|has|have|had|keeps?|won'?t|wont|doesn'?t|doesnt|"
    r"does|did|didn'?t|isn'?t|can'?t|will|that|which|when|where|and|but|del|de la|en|est[aá]|"
    r"no|se)\b"
)


def _problem_thing(sentence: str) -> str:
    """The words naming the thing at fault, before where it is and what it does:
    "the outlet" in "the outlet by the garage door quit working".  Repeated in the text
    the classifier reads so the thing outweighs the room or landmark named after it."""
    text = _SUBJECT_FILLER.sub("", _strip_title_lead(_strip_item_lead(sentence)))
    ends = [m.start() for m in (_THING_END.search(text), _DEFECT.search(text)) if m]
    thing = text[: min(ends)] if ends else text
    thing = thing.rsplit(",", 1)[-1].strip()
    return thing if 0 < len(thing.split()) <= 5 else ""


def _is_image(photo: Photo) -> bool:
    return photo.content_type.lower().startswith("image/") or bool(
        re.search(r"\.(?:jpe?g|png|gif|heic|webp)$", photo.filename, re.IGNORECASE)
    )


def write_base_model(path: Path = MODEL_PATH) -> TradeModel:
    """Fit the base model on the phrase file and save it where the package ships it."""
    base = _base_phrases()
    model = fit_trade_model([t for t, _ in base], [label for _, label in base],
                            [1.0] * len(base))
    model.save(path, base_model_key())
    return model


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["--write-model"]:
        sys.exit("usage: python -m warrantyd.daemon.drafters.offline --write-model\n"
                 "  refits the shipped trade model after data/trade_phrases.tsv changed")
    write_base_model()
    print(f"wrote {MODEL_PATH}")
