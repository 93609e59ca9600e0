"""Who may call the ledger's endpoints, on the real API and event store: finance settles only
its own areas, a dispatcher reads only the elders and visits of their areas, an elder only
their own ledger, the auditor reads everything and writes nothing, caregivers nothing."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import date

import httpx
import pytest
from fastapi import FastAPI

from services.ledger.api import build_router
from services.ledger.application import LedgerApplication, NotFound, UnknownElder
from services.ledger.domain.books import RuleBookRecord
from services.ledger.domain.entitlement import ElderFacts
from services.runtime.access import check_every_route_guarded, endpoints, is_public
from services.runtime.double_entry import LedgerError
from services.runtime.http import install_error_handlers
from tests.support.auth import bearer, install_test_auth

from .conftest import AREA, LedgerHarness, scheduled, verified

# Who gets through does not depend on the store: PostgreSQL (what runs in production) only.
pytestmark = [pytest.mark.integration,
              pytest.mark.parametrize("persistence", ["postgres"], indirect=True)]

OTHER = "B1"  # another service area, with its own elder
MONTH = "2026-11"
FINANCE_A = bearer("finance", service_areas=[AREA])
FINANCE_B = bearer("finance", service_areas=[OTHER])
DISPATCHER_A = bearer("dispatcher", service_areas=[AREA])
DISPATCHER_B = bearer("dispatcher", service_areas=[OTHER])
AUDITOR = bearer("auditor")
CLOSE = {"reason": "month end", "by": "finance-1"}


def http_app(app: LedgerApplication) -> FastAPI:
    api = FastAPI()
    api.include_router(build_router(app))
    install_error_handlers(api, not_found=(NotFound, UnknownElder), conflict=(LedgerError,),
                           unprocessable=(ValueError,))
    return install_test_auth(api)


@pytest.fixture
async def books(ledger: LedgerHarness) -> AsyncIterator[tuple[LedgerApplication, FastAPI,
                                                              httpx.AsyncClient]]:
    """E-1..E-3 in area A1, E-9 in B1; visit V1 (E-1, A1) charged, V2 only reserved."""
    ledger.app.register_elder("E-9", OTHER, ElderFacts(birth_date=date(1930, 1, 1)))
    await ledger.feed(scheduled("V1", 60))
    await ledger.feed(verified("V1", 45))
    await ledger.feed(scheduled("V2", 30, elder="E-2"))
    api = http_app(ledger.app)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api),
                                 base_url="http://t") as client:
        yield ledger.app, api, client


async def test_finance_closes_and_reads_only_its_own_areas_months(books) -> None:
    """Finance of area A1 cannot close (or read the statements of) area B1's month; B1's month
    stays open. It closes its own month, which the auditor and a dispatcher cannot."""
    app, _, client = books
    close_b = f"/ledger/areas/{OTHER}/months/{MONTH}/close"
    assert (await client.post(close_b, json=CLOSE, headers=FINANCE_A)).status_code == 403
    assert not app.is_month_closed(OTHER, MONTH)
    statements_b = f"/ledger/areas/{OTHER}/months/{MONTH}/statements"
    assert (await client.get(statements_b, headers=FINANCE_A)).status_code == 403
    assert (await client.get(statements_b + ".csv", headers=FINANCE_A)).status_code == 403
    assert (await client.get(f"/ledger/areas/{OTHER}/months/{MONTH}/summary",
                             headers=FINANCE_A)).status_code == 403

    close_a = f"/ledger/areas/{AREA}/months/{MONTH}/close"
    for refused in (AUDITOR, DISPATCHER_A, bearer("elder", elder_ids=["E-1"])):
        assert (await client.post(close_a, json=CLOSE, headers=refused)).status_code == 403
    assert not app.is_month_closed(AREA, MONTH)
    r = await client.post(close_a, json=CLOSE, headers=FINANCE_A)
    assert r.status_code == 200, r.text
    assert app.is_month_closed(AREA, MONTH)
    r = await client.get(f"/ledger/areas/{AREA}/months/{MONTH}/statements", headers=FINANCE_A)
    assert r.status_code == 200 and r.json()["closed"] is True
    assert (await client.get(statements_b, headers=FINANCE_B)).status_code == 200


async def test_finance_reverses_charges_and_reads_payables_of_its_own_areas(books) -> None:
    """A reversal of area A1's charge by finance of B1 is refused and posts nothing; finance
    of A1 may reverse it. A provider's payable is readable only for finance's own area."""
    app, _, client = books
    reason = {"reason": "visit did not take place", "by": "finance-1"}
    assert (await client.post("/ledger/visits/V1/reversal", json=reason,
                              headers=FINANCE_B)).status_code == 403
    assert (await client.post("/ledger/visits/V1/reversal", json=reason,
                              headers=DISPATCHER_A)).status_code == 403
    assert not app.charge_for("V1").reversed
    r = await client.post("/ledger/visits/V1/reversal", json=reason, headers=FINANCE_A)
    assert r.status_code == 200 and r.json()["reversed"] is True, r.text

    own_area = await client.get(f"/ledger/providers/P-1/payable?area={AREA}", headers=FINANCE_A)
    assert own_area.status_code == 200 and own_area.json()["service_area_id"] == AREA
    assert (await client.get(f"/ledger/providers/P-1/payable?area={OTHER}",
                             headers=FINANCE_A)).status_code == 403
    assert (await client.get("/ledger/trial-balance", headers=FINANCE_A)).status_code == 200


async def test_a_dispatcher_reads_only_elders_and_visits_of_own_areas(books) -> None:
    """A dispatcher of A1 reads A1's elders and visits, not B1's; an elder the ledger does not
    know is nobody's (403) though the auditor is told it does not exist (404)."""
    _, _, client = books
    for url in (f"/ledger/elders/E-1/balance?month={MONTH}", "/ledger/elders/E-1/history",
                f"/ledger/elders/E-1/entitlement?month={MONTH}", "/ledger/visits/V1/charge",
                "/ledger/visits/V2/reservation",
                f"/ledger/areas/{AREA}/months/{MONTH}/summary"):
        assert (await client.get(url, headers=DISPATCHER_A)).status_code == 200, url
        assert (await client.get(url, headers=DISPATCHER_B)).status_code == 403, url
    assert (await client.get(f"/ledger/elders/E-9/balance?month={MONTH}",
                             headers=DISPATCHER_A)).status_code == 403
    assert (await client.get(f"/ledger/elders/E-9/balance?month={MONTH}",
                             headers=DISPATCHER_B)).status_code == 200
    assert (await client.get("/ledger/elders/E-404/history",
                             headers=DISPATCHER_A)).status_code == 403
    assert (await client.get("/ledger/elders/E-404/history",
                             headers=AUDITOR)).status_code == 404
    assert (await client.get("/ledger/accounts/funding:city:yiwu",
                             headers=DISPATCHER_A)).status_code == 403


async def test_an_elder_sees_only_their_own_ledger(books) -> None:
    """An elder reads their own entitlement, balance and history, not another elder's; a
    family proxy for two elders reads both; neither can buy a package or register facts."""
    _, _, client = books
    elder = bearer("elder", elder_ids=["E-1"])
    r = await client.get(f"/ledger/elders/E-1/balance?month={MONTH}", headers=elder)
    assert r.status_code == 200 and r.json()["elder_id"] == "E-1"
    assert (await client.get("/ledger/elders/E-1/history", headers=elder)).status_code == 200
    assert (await client.get(f"/ledger/elders/E-2/balance?month={MONTH}",
                             headers=elder)).status_code == 403
    assert (await client.get("/ledger/elders/E-2/history", headers=elder)).status_code == 403
    assert (await client.get("/ledger/visits/V1/charge", headers=elder)).status_code == 403
    proxy = bearer("elder", elder_ids=["E-1", "E-2"])
    for who in ("E-1", "E-2"):
        assert (await client.get(f"/ledger/elders/{who}/entitlement?month={MONTH}",
                                 headers=proxy)).status_code == 200
    package = {"package_id": "PK-1", "minutes": 600, "price_fen": 30000,
               "expires_on": "2027-12-31", "bought_by": "daughter"}
    assert (await client.post("/ledger/elders/E-1/packages", json=package,
                              headers=elder)).status_code == 403
    assert (await client.put("/ledger/elders/E-1", headers=elder, json={
        "service_area_id": AREA, "birth_date": "1930-01-01"})).status_code == 403


def _url(path: str) -> str:
    values = {"elder_id": "E-1", "visit_id": "V1", "area": AREA, "month": MONTH,
              "provider_id": "P-1", "code": "funding:city:yiwu", "fmt": "csv"}
    url = re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)
    return url + (f"?area={AREA}" if url.endswith("/payable") else "")


async def test_the_auditor_reads_everything_and_writes_nothing(books) -> None:
    """Every ledger GET lets the auditor through (it may still answer 404 for a record that
    does not exist); every write refuses them, and the books are the same afterwards."""
    app, api, client = books
    routes = [e for e in endpoints(api) if not is_public(e) and e.path.startswith("/ledger")]
    assert routes and check_every_route_guarded(api) == []
    balance_before = app.trial_balance()
    for e in routes:
        r = await client.request(e.method, _url(e.path), headers=AUDITOR, json={})
        if e.method == "GET":
            assert r.status_code not in (401, 403), (e.method, e.path, r.text)
        else:
            assert r.status_code == 403, (e.method, e.path, r.text)
    assert app.trial_balance() == balance_before
    assert not app.is_month_closed(AREA, MONTH) and not app.charge_for("V1").reversed


async def test_caregivers_and_volunteers_have_nothing_in_the_ledger(books) -> None:
    """A caregiver or volunteer token opens no ledger endpoint, and no token at all gets 401."""
    _, api, client = books
    caregiver = bearer("caregiver", caregiver_id="C-1")
    volunteer = bearer("volunteer", caregiver_id="C-1", volunteer_id="C-1")
    for e in endpoints(api):
        if is_public(e) or not e.path.startswith("/ledger"):
            continue
        for headers in (caregiver, volunteer):
            r = await client.request(e.method, _url(e.path), headers=headers, json={})
            assert r.status_code == 403, (e.method, e.path)
        assert (await client.request(e.method, _url(e.path), json={})).status_code == 401


async def test_who_closed_reversed_or_added_rules_is_the_caller_of_the_token(books) -> None:
    """The month close, a charge reversal and a new rules version record the token's caller
    (role:subject), not the name the body gives; a body without a name is accepted."""
    app, _, client = books
    finance = bearer("finance", "wang", service_areas=[AREA])
    r = await client.post("/ledger/visits/V1/reversal", headers=finance,
                          json={"reason": "visit did not take place", "by": "someone else"})
    assert r.status_code == 200, r.text
    assert app.charge_for("V1").reversed_by == "finance:wang"

    r = await client.post(f"/ledger/areas/{AREA}/months/{MONTH}/close", headers=finance,
                          json={"reason": "month end"})
    assert r.status_code == 200 and r.json()["closed_by"] == "finance:wang", r.text

    r = await client.post("/ledger/rules/versions", headers=bearer("admin", "bureau-li"),
                          json={"version": "2027", "effective_from": "2027-01-01",
                                "added_by": "not me"})
    assert r.status_code == 201, r.text
    record = app.repository.get(RuleBookRecord.create_id(app.region))
    assert record.last_added_by == "admin:bureau-li"
