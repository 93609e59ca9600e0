"""Messaging adapter of the ledger service: what it consumes and publishes (thin)."""

from __future__ import annotations

from contracts.topics import FUNDING
from services.ledger.application import LedgerApplication
from services.runtime.messaging import MessagingSpec, service_messaging

PUBLISHES = [FUNDING]


def messaging_spec(app: LedgerApplication) -> MessagingSpec:
    return service_messaging("ledger", app, PUBLISHES)
