"""A worker for the food-delivery task queue. `python worker.py` runs one until Ctrl-C;
run.py starts one in-process instead."""

import asyncio
import os
import sys

from temporalio.client import Client
from temporalio.worker import Worker

from activities import charge, notify, refund
from shared import TASK_QUEUE, temporal_address
from workflow import FoodDeliveryWorkflow


def make_worker(client: Client) -> Worker:
    return Worker(
        client,
        task_queue=TASK_QUEUE,
        workflows=[FoodDeliveryWorkflow],
        activities=[charge, refund, notify],
    )


async def main() -> None:
    client = await Client.connect(temporal_address())
    print(f"worker polling {TASK_QUEUE!r} at {temporal_address()}; Ctrl-C stops it", flush=True)
    await make_worker(client).run()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    # Skip CPython's interpreter teardown, which the SDK's Rust threads can abort
    # (temporalio/sdk-python#300); see run.py.
    sys.stdout.flush()
    os._exit(0)
