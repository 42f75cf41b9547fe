"""XOAUTH2: token sources, caching and refresh, and the logins over real IMAP/SMTP wire.

The IMAP side runs against a small server that answers AUTHENTICATE XOAUTH2 the way Gmail
and Microsoft 365 do (a refused token gets a base64 JSON error continuation, and the final
NO only after the client's empty answer) — the exchange where aioimaplib alone would hang.
The SMTP side runs aiosmtpd with an XOAUTH2 mechanism that behaves the same way.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiosmtplib
import pytest
from aiosmtpd.smtp import SMTP, AuthResult

from warrantyd.daemon.config import ConfigError, SmtpConfig, parse_config
from warrantyd.daemon.imap import AuthenticationRefused, ImapSession
from warrantyd.daemon.oauth import (
    TokenError,
    TokenProvider,
    describe_xoauth2_challenge,
    parse_token_text,
    xoauth2_initial_response,
)
from warrantyd.daemon.outbox import OutboxSender, _ConnectionDown

USER = "warranty@acme-homes.example"
GOOD = "ya29.good-token"
ERROR_JSON = json.dumps({"status": "401", "schemes": "Bearer",
                         "scope": "https://mail.google.com/"})


def _decode(initial: str) -> tuple[str, str]:
    text = base64.b64decode(initial).decode()
    user = text.split("\x01")[0].removeprefix("user=")
    token = text.split("\x01")[1].removeprefix("auth=Bearer ")
    return user, token


# --- token text and providers ------------------------------------------------------------

def test_token_text_bare_and_provider_json() -> None:
    assert parse_token_text("abc.def\n", now=100.0, source="s").value == "abc.def"
    token = parse_token_text('{"access_token": "t1", "expires_in": 3599, "token_type": "Bearer"}',
                             now=100.0, source="s")
    assert (token.value, token.expires_at) == ("t1", 3699.0)
    for bad in ("", "two words", '{"expires_in": 3}', "{not json"):
        with pytest.raises(TokenError):
            parse_token_text(bad, now=0.0, source="s")


def test_xoauth2_strings() -> None:
    assert _decode(xoauth2_initial_response(USER, GOOD)) == (USER, GOOD)
    challenge = base64.b64encode(ERROR_JSON.encode())
    assert describe_xoauth2_challenge(challenge) == "status 401, scope https://mail.google.com/"


async def test_command_token_is_cached_and_refreshed_before_expiry(tmp_path: Path) -> None:
    counter = tmp_path / "count"
    script = tmp_path / "get-token.py"
    script.write_text(f"import json, pathlib\np = pathlib.Path({str(counter)!r})\n"
                      "n = int(p.read_text()) + 1 if p.exists() else 1\np.write_text(str(n))\n"
                      "print(json.dumps({'access_token': f'tok{n}', 'expires_in': 3600}))\n")
    now = [0.0]
    provider = TokenProvider(command=f"{sys.executable} {script}", clock=lambda: now[0])
    assert await provider.token() == "tok1"
    now[0] = 3000.0  # 10 minutes left: still more than the 5-minute margin
    assert await provider.token() == "tok1"
    now[0] = 3400.0  # inside the margin: fetched again before it expires
    assert await provider.token() == "tok2"
    provider.invalidate()  # the server refused it
    assert await provider.token() == "tok3"
    assert provider.fetches == 3


async def test_failing_command_says_why() -> None:
    provider = TokenProvider(
        command=f"{sys.executable} -c \"import sys; sys.exit('refresh token revoked')\"")
    with pytest.raises(TokenError, match="exit code 1: refresh token revoked"):
        await provider.token()


async def test_file_token_is_reread_when_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("first\n")
    provider = TokenProvider(file=path)
    assert await provider.token() == "first"
    path.write_text("second\n")
    import os

    os.utime(path, (1_000_000_000, 1_000_000_000))
    assert await provider.token() == "second"
    with pytest.raises(TokenError, match="cannot read"):
        await TokenProvider(file=tmp_path / "missing").token()


def test_config_keys(tmp_path: Path) -> None:
    base = {"company": {"name": "Acme"}, "database": {"url": "sqlite:///x.db"},
            "staff": {"addresses": ["pat@acme-homes.example"]},
            "mailbox": {"address": USER, "imap_host": "imap.gmail.com", "imap_user": USER,
                        "auth": "xoauth2", "oauth_token_file": "tok"},
            "smtp": {"host": "smtp.gmail.com", "user": USER, "auth": "xoauth2",
                     "oauth_token_command": "get-token --smtp"}}
    config = parse_config(base, path=tmp_path / "config.toml")
    assert config.mailbox.auth == "xoauth2"
    assert config.mailbox.oauth_token_file == str(tmp_path / "tok")
    assert config.smtp.oauth_token_command == "get-token --smtp"
    base["smtp"] = {**base["smtp"], "oauth_token_command": ""}
    with pytest.raises(ConfigError, match=r"\[smtp\]\.auth: \"xoauth2\" needs exactly one"):
        parse_config(base, path=tmp_path / "config.toml")


# --- IMAP: a server that behaves like Gmail on AUTHENTICATE XOAUTH2 ------------------------

class XoauthImapServer:
    """Just enough IMAP for a login: greeting, CAPABILITY, AUTHENTICATE XOAUTH2, LOGOUT."""

    def __init__(self, *, sasl_ir: bool) -> None:
        self.sasl_ir = sasl_ir
        self.port = 0
        self.logins: list[tuple[str, str]] = []
        self._server: asyncio.base_events.Server | None = None

    def caps(self) -> str:
        return "IMAP4rev1 AUTH=XOAUTH2" + (" SASL-IR" if self.sasl_ir else "")

    async def __aenter__(self) -> XoauthImapServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def send(line: str) -> None:
            writer.write(line.encode() + b"\r\n")

        send(f"* OK [CAPABILITY {self.caps()}] fake ready")
        logged_in = False
        try:
            while line := (await reader.readline()).decode().strip():
                tag, _, rest = line.partition(" ")
                verb, _, args = rest.partition(" ")
                verb = verb.upper()
                if verb == "CAPABILITY":
                    send(f"* CAPABILITY {self.caps()}{' IDLE' if logged_in else ''}")
                    send(f"{tag} OK CAPABILITY completed")
                elif verb == "AUTHENTICATE":
                    parts = args.split()
                    if len(parts) > 1:
                        initial = parts[1]
                    else:
                        send("+ ")
                        initial = (await reader.readline()).decode().strip()
                    user, token = _decode(initial)
                    self.logins.append((user, token))
                    if token == GOOD:
                        logged_in = True
                        send(f"{tag} OK authenticated")
                    else:
                        send("+ " + base64.b64encode(ERROR_JSON.encode()).decode())
                        await reader.readline()  # the client's empty answer
                        send(f"{tag} NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)")
                elif verb == "LOGOUT":
                    send("* BYE bye")
                    send(f"{tag} OK LOGOUT completed")
                    break
                else:
                    send(f"{tag} BAD unknown")
                await writer.drain()
        finally:
            writer.close()


@pytest.fixture(params=[True, False], ids=["sasl-ir", "no-sasl-ir"])
async def imap_server(request: pytest.FixtureRequest) -> AsyncIterator[XoauthImapServer]:
    async with XoauthImapServer(sasl_ir=request.param) as server:
        yield server


async def test_imap_xoauth2_good_token(imap_server: XoauthImapServer) -> None:
    session = await ImapSession.connect("127.0.0.1", imap_server.port, "none", timeout=5)
    try:
        await session.authenticate_xoauth2(USER, GOOD)
        assert session.has("IDLE"), "capabilities are read again after login"
    finally:
        await session.logout()
    assert imap_server.logins == [(USER, GOOD)]


async def test_imap_xoauth2_bad_token_is_a_prompt_clear_error(
        imap_server: XoauthImapServer) -> None:
    session = await ImapSession.connect("127.0.0.1", imap_server.port, "none", timeout=20)
    try:
        with pytest.raises(AuthenticationRefused) as caught:
            # Far below the 20 s command timeout: the error continuation was answered.
            await asyncio.wait_for(session.authenticate_xoauth2(USER, "bad-token-123"), 5)
    finally:
        await session.logout()
    text = str(caught.value)
    assert "Invalid credentials" in text and "status 401" in text and "bad-token-123" not in text


# --- SMTP: aiosmtpd with an XOAUTH2 mechanism ---------------------------------------------

class XoauthSmtpHandler:
    def __init__(self) -> None:
        self.tokens: list[str] = []
        self.mails: list[bytes] = []

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        _, token = _decode(args[1])
        self.tokens.append(token)
        if token == GOOD:
            return AuthResult(success=True)
        await server.challenge_auth(ERROR_JSON)  # Gmail's 334 error challenge
        return AuthResult(success=False, handled=False)

    async def handle_DATA(self, server: SMTP, session: object, envelope: object) -> str:
        self.mails.append(envelope.content)  # type: ignore[attr-defined]
        return "250 OK"


@pytest.fixture
async def smtp_server() -> AsyncIterator[tuple[XoauthSmtpHandler, int]]:
    handler = XoauthSmtpHandler()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, auth_require_tls=False, auth_exclude_mechanism=["LOGIN", "PLAIN"]),
        "127.0.0.1", 0)
    yield handler, server.sockets[0].getsockname()[1]
    server.close()


def _sender(port: int, tmp_path: Path, token: str) -> OutboxSender:
    token_file = tmp_path / "smtp-token"
    token_file.write_text(token)
    cfg = SmtpConfig(host="127.0.0.1", port=port, security="none", user=USER, auth="xoauth2",
                     oauth_token_file=str(token_file), timeout_seconds=10)
    return OutboxSender(db=None, smtp=cfg, lease_seconds=3600)  # type: ignore[arg-type]


async def test_smtp_xoauth2_good_token(smtp_server: tuple[XoauthSmtpHandler, int],
                                       tmp_path: Path) -> None:
    handler, port = smtp_server
    client = await _sender(port, tmp_path, GOOD)._connect()
    await client.sendmail(USER, ["dana@example.com"], b"Subject: hi\r\n\r\nhello\r\n")
    await client.quit()
    assert handler.tokens == [GOOD] and len(handler.mails) == 1


async def test_smtp_xoauth2_bad_token_is_refused_and_forgotten(
        smtp_server: tuple[XoauthSmtpHandler, int], tmp_path: Path) -> None:
    handler, port = smtp_server
    sender = _sender(port, tmp_path, "revoked")
    with pytest.raises(_ConnectionDown, match=r"XOAUTH2 login .* refused: 535"):
        await asyncio.wait_for(sender._connect(), 5)
    assert sender.token_provider is not None and sender.token_provider._cached is None
    # The operator's token source now has a good token: the next connect uses it.
    (tmp_path / "smtp-token").write_text(GOOD)
    client = await sender._connect()
    await client.quit()
    assert handler.tokens == ["revoked", GOOD]
    assert isinstance(client, aiosmtplib.SMTP)
