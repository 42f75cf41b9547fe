"""OAuth 2.0 access tokens for XOAUTH2 logins (Gmail, Microsoft 365).

warrantyd does not run an OAuth flow itself: providers differ, and the refresh token is a
long-lived secret that belongs to a tool the operator already trusts.  Instead the operator
names a *source* of short-lived access tokens:

* ``oauth_token_command`` — a command whose standard output is the token, run again shortly
  before the token expires (e.g. ``oauth2l fetch --output_format bare ...`` or a small script
  around the provider's refresh endpoint);
* ``oauth_token_file`` — a file some other process keeps fresh (re-read when it changes).

Either may print a bare token or a JSON object with ``access_token`` and ``expires_in``
(seconds) or ``expires_at`` (Unix time), as the providers' token endpoints answer.  The token
is cached until a margin before it expires, and thrown away when the server refuses it, so a
token revoked early costs one failed login, not an outage.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("warrantyd.oauth")

DEFAULT_LIFETIME_SECONDS = 50 * 60.0
"""How long a token without a stated lifetime is trusted (providers issue 60-minute tokens)."""

REFRESH_MARGIN_SECONDS = 5 * 60.0
"""Fetch a new token this long before the old one expires, so a login never races expiry."""

COMMAND_TIMEOUT_SECONDS = 60.0


class TokenError(Exception):
    """No usable access token could be had; the message says what the operator should fix."""


@dataclass(frozen=True)
class AccessToken:
    value: str
    expires_at: float
    """On the provider's ``clock`` (monotonic by default)."""


def xoauth2_initial_response(user: str, token: str) -> str:
    """The base64 SASL XOAUTH2 initial client response for ``user`` with ``token``."""
    raw = f"user={user}\x01auth=Bearer {token}\x01\x01".encode()
    return base64.b64encode(raw).decode("ascii")


def describe_xoauth2_challenge(challenge: bytes | str) -> str:
    """Readable text for the error challenge a server sends when it refuses a token.

    Gmail and Microsoft send base64 JSON like ``{"status":"401","schemes":"Bearer",
    "scope":"https://mail.google.com/"}``; anything else is shown as it came.
    """
    text = challenge.decode("ascii", "replace") if isinstance(challenge, bytes) else challenge
    text = text.strip()
    try:
        decoded = base64.b64decode(text, validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return text
    try:
        data = json.loads(decoded)
    except ValueError:
        return decoded
    if not isinstance(data, dict):
        return decoded
    parts = [f"status {data['status']}" if "status" in data else ""]
    if data.get("scope"):
        parts.append(f"scope {data['scope']}")
    return ", ".join(p for p in parts if p) or decoded


def parse_token_text(text: str, *, now: float, source: str) -> AccessToken:
    """A token from what a command printed or a file holds: bare, or the provider's JSON."""
    text = text.strip()
    if not text:
        raise TokenError(f"{source} gave no access token (empty output)")
    lifetime = DEFAULT_LIFETIME_SECONDS
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise TokenError(f"{source} printed JSON that cannot be read: {exc}") from None
        value = data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(value, str) or not value:
            raise TokenError(f"{source} printed JSON without an \"access_token\" string")
        if isinstance(data.get("expires_in"), int | float):
            lifetime = float(data["expires_in"])
        elif isinstance(data.get("expires_at"), int | float):
            lifetime = float(data["expires_at"]) - time.time()
        text = value
    if any(ch.isspace() for ch in text) or not text.isascii():
        raise TokenError(f"{source} gave something that is not an access token (it contains "
                         "spaces or non-ASCII); print only the token, or the provider's JSON")
    return AccessToken(text, now + lifetime)


class TokenProvider:
    """Hands out a cached access token, fetching a new one when needed.

    One provider per login (IMAP and SMTP each have theirs).  Concurrent callers share one
    fetch.  ``clock`` is monotonic seconds; tests pass a fake one.
    """

    def __init__(self, *, command: str = "", file: Path | str | None = None,
                 refresh_margin: float = REFRESH_MARGIN_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if bool(command) == bool(file):
            raise ValueError("give exactly one of command and file")
        self.command = command
        self.file = Path(file) if file else None
        self.refresh_margin = refresh_margin
        self.clock = clock
        self._cached: AccessToken | None = None
        self._file_mtime: float | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0

    @property
    def source(self) -> str:
        return f"oauth_token_command {self.command!r}" if self.command else \
            f"oauth_token_file {self.file}"

    def invalidate(self) -> None:
        """The server refused the token: the next :meth:`token` fetches a new one."""
        if self._cached is not None:
            log.info("access token from %s was refused; fetching a new one next time",
                     self.source)
        self._cached = None

    async def token(self) -> str:
        """A token that is valid for at least ``refresh_margin`` more seconds."""
        async with self._lock:
            if self._cached is not None and not self._stale():
                return self._cached.value
            self._cached = await self._fetch()
            self.fetches += 1
            return self._cached.value

    def _stale(self) -> bool:
        assert self._cached is not None
        if self.clock() >= self._cached.expires_at - self.refresh_margin:
            return True
        return self.file is not None and self._mtime() != self._file_mtime

    def _mtime(self) -> float | None:
        assert self.file is not None
        try:
            return self.file.stat().st_mtime
        except OSError:
            return None

    async def _fetch(self) -> AccessToken:
        if self.file is not None:
            self._file_mtime = self._mtime()
            try:
                text = await asyncio.to_thread(self.file.read_text, encoding="utf-8")
            except OSError as exc:
                raise TokenError(f"cannot read {self.source}: {exc.strerror or exc}; check the "
                                 "path and that the daemon's user may read it") from None
            return parse_token_text(text, now=self.clock(), source=self.source)
        return await self._run_command()

    async def _run_command(self) -> AccessToken:
        try:
            argv = shlex.split(self.command)
        except ValueError as exc:
            raise TokenError(f"{self.source} cannot be split into words: {exc}") from None
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env=os.environ.copy())
        except OSError as exc:
            raise TokenError(f"cannot run {self.source}: {exc.strerror or exc}") from None
        try:
            out, err = await asyncio.wait_for(proc.communicate(), COMMAND_TIMEOUT_SECONDS)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise TokenError(f"{self.source} did not finish within "
                             f"{COMMAND_TIMEOUT_SECONDS:g} s") from None
        if proc.returncode != 0:
            last = (err.decode("utf-8", "replace").strip().splitlines() or [""])[-1]
            raise TokenError(f"{self.source} failed with exit code {proc.returncode}"
                             f"{': ' + last if last else ''}")
        return parse_token_text(out.decode("utf-8", "replace"), now=self.clock(),
                                source=self.source)


def provider_for(command: str, file: Path | str | None) -> TokenProvider | None:
    """A provider for the configured source, or None when the login uses a password."""
    if not command and not file:
        return None
    return TokenProvider(command=command, file=file)
