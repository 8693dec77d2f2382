"""Delivery channels behind one small interface (``base.Channel``); ``CHANNELS`` maps a kind to its class.

A new channel (an SMS gateway, say) is one class with a ``kind`` and a ``send`` method, added here.
"""

from __future__ import annotations

from pipeline.alerts.channels.base import (
    Attachment,
    Channel,
    ChannelConfigError,
    DeliveryError,
    DeliveryReceipt,
    OutgoingMessage,
)
from pipeline.alerts.channels.email import EmailChannel, OutboxFolderChannel
from pipeline.alerts.channels.webhook import WebhookChannel, verify_signature

CHANNELS: dict[str, type[Channel]] = {
    EmailChannel.kind: EmailChannel,
    OutboxFolderChannel.kind: OutboxFolderChannel,
    WebhookChannel.kind: WebhookChannel,
}


def channel_class(kind: str) -> type[Channel]:
    """The class for ``kind``; an unknown kind raises ``ChannelConfigError`` listing the known ones."""
    try:
        return CHANNELS[kind]
    except KeyError:
        raise ChannelConfigError(f"未知的通道类型 {kind!r}；可用：{', '.join(sorted(CHANNELS))}") from None


__all__ = [
    "CHANNELS",
    "Attachment",
    "Channel",
    "ChannelConfigError",
    "DeliveryError",
    "DeliveryReceipt",
    "EmailChannel",
    "OutboxFolderChannel",
    "OutgoingMessage",
    "WebhookChannel",
    "channel_class",
    "verify_signature",
]
