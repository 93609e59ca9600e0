"""Messaging adapter of the timebank service: what it consumes and publishes (thin)."""

from __future__ import annotations

from contracts.topics import FUNDING, ORDERS
from services.runtime.messaging import MessagingSpec, service_messaging
from services.timebank.application import TimebankApplication

# Funding answers and credits; redemptions place orders in dispatch.
PUBLISHES = [FUNDING, ORDERS]


def messaging_spec(app: TimebankApplication) -> MessagingSpec:
    return service_messaging("timebank", app, PUBLISHES)
