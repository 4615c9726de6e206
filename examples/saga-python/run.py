"""One command for the whole example: starts a worker in this process and runs two trips.

1. every booking succeeds -> the workflow returns three confirmations;
2. the car rental refuses (a non-retryable error) -> the hotel and then the flight are
   cancelled (reverse order), and the workflow fails with "TripNotBooked".

Checks each outcome, the order in which the activities ran, and the order of the activities
in the workflow's history as Keel stored it. Exits 0 only if every check passed.
Connects to $TEMPORAL_ADDRESS (default localhost:7233, where `keel up` listens).
"""

import asyncio
import os
import sys
import uuid

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

import activities
from shared import TASK_QUEUE, Trip, temporal_address
from workflow import BookTripWorkflow

failures: list[str] = []


def expect(what: str, got, want) -> None:
    if got == want:
        print(f"ok   {what}: {got}", flush=True)
    else:
        print(f"FAIL {what}: got {got}, expected {want}", flush=True)
        failures.append(what)


async def scheduled_activities(handle: WorkflowHandle) -> list[str]:
    """The activity types in the order the workflow scheduled them, from its history."""
    names = []
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            names.append(event.activity_task_scheduled_event_attributes.activity_type.name)
    return names


async def book(client: Client, fail_step) -> tuple[WorkflowHandle, Trip]:
    trip = Trip(trip_id=f"trip-{uuid.uuid4().hex[:8]}", traveller="Ada", destination="Lisbon", fail_step=fail_step)
    handle = await client.start_workflow(BookTripWorkflow.run, trip, id=trip.trip_id, task_queue=TASK_QUEUE)
    print(f"started workflow {trip.trip_id}" + (f" ({fail_step} booking will be refused)" if fail_step else ""), flush=True)
    return handle, trip


async def all_succeed(client: Client) -> None:
    print("\n== scenario 1: every booking succeeds", flush=True)
    handle, trip = await book(client, None)
    result = await handle.result()
    expect("confirmations", result.confirmations, [f"flight-{trip.trip_id}", f"hotel-{trip.trip_id}", f"car-{trip.trip_id}"])
    expect("activities run", activities.JOURNAL.get(trip.trip_id), ["book_flight", "book_hotel", "book_car"])
    expect("activities in history", await scheduled_activities(handle), ["book_flight", "book_hotel", "book_car"])


async def car_refused(client: Client) -> None:
    print("\n== scenario 2: the car rental refuses -> compensate in reverse order", flush=True)
    handle, trip = await book(client, "car")
    try:
        result = await handle.result()
        print(f"FAIL the workflow succeeded: {result}", flush=True)
        failures.append("scenario 2 outcome")
        return
    except WorkflowFailureError as err:
        cause = err.cause
        print(f"workflow failed as it should: {cause}", flush=True)
        expect("failure type", getattr(cause, "type", None), "TripNotBooked")
        details = list(cause.details) if isinstance(cause, ApplicationError) else None
        expect("compensations reported by the workflow", details, [["cancel_hotel", "cancel_flight"]])
    want = ["book_flight", "book_hotel", "book_car", "cancel_hotel", "cancel_flight"]
    expect("activities run", activities.JOURNAL.get(trip.trip_id), want)
    expect("activities in history", await scheduled_activities(handle), want)


async def main() -> int:
    client = await Client.connect(temporal_address())
    print(f"connected to {temporal_address()}; worker on task queue {TASK_QUEUE!r}", flush=True)
    async with Worker(
        client,
        task_queue=TASK_QUEUE,
        workflows=[BookTripWorkflow],
        activities=[
            activities.book_flight,
            activities.book_hotel,
            activities.book_car,
            activities.cancel_flight,
            activities.cancel_hotel,
            activities.cancel_car,
        ],
    ):
        await all_succeed(client)
        await car_refused(client)
    print("\nworker stopped", flush=True)
    print("all checks passed" if not failures else f"{len(failures)} check(s) failed: {', '.join(failures)}", flush=True)
    return 0 if not failures else 1


if __name__ == "__main__":
    code = asyncio.run(main())
    # Skip CPython's interpreter teardown: the SDK's Rust threads can outlive the event loop and
    # abort it ("Fatal Python error: PyGILState_Release ... finalizing", temporalio/sdk-python#300)
    # after everything has already succeeded.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
