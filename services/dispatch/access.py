"""Who may call which dispatch endpoint (issue #8): the service's whole policy in one place.

The routes in api.py and web/ name one of the grant sets below; the administrator may call
everything. In words:

- dispatcher: every dispatch operation on records of their own service areas (the record's area,
  or for a new record the area it names or the area of the elder/caregiver it names); reads
  providers. Erasure, provider registration and blacklisting are the administrator's.
- caregiver, and a volunteer (who visits as a caregiver of kind volunteer, with the same
  caregiver_id claim): their own caregiver record, route, pending-sync, phone queue and event
  stream (the area's stream is the dispatchers'), and their own visits (read, depart, check
  in/out, no-show, escalation), recording steps only as themselves. A volunteer also takes
  open orders for themselves and reads their own area's orders and service catalogue (the
  volunteer page lists the open ones).
- elder (or a family proxy): their own record and preferences, orders for themselves (place,
  read, cancel), their visits and care plans (read).
- auditor: every read. finance: nothing in dispatch.

An ownership check that cannot find the record answers False: a scoped role gets 403 and never
learns whether the record exists; admin and auditor get the endpoint's own 404.
"""

from __future__ import annotations

from collections.abc import Callable

from services.dispatch.application import DispatchApplication, Owner
from services.runtime.access import (
    Check,
    Grant,
    RequestFacts,
    allow,
    anyone,
    body,
    in_own_areas,
    is_own_caregiver,
    is_own_elder,
    own,
    path,
)
from services.runtime.auth import Principal

Fact = Callable[[RequestFacts], str | None]
OwnerOf = Callable[[str], Owner | None]


def _owner(lookup: OwnerOf, key: Fact) -> Callable[[RequestFacts], Owner | None]:
    def owner(f: RequestFacts) -> Owner | None:
        value = key(f)
        return None if value is None else lookup(value)
    return owner


def _owner_field(lookup: OwnerOf, key: Fact, field: str) -> Fact:
    owner = _owner(lookup, key)

    def value(f: RequestFacts) -> str | None:
        found = owner(f)
        return None if found is None else getattr(found, field)
    return value


def _area(lookup: OwnerOf, key: Fact) -> Fact:
    return _owner_field(lookup, key, "service_area_id")


def _elder(lookup: OwnerOf, key: Fact) -> Fact:
    return _owner_field(lookup, key, "elder_id")


def _on_record(lookup: OwnerOf, key: Fact) -> Check:
    """The caller's caregiver id is one of the record's caregivers (either of a two-person
    visit)."""
    owner = _owner(lookup, key)

    def check(p: Principal, f: RequestFacts) -> bool:
        found = owner(f)
        return p.caregiver_id is not None and found is not None \
            and p.caregiver_id in found.caregiver_ids
    return check


def _both(*checks: Check) -> Check:
    return lambda p, f: all(check(p, f) for check in checks)


def _as_caregiver(scope: str, check: Check) -> list[Grant]:
    """The same grant to caregivers and volunteers (both by the token's caregiver_id)."""
    return [own("caregiver", scope, check), own("volunteer", scope, check)]


class DispatchAccess:
    """The grant sets of dispatch's endpoints, with ownership looked up in `app`."""

    def __init__(self, app: DispatchApplication) -> None:
        self.app = app
        area = path("service_area_id")
        elder_path, caregiver_path = path("elder_id"), path("caregiver_id")
        visit, order = path("visit_id"), path("order_id")
        plan, proposal, alert = path("care_plan_id"), path("proposal_id"), path("alert_id")
        elders, caregivers = app.owner_of_elder, app.owner_of_caregiver
        visits, orders, plans = app.owner_of_visit, app.owner_of_order, app.owner_of_care_plan

        def dispatcher(check: Check) -> Grant:
            return own("dispatcher", "own service areas", check)

        auditor = anyone("auditor")
        self_body = is_own_caregiver(body("caregiver_id"))
        # A caregiver's own caregiver id in the path, or a volunteer's (same claim).
        self_path = _as_caregiver("themself", is_own_caregiver(caregiver_path))
        own_visit = _on_record(visits, visit)
        # Steps recorded on a visit: their own visit, and only as themselves.
        own_visit_step = _as_caregiver("own visits, as themself", _both(own_visit, self_body))

        # Elders
        self.elder_register = allow(dispatcher(in_own_areas(body("service_area_id"))))
        self.elder_read = allow(dispatcher(in_own_areas(_area(elders, elder_path))),
                                own("elder", "themself", is_own_elder(elder_path)), auditor)
        self.elder_preferences = allow(dispatcher(in_own_areas(_area(elders, elder_path))),
                                       own("elder", "themself", is_own_elder(elder_path)))
        self.elder_manage = allow(dispatcher(in_own_areas(_area(elders, elder_path))))
        # Caregivers
        self.caregiver_register = allow(dispatcher(in_own_areas(body("service_area_id"))))
        caregiver_area = dispatcher(in_own_areas(_area(caregivers, caregiver_path)))
        self.caregiver_read = allow(caregiver_area, self_path, auditor)
        self.caregiver_manage = allow(caregiver_area)
        self.caregiver_self = allow(caregiver_area, self_path)
        # Live changes of a caregiver's own visits: the phone's stream (EventSource: the token
        # in the URL). Caregivers and volunteers may not follow the area's stream.
        self.caregiver_stream = allow(caregiver_area, self_path, auditor, token_in_query=True)
        # The phone's queue: the caregiver named in the body.
        self.sync = allow(dispatcher(in_own_areas(_area(caregivers, body("caregiver_id")))),
                          _as_caregiver("themself", self_body))
        # Providers: registration and blacklisting are civil-affairs (the administrator's).
        self.provider_read = allow(anyone("dispatcher", "auditor"))
        self.admin_only = allow()
        # Areas
        self.area_read = allow(dispatcher(in_own_areas(area)), auditor)
        self.area_write = allow(dispatcher(in_own_areas(area)))
        self.area_stream = allow(dispatcher(in_own_areas(area)), auditor, token_in_query=True)
        volunteer_area = own("volunteer", "own area", in_own_areas_of_caregiver(app, area))
        self.area_open_tasks = allow(dispatcher(in_own_areas(area)), volunteer_area, auditor)
        self.proposal_decide = allow(dispatcher(in_own_areas(
            _area(app.owner_of_proposal, proposal))))
        self.alert_acknowledge = allow(dispatcher(in_own_areas(_area(app.owner_of_alert, alert))))
        # Orders
        self.order_place = allow(dispatcher(in_own_areas(_area(elders, body("elder_id")))),
                                 own("elder", "themself", is_own_elder(body("elder_id"))))
        order_area = dispatcher(in_own_areas(_area(orders, order)))
        own_order = own("elder", "own orders", is_own_elder(_elder(orders, order)))
        self.order_read = allow(order_area, own_order, auditor)
        self.order_cancel = allow(order_area, own_order)
        self.order_claim = allow(order_area, own("volunteer", "themself", self_body))
        # Care plans
        self.care_plan_create = allow(dispatcher(in_own_areas(_area(elders, body("elder_id")))))
        plan_area = dispatcher(in_own_areas(_area(plans, plan)))
        self.care_plan_read = allow(plan_area, own("elder", "own care plans",
                                                   is_own_elder(_elder(plans, plan))), auditor)
        self.care_plan_write = allow(plan_area)
        # Visits
        visit_area = dispatcher(in_own_areas(_area(visits, visit)))
        self.visit_read = allow(visit_area, _as_caregiver("own visits", own_visit),
                                own("elder", "own visits", is_own_elder(_elder(visits, visit))),
                                auditor)
        self.visit_step = allow(visit_area, own_visit_step)
        self.visit_escalation = allow(visit_area, _as_caregiver("own visits", own_visit))
        self.visit_manage = allow(visit_area)


def in_own_areas_of_caregiver(app: DispatchApplication, area: Fact) -> Check:
    """The area is the one the caller (by the token's caregiver_id) works in."""
    def check(p: Principal, f: RequestFacts) -> bool:
        if p.caregiver_id is None:
            return False
        owner = app.owner_of_caregiver(p.caregiver_id)
        return owner is not None and owner.service_area_id == area(f)
    return check


__all__ = ["DispatchAccess", "in_own_areas_of_caregiver"]
