"""Reading the receiving server's Authentication-Results verdict (RFC 8601).

Only the topmost header stamped by *our* receiving server (its authserv-id) is trusted: any
Authentication-Results further down, or with another authserv-id, may have been written by
the sender to look authenticated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from warrantyd.parsers.message import ParsedMessage

_RESULT = re.compile(r"\b(dmarc|dkim|spf)\s*=\s*([a-z]+)([^;]*)", re.IGNORECASE)
_DKIM_DOMAIN = re.compile(r"header\.(?:d|i)\s*=\s*@?([^\s;]+)", re.IGNORECASE)


@dataclass(frozen=True)
class AuthVerdict:
    passed: bool
    reason: str


def _aligned(domain: str, from_domain: str) -> bool:
    domain, from_domain = domain.lower().rstrip("."), from_domain.lower().rstrip(".")
    return from_domain == domain or from_domain.endswith("." + domain) or domain.endswith(
        "." + from_domain)


def authentication_verdict(msg: ParsedMessage, trusted_authserv_id: str) -> AuthVerdict:
    """Did our own receiving server see DMARC pass, or a DKIM pass aligned with From?"""
    if not msg.from_addr:
        return AuthVerdict(False, "no From address to authenticate")
    from_domain = msg.from_addr.rpartition("@")[2]
    for header in msg.header_all("Authentication-Results"):
        authserv = header.split(";", 1)[0].strip().split()[0] if header.strip() else ""
        if authserv.lower() != trusted_authserv_id.lower():
            continue
        results = _RESULT.findall(header)
        for method, result, _props in results:
            if method.lower() == "dmarc" and result.lower() == "pass":
                return AuthVerdict(True, f"Authentication-Results from {authserv}: dmarc=pass")
        for method, result, props in results:
            if method.lower() == "dkim" and result.lower() == "pass":
                found = _DKIM_DOMAIN.search(props)
                if found and _aligned(found.group(1).rpartition("@")[2], from_domain):
                    return AuthVerdict(True, f"Authentication-Results from {authserv}: "
                                             f"dkim=pass aligned with {from_domain}")
        summary = ", ".join(f"{m.lower()}={r.lower()}" for m, r, _ in results) or "no results"
        return AuthVerdict(False, f"Authentication-Results from {authserv}: {summary} "
                                  f"(neither DMARC pass nor aligned DKIM pass)")
    return AuthVerdict(False, f"no Authentication-Results from the trusted server "
                              f"{trusted_authserv_id!r}")
