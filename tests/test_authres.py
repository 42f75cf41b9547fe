"""Authentication-Results: only our server's own verdict, read the way RFC 8601 writes it."""

from __future__ import annotations

import pytest

from warrantyd.parsers.authres import aligned, authentication_verdict, strip_comments
from warrantyd.parsers.message import parse_message

OURS = "mx.acme-homes.example"


def verdict(*headers: str, sender: str = "pat@acme-homes.example") -> bool:
    lines = "".join(f"Authentication-Results: {h}\n" for h in headers)
    raw = f"{lines}From: {sender}\nTo: w@acme-homes.example\nSubject: x\n\nbody\n".encode()
    return authentication_verdict(parse_message(raw), OURS).passed


def test_dmarc_pass_from_our_server() -> None:
    assert verdict(f"{OURS}; spf=pass smtp.mailfrom=acme-homes.example; dkim=pass "
                   f"header.d=acme-homes.example; dmarc=pass header.from=acme-homes.example")


def test_aligned_dkim_pass_is_enough() -> None:
    assert verdict(f"{OURS}; dkim=pass header.d=mail.acme-homes.example; dmarc=none")
    assert verdict(f"{OURS}; dkim=pass header.i=@acme-homes.example; dmarc=none")


@pytest.mark.parametrize("header", [
    # a pass smuggled into a quoted envelope address
    f'{OURS}; spf=pass smtp.mailfrom="x;dmarc=pass"@evil.example; dkim=none; dmarc=fail',
    # a pass inside a comment
    f"{OURS}; dmarc=fail (p=reject dis=none; dmarc=pass) header.from=acme-homes.example",
    # DMARC passed for another domain
    f"{OURS}; dmarc=pass header.from=evil.example",
    # DKIM by an unrelated domain, by a bare TLD, by a public suffix
    f"{OURS}; dkim=pass header.d=evil.example; dmarc=fail",
    f"{OURS}; dkim=pass header.d=example; dmarc=fail",
    f"{OURS}; dkim=pass header.d=co.uk; dmarc=fail",
    # somebody else's server
    "mx.acme-homes.example.evil.example; dmarc=pass header.from=acme-homes.example",
])
def test_forged_or_unrelated_passes_are_refused(header: str) -> None:
    assert not verdict(header)


def test_a_forged_pass_below_ours_does_not_count() -> None:
    assert not verdict(f"{OURS}; dmarc=fail header.from=acme-homes.example",
                       f"{OURS}; dmarc=pass header.from=acme-homes.example")


def test_strip_comments_handles_nesting_and_quotes() -> None:
    assert strip_comments('a (b (c) d) "q;x" e') == 'a  "" e'


def test_alignment_uses_the_organisational_domain() -> None:
    assert aligned("acme-homes.example", "mail.acme-homes.example")
    assert aligned("bounce.shop.co.uk", "shop.co.uk")
    assert not aligned("other.co.uk", "shop.co.uk")
