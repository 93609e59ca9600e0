"""Messaging adapter of the dispatch service: what it consumes and publishes (thin)."""

from __future__ import annotations

from contracts.topics import ORDERS, VISITS
from services.dispatch.application import DispatchApplication
from services.runtime.messaging import MessagingSpec, service_messaging

PUBLISHES = [VISITS, ORDERS]


def messaging_spec(app: DispatchApplication) -> MessagingSpec:
    return service_messaging("dispatch", app, PUBLISHES)
