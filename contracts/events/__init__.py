"""Integration events, one module per topic."""

from contracts.events.funding import *  # noqa: F403
from contracts.events.funding import __all__ as _funding
from contracts.events.orders import *  # noqa: F403
from contracts.events.orders import __all__ as _orders
from contracts.events.visits import *  # noqa: F403
from contracts.events.visits import __all__ as _visits

__all__ = [*_orders, *_visits, *_funding]
