"""One command for the whole example: starts a worker in this process, runs the starter's
scenario against it, stops the worker. Exits 0 only if every check passed.

    python run.py                      # charge, pickup, delivery, timer, notify -> "completed"
    python run.py --scenario no-pickup # nobody picks up -> refund -> "refunded: not picked up"

Connects to $TEMPORAL_ADDRESS (default localhost:7233, where `keel up` listens).
"""

import asyncio
import os
import sys

from temporalio.client import Client

from shared import TASK_QUEUE, temporal_address
from starter import parse_args, run_scenario
from worker import make_worker


async def main() -> int:
    args = parse_args()
    client = await Client.connect(temporal_address())
    print(f"connected to {temporal_address()}; worker on task queue {TASK_QUEUE!r}", flush=True)
    async with make_worker(client):
        ok = await run_scenario(client, args.scenario)
    print("worker stopped", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    code = asyncio.run(main())
    # Skip CPython's interpreter teardown: the SDK's Rust threads can outlive the event loop and
    # abort it ("Fatal Python error: PyGILState_Release ... finalizing", temporalio/sdk-python#300)
    # after everything has already succeeded.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
