"""Reply tokens: the secret in ``warranty+TOKEN@…`` that says who may answer what.

A token is a random part (unguessable) followed by a truncated HMAC of it under the
installation's secret, so a made-up or altered token is refused before the database is even
asked; the row in ``reply_token`` then says whom it was issued to, for which digest, work
order or service request, and until when.  Tokens are lower case only, because some mail
systems fold the local part of an address.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from warrantyd.storage.models import ReplyToken, Setting, utcnow

SECRET_SETTING = "reply_token_secret"
_SIG_LEN = 10


_KEPT_SECRETS: dict[str, bytes] = {}
"""Secrets read from a database, by its URL: the row never changes once committed."""


def installation_secret(session: Session, env_name: str = "") -> bytes:
    """The HMAC key: from the environment when configured, else one generated and kept."""
    if env_name and os.environ.get(env_name):
        return os.environ[env_name].encode()
    database = session.get_bind().engine.url.render_as_string(hide_password=False)
    if database in _KEPT_SECRETS:
        return _KEPT_SECRETS[database]
    row = session.get(Setting, SECRET_SETTING)
    if row is None:
        # Not remembered: this transaction may still roll back (another process may win).
        row = Setting(key=SECRET_SETTING, value=secrets.token_hex(32))
        session.add(row)
        session.flush()
        return row.value.encode()
    _KEPT_SECRETS[database] = row.value.encode()
    return _KEPT_SECRETS[database]


def _sign(secret: bytes, body: str) -> str:
    return hmac.new(secret, body.encode(), hashlib.sha256).hexdigest()[:_SIG_LEN]


def make_token_string(secret: bytes) -> str:
    body = base64.b32encode(secrets.token_bytes(10)).decode().lower()
    return body + _sign(secret, body)


def token_signature_ok(secret: bytes, token: str) -> bool:
    token = token.lower()
    if len(token) <= _SIG_LEN:
        return False
    body, sig = token[:-_SIG_LEN], token[-_SIG_LEN:]
    return hmac.compare_digest(_sign(secret, body), sig)


def issue_token(session: Session, secret: bytes, *, kind: str, address: str, days: float,
                digest_id: int | None = None, service_request_id: int | None = None,
                work_order_id: int | None = None, now: datetime | None = None) -> ReplyToken:
    now = now or utcnow()
    row = ReplyToken(token=make_token_string(secret), kind=kind, address=address.lower(),
                     digest_id=digest_id, service_request_id=service_request_id,
                     work_order_id=work_order_id, created_at=now,
                     expires_at=now + timedelta(days=days))
    session.add(row)  # inserted with the caller's next flush (a query autoflushes it)
    return row


def find_token(session: Session, secret: bytes, token: str,
               now: datetime | None = None) -> tuple[ReplyToken | None, str]:
    """The token's row and "" when valid; else None and why not."""
    token = token.lower()
    if not token_signature_ok(secret, token):
        return None, "reply token signature does not match (made up or altered)"
    row = session.scalars(select(ReplyToken).where(ReplyToken.token == token)).first()
    if row is None:
        return None, "reply token unknown"
    if row.expires_at is not None and row.expires_at < (now or utcnow()):
        return None, f"reply token expired on {row.expires_at:%Y-%m-%d}"
    return row, ""


def plus_address(our_address: str, token: str) -> str:
    local, _, domain = our_address.partition("@")
    return f"{local}+{token}@{domain}"
