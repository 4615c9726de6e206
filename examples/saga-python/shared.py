"""Types and names shared by the workflow, the activities and run.py."""

import os
from dataclasses import dataclass, field
from typing import Optional

TASK_QUEUE = "trip-saga-python"


def temporal_address() -> str:
    """Where Keel (or any Temporal service) listens; `keel up` serves Temporal's default."""
    return os.environ.get("TEMPORAL_ADDRESS", "localhost:7233")


@dataclass
class Trip:
    trip_id: str
    traveller: str
    destination: str
    # For the demo: the booking step ("flight", "hotel" or "car") whose provider refuses.
    fail_step: Optional[str] = None


@dataclass
class TripBooked:
    trip_id: str
    confirmations: list[str] = field(default_factory=list)
