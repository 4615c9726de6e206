"""The food-delivery order workflow.

charge -> wait for "pickedUp" -> wait for "delivered" -> durable sleep -> notify -> "completed".
If either wait times out, the order is refunded and the workflow ends with
"refunded: not picked up" / "refunded: not delivered". The query "getStatus" returns the
current step at any time, also after the workflow has closed.
"""

import asyncio
from datetime import timedelta
from typing import Callable

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities import charge, notify, refund
    from shared import Order

ACTIVITY_OPTIONS = dict(
    start_to_close_timeout=timedelta(seconds=10),
    retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=200)),
)


@workflow.defn(name="FoodDelivery")
class FoodDeliveryWorkflow:
    def __init__(self) -> None:
        self._status = "received"
        self._picked_up = False
        self._delivered = False
        self._courier = ""

    @workflow.run
    async def run(self, order: Order) -> str:
        self._status = "charging"
        await workflow.execute_activity(charge, order, **ACTIVITY_OPTIONS)

        self._status = "waiting for pickup"
        if not await self._wait(lambda: self._picked_up, order.pickup_timeout_seconds):
            return await self._refund(order, "not picked up")

        self._status = "out for delivery"
        if not await self._wait(lambda: self._delivered, order.delivery_timeout_seconds):
            return await self._refund(order, "not delivered")

        self._status = "delivered"
        # A durable timer: it survives worker restarts and server node failures.
        await workflow.sleep(order.feedback_delay_seconds)

        self._status = "notifying"
        await workflow.execute_activity(
            notify,
            args=[order, f"Enjoy your meal! {self._courier} delivered {order.order_id}."],
            **ACTIVITY_OPTIONS,
        )
        self._status = "completed"
        return "completed"

    @workflow.signal(name="pickedUp")
    def picked_up(self, courier: str) -> None:
        self._courier = courier
        self._picked_up = True

    @workflow.signal(name="delivered")
    def delivered(self) -> None:
        self._delivered = True

    @workflow.query(name="getStatus")
    def get_status(self) -> str:
        return self._status

    async def _wait(self, done: Callable[[], bool], timeout_seconds: float) -> bool:
        try:
            await workflow.wait_condition(done, timeout=timedelta(seconds=timeout_seconds))
            return True
        except asyncio.TimeoutError:
            return False

    async def _refund(self, order: Order, reason: str) -> str:
        self._status = "refunding"
        await workflow.execute_activity(refund, args=[order, reason], **ACTIVITY_OPTIONS)
        self._status = f"refunded: {reason}"
        return self._status
