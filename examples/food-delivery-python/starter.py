"""Places an order and plays the restaurant and the courier: sends the signals with small
pauses, queries the status between the steps and checks each answer.

`python starter.py [--scenario delivered|no-pickup]` needs a worker (python worker.py);
run.py runs both in one process.
"""

import argparse
import asyncio
import os
import sys
import time
import uuid

from temporalio.client import Client, WorkflowHandle

from shared import TASK_QUEUE, Order, temporal_address
from workflow import FoodDeliveryWorkflow


def _env_seconds(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


class Scenario:
    def __init__(self, client: Client) -> None:
        self.client = client
        self.started = time.monotonic()
        self.failures: list[str] = []

    def say(self, msg: str) -> None:
        print(f"[{time.monotonic() - self.started:6.2f}s] {msg}", flush=True)

    def expect(self, what: str, got: str, want: str) -> None:
        if got == want:
            self.say(f"ok   {what}: {got!r}")
        else:
            self.say(f"FAIL {what}: got {got!r}, expected {want!r}")
            self.failures.append(f"{what}: got {got!r}, expected {want!r}")

    async def status(self, handle: WorkflowHandle) -> str:
        return await handle.query(FoodDeliveryWorkflow.get_status)

    async def status_after(self, handle: WorkflowHandle, want: str, passing: set[str]) -> None:
        """Queries until the status leaves the `passing` steps (ones the workflow may still be
        in because an activity is running), then checks it is `want`."""
        deadline = time.monotonic() + 60
        got = await self.status(handle)
        while got in passing and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            got = await self.status(handle)
        self.expect("status", got, want)

    async def run(self, scenario: str) -> bool:
        pause = _env_seconds("STEP_PAUSE_SECONDS", 1.0)
        order = Order(
            order_id=f"order-{uuid.uuid4().hex[:8]}",
            customer="Ada",
            items=["margherita", "tiramisu"],
            amount_cents=2350,
            pickup_timeout_seconds=_env_seconds("PICKUP_TIMEOUT_SECONDS", 60.0),
            delivery_timeout_seconds=_env_seconds("DELIVERY_TIMEOUT_SECONDS", 60.0),
            feedback_delay_seconds=_env_seconds("FEEDBACK_DELAY_SECONDS", 2.0),
        )
        if scenario == "no-pickup":
            # Nobody picks the order up: keep the wait short so the refund comes quickly.
            order.pickup_timeout_seconds = _env_seconds("NO_PICKUP_TIMEOUT_SECONDS", 3.0)

        handle = await self.client.start_workflow(
            FoodDeliveryWorkflow.run, order, id=order.order_id, task_queue=TASK_QUEUE
        )
        self.say(f"started workflow {order.order_id} (run {handle.result_run_id})")
        await self.status_after(handle, "waiting for pickup", {"received", "charging"})

        if scenario == "no-pickup":
            self.say(f"nobody picks the order up within {order.pickup_timeout_seconds:g}s ...")
            result = await handle.result()
            self.expect("result", result, "refunded: not picked up")
            self.expect("status after the end", await self.status(handle), "refunded: not picked up")
            return not self.failures

        await asyncio.sleep(pause)
        await handle.signal(FoodDeliveryWorkflow.picked_up, "courier Grace")
        self.say("signalled pickedUp")
        self.expect("status", await self.status(handle), "out for delivery")

        await asyncio.sleep(pause)
        await handle.signal(FoodDeliveryWorkflow.delivered)
        self.say("signalled delivered")
        self.expect("status", await self.status(handle), "delivered")

        self.say(f"waiting for the result (a {order.feedback_delay_seconds:g}s durable timer, then notify)")
        result = await handle.result()
        self.expect("result", result, "completed")
        self.expect("status after the end", await self.status(handle), "completed")
        return not self.failures


async def run_scenario(client: Client, scenario: str) -> bool:
    s = Scenario(client)
    ok = await s.run(scenario)
    if ok:
        s.say(f"scenario {scenario!r}: all checks passed")
    else:
        s.say(f"scenario {scenario!r}: {len(s.failures)} check(s) failed")
    return ok


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", choices=["delivered", "no-pickup"], default="delivered")
    return p.parse_args()


async def main() -> int:
    args = parse_args()
    client = await Client.connect(temporal_address())
    return 0 if await run_scenario(client, args.scenario) else 1


if __name__ == "__main__":
    code = asyncio.run(main())
    # Skip CPython's interpreter teardown: the SDK's Rust threads can outlive the event loop and
    # abort it ("Fatal Python error: PyGILState_Release ... finalizing", temporalio/sdk-python#300)
    # after everything has already succeeded.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
