"""The order's side effects. In a real service these would call a payment provider and a
push-notification service; here they print, so you can watch them run (and retry)."""

from temporalio import activity

from shared import Order


def _log(msg: str) -> None:
    info = activity.info()
    print(f"  [activity {info.activity_type}, attempt {info.attempt}] {msg}", flush=True)


@activity.defn
async def charge(order: Order) -> str:
    _log(f"charging {order.customer} {order.amount_cents / 100:.2f} for {order.order_id}")
    return f"charge-{order.order_id}"


@activity.defn
async def refund(order: Order, reason: str) -> str:
    _log(f"refunding {order.amount_cents / 100:.2f} to {order.customer} ({reason})")
    return f"refund-{order.order_id}"


@activity.defn
async def notify(order: Order, message: str) -> None:
    _log(f"to {order.customer}: {message}")
