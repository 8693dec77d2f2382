"""Real receivers for the channel tests: an SMTP sink (aiosmtpd) and an HTTP receiver, on 127.0.0.1.

Use the fixtures by importing them into a test module::

    from tests.receivers import http_receiver, smtp_sink  # noqa: F401  (pytest fixtures)
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

ROBOT_OK = {"errcode": 0, "errmsg": "ok"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (right now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- SMTP ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedMail:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    content: bytes


@dataclass
class SmtpSink:
    """Collects every message the server accepts. ``reject`` maps an address to the reply its RCPT
    gets (e.g. ``"550 5.1.1 用户不存在"``); ``credentials`` (login, password), if set, is required."""

    host: str = "127.0.0.1"
    port: int = 0
    messages: list[ReceivedMail] = field(default_factory=list)
    reject: dict[str, str] = field(default_factory=dict)
    credentials: tuple[str, str] | None = None

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any) -> str:
        if address in self.reject:
            return self.reject[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(ReceivedMail(envelope.mail_from, tuple(envelope.rcpt_tos), bytes(envelope.content)))
        return "250 Message accepted for delivery"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and self.credentials is not None
            and (auth_data.login.decode(), auth_data.password.decode()) == self.credentials
        )
        return AuthResult(success=ok, handled=False)  # handled=False: the server answers 535


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink(port=free_port())
    controller = Controller(
        sink,
        hostname=sink.host,
        port=sink.port,
        authenticator=sink.authenticate,
        auth_require_tls=False,
        auth_required=False,
    )
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


# --- HTTP ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names lower-cased
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


@dataclass
class HttpReceiver:
    """Records every request. ``answer(500, 200)`` scripts the next statuses (then 200 again);
    each answer may be ``status`` or ``(status, body)``, a dict body sent as JSON. ``delay`` holds
    every answer back that many seconds. The default answer is 200 with a robot's "ok" JSON."""

    host: str = "127.0.0.1"
    port: int = 0
    requests: list[ReceivedRequest] = field(default_factory=list)
    script: deque[tuple[int, Any]] = field(default_factory=deque)
    delay: float = 0.0
    headers_out: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/hook"

    def answer(self, *answers: int | tuple[int, Any]) -> None:
        for item in answers:
            self.script.append(item if isinstance(item, tuple) else (item, ROBOT_OK))

    def next_answer(self) -> tuple[int, Any]:
        return self.script.popleft() if self.script else (200, ROBOT_OK)


def _handler_for(receiver: HttpReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            parts = urlsplit(self.path)
            receiver.requests.append(
                ReceivedRequest(
                    method="POST",
                    path=parts.path,
                    query=parse_qs(parts.query),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
            )
            status, content = receiver.next_answer()
            if receiver.delay:
                time.sleep(receiver.delay)
            data = json.dumps(content).encode() if isinstance(content, dict) else bytes(content or b"")
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json" if isinstance(content, dict) else "text/plain")
                self.send_header("Content-Length", str(len(data)))
                for name, value in receiver.headers_out.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
                pass

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    return Handler


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver()
    server = ThreadingHTTPServer((receiver.host, 0), _handler_for(receiver))
    server.daemon_threads = True
    receiver.port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="http-receiver", daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
