"""Reading the receiving server's Authentication-Results verdict (RFC 8601).

Only the topmost header stamped by *our* receiving server (its authserv-id) is trusted: any
Authentication-Results further down, or with another authserv-id, may have been written by
the sender to look authenticated.  Within that header, comments and quoted strings are
removed before anything is read, and a result counts only as the ``method=result`` that opens
one ``;``-separated part — so a sender who smuggles ``dmarc=pass`` into an envelope address or
a comment gains nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from warrantyd.parsers.message import ParsedMessage

_METHOD = re.compile(r"^\s*([a-z0-9_-]+)\s*=\s*([a-z]+)\b(.*)$", re.IGNORECASE | re.DOTALL)
_PROPERTY = re.compile(r"\b(header\.[a-z]+)\s*=\s*([^\s;]+)", re.IGNORECASE)

# Registrable suffixes of more than one label that are common in mail; a DKIM signature by
# such a suffix (or by a single label) says nothing about who sent the mail.
_MULTI_LABEL_SUFFIXES = frozenset({
    "co.uk", "org.uk", "ac.uk", "gov.uk", "me.uk", "com.au", "net.au", "org.au", "co.nz",
    "co.jp", "ne.jp", "or.jp", "com.br", "com.mx", "com.ar", "co.za", "co.in", "com.cn",
    "com.tw", "com.hk", "com.sg", "co.kr", "com.tr", "co.il", "com.es", "com.pl",
})


@dataclass(frozen=True)
class AuthVerdict:
    passed: bool
    reason: str


@dataclass(frozen=True)
class MethodResult:
    method: str
    result: str
    properties: dict[str, str]


def strip_comments(value: str) -> str:
    """``value`` without (nested) comments and with quoted strings emptied (RFC 5322 CFWS)."""
    out: list[str] = []
    depth = 0
    quoted = False
    escaped = False
    for char in value:
        if escaped:
            escaped = False
            continue
        if char == "\\" and (quoted or depth):
            escaped = True
            continue
        if quoted:
            if char == '"':
                quoted = False
                out.append('"')
            continue
        if char == "(":
            depth += 1
            continue
        if char == ")" and depth:
            depth -= 1
            continue
        if depth:
            continue
        if char == '"':
            quoted = True
            out.append('"')
            continue
        out.append(char)
    return "".join(out)


def parse_authentication_results(value: str) -> tuple[str, list[MethodResult]]:
    """The authserv-id and the method results of one Authentication-Results header."""
    parts = strip_comments(value).split(";")
    authserv = parts[0].split()[0] if parts[0].split() else ""
    results: list[MethodResult] = []
    for part in parts[1:]:
        match = _METHOD.match(part)
        if match is None:
            continue
        method, result, rest = match.groups()
        props = {k.lower(): v.strip('"').lower() for k, v in _PROPERTY.findall(rest)}
        results.append(MethodResult(method.lower(), result.lower(), props))
    return authserv, results


def organizational_domain(domain: str) -> str:
    """An approximation of the registrable domain (no public-suffix list is shipped)."""
    labels = domain.lower().rstrip(".").split(".")
    if len(labels) >= 3 and ".".join(labels[-2:]) in _MULTI_LABEL_SUFFIXES:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def aligned(signing_domain: str, from_domain: str) -> bool:
    """Relaxed alignment (RFC 7489): both domains share an organisational domain."""
    signing = signing_domain.lower().rstrip(".")
    if signing.count(".") < 1 or signing in _MULTI_LABEL_SUFFIXES:
        return False
    return organizational_domain(signing) == organizational_domain(from_domain)


def authentication_verdict(msg: ParsedMessage, trusted_authserv_id: str) -> AuthVerdict:
    """Did our own receiving server see DMARC pass, or a DKIM pass aligned with From?"""
    if not msg.from_addr:
        return AuthVerdict(False, "no From address to authenticate")
    from_domain = msg.from_addr.rpartition("@")[2]
    for header in msg.header_all("Authentication-Results"):
        authserv, results = parse_authentication_results(header)
        if authserv.lower() != trusted_authserv_id.lower():
            continue
        for r in results:
            if r.method == "dmarc" and r.result == "pass":
                checked = r.properties.get("header.from")
                if checked is None or checked == from_domain:
                    return AuthVerdict(True, f"Authentication-Results from {authserv}: "
                                             f"dmarc=pass for {from_domain}")
        for r in results:
            if r.method == "dkim" and r.result == "pass":
                signer = r.properties.get("header.d") or r.properties.get(
                    "header.i", "").rpartition("@")[2]
                if signer and aligned(signer, from_domain):
                    return AuthVerdict(True, f"Authentication-Results from {authserv}: "
                                             f"dkim=pass by {signer}, aligned with {from_domain}")
        summary = ", ".join(f"{r.method}={r.result}" for r in results) or "no results"
        return AuthVerdict(False, f"Authentication-Results from {authserv}: {summary} (neither "
                                  f"DMARC pass for {from_domain} nor an aligned DKIM pass)")
    return AuthVerdict(False, f"no Authentication-Results from the trusted server "
                              f"{trusted_authserv_id!r}")
