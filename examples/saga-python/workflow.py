"""The trip-booking saga: book flight, hotel and car in order; if a booking fails, undo the
completed ones in reverse order (their compensations), then fail the workflow with an error
that names the compensations that ran."""

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities import book_car, book_flight, book_hotel, cancel_car, cancel_flight, cancel_hotel
    from shared import Trip, TripBooked

# Bookings retry transient errors (a provider's non-retryable refusal stops them at once);
# compensations retry until they succeed, since a half-cancelled trip is worse than a slow one.
OPTIONS = dict(
    start_to_close_timeout=timedelta(seconds=10),
    retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_attempts=5),
)
COMPENSATION_OPTIONS = dict(
    start_to_close_timeout=timedelta(seconds=10),
    retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=200)),
)

STEPS = [(book_flight, cancel_flight), (book_hotel, cancel_hotel), (book_car, cancel_car)]


@workflow.defn(name="BookTrip")
class BookTripWorkflow:
    @workflow.run
    async def run(self, trip: Trip) -> TripBooked:
        booked = TripBooked(trip_id=trip.trip_id)
        # Compensations of the completed steps, in the order they were booked.
        undo: list = []
        try:
            for book, cancel in STEPS:
                confirmation = await workflow.execute_activity(book, trip, **OPTIONS)
                booked.confirmations.append(confirmation)
                undo.append((cancel, confirmation))
        except ActivityError as err:
            cause = err.cause.message if isinstance(err.cause, ApplicationError) else str(err)
            workflow.logger.info("booking failed (%s); compensating", cause)
            compensated = []
            for cancel, confirmation in reversed(undo):
                await workflow.execute_activity(cancel, args=[trip, confirmation], **COMPENSATION_OPTIONS)
                compensated.append(cancel.__name__)
            raise ApplicationError(
                f"trip {trip.trip_id} not booked: {cause}; compensated: {', '.join(compensated) or 'nothing'}",
                compensated,
                type="TripNotBooked",
                non_retryable=True,
            )
        return booked
