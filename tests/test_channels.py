"""Channels against real receivers: an aiosmtpd SMTP server and an HTTP server on 127.0.0.1."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import openpyxl
import pytest
from pydantic import SecretStr

from pipeline.alerts.channels import (
    CHANNELS,
    Attachment,
    ChannelConfigError,
    DeliveryError,
    EmailChannel,
    OutboxFolderChannel,
    OutgoingMessage,
    WebhookChannel,
    channel_class,
    verify_signature,
)
from pipeline.alerts.channels.base import XLSX_MIME
from pipeline.alerts.channels.email import message_id
from tests.receivers import HttpReceiver, SmtpSink, free_port, http_receiver, smtp_sink  # noqa: F401

SENT_AT = datetime(2024, 6, 21, 1, 0, tzinfo=UTC)  # 09:00 Asia/Shanghai
LEADER = "zhang.san@jingzhou.gov.cn"
SUBJECT = "【双月述职】您包保的项目：红牌 1 个、黄牌 2 个（评审日 2024-06-28）"
TEXT = "张三同志：\n截至 2024-06-21，您包保的项目中有 1 个红牌、2 个黄牌。\n荆州市发展和改革委员会 投资科"
HTML = "<p>张三同志：</p><p>截至 2024-06-21，您包保的项目中有 <b>1 个红牌</b>、2 个黄牌。</p>"
KEY = f"digest:{LEADER}:review:2024-06-28"


def xlsx_bytes() -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "红黄牌项目"
    sheet.append(["项目代码", "项目名称", "挂牌"])
    sheet.append(["2024-421003-44-01-000123", "荆州区城北快速路", "红"])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def digest(key: str = KEY, recipient: str = LEADER) -> OutgoingMessage:
    return OutgoingMessage(
        key=key,
        recipient=recipient,
        subject=SUBJECT,
        text=TEXT,
        html=HTML,
        attachments=(Attachment("荆州市重大项目红黄牌_2024-06-28.xlsx", xlsx_bytes(), XLSX_MIME),),
    )


def email_channel(sink: SmtpSink, **overrides: object) -> EmailChannel:
    options: dict[str, object] = {
        "host": sink.host,
        "port": sink.port,
        "user": None,
        "password": None,
        "security": "none",
        "sender": "荆州市发改委投资科 <tzk@jzfgw.gov.cn>",
        "timeout": 5,
        "now": lambda: SENT_AT,
    }
    options.update(overrides)
    return EmailChannel(**options)  # type: ignore[arg-type]


def parse(content: bytes) -> EmailMessage:
    message = message_from_bytes(content, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def text_of(message: EmailMessage, subtype: str) -> str:
    """The body part's text, with SMTP's CRLF line ends back to LF."""
    part = message.get_body((subtype,))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n").strip()


def expected_message_id(key: str, domain: str = "jzfgw.gov.cn") -> str:
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"


# --- email over SMTP -----------------------------------------------------------------------------


def test_email_arrives_whole_in_chinese_with_its_workbook(smtp_sink: SmtpSink) -> None:
    receipt = email_channel(smtp_sink).send(digest())

    assert receipt.status_code == 250
    assert receipt.duration_ms >= 0
    [mail] = smtp_sink.messages
    assert mail.mail_from == "tzk@jzfgw.gov.cn"
    assert mail.rcpt_tos == (LEADER,)
    message = parse(mail.content)
    assert message["To"] == LEADER
    assert message["Subject"] == SUBJECT
    assert message["From"].addresses[0].display_name == "荆州市发改委投资科"
    assert message["Message-ID"] == expected_message_id(KEY)
    assert message["Date"].datetime == SENT_AT
    assert text_of(message, "plain") == TEXT
    assert text_of(message, "html") == HTML
    [attachment] = list(message.iter_attachments())
    assert attachment.get_filename() == "荆州市重大项目红黄牌_2024-06-28.xlsx"
    assert attachment.get_content_type() == XLSX_MIME
    book = openpyxl.load_workbook(io.BytesIO(attachment.get_content()), read_only=True)
    rows = list(book["红黄牌项目"].iter_rows(values_only=True))
    assert rows == [("项目代码", "项目名称", "挂牌"), ("2024-421003-44-01-000123", "荆州区城北快速路", "红")]


def test_message_id_is_stable_per_outbox_key(smtp_sink: SmtpSink) -> None:
    channel = email_channel(smtp_sink)
    channel.send(digest())
    channel.send(digest())  # a resend of the same outbox row
    channel.send(digest(key="digest:other"))
    ids = [parse(m.content)["Message-ID"] for m in smtp_sink.messages]
    assert ids[0] == ids[1] == expected_message_id(KEY)
    assert ids[2] != ids[0]


def test_message_id_falls_back_to_pipeline_local() -> None:
    assert message_id(digest(), "pipeline") == expected_message_id(KEY, "pipeline.local")
    assert message_id(digest(), "投资科 <tzk@jzfgw.gov.cn>") == expected_message_id(KEY)


def test_smtp_down_is_retryable() -> None:
    channel = EmailChannel("127.0.0.1", free_port(), None, None, "none", "tzk@jzfgw.gov.cn", timeout=2)
    with pytest.raises(DeliveryError) as info:
        channel.send(digest())
    assert info.value.retryable is True
    assert "拒绝连接" in str(info.value)


@pytest.mark.parametrize(("delay", "answer"), [(3.0, "221 Bye"), (0.0, "554 5.3.0 Transaction failed")])
def test_what_follows_the_250_does_not_fail_a_delivered_message(smtp_sink: SmtpSink, delay: float,
                                                                 answer: str) -> None:
    """The message is the server's once it answered 250: QUIT is said, not waited for."""
    smtp_sink.quit_delay, smtp_sink.quit_answer = delay, answer
    receipt = email_channel(smtp_sink, timeout=1).send(digest())
    assert receipt.status_code == 250 and len(smtp_sink.messages) == 1


def test_a_send_is_cut_at_its_limit_however_the_server_drips(smtp_sink: SmtpSink) -> None:
    """Each step answers within the timeout, but the whole send may not outrun its claim."""
    smtp_sink.step_seconds = 0.7  # RCPT and the message each answer within the 1 s a step may wait
    with pytest.raises(DeliveryError) as info:
        email_channel(smtp_sink, timeout=1, max_seconds=1.2).send(digest())
    assert info.value.retryable is True and "超过 1.2 秒仍未完成发送" in str(info.value)


def test_an_answer_lost_after_the_message_was_taken_is_retryable(smtp_sink: SmtpSink) -> None:
    smtp_sink.lose_answers = 1
    with pytest.raises(DeliveryError) as info:
        email_channel(smtp_sink).send(digest())
    assert info.value.retryable is True
    email_channel(smtp_sink).send(digest())
    assert smtp_sink.copies_by_message_id() == {expected_message_id(KEY): 2}


def test_permanent_recipient_rejection_is_not_retryable(smtp_sink: SmtpSink) -> None:
    smtp_sink.reject[LEADER] = "550 5.1.1 No such user"
    with pytest.raises(DeliveryError) as info:
        email_channel(smtp_sink).send(digest())
    assert info.value.retryable is False
    assert info.value.status_code == 550
    assert smtp_sink.messages == []


def test_temporary_recipient_rejection_is_retryable(smtp_sink: SmtpSink) -> None:
    smtp_sink.reject[LEADER] = "450 4.2.1 Mailbox busy, try later"
    with pytest.raises(DeliveryError) as info:
        email_channel(smtp_sink).send(digest())
    assert info.value.retryable is True
    assert info.value.status_code == 450


def test_login_with_secret_password(smtp_sink: SmtpSink) -> None:
    smtp_sink.credentials = ("tzk", "pa55-word")
    email_channel(smtp_sink, user="tzk", password=SecretStr("pa55-word")).send(digest())
    assert len(smtp_sink.messages) == 1
    with pytest.raises(DeliveryError) as info:
        email_channel(smtp_sink, user="tzk", password=SecretStr("wrong")).send(digest())
    assert info.value.retryable is False
    assert "认证失败" in str(info.value)
    assert "wrong" not in str(info.value)


def test_header_injection_is_refused_not_retried(smtp_sink: SmtpSink) -> None:
    with pytest.raises(DeliveryError) as info:
        email_channel(smtp_sink).send(digest(recipient=f"{LEADER}\r\nBcc: all@example.com"))
    assert info.value.retryable is False
    assert smtp_sink.messages == []


def test_bad_email_configuration() -> None:
    with pytest.raises(ChannelConfigError, match="none、starttls 或 ssl"):
        EmailChannel("127.0.0.1", 25, None, None, "tls", "tzk@jzfgw.gov.cn")  # type: ignore[arg-type]
    with pytest.raises(ChannelConfigError, match="发件人"):
        EmailChannel("127.0.0.1", 25, None, None, "none", "pipeline")
    with pytest.raises(ChannelConfigError, match="ASCII"):
        EmailChannel("127.0.0.1", 25, "tzk", SecretStr("口令"), "none", "tzk@jzfgw.gov.cn")


# --- the .eml folder -----------------------------------------------------------------------------


def test_outbox_folder_writes_one_parseable_eml_per_key(tmp_path: Path) -> None:
    channel = OutboxFolderChannel(tmp_path / "outbox", sender="tzk@jzfgw.gov.cn", now=lambda: SENT_AT)
    receipt = channel.send(digest())
    channel.send(digest())  # a resend replaces, never duplicates
    files = list((tmp_path / "outbox").iterdir())
    assert files == [tmp_path / "outbox" / f"{hashlib.sha256(KEY.encode()).hexdigest()[:32]}.eml"]
    assert receipt.status_code is None and str(files[0]) in receipt.detail
    message = parse(files[0].read_bytes())
    assert message["To"] == LEADER
    assert message["Subject"] == SUBJECT
    assert message["Message-ID"] == expected_message_id(KEY)
    assert text_of(message, "plain") == TEXT
    [attachment] = list(message.iter_attachments())
    assert openpyxl.load_workbook(io.BytesIO(attachment.get_content()))["红黄牌项目"]["B2"].value == "荆州区城北快速路"


def test_folder_and_smtp_build_the_same_message(smtp_sink: SmtpSink, tmp_path: Path) -> None:
    sender = "tzk@jzfgw.gov.cn"
    email_channel(smtp_sink, sender=sender).send(digest())
    OutboxFolderChannel(tmp_path, sender=sender, now=lambda: SENT_AT).send(digest())
    over_smtp = parse(smtp_sink.messages[0].content)
    in_file = parse(next(tmp_path.glob("*.eml")).read_bytes())
    for header in ("From", "To", "Subject", "Date", "Message-ID"):
        assert over_smtp[header] == in_file[header]


# --- webhooks: generic JSON ----------------------------------------------------------------------

PAYLOAD = {
    "title": "项目转为红牌",
    "text": "荆州区城北快速路：计划2024-03-01开工，已逾期112天未开工",
    "project": {"code": "2024-421003-44-01-000123", "name": "荆州区城北快速路", "flag": "red"},
}


def red_notice(recipient: str, key: str = "red:2024-421003-44-01-000123:episode:7") -> OutgoingMessage:
    return OutgoingMessage(
        key=key,
        recipient=recipient,
        subject="【红牌】荆州区城北快速路",
        text=PAYLOAD["text"],  # type: ignore[arg-type]
        payload={**PAYLOAD, "markdown": "### 项目转为红牌\n**荆州区城北快速路**\n> 已逾期112天未开工"},
    )


def test_json_webhook_is_signed_and_verifies_at_the_receiver(http_receiver: HttpReceiver) -> None:
    secret = SecretStr("共享密钥-s3cret")
    channel = WebhookChannel(http_receiver.url, secret=secret, format="json", timeout=5)
    receipt = channel.send(red_notice(http_receiver.url))

    assert receipt.status_code == 200
    [request] = http_receiver.requests
    assert request.path == "/hook"
    assert request.headers["idempotency-key"] == hashlib.sha256(b"red:2024-421003-44-01-000123:episode:7").hexdigest()[:32]
    assert request.headers["content-type"].startswith("application/json")
    timestamp = request.headers["x-pipeline-timestamp"]
    signature = request.headers["x-pipeline-signature"]
    assert signature.startswith("sha256=")
    assert verify_signature(secret, timestamp, request.body, signature)
    assert verify_signature("共享密钥-s3cret", timestamp, request.body, signature)
    # independently recomputed, and tamper-evident
    mac = hmac.new("共享密钥-s3cret".encode(), f"{timestamp}.".encode() + request.body, hashlib.sha256)
    assert signature == f"sha256={mac.hexdigest()}"
    assert not verify_signature(secret, timestamp, request.body + b" ", signature)
    assert not verify_signature(secret, str(int(timestamp) + 1), request.body, signature)
    assert not verify_signature("other", timestamp, request.body, signature)
    body = request.json()
    assert body["project"] == PAYLOAD["project"]
    assert body["title"] == "项目转为红牌"


def test_unsigned_json_webhook_has_no_signature(http_receiver: HttpReceiver) -> None:
    WebhookChannel(http_receiver.url, format="json").send(red_notice(http_receiver.url))
    assert "x-pipeline-signature" not in http_receiver.requests[0].headers
    assert "x-pipeline-timestamp" in http_receiver.requests[0].headers


def test_500_then_200_retries_then_delivers(http_receiver: HttpReceiver) -> None:
    http_receiver.answer((500, b"stack trace: db password=hunter2"), 200)
    channel = WebhookChannel(http_receiver.url, secret=SecretStr("k"), timeout=5)
    with pytest.raises(DeliveryError) as info:
        channel.send(red_notice(http_receiver.url))
    assert info.value.retryable is True
    assert info.value.status_code == 500
    assert "hunter2" not in str(info.value)  # the response body stays out of errors
    assert channel.send(red_notice(http_receiver.url)).status_code == 200
    keys = [r.headers["idempotency-key"] for r in http_receiver.requests]
    assert len(keys) == 2 and keys[0] == keys[1]


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(404, False), (400, False), (401, False), (408, True), (429, True), (502, True), (503, True), (302, False),
     (301, False)],
)
def test_status_codes(http_receiver: HttpReceiver, status: int, retryable: bool) -> None:
    http_receiver.answer(status)
    http_receiver.headers_out["Location"] = "http://127.0.0.1:1/elsewhere"
    with pytest.raises(DeliveryError) as info:
        WebhookChannel(http_receiver.url, timeout=5).send(red_notice(http_receiver.url))
    assert info.value.retryable is retryable
    assert info.value.status_code == status
    assert len(http_receiver.requests) == 1  # a redirect is not followed


def test_timeout_is_retryable(http_receiver: HttpReceiver) -> None:
    http_receiver.delay = 1.0
    with pytest.raises(DeliveryError) as info:
        WebhookChannel(http_receiver.url, timeout=0.2).send(red_notice(http_receiver.url))
    assert info.value.retryable is True
    assert "超时" in str(info.value)


def test_every_copy_carries_one_idempotency_key_without_the_urls_credentials(http_receiver: HttpReceiver) -> None:
    """A robot URL's access_token is in the outbox key; the key sent is an opaque digest of it."""
    url = f"{http_receiver.url}?access_token=tok-5ecret-77"
    key = f"red_notice:7:dingtalk:{url}"
    http_receiver.answer(503, 200)
    channel = WebhookChannel(url, format="dingtalk", secret=SecretStr("SEC-k"), timeout=5)
    with pytest.raises(DeliveryError):
        channel.send(red_notice(url, key=key))
    channel.send(red_notice(url, key=key))
    keys = {r.headers["idempotency-key"] for r in http_receiver.requests}
    assert keys == {hashlib.sha256(key.encode()).hexdigest()[:32]}
    [sent] = keys
    assert "tok-5ecret-77" not in sent and "SEC-k" not in sent and "hook" not in sent


def test_webhook_down_is_retryable() -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"
    with pytest.raises(DeliveryError) as info:
        WebhookChannel(url, timeout=2).send(red_notice(url))
    assert info.value.retryable is True


@pytest.mark.parametrize("url", ["ftp://example.com/hook", "file:///etc/passwd", "127.0.0.1:8080/hook", "http://"])
def test_non_http_urls_are_refused(url: str) -> None:
    with pytest.raises(ChannelConfigError):
        WebhookChannel(url)


def test_message_for_another_endpoint_is_not_sent(http_receiver: HttpReceiver) -> None:
    with pytest.raises(DeliveryError) as info:
        WebhookChannel(http_receiver.url).send(red_notice("http://127.0.0.1:9/other"))
    assert info.value.retryable is False
    assert http_receiver.requests == []


# --- webhooks: WeCom and DingTalk robots ---------------------------------------------------------


def test_wecom_payload_shape(http_receiver: HttpReceiver) -> None:
    url = f"{http_receiver.url}?key=robot-key-693a91f6"
    WebhookChannel(url, format="wecom").send(red_notice(url))
    [request] = http_receiver.requests
    assert request.query == {"key": ["robot-key-693a91f6"]}
    assert request.json() == {
        "msgtype": "markdown",
        "markdown": {"content": "### 项目转为红牌\n**荆州区城北快速路**\n> 已逾期112天未开工"},
    }


def test_wecom_content_is_cut_to_4096_bytes(http_receiver: HttpReceiver) -> None:
    url = http_receiver.url
    long = OutgoingMessage(key="k", recipient=url, subject="s", text="", payload={"markdown": "红" * 3000})
    WebhookChannel(url, format="wecom").send(long)
    content = http_receiver.requests[0].json()["markdown"]["content"]
    assert len(content.encode("utf-8")) <= 4096
    assert content.endswith("…")


def test_wecom_refuses_a_secret() -> None:
    with pytest.raises(ChannelConfigError):
        WebhookChannel("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=x", format="wecom", secret=SecretStr("s"))


def test_dingtalk_payload_shape_without_secret(http_receiver: HttpReceiver) -> None:
    url = f"{http_receiver.url}?access_token=tok"
    WebhookChannel(url, format="dingtalk").send(red_notice(url))
    [request] = http_receiver.requests
    assert request.query == {"access_token": ["tok"]}
    assert request.json() == {
        "msgtype": "markdown",
        "markdown": {"title": "项目转为红牌", "text": "### 项目转为红牌\n**荆州区城北快速路**\n> 已逾期112天未开工"},
    }


def test_dingtalk_signed_url(http_receiver: HttpReceiver) -> None:
    url = f"{http_receiver.url}?access_token=tok"
    secret = "SEC0123456789abcdef"
    WebhookChannel(url, format="dingtalk", secret=SecretStr(secret), now=lambda: SENT_AT).send(red_notice(url))
    [request] = http_receiver.requests
    assert request.query["access_token"] == ["tok"]
    [timestamp] = request.query["timestamp"]
    [sign] = request.query["sign"]  # parse_qs has URL-decoded it
    assert timestamp == str(int(SENT_AT.timestamp() * 1000))
    mac = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256).digest()
    assert sign == base64.b64encode(mac).decode()
    assert request.json()["msgtype"] == "markdown"


@pytest.mark.parametrize(
    ("fmt", "errcode", "retryable"),
    [("wecom", 45009, True), ("wecom", 93000, False), ("dingtalk", 130101, True), ("dingtalk", 310000, False)],
)
def test_robot_errcode_on_200_is_a_failure(http_receiver: HttpReceiver, fmt: str, errcode: int, retryable: bool) -> None:
    http_receiver.answer((200, {"errcode": errcode, "errmsg": "robot said no"}))
    with pytest.raises(DeliveryError) as info:
        WebhookChannel(http_receiver.url, format=fmt).send(red_notice(http_receiver.url))  # type: ignore[arg-type]
    assert info.value.retryable is retryable
    assert str(errcode) in str(info.value)


def test_robot_key_stays_out_of_errors(http_receiver: HttpReceiver) -> None:
    url = f"{http_receiver.url}?key=robot-key-693a91f6"
    http_receiver.answer(503)
    with pytest.raises(DeliveryError) as info:
        WebhookChannel(url, format="wecom").send(red_notice(url))
    assert "robot-key-693a91f6" not in str(info.value)
    assert "/hook" in str(info.value)


# --- the registry --------------------------------------------------------------------------------


def test_registry_maps_kinds_to_classes() -> None:
    assert CHANNELS == {"email": EmailChannel, "outbox_folder": OutboxFolderChannel, "webhook": WebhookChannel}
    assert channel_class("webhook") is WebhookChannel
    with pytest.raises(ChannelConfigError, match="sms"):
        channel_class("sms")


def test_json_body_is_compact_utf8(http_receiver: HttpReceiver) -> None:
    WebhookChannel(http_receiver.url).send(red_notice(http_receiver.url))
    body = http_receiver.requests[0].body
    assert "荆州区城北快速路".encode() in body  # not \\u-escaped
    assert json.loads(body) == PAYLOAD | {"markdown": "### 项目转为红牌\n**荆州区城北快速路**\n> 已逾期112天未开工"}


def test_a_mail_server_needs_a_real_sender_address(tmp_path: Path) -> None:
    from pipeline.errors import SettingsError
    from pipeline.settings import load_settings

    with pytest.raises(SettingsError, match="未设置 PIPELINE_SMTP_SENDER"):
        load_settings(data_dir=tmp_path, smtp_host="smtp.example.org")
    with pytest.raises(SettingsError, match="不是有效的发件人邮箱地址"):
        load_settings(data_dir=tmp_path, smtp_host="smtp.example.org", smtp_sender="pipeline")
    ok = load_settings(data_dir=tmp_path, smtp_host="smtp.example.org", smtp_sender="项目办 <pipeline@jingzhou.gov.cn>")
    assert ok.smtp_sender == "项目办 <pipeline@jingzhou.gov.cn>"
    assert load_settings(data_dir=tmp_path, smtp_sender="").smtp_sender is None  # .eml files need none
