"""Webhooks over httpx: a generic signed JSON POST, or a WeCom / DingTalk group robot.

Generic JSON (``format="json"``): the body is the message payload as JSON, with the headers
``Idempotency-Key`` (an opaque digest of the outbox key: the same for every copy of one message,
and free of the URL's credentials), ``X-Pipeline-Timestamp`` (Unix seconds) and, when a secret is
set, ``X-Pipeline-Signature: sha256=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>``; receivers
check it with ``verify_signature``.

WeCom (企业微信) robot: ``{"msgtype": "markdown", "markdown": {"content": ...}}``.
DingTalk (钉钉) robot: ``{"msgtype": "markdown", "markdown": {"title": ..., "text": ...}}``; with a
secret the URL gets ``timestamp`` (ms) and ``sign`` = base64(HMAC-SHA256(secret,
f"{timestamp}\\n{secret}")). Both robots answer HTTP 200 with ``{"errcode": ...}``; non-zero is a
failure, retryable only for their rate limits.

Retries as Saleor's and Alertmanager's: 5xx, 408, 429, timeouts and connection errors are
retryable; 3xx and other 4xx are not. No redirects are followed. Errors carry a status line, never a response body or the URL's
query (robot URLs hold their key there).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
from pydantic import SecretStr

from pipeline.alerts.channels.base import ChannelConfigError, DeliveryError, DeliveryReceipt, OutgoingMessage, short

WebhookFormat = Literal["json", "wecom", "dingtalk"]
FORMATS: tuple[WebhookFormat, ...] = ("json", "wecom", "dingtalk")
WECOM_MAX_BYTES = 4096  # WeCom robot: markdown content at most 4096 bytes of UTF-8
# Robot errcodes worth a retry: WeCom -1 (system busy) and 45009 (rate limit), DingTalk 130101 (too fast).
RETRYABLE_ERRCODES = frozenset({-1, 45009, 130101})
USER_AGENT = "pipeline-monitor/1"
RETRYABLE_4XX = frozenset({408, 429})  # request timeout, too many requests: the receiver asks for later


def _utc_now() -> datetime:
    return datetime.now(UTC)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256(secret, f"{timestamp}.{body}")."""
    digest = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


def verify_signature(secret: str | SecretStr, timestamp: str, body: bytes, signature: str) -> bool:
    """True when ``signature`` (the ``X-Pipeline-Signature`` header) matches; constant-time.

    Receivers should also refuse a timestamp far from their own clock, against replays.
    """
    key = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    return hmac.compare_digest(sign(key, timestamp, body), signature.strip())


def dingtalk_sign(secret: str, timestamp_ms: str) -> str:
    """DingTalk's ``sign`` parameter (before URL encoding): base64 HMAC-SHA256 of "{timestamp}\\n{secret}"."""
    to_sign = f"{timestamp_ms}\n{secret}".encode()
    return base64.b64encode(hmac.new(secret.encode("utf-8"), to_sign, hashlib.sha256).digest()).decode("ascii")


def robot_markdown(message: OutgoingMessage) -> tuple[str, str]:
    """(title, markdown) for the robots: ``payload["title"]``/``["markdown"]``, else subject/text."""
    title = str(message.payload.get("title") or message.subject)
    markdown = str(message.payload.get("markdown") or message.payload.get("text") or message.text)
    return title, markdown


def _truncate_utf8(text: str, max_bytes: int) -> str:
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    ellipsis = "…"
    return data[: max_bytes - len(ellipsis.encode())].decode("utf-8", "ignore") + ellipsis


class WebhookChannel:
    """One webhook endpoint. Every message it sends must name that endpoint as its recipient."""

    kind = "webhook"

    def __init__(
        self,
        url: str,
        *,
        secret: SecretStr | None = None,
        format: WebhookFormat = "json",  # noqa: A002 (the configuration's word)
        timeout: float = 30,
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise ChannelConfigError(f"Webhook 地址无效：{short(str(exc))}") from exc
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ChannelConfigError("Webhook 地址必须以 http:// 或 https:// 开头")
        if format not in FORMATS:
            raise ChannelConfigError(f"Webhook 格式应为 json、wecom 或 dingtalk，而不是 {format!r}")
        if format == "wecom" and secret is not None:
            raise ChannelConfigError("企业微信群机器人不使用签名密钥，请去掉 secret")
        self.url = url
        self.secret = secret
        self.format = format
        self.timeout = timeout
        self._now = now
        self._where = f"{parsed.scheme}://{parsed.netloc.decode('ascii')}{parsed.path}"  # no query: robot keys

    # --- building the request ------------------------------------------------------------------

    def build_request(self, message: OutgoingMessage) -> httpx.Request:
        """The request ``send`` would make (also useful for a dry run)."""
        now = self._now()
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": USER_AGENT,
            "Idempotency-Key": message.key_hash,
        }
        url = httpx.URL(self.url)
        if self.format == "json":
            body = _json_bytes(message.payload)
            timestamp = str(int(now.timestamp()))
            headers["X-Pipeline-Timestamp"] = timestamp
            if self.secret is not None:
                headers["X-Pipeline-Signature"] = sign(self.secret.get_secret_value(), timestamp, body)
        elif self.format == "wecom":
            _, markdown = robot_markdown(message)
            body = _json_bytes({"msgtype": "markdown", "markdown": {"content": _truncate_utf8(markdown, WECOM_MAX_BYTES)}})
        else:
            title, markdown = robot_markdown(message)
            body = _json_bytes({"msgtype": "markdown", "markdown": {"title": title, "text": markdown}})
            if self.secret is not None:
                timestamp_ms = str(int(now.timestamp() * 1000))
                url = url.copy_merge_params(
                    {"timestamp": timestamp_ms, "sign": dingtalk_sign(self.secret.get_secret_value(), timestamp_ms)}
                )
        return httpx.Request("POST", url, headers=headers, content=body)

    # --- sending -------------------------------------------------------------------------------

    def send(self, message: OutgoingMessage) -> DeliveryReceipt:
        if message.recipient and message.recipient != self.url:
            raise DeliveryError("消息的接收地址与该 Webhook 通道的地址不一致，未发送", retryable=False)
        request = self.build_request(message)
        started = time.monotonic()
        try:
            with httpx.Client(timeout=self.timeout, follow_redirects=False) as client:
                response = client.send(request)
        except httpx.TimeoutException as exc:
            raise DeliveryError(f"Webhook {self._where} 应答超时（{self.timeout:g} 秒）", retryable=True) from exc
        except httpx.TransportError as exc:
            raise DeliveryError(f"无法连接 Webhook {self._where}：{type(exc).__name__}", retryable=True) from exc
        elapsed = int((time.monotonic() - started) * 1000)
        status = response.status_code
        status_line = f"HTTP {status} {short(response.reason_phrase, 40)}".strip()
        if not 200 <= status < 300:
            retryable = status >= 500 or status in RETRYABLE_4XX
            raise DeliveryError(f"Webhook {self._where} 返回 {status_line}", retryable, status_code=status)
        if self.format in ("wecom", "dingtalk"):
            self._check_robot_answer(response)
        return DeliveryReceipt(status, f"Webhook {self._where} 返回 {status_line}", elapsed)

    def _check_robot_answer(self, response: httpx.Response) -> None:
        robot = "企业微信机器人" if self.format == "wecom" else "钉钉机器人"
        try:
            answer: Any = response.json()
            errcode = int(answer.get("errcode", 0))
        except (ValueError, AttributeError, TypeError) as exc:
            raise DeliveryError(
                f"{robot} {self._where} 的应答不是预期的 JSON", retryable=False, status_code=response.status_code
            ) from exc
        if errcode != 0:
            errmsg = short(str(answer.get("errmsg", "")), 80)
            raise DeliveryError(
                f"{robot}拒绝了消息：errcode {errcode} {errmsg}",
                errcode in RETRYABLE_ERRCODES,
                status_code=response.status_code,
            )


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8")
