"""What the product promises about sending (SPEC §6), in the users' words: said wherever sending is
described (web, CLI help, README), never more. Plain text, no imports: the CLI's help reads it."""

DELIVERY_PROMISE = (
    "每条消息只规划一次，发送至少一次：只有当邮件服务器或接收方的应答丢失（如已交付后断线、超时）时才可能重复送达，"
    "同一消息的每一份都带有相同的 Message-ID / Idempotency-Key，接收方可据此去重。"
)


def retry_promise(hours: float) -> str:
    """How failed sends are retried, for a window of ``hours``."""
    return (f"邮件服务器或 Webhook 暂时不可用时按指数退避重试，从第一次发送起最长 {hours:g} 小时；"
            "仍未成功、或被对方明确拒绝的，标记为「发送失败」并记下原因，可在此查看并重发。")
