"""Types and names shared by the workflow, the activities, the worker and the starter."""

import os
from dataclasses import dataclass, field

TASK_QUEUE = "food-delivery-python"


def temporal_address() -> str:
    """Where Keel (or any Temporal service) listens; `keel up` serves Temporal's default."""
    return os.environ.get("TEMPORAL_ADDRESS", "localhost:7233")


@dataclass
class Order:
    order_id: str
    customer: str
    items: list[str] = field(default_factory=list)
    amount_cents: int = 0
    # How long the restaurant may take to hand the order to a courier, and the courier to
    # deliver it, before the order is refunded.
    pickup_timeout_seconds: float = 60.0
    delivery_timeout_seconds: float = 60.0
    # A durable timer between delivery and the "how was your meal?" notification.
    feedback_delay_seconds: float = 2.0
