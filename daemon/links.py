"""Signed, expiring links to a vendor's read-only work-order page.

A vendor has no account and no password: the link itself is the permission.  So the link
carries everything the page needs to decide who may see what — the work order, the vendor it
was sent to, and when it stops working — inside one value signed with the installation's
secret (itsdangerous, under a salt of its own so a link can never pass for a reply token or
the other way round).  No database id appears in the URL outside that signed value, so
nothing in it can be guessed or counted up.

Checking a link tells apart the two ways it can fail, because the page says different
things: a *tampered* link (403: made up or altered) and an *expired* one (410: it was ours,
reply to the email for a fresh one).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from itsdangerous import BadSignature, URLSafeSerializer

LINK_SALT = "warrantyd.vendor-work-order-page"
LINK_DAYS = 45
"""How long a vendor link works: long enough for a job that waits on parts, short enough
that a forwarded mail does not open the homeowner's details forever."""


class LinkInvalid(Exception):
    """The link was not signed by us (made up, altered or cut short)."""


class LinkExpired(Exception):
    """The link was ours but its time is over."""

    def __init__(self, grant: LinkGrant) -> None:
        self.grant = grant
        super().__init__(f"link for work order {grant.work_order_id} expired on "
                         f"{grant.expires_at:%Y-%m-%d}")


@dataclass(frozen=True)
class LinkGrant:
    """What a valid link allows: one vendor looking at one work order, until a time."""

    work_order_id: int
    vendor_id: int
    expires_at: datetime


def _serializer(secret: bytes | str) -> URLSafeSerializer:
    return URLSafeSerializer(secret, salt=LINK_SALT)


def make_link_token(secret: bytes | str, *, work_order_id: int, vendor_id: int,
                    now: datetime, days: float = LINK_DAYS) -> str:
    """The signed value that goes in the URL path."""
    expires = int((now + timedelta(days=days)).timestamp())
    return str(_serializer(secret).dumps({"w": work_order_id, "v": vendor_id, "e": expires}))


def read_link_token(secret: bytes | str, token: str, *, now: datetime) -> LinkGrant:
    """The grant of a link; raises :class:`LinkInvalid` or :class:`LinkExpired`."""
    try:
        data = _serializer(secret).loads(token)
    except BadSignature:
        raise LinkInvalid("link signature does not match") from None
    if not (isinstance(data, dict) and all(isinstance(data.get(k), int) for k in "wve")):
        raise LinkInvalid("link content is not a work-order grant")
    grant = LinkGrant(work_order_id=data["w"], vendor_id=data["v"],
                      expires_at=datetime.fromtimestamp(data["e"], UTC))
    if grant.expires_at <= now:
        raise LinkExpired(grant)
    return grant


def page_url(base_url: str, token: str) -> str:
    """The details page of a link token."""
    return f"{base_url.rstrip('/')}/v/{token}"


def photo_url(base_url: str, token: str, number: int) -> str:
    """The ``number``-th (1-based) photo of the work order, served under the same token."""
    return f"{page_url(base_url, token)}/photo/{number}"
