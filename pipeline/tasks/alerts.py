"""Send what is due in the outbox: a thin shell over the sender.

Acknowledged early: the database, not the broker, keeps what is due, and the scheduler queues
this task again every tick, so a lost task loses nothing; a late ack would let Celery cancel a send
in flight when the broker connection drops. The sender waits out database outages itself.
"""

from __future__ import annotations

from celery import shared_task

from pipeline.runtime import get_runtime


@shared_task(name="pipeline.deliver_outbox", acks_late=False)
def deliver_outbox_task() -> None:
    from pipeline.tasks.dispatch import deliver_now  # dispatch queues this task: import at call time

    deliver_now(get_runtime())
