"""Topic names, defined once. Every topic is keyed by the service area (the unit of dispatch and of
scaling out), so one elder's events stay in order."""

from __future__ import annotations

ORDERS = "homecare.orders"  # commands into dispatch
VISITS = "homecare.visits"  # visit lifecycle out of dispatch
FUNDING = "homecare.funding"  # reservations and charges from ledger and timebank

DLQ_SUFFIX = ".dlq"


def dlq(topic: str) -> str:
    """The dead-letter topic of `topic`."""
    return f"{topic}{DLQ_SUFFIX}"


ALL_TOPICS: tuple[str, ...] = (ORDERS, VISITS, FUNDING)
DLQ_TOPICS: tuple[str, ...] = tuple(dlq(t) for t in ALL_TOPICS)

# Partitions bound how far a consumer group scales out (one service area never spans two).
# Dead letters are rare and read by people: one partition keeps them in arrival order.
DEFAULT_PARTITIONS: dict[str, int] = {
    **{topic: 6 for topic in ALL_TOPICS},
    **{topic: 1 for topic in DLQ_TOPICS},
}
