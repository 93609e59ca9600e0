"""The public contract between the services: integration events, topics and their JSON Schemas.

Import events from `contracts.events`, topics from `contracts.topics`; consumers turn message
values into events with `contracts.registry.parse_event`.
"""

from contracts.envelope import EventPayload, IntegrationEvent
from contracts.registry import EVENT_TYPES, TOPIC_OF, UPCASTERS, ContractError, parse_event

__all__ = [
    "EVENT_TYPES",
    "TOPIC_OF",
    "UPCASTERS",
    "ContractError",
    "EventPayload",
    "IntegrationEvent",
    "parse_event",
]
