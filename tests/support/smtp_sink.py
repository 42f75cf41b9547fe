"""An SMTP server for tests that keeps every mail it is given (aiosmtpd).

In-process use::

    with SmtpSink() as sink:            # 127.0.0.1, a free port
        ...send to sink.port...
        sink.messages[0].message["Subject"]
        sink.reject("vendor@example.com", "451 4.3.0 Try again later", times=1)
        sink.stop(); sink.start()        # "down for a while", same port

It can close connections after a number of mails (``messages_per_connection``), require
AUTH (``users={"name": "password"}``) and offer STARTTLS or implicit TLS with a self-signed
certificate (``tls="starttls"`` / ``tls="implicit"``; the client trusts
``sink.client_tls_context()``).

As a process, for end-to-end tests that start and stop it by PID::

    python smtp_sink.py --port 2525 --maildir DIR

Each mail is delivered into the Maildir ``DIR`` (new/), unchanged, and its envelope is
appended as one JSON line to ``DIR/envelopes.jsonl``.  ``READY <port>`` is printed once the
server accepts connections; SIGTERM or SIGINT stop it.
"""

from __future__ import annotations

import argparse
import email
import email.parser
import email.policy
import json
import mailbox
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from functools import cached_property
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class ReceivedMessage:
    """One mail as the sink got it: envelope and the exact bytes, plus a parsed view.

    The parsed views are made when first asked for, not as the mail arrives: a benchmark
    receiving hundreds of mails spent a third of a core parsing them in the sink, beside the
    daemon it measures."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    peer: str = ""
    """The client's host:port: mails over one connection share it."""

    @cached_property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    @cached_property
    def headers(self) -> EmailMessage:
        """The header block alone (the body is not parsed): enough to read a header."""
        parsed = _HEADER_PARSER.parsebytes(self.raw, headersonly=True)
        assert isinstance(parsed, EmailMessage)
        return parsed

    @property
    def message_id(self) -> str:
        return str(self.headers.get("Message-ID", "")).strip().strip("<>")


_HEADER_PARSER = email.parser.BytesParser(policy=email.policy.default)


def self_signed_cert(directory: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """Write a throwaway certificate and key for ``host`` (needs the openssl command)."""
    cert, key = directory / "sink-cert.pem", directory / "sink-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", f"subjectAltName=IP:{host},DNS:localhost"],
        check=True, capture_output=True)
    return cert, key


class _Handler:
    """The aiosmtpd handler; runs in the controller's thread, so the sink's lock guards state."""

    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        limit = self.sink.messages_per_connection
        if limit is not None and getattr(session, "sink_delivered", 0) >= limit:
            # RFC 5321 421: the server closes the transmission channel; the client must too.
            return "421 4.7.0 sink.test closing connection, too many messages"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        answer = self.sink._answer_for(address)
        if answer is not None:
            return answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        if isinstance(envelope.content, bytes) and not raw:
            raw = envelope.content
        session.sink_delivered = getattr(session, "sink_delivered", 0) + 1  # type: ignore[attr-defined]
        peer = session.peer
        peer_text = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer or "")
        self.sink._record(envelope.mail_from or "", tuple(envelope.rcpt_tos), raw, peer_text)
        return "250 2.0.0 Message accepted for delivery"


class SmtpSink:
    """A recording SMTP server on loopback that can be stopped and restarted on one port."""

    def __init__(self, *, host: str = "127.0.0.1", port: int | None = None,
                 users: dict[str, str] | None = None, tls: str | None = None,
                 cert_dir: Path | None = None, messages_per_connection: int | None = None,
                 on_message: Callable[[ReceivedMessage], None] | None = None) -> None:
        if tls not in (None, "starttls", "implicit"):
            raise ValueError(f"tls must be None, 'starttls' or 'implicit', not {tls!r}")
        self.host = host
        self.port = port or free_port(host)
        self.users = dict(users or {})
        self.tls = tls
        self.on_message = on_message
        self.messages_per_connection = messages_per_connection
        """After this many mails on one connection, answer MAIL with 421 (server closing)."""
        self.messages: list[ReceivedMessage] = []
        self.auth_attempts: list[tuple[str, bool]] = []
        self._rejections: dict[str, list[Any]] = {}
        self._lock = threading.Lock()
        self._controller: Controller | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.cert_path: Path | None = None
        if tls:
            if cert_dir is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="smtp-sink-")
                cert_dir = Path(self._tmp.name)
            self.cert_path, self.key_path = self_signed_cert(cert_dir, host)

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> SmtpSink:
        if self._controller is not None:
            return self
        kwargs: dict[str, Any] = {}
        if self.users:
            kwargs.update(authenticator=self._authenticate, auth_required=True,
                          # aiosmtpd only counts STARTTLS as TLS; implicit TLS is TLS anyway.
                          auth_require_tls=self.tls == "starttls")
        server_ctx = None
        if self.tls:
            server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            server_ctx.load_cert_chain(str(self.cert_path), str(self.key_path))
        if self.tls == "starttls":
            kwargs.update(tls_context=server_ctx, require_starttls=True)
        # A new controller each time: a stopped one has closed its event loop.
        controller = Controller(
            _Handler(self), hostname=self.host, port=self.port,
            ssl_context=server_ctx if self.tls == "implicit" else None,
            server_hostname="sink.test", **kwargs)
        controller.start()
        self._controller = controller
        return self

    def stop(self) -> None:
        """Stop listening and drop open connections (the port stays ours to restart on)."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def running(self) -> bool:
        return self._controller is not None

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def client_tls_context(self) -> ssl.SSLContext:
        """A client context that trusts this sink's self-signed certificate."""
        if self.cert_path is None:
            raise RuntimeError("this sink was started without TLS")
        return ssl.create_default_context(cafile=str(self.cert_path))

    # -- behaviour --------------------------------------------------------------------------

    def reject(self, address: str, reply: str, *, times: int | None = None) -> None:
        """Answer RCPT TO ``address`` with ``reply`` (e.g. "550 5.1.1 No such user"),
        for the next ``times`` attempts or until :meth:`accept`."""
        if not reply[:3].isdigit() or reply[0] not in "45":
            raise ValueError(f"reply must start with a 4xx or 5xx code, not {reply!r}")
        with self._lock:
            self._rejections[address.lower()] = [reply, times]

    def accept(self, address: str) -> None:
        with self._lock:
            self._rejections.pop(address.lower(), None)

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()

    # -- reading ----------------------------------------------------------------------------

    def received_by(self, address: str) -> list[ReceivedMessage]:
        with self._lock:
            return [m for m in self.messages
                    if address.lower() in (r.lower() for r in m.rcpt_tos)]

    def by_message_id(self, message_id: str) -> list[ReceivedMessage]:
        message_id = message_id.strip().strip("<>")
        with self._lock:
            return [m for m in self.messages if m.message_id == message_id]

    def __iter__(self) -> Iterator[ReceivedMessage]:
        with self._lock:
            return iter(list(self.messages))

    def __len__(self) -> int:
        with self._lock:
            return len(self.messages)

    # -- called from the server thread ------------------------------------------------------

    def _answer_for(self, address: str) -> str | None:
        with self._lock:
            rule = self._rejections.get(address.lower())
            if rule is None:
                return None
            reply, times = rule
            if times is not None:
                if times <= 0:
                    del self._rejections[address.lower()]
                    return None
                rule[1] = times - 1
            return str(reply)

    def _record(self, mail_from: str, rcpt_tos: tuple[str, ...], raw: bytes,
                peer: str = "") -> None:
        received = ReceivedMessage(mail_from=mail_from, rcpt_tos=rcpt_tos, raw=raw, peer=peer)
        with self._lock:
            self.messages.append(received)
        if self.on_message is not None:
            self.on_message(received)

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope,
                      mechanism: str, auth_data: Any) -> AuthResult:
        ok = False
        login = ""
        if isinstance(auth_data, LoginPassword):
            login = auth_data.login.decode("utf-8", "replace")
            password = auth_data.password.decode("utf-8", "replace")
            ok = login in self.users and self.users[login] == password
        with self._lock:
            self.auth_attempts.append((login, ok))
        if ok:
            return AuthResult(success=True)
        # handled=False makes aiosmtpd answer 535 itself; the default leaves the client waiting.
        return AuthResult(success=False, handled=False)


# --- as a process ---------------------------------------------------------------------------

def _deliver_to_maildir(directory: Path) -> Callable[[ReceivedMessage], None]:
    box = mailbox.Maildir(str(directory), create=True)
    log_path = directory / "envelopes.jsonl"
    lock = threading.Lock()

    def deliver(received: ReceivedMessage) -> None:
        with lock:
            key = box.add(received.raw)
            with log_path.open("a", encoding="utf-8") as log:
                log.write(json.dumps({"file": f"new/{key}", "mail_from": received.mail_from,
                                      "rcpt_tos": list(received.rcpt_tos),
                                      "message_id": received.message_id}) + "\n")

    return deliver


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A recording SMTP sink for tests.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--maildir", type=Path, required=True,
                        help="Maildir to deliver every received mail into")
    parser.add_argument("--reject", action="append", default=[], metavar="ADDR=REPLY",
                        help='answer RCPT TO ADDR with REPLY, e.g. "x@y.example=550 No such user"')
    parser.add_argument("--user", action="append", default=[], metavar="NAME:PASSWORD",
                        help="require AUTH with these credentials")
    parser.add_argument("--tls", choices=["starttls", "implicit"], default=None)
    args = parser.parse_args(argv)

    users = dict(u.split(":", 1) for u in args.user)
    sink = SmtpSink(host=args.host, port=args.port, users=users, tls=args.tls,
                    cert_dir=args.maildir if args.tls else None,
                    on_message=_deliver_to_maildir(args.maildir))
    for rule in args.reject:
        address, _, reply = rule.partition("=")
        sink.reject(address, reply)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    sink.start()
    print(f"READY {sink.port}", flush=True)
    try:
        stopped.wait()
    finally:
        sink.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
