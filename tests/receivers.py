"""Real receivers for the channel tests: an SMTP sink (aiosmtpd) and an HTTP receiver, on 127.0.0.1.

Use the fixtures by importing them into a test module::

    from tests.receivers import http_receiver, smtp_sink  # noqa: F401  (pytest fixtures)
"""

from __future__ import annotations

import asyncio
import email
import json
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import policy
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

    @property
    def message_id(self) -> str:
        return str(email.message_from_bytes(self.content, policy=policy.default)["Message-ID"])


@dataclass
class SmtpSink:
    """Collects every message the server accepts. ``reject`` maps an address to the reply its RCPT
    gets (e.g. ``"550 5.1.1 用户不存在"``); ``credentials`` (login, password), if set, is required.

    Faults, each after the message is taken (kept in ``messages``), so the client cannot know:
    ``lose_answers`` copies of each message (by Message-ID) lose their answer, ``lose_by`` "drop"
    (the connection closes instead of the 250) or "late" (the 250 comes ``late_seconds`` later);
    ``quit_delay`` holds the answer to QUIT, ``quit_answer`` replaces it; ``hold``, when set, keeps each answer back until the
    event is set (``taken`` is set once a message is in). ``step_seconds`` spends that long on each
    RCPT and each message; ``most_at_once`` records how many copies of one message were ever in at
    once, ``most_busy`` how many messages of any kind.
    """

    host: str = "127.0.0.1"
    port: int = 0
    messages: list[ReceivedMail] = field(default_factory=list)
    reject: dict[str, str] = field(default_factory=dict)
    credentials: tuple[str, str] | None = None
    lose_answers: int = 0
    lose_by: str = "drop"
    late_seconds: float = 0.0
    quit_delay: float = 0.0
    quit_answer: str = "221 Bye"
    hold: threading.Event | None = None
    taken: threading.Event = field(default_factory=threading.Event)
    step_seconds: float = 0.0
    copies: Counter[str] = field(default_factory=Counter)
    in_flight: Counter[str] = field(default_factory=Counter)
    most_at_once: Counter[str] = field(default_factory=Counter)
    most_busy: int = 0

    def copies_by_message_id(self) -> Counter[str]:
        return Counter(m.message_id for m in self.messages)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any) -> str:
        if self.step_seconds:
            await asyncio.sleep(self.step_seconds)
        if address in self.reject:
            return self.reject[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        mail = ReceivedMail(envelope.mail_from, tuple(envelope.rcpt_tos), bytes(envelope.content))
        mid = mail.message_id
        self.in_flight[mid] += 1
        self.most_at_once[mid] = max(self.most_at_once[mid], self.in_flight[mid])
        self.most_busy = max(self.most_busy, sum(self.in_flight.values()))
        try:
            if self.step_seconds:
                await asyncio.sleep(self.step_seconds)
            self.messages.append(mail)
            self.copies[mid] += 1
            self.taken.set()
        finally:
            self.in_flight[mid] -= 1
        while self.hold is not None and not self.hold.is_set():
            await asyncio.sleep(0.05)
        if self.copies[mid] <= self.lose_answers:
            if self.lose_by == "drop":
                server.transport.close()  # taken, but the 250 never leaves
            else:
                await asyncio.sleep(self.late_seconds)
        return "250 Message accepted for delivery"

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        if self.quit_delay:
            await asyncio.sleep(self.quit_delay)
        return self.quit_answer

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
    every answer back that many seconds; ``late_answers`` copies of each message (by
    Idempotency-Key) are taken and answered ``late_seconds`` late. The default answer is 200 with a
    robot's "ok" JSON."""

    host: str = "127.0.0.1"
    port: int = 0
    requests: list[ReceivedRequest] = field(default_factory=list)
    script: deque[tuple[int, Any]] = field(default_factory=deque)
    delay: float = 0.0
    headers_out: dict[str, str] = field(default_factory=dict)
    late_answers: int = 0
    late_seconds: float = 0.0
    copies: Counter[str] = field(default_factory=Counter)

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
            key = self.headers.get("Idempotency-Key") or ""
            receiver.copies[key] += 1
            if receiver.delay:
                time.sleep(receiver.delay)
            if receiver.copies[key] <= receiver.late_answers:
                time.sleep(receiver.late_seconds)
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
