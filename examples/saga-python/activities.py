"""Bookings and their compensations. Each prints what it does and appends its name to an
in-process journal, so run.py can check which ran, in which order."""

from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from shared import Trip

# trip id -> names of the activities that ran for it, in order (run.py reads it; the worker
# runs in the same process).
JOURNAL: dict[str, list[str]] = {}


def _record(trip: Trip, msg: str) -> None:
    name = activity.info().activity_type
    JOURNAL.setdefault(trip.trip_id, []).append(name)
    print(f"  [activity {name}] {msg}", flush=True)


def _book(trip: Trip, step: str, what: str) -> str:
    if trip.fail_step == step:
        _record(trip, f"{what}: refused")
        # A business refusal: not worth retrying (the workflow compensates instead), and
        # benign, so the worker logs it at DEBUG rather than as a warning with a traceback.
        raise ApplicationError(
            f"no {step} available in {trip.destination}",
            type="Unavailable",
            non_retryable=True,
            category=ApplicationErrorCategory.BENIGN,
        )
    confirmation = f"{step}-{trip.trip_id}"
    _record(trip, f"{what}: confirmed {confirmation}")
    return confirmation


@activity.defn
async def book_flight(trip: Trip) -> str:
    return _book(trip, "flight", f"flight for {trip.traveller} to {trip.destination}")


@activity.defn
async def book_hotel(trip: Trip) -> str:
    return _book(trip, "hotel", f"hotel in {trip.destination}")


@activity.defn
async def book_car(trip: Trip) -> str:
    return _book(trip, "car", f"rental car in {trip.destination}")


@activity.defn
async def cancel_flight(trip: Trip, confirmation: str) -> None:
    _record(trip, f"cancelled {confirmation}")


@activity.defn
async def cancel_hotel(trip: Trip, confirmation: str) -> None:
    _record(trip, f"cancelled {confirmation}")


@activity.defn
async def cancel_car(trip: Trip, confirmation: str) -> None:
    _record(trip, f"cancelled {confirmation}")
