"""A local stand-in for the Anthropic Messages API, for tests.

Tests never call the real API.  They point the real ``anthropic`` SDK at this server through
``base_url``, so the SDK's own request building, retries, timeouts and response parsing run
exactly as in production; only the far end is fake.  The server speaks the wire format the
SDK expects: ``POST /v1/messages`` with ``x-api-key`` or ``Authorization: Bearer`` and an
``anthropic-version`` header, a full Message object back, and errors in Anthropic's error
shape with the status codes and ``retry-after-ms`` header the SDK's retry logic reads.

In-process use (a thread)::

    with FakeAnthropic() as fake:
        fake.enqueue(error_reply(529), tool_reply({"issues": [], "language": "en"}))
        drafter = AnthropicDrafter(api_key=fake.api_key, model="m", base_url=fake.base_url)
        ...
        assert len(fake.requests) == 2

Standalone (so an end-to-end test can start and stop it by PID)::

    python fake_anthropic.py --port 0 [--api-key KEY]

prints ``listening on http://127.0.0.1:PORT`` and serves until SIGTERM/SIGINT.  Another
process scripts it and reads what it received over HTTP: ``POST /_fake/enqueue`` (a JSON
list of replies as made by :func:`tool_reply` / :func:`error_reply`), ``GET /_fake/requests``
and ``POST /_fake/reset``.

Without scripting, :func:`paragraph_responder` answers: one issue per non-empty paragraph of
the homeowner mail, deterministic, so end-to-end runs produce plausible drafts.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_API_KEY = "sk-ant-test-fake-key"
FAKE_MODELS = ("claude-sonnet-5-5", "claude-haiku-5-5", "claude-opus-5-5")

# The status each Anthropic error type comes with.
ERROR_STATUS: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}
ERROR_TYPE_FOR_STATUS: dict[int, str] = {status: kind for kind, status in ERROR_STATUS.items()}


@dataclass
class CannedReply:
    """One scripted answer: an HTTP status, a JSON body and headers, after an optional delay.

    A ``delay`` longer than the client's timeout makes the client give up; the server
    then notices the broken connection and drops the reply.
    """

    status: int = 200
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "body": self.body, "headers": self.headers,
                "delay": self.delay}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CannedReply:
        return cls(status=int(data.get("status", 200)), body=data.get("body"),
                   headers=dict(data.get("headers") or {}), delay=float(data.get("delay", 0)))


@dataclass
class RecordedRequest:
    """What the server received: method, path, headers (names lower-cased) and JSON body."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "path": self.path, "headers": self.headers,
                "body": self.body}


_message_ids = itertools.count(1)


def usage_block(input_tokens: int = 100, output_tokens: int = 50,
                cache_creation_input_tokens: int = 0,
                cache_read_input_tokens: int = 0) -> dict[str, int]:
    return {"input_tokens": input_tokens, "output_tokens": output_tokens,
            "cache_creation_input_tokens": cache_creation_input_tokens,
            "cache_read_input_tokens": cache_read_input_tokens}


def message_body(content: list[dict[str, Any]], *, model: str = "claude-sonnet-5-5",
                 stop_reason: str = "tool_use",
                 usage: dict[str, int] | None = None) -> dict[str, Any]:
    """A complete Message object as the API returns it."""
    number = next(_message_ids)
    return {
        "id": f"msg_fake{number:06d}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage if usage is not None else usage_block(),
    }


def tool_reply(tool_input: dict[str, Any], *, name: str = "record_work_orders",
               usage: dict[str, int] | None = None, delay: float = 0.0,
               model: str = "claude-sonnet-5-5") -> CannedReply:
    """A successful answer whose content is one ``tool_use`` block with ``tool_input``."""
    number = next(_message_ids)
    block = {"type": "tool_use", "id": f"toolu_fake{number:06d}", "name": name,
             "input": tool_input}
    return CannedReply(200, message_body([block], model=model, usage=usage), delay=delay)


def text_reply(text: str, *, usage: dict[str, int] | None = None) -> CannedReply:
    """A successful answer with only a text block (a model that ignored the tool)."""
    return CannedReply(200, message_body([{"type": "text", "text": text}],
                                         stop_reason="end_turn", usage=usage))


def error_reply(status: int, error_type: str | None = None, message: str | None = None, *,
                retry_after_ms: int | None = 10, delay: float = 0.0) -> CannedReply:
    """An error in Anthropic's shape; retryable statuses carry ``retry-after-ms``."""
    kind = error_type or ERROR_TYPE_FOR_STATUS.get(status, "api_error")
    body = {"type": "error",
            "error": {"type": kind, "message": message or f"fake {kind}"},
            "request_id": f"req_fake{next(_message_ids):06d}"}
    headers: dict[str, str] = {}
    if retry_after_ms is not None and (status >= 500 or status == 429):
        headers["retry-after-ms"] = str(retry_after_ms)
    return CannedReply(status, body, headers, delay)


def delayed(reply: CannedReply, seconds: float) -> CannedReply:
    """The same reply, sent only after ``seconds``."""
    return CannedReply(reply.status, reply.body, dict(reply.headers), seconds)


# -- the default responder ------------------------------------------------------------------

_EMAIL_BLOCK = re.compile(r"^<homeowner_email>$(.*?)^</homeowner_email>$", re.S | re.M)
_PHOTO_NAME = re.compile(r'<photo filename="([^"]*)"')
_SUBJECT_LINE = re.compile(r"^\s*Subject:.*$", re.M | re.I)
_KEYWORD_TRADES: tuple[tuple[str, str], ...] = (
    ("leak", "plumbing"), ("faucet", "plumbing"), ("toilet", "plumbing"),
    ("water heater", "plumbing"), ("drain", "plumbing"), ("outlet", "electrical"),
    ("breaker", "electrical"), ("light", "electrical"), ("furnace", "hvac"),
    ("air condition", "hvac"), (" ac ", "hvac"), ("crack", "drywall"),
    ("nail pop", "drywall"), ("paint", "paint"), ("roof", "roofing"),
    ("shingle", "roofing"), ("window", "windows_doors"), ("door", "windows_doors"),
    ("tile", "flooring_tile"), ("carpet", "flooring_tile"), ("cabinet", "cabinets_countertops"),
    ("countertop", "cabinets_countertops"), ("driveway", "concrete"), ("gutter", "gutters"),
    ("sprinkler", "landscaping"),
)


def _user_text(body: dict[str, Any]) -> str:
    parts: list[str] = []
    for message in body.get("messages") or []:
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
            continue
        for block in content or []:
            if isinstance(block, dict) and block.get("type") == "text":
                parts.append(str(block.get("text", "")))
            if isinstance(block, dict) and block.get("type") == "tool_result":
                break  # a correction turn: answer the original mail again
        break  # only the first user turn carries the mail
    return "\n".join(parts)


def _guess_trade(text: str, trades: list[str]) -> str:
    lowered = f" {text.lower()} "
    for keyword, trade in _KEYWORD_TRADES:
        if keyword in lowered and trade in trades:
            return trade
    return "other" if "other" in trades else trades[-1]


def paragraph_responder(body: dict[str, Any]) -> CannedReply:
    """A plausible, deterministic tool answer: one routine issue per non-empty paragraph.

    The mail is read from between ``<homeowner_email>`` lines when the prompt has them (else
    the whole user text); photos named in ``<photo filename="...">`` go to the first issue.
    """
    text = _user_text(body)
    match = _EMAIL_BLOCK.search(text)
    mail = match.group(1) if match else text
    mail = _SUBJECT_LINE.sub("", mail)
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", mail)]
    paragraphs = [p for p in paragraphs if p]
    photos = _PHOTO_NAME.findall(text)
    trades = ["other"]
    tool_name = "record_work_orders"
    for tool in body.get("tools") or []:
        tool_name = tool.get("name", tool_name)
        schema = tool.get("input_schema", {})
        issue_schema = schema.get("properties", {}).get("issues", {}).get("items", {})
        trades = issue_schema.get("properties", {}).get("trade", {}).get("enum", trades)
        break
    issues = []
    for index, paragraph in enumerate(paragraphs):
        issues.append({
            "trade": _guess_trade(paragraph, trades),
            "priority": "routine",
            "location": None,
            "title": paragraph[:60],
            "description": paragraph,
            "photos": photos if index == 0 else [],
            "confidence": 0.5,
            "suggested_vendor": None,
        })
    return tool_reply({"issues": issues, "language": "en", "coverage_note": None},
                      name=tool_name, model=str(body.get("model", "claude-sonnet-5-5")))


Responder = Callable[[dict[str, Any]], CannedReply]


# -- the server -----------------------------------------------------------------------------

class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test output is not the place for an access log."""

    def _read_json(self) -> Any:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode("utf-8", "replace")

    def _send(self, reply: CannedReply) -> None:
        if reply.delay and self.server.fake.closing.wait(reply.delay):
            self.close_connection = True
            return  # shutting down: drop the reply
        payload = json.dumps(reply.body if reply.body is not None else {}).encode()
        try:
            self.send_response(reply.status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.send_header("request-id", f"req_fake{next(_message_ids):06d}")
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except OSError:  # the client gave up (timeout) and closed the connection
            self.close_connection = True

    def do_GET(self) -> None:
        fake = self.server.fake
        if self.path == "/_fake/requests":
            self._send(CannedReply(200, {"requests": [r.to_json() for r in fake.requests]}))
        elif self.path.startswith("/v1/models"):
            fake._record("GET", self.path, self.headers, None)
            problem = fake._check_headers(self.headers)
            if problem is not None:
                self._send(problem)
                return
            models = [{"type": "model", "id": m, "display_name": m,
                       "created_at": "2026-01-01T00:00:00Z"} for m in FAKE_MODELS]
            wanted = self.path[len("/v1/models"):].strip("/").split("?")[0]
            if wanted:
                found = [m for m in models if m["id"] == wanted]
                self._send(CannedReply(200, found[0]) if found else
                           error_reply(404, message=f"model: {wanted}"))
            else:
                self._send(CannedReply(200, {"data": models, "has_more": False,
                                             "first_id": models[0]["id"],
                                             "last_id": models[-1]["id"]}))
        else:
            self._send(error_reply(404, message=f"no route {self.path}"))

    def do_POST(self) -> None:
        fake = self.server.fake
        body = self._read_json()
        path = self.path.split("?")[0]
        if path == "/_fake/enqueue":
            replies = [CannedReply.from_json(item) for item in (body or [])]
            fake.enqueue(*replies)
            self._send(CannedReply(200, {"queued": len(fake._queue)}))
        elif path == "/_fake/reset":
            fake.reset()
            self._send(CannedReply(200, {"reset": True}))
        elif path == "/v1/messages":
            fake._record("POST", self.path, self.headers, body)
            self._send(fake._answer(self.headers, body))
        else:
            self._send(error_reply(404, message=f"no route {self.path}"))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], fake: FakeAnthropic) -> None:
        self.fake = fake
        super().__init__(address, _Handler)


class FakeAnthropic:
    """The fake Messages API server; a context manager that starts and stops it.

    ``api_key``: the key the server accepts (``None`` accepts any non-empty key).
    ``responder``: what answers when the queue is empty (default
    :func:`paragraph_responder`).
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0,
                 api_key: str | None = DEFAULT_API_KEY,
                 responder: Responder = paragraph_responder) -> None:
        self.host = host
        self.port = port
        self.api_key = api_key if api_key is not None else DEFAULT_API_KEY
        self._accept_any_key = api_key is None
        self.responder = responder
        self.requests: list[RecordedRequest] = []
        self._queue: deque[CannedReply] = deque()
        self._lock = threading.Lock()
        self.closing = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def bind(self) -> None:
        """Open the listening socket (so ``port`` is known) without serving yet."""
        self.closing.clear()
        self._server = _Server((self.host, self.port), self)
        self.port = self._server.server_address[1]

    def start(self) -> FakeAnthropic:
        """Bind and serve in a background thread."""
        self.bind()
        assert self._server is not None
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name="fake-anthropic", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving; delayed replies still pending are dropped at once."""
        self.closing.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def serve_forever(self) -> None:
        """Serve in the calling thread until :meth:`stop_soon` (the standalone mode)."""
        if self._server is None:
            self.bind()
        assert self._server is not None
        try:
            self._server.serve_forever(poll_interval=0.1)
        finally:
            self._server.server_close()
            self._server = None

    def stop_soon(self) -> None:
        """Ask :meth:`serve_forever` to return; safe from a signal handler."""
        self.closing.set()
        server = self._server
        if server is not None:
            threading.Thread(target=server.shutdown, daemon=True).start()

    def __enter__(self) -> FakeAnthropic:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- scripting and inspection

    def enqueue(self, *replies: CannedReply) -> None:
        """Queue replies; each request to /v1/messages takes the next one, in order."""
        with self._lock:
            self._queue.extend(replies)

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
            self.requests.clear()

    @property
    def message_requests(self) -> list[RecordedRequest]:
        """The POST /v1/messages requests only, in arrival order."""
        return [r for r in self.requests if r.path.split("?")[0] == "/v1/messages"]

    @property
    def pending(self) -> int:
        return len(self._queue)

    # -- internals used by the handler

    def _record(self, method: str, path: str, headers: Any, body: Any) -> None:
        lowered = {name.lower(): value for name, value in headers.items()}
        with self._lock:
            self.requests.append(RecordedRequest(method, path, lowered, body))

    def _check_headers(self, headers: Any) -> CannedReply | None:
        key = headers.get("x-api-key")
        authorization = headers.get("authorization") or ""
        if not key and authorization.lower().startswith("bearer "):
            key = authorization[7:].strip()
        if not key or (not self._accept_any_key and key != self.api_key):
            return error_reply(401, message="invalid x-api-key")
        if not headers.get("anthropic-version"):
            return error_reply(400, message="anthropic-version: header is required")
        return None

    def _answer(self, headers: Any, body: Any) -> CannedReply:
        problem = self._check_headers(headers)
        if problem is not None:
            return problem
        if not isinstance(body, dict):
            return error_reply(400, message="request body must be a JSON object")
        for required in ("model", "max_tokens", "messages"):
            if required not in body:
                return error_reply(400, message=f"{required}: Field required")
        with self._lock:
            queued = self._queue.popleft() if self._queue else None
        return queued if queued is not None else self.responder(body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve a fake Anthropic Messages API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--api-key", default=None,
                        help="the only key accepted (default: any non-empty key)")
    args = parser.parse_args(argv)
    fake = FakeAnthropic(host=args.host, port=args.port, api_key=args.api_key)

    signal.signal(signal.SIGTERM, lambda signum, frame: fake.stop_soon())
    signal.signal(signal.SIGINT, lambda signum, frame: fake.stop_soon())
    fake.bind()
    print(f"listening on {fake.base_url}", flush=True)
    fake.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
