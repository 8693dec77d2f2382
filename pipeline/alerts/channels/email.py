"""Email: over SMTP (``EmailChannel``) or into a folder of ``.eml`` files (``OutboxFolderChannel``).

Both build the message with ``build_email``: plain text with an HTML alternative, attachments,
UTF-8 throughout, and a Message-ID derived from the outbox key, so a resend of the same outbox row
carries the same Message-ID and a mail client or server can recognise it.
"""

from __future__ import annotations

import os
import re
import smtplib
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from pathlib import Path
from typing import Literal

from pydantic import SecretStr

from pipeline.alerts.channels.base import ChannelConfigError, DeliveryError, DeliveryReceipt, OutgoingMessage, short

Security = Literal["none", "starttls", "ssl"]
SECURITY_MODES: tuple[Security, ...] = ("none", "starttls", "ssl")
DEFAULT_DOMAIN = "pipeline.local"
_DOMAIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")


def _utc_now() -> datetime:
    return datetime.now(UTC)


def message_id(message: OutgoingMessage, sender: str) -> str:
    """``<sha256(key)[:32]@domain>``, the domain being the sender's (``pipeline.local`` if none)."""
    _, at, domain = parseaddr(sender)[1].rpartition("@")
    if not at or not _DOMAIN.match(domain):
        domain = DEFAULT_DOMAIN
    return f"<{message.key_hash}@{domain}>"


def build_email(message: OutgoingMessage, *, sender: str, sent_at: datetime) -> EmailMessage:
    """The one place an email is built, for SMTP and for the .eml folder alike.

    Raises ``DeliveryError`` (not retryable) when the message cannot be an email (a header with a
    line break, a malformed MIME type).
    """
    try:
        email = EmailMessage()
        email["From"] = sender
        email["To"] = message.recipient
        email["Subject"] = message.subject
        email["Date"] = format_datetime(sent_at)
        email["Message-ID"] = message_id(message, sender)
        email.set_content(message.text, subtype="plain", charset="utf-8")
        if message.html is not None:
            email.add_alternative(message.html, subtype="html", charset="utf-8")
        for attachment in message.attachments:
            maintype, _, subtype = attachment.mime.partition("/")
            if not maintype or not subtype:
                raise ValueError(f"附件 {attachment.filename} 的 MIME 类型无效：{attachment.mime}")
            email.add_attachment(attachment.content, maintype=maintype, subtype=subtype, filename=attachment.filename)
    except ValueError as exc:
        raise DeliveryError(f"无法生成邮件：{short(str(exc))}", retryable=False) from exc
    return email


class EmailChannel:
    """Sends over SMTP with smtplib; one connection per message.

    Each step (connecting, each command's answer) waits at most ``timeout`` seconds; with
    ``max_seconds`` the whole send is cut (the connection shut) once it has run that long, so a
    server answering each step just in time cannot hold a send past its claim. The message is
    delivered once the server has answered 250 to it: what follows (QUIT) cannot undo that, and is
    not waited for.
    """

    kind = "email"

    def __init__(
        self,
        host: str,
        port: int,
        user: str | None,
        password: SecretStr | None,
        security: Security,
        sender: str,
        timeout: float = 60,
        *,
        max_seconds: float | None = None,
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        if security not in SECURITY_MODES:
            raise ChannelConfigError(f"SMTP 加密方式应为 none、starttls 或 ssl，而不是 {security!r}")
        if "@" not in parseaddr(sender)[1]:
            raise ChannelConfigError(f"发件人地址无效：{sender!r}")
        if not (user or "").isascii() or not (password.get_secret_value() if password else "").isascii():
            raise ChannelConfigError("SMTP 用户名和密码只能包含 ASCII 字符（smtplib 的限制）")
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.security = security
        self.sender = sender
        self.timeout = timeout
        self.max_seconds = max_seconds
        self._now = now

    def send(self, message: OutgoingMessage) -> DeliveryReceipt:
        email = build_email(message, sender=self.sender, sent_at=self._now())
        started = time.monotonic()
        smtp: smtplib.SMTP | None = None
        cutter: _Cutter | None = None
        try:
            smtp = self._connect()
            if self.max_seconds is not None:
                cutter = _Cutter(smtp, self.max_seconds - (time.monotonic() - started))
            if self.security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if self.user:
                smtp.login(self.user, self.password.get_secret_value() if self.password else "")
            # Returns only once the server has answered 250 to the message: from here it is delivered.
            smtp.send_message(email, from_addr=parseaddr(self.sender)[1], to_addrs=[parseaddr(message.recipient)[1]])
        except (OSError, smtplib.SMTPException) as exc:  # SMTPException is an OSError too
            raise self._failure(exc, cut=cutter is not None and cutter.fired) from exc
        finally:
            if cutter is not None:
                cutter.cancel()
            if smtp is not None:
                _say_goodbye(smtp)
        elapsed = int((time.monotonic() - started) * 1000)
        return DeliveryReceipt(250, f"已投递至 {message.recipient}（{self.host}:{self.port}）", elapsed)

    def _connect(self) -> smtplib.SMTP:
        if self.security == "ssl":
            return smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=ssl.create_default_context())
        return smtplib.SMTP(self.host, self.port, timeout=self.timeout)

    def _failure(self, exc: BaseException, *, cut: bool = False) -> DeliveryError:
        """Classify: the server or network being down, or a 4xx reply, is worth a retry; 5xx is not."""
        server = f"邮件服务器 {self.host}:{self.port}"
        if cut:
            return DeliveryError(f"{server}超过 {self.max_seconds:g} 秒仍未完成发送，已断开", retryable=True)
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            replies = list(exc.recipients.values())
            code = replies[0][0] if replies else None
            reason = _reply_text(replies[0][1]) if replies else ""
            retryable = all(400 <= c < 500 for c, _ in replies)
            return DeliveryError(f"{server}拒绝收件人（{code} {reason}）", retryable, status_code=code)
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            return DeliveryError(
                f"{server}认证失败（{exc.smtp_code}），请检查 SMTP 用户名和密码", retryable=False, status_code=exc.smtp_code
            )
        if isinstance(exc, smtplib.SMTPResponseException):
            code = exc.smtp_code
            retryable = not 500 <= code < 600
            return DeliveryError(
                f"{server}返回 {code} {_reply_text(exc.smtp_error)}", retryable, status_code=code if code > 0 else None
            )
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            if isinstance(exc.__context__, TimeoutError):  # smtplib reports a reply's timeout so
                return DeliveryError(f"{server}应答超时（{self.timeout:g} 秒）", retryable=True)
            return DeliveryError(f"{server}意外断开连接", retryable=True)
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return DeliveryError(f"{server}不支持所需的扩展（STARTTLS 或 AUTH）：{short(str(exc))}", retryable=False)
        if isinstance(exc, smtplib.SMTPException):
            return DeliveryError(f"{server}出错：{short(str(exc))}", retryable=False)
        if isinstance(exc, ssl.SSLCertVerificationError):
            return DeliveryError(f"{server}的 TLS 证书校验失败：{short(exc.verify_message or str(exc))}", retryable=False)
        if isinstance(exc, TimeoutError):
            return DeliveryError(f"{server}应答超时（{self.timeout:g} 秒）", retryable=True)
        if isinstance(exc, ConnectionRefusedError):
            return DeliveryError(f"{server}拒绝连接（服务未启动？）", retryable=True)
        return DeliveryError(f"无法连接{server}：{short(str(exc))}", retryable=True)


class _Cutter:
    """Shuts a connection once a send has run its time: a read blocked on it then ends at once."""

    def __init__(self, smtp: smtplib.SMTP, seconds: float) -> None:
        self.fired = False
        self._smtp = smtp
        self._timer = threading.Timer(max(0.0, seconds), self._cut)
        self._timer.daemon = True
        self._timer.start()

    def _cut(self) -> None:
        self.fired = True
        sock = self._smtp.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cancel(self) -> None:
        self._timer.cancel()


def _say_goodbye(smtp: smtplib.SMTP) -> None:
    """QUIT without waiting for its answer, then close: nothing after the message's 250 can fail it."""
    try:
        if smtp.sock is not None:
            smtp.putcmd("quit")
    except OSError:
        pass
    finally:
        smtp.close()


class OutboxFolderChannel:
    """Writes each message to ``<folder>/<sha256(key)[:32]>.eml`` (used when no SMTP is configured).

    The same outbox key always lands in the same file, so a resend replaces it, never duplicates it.
    """

    kind = "outbox_folder"

    def __init__(
        self,
        folder: Path,
        *,
        sender: str = f"pipeline@{DEFAULT_DOMAIN}",
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.folder = Path(folder)
        self.sender = sender
        self._now = now

    def path_for(self, message: OutgoingMessage) -> Path:
        return self.folder / f"{message.key_hash}.eml"

    def send(self, message: OutgoingMessage) -> DeliveryReceipt:
        email = build_email(message, sender=self.sender, sent_at=self._now())
        started = time.monotonic()
        target = self.path_for(message)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.folder, suffix=".tmp", delete=False) as tmp:
                try:
                    tmp.write(email.as_bytes())
                except BaseException:
                    os.unlink(tmp.name)
                    raise
            os.replace(tmp.name, target)  # atomic: a reader never sees half a file
        except OSError as exc:
            raise DeliveryError(f"无法写入发件箱文件夹 {self.folder}：{short(str(exc))}", retryable=True) from exc
        return DeliveryReceipt(None, f"已写入 {target}", int((time.monotonic() - started) * 1000))


def _reply_text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return short(text, 80)
